//! `alignscope bench gan`: the GAN lab's speed on this machine — samples/s of the source
//! generator, adaptation steps/s of GenDA, fine-tuning and FreezeD (batch 16), and one 3×3
//! convolution layer forward and backward, ours (channels last, im2col) against candle's
//! conv2d, measured in the same run.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use clap::Args;
use rand::SeedableRng;
use serde::Serialize;

use crate::gan::adapt::{adapt, AdaptRequest, Method, Target};
use crate::gan::faces::Domain;
use crate::gan::pretrain::{latents, Gan};

#[derive(Args, Debug)]
pub struct GanBenchArgs {
    /// Images sampled.
    #[arg(long, default_value_t = 512)]
    samples: usize,
    /// Adaptation steps timed per method.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    what: String,
    per_second: f64,
    /// Time of one item against one sample.
    vs_sample: f64,
}

/// Seconds per forward + backward pass of a 32×32, 32 → 32 channel, batch 16 layer.
fn conv_seconds(ours: bool) -> Result<f64> {
    let dev = Device::Cpu;
    let (b, s, c) = (16, 32, 32);
    let reps = 10;
    let mut total = 0.0;
    for rep in 0..reps + 1 {
        let started = Instant::now();
        if ours {
            let x = Var::randn(0f32, 1.0, (b, s, s, c), &dev)?;
            let w = Var::randn(0f32, 0.05, (c, 9 * c), &dev)?;
            let bias = Tensor::zeros(c, candle_core::DType::F32, &dev)?;
            let y = crate::gan::conv::conv(x.as_tensor(), w.as_tensor(), &bias)?;
            y.sqr()?.sum_all()?.backward()?;
        } else {
            let x = Var::randn(0f32, 1.0, (b, c, s, s), &dev)?;
            let w = Var::randn(0f32, 0.05, (c, c, 3, 3), &dev)?;
            let y = x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1)?;
            y.sqr()?.sum_all()?.backward()?;
        }
        // The first pass warms the allocator and thread pool.
        if rep > 0 {
            total += started.elapsed().as_secs_f64();
        }
    }
    Ok(total / reps as f64)
}

pub fn run(args: GanBenchArgs) -> Result<()> {
    let gan = Gan::load(&crate::gan::source_dir(), true)?;
    let n = args.samples.max(64);
    let z = latents(&mut rand::rngs::StdRng::seed_from_u64(1), n, gan.cfg.latent)?;
    gan.sample(&z.narrow(0, 0, 16)?, 1.0)?;
    let started = Instant::now();
    for chunk in 0..n / 64 {
        gan.sample(&z.narrow(0, chunk * 64, 64)?, 1.0)?;
    }
    let sample_rate = (n / 64 * 64) as f64 / started.elapsed().as_secs_f64();
    let mut rows = vec![Row {
        what: "samples of the source generator (batch 64)".into(),
        per_second: sample_rate,
        vs_sample: 1.0,
    }];
    let steps = args.steps.max(3);
    for &method in Method::ALL.iter() {
        let mut request = AdaptRequest::new(method, Target::domain(Domain::Sunglasses));
        request.steps = steps;
        request.preview_every = 0;
        let mut seconds = Vec::new();
        adapt(&request, &mut |s| {
            seconds.push(s.seconds);
            Ok(())
        })?;
        // From the end of the first step: loading and warm-up excluded.
        let per_step = (seconds[steps - 1] - seconds[0]) / (steps - 1) as f64;
        rows.push(Row {
            what: format!("{} steps (batch {})", method.name(), request.batch),
            per_second: 1.0 / per_step,
            vs_sample: per_step * sample_rate,
        });
    }
    for (ours, what) in [(false, "candle conv2d"), (true, "ours, channels last")] {
        let seconds = conv_seconds(ours)?;
        rows.push(Row {
            what: format!("3×3 conv 32→32 at 32×32, batch 16, fwd+bwd: {what}"),
            per_second: 1.0 / seconds,
            vs_sample: seconds * sample_rate,
        });
    }
    if args.json {
        return super::print_json(&rows);
    }
    println!("{:<62} {:>10} {:>10}", "", "per s", "× sample");
    for r in &rows {
        println!(
            "{:<62} {:>10.1} {:>10.1}",
            r.what, r.per_second, r.vs_sample
        );
    }
    Ok(())
}
