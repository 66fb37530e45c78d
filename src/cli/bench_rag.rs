//! `alignscope bench rag`: the RAG lab's costs on this machine — retrieval latency (dense: query
//! embedding and exact scan; BM25) at the corpus size and at 10× (the corpus repeated), end-to-end
//! questions per second (retrieve, read), and what mining costs per query.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::knowledge::{Passage, Split};
use crate::rag::pipeline::{load_reader, Pipeline};
use crate::rag::reader::{read, Reading};
use crate::rag::retrieve::{scan, top_k, Bm25, RetrieverKind};

#[derive(Args, Debug)]
pub struct RagBenchArgs {
    /// Test questions timed.
    #[arg(long, default_value_t = 30)]
    questions: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Latency {
    what: String,
    passages: usize,
    ms_per_query: f64,
}

/// Mean milliseconds of `f` over `queries`.
fn time_each(queries: &[&str], mut f: impl FnMut(&str) -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for q in queries {
        f(q)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / queries.len().max(1) as f64)
}

pub fn run(args: RagBenchArgs) -> Result<()> {
    let pipeline = Pipeline::load(&mut |_| Ok(()))?;
    let n = pipeline.kb.passages.len();
    let queries: Vec<&str> = pipeline
        .kb
        .questions
        .iter()
        .filter(|q| q.split == Split::Test)
        .take(args.questions)
        .map(|q| q.text())
        .collect();
    let mut rows = Vec::new();
    let embeddings: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| pipeline.dense.embed_query(q))
        .collect::<Result<_>>()?;
    let ms = time_each(&queries, |q| pipeline.dense.embed_query(q).map(|_| ()))?;
    rows.push(Latency {
        what: "dense: query embedding".into(),
        passages: n,
        ms_per_query: ms,
    });
    let big: Vec<f32> = pipeline.dense.rows().repeat(10);
    for (rows_of, passages) in [(pipeline.dense.rows(), n), (big.as_slice(), 10 * n)] {
        let start = Instant::now();
        for e in &embeddings {
            std::hint::black_box(top_k(&scan(rows_of, e), 20));
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / embeddings.len().max(1) as f64;
        rows.push(Latency {
            what: "dense: exact scan + top 20".into(),
            passages,
            ms_per_query: ms,
        });
    }
    let many: Vec<Passage> = (0..10)
        .flat_map(|_| pipeline.kb.passages.iter().cloned())
        .collect();
    for (bm, passages) in [(&pipeline.bm25, n), (&Bm25::new(&many), 10 * n)] {
        let ms = time_each(&queries, |q| {
            std::hint::black_box(top_k(&bm.scores(q), 20));
            Ok(())
        })?;
        rows.push(Latency {
            what: "BM25 + top 20".into(),
            passages,
            ms_per_query: ms,
        });
    }
    // End to end: dense top 3, then the reader, all questions batched as `rag eval` does.
    let reader = load_reader(&crate::promot::run::base_for_eval(
        &crate::assets::default_model(),
        &mut |_| Ok(()),
    )?)?;
    let start = Instant::now();
    let contexts = queries
        .iter()
        .map(|q| pipeline.retrieve(RetrieverKind::Dense, q, 3))
        .collect::<Result<Vec<_>>>()?;
    let readings: Vec<Reading> = queries
        .iter()
        .zip(&contexts)
        .map(|(q, hits)| Reading {
            question: q,
            passages: hits.iter().map(|h| pipeline.text(h.passage)).collect(),
        })
        .collect();
    read(&reader, &readings)?;
    let per_second = queries.len() as f64 / start.elapsed().as_secs_f64();
    let mining = crate::rag::jobs::MineRequest::new();
    let calls_per_query = 1 + mining.ranks.len();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "latency": rows, "questions_per_second": per_second,
                "mining_reader_calls_per_query": calls_per_query,
            }))?
        );
        return Ok(());
    }
    println!("{:<30} {:>9} {:>12}", "retrieval", "passages", "ms / query");
    for r in &rows {
        println!("{:<30} {:>9} {:>12.3}", r.what, r.passages, r.ms_per_query);
    }
    let scan_ratio = rows[2].ms_per_query / rows[1].ms_per_query;
    let bm_ratio = rows[4].ms_per_query / rows[3].ms_per_query;
    println!("10× corpus: dense scan {scan_ratio:.1}× slower, BM25 {bm_ratio:.1}× slower");
    println!(
        "end to end (dense top 3 + reader, {} questions batched): {per_second:.2} questions/s",
        queries.len()
    );
    println!(
        "mining: {calls_per_query} reader calls per query (without passages, then ranks {:?}), \
         {:.1} s per query at this reader speed",
        mining.ranks,
        calls_per_query as f64 / per_second
    );
    Ok(())
}
