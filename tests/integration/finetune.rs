//! Fine-tuning language models: the training forward pass against the runtime on the shipped
//! SmolLM2, each method lowering the loss, LoRA merged = LoRA applied, exported folders that
//! the runtime loads with the trained logits, and bad data files.

use std::path::PathBuf;
use std::sync::Arc;

use alignscope::lm::{LanguageModel, Session, SoftPrompt};
use alignscope::train::finetune::{finetune, FinetuneRequest, Method};
use alignscope::train::llama::{LoraConfig, TrainLlama};
use alignscope::train::pretrained::{write_hf_folder, Pretrained};
use alignscope::train::sft::{read_jsonl, sft_loss, tokenize, Batch, Tokenized};
use candle_core::{Device, Tensor};

use crate::common::{doubling_pairs, max_abs_diff, shipped_model_path};

/// The runtime's logits at every position of `ids`, fed one token at a time after what
/// session `s` holds.
fn runtime_logits(mut s: Session, ids: &[u32]) -> Vec<Vec<f32>> {
    ids.iter()
        .map(|&id| {
            s.feed(&[id]).unwrap();
            s.logits().unwrap().to_vec()
        })
        .collect()
}

/// The training forward pass's logits `[time][vocab]` for one sequence.
fn training_logits(model: &TrainLlama, ids: &[u32]) -> Vec<Vec<f32>> {
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&t)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

/// `steps` Adam steps of the SFT loss on `batch` over `vars`; the loss before and after.
fn train_steps(
    model: &TrainLlama,
    vars: &candle_nn::VarMap,
    batch: &Batch,
    steps: usize,
    lr: f64,
) -> (f32, f32) {
    let loss = || sft_loss(model, batch).unwrap().to_scalar::<f32>().unwrap();
    let first = loss();
    let mut opt = alignscope::train::Adam::new(vars.all_vars(), Default::default()).unwrap();
    for _ in 0..steps {
        let l = sft_loss(model, batch).unwrap();
        opt.step(&l.backward().unwrap(), lr).unwrap();
    }
    (first, loss())
}

fn worst(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| max_abs_diff(x, y))
        .fold(0.0, f32::max)
}

/// Without a soft prompt the training forward pass gives the runtime's logits; with one, the
/// runtime (a session started with the exported prompt) moves the same way as training does.
#[test]
fn training_forward_matches_the_runtime_on_smollm2_with_and_without_a_soft_prompt() {
    let gguf = shipped_model_path();
    let pretrained = Pretrained::load(&gguf).unwrap();
    let s = pretrained.shape;
    assert_eq!((s.num_layers, s.num_heads, s.num_kv_heads), (30, 9, 3));
    assert!(s.tie_embeddings);
    let mut model = pretrained.frozen_model().unwrap();
    let mut prompted = pretrained.frozen_model().unwrap();
    drop(pretrained);
    model.train = false;
    prompted.train = false;
    let lm = LanguageModel::load(&gguf).unwrap();
    let init = lm
        .tokenizer
        .encode("Answer like a pirate, matey!", false)
        .unwrap();
    let varmap = candle_nn::VarMap::new();
    prompted
        .add_soft_prompt(6, &init, alignscope::train::seeded_builder(&varmap, 0))
        .unwrap();
    // The dequantised weights as an f32 Hugging Face folder: the runtime keeps f32 exact.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2-f32");
    write_hf_folder(&out, &prompted, &lm).unwrap();
    let exported = Arc::new(LanguageModel::load(&out).unwrap());
    let ids = lm.chat_ids("What is the capital of France?").unwrap();
    assert_eq!(
        exported.chat_ids("What is the capital of France?").unwrap(),
        ids,
        "the exported tokenizer and chat template give the same ids"
    );
    let plain = training_logits(&model, &ids);
    let diff = worst(
        &plain,
        &runtime_logits(Session::new(exported.clone()), &ids),
    );
    eprintln!("{} positions, max |Δlogit| {diff:.2e}", ids.len());
    assert!(diff < 1e-3, "max |Δlogit| {diff}");

    let prompt = SoftPrompt::load(&out.join("soft_prompt.safetensors")).unwrap();
    assert_eq!((prompt.len(), prompt.hidden()), (6, 576));
    let session = Session::with_soft_prompt(exported.clone(), Arc::new(prompt)).unwrap();
    let with_prompt = training_logits(&prompted, &ids);
    let moved = worst(&with_prompt, &plain);
    let diff = worst(&with_prompt, &runtime_logits(session, &ids));
    eprintln!("soft prompt: moves logits by up to {moved:.2}, runtime vs training {diff:.2e}");
    assert!(
        moved > 0.5,
        "the soft prompt barely changes the logits ({moved})"
    );
    assert!(diff < 1e-3, "with the soft prompt: max |Δlogit| {diff}");

    // A prompt trained here (the ProMoT lab's shipped sentiment prompt): the same in both.
    let trained = alignscope::assets::dir().join("promot/sentiment/prompt/soft_prompt.safetensors");
    let trained = SoftPrompt::load(&trained).unwrap();
    let rows = candle_core::Tensor::from_slice(
        trained.rows(),
        (trained.len(), trained.hidden()),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    model.freeze_soft_prompt(&rows).unwrap();
    let session = Session::with_soft_prompt(exported, Arc::new(trained)).unwrap();
    let diff = worst(
        &training_logits(&model, &ids),
        &runtime_logits(session, &ids),
    );
    eprintln!("trained soft prompt: runtime vs training {diff:.2e}");
    assert!(
        diff < 1e-3,
        "with the trained soft prompt: max |Δlogit| {diff}"
    );
}

fn tiny_base() -> PathBuf {
    alignscope::zoo::specs::spec("tiny-base").unwrap().path()
}

#[test]
fn every_method_lowers_the_loss_and_exports_a_loadable_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = doubling_pairs(dir.path(), 24);
    for method in [Method::Full, Method::Lora, Method::Prompt] {
        let mut req = FinetuneRequest::new(tiny_base(), data.clone(), method);
        req.eval = Some(data.clone());
        req.steps = 40;
        req.batch = 4;
        req.prompt_len = 4;
        let out = dir.path().join(format!("out-{method}"));
        req.out = Some(out.clone());
        let outcome = finetune(&req, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
        let (before, after) = outcome.eval_loss.unwrap();
        assert!(
            after < before - 0.1,
            "{method}: eval loss {before} → {after}"
        );
        assert_eq!(outcome.losses.len(), 40);
        assert!(outcome.tokens_per_second > 0.0);
        LanguageModel::load(&out).expect("the exported folder loads in the runtime");
        assert_eq!(
            out.join("soft_prompt.safetensors").exists(),
            method == Method::Prompt,
            "{method}: a soft prompt is saved beside the model"
        );
    }
}

/// Cancelling after step 3 with a checkpoint every 2 steps: the run fails as cancelled and the
/// folder holds step 2's model, which the runtime loads; no checkpoint was written at step 3.
#[test]
fn cancelling_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = doubling_pairs(dir.path(), 8);
    let mut req = FinetuneRequest::new(tiny_base(), data, Method::Full);
    req.steps = 10;
    req.batch = 2;
    req.save_every = 2;
    let out = dir.path().join("out");
    req.out = Some(out.clone());
    let mut stages = Vec::new();
    let result = finetune(
        &req,
        &mut |stage| {
            stages.push(stage.to_string());
            Ok(())
        },
        &mut |step| {
            anyhow::ensure!(step.report.step < 3, "cancelled");
            Ok(())
        },
    );
    let err = result.expect_err("the run is cancelled");
    assert_eq!(err.to_string(), "cancelled");
    let written = stages
        .iter()
        .filter(|s| *s == "writing the checkpoint")
        .count();
    assert_eq!(written, 1, "one checkpoint, at step 2: {stages:?}");
    LanguageModel::load(&out).expect("the last checkpoint loads in the runtime");
}

/// A few LoRA steps on every projection, then: the adapters folded into the weights give the
/// same logits as the adapters applied, and so does the runtime on the exported folder.
#[test]
fn lora_merged_equals_lora_applied_and_the_export_keeps_the_logits() {
    let dir = tempfile::tempdir().unwrap();
    let data = doubling_pairs(dir.path(), 16);
    let base = tiny_base();
    let lm = LanguageModel::load(&base).unwrap();
    let pretrained = Pretrained::load(&base).unwrap();
    let mut model = pretrained.frozen_model().unwrap();
    let vars = candle_nn::VarMap::new();
    let config = LoraConfig {
        rank: 4,
        dropout: 0.0,
        targets: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
        .map(String::from)
        .to_vec(),
        ..LoraConfig::default()
    };
    model
        .add_lora(&config, alignscope::train::seeded_builder(&vars, 3))
        .unwrap();
    let items: Vec<Tokenized> = read_jsonl(&data)
        .unwrap()
        .iter()
        .map(|e| tokenize(&lm, e, 64).unwrap())
        .collect();
    let refs: Vec<&Tokenized> = items.iter().collect();
    let batch = Batch::new(&refs, 0).unwrap();
    let (first, last) = train_steps(&model, &vars, &batch, 10, 1e-2);
    assert!(last < first - 0.1, "LoRA loss {first} → {last}");

    model.train = false;
    let ids = &items[0].ids;
    let applied = training_logits(&model, ids);
    let merged = Pretrained {
        shape: model.shape,
        weights: model.merged_weights().unwrap().into_iter().collect(),
        source: base.clone(),
        formats: String::new(),
    }
    .frozen_model()
    .unwrap();
    let folded = training_logits(&merged, ids);
    let diff = worst(&applied, &folded);
    assert!(diff < 1e-4, "merged vs applied: {diff}");
    assert!(
        worst(
            &applied,
            &training_logits(&pretrained.frozen_model().unwrap(), ids)
        ) > 1e-2,
        "the adapters changed the model"
    );

    let out = dir.path().join("lora-merged");
    write_hf_folder(&out, &model, &lm).unwrap();
    let exported = Arc::new(LanguageModel::load(&out).unwrap());
    let diff = worst(
        &applied,
        &runtime_logits(Session::new(exported.clone()), ids),
    );
    assert!(
        diff < 1e-3,
        "runtime on the export vs training forward: {diff}"
    );
}

#[test]
fn a_broken_data_line_is_refused_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "Hi"}"#,
            "\n\n",
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "again"}]}"#,
            "\n",
            r#"{"prompt": "2+2", "completion": "4"}"#,
            "\n",
        ),
    )
    .unwrap();
    let err = format!("{:#}", read_jsonl(&path).unwrap_err());
    assert!(err.contains("chat.jsonl"), "{err}");
    assert!(err.contains("2 bad line(s)"), "{err}");
    assert!(err.contains("line 2: not a JSON object"), "{err}");
    assert!(
        err.contains("line 4: the last message is from \"user\""),
        "{err}"
    );
    std::fs::write(&path, "\n").unwrap();
    assert!(format!("{:#}", read_jsonl(&path).unwrap_err()).contains("no examples"));
}

/// GGUF export: the frozen SmolLM2 written back as Q4_1 gives the shipped file's logits (the
/// same blocks, requantised), and after two LoRA steps a Q8_0 export keeps the trained
/// model's logits to the quantised runtime's own error and its greedy choices.
#[test]
fn gguf_exports_load_in_the_runtime_with_the_trained_logits() {
    use alignscope::train::pretrained::{write_gguf, GgufType};
    let gguf = shipped_model_path();
    let lm = LanguageModel::load(&gguf).unwrap();
    let pretrained = Pretrained::load(&gguf).unwrap();
    let mut model = pretrained.frozen_model().unwrap();
    drop(pretrained);
    let dir = tempfile::tempdir().unwrap();
    let ids = lm.chat_ids("Name a large river.").unwrap();

    let q4 = dir.path().join("smollm2-q4_1.gguf");
    write_gguf(&q4, &model, &gguf, GgufType::Q4_1).unwrap();
    let exported = Arc::new(LanguageModel::load(&q4).unwrap());
    assert!(
        exported.info.quantization.starts_with("Q4_1"),
        "{}",
        exported.info.quantization
    );
    let shipped = crate::common::shipped_model();
    let shipped_logits = runtime_logits(Session::new(shipped.clone()), &ids);
    let diff = worst(
        &runtime_logits(Session::new(exported.clone()), &ids),
        &shipped_logits,
    );
    eprintln!("Q4_1 re-export vs shipped: max |Δlogit| {diff:.3e}");
    assert!(diff < 0.05, "Q4_1 re-export vs shipped: {diff}");
    // What the quantised runtime (8-bit activations) costs against the f32 forward pass.
    model.train = false;
    let runtime_error = worst(&training_logits(&model, &ids), &shipped_logits);
    model.train = true;
    eprintln!("quantised runtime vs f32 forward: max |Δlogit| {runtime_error:.3e}");

    // Two LoRA steps on one answer, so the exported weights are the trained ones.
    let vars = candle_nn::VarMap::new();
    model
        .add_lora(
            // No dropout: the two steps, and so the exported weights, are the same every run.
            &LoraConfig {
                dropout: 0.0,
                ..LoraConfig::default()
            },
            alignscope::train::seeded_builder(&vars, 1),
        )
        .unwrap();
    let example = &read_jsonl(&crate::common::doubling_pairs(dir.path(), 1)).unwrap()[0];
    let item = tokenize(&lm, example, 64).unwrap();
    let batch = Batch::new(&[&item], 0).unwrap();
    train_steps(&model, &vars, &batch, 2, 1e-3);
    model.train = false;
    let q8 = dir.path().join("tuned-q8_0.gguf");
    write_gguf(&q8, &model, &gguf, GgufType::Q8_0).unwrap();
    let tuned = Arc::new(LanguageModel::load(&q8).unwrap());
    let ours = training_logits(&model, &ids);
    let theirs = runtime_logits(Session::new(tuned.clone()), &ids);
    let diff = worst(&ours, &theirs);
    eprintln!("Q8_0 export vs training forward: max |Δlogit| {diff:.3e}");
    assert!(
        diff < 2.0 * runtime_error,
        "Q8_0 export vs training forward: {diff} (the runtime's own error: {runtime_error})"
    );
    // Near-ties may flip under 8-bit weights; nearly every greedy choice must stay.
    let same = ours
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| crate::common::argmax(a) == crate::common::argmax(b))
        .count();
    assert!(
        same * 10 >= ours.len() * 9,
        "greedy choices agree at {same} of {} positions",
        ours.len()
    );
}

/// The per-sequence answer log-likelihood is the mean over that sequence's answer tokens: for a
/// batch of two sequences of different lengths, each entry equals minus the SFT loss of the
/// sequence alone (padding and prompt excluded).
#[test]
fn answer_logprob_is_the_mean_over_each_answer() {
    use alignscope::train::sft::answer_logprob;
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base();
    let lm = LanguageModel::load(&base).unwrap();
    let mut model = Pretrained::load(&base).unwrap().frozen_model().unwrap();
    model.train = false;
    let examples = read_jsonl(&doubling_pairs(dir.path(), 12)).unwrap();
    // "double 1" → "2" and "double 12" → "24": answers of different lengths.
    let items: Vec<Tokenized> = [&examples[0], &examples[11]]
        .iter()
        .map(|e| tokenize(&lm, e, 64).unwrap())
        .collect();
    assert_ne!(items[0].ids.len(), items[1].ids.len());
    let both = Batch::new(&[&items[0], &items[1]], 0).unwrap();
    let joint: Vec<f32> = answer_logprob(&model, &both).unwrap().to_vec1().unwrap();
    for (i, item) in items.iter().enumerate() {
        let alone = sft_loss(&model, &Batch::new(&[item], 0).unwrap())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            (joint[i] + alone).abs() < 1e-4,
            "sequence {i}: {} vs {}",
            joint[i],
            -alone
        );
    }
    assert!(joint.iter().all(|&v| v < 0.0));
}

/// Qwen2 (biases on q/k/v, rotary halves, an untied head): the tiny fixture loads for training
/// with the runtime's logits, full fine-tuning moves its biases, and the exported folder and
/// GGUF load in the runtime with the trained logits.
#[test]
fn qwen2_trains_its_biases_and_exports_folder_and_gguf() {
    use alignscope::train::pretrained::{write_gguf, GgufType};
    use alignscope::train::sft::Tokenized;
    let gguf = crate::common::fixture("tiny/tiny-qwen2.gguf");
    let lm = Arc::new(LanguageModel::load(&gguf).unwrap());
    let pretrained = Pretrained::load(&gguf).unwrap();
    assert!(pretrained.shape.qkv_bias && !pretrained.shape.tie_embeddings);
    let vars = candle_nn::VarMap::new();
    let mut model = pretrained.model(&vars).unwrap();
    model.train = false;
    let ids = lm
        .tokenizer
        .encode("the quick brown fox jumps over the lazy dog", false)
        .unwrap();
    let diff = worst(
        &training_logits(&model, &ids),
        &runtime_logits(Session::new(lm.clone()), &ids),
    );
    eprintln!("qwen2: training forward vs runtime {diff:.2e}");
    assert!(diff < 1e-3, "qwen2: max |Δlogit| {diff}");

    let bias = "model.layers.0.self_attn.k_proj.bias";
    let bias_before: Vec<f32> = pretrained.weights[bias].to_vec1().unwrap();
    let item = Tokenized {
        ids: ids.clone(),
        answer_start: 3,
    };
    let batch = Batch::new(&[&item], 0).unwrap();
    let (first, last) = train_steps(&model, &vars, &batch, 5, 1e-3);
    assert!(last < first, "loss {first} → {last}");
    let weights: std::collections::HashMap<_, _> =
        model.merged_weights().unwrap().into_iter().collect();
    let bias_after: Vec<f32> = weights[bias].to_vec1().unwrap();
    assert!(
        max_abs_diff(&bias_before, &bias_after) > 1e-4,
        "the biases train"
    );

    let trained = training_logits(&model, &ids);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("qwen2-tuned");
    write_hf_folder(&folder, &model, &lm).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "qwen2");
    let exported = Arc::new(LanguageModel::load(&folder).unwrap());
    let diff = worst(&trained, &runtime_logits(Session::new(exported), &ids));
    assert!(diff < 1e-3, "qwen2 folder: max |Δlogit| {diff}");
    let reloaded = Pretrained::load(&folder).unwrap();
    assert_eq!(
        reloaded.shape, model.shape,
        "the folder loads for training again"
    );

    let q8 = dir.path().join("qwen2-tuned.gguf");
    write_gguf(&q8, &model, &gguf, GgufType::Q8_0).unwrap();
    let exported = Arc::new(LanguageModel::load(&q8).unwrap());
    let theirs = runtime_logits(Session::new(exported), &ids);
    let diff = worst(&trained, &theirs);
    eprintln!("qwen2 Q8_0 export vs training forward: {diff:.2e}");
    assert!(diff < 0.1, "qwen2 Q8_0: max |Δlogit| {diff}");
}

/// Raw examples: the prompt's text then the answer's, no chat template and no end of turn —
/// how a judge reads its verdict letter right after the judgement prompt.
#[test]
fn raw_examples_are_the_prompt_then_the_answer() {
    use alignscope::train::sft::tokenize_raw;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"Is it harmful? The answer is: (\", \"completion\": \"A\"}\n",
    )
    .unwrap();
    let example = &read_jsonl(&path).unwrap()[0];
    let lm = crate::common::shipped_model();
    let t = tokenize_raw(&lm, example, 64).unwrap();
    let prompt = lm
        .tokenizer
        .encode_prompt("Is it harmful? The answer is: (")
        .unwrap();
    assert_eq!(&t.ids[..t.answer_start], &prompt[..]);
    assert_eq!(
        &t.ids[t.answer_start..],
        &[lm.tokenizer.single_token("A").unwrap()]
    );
    // The chat form of the same example wraps it in the template and ends the turn.
    let chat = tokenize(&lm, example, 64).unwrap();
    assert!(chat.ids.len() > t.ids.len() + 5);
}

/// A LoRA run also writes its adapter on its own (PEFT's files); merged into the base again,
/// it gives the exported model's logits. On another base it is a clear error.
#[test]
fn a_lora_adapter_ships_alone_and_merges_back() {
    use alignscope::train::adapter::{self, merge, MergeRequest};
    let dir = tempfile::tempdir().unwrap();
    let data = doubling_pairs(dir.path(), 12);
    let mut req = FinetuneRequest::new(tiny_base(), data, Method::Lora);
    (req.steps, req.batch, req.lr) = (6, 4, 1e-2);
    let out = dir.path().join("tuned");
    req.out = Some(out.clone());
    finetune(&req, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
    let config = adapter::read_config(&out).unwrap();
    assert_eq!((config.rank, config.alpha), (8, 16.0));
    assert_eq!(config.targets, ["q_proj", "k_proj", "v_proj", "o_proj"]);
    let size = std::fs::metadata(out.join(adapter::WEIGHTS)).unwrap().len();
    let full = std::fs::metadata(out.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(
        size * 4 < full,
        "adapter {size} B against the model's {full} B"
    );

    let merged = dir.path().join("merged");
    let request = MergeRequest {
        base: tiny_base(),
        adapter: out.clone(),
        out: merged.clone(),
        gguf: None,
    };
    merge(&request, &mut |_| Ok(())).unwrap();
    let lm = Arc::new(LanguageModel::load(&out).unwrap());
    let ids = lm.chat_ids("12").unwrap();
    let exported = runtime_logits(Session::new(lm), &ids);
    let remerged = runtime_logits(
        Session::new(Arc::new(LanguageModel::load(&merged).unwrap())),
        &ids,
    );
    let diff = worst(&exported, &remerged);
    assert!(diff < 1e-4, "re-merged vs exported: {diff}");
    let base = runtime_logits(
        Session::new(Arc::new(LanguageModel::load(&tiny_base()).unwrap())),
        &ids,
    );
    assert!(
        worst(&exported, &base) > 1e-3,
        "the adapter changed the model"
    );

    let wrong = MergeRequest {
        base: crate::common::fixture("tiny/tiny-qwen2.gguf"),
        ..request
    };
    let err = format!("{:#}", merge(&wrong, &mut |_| Ok(())).unwrap_err());
    assert!(
        err.contains(adapter::WEIGHTS) && err.contains("another base model"),
        "{err}"
    );
}
