//! `alignscope bench caption`: the caption lab's speed on this machine — captions per second
//! of the base captioner by greedy, beam (5) and sampled decoding, retrieval scoring, and
//! DiscriTune steps per second (a batch of 100: sample, reward, update), with ratios against
//! greedy captioning measured in the same run.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use rand::SeedableRng;
use serde::Serialize;

use crate::caption::build::Part;
use crate::caption::captioner::{Captioner, Decoding};
use crate::caption::discritune::{discritune, DiscriTuneRequest};
use crate::caption::eval::{captions, precision, test_scenes};
use crate::caption::retriever::Retriever;
use crate::caption::scenes::Domain;

#[derive(Args, Debug)]
pub struct CaptionBenchArgs {
    /// Test scenes captioned per decoding.
    #[arg(long, default_value_t = 500)]
    scenes: usize,
    /// DiscriTune steps timed.
    #[arg(long, default_value_t = 12)]
    steps: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    what: String,
    per_second: f64,
    /// Time of one item against one greedy caption.
    vs_greedy: f64,
}

pub fn run(args: CaptionBenchArgs) -> Result<()> {
    let captioner = Captioner::load(&Part::Captioner.dir())?;
    let encoder = Retriever::load(&Part::RetrieverA.dir())?;
    let scenes = test_scenes(Domain::Source, args.scenes.max(100));
    let mut rows: Vec<Row> = Vec::new();
    let mut greedy_rate = f64::NAN;
    let mut greedy_caps = Vec::new();
    for decoding in [Decoding::Greedy, Decoding::Beam, Decoding::Sample] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let start = Instant::now();
        let caps = captions(&captioner, &encoder, &scenes, decoding, &mut rng)?;
        let rate = scenes.len() as f64 / start.elapsed().as_secs_f64();
        if decoding == Decoding::Greedy {
            greedy_rate = rate;
            greedy_caps = caps;
        }
        rows.push(Row {
            what: format!("captions, {}", decoding.name()),
            per_second: rate,
            vs_greedy: greedy_rate / rate,
        });
    }
    let start = Instant::now();
    precision(&encoder, &scenes, &greedy_caps)?;
    let rate = scenes.len() as f64 / start.elapsed().as_secs_f64();
    rows.push(Row {
        what: "retrieval scoring in batches of 100, captions".into(),
        per_second: rate,
        vs_greedy: greedy_rate / rate,
    });
    let out = std::env::temp_dir().join(format!("alignscope-bench-caption-{}", std::process::id()));
    let steps = args.steps.max(3);
    let request = DiscriTuneRequest {
        steps,
        eval_every: steps,
        eval_images: 100,
        out: out.clone(),
        ..Default::default()
    };
    let mut seconds = Vec::new();
    let tuned = discritune(&request, &mut |s| {
        seconds.push(s.seconds);
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&out);
    tuned?;
    // The last step also measures P@1: time the steps before it.
    let per_step = (seconds[steps - 2] - seconds[0]) / (steps - 2) as f64;
    rows.push(Row {
        what: format!("DiscriTune steps (batch {})", request.batch),
        per_second: 1.0 / per_step,
        vs_greedy: per_step * greedy_rate,
    });
    if args.json {
        return super::print_json(&rows);
    }
    println!("{:<48} {:>10} {:>10}", "", "per s", "× greedy");
    for r in &rows {
        println!(
            "{:<48} {:>10.1} {:>10.1}",
            r.what, r.per_second, r.vs_greedy
        );
    }
    Ok(())
}
