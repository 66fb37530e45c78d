//! `alignscope bench ot`: our exact solver and log-domain Sinkhorn against POT's `ot.emd` and
//! `ot.sinkhorn(method="sinkhorn_log")` on the same n×n problems in the same run, with the
//! costs and plans compared.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Args;

use crate::fusion::emd::emd;
use crate::fusion::ot::{sinkhorn_log, SinkhornOptions};

#[derive(Args, Debug)]
pub struct OtBenchArgs {
    #[arg(long, value_delimiter = ',', default_values_t = vec![256, 1024, 4096])]
    sizes: Vec<usize>,
    /// The regulariser (the fusion code's default for activation costs is 0.08).
    #[arg(long, default_value_t = 0.08)]
    reg: f64,
    /// A Python with POT installed; POT is skipped when it cannot run.
    #[arg(long, default_value = "python3")]
    python: String,
}

/// POT on the problem in `dir` (cost.f64, n): prints the Sinkhorn seconds, the EMD seconds
/// and the EMD cost; writes the Sinkhorn plan to plan.f64.
const POT_SCRIPT: &str = r#"
import sys, time, numpy as np, ot
d, n, reg = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
M = np.fromfile(d + "/cost.f64", dtype="<f8").reshape(n, n)
a = np.full(n, 1.0 / n)
t = time.perf_counter()
T = ot.sinkhorn(a, a, M, reg, method="sinkhorn_log", numItermax=1000, stopThr=1e-9)
s = time.perf_counter() - t
T.astype("<f8").tofile(d + "/plan.f64")
t = time.perf_counter()
c = ot.emd2(a, a, M, numItermax=100_000_000)
print(s, time.perf_counter() - t, repr(float(c)))
"#;

/// What POT reported.
struct Pot {
    sinkhorn_secs: f64,
    emd_secs: f64,
    emd_cost: f64,
    plan: Vec<f64>,
}

/// Euclidean distances between two clouds of random 16-d points, normalised by the maximum.
fn problem(n: usize) -> Vec<f64> {
    let key = crate::counter_rng::MaskKey::new(n as u64, "ot-bench");
    let r = |i: usize| key.bits(i as u64) as f64 / u32::MAX as f64 - 0.5;
    let x: Vec<f64> = (0..n * 16).map(r).collect();
    let y: Vec<f64> = (0..n * 16).map(|i| r(n * 16 + i) + 0.1).collect();
    let mut c: Vec<f64> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            (0..16)
                .map(|d| (x[i * 16 + d] - y[j * 16 + d]).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let max = c.iter().copied().fold(0.0, f64::max);
    c.iter_mut().for_each(|v| *v /= max);
    c
}

fn pot(args: &OtBenchArgs, dir: &Path, n: usize, cost: &[f64]) -> Result<Pot> {
    let mut f = std::fs::File::create(dir.join("cost.f64"))?;
    f.write_all(
        &cost
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    let out = Command::new(&args.python)
        .args(["-c", POT_SCRIPT])
        .arg(dir)
        .arg(n.to_string())
        .arg(args.reg.to_string())
        .output()
        .with_context(|| format!("cannot run {}", args.python))?;
    ensure!(
        out.status.success(),
        "POT failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<f64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    ensure!(nums.len() == 3, "unexpected POT output {text:?}");
    let plan = std::fs::read(dir.join("plan.f64"))?
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    Ok(Pot {
        sinkhorn_secs: nums[0],
        emd_secs: nums[1],
        emd_cost: nums[2],
        plan,
    })
}

pub fn run(args: OtBenchArgs) -> Result<()> {
    let dir = crate::fs::ScratchDir::new()?;
    println!(
        "| n | Sinkhorn ours s | POT s | POT ÷ ours | max \\|T − T_POT\\| | EMD ours s | pivots | POT s | POT ÷ ours | cost rel. diff |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for &n in &args.sizes {
        let cost = problem(n);
        let a = vec![1.0 / n as f64; n];
        let started = Instant::now();
        let soft = sinkhorn_log(&a, &a, &cost, args.reg, SinkhornOptions::default())?;
        let soft_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let hard = emd(&a, &a, &cost, usize::MAX)?;
        let hard_secs = started.elapsed().as_secs_f64();
        let pot_cols = match pot(&args, dir.path(), n, &cost) {
            Ok(p) => {
                let d = soft
                    .plan
                    .t
                    .iter()
                    .zip(&p.plan)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                [
                    format!("{:.3}", p.sinkhorn_secs),
                    format!("{:.2}", p.sinkhorn_secs / soft_secs),
                    format!("{d:.1e}"),
                    format!("{:.3}", p.emd_secs),
                    format!("{:.2}", p.emd_secs / hard_secs),
                    format!("{:.1e}", (hard.cost - p.emd_cost).abs() / p.emd_cost),
                ]
            }
            Err(e) => {
                eprintln!("POT skipped: {e:#}");
                std::array::from_fn(|_| "–".to_string())
            }
        };
        println!(
            "| {n} | {soft_secs:.3} | {} | {} | {} | {hard_secs:.3} | {} | {} | {} | {} |",
            pot_cols[0],
            pot_cols[1],
            pot_cols[2],
            hard.pivots,
            pot_cols[3],
            pot_cols[4],
            pot_cols[5]
        );
    }
    Ok(())
}
