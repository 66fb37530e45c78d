//! Weight matrices in the formats our kernels read, and the parallel matrix product.
//!
//! GGUF's Q4_0 and Q4_1 are repacked at load into one 4-bit format (Q4_0's `-8` offset becomes
//! a Q4_1 minimum of `-8·d`, which is exact in f16), Q8_0 into an 8-bit one, both with scales
//! grouped per eight blocks ([`dot`] says how); float weights stay f32, and
//! every other GGML type (the K-quants, f16, bf16) is dequantised and requantised to Q8_0 —
//! about a tenth of the error the K-quant itself carries. Activations are quantised to 8 bits
//! per block of 32 (ggml's `q8_1`) and multiplied with integer SIMD dot products.

pub mod dot;
pub mod q8;

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;
use rayon::prelude::*;

use dot::{block_at, Out, Q4_BYTES, Q8_BYTES, TILE};
use q8::{Q8Row, Q8Rows, QK};

#[derive(Debug, Clone)]
enum Data {
    Q4(Vec<u8>),
    Q8(Vec<u8>),
    F32(Vec<f32>),
}

/// A `[rows, cols]` weight matrix (a linear layer's `[out, in]`).
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    rows: usize,
    cols: usize,
    data: Data,
}

impl QuantMatrix {
    pub fn from_f32(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        Self {
            rows,
            cols,
            data: Data::F32(data),
        }
    }

    /// Repacks a GGML tensor of shape `[rows, cols]`.
    pub fn from_qtensor(t: &QTensor) -> candle_core::Result<Self> {
        let (rows, cols) = t.shape().dims2()?;
        let raw = t.data()?;
        let nb = cols / QK;
        let data = match t.dtype() {
            GgmlDType::Q4_1 => Data::Q4(pack(rows, nb, Q4_BYTES, |i| {
                let b = &raw[i * 20..(i + 1) * 20];
                ([b[0], b[1]], [b[2], b[3]], nibbles(&b[4..]))
            })),
            GgmlDType::Q4_0 => Data::Q4(pack(rows, nb, Q4_BYTES, |i| {
                let b = &raw[i * 18..(i + 1) * 18];
                let m = f16::from_f32(-8.0 * f16::from_le_bytes([b[0], b[1]]).to_f32());
                ([b[0], b[1]], m.to_le_bytes(), nibbles(&b[2..]))
            })),
            GgmlDType::Q8_0 => Data::Q8(pack(rows, nb, Q8_BYTES, |i| {
                let b = &raw[i * 34..(i + 1) * 34];
                ([b[0], b[1]], [0, 0], b[2..].try_into().expect("32 quants"))
            })),
            GgmlDType::F32 => Data::F32(
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            _ => {
                let dense = t
                    .dequantize(&candle_core::Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                return Ok(Self::quantize_q8(rows, cols, &dense));
            }
        };
        Ok(Self { rows, cols, data })
    }

    /// Quantises f32 weights to Q8 (ggml's `q8_0` rounding), for types without a kernel here.
    pub fn quantize_q8(rows: usize, cols: usize, dense: &[f32]) -> Self {
        let block = |i: usize| {
            let x = &dense[i * QK..(i + 1) * QK];
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let qs = std::array::from_fn(|e| (x[e] * id).round() as i8 as u8);
            (f16::from_f32(d).to_le_bytes(), [0, 0], qs)
        };
        Self {
            rows,
            cols,
            data: Data::Q8(pack(rows, cols / QK, Q8_BYTES, block)),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> &'static str {
        match self.data {
            Data::Q4(_) => "q4",
            Data::Q8(_) => "q8",
            Data::F32(_) => "f32",
        }
    }

    fn quantized(&self) -> bool {
        !matches!(self.data, Data::F32(_))
    }

    /// Row `r` as f32 (embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let c = self.cols;
        match &self.data {
            Data::F32(w) => out.copy_from_slice(&w[r * c..(r + 1) * c]),
            Data::Q4(w) => {
                let nb = c / QK;
                let row = &w[r * nb * Q4_BYTES..(r + 1) * nb * Q4_BYTES];
                for (i, o) in out.chunks_exact_mut(QK).enumerate() {
                    let at = block_at(nb, i, Q4_BYTES);
                    let (d, m) = (dot::f16_at(row, at.d), dot::f16_at(row, at.m));
                    for (e, v) in o.iter_mut().enumerate() {
                        *v = dot::q4_quant(row, nb, i, e) as f32 * d + m;
                    }
                }
            }
            Data::Q8(w) => {
                let nb = c / QK;
                let row = &w[r * nb * Q8_BYTES..(r + 1) * nb * Q8_BYTES];
                for (i, o) in out.chunks_exact_mut(QK).enumerate() {
                    let d = dot::f16_at(row, block_at(nb, i, Q8_BYTES).d);
                    for (e, v) in o.iter_mut().enumerate() {
                        *v = dot::q8_quant(row, nb, i, e) as f32 * d;
                    }
                }
            }
        }
    }

    /// Rows `rows` times activation rows `t0..t0 + n` (n ≤ TILE = 8); `out` has its origin at
    /// (the first of `rows`, `t0`).
    fn dot_rows(
        &self,
        rows: std::ops::Range<usize>,
        x: &Activations,
        t0: usize,
        n: usize,
        out: Out,
    ) {
        use dot::{f32_rows, q4, q8};
        let (k, nb) = (self.cols, self.cols / QK);
        macro_rules! tile {
            ($kernel:ident, $w:expr, $row_len:expr, $width:expr, $get:expr) => {{
                let w = &$w[rows.start * $row_len..rows.end * $row_len];
                match n {
                    1 => $kernel::<1>(w, $width, std::array::from_fn(|t| $get(t0 + t)), out),
                    2 => $kernel::<2>(w, $width, std::array::from_fn(|t| $get(t0 + t)), out),
                    3 => $kernel::<3>(w, $width, std::array::from_fn(|t| $get(t0 + t)), out),
                    4 => $kernel::<4>(w, $width, std::array::from_fn(|t| $get(t0 + t)), out),
                    5 => $kernel::<5>(w, $width, std::array::from_fn(|t| $get(t0 + t)), out),
                    6 => $kernel::<6>(w, $width, std::array::from_fn(|t| $get(t0 + t)), out),
                    7 => $kernel::<7>(w, $width, std::array::from_fn(|t| $get(t0 + t)), out),
                    _ => $kernel::<8>(w, $width, std::array::from_fn(|t| $get(t0 + t)), out),
                }
            }};
        }
        // Rows are `$row_len` elements of the storage; kernels take the width in blocks
        // (quantised) or floats.
        match &self.data {
            Data::Q4(w) => tile!(q4, w, nb * Q4_BYTES, nb, |t| x.q8_row(t)),
            Data::Q8(w) => tile!(q8, w, nb * Q8_BYTES, nb, |t| x.q8_row(t)),
            Data::F32(w) => tile!(f32_rows, w, k, k, |t| x.f32_row(t)),
        }
    }
}

/// Activation rows `[m, k]` in f32 and, when a quantised matrix will read them, in 8 bits.
struct Activations<'a> {
    x: &'a [f32],
    k: usize,
    q8: Option<Q8Rows>,
}

impl<'a> Activations<'a> {
    fn new(x: &'a [f32], k: usize, quantize: bool) -> Self {
        let q8 = quantize.then(|| Q8Rows::new(x, k));
        Self { x, k, q8 }
    }

    fn rows(&self) -> usize {
        self.x.len() / self.k
    }

    fn q8_row(&self, t: usize) -> Q8Row<'_> {
        self.q8
            .as_ref()
            .expect("activations are quantised for quantised weights")
            .row(t)
    }

    fn f32_row(&self, t: usize) -> &[f32] {
        &self.x[t * self.k..(t + 1) * self.k]
    }
}

/// `out[t, offset(p) + r] = parts[p].row(r) · x[t]`: several matrices reading the same input
/// (q, k and v; gate and up) run as one parallel product. `out` is `[m, Σ rows]`.
pub fn matmul(parts: &[QuantMatrix], x: &[f32], out: &mut [f32]) {
    let k = parts[0].cols;
    assert!(
        parts.iter().all(|p| p.cols == k),
        "fused matrices differ in width"
    );
    let quantize = parts.iter().any(|p| p.quantized());
    for p in parts {
        assert!(
            !p.quantized() || k.is_multiple_of(QK),
            "quantised rows must be a multiple of {QK} wide"
        );
    }
    let acts = Activations::new(x, k, quantize);
    let m = acts.rows();
    let n: usize = parts.iter().map(|p| p.rows).sum();
    assert_eq!(out.len(), m * n, "output does not match [tokens, rows]");

    // Each task owns a run of rows of one matrix and writes their column of `out` directly.
    let per_task = (n / (rayon::current_num_threads() * 8)).clamp(4, 64);
    let out = Out::new(out, 1, n);
    let mut tasks = Vec::new();
    let mut first = 0;
    for part in parts {
        for r0 in (0..part.rows).step_by(per_task) {
            tasks.push((part, r0..(r0 + per_task).min(part.rows), first + r0));
        }
        first += part.rows;
    }
    tasks.into_par_iter().for_each(|(part, rows, column)| {
        for t0 in (0..m).step_by(TILE) {
            let len = TILE.min(m - t0);
            part.dot_rows(rows.clone(), &acts, t0, len, out.at(column, t0));
        }
    });
}

/// Lays out `rows` rows of `nb` blocks in the grouped form the kernels read; `block(i)` gives
/// the f16 scale, the f16 minimum (ignored for Q8) and the 32 quants (4-bit values for Q4,
/// signed bytes for Q8) of the `i`-th block overall.
fn pack(
    rows: usize,
    nb: usize,
    bytes: usize,
    block: impl Fn(usize) -> ([u8; 2], [u8; 2], [u8; QK]),
) -> Vec<u8> {
    let mut out = vec![0u8; rows * nb * bytes];
    for (r, row) in out.chunks_exact_mut(nb * bytes).enumerate() {
        for i in 0..nb {
            let (d, m, qs) = block(r * nb + i);
            let at = block_at(nb, i, bytes);
            row[at.d..at.d + 2].copy_from_slice(&d);
            if bytes == Q4_BYTES {
                row[at.m..at.m + 2].copy_from_slice(&m);
            }
            for (e, q) in qs.into_iter().enumerate() {
                if bytes == Q4_BYTES {
                    let (off, high) = dot::nibble_at(at.r, at.j, e);
                    row[at.quants + off] |= if high { q << 4 } else { q };
                } else {
                    row[at.quants + dot::quant_offset(at.r, at.j, e)] = q ^ 0x80;
                }
            }
        }
    }
    out
}

/// The 32 4-bit values of a GGML Q4 block's 16 bytes (low nibbles first).
fn nibbles(qs: &[u8]) -> [u8; QK] {
    std::array::from_fn(|e| {
        if e < 16 {
            qs[e] & 0x0F
        } else {
            qs[e - 16] >> 4
        }
    })
}
