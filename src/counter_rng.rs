//! Counter-based random bits for drop masks: element `i` of tensor `name` under `seed` always gets
//! the same bits, whatever the thread count, chunking or device (the WGSL kernel in `src/gpu`
//! computes the same function with 32-bit integer operations only).

/// The per-tensor key: `seed` mixed with a hash of the tensor's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskKey {
    pub k0: u32,
    pub k1: u32,
}

impl MaskKey {
    pub fn new(seed: u64, tensor_name: &str) -> Self {
        let s = splitmix64(seed ^ fnv1a64(tensor_name.as_bytes()));
        Self {
            k0: s as u32,
            k1: (s >> 32) as u32,
        }
    }

    /// 32 random bits for element `index`.
    #[inline]
    pub fn bits(&self, index: u64) -> u32 {
        self.bits_in_block(index as u32, high_word_mix((index >> 32) as u32))
    }

    /// [`Self::bits`] with the high word's mix computed once for a block of 2³² indices.
    #[inline]
    pub fn bits_in_block(&self, lo: u32, hi_mix: u32) -> u32 {
        mix32(mix32(lo ^ self.k0).wrapping_add(self.k1) ^ hi_mix)
    }

    /// Whether element `index` survives a drop with `threshold` from [`drop_threshold`].
    #[inline]
    pub fn keeps(&self, index: u64, threshold: DropThreshold) -> bool {
        match threshold {
            DropThreshold::DropAll => false,
            DropThreshold::Below(t) => self.bits(index) >= t,
        }
    }
}

/// A drop rate as an integer threshold on the 32 random bits, so that the comparison is exact
/// on every device: an element is dropped when its bits are below the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropThreshold {
    Below(u32),
    DropAll,
}

pub fn drop_threshold(drop_rate: f64) -> DropThreshold {
    let t = (drop_rate.clamp(0.0, 1.0) * 4_294_967_296.0).round();
    if t >= 4_294_967_296.0 {
        DropThreshold::DropAll
    } else {
        DropThreshold::Below(t as u32)
    }
}

/// The high word of the index enters through its own mix (constant within 2³² elements).
#[inline]
pub fn high_word_mix(hi: u32) -> u32 {
    mix32(hi.wrapping_add(0x9e37_79b9))
}

/// A 32-bit integer finaliser with low bias ("lowbias32", C. Wellons).
#[inline]
pub fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_fraction_matches_the_drop_rate_and_masks_differ_per_tensor() {
        let n = 200_000u64;
        for p in [0.1, 0.5, 0.9, 0.99] {
            let t = drop_threshold(p);
            let key = MaskKey::new(7, "model.layers.0.mlp.up_proj.weight");
            let kept = (0..n).filter(|&i| key.keeps(i, t)).count() as f64 / n as f64;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((kept - (1.0 - p)).abs() < 5.0 * sd, "p={p}: kept {kept}");
        }
        let t = drop_threshold(0.5);
        let (a, b) = (MaskKey::new(7, "a.weight"), MaskKey::new(7, "b.weight"));
        let same = (0..n).filter(|&i| a.keeps(i, t) == b.keeps(i, t)).count() as f64 / n as f64;
        assert!(
            (same - 0.5).abs() < 0.01,
            "masks of two tensors agree on {same}"
        );
        assert_ne!(MaskKey::new(7, "a.weight"), MaskKey::new(8, "a.weight"));
        assert_eq!(drop_threshold(0.0), DropThreshold::Below(0));
        assert_eq!(drop_threshold(1.0), DropThreshold::DropAll);
    }
}
