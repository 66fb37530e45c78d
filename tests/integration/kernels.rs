//! Our quantised matrix products against candle's `QMatMul` on the same GGML tensors.

use alignscope::lm::kernels::{matmul, QuantMatrix};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

fn pseudo_random(n: usize, seed: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * scale)
        .collect()
}

#[test]
fn quantised_products_equal_candles() {
    // 576 columns: two full groups of eight blocks and a tail of two; 13 rows and 11 tokens
    // exercise partial tasks and every tile size.
    let (rows, cols, tokens) = (13usize, 576usize, 11usize);
    let w = Tensor::from_vec(
        pseudo_random(rows * cols, 1, 0.2),
        (rows, cols),
        &Device::Cpu,
    )
    .unwrap();
    let x = pseudo_random(tokens * cols, 2, 6.0);
    let xt = Tensor::from_vec(x.clone(), (tokens, cols), &Device::Cpu).unwrap();
    // candle multiplies Q4_1 rows by `q8_1` activations, like ours; its Q4_0 uses `q8_0`
    // activations (no f16-rounded sums), a slightly different rounding.
    for (dtype, tolerance) in [
        (GgmlDType::Q4_1, 1e-5),
        (GgmlDType::Q8_0, 1e-5),
        (GgmlDType::Q4_0, 2e-3),
    ] {
        let q = QTensor::quantize(&w, dtype).unwrap();
        let ours = QuantMatrix::from_qtensor(&q).unwrap();
        let mut out = vec![0f32; tokens * rows];
        matmul(std::slice::from_ref(&ours), &x, &mut out);
        let mm = QMatMul::from_qtensor(q).unwrap();
        for t in 0..tokens {
            // One row at a time: candle's single-row path is the 8-bit one.
            let theirs: Vec<f32> = mm
                .forward(&xt.narrow(0, t, 1).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (r, want) in theirs.iter().enumerate() {
                let got = out[t * rows + r];
                assert!(
                    (got - want).abs() <= tolerance * want.abs().max(1.0),
                    "{dtype:?} token {t} row {r}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn fused_parts_equal_separate_products_and_other_types_requantise() {
    let cols = 64;
    let a = QuantMatrix::quantize_q8(5, cols, &pseudo_random(5 * cols, 3, 1.0));
    let b = QuantMatrix::from_f32(3, cols, pseudo_random(3 * cols, 4, 1.0));
    let x = pseudo_random(2 * cols, 5, 2.0);
    let mut fused = vec![0f32; 2 * 8];
    matmul(&[a.clone(), b.clone()], &x, &mut fused);
    let (mut ya, mut yb) = (vec![0f32; 2 * 5], vec![0f32; 2 * 3]);
    matmul(std::slice::from_ref(&a), &x, &mut ya);
    matmul(std::slice::from_ref(&b), &x, &mut yb);
    for t in 0..2 {
        assert_eq!(&fused[t * 8..t * 8 + 5], &ya[t * 5..t * 5 + 5]);
        assert_eq!(&fused[t * 8 + 5..t * 8 + 8], &yb[t * 3..t * 3 + 3]);
    }
    // A K-quant has no kernel here: it is requantised to Q8 (within Q8's rounding of the
    // dequantised weights).
    let w = Tensor::from_vec(pseudo_random(4 * 256, 6, 0.2), (4, 256), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
    let dense: Vec<f32> = q
        .dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let m = QuantMatrix::from_qtensor(&q).unwrap();
    assert_eq!(m.format(), "q8");
    let mut row = vec![0f32; 256];
    for r in 0..4 {
        m.row_f32(r, &mut row);
        for (got, want) in row.iter().zip(&dense[r * 256..(r + 1) * 256]) {
            // Half a Q8 step of a block whose largest weight is at most 0.1.
            assert!((got - want).abs() <= 0.1 / 254.0 + 1e-6, "{got} vs {want}");
        }
    }
}
