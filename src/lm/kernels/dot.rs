//! Dot products of weight rows with up to [`TILE`] activation rows at once, so a weight block
//! is loaded and unpacked once for several tokens (batched decoding, prompts).
//!
//! Weight rows are stored in groups of [`GROUP`] blocks of 32 weights: first the group's f16
//! scales (and, for Q4, its f16 minimums), then the quants. In a full group the quants of the
//! eight blocks are interleaved four at a time, so that one 32-byte vector holds quants
//! `4k..4k+4` of every block: eight integer multiply-adds then leave each block's dot product
//! in its own lane, with no horizontal sums, and eight blocks are scaled with one multiply-add.
//! (Activations use the same layout, see [`super::q8`].) The last group of a row may be shorter
//! and is stored block after block. Sizes equal GGML's: 20 bytes per Q4 block, 34 per Q8 block.
//!
//! x86-64 builds use AVX2 (see `.cargo/config.toml`), and AVX-512 VNNI where the CPU has it
//! (detected at run time); other targets use the portable loops, which are the reference the
//! SIMD versions are tested against.

use half::f16;

use super::q8::{Q8Row, QK};

/// Activation rows per call.
pub const TILE: usize = 8;
/// Blocks per group.
pub const GROUP: usize = 8;
/// Bytes per 32 weights: Q4 holds 4-bit quants with an f16 scale and an f16 minimum (GGML's
/// `q4_1`; `q4_0` converts exactly), Q8 holds signed bytes with an f16 scale (`q8_0`), stored
/// plus 128 so that both formats multiply unsigned weights by signed activations.
pub const Q4_BYTES: usize = 20;
pub const Q8_BYTES: usize = 34;

/// Where block `i` of a row keeps its scale and minimum (Q4 only), and where its group's quants
/// start; `r` blocks are in the group and the block is the group's `j`-th.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockAt {
    pub d: usize,
    pub m: usize,
    pub quants: usize,
    pub r: usize,
    pub j: usize,
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
        quants: base + scales * r,
        r,
        j,
    }
}

/// Byte offset of 8-bit quant `e` of the group's block `j` from the group's quants.
pub fn quant_offset(r: usize, j: usize, e: usize) -> usize {
    if r == GROUP {
        32 * (e / 4) + 4 * j + e % 4
    } else {
        32 * j + e
    }
}

/// Byte offset of 4-bit quant `e` of the group's block `j`, and whether it is the high nibble.
/// In a full group, 16-byte vector `k` holds quants `4k..4k+4` of blocks 0–3 in its low nibbles
/// and of blocks 4–7 in its high nibbles.
pub fn nibble_at(r: usize, j: usize, e: usize) -> (usize, bool) {
    if r == GROUP {
        (16 * (e / 4) + 4 * (j % 4) + e % 4, j >= 4)
    } else {
        (16 * j + e % 16, e >= 16)
    }
}

/// Quant `e` (0..16) of Q4 block `i` in a row of `nb` blocks.
pub fn q4_quant(row: &[u8], nb: usize, i: usize, e: usize) -> u8 {
    let at = block_at(nb, i, Q4_BYTES);
    let (off, high) = nibble_at(at.r, at.j, e);
    let b = row[at.quants + off];
    if high {
        b >> 4
    } else {
        b & 0x0F
    }
}

/// Quant `e` of Q8 block `i` in a row of `nb` blocks (stored plus 128, unsigned).
pub fn q8_quant(row: &[u8], nb: usize, i: usize, e: usize) -> i8 {
    let at = block_at(nb, i, Q8_BYTES);
    (row[at.quants + quant_offset(at.r, at.j, e)] ^ 0x80) as i8
}

#[inline(always)]
pub fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Where results go: the product of weight row `r` and activation row `t` is written to
/// `out[r * row_step + t * token_step]`. The tasks of one product write disjoint cells of the
/// same buffer, so this holds a raw pointer; [`Out::set`] checks the bounds.
pub struct Out<'a> {
    ptr: *mut f32,
    len: usize,
    row_step: usize,
    token_step: usize,
    _buffer: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: cells are only written through `set`, which stays inside the buffer; callers give each
// task distinct (row, token) cells.
unsafe impl Send for Out<'_> {}
unsafe impl Sync for Out<'_> {}

impl<'a> Out<'a> {
    pub fn new(out: &'a mut [f32], row_step: usize, token_step: usize) -> Self {
        Self {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            row_step,
            token_step,
            _buffer: std::marker::PhantomData,
        }
    }

    /// The same buffer with row `r0`, token `t0` as the origin.
    pub fn at(&self, r0: usize, t0: usize) -> Out<'_> {
        let skip = (r0 * self.row_step + t0 * self.token_step).min(self.len);
        Out {
            // SAFETY: `skip` is at most the length, so the pointer stays in (or one past) the buffer.
            ptr: unsafe { self.ptr.add(skip) },
            len: self.len - skip,
            row_step: self.row_step,
            token_step: self.token_step,
            _buffer: std::marker::PhantomData,
        }
    }

    #[inline(always)]
    pub fn set(&self, r: usize, t: usize, v: f32) {
        let i = r * self.row_step + t * self.token_step;
        assert!(i < self.len, "output cell out of bounds");
        // SAFETY: in bounds (checked above); tasks write disjoint cells.
        unsafe { *self.ptr.add(i) = v }
    }
}

/// Every Q4 row of `rows` (`nb` blocks each) times every activation row of the tile.
pub fn q4<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: AVX2 and FMA are enabled for the whole build (cfg above).
    unsafe {
        avx2::q4::<N>(rows, nb, acts, out)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    portable::q4::<N>(rows, nb, acts, out)
}

/// Every Q8 row of `rows` times every activation row of the tile.
pub fn q8<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: as above.
    unsafe {
        avx2::q8::<N>(rows, nb, acts, out)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    portable::q8::<N>(rows, nb, acts, out)
}

/// Every f32 row of `rows` (`k` wide) times every activation row of the tile.
pub fn f32_rows<const N: usize>(rows: &[f32], k: usize, xs: [&[f32]; N], out: Out) {
    for (r, row) in rows.chunks_exact(k).enumerate() {
        for (t, x) in xs.iter().enumerate() {
            out.set(r, t, f32_dot(row, x));
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

    /// Block `i` of a Q4 row times the same block of an activation row.
    pub(crate) fn q4_block(row: &[u8], nb: usize, i: usize, a: &Q8Row) -> f32 {
        let at = block_at(nb, i, Q4_BYTES);
        let si: i32 = (0..QK)
            .map(|e| q4_quant(row, nb, i, e) as i32 * a.quant(i, e) as i32)
            .sum();
        si as f32 * f16_at(row, at.d) * a.d[i] + f16_at(row, at.m) * a.s[i]
    }

    pub(crate) fn q8_block(row: &[u8], nb: usize, i: usize, a: &Q8Row) -> f32 {
        let at = block_at(nb, i, Q8_BYTES);
        let si: i32 = (0..QK)
            .map(|e| q8_quant(row, nb, i, e) as i32 * a.quant(i, e) as i32)
            .sum();
        si as f32 * f16_at(row, at.d) * a.d[i]
    }

    pub fn q4<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
        for (r, row) in rows.chunks_exact(nb * Q4_BYTES).enumerate() {
            for (t, a) in acts.iter().enumerate() {
                out.set(r, t, (0..nb).map(|i| q4_block(row, nb, i, a)).sum());
            }
        }
    }

    pub fn q8<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
        for (r, row) in rows.chunks_exact(nb * Q8_BYTES).enumerate() {
            for (t, a) in acts.iter().enumerate() {
                out.set(r, t, (0..nb).map(|i| q8_block(row, nb, i, a)).sum());
            }
        }
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::*;

    /// AVX-512 VNNI multiplies unsigned by signed bytes and sums in one instruction (and gives
    /// 32 vector registers); detected at run time because the build only assumes AVX2.
    fn has_vnni() -> bool {
        static VNNI: OnceLock<bool> = OnceLock::new();
        *VNNI.get_or_init(|| {
            is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512f")
        })
    }

    pub unsafe fn q4<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
        if has_vnni() && N > 1 {
            wide::rows::<Q4, N>(rows, nb, acts, out)
        } else if has_vnni() {
            vnni::rows::<Q4, N>(rows, nb, acts, out)
        } else {
            maddubs::rows::<Q4, N>(rows, nb, acts, out)
        }
    }

    pub unsafe fn q8<const N: usize>(rows: &[u8], nb: usize, acts: [Q8Row; N], out: Out) {
        if has_vnni() && N > 1 {
            wide::rows::<Q8, N>(rows, nb, acts, out)
        } else if has_vnni() {
            vnni::rows::<Q8, N>(rows, nb, acts, out)
        } else {
            maddubs::rows::<Q8, N>(rows, nb, acts, out)
        }
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Asks for the weights a few groups ahead (past a row's end they are the next row's):
    /// small matrices are read in short runs, too short for the hardware prefetcher to ramp up.
    #[inline(always)]
    unsafe fn prefetch<F: Format>(p: *const u8) {
        const AHEAD: usize = 4096;
        for line in (0..F::BYTES * GROUP).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(AHEAD + line) as *const i8);
        }
    }

    #[inline(always)]
    unsafe fn load_f16x8(p: *const u8) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    /// What the kernel needs to know of a weight format.
    pub(super) trait Format {
        /// Bytes per block.
        const BYTES: usize;
        /// Bytes of a full group's scales (and minimums).
        const SCALES: usize;
        /// Bytes of one block's quants in a tail group.
        const QUANTS: usize;
        /// Quants above 127: two products can overflow AVX2's 16-bit pair sums.
        const WIDE: bool;
        /// The 32 unsigned quants at `p`.
        unsafe fn quants(p: *const u8) -> __m256i;
        /// The eight blocks' minimums of a full group, from its start and its scales.
        unsafe fn minimums(group: *const u8, dw: __m256) -> __m256;
        /// One tail block's minimum.
        fn minimum(row: &[u8], at: &BlockAt, d: f32) -> f32;
        /// The activations' `d · Σ q` this format's minimum multiplies.
        fn offsets<'a>(a: &Q8Row<'a>) -> &'a [f32];
    }

    pub(super) struct Q4;
    pub(super) struct Q8;

    impl Format for Q4 {
        const BYTES: usize = Q4_BYTES;
        const SCALES: usize = 4 * GROUP;
        const QUANTS: usize = 16;
        const WIDE: bool = false;

        /// Low nibbles are the first 16 quants, high nibbles the next 16.
        #[inline(always)]
        unsafe fn quants(p: *const u8) -> __m256i {
            let qs = _mm_loadu_si128(p as *const __m128i);
            _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(qs, 4), qs),
                _mm256_set1_epi8(0x0F),
            )
        }
        #[inline(always)]
        unsafe fn minimums(group: *const u8, _: __m256) -> __m256 {
            load_f16x8(group.add(2 * GROUP))
        }
        fn minimum(row: &[u8], at: &BlockAt, _: f32) -> f32 {
            f16_at(row, at.m)
        }
        fn offsets<'a>(a: &Q8Row<'a>) -> &'a [f32] {
            a.s
        }
    }

    /// Quants are stored plus 128 (unsigned, as the multiply-add needs); the minimum `-128·d`
    /// takes the offset back off.
    impl Format for Q8 {
        const BYTES: usize = Q8_BYTES;
        const SCALES: usize = 2 * GROUP;
        const QUANTS: usize = 32;
        const WIDE: bool = true;

        #[inline(always)]
        unsafe fn quants(p: *const u8) -> __m256i {
            _mm256_loadu_si256(p as *const __m256i)
        }
        #[inline(always)]
        unsafe fn minimums(_: *const u8, dw: __m256) -> __m256 {
            _mm256_mul_ps(dw, _mm256_set1_ps(-128.0))
        }
        fn minimum(_: &[u8], _: &BlockAt, d: f32) -> f32 {
            -128.0 * d
        }
        fn offsets<'a>(a: &Q8Row<'a>) -> &'a [f32] {
            a.sum
        }
    }

    /// The kernel, written once over `$dot(acc, w, a)`: `acc` plus, per 32-bit lane, the sum of
    /// the four products of unsigned `w` and signed `a` bytes.
    macro_rules! kernels {
        ($name:ident, $features:literal, $dot:ident) => {
            pub(super) mod $name {
                use super::*;

                #[target_feature(enable = $features)]
                pub unsafe fn rows<F: Format, const N: usize>(
                    rows: &[u8],
                    nb: usize,
                    acts: [Q8Row; N],
                    out: Out,
                ) {
                    for (r, row) in rows.chunks_exact(nb * F::BYTES).enumerate() {
                        let sums = one_row::<F, N>(row, nb, &acts);
                        for (t, v) in sums.into_iter().enumerate() {
                            out.set(r, t, v);
                        }
                    }
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn one_row<F: Format, const N: usize>(
                    row: &[u8],
                    nb: usize,
                    acts: &[Q8Row; N],
                ) -> [f32; N] {
                    let full = nb / GROUP;
                    let mut acc = [_mm256_setzero_ps(); N];
                    for g in 0..full {
                        let base = row.as_ptr().add(g * GROUP * F::BYTES);
                        prefetch::<F>(base);
                        // Two partial sums per row halve the chain of dependent multiply-adds.
                        let mut p = [[_mm256_setzero_si256(); 2]; N];
                        let step = (F::BYTES * GROUP - F::SCALES) / GROUP;
                        for k in 0..GROUP {
                            let w = F::quants(base.add(F::SCALES + step * k));
                            for t in 0..N {
                                let x = acts[t].qs.as_ptr().add(g * GROUP * QK + 32 * k);
                                let x = _mm256_loadu_si256(x as *const __m256i);
                                p[t][k % 2] = $dot::<F>(p[t][k % 2], w, x);
                            }
                        }
                        let dw = load_f16x8(base);
                        let mw = F::minimums(base, dw);
                        for t in 0..N {
                            let sums = _mm256_cvtepi32_ps(_mm256_add_epi32(p[t][0], p[t][1]));
                            let da = _mm256_loadu_ps(acts[t].d.as_ptr().add(g * GROUP));
                            let sa = _mm256_loadu_ps(F::offsets(&acts[t]).as_ptr().add(g * GROUP));
                            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), sums, acc[t]);
                            acc[t] = _mm256_fmadd_ps(mw, sa, acc[t]);
                        }
                    }
                    let tail = tail::<F, N>(row, nb, acts);
                    std::array::from_fn(|t| hsum(acc[t]) + tail[t])
                }

                /// The blocks of a row's last, partial group, one at a time.
                #[target_feature(enable = $features)]
                #[inline]
                pub unsafe fn tail<F: Format, const N: usize>(
                    row: &[u8],
                    nb: usize,
                    acts: &[Q8Row; N],
                ) -> [f32; N] {
                    let full = nb / GROUP;
                    let mut tail = [0f32; N];
                    for i in full * GROUP..nb {
                        let at = block_at(nb, i, F::BYTES);
                        let d = f16_at(row, at.d);
                        let m = F::minimum(row, &at, d);
                        let w = F::quants(row.as_ptr().add(at.quants + F::QUANTS * at.j));
                        for t in 0..N {
                            let a = &acts[t];
                            let x = _mm256_loadu_si256(a.qs.as_ptr().add(i * QK) as *const __m256i);
                            let s =
                                hsum(_mm256_cvtepi32_ps($dot::<F>(_mm256_setzero_si256(), w, x)));
                            tail[t] += s * d * a.d[i] + m * F::offsets(a)[i];
                        }
                    }
                    tail
                }
            }
        };
    }

    /// AVX2: bytes multiply into saturating 16-bit pair sums, then pairs add into 32 bits. Wide
    /// quants multiply the even and odd bytes separately so a pair sum cannot overflow.
    #[inline(always)]
    unsafe fn dot_maddubs<F: Format>(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        let ones = _mm256_set1_epi16(1);
        let pairs = if F::WIDE {
            let even = _mm256_set1_epi16(0x00FF);
            let lo = _mm256_maddubs_epi16(_mm256_and_si256(w, even), a);
            let hi = _mm256_maddubs_epi16(_mm256_andnot_si256(even, w), a);
            _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones))
        } else {
            _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones)
        };
        _mm256_add_epi32(acc, pairs)
    }

    #[target_feature(enable = "avx512vnni,avx512vl")]
    #[inline]
    unsafe fn dot_vnni<F: Format>(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, w, a)
    }

    kernels!(maddubs, "avx2,fma,f16c", dot_maddubs);
    kernels!(vnni, "avx2,fma,f16c,avx512vnni,avx512vl", dot_vnni);

    /// Several activation rows (batched decoding, prompts): 512-bit multiply-adds take two of a
    /// group's eight quant vectors at once, halving the integer work per token, which is what
    /// bounds a batch (one row is bound by reading the weights, and keeps the 256-bit kernel).
    pub(super) mod wide {
        use super::*;

        /// Quant vectors `k` and `k + 1` of a full group as one 512-bit vector, in the order
        /// the activations have them.
        #[target_feature(enable = "avx2,avx512f,avx512bw")]
        #[inline]
        unsafe fn quant_pair<F: Format>(p: *const u8) -> __m512i {
            if F::WIDE {
                _mm512_loadu_si512(p as *const __m512i)
            } else {
                // Two 16-byte Q4 vectors: low nibbles then high nibbles of each.
                let qs = _mm256_loadu_si256(p as *const __m256i);
                let mask = _mm256_set1_epi8(0x0F);
                let lo = _mm256_and_si256(qs, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16(qs, 4), mask);
                let z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                // [lo k, lo k+1, hi k, hi k+1] → [lo k, hi k, lo k+1, hi k+1]
                _mm512_shuffle_i64x2(z, z, 0b11_01_10_00)
            }
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
        pub unsafe fn rows<F: Format, const N: usize>(
            rows: &[u8],
            nb: usize,
            acts: [Q8Row; N],
            out: Out,
        ) {
            let full = nb / GROUP;
            let step = (F::BYTES * GROUP - F::SCALES) / GROUP;
            for (r, row) in rows.chunks_exact(nb * F::BYTES).enumerate() {
                let mut acc = [_mm256_setzero_ps(); N];
                for g in 0..full {
                    let base = row.as_ptr().add(g * GROUP * F::BYTES);
                    prefetch::<F>(base);
                    let mut p = [_mm512_setzero_si512(); N];
                    for k in (0..GROUP).step_by(2) {
                        let w = quant_pair::<F>(base.add(F::SCALES + step * k));
                        for t in 0..N {
                            let x = acts[t].qs.as_ptr().add(g * GROUP * QK + 32 * k);
                            let x = _mm512_loadu_si512(x as *const __m512i);
                            p[t] = _mm512_dpbusd_epi32(p[t], w, x);
                        }
                    }
                    let dw = load_f16x8(base);
                    let mw = F::minimums(base, dw);
                    for t in 0..N {
                        let halves = _mm256_add_epi32(
                            _mm512_castsi512_si256(p[t]),
                            _mm512_extracti64x4_epi64(p[t], 1),
                        );
                        let sums = _mm256_cvtepi32_ps(halves);
                        let da = _mm256_loadu_ps(acts[t].d.as_ptr().add(g * GROUP));
                        let sa = _mm256_loadu_ps(F::offsets(&acts[t]).as_ptr().add(g * GROUP));
                        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), sums, acc[t]);
                        acc[t] = _mm256_fmadd_ps(mw, sa, acc[t]);
                    }
                }
                // The tail group, block by block, as the 256-bit kernel does.
                let tail = vnni::tail::<F, N>(row, nb, &acts);
                for t in 0..N {
                    out.set(r, t, hsum(acc[t]) + tail[t]);
                }
            }
        }
    }
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
            let x: Vec<f32> = (0..4 * nb * QK)
                .map(|i| ((i * 37) % 101) as f32 / 7.0 - 7.0)
                .collect();
            let acts = Q8Rows::new(&x, nb * QK);
            let a = [acts.row(0), acts.row(1), acts.row(2), acts.row(3)];
            for (bytes, seed) in [(Q4_BYTES, 1u32), (Q8_BYTES, 2)] {
                // Two rows, so the row loop and the output steps are exercised too.
                let w = [row(nb, bytes, seed), row(nb, bytes, seed + 10)].concat();
                let mut want = [0f32; 8];
                let out = Out::new(&mut want, 4, 1);
                match bytes {
                    Q4_BYTES => portable::q4::<4>(&w, nb, a, out),
                    _ => portable::q8::<4>(&w, nb, a, out),
                }
                let mut got = [0f32; 8];
                let out = Out::new(&mut got, 4, 1);
                match bytes {
                    Q4_BYTES => q4::<4>(&w, nb, a, out),
                    _ => q8::<4>(&w, nb, a, out),
                }
                let mut one = [0f32; 2];
                let out = Out::new(&mut one, 1, 1);
                match bytes {
                    Q4_BYTES => q4::<1>(&w, nb, [a[2]], out),
                    _ => q8::<1>(&w, nb, [a[2]], out),
                }
                assert_eq!(
                    [one[0], one[1]],
                    [got[2], got[6]],
                    "a tile of one equals the same row in a tile of four"
                );
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "{bytes}-byte blocks, nb {nb}: {g} vs {w}"
                    );
                }
                // The AVX2 path for CPUs without VNNI, whichever this one is: its integer sums
                // are exact, so it must agree with the dispatched kernel bit for bit.
                #[cfg(all(
                    target_arch = "x86_64",
                    target_feature = "avx2",
                    target_feature = "fma"
                ))]
                {
                    let mut plain = [0f32; 8];
                    let out = Out::new(&mut plain, 4, 1);
                    // SAFETY: AVX2, FMA and F16C are enabled for the whole build.
                    unsafe {
                        match bytes {
                            Q4_BYTES => avx2::maddubs::rows::<avx2::Q4, 4>(&w, nb, a, out),
                            _ => avx2::maddubs::rows::<avx2::Q8, 4>(&w, nb, a, out),
                        }
                    }
                    assert_eq!(
                        plain, got,
                        "{bytes}-byte blocks, nb {nb}: AVX2 without VNNI"
                    );
                }
            }
        }
    }

    #[test]
    fn layout_uses_every_byte_once() {
        for (nb, bytes) in [
            (18usize, Q4_BYTES),
            (18, Q8_BYTES),
            (5, Q4_BYTES),
            (8, Q8_BYTES),
        ] {
            // Count nibbles: each byte has two.
            let mut used = vec![0u8; nb * bytes * 2];
            let mark = |used: &mut Vec<u8>, byte: usize, n: usize| {
                used[2 * byte..2 * (byte + n)]
                    .iter_mut()
                    .for_each(|u| *u += 1)
            };
            for i in 0..nb {
                let at = block_at(nb, i, bytes);
                mark(&mut used, at.d, 2);
                if bytes == Q4_BYTES {
                    mark(&mut used, at.m, 2);
                }
                for e in 0..QK {
                    if bytes == Q4_BYTES {
                        let (off, high) = nibble_at(at.r, at.j, e);
                        used[2 * (at.quants + off) + high as usize] += 1;
                    } else {
                        mark(&mut used, at.quants + quant_offset(at.r, at.j, e), 1);
                    }
                }
            }
            assert!(used.iter().all(|&u| u == 1), "{nb} blocks of {bytes} bytes");
        }
    }
}
