//! The model zoo: shipped weights still score what the manifest says, fine-tunes beat their
//! base, saved checkpoints load in candle-transformers with the same outputs as the training
//! forward passes, and training can run (and be interrupted) without losing a folder.

use std::path::Path;
use std::sync::Arc;

use alignscope::data::classify::{class_data, ClassTask};
use alignscope::data::{Sources, TextTask, TextTasks};
use alignscope::lm::{LanguageModel, Session};
use alignscope::train::{load_into, seeded_builder, Pull};
use alignscope::zoo::specs::{score_entry, spec, EvalContext, Recipe};
use alignscope::zoo::{decoder, minilm, Manifest};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

fn manifest() -> Manifest {
    Manifest::load(&alignscope::zoo::manifest_path()).expect("the shipped manifest reads")
}

fn sources() -> Sources {
    Sources::load(&alignscope::zoo::dir().join("data")).expect("zoo data")
}

#[test]
fn shipped_models_score_what_the_manifest_says() {
    let manifest = manifest();
    let mut ctx = EvalContext::new().unwrap();
    let mut checked = 0;
    for recorded in manifest.models.iter().filter(|m| m.shipped) {
        let s = spec(&recorded.name).unwrap();
        let fresh = score_entry(&s, &mut ctx, 0.0, Vec::new()).unwrap();
        // Decoder evaluation is deterministic; classifier evaluation may move by a tie.
        assert!(
            (fresh.score - recorded.score).abs() <= 0.005,
            "{}: scores {} now, manifest says {}",
            recorded.name,
            fresh.score,
            recorded.score
        );
        assert_eq!(fresh.base_score.is_some(), recorded.base_score.is_some());
        if let (Some(now), Some(then)) = (fresh.base_score, recorded.base_score) {
            assert!(
                (now - then).abs() <= 0.005,
                "{}: base score moved",
                recorded.name
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} shipped models");
}

#[test]
fn decoder_fine_tunes_beat_their_base_by_thirty_points() {
    let manifest = manifest();
    let fine_tunes: Vec<_> = manifest
        .models
        .iter()
        .filter(|m| m.architecture == "llama" && m.base.is_some())
        .collect();
    // Four plain, two AdamR and one multi-task fine-tune.
    assert_eq!(
        fine_tunes.len(),
        7,
        "plain, AdamR and multi-task fine-tunes"
    );
    for m in fine_tunes {
        let base = m.base_score.unwrap();
        assert!(
            m.score - base >= 0.30,
            "{}: {} vs base {}",
            m.name,
            m.score,
            base
        );
    }
    let adamr = manifest
        .models
        .iter()
        .filter(|m| m.recipe["pull"]["kind"] == "toward_pretrained")
        .count();
    assert!(adamr >= 2, "AdamR fine-tunes in the zoo");
}

#[test]
fn decoder_evaluation_takes_under_two_seconds() {
    for m in manifest()
        .models
        .iter()
        .filter(|m| m.architecture == "llama")
    {
        // Recorded by the build on this kind of machine; the multi-task model runs four sets.
        let tasks = m.task.split('+').count() as f64;
        assert!(
            m.eval_seconds <= 2.0 * tasks,
            "{}: {} s",
            m.name,
            m.eval_seconds
        );
    }
}

/// Last-position logits of candle-transformers' llama on `ids`.
pub fn candle_llama_logits(dir: &Path, ids: &[u32]) -> Vec<f32> {
    use candle_transformers::models::llama::{Cache, Llama, LlamaConfig};
    let cfg: LlamaConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let cfg = cfg.into_config(false);
    let dev = Device::Cpu;
    let file = dir.join("model.safetensors");
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &dev) }.unwrap();
    let model = Llama::load(vb, &cfg).unwrap();
    let mut cache = Cache::new(false, DType::F32, &cfg, &dev).unwrap();
    let input = Tensor::new(ids, &dev).unwrap().unsqueeze(0).unwrap();
    model
        .forward(&input, 0, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn decoder_training_saves_a_checkpoint_other_tools_read() {
    let tasks = TextTasks::new(sources());
    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("add-smoke");
    let recipe = decoder::DecoderRecipe {
        tasks: vec![TextTask::Add],
        steps: 12,
        batch: 8,
        peak_lr: 3e-3,
        pull: Pull::TowardPretrained { lambda: 0.1 },
        seed: 3,
    };
    let base = spec("tiny-base").unwrap().path();
    let mut seen = 0;
    let losses = decoder::train(&recipe, &tasks, Some(&base), &folder, &mut |r| {
        seen = r.step;
        Ok(())
    })
    .unwrap();
    assert_eq!((losses.len(), seen), (12, 12));
    let first = losses[..3].iter().sum::<f32>();
    let last = losses[9..].iter().sum::<f32>();
    assert!(last < first, "fine-tuning lowers the loss: {losses:?}");

    // Our runtime and candle-transformers agree on the saved folder.
    let model = Arc::new(LanguageModel::load(&folder).unwrap());
    let ids = model.tokenizer.encode_prompt("add: 12+30 = ").unwrap();
    assert_eq!(ids[0], alignscope::zoo::byte_tokenizer::BOS);
    let mut s = Session::new(model.clone());
    s.feed(&ids).unwrap();
    let ours = s.logits().unwrap().to_vec();
    let theirs = candle_llama_logits(&folder, &ids);
    let diff = crate::common::max_abs_diff(&ours, &theirs);
    assert!(diff < 1e-3, "runtime vs candle-transformers: {diff}");
}

#[test]
fn an_interrupted_training_keeps_the_previous_folder() {
    let tasks = TextTasks::new(sources());
    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("model");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("config.json"), "{\"previous\": true}").unwrap();
    let recipe = decoder::DecoderRecipe {
        tasks: vec![TextTask::Reverse],
        steps: 10,
        batch: 4,
        peak_lr: 1e-3,
        pull: Pull::None,
        seed: 1,
    };
    let err = decoder::train(&recipe, &tasks, None, &folder, &mut |r| {
        anyhow::ensure!(r.step < 3, "cancelled");
        Ok(())
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("cancelled"));
    let kept = std::fs::read_to_string(folder.join("config.json")).unwrap();
    assert!(kept.contains("previous"), "the old folder is untouched");
    let leftovers: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no partial folder is left behind");
}

#[test]
fn vit_checkpoint_gives_the_training_logits_in_candle_transformers() {
    use alignscope::eval::classifier::{eval_scenes, scene_tensor};
    use alignscope::train::vit::TrainVit;
    let s = spec("vit-a").unwrap();
    let Recipe::Vit(recipe) = &s.recipe else {
        panic!("vit-a is a ViT")
    };
    let varmap = VarMap::new();
    let model = TrainVit::new(recipe.shape, seeded_builder(&varmap, 0)).unwrap();
    let missing = load_into(&varmap, &s.path().join("model.safetensors"), "").unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    let scenes = eval_scenes(4);
    let refs: Vec<_> = scenes.iter().collect();
    let ours = model.forward(&scene_tensor(&refs).unwrap()).unwrap();

    use candle_transformers::models::vit;
    let cfg: vit::Config =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("config.json")).unwrap())
            .unwrap();
    let file = s.path().join("model.safetensors");
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &Device::Cpu) }.unwrap();
    let theirs = vit::Model::new(&cfg, recipe.shape.num_labels, vb)
        .unwrap()
        .forward(&scene_tensor(&refs).unwrap())
        .unwrap();
    let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-3);
}

#[test]
fn minilm_fine_tune_runs_and_loads_as_a_bert_classifier() {
    use alignscope::eval::classifier::BertClassifier;
    use alignscope::train::bert::{BertShape, TrainBertClassifier};
    let data = class_data(ClassTask::Continent, &sources());
    let base = alignscope::assets::embedding_model();
    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("minilm-continent");
    let recipe = minilm::MinilmRecipe {
        task: ClassTask::Continent,
        steps: 2,
        batch: 4,
        peak_lr: 5e-5,
        pull: Pull::None,
        seed: 1,
    };
    minilm::train(&recipe, &data, &base, &folder, &mut |_| Ok(())).unwrap();

    let texts = ["Nairobi", "Lyon", "Lima"];
    let loaded = BertClassifier::load(&folder)
        .unwrap()
        .probs(&texts)
        .unwrap();
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded[0].len(), 5);

    // The training forward pass on the same weights gives the same probabilities.
    let shape: BertShape =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
            .unwrap();
    let varmap = VarMap::new();
    let model = TrainBertClassifier::new(shape, 5, seeded_builder(&varmap, 9)).unwrap();
    let missing = load_into(&varmap, &folder.join("model.safetensors"), "").unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    let mut tok = tokenizers::Tokenizer::from_file(folder.join("tokenizer.json")).unwrap();
    tok.with_padding(Some(tokenizers::PaddingParams::default()));
    let enc = tok.encode_batch(texts.to_vec(), true).unwrap();
    let (ids, mask) = alignscope::train::bert::id_mask(&enc).unwrap();
    let logits = model
        .forward(&ids, &mask.to_dtype(DType::F32).unwrap())
        .unwrap();
    let ours: Vec<Vec<f32>> = candle_nn::ops::softmax(&logits, D::Minus1)
        .unwrap()
        .to_vec2()
        .unwrap();
    for (a, b) in ours.iter().zip(&loaded) {
        assert!(crate::common::max_abs_diff(a, b) < 1e-4, "{a:?} vs {b:?}");
    }
}

#[test]
fn broken_zoo_files_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, "{ \"models\": [").unwrap();
    let err = format!("{:#}", Manifest::load(&manifest).unwrap_err());
    assert!(
        err.contains("manifest.json") && err.contains("not a zoo manifest"),
        "{err}"
    );

    for f in ["countries.tsv", "sentiment_words.tsv", "cities.tsv"] {
        std::fs::copy(
            alignscope::zoo::dir().join("data").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("countries.tsv"),
        "country\tcapital\nPeru\tLima\n",
    )
    .unwrap();
    let err = format!("{:#}", Sources::load(dir.path()).unwrap_err());
    assert!(
        err.contains("countries.tsv") && err.contains("line 2"),
        "{err}"
    );

    let err = format!("{:#}", spec("tiny-nonsense").unwrap_err());
    assert!(err.contains("tiny-add"), "lists the zoo: {err}");
}
