//! `alignscope rag …`: the RAG lab's jobs (`rag::jobs`, `rag::eval`, `rag::reader_train`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{named, print_json, say, Front};
use crate::rag::eval::{results_dir, spawn_eval, Condition, EvalRequest};
use crate::rag::jobs::{
    reranker_dir, spawn_ask, spawn_mine, spawn_reranker, AskRequest, MineRequest, RerankerJob,
};
use crate::rag::reader_train::{spawn_train_reader, ReaderTrainRequest};
use crate::rag::reranker::Loss;

#[derive(Subcommand, Debug)]
pub enum RagCommand {
    /// Mine preference knowledge: which retrieved passages help the reader, which mislead it.
    Mine(MineArgs),
    /// Train the reranker on mined preferences (three losses, MGDA-UB weights).
    TrainReranker(RerankerArgs),
    /// Fine-tune the reader: judge passages (pre-aligned stage), then SFT on reranked passages.
    TrainReader(ReaderArgs),
    /// Ask a question: retrieved and reranked passages, what each does to the reader, answers.
    Ask(AskArgs),
    /// Score a pipeline on the test split (EM, F1, hit; single- and two-hop questions).
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
pub struct ReaderArgs {
    /// Pre-aligned stage steps (0: SFT only).
    #[arg(long)]
    judge_steps: Option<usize>,
    #[arg(long)]
    sft_steps: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// The reranker that picks the SFT stage's passages.
    #[arg(long)]
    reranker: Option<PathBuf>,
    /// Output folder (default: assets/rag/reader).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct AskArgs {
    /// The question; a knowledge-base question's wording brings its gold answer.
    question: String,
    /// Passages given to the reader.
    #[arg(long, default_value_t = 3)]
    k: usize,
    /// Passages retrieved (and reranked).
    #[arg(long, default_value_t = 10)]
    depth: usize,
    #[arg(long)]
    reader: Option<PathBuf>,
    /// A reader for the reranked passages (e.g. the pre-aligned one).
    #[arg(long)]
    aligned_reader: Option<PathBuf>,
    /// The reranker (default: assets/rag/reranker, when it has been trained).
    #[arg(long)]
    reranker: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long, value_parser = named::<Condition>(), default_value_t = Condition::Dense)]
    condition: Condition,
    #[arg(long)]
    reader: Option<PathBuf>,
    #[arg(long)]
    reranker: Option<PathBuf>,
    /// The row's name (default: the condition's).
    #[arg(long)]
    label: Option<String>,
    #[arg(long)]
    k: Option<usize>,
    #[arg(long)]
    depth: Option<usize>,
    /// Single-hop test questions.
    #[arg(long)]
    single: Option<usize>,
    /// Two-hop test questions.
    #[arg(long)]
    two_hop: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Result file (default: assets/rag/results/LABEL.json).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct MineArgs {
    /// The reader (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Training questions to mine.
    #[arg(long)]
    questions: Option<usize>,
    /// Retrieval ranks to read, comma-separated.
    #[arg(long, value_delimiter = ',')]
    ranks: Option<Vec<usize>>,
    /// Wordings per question (1 = no augmentation).
    #[arg(long)]
    wordings: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Output JSONL (default: assets/rag/mined.jsonl).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RerankerArgs {
    /// Losses to train with, comma-separated (default: all three).
    #[arg(long, value_delimiter = ',', value_parser = named::<Loss>())]
    losses: Option<Vec<Loss>>,
    /// Weigh the losses equally instead of by MGDA-UB.
    #[arg(long)]
    equal_weights: bool,
    /// Solve MGDA-UB on the raw gradients (default: each scaled to unit length first).
    #[arg(long)]
    raw_gradients: bool,
    /// Also use passages that leave a wrong answer wrong as negatives (the paper uses only
    /// unaligned ones).
    #[arg(long)]
    both_wrong_negatives: bool,
    #[arg(long)]
    steps: Option<usize>,
    /// Queries per step.
    #[arg(long)]
    queries: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Mined preferences (default: assets/rag/mined.jsonl).
    #[arg(long)]
    mined: Option<PathBuf>,
    /// Output folder (default: assets/rag/reranker, or reranker-no-LOSS for an ablation).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(command: RagCommand) -> Result<()> {
    match command {
        RagCommand::Mine(args) => mine(args),
        RagCommand::TrainReranker(args) => train_reranker(args),
        RagCommand::TrainReader(args) => train_reader(args),
        RagCommand::Ask(args) => ask(args),
        RagCommand::Eval(args) => eval(args),
    }
}

fn mine(args: MineArgs) -> Result<()> {
    let mut r = MineRequest::new();
    r.model = args.model.unwrap_or(r.model);
    r.questions = args.questions.unwrap_or(r.questions);
    r.ranks = args.ranks.unwrap_or(r.ranks);
    r.wordings = args.wordings.unwrap_or(r.wordings);
    r.seed = args.seed.unwrap_or(r.seed);
    r.out = args.out.unwrap_or(r.out);
    let front = Front::new("mining");
    let outcome = front.wait(spawn_mine(&front.board, r), |_, _| {})?;
    if args.json {
        return print_json(&outcome);
    }
    println!(
        "{} queries, {} reader calls in {:.0} s → {}",
        outcome.queries,
        outcome.reader_calls,
        outcome.seconds,
        outcome.out.display()
    );
    for (label, n) in &outcome.counts {
        println!("  {label:<11} {n}");
    }
    Ok(())
}

fn train_reranker(args: RerankerArgs) -> Result<()> {
    let mut job = RerankerJob::new();
    let t = &mut job.train;
    t.losses = args.losses.unwrap_or_else(|| t.losses.clone());
    t.mgda = !args.equal_weights;
    t.normalise_gradients = !args.raw_gradients;
    t.both_wrong_negatives = args.both_wrong_negatives;
    t.steps = args.steps.unwrap_or(t.steps);
    t.queries = args.queries.unwrap_or(t.queries);
    t.lr = args.lr.unwrap_or(t.lr);
    t.seed = args.seed.unwrap_or(t.seed);
    job.out = args.out.unwrap_or_else(|| reranker_dir(&job.train.losses));
    job.mined = args.mined.unwrap_or(job.mined);
    let front = Front::new("training the reranker");
    let json = args.json;
    let outcome = front.wait(spawn_reranker(&front.board, job), |s, bar| {
        let every = (s.total / 10).max(1);
        if !json && (s.step % every == 0 || s.step == s.total) {
            let parts: Vec<String> = Loss::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| s.parts[*i].is_finite())
                .map(|(i, l)| format!("{} {:.3}×{:.2}", l.name(), s.parts[i], s.weights[i]))
                .collect();
            say(
                bar,
                format!(
                    "step {:>4}/{}  loss {:.4}  {}",
                    s.step,
                    s.total,
                    s.loss,
                    parts.join("  ")
                ),
            );
        }
    })?;
    if json {
        return print_json(&outcome);
    }
    println!(
        "{} lists ({} aligned, {} negative passages), {:.0} s → {}",
        outcome.lists,
        outcome.positives,
        outcome.negatives,
        outcome.seconds,
        outcome.out.display()
    );
    Ok(())
}

fn train_reader(args: ReaderArgs) -> Result<()> {
    let mut r = ReaderTrainRequest::new();
    r.judge_steps = args.judge_steps.unwrap_or(r.judge_steps);
    r.sft_steps = args.sft_steps.unwrap_or(r.sft_steps);
    r.batch = args.batch.unwrap_or(r.batch);
    r.lr = args.lr.unwrap_or(r.lr);
    r.reranker = args.reranker.unwrap_or(r.reranker);
    r.out = args.out.unwrap_or(r.out);
    r.seed = args.seed.unwrap_or(r.seed);
    let front = Front::new("training the reader");
    let json = args.json;
    let outcome = front.wait(spawn_train_reader(&front.board, r), |s, bar| {
        let rep = &s.step.report;
        let every = (rep.total / 10).max(1);
        if !json && (rep.step % every == 0 || rep.step == rep.total) {
            say(
                bar,
                format!(
                    "{} step {:>4}/{}  loss {:.4}  {:.0} tok/s",
                    s.stage, rep.step, rep.total, rep.loss, s.step.tokens_per_second
                ),
            );
        }
    })?;
    if json {
        return print_json(&outcome);
    }
    println!(
        "{} judging and {} answering examples, {:.0} s → {}",
        outcome.judge_examples,
        outcome.sft_examples,
        outcome.seconds,
        outcome.reader.display()
    );
    Ok(())
}

fn ask(args: AskArgs) -> Result<()> {
    let mut r = AskRequest::new(&args.question, &crate::rag::dir());
    (r.k, r.depth) = (args.k, args.depth);
    r.reader = args.reader.unwrap_or(r.reader);
    r.aligned_reader = args.aligned_reader.or(r.aligned_reader);
    r.reranker = args.reranker.or(r.reranker);
    let front = Front::new("asking");
    let asked = front.wait(spawn_ask(&front.board, r), |_, _| {})?;
    if args.json {
        return print_json(&asked);
    }
    if let Some(g) = &asked.gold {
        println!("gold: {}", g.join(" | "));
    }
    println!("without passages: {}", asked.reply_without.trim());
    for (i, p) in asked.passages.iter().enumerate() {
        let label = p.label.map(|l| l.name()).unwrap_or("");
        let rerank = p
            .reranker_score
            .map(|s| format!(" rerank {s:+.2}"))
            .unwrap_or_default();
        println!(
            "{:>2}. [{:.3}{rerank}] {label:<10} {}\n      → {}",
            i + 1,
            p.retriever_score,
            p.text,
            p.reply.trim()
        );
    }
    println!(
        "answer (dense top {}): {}",
        args.k,
        asked.answer_standard.trim()
    );
    if let Some(a) = &asked.answer_reranked {
        println!("answer (reranked top {}): {}", args.k, a.trim());
    }
    if let Some(a) = &asked.answer_aligned {
        println!(
            "answer (reranked top {}, pre-aligned reader): {}",
            args.k,
            a.trim()
        );
    }
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let mut r = EvalRequest::new(args.condition);
    r.reader = args.reader.unwrap_or(r.reader);
    r.reranker = args.reranker.or(r.reranker);
    r.label = args.label.unwrap_or(r.label);
    r.k = args.k.unwrap_or(r.k);
    r.depth = args.depth.unwrap_or(r.depth);
    r.single = args.single.unwrap_or(r.single);
    r.two_hop = args.two_hop.unwrap_or(r.two_hop);
    r.seed = args.seed.unwrap_or(r.seed);
    let out = args
        .out
        .unwrap_or_else(|| results_dir().join(format!("{}.json", r.label)));
    let front = Front::new("evaluating");
    let outcome = front.wait(spawn_eval(&front.board, r, Some(out.clone())), |_, _| {})?;
    if args.json {
        return print_json(&outcome);
    }
    println!(
        "{} ({:.0} s) → {}",
        outcome.request.label,
        outcome.seconds,
        out.display()
    );
    for s in &outcome.scores {
        println!(
            "  {:<8} n={:<4} EM {:.3}  F1 {:.3}  hit {:.3}",
            s.hops.name(),
            s.n,
            s.em,
            s.f1,
            s.hit
        );
    }
    Ok(())
}
