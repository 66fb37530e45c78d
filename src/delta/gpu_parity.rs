//! The WGSL kernels of `crate::gpu` against the CPU kernels, bit for bit (on whatever adapter
//! wgpu finds; llvmpipe here).

use super::kernels;
use crate::counter_rng::{drop_threshold, MaskKey};
use crate::gpu::DeltaGpu;
use rand::{rngs::StdRng, Rng, SeedableRng};

// Callers share one DeltaGpu across threads (e.g. rayon over tensors).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<DeltaGpu>();
};

fn gpu() -> Option<DeltaGpu> {
    match DeltaGpu::new() {
        Ok(Some(g)) => {
            eprintln!("gpu: {}", g.describe());
            Some(g)
        }
        Ok(None) => {
            eprintln!("gpu: no adapter, skipping");
            None
        }
        Err(e) => panic!("an adapter exists but the device failed: {e:#}"),
    }
}

/// Weights of transformer-like magnitude and deltas of mixed signs spanning 10⁻⁶..0.3, so
/// that d·s is often comparable to b and `b + d·s` with and without FMA differ in many
/// elements (with only tiny deltas the product's rounding error rarely shows in the sum).
fn tensors(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let base: Vec<f32> = (0..n).map(|_| rng.random_range(-0.2f32..0.2)).collect();
    let ft = base
        .iter()
        .map(|&b| {
            let d = 10f32.powf(rng.random_range(-6.0..-0.5));
            if rng.random() {
                b + d
            } else {
                b - d
            }
        })
        .collect();
    (base, ft)
}

fn assert_bits_eq(gpu: &[f32], cpu: &[f32], what: &str) {
    let bad: Vec<usize> = (0..cpu.len())
        .filter(|&i| gpu[i].to_bits() != cpu[i].to_bits())
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} differ; first at {}: gpu {:e} cpu {:e}",
        bad.len(),
        cpu.len(),
        bad[0],
        gpu[bad[0]],
        cpu[bad[0]]
    );
}

#[test]
fn gpu_kernels_match_cpu_bit_for_bit() {
    let Some(mut g) = gpu() else { return };
    let n = 300_000;
    let (base, ft) = tensors(n, 1);
    let key = MaskKey::new(42, "model.layers.3.mlp.down_proj.weight");
    let (mut cpu, mut out) = (vec![0f32; n], vec![0f32; n]);
    // The data must be able to expose FMA contraction: b + round(d·s) ≠ fma(d, s, b) often.
    let fused = (0..n)
        .filter(|&i| {
            let d = ft[i] - base[i];
            (base[i] + d * 10.0).to_bits() != d.mul_add(10.0, base[i]).to_bits()
        })
        .count();
    eprintln!("{fused} of {n} elements differ between b + d*10 and fma(d, 10, b)");
    assert!(
        fused > n / 100,
        "only {fused} elements are sensitive to contraction"
    );
    // Default chunking, then tiny chunks (not a multiple of WG, nor aligned to 2³²) so the
    // splitting by size and at the high-word boundary is exercised too.
    for max_chunk in [g.max_chunk, 65_536 + 3 * 256 + 17] {
        g.max_chunk = max_chunk;
        // 2³² − 100 000: the high word changes inside the range.
        for first_index in [0, (1u64 << 32) - 100_000, 7 << 32] {
            for p in [0.0, 0.1, 0.5, 0.9, 0.999, 1.0] {
                let t = drop_threshold(p);
                let scale = if p < 1.0 {
                    (1.0 / (1.0 - p)) as f32
                } else {
                    1.0
                };
                kernels::drop_and_rescale(&base, &ft, key, first_index, t, scale, &mut cpu);
                out.fill(f32::NAN);
                g.drop_and_rescale(&base, &ft, key, first_index, t, scale, &mut out)
                    .unwrap();
                let what = format!("drop p={p} first={first_index} chunk={max_chunk}");
                assert_bits_eq(&out, &cpu, &what);
            }
        }
        for min_abs in [0.0, 1e-4, 1e-3, 5e-3, f32::INFINITY] {
            kernels::magnitude_threshold(&base, &ft, min_abs, &mut cpu);
            out.fill(f32::NAN);
            g.magnitude_threshold(&base, &ft, min_abs, &mut out)
                .unwrap();
            assert_bits_eq(
                &out,
                &cpu,
                &format!("magnitude {min_abs} chunk={max_chunk}"),
            );
        }
    }
    // Empty input and a length mismatch: no GPU work, an error rather than a panic.
    g.drop_and_rescale(&[], &[], key, 0, drop_threshold(0.5), 2.0, &mut [])
        .unwrap();
    assert!(g
        .magnitude_threshold(&base, &ft[1..], 0.0, &mut out)
        .is_err());
}
