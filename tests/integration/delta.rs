//! The Delta lab's engine on generated checkpoints (sharded, f32/f16/bf16) and on zoo models:
//! DARE's arithmetic and masks, magnitude's top-k, mergekit's merge rules, YAML, bad inputs.

use std::collections::HashMap;
use std::path::Path;

use alignscope::checkpoint::decode_f32;
use alignscope::checkpoint::Checkpoint;
use alignscope::delta::merge::merge_tensor;
use alignscope::delta::prune::prune_tensor;
use alignscope::delta::{
    merge_checkpoints, prune_checkpoint, Engine, MergeConfig, MergeInput, MergeMethod, MergeSpec,
    Method, Output, PruneSpec, TensorFilter,
};
use candle_core::{DType, Device, Tensor};

fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    // A small LCG: deterministic test data without another dependency.
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
        })
        .collect()
}

/// Tensors of a toy llama-like model: (name, shape).
const SHAPES: [(&str, &[usize]); 5] = [
    ("model.embed_tokens.weight", &[50, 16]),
    ("model.layers.0.self_attn.q_proj.weight", &[16, 16]),
    ("model.layers.0.mlp.up_proj.weight", &[64, 16]),
    ("model.layers.0.input_layernorm.weight", &[16]),
    ("lm_head.weight", &[50, 16]),
];

/// Writes a checkpoint whose tensors are `base + delta_scale·noise(seed)` in `dtype`, as one
/// file or as two shards with an index.
fn write_model(dir: &Path, seed: u64, delta_scale: f32, dtype: DType, sharded: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (i, (name, shape)) in SHAPES.iter().enumerate() {
        let n: usize = shape.iter().product();
        let base = values(100 + i as u64, n, 0.1);
        let d = values(seed * 1000 + i as u64, n, delta_scale);
        let v: Vec<f32> = base.iter().zip(&d).map(|(b, d)| b + d).collect();
        let t = Tensor::from_vec(v, *shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        tensors.push((name.to_string(), t));
    }
    std::fs::write(dir.join("config.json"), r#"{"model_type": "toy"}"#).unwrap();
    if !sharded {
        let map: HashMap<String, Tensor> = tensors.into_iter().collect();
        candle_core::safetensors::save(&map, dir.join("model.safetensors")).unwrap();
        return;
    }
    let mut weight_map = serde_json::Map::new();
    for (k, part) in tensors.chunks(3).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", k + 1);
        let map: HashMap<String, Tensor> = part.iter().cloned().collect();
        candle_core::safetensors::save(&map, dir.join(&file)).unwrap();
        for (name, _) in part {
            weight_map.insert(name.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

fn read_all(ck: &Checkpoint) -> HashMap<String, Vec<f32>> {
    ck.tensors()
        .iter()
        .map(|t| (t.name.clone(), ck.read_f32(t).unwrap()))
        .collect()
}

fn no_progress() -> impl FnMut(u64, u64, &str) -> anyhow::Result<()> {
    |_, _, _| Ok(())
}

#[test]
fn dare_on_sharded_checkpoints_keeps_or_rescales_every_entry_in_every_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let (b, f, o) = (
            tmp.path().join(format!("base-{dtype:?}")),
            tmp.path().join(format!("ft-{dtype:?}")),
            tmp.path().join(format!("out-{dtype:?}")),
        );
        write_model(&b, 0, 0.0, dtype, true);
        write_model(&f, 1, 0.01, dtype, true);
        let (base, ft) = (Checkpoint::open(&b).unwrap(), Checkpoint::open(&f).unwrap());
        let spec = PruneSpec {
            seed: 3,
            ..PruneSpec::new(Method::Dare, 0.5)
        };
        // Tiny shards: the output is sharded too, with an index.
        let output = Output {
            max_shard_bytes: 3_000,
            ..Output::new(&o)
        };
        let summary = prune_checkpoint(
            &base,
            &ft,
            &spec,
            &Engine::default(),
            &output,
            &mut no_progress(),
        )
        .unwrap();
        assert!(o.join("model.safetensors.index.json").is_file());
        assert!(
            o.join("config.json").is_file(),
            "side files are carried over"
        );
        let out = Checkpoint::open(&o).unwrap();
        assert_eq!(out.tensors().len(), SHAPES.len());
        let (bv, fv, ov) = (read_all(&base), read_all(&ft), read_all(&out));
        let mut kept = 0usize;
        let mut total = 0usize;
        for t in out.tensors() {
            assert_eq!(
                t.dtype,
                ft.get(&t.name).unwrap().dtype,
                "dtype of {}",
                t.name
            );
            let (b, f, o) = (&bv[&t.name], &fv[&t.name], &ov[&t.name]);
            for i in 0..b.len() {
                let rescaled = b[i] + (f[i] - b[i]) * 2.0;
                // Written back in the checkpoint's dtype: compare after the same rounding.
                let round = |x: f32| {
                    decode_f32(
                        &alignscope::checkpoint::encode(&[x], t.dtype).unwrap(),
                        t.dtype,
                    )
                    .unwrap()[0]
                };
                if o[i] == b[i] && f[i] != b[i] {
                    continue;
                }
                assert_eq!(
                    o[i],
                    round(rescaled),
                    "{}[{i}] is neither base nor rescaled",
                    t.name
                );
                kept += 1;
            }
            total += b.len();
        }
        let frac = kept as f64 / total as f64;
        assert!((frac - 0.5).abs() < 0.05, "{dtype:?}: kept {frac}");
        assert!((summary.kept_fraction() - frac).abs() < 0.02);
    }
}

#[test]
fn masks_depend_on_seed_and_name_only_not_on_threads() {
    let base = values(1, 300_000, 0.1);
    let ft: Vec<f32> = base
        .iter()
        .zip(values(2, 300_000, 0.01))
        .map(|(b, d)| b + d)
        .collect();
    let spec = PruneSpec {
        seed: 11,
        ..PruneSpec::new(Method::Dare, 0.9)
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            prune_tensor(&spec, &Engine::default(), "w", &[300_000], &base, &ft)
                .unwrap()
                .0
        })
    };
    let one = run(1);
    assert_eq!(one, run(3), "one thread and three give the same mask");
    let other_name = prune_tensor(&spec, &Engine::default(), "v", &[300_000], &base, &ft)
        .unwrap()
        .0;
    assert_ne!(one, other_name);
    // DARE is unbiased: the rescaled sum of δ stays near the original sum.
    let sum = |o: &[f32]| {
        o.iter()
            .zip(&base)
            .map(|(o, b)| (o - b) as f64)
            .sum::<f64>()
    };
    let abs = ft
        .iter()
        .zip(&base)
        .map(|(f, b)| (f - b).abs() as f64)
        .sum::<f64>();
    assert!(
        (sum(&one) - sum(&ft)).abs() < 0.05 * abs,
        "{} vs {}",
        sum(&one),
        sum(&ft)
    );
}

#[test]
fn magnitude_keeps_the_largest_deltas_and_darex_rescales_by_one_over_q() {
    let base = values(1, 10_000, 0.1);
    let ft: Vec<f32> = base
        .iter()
        .zip(values(2, 10_000, 0.01))
        .map(|(b, d)| b + d)
        .collect();
    let (out, stats) = prune_tensor(
        &PruneSpec::new(Method::Magnitude, 0.9),
        &Engine::default(),
        "w",
        &[10_000],
        &base,
        &ft,
    )
    .unwrap();
    assert_eq!(stats.kept, 1_000);
    let kept_min = (0..base.len())
        .filter(|&i| out[i] != base[i])
        .map(|i| (ft[i] - base[i]).abs())
        .fold(f32::MAX, f32::min);
    let dropped_max = (0..base.len())
        .filter(|&i| out[i] == base[i])
        .map(|i| (ft[i] - base[i]).abs())
        .fold(0.0, f32::max);
    assert!(kept_min >= dropped_max);

    let spec = PruneSpec {
        q: 0.25,
        ..PruneSpec::new(Method::DarexQ, 0.9)
    };
    let (out, _) = prune_tensor(&spec, &Engine::default(), "w", &[10_000], &base, &ft).unwrap();
    for i in 0..base.len() {
        if out[i] != base[i] {
            assert_eq!(out[i], base[i] + (ft[i] - base[i]) * 4.0);
        }
    }
    let bad = PruneSpec { q: 1.5, ..spec };
    assert!(bad.validate().unwrap_err().to_string().contains("q = 1.5"));
}

#[test]
fn merges_follow_mergekit() {
    let base = vec![0.0f32; 4];
    let d = || vec![vec![1.0f32, -2.0, 0.5, 0.0], vec![-3.0f32, 1.0, 0.5, 0.2]];
    let input = |w: f64| MergeInput {
        weight: w,
        density: 1.0,
    };
    // Task arithmetic: Σ w_i δ_i, no normalisation by default.
    let ta = MergeSpec::new(MergeMethod::TaskArithmetic, vec![input(1.0), input(0.5)]);
    assert_eq!(
        merge_tensor(&ta, "t", &base, &mut d()),
        vec![-0.5, -1.5, 0.75, 0.1]
    );
    // TIES at density 1: sign of Σ w_i δ_i elected, agreeing entries summed and divided by
    // the weights that agreed.
    let ties = MergeSpec::new(MergeMethod::Ties, vec![input(1.0), input(1.0)]);
    assert_eq!(
        merge_tensor(&ties, "t", &base, &mut d()),
        vec![-3.0, -2.0, 0.5, 0.2]
    );
    // TIES at density 0.5 keeps the 2 largest |δ| of each model first.
    let ties_half = MergeSpec::new(
        MergeMethod::Ties,
        vec![
            MergeInput {
                weight: 1.0,
                density: 0.5
            };
            2
        ],
    );
    assert_eq!(
        merge_tensor(&ties_half, "t", &base, &mut d()),
        vec![-3.0, -2.0, 0.0, 0.0]
    );
    // dare_linear keeps about `density` and matches the L1 norm of each δ.
    let n = 100_000;
    let base = vec![0.0f32; n];
    let delta = values(5, n, 1.0);
    let dare = MergeSpec::new(
        MergeMethod::DareLinear,
        vec![MergeInput {
            weight: 1.0,
            density: 0.3,
        }],
    );
    let out = merge_tensor(&dare, "t", &base, &mut [delta.clone()]);
    let kept = out.iter().filter(|x| **x != 0.0).count() as f64 / n as f64;
    assert!((kept - 0.3).abs() < 0.01, "kept {kept}");
    let l1 = |v: &[f32]| v.iter().map(|x| x.abs() as f64).sum::<f64>();
    assert!((l1(&out) / l1(&delta) - 1.0).abs() < 1e-3);
}

#[test]
fn mergekit_yaml_reads_writes_and_merges() {
    let tmp = tempfile::tempdir().unwrap();
    write_model(&tmp.path().join("base"), 0, 0.0, DType::F32, false);
    write_model(&tmp.path().join("a"), 1, 0.01, DType::F32, false);
    write_model(&tmp.path().join("b"), 2, 0.01, DType::BF16, true);
    let yaml = "merge_method: dare_ties\nbase_model: base\nmodels:\n  - model: a\n    parameters:\n      density: 0.5\n      weight: 0.7\n  - model: b\n    parameters: {weight: 0.3}\nparameters:\n  density: 0.4\n  normalize: true\n  int8_mask: true\ndtype: bfloat16\nrandom_seed: 9\n";
    let path = tmp.path().join("merge.yml");
    std::fs::write(&path, yaml).unwrap();
    let c = MergeConfig::read(&path).unwrap();
    assert_eq!(c.spec.method, MergeMethod::DareTies);
    assert_eq!(
        c.spec.inputs[0],
        MergeInput {
            weight: 0.7,
            density: 0.5
        }
    );
    assert_eq!(
        c.spec.inputs[1],
        MergeInput {
            weight: 0.3,
            density: 0.4
        },
        "global density applies"
    );
    assert!(c.spec.normalize && c.spec.rescale);
    assert_eq!(c.spec.seed, 9);
    assert_eq!(c.ignored, vec!["int8_mask".to_string()]);
    assert_eq!(c.models[0], tmp.path().join("a"));
    let again = MergeConfig::parse(&c.to_yaml().unwrap(), Path::new("/")).unwrap();
    assert_eq!(again.spec, c.spec);
    assert_eq!(again.models, c.models);

    let out = tmp.path().join("merged");
    let models: Vec<Checkpoint> = c
        .models
        .iter()
        .map(|m| Checkpoint::open(m).unwrap())
        .collect();
    let output = Output {
        dtype: c.dtype,
        ..Output::new(&out)
    };
    merge_checkpoints(
        &Checkpoint::open(&c.base_model).unwrap(),
        &models,
        &c.spec,
        &output,
        &mut no_progress(),
    )
    .unwrap();
    let merged =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(merged.len(), SHAPES.len());
    assert!(merged.values().all(|t| t.dtype() == DType::BF16));

    for (bad, says) in [
        ("merge_method: slerp\nbase_model: base\nmodels: []\n", "slerp"),
        ("merge_method: ties\nbase_model: base\nmodels:\n  - model: a\n", "no weight"),
        ("merge_method: ties\nbase_model: base\nmodels:\n  - model: a\n    parameters: {weight: [0.1, 0.9]}\n", "per-tensor"),
        ("merge_method: ties\nbase_model: base\nslices: []\nmodels: []\n", "slices"),
        ("merge_method: [ties\n", "merge.yml"),
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = format!("{:#}", MergeConfig::read(&path).unwrap_err());
        assert!(e.contains(says) && e.contains("merge.yml"), "{bad:?} gave: {e}");
    }
}

#[test]
fn broken_and_mismatched_checkpoints_are_clear_errors_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, f) = (tmp.path().join("base"), tmp.path().join("ft"));
    write_model(&b, 0, 0.0, DType::F32, false);
    write_model(&f, 1, 0.01, DType::F32, false);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("precious.txt"), "keep me").unwrap();

    // A fine-tune with a tensor of another shape.
    let odd = tmp.path().join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    let mut map =
        candle_core::safetensors::load(f.join("model.safetensors"), &Device::Cpu).unwrap();
    map.insert(
        "lm_head.weight".into(),
        Tensor::zeros((49, 16), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&map, odd.join("model.safetensors")).unwrap();
    let spec = PruneSpec::new(Method::Dare, 0.5);
    let e = prune_checkpoint(
        &Checkpoint::open(&b).unwrap(),
        &Checkpoint::open(&odd).unwrap(),
        &spec,
        &Engine::default(),
        &Output::new(&out),
        &mut no_progress(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("lm_head.weight") && e.contains("[49, 16]"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("precious.txt")).unwrap(),
        "keep me"
    );

    // Truncated file, a header that is not JSON, an index naming a missing shard.
    let bytes = std::fs::read(f.join("model.safetensors")).unwrap();
    let cut = tmp.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::write(cut.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = Checkpoint::open(&cut).err().unwrap().to_string();
    assert!(
        e.contains("cut") && e.contains("not a safetensors file"),
        "{e}"
    );
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
    assert!(Checkpoint::open(&junk)
        .err()
        .unwrap()
        .to_string()
        .contains("junk.safetensors"));
    let idx = tmp.path().join("idx");
    std::fs::create_dir_all(&idx).unwrap();
    std::fs::write(
        idx.join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "gone.safetensors"}}"#,
    )
    .unwrap();
    let e = Checkpoint::open(&idx).err().unwrap().to_string();
    assert!(
        e.contains("gone.safetensors") && e.contains("missing"),
        "{e}"
    );
    assert!(Checkpoint::open(&tmp.path().join("nowhere"))
        .err()
        .unwrap()
        .to_string()
        .contains("no such"));

    // Writing over an input is refused.
    let e = prune_checkpoint(
        &Checkpoint::open(&b).unwrap(),
        &Checkpoint::open(&f).unwrap(),
        &spec,
        &Engine::default(),
        &Output::new(&f),
        &mut no_progress(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("one of the inputs"), "{e}");
    // A cancelled run leaves the earlier output folder whole.
    let mut calls = 0;
    let r = prune_checkpoint(
        &Checkpoint::open(&b).unwrap(),
        &Checkpoint::open(&f).unwrap(),
        &spec,
        &Engine::default(),
        &Output::new(&out),
        &mut |_, _, _| {
            calls += 1;
            anyhow::ensure!(calls < 3, "cancelled");
            Ok(())
        },
    );
    assert!(r.is_err());
    assert_eq!(
        std::fs::read_to_string(out.join("precious.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn attention_mlp_filter_leaves_embeddings_norms_and_head_fine_tuned() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, f, o) = (
        tmp.path().join("b"),
        tmp.path().join("f"),
        tmp.path().join("o"),
    );
    write_model(&b, 0, 0.0, DType::F32, false);
    write_model(&f, 1, 0.01, DType::F32, false);
    let spec = PruneSpec {
        filter: TensorFilter::AttentionMlp,
        ..PruneSpec::new(Method::Dare, 0.999)
    };
    let (base, ft) = (Checkpoint::open(&b).unwrap(), Checkpoint::open(&f).unwrap());
    let s = prune_checkpoint(
        &base,
        &ft,
        &spec,
        &Engine::default(),
        &Output::new(&o),
        &mut no_progress(),
    )
    .unwrap();
    let mut pruned: Vec<&str> = s.tensors.iter().map(|t| t.name.as_str()).collect();
    pruned.sort();
    assert_eq!(
        pruned,
        [
            "model.layers.0.mlp.up_proj.weight",
            "model.layers.0.self_attn.q_proj.weight"
        ]
    );
    let (fv, ov) = (read_all(&ft), read_all(&Checkpoint::open(&o).unwrap()));
    assert_eq!(fv["lm_head.weight"], ov["lm_head.weight"]);
    assert_eq!(
        fv["model.embed_tokens.weight"],
        ov["model.embed_tokens.weight"]
    );
}

#[test]
fn zoo_decoder_at_drop_rate_zero_scores_as_shipped_and_collapses_at_0_99() {
    let mut probe = alignscope::delta::lab::ZooProbe::new("tiny-add").unwrap();
    let how = alignscope::delta::lab::QChoice::Fixed(1.0);
    let (p0, _) = probe
        .point(&PruneSpec::new(Method::Dare, 0.0), how, &Engine::default())
        .unwrap();
    assert!((p0.score - 0.99).abs() < 0.011, "p = 0 scores {}", p0.score);
    let (p99, _) = probe
        .point(&PruneSpec::new(Method::Dare, 0.99), how, &Engine::default())
        .unwrap();
    assert!(
        p99.score < 0.1,
        "large decoder deltas do not survive p = 0.99: {}",
        p99.score
    );
    // Calibration inputs reach every attention and MLP matrix of the 4 layers.
    let stats = probe.input_stats().unwrap();
    assert_eq!(stats.len(), 4 * 7);
    let (pa, summary) = probe
        .point(
            &PruneSpec::new(Method::ActivationAware, 0.5),
            how,
            &Engine::default(),
        )
        .unwrap();
    assert!((summary.kept_fraction() - 0.5).abs() < 0.05);
    // Importance pruning keeps large deltas working where random drop does not (DARE: 0.33).
    assert!(
        pa.score > 0.8,
        "activation-aware at p = 0.5 scores {}",
        pa.score
    );
}

/// The same pruned checkpoint from the CPU (fused byte path) and from the wgpu kernels, byte
/// for byte (here on the software adapter; skipped without one).
#[test]
fn gpu_and_cpu_checkpoints_are_identical() {
    let Some(gpu) = alignscope::gpu::DeltaGpu::new().unwrap() else {
        eprintln!("no wgpu adapter: skipped");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (b, f) = (tmp.path().join("b"), tmp.path().join("f"));
    write_model(&b, 0, 0.0, DType::BF16, false);
    write_model(&f, 1, 0.01, DType::BF16, false);
    let (base, ft) = (Checkpoint::open(&b).unwrap(), Checkpoint::open(&f).unwrap());
    for method in [Method::Dare, Method::DarexQ, Method::Magnitude] {
        let spec = PruneSpec {
            seed: 5,
            q: 0.3,
            ..PruneSpec::new(method, 0.8)
        };
        let run = |engine: &Engine, name: &str| {
            let out = tmp.path().join(name);
            prune_checkpoint(
                &base,
                &ft,
                &spec,
                engine,
                &Output::new(&out),
                &mut no_progress(),
            )
            .unwrap();
            std::fs::read(out.join("model.safetensors")).unwrap()
        };
        let on_gpu = Engine {
            gpu: Some(&gpu),
            ..Default::default()
        };
        assert!(
            run(&Engine::default(), "cpu") == run(&on_gpu, "gpu"),
            "{method:?}: {} and the CPU differ",
            gpu.describe()
        );
    }
}
