//! Preference training of the chat model on the preference sets, with LoRA on q/k/v/o as in
//! KnowPAT's reference code (rank 16, alpha 16, dropout 0.05): KnowPAT (SFT on the gold answer
//! plus `λ ·` the ranked alignment loss over both sets), its two ablations (one set each), SFT
//! on the gold answers alone and DPO on each set's best and worst answers — the same
//! questions, steps and learning rate for every method. Every answer of a question shares the
//! question's prompt (the question with its top-k triples).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Result};
use candle_core::Tensor;
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::loss::{align_loss, dpo_loss};
use super::sets::{read_sets, PrefQuestion, SetKind, Source};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::knowledge::Split;
use crate::lm::chat::Message;
use crate::lm::LanguageModel;
use crate::train::finetune::gguf_beside;
use crate::train::llama::{LoraConfig, TrainLlama};
use crate::train::pretrained::{write_gguf, write_hf_folder, GgufType, Pretrained};
use crate::train::sft::{answer_logprob, tokenize, Batch, Example, Tokenized};
use crate::train::{Adam, AdamConfig};

crate::named_enum! {
    "method";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum PrefMethod {
        /// SFT on the gold answer + λ · ranked alignment over the style and knowledge sets.
        Knowpat = "knowpat",
        /// SFT on the gold answers only.
        Sft = "sft",
        /// DPO (β = 0.1) on each set's best and worst answers.
        Dpo = "dpo",
        /// KnowPAT with the style set only.
        NoKnowledge = "knowpat-no-knowledge",
        /// KnowPAT with the knowledge set only.
        NoStyle = "knowpat-no-style",
    }
}

impl PrefMethod {
    /// The preference sets the method learns from.
    pub fn sets(self) -> &'static [SetKind] {
        match self {
            PrefMethod::Knowpat | PrefMethod::Dpo => &[SetKind::Style, SetKind::Knowledge],
            PrefMethod::NoKnowledge => &[SetKind::Style],
            PrefMethod::NoStyle => &[SetKind::Knowledge],
            PrefMethod::Sft => &[],
        }
    }

    /// The answers of a question it scores, gold first.
    pub fn sources(self) -> Vec<Source> {
        let mut out = vec![Source::Gold];
        for set in self.sets() {
            let order = set.order();
            let wanted: &[Source] = match self {
                PrefMethod::Dpo => &order[3..],
                _ => &order[1..],
            };
            for s in wanted {
                if !out.contains(s) {
                    out.push(*s);
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefTrainRequest {
    /// The chat model trained (GGUF or Hugging Face folder).
    pub model: PathBuf,
    pub sets: PathBuf,
    pub method: PrefMethod,
    /// Weight of the alignment loss (KnowPAT's grid: 1, 0.1, 0.01, 0.001).
    pub lambda: f64,
    /// DPO's β.
    pub beta: f64,
    pub steps: usize,
    /// Training questions per step (each brings its answers).
    pub questions: usize,
    pub lr: f64,
    pub lora: LoraConfig,
    pub seq_len: usize,
    pub seed: u64,
    /// Output folder: the adapter, `training.json`, and the merged model beside it.
    pub out: PathBuf,
}

impl PrefTrainRequest {
    /// `method` for 40 steps of one question each, LoRA as in the reference code, lr 3e-4
    /// (its README), λ = 1 (the top of the paper's grid: at 40 steps a smaller λ leaves the
    /// ranking term too weak to see), β = 0.1.
    pub fn new(method: PrefMethod) -> Self {
        Self {
            model: crate::assets::default_model(),
            sets: super::sets::sets_path(),
            method,
            lambda: 1.0,
            beta: 0.1,
            steps: 40,
            questions: 1,
            lr: 3e-4,
            lora: LoraConfig {
                rank: 16,
                alpha: 16.0,
                ..LoraConfig::default()
            },
            seq_len: 256,
            seed: 0,
            out: super::dir().join("models").join(method.name()),
        }
    }

    /// The model the job exports for generation: a Q8_0 GGUF beside `out` for a GGUF base,
    /// otherwise a Hugging Face folder inside it.
    pub fn exported(&self) -> PathBuf {
        exported(&self.model, &self.out)
    }
}

pub fn exported(base: &Path, out: &Path) -> PathBuf {
    match base.is_file() {
        true => gguf_beside(out, GgufType::Q8_0),
        false => out.join("merged"),
    }
}

/// What every step reports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PrefStep {
    pub step: usize,
    pub total: usize,
    pub loss: f32,
    /// The SFT term (mean negative log-likelihood per token of the gold answers).
    pub sft: f32,
    /// The alignment term before λ (KnowPAT) or the DPO loss.
    pub align: f32,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefOutcome {
    pub method: PrefMethod,
    pub questions: usize,
    pub steps: Vec<PrefStep>,
    pub tokens_per_second: f64,
    pub seconds: f64,
    pub model: PathBuf,
}

impl Report for PrefOutcome {
    fn metrics(&self) -> serde_json::Value {
        let last = self.steps.last();
        json!({ "last_loss": last.map(|s| s.loss), "last_sft": last.map(|s| s.sft),
                "last_align": last.map(|s| s.align), "seconds": self.seconds,
                "tokens_per_second": self.tokens_per_second })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "model": self.model })
    }
}

/// A question's answers tokenised with its prompt, in `sources` order.
pub fn tokenized(
    lm: &LanguageModel,
    q: &PrefQuestion,
    sources: &[Source],
    seq_len: usize,
) -> Result<Vec<Tokenized>> {
    let prompt = vec![Message::new("user", q.prompt())];
    sources
        .iter()
        .map(|s| {
            let ex = Example {
                prompt: prompt.clone(),
                answer: q.answer(*s).to_string(),
            };
            tokenize(lm, &ex, seq_len)
        })
        .collect()
}

/// Length-normalised log-likelihoods `S` `[n]` of the sequences, and their answer lengths.
pub fn scores(model: &TrainLlama, items: &[Tokenized], pad: u32) -> Result<(Tensor, Vec<f32>)> {
    let refs: Vec<&Tokenized> = items.iter().collect();
    let s = answer_logprob(model, &Batch::new(&refs, pad)?)?;
    let lengths = items
        .iter()
        .map(|t| t.ids.len().saturating_sub(t.answer_start.max(1)) as f32)
        .collect();
    Ok((s, lengths))
}

fn pick(t: &Tensor, i: usize) -> candle_core::Result<Tensor> {
    t.narrow(0, i, 1)?.squeeze(0)
}

/// One question's loss terms `(sft, align)` for `method`; `reference` gives DPO's frozen
/// log-likelihoods.
fn question_loss(
    request: &PrefTrainRequest,
    model: &TrainLlama,
    reference: &TrainLlama,
    items: &[Tokenized],
    pad: u32,
) -> Result<(Tensor, Option<Tensor>)> {
    let sources = request.method.sources();
    let (s, lengths) = scores(model, items, pad)?;
    let sft = pick(&s, 0)?.neg()?;
    let at = |source: Source| sources.iter().position(|x| *x == source).unwrap_or(0);
    let mut terms = Vec::new();
    match request.method {
        PrefMethod::Sft => {}
        PrefMethod::Dpo => {
            let (ref_s, _) = scores(reference, items, pad)?;
            let ref_s: Vec<f32> = ref_s.to_vec1()?;
            for set in request.method.sets() {
                let (c, r) = (at(set.order()[0]), at(set.order()[3]));
                let sum = |i: usize| pick(&s, i)? * lengths[i] as f64;
                terms.push(dpo_loss(
                    &sum(c)?,
                    &sum(r)?,
                    ref_s[c] * lengths[c],
                    ref_s[r] * lengths[r],
                    request.beta,
                )?);
            }
        }
        _ => {
            for set in request.method.sets() {
                let ix: Vec<u32> = set.order().iter().map(|x| at(*x) as u32).collect();
                let ranked = s.index_select(&Tensor::new(ix.as_slice(), s.device())?, 0)?;
                terms.push(align_loss(&ranked)?);
            }
        }
    }
    let align = match terms.len() {
        0 => None,
        n => Some((Tensor::stack(&terms, 0)?.sum_all()? / n as f64)?),
    };
    Ok((sft, align))
}

pub fn train(
    request: &PrefTrainRequest,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_step: &mut dyn FnMut(PrefStep) -> Result<()>,
) -> Result<PrefOutcome> {
    ensure!(
        request.steps > 0 && request.questions > 0,
        "steps and questions per step must be positive"
    );
    ensure!(request.lora.rank > 0, "the LoRA rank must be at least 1");
    let train: Vec<PrefQuestion> = read_sets(&request.sets)?
        .into_iter()
        .filter(|q| q.split == Split::Train)
        .collect();
    ensure!(
        !train.is_empty(),
        "{}: no training questions",
        request.sets.display()
    );
    on_stage("loading the model")?;
    let lm = LanguageModel::load(&request.model)?;
    let pad = lm.tokenizer.eos.unwrap_or(0);
    let pretrained = Pretrained::load(&request.model)?;
    let reference = pretrained.frozen_model()?;
    let mut model = pretrained.frozen_model()?;
    let vars = VarMap::new();
    model.add_lora(
        &request.lora,
        crate::train::seeded_builder(&vars, request.seed),
    )?;
    model.train = true;
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::default())?;
    let warmup = ((request.steps as f64 * 0.03) as usize).max(1);
    let mut order: Vec<usize> = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(request.seed);
    let mut used = BTreeSet::new();
    let (mut steps, mut tokens) = (Vec::new(), 0usize);
    let started = Instant::now();
    on_stage("training")?;
    for step in 0..request.steps {
        let (mut sft, mut align) = (Vec::new(), Vec::new());
        for _ in 0..request.questions {
            if order.is_empty() {
                order = (0..train.len()).collect();
                order.shuffle(&mut rng);
            }
            let q = &train[order.pop().unwrap_or(0)];
            used.insert(q.id.clone());
            let items = tokenized(&lm, q, &request.method.sources(), request.seq_len)?;
            tokens += items.iter().map(|t| t.ids.len()).sum::<usize>();
            let (s, a) = question_loss(request, &model, &reference, &items, pad)?;
            sft.push(s);
            align.extend(a);
        }
        let n = sft.len() as f64;
        let sft = (Tensor::stack(&sft, 0)?.sum_all()? / n)?;
        let (loss, align_value) = match align.is_empty() {
            true => (sft.clone(), 0.0),
            false => {
                let align = (Tensor::stack(&align, 0)?.sum_all()? / n)?;
                let value = align.to_scalar::<f32>()?;
                let loss = match request.method {
                    // DPO is the whole objective.
                    PrefMethod::Dpo => align,
                    _ => (&sft + (align * request.lambda)?)?,
                };
                (loss, value)
            }
        };
        let value = loss.to_scalar::<f32>()?;
        ensure!(
            value.is_finite(),
            "training diverged at step {step}: loss {value}"
        );
        let lr = crate::train::optim::lr_at(step, request.steps, warmup, request.lr);
        opt.step(&loss.backward()?, lr)?;
        let report = PrefStep {
            step: step + 1,
            total: request.steps,
            loss: value,
            sft: sft.to_scalar::<f32>()?,
            align: align_value,
            seconds: started.elapsed().as_secs_f64(),
        };
        steps.push(report);
        on_step(report)?;
    }
    on_stage("writing the adapter and the merged model")?;
    model.train = false;
    std::fs::create_dir_all(&request.out)?;
    crate::train::adapter::write(&request.out, &model, &request.model)?;
    let exported = request.exported();
    match request.model.is_file() {
        true => write_gguf(&exported, &model, &request.model, GgufType::Q8_0)?,
        false => write_hf_folder(&exported, &model, &lm)?,
    }
    let seconds = started.elapsed().as_secs_f64();
    let outcome = PrefOutcome {
        method: request.method,
        questions: used.len(),
        tokens_per_second: tokens as f64 / seconds.max(1e-9),
        steps,
        seconds,
        model: exported,
    };
    crate::fs::write_json(
        &request.out.join("training.json"),
        &json!({ "request": request, "outcome": outcome }),
    )?;
    Ok(outcome)
}

/// The record `train` leaves in `out`.
pub fn read_training(out: &Path) -> Result<(PrefTrainRequest, PrefOutcome)> {
    #[derive(Deserialize)]
    struct Record {
        request: PrefTrainRequest,
        outcome: PrefOutcome,
    }
    let r: Record = crate::fs::read_json(&out.join("training.json"), "a training record")?;
    Ok((r.request, r.outcome))
}

pub fn spawn_train(
    board: &JobBoard,
    request: PrefTrainRequest,
) -> JobHandle<PrefStep, PrefOutcome> {
    let spec = JobSpec {
        kind: "prefs-train".into(),
        title: format!("preference training ({})", request.method),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<PrefStep>| {
        train(&request, &mut |s| ctx.stage(s), &mut |s| {
            ctx.check()?;
            ctx.progress(
                Some(s.step as f32 / s.total as f32),
                format!(
                    "step {}/{} · loss {:.3} (sft {:.3}, align {:.3})",
                    s.step, s.total, s.loss, s.sft, s.align
                ),
            );
            ctx.send(s);
            Ok(())
        })
    })
}
