//! Dot products of one weight row with up to [`TILE`] activation rows at once, so a weight
//! block is loaded and unpacked once for several tokens (batched decoding, prompts).
//!
//! Weight rows are stored in groups of [`GROUP`] blocks of 32 weights: first the group's f16
//! scales (and, for Q4, its f16 minimums), then the quants, so eight scales convert in one
//! instruction and eight blocks' integer sums are scaled with one multiply-add. The last group
//! of a row may be shorter. Sizes equal GGML's: 20 bytes per Q4 block, 34 per Q8 block.
//!
//! x86-64 builds use AVX2 (see `.cargo/config.toml`), and AVX-512 VNNI where the CPU has it
//! (detected at run time); other targets use the portable loops, which are the reference the
//! SIMD versions are tested against.

use half::f16;

use super::q8::{Q8Row, QK};

/// Activation rows per call.
pub const TILE: usize = 4;
/// Blocks per group.
pub const GROUP: usize = 8;
/// Bytes per 32 weights: Q4 holds 4-bit quants with an f16 scale and an f16 minimum (GGML's
/// `q4_1`; `q4_0` converts exactly), Q8 holds signed bytes with an f16 scale (`q8_0`).
pub const Q4_BYTES: usize = 20;
pub const Q8_BYTES: usize = 34;

/// Where block `i` of a row of `nb` blocks keeps its scale, its minimum (Q4 only) and quants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockAt {
    pub d: usize,
    pub m: usize,
    pub qs: usize,
}

/// Offsets of block `i` in a row of `nb` blocks of `bytes` bytes (`Q4_BYTES` or `Q8_BYTES`).
pub fn block_at(nb: usize, i: usize, bytes: usize) -> BlockAt {
    let (g, j) = (i / GROUP, i % GROUP);
    let r = GROUP.min(nb - g * GROUP);
    let base = g * GROUP * bytes;
    let scales = if bytes == Q4_BYTES { 4 } else { 2 };
    BlockAt {
        d: base + 2 * j,
        m: base + 2 * r + 2 * j,
        qs: base + scales * r + (bytes - scales) * j,
    }
}

#[inline(always)]
pub fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Where results go: `out[r * stride + t]` for weight row `r` and activation row `t`.
pub struct Out<'a> {
    pub out: &'a mut [f32],
    pub stride: usize,
}

/// Every Q4 row of `rows` (`nb` blocks each) times every activation row of the tile.
pub fn q4<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
    // SAFETY: AVX2 and FMA are enabled for the whole build (cfg above).
    unsafe {
        avx2::q4::<N>(rows, nb, acts, out)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
    portable::q4::<N>(rows, nb, acts, out)
}

/// Every Q8 row of `rows` times every activation row of the tile.
pub fn q8<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
    // SAFETY: as above.
    unsafe {
        avx2::q8::<N>(rows, nb, acts, out)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
    portable::q8::<N>(rows, nb, acts, out)
}

/// Every f32 row of `rows` (`k` wide) times every activation row of the tile.
pub fn f32_rows<const N: usize>(rows: &[f32], k: usize, xs: [&[f32]; N], out: Out) {
    for (r, row) in rows.chunks_exact(k).enumerate() {
        for (t, x) in xs.iter().enumerate() {
            out.out[r * out.stride + t] = f32_dot(row, x);
        }
    }
}

/// Eight lanes, which LLVM vectorises on every target.
pub fn f32_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

pub mod portable {
    use super::*;

    /// Integer dot product and scales of block `i` of a Q4 row with an activation row.
    fn q4_block(row: &[u8], nb: usize, i: usize, a: &Q8Row) -> f32 {
        let at = block_at(nb, i, Q4_BYTES);
        let qs = &row[at.qs..at.qs + QK / 2];
        let x = &a.qs[i * QK..(i + 1) * QK];
        let si: i32 = (0..QK / 2)
            .map(|j| (qs[j] & 0x0F) as i32 * x[j] as i32 + (qs[j] >> 4) as i32 * x[j + 16] as i32)
            .sum();
        si as f32 * f16_at(row, at.d) * a.d[i] + f16_at(row, at.m) * a.s[i]
    }

    fn q8_block(row: &[u8], nb: usize, i: usize, a: &Q8Row) -> f32 {
        let at = block_at(nb, i, Q8_BYTES);
        let si: i32 = row[at.qs..at.qs + QK]
            .iter()
            .zip(&a.qs[i * QK..(i + 1) * QK])
            .map(|(&w, &x)| w as i8 as i32 * x as i32)
            .sum();
        si as f32 * f16_at(row, at.d) * a.d[i]
    }

    pub fn q4<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
        for (r, row) in rows.chunks_exact(nb * Q4_BYTES).enumerate() {
            for (t, a) in acts.iter().enumerate() {
                out.out[r * out.stride + t] = (0..nb).map(|i| q4_block(row, nb, i, a)).sum();
            }
        }
    }

    pub fn q8<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
        for (r, row) in rows.chunks_exact(nb * Q8_BYTES).enumerate() {
            for (t, a) in acts.iter().enumerate() {
                out.out[r * out.stride + t] = (0..nb).map(|i| q8_block(row, nb, i, a)).sum();
            }
        }
    }

    /// Reference results for the SIMD kernels' tests.
    #[cfg(test)]
    pub(crate) use {q4_block as q4_ref_block, q8_block as q8_ref_block};
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
mod avx2 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::*;

    /// AVX-512 VNNI multiplies unsigned by signed bytes and sums in one instruction (and gives
    /// 32 vector registers); detected at run time because the build only assumes AVX2.
    fn has_vnni() -> bool {
        static VNNI: OnceLock<bool> = OnceLock::new();
        *VNNI.get_or_init(|| {
            is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
        })
    }

    pub unsafe fn q4<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
        if has_vnni() {
            vnni::q4::<N>(rows, nb, acts, out)
        } else {
            maddubs::q4::<N>(rows, nb, acts, out)
        }
    }

    pub unsafe fn q8<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
        if has_vnni() {
            vnni::q8::<N>(rows, nb, acts, out)
        } else {
            maddubs::q8::<N>(rows, nb, acts, out)
        }
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Lane `j` of the result is the sum of the eight lanes of `p[j]`.
    #[inline(always)]
    unsafe fn reduce8(p: [__m256i; 8]) -> __m256i {
        let h01 = _mm256_hadd_epi32(p[0], p[1]);
        let h23 = _mm256_hadd_epi32(p[2], p[3]);
        let h45 = _mm256_hadd_epi32(p[4], p[5]);
        let h67 = _mm256_hadd_epi32(p[6], p[7]);
        let h0123 = _mm256_hadd_epi32(h01, h23);
        let h4567 = _mm256_hadd_epi32(h45, h67);
        _mm256_add_epi32(
            _mm256_permute2x128_si256(h0123, h4567, 0x20),
            _mm256_permute2x128_si256(h0123, h4567, 0x31),
        )
    }

    /// Asks for the weights a few groups ahead (past a row's end they are the next row's):
    /// small matrices are read in short runs, too short for the hardware prefetcher to ramp up.
    #[inline(always)]
    unsafe fn prefetch<const BYTES: usize>(p: *const u8) {
        const AHEAD: usize = 4096;
        for line in (0..BYTES).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(AHEAD + line) as *const i8);
        }
    }

    #[inline(always)]
    unsafe fn load_f16x8(p: *const u8) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    /// Q4 quants of one block: low nibbles are weights 0..16, high nibbles 16..32.
    #[inline(always)]
    unsafe fn unpack_q4(p: *const u8) -> __m256i {
        let qs = _mm_loadu_si128(p as *const __m128i);
        _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(qs, 4), qs),
            _mm256_set1_epi8(0x0F),
        )
    }

    /// The kernels, written once over `$dot(w, a)`: the eight 32-bit sums of products of
    /// unsigned `w` and signed `a` bytes.
    macro_rules! kernels {
        ($name:ident, $features:literal, $dot:path) => {
            mod $name {
                use super::*;

                #[target_feature(enable = $features)]
                pub unsafe fn q4<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
                    for (r, row) in rows.chunks_exact(nb * Q4_BYTES).enumerate() {
                        q4_row::<N>(row, nb, &acts, &mut out.out[r * out.stride..][..N]);
                    }
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn q4_row<const N: usize>(row: &[u8], nb: usize, acts: &[Q8Row; N], out: &mut [f32]) {
                    let full = nb / GROUP;
                    let mut acc = [_mm256_setzero_ps(); N];
                    let mut tail = [0f32; N];
                    for g in 0..full {
                        let base = row.as_ptr().add(g * GROUP * Q4_BYTES);
                        prefetch::<{ GROUP * Q4_BYTES }>(base);
                        let dw = load_f16x8(base);
                        let mw = load_f16x8(base.add(16));
                        let mut w = [_mm256_setzero_si256(); GROUP];
                        for (j, w) in w.iter_mut().enumerate() {
                            *w = unpack_q4(base.add(32 + 16 * j));
                        }
                        for t in 0..N {
                            let a = &acts[t];
                            let x = a.qs.as_ptr().add(g * GROUP * QK);
                            let mut p = [_mm256_setzero_si256(); GROUP];
                            for j in 0..GROUP {
                                let xj = _mm256_loadu_si256(x.add(QK * j) as *const __m256i);
                                p[j] = $dot(w[j], xj);
                            }
                            let sums = _mm256_cvtepi32_ps(reduce8(p));
                            let da = _mm256_loadu_ps(a.d.as_ptr().add(g * GROUP));
                            let sa = _mm256_loadu_ps(a.s.as_ptr().add(g * GROUP));
                            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), sums, acc[t]);
                            acc[t] = _mm256_fmadd_ps(mw, sa, acc[t]);
                        }
                    }
                    for i in full * GROUP..nb {
                        let at = block_at(nb, i, Q4_BYTES);
                        let (d, m) = (f16_at(row, at.d), f16_at(row, at.m));
                        let w = unpack_q4(row.as_ptr().add(at.qs));
                        for t in 0..N {
                            let a = &acts[t];
                            let x = _mm256_loadu_si256(a.qs.as_ptr().add(i * QK) as *const __m256i);
                            let s = hsum(_mm256_cvtepi32_ps($dot(w, x)));
                            tail[t] += s * d * a.d[i] + m * a.s[i];
                        }
                    }
                    for t in 0..N {
                        out[t] = hsum(acc[t]) + tail[t];
                    }
                }

                #[target_feature(enable = $features)]
                pub unsafe fn q8<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
                    for (r, row) in rows.chunks_exact(nb * Q8_BYTES).enumerate() {
                        q8_row::<N>(row, nb, &acts, &mut out.out[r * out.stride..][..N]);
                    }
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn q8_row<const N: usize>(row: &[u8], nb: usize, acts: &[Q8Row; N], out: &mut [f32]) {
                    let full = nb / GROUP;
                    let mut acc = [_mm256_setzero_ps(); N];
                    let mut tail = [0f32; N];
                    for g in 0..full {
                        let base = row.as_ptr().add(g * GROUP * Q8_BYTES);
                        prefetch::<{ GROUP * Q8_BYTES }>(base);
                        let dw = load_f16x8(base);
                        // One operand must be unsigned: the weights' signs move onto the
                        // activations.
                        let mut w = [_mm256_setzero_si256(); GROUP];
                        let mut sign = [_mm256_setzero_si256(); GROUP];
                        for j in 0..GROUP {
                            sign[j] = _mm256_loadu_si256(base.add(16 + 32 * j) as *const __m256i);
                            w[j] = _mm256_sign_epi8(sign[j], sign[j]);
                        }
                        for t in 0..N {
                            let a = &acts[t];
                            let x = a.qs.as_ptr().add(g * GROUP * QK);
                            let mut p = [_mm256_setzero_si256(); GROUP];
                            for j in 0..GROUP {
                                let xj = _mm256_loadu_si256(x.add(QK * j) as *const __m256i);
                                p[j] = $dot(w[j], _mm256_sign_epi8(xj, sign[j]));
                            }
                            let sums = _mm256_cvtepi32_ps(reduce8(p));
                            let da = _mm256_loadu_ps(a.d.as_ptr().add(g * GROUP));
                            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), sums, acc[t]);
                        }
                    }
                    for i in full * GROUP..nb {
                        let at = block_at(nb, i, Q8_BYTES);
                        let d = f16_at(row, at.d);
                        let sign = _mm256_loadu_si256(row.as_ptr().add(at.qs) as *const __m256i);
                        let w = _mm256_sign_epi8(sign, sign);
                        for t in 0..N {
                            let a = &acts[t];
                            let x = _mm256_loadu_si256(a.qs.as_ptr().add(i * QK) as *const __m256i);
                            let s = hsum(_mm256_cvtepi32_ps($dot(w, _mm256_sign_epi8(x, sign))));
                            tail[t] += s * d * a.d[i];
                        }
                    }
                    for t in 0..N {
                        out[t] = hsum(acc[t]) + tail[t];
                    }
                }
            }
        };
    }

    #[inline(always)]
    unsafe fn dot_maddubs(w: __m256i, a: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
    }

    #[target_feature(enable = "avx512vnni,avx512vl")]
    #[inline]
    unsafe fn dot_vnni(w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a)
    }

    kernels!(maddubs, "avx2,fma,f16c", dot_maddubs);
    kernels!(vnni, "avx2,fma,f16c,avx512vnni,avx512vl", dot_vnni);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::kernels::q8::Q8Rows;

    /// Random-looking bytes for quants and moderate f16 scales.
    fn row(nb: usize, bytes: usize, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let mut r: Vec<u8> = (0..nb * bytes).map(|_| next() as u8).collect();
        for i in 0..nb {
            let at = block_at(nb, i, bytes);
            let d = f16::from_f32((next() % 1000) as f32 / 1e5 + 1e-4).to_le_bytes();
            r[at.d..at.d + 2].copy_from_slice(&d);
            if bytes == Q4_BYTES {
                let m = f16::from_f32(-((next() % 1000) as f32) / 1e4).to_le_bytes();
                r[at.m..at.m + 2].copy_from_slice(&m);
            }
        }
        r
    }

    #[test]
    fn simd_kernels_equal_the_portable_ones_for_every_tile_and_tail() {
        // 18 blocks: two full groups and a tail of two (a 576-wide row); 3: tail only.
        for nb in [18usize, 3, 8] {
            let x: Vec<f32> = (0..4 * nb * QK).map(|i| ((i * 37) % 101) as f32 / 7.0 - 7.0).collect();
            let acts = Q8Rows::new(&x, nb * QK);
            let a = [acts.row(0), acts.row(1), acts.row(2), acts.row(3)];
            for (bytes, seed) in [(Q4_BYTES, 1u32), (Q8_BYTES, 2)] {
                let w = row(nb, bytes, seed);
                let want: Vec<f32> = a
                    .iter()
                    .map(|a| {
                        (0..nb)
                            .map(|i| match bytes {
                                Q4_BYTES => portable::q4_ref_block(&w, nb, i, a),
                                _ => portable::q8_ref_block(&w, nb, i, a),
                            })
                            .sum()
                    })
                    .collect();
                let mut got = [0f32; 4];
                let out = Out { out: &mut got, stride: 4 };
                match bytes {
                    Q4_BYTES => q4::<4>(&w, nb, a, out),
                    _ => q8::<4>(&w, nb, a, out),
                }
                let mut one = [0f32; 1];
                let out = Out { out: &mut one, stride: 1 };
                match bytes {
                    Q4_BYTES => q4::<1>(&w, nb, [a[2]], out),
                    _ => q8::<1>(&w, nb, [a[2]], out),
                }
                assert_eq!(one[0], got[2], "a tile of one equals the same row in a tile of four");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{bytes}-byte blocks, nb {nb}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn block_offsets_tile_the_row_without_overlap() {
        for (nb, bytes) in [(18usize, Q4_BYTES), (18, Q8_BYTES), (5, Q4_BYTES)] {
            let mut used = vec![0u8; nb * bytes];
            for i in 0..nb {
                let at = block_at(nb, i, bytes);
                let q = if bytes == Q4_BYTES { 16 } else { 32 };
                let mut spans = vec![(at.d, 2), (at.qs, q)];
                if bytes == Q4_BYTES {
                    spans.push((at.m, 2));
                }
                for (s, n) in spans {
                    used[s..s + n].iter_mut().for_each(|u| *u += 1);
                }
            }
            assert!(used.iter().all(|&u| u == 1), "every byte belongs to exactly one field");
        }
    }
}
