use alignscope::lm::kernels::{matmul, QuantMatrix};
use std::time::Instant;
fn main() {
    let rows: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(3072); let cols: usize = std::env::args().nth(3).map(|s| s.parse().unwrap()).unwrap_or(576);
    let dense: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let w = QuantMatrix::quantize_q8(rows, cols, &dense);
    // make a q4 copy by a hacky route: use from_qtensor
    let t = candle_core::Tensor::from_vec(dense.clone(), (rows, cols), &candle_core::Device::Cpu).unwrap();
    let q = candle_core::quantized::QTensor::quantize(&t, candle_core::quantized::GgmlDType::Q4_1).unwrap();
    let w4 = QuantMatrix::from_qtensor(&q).unwrap();
    let threads: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        for (name, w) in [("q8", &w), ("q4", &w4)] {
            for m in [1usize, 4, 10] {
                let x: Vec<f32> = (0..m * cols).map(|i| (i % 13) as f32 - 6.0).collect();
                let mut out = vec![0f32; m * rows];
                let iters = (2000 / m * 3072 / rows).max(3);
                let t = Instant::now();
                for _ in 0..iters {
                    matmul(&[w], &x, &mut out);
                }
                let s = t.elapsed().as_secs_f64() / iters as f64;
                let blocks = (rows * cols / 32 * m) as f64;
                println!("{name} m={m}: {:.1} µs/call, {:.2} GB/s weights, {:.2} ns per block-token", s * 1e6, w.size_bytes() as f64 / s / 1e9, s * 1e9 / blocks);
            }
        }
    });
}
