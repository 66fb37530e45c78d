//! The OT solvers against POT (fixtures from scripts/ot_fixtures.py), and fusions that must
//! undo a renaming of neurons exactly.

use alignscope::fusion::emd::emd;
use alignscope::fusion::options::{BranchMap, CostKind, FuseOptions, QkPolicy, ResidualPolicy};
use alignscope::fusion::ot::{sinkhorn_log, SinkhornOptions};
use alignscope::fusion::params::NamedParams;
use alignscope::fusion::transport::Solver;

#[derive(serde::Deserialize)]
struct Fixture {
    rows: usize,
    cols: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    cost: Vec<f64>,
    emd_cost: f64,
    sinkhorn: std::collections::BTreeMap<String, Vec<f64>>,
}

fn fixtures() -> Vec<(String, Fixture)> {
    let dir = crate::common::fixture("ot");
    let mut out: Vec<(String, Fixture)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let f = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), f)
        })
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(out.len(), 4, "fixtures in {}", dir.display());
    out
}

#[test]
fn log_sinkhorn_plans_equal_pots() {
    for (name, f) in fixtures() {
        for (reg, want) in &f.sinkhorn {
            let reg: f64 = reg.parse().unwrap();
            let got = sinkhorn_log(&f.a, &f.b, &f.cost, reg, SinkhornOptions::default()).unwrap();
            assert_eq!((got.plan.rows, got.plan.cols), (f.rows, f.cols));
            let diff = got
                .plan
                .t
                .iter()
                .zip(want)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(diff < 1e-6, "{name} reg {reg}: max |ΔT| = {diff:e}");
        }
    }
}

#[test]
fn exact_costs_equal_pots_and_plans_are_feasible() {
    for (name, f) in fixtures() {
        let r = emd(&f.a, &f.b, &f.cost, 1_000_000).unwrap();
        let rel = (r.cost - f.emd_cost).abs() / f.emd_cost;
        assert!(
            rel < 1e-9,
            "{name}: cost {} against POT's {} ({rel:e})",
            r.cost,
            f.emd_cost
        );
        for (x, y) in r.plan.row_sums().iter().zip(&f.a) {
            assert!((x - y).abs() < 1e-12, "{name}: row sums");
        }
        for (x, y) in r.plan.col_sums().iter().zip(&f.b) {
            assert!((x - y).abs() < 1e-12, "{name}: column sums");
        }
        assert!(
            r.plan.t.iter().all(|x| *x >= -1e-15),
            "{name}: negative flow"
        );
        // A basic solution: at most n + m − 1 non-zero entries.
        let support = r.plan.t.iter().filter(|x| **x > 1e-15).count();
        assert!(support < f.rows + f.cols, "{name}: support {support}");
    }
    // With uniform square marginals the optimum is a permutation (scaled by 1/n).
    let n = 7;
    let cost: Vec<f64> = (0..n * n)
        .map(|k| ((k * 37 % 11) as f64).sin().abs())
        .collect();
    let u = vec![1.0 / n as f64; n];
    let r = emd(&u, &u, &cost, 10_000).unwrap();
    for row in r.plan.t.chunks(n) {
        assert_eq!(row.iter().filter(|x| **x > 1e-12).count(), 1);
    }
}

/// `new[j] = old[perm[j]]` over the rows (`rows`) or columns of a tensor seen as a matrix with
/// `cols` columns.
fn permute(w: &mut impl NamedParams, name: &str, cols: usize, perm: &[usize], rows: bool) {
    let old = w.params()[name].data.clone();
    let n_rows = old.len() / cols;
    let mut new = old.clone();
    for i in 0..n_rows {
        for j in 0..cols {
            let (si, sj) = if rows { (perm[i], j) } else { (i, perm[j]) };
            new[i * cols + j] = old[si * cols + sj];
        }
    }
    w.set(name, new).unwrap();
}

fn shuffled(n: usize, rng: &mut rand::rngs::StdRng) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut p: Vec<usize> = (0..n).collect();
    p.shuffle(rng);
    p
}

fn max_weight_diff(a: &impl NamedParams, b: &impl NamedParams) -> f32 {
    a.params()
        .iter()
        .map(|(k, p)| crate::common::max_abs_diff(&p.data, &b.params()[k].data))
        .fold(0.0, f32::max)
}

/// A linear layer's rows (and bias) renamed by `rows`, its inputs by `cols`.
fn permute_linear(w: &mut impl NamedParams, module: &str, rows: &[usize], cols: &[usize]) {
    let name = format!("{module}.weight");
    permute(w, &name, cols.len(), rows, true);
    permute(w, &name, cols.len(), cols, false);
    permute(w, &format!("{module}.bias"), 1, rows, true);
}

/// A LayerNorm's scale and shift renamed with the stream.
fn permute_norm(w: &mut impl NamedParams, module: &str, stream: &[usize]) {
    permute(w, &format!("{module}.weight"), 1, stream, true);
    permute(w, &format!("{module}.bias"), 1, stream, true);
}

/// Renames the neurons of every encoder layer without changing the function, given the
/// stream's renaming: heads (Q, K and V together), positions within heads (Q with K, V
/// alone) and the feed-forward neurons; the norms follow the stream wherever they sit.
fn rename_layers(
    w: &mut impl NamedParams,
    names: &alignscope::fusion::encoder_block::LayerNames,
    layers: usize,
    heads: usize,
    stream: &[usize],
    rng: &mut rand::rngs::StdRng,
) {
    use alignscope::fusion::encoder_block::Norms;
    let h = stream.len();
    let dh = h / heads;
    let norms = match names.norms {
        Norms::Pre { before, after } => [before, after],
        Norms::Post { attention, output } => [attention, output],
    };
    for l in 0..layers {
        let m = |module: &str| names.module(l, module);
        let inner = w.params()[&format!("{}.weight", m("intermediate.dense"))].rows();
        let head_order = shuffled(heads, rng);
        let within = |inner: &[usize]| -> Vec<usize> {
            (0..h)
                .map(|j| head_order[j / dh] * dh + inner[j % dh])
                .collect()
        };
        let qk = within(&shuffled(dh, rng));
        let v = within(&shuffled(dh, rng));
        let ffn = shuffled(inner, rng);
        for norm in norms {
            permute_norm(w, &m(norm), stream);
        }
        let attn = |part: &str| m(&format!("{}.{part}", names.self_attention));
        permute_linear(w, &attn("query"), &qk, stream);
        permute_linear(w, &attn("key"), &qk, stream);
        permute_linear(w, &attn("value"), &v, stream);
        permute_linear(w, &m("attention.output.dense"), stream, &v);
        permute_linear(w, &m("intermediate.dense"), &ffn, stream);
        permute_linear(w, &m("output.dense"), stream, &ffn);
    }
}

/// The paper's options (activations cost, separate Q-K maps, mean residual) with `solver`.
fn paper_defaults(solver: Solver) -> FuseOptions {
    FuseOptions {
        cost: CostKind::Acts,
        solver,
        qk: QkPolicy::Separate,
        residual: ResidualPolicy::Mean,
        branch_map: BranchMap::Own,
    }
}

/// Exact plans on every cost and residual policy (and the branch output on the stream map).
fn exact_option_grid(costs: &[CostKind], qks: &[QkPolicy]) -> Vec<FuseOptions> {
    let residuals = [
        (ResidualPolicy::Mean, BranchMap::Own),
        (ResidualPolicy::Weighted, BranchMap::Own),
        (ResidualPolicy::Skip, BranchMap::Own),
        (ResidualPolicy::Branch, BranchMap::Own),
        (ResidualPolicy::Shared, BranchMap::Own),
        (ResidualPolicy::Mean, BranchMap::Stream),
    ];
    let mut out = Vec::new();
    for &cost in costs {
        for &qk in qks {
            for &(residual, branch_map) in &residuals {
                out.push(FuseOptions {
                    cost,
                    solver: Solver::Emd,
                    qk,
                    residual,
                    branch_map,
                });
            }
        }
    }
    out
}

mod vit {
    use alignscope::eval::classifier::{eval_scenes, score_scenes};
    use alignscope::fusion::activations::{activation_scenes, record};
    use alignscope::fusion::vit_fusion::{fuse, map_count, VIT_LAYERS};
    use alignscope::fusion::vit_weights::VitWeights;
    use alignscope::zoo::specs::spec;
    use rand::SeedableRng;

    use super::*;

    fn zoo(name: &str) -> VitWeights {
        VitWeights::load(&spec(name).unwrap().path()).unwrap()
    }

    fn accuracy(w: &VitWeights, n: usize) -> f64 {
        let model = w.model().unwrap();
        score_scenes(&eval_scenes(n), |x| model.forward(x))
            .unwrap()
            .accuracy
    }

    /// The same function with its neurons renamed: the residual stream, heads (Q, K and V
    /// together), positions within heads (Q with K, V alone) and the feed-forward neurons.
    fn permuted_copy(w: &VitWeights, seed: u64) -> VitWeights {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let s = w.shape;
        let h = s.hidden_size;
        let stream = shuffled(h, &mut rng);
        let mut out = w.clone();
        let patch = "vit.embeddings.patch_embeddings.projection";
        let patch_len = w.params[&format!("{patch}.weight")].data.len() / h;
        permute(
            &mut out,
            &format!("{patch}.weight"),
            patch_len,
            &stream,
            true,
        );
        permute(&mut out, &format!("{patch}.bias"), 1, &stream, true);
        permute(&mut out, "vit.embeddings.cls_token", h, &stream, false);
        permute(
            &mut out,
            "vit.embeddings.position_embeddings",
            h,
            &stream,
            false,
        );
        rename_layers(
            &mut out,
            &VIT_LAYERS,
            s.num_layers,
            s.num_heads,
            &stream,
            &mut rng,
        );
        permute_norm(&mut out, "vit.layernorm", &stream);
        let identity: Vec<usize> = (0..s.num_labels).collect();
        permute_linear(&mut out, "classifier", &identity, &stream);
        out
    }

    #[test]
    fn hard_fusion_undoes_a_renaming_of_neurons_exactly() {
        let b = zoo("vit-b");
        let a = permuted_copy(&b, 3);
        assert!(max_weight_diff(&a, &b) > 0.1, "the copy is renamed");
        assert!(
            (accuracy(&a, 200) - accuracy(&b, 200)).abs() < 1e-9,
            "renaming keeps the function"
        );
        let scenes = activation_scenes(64);
        let acts = (record(&a, &scenes).unwrap(), record(&b, &scenes).unwrap());
        // Every policy must undo it: for a renaming, each branch's own map is the stream's.
        let grid = exact_option_grid(
            &[CostKind::Acts, CostKind::Weights],
            &[QkPolicy::Separate, QkPolicy::Joint],
        );
        for opts in grid {
            let mut seen = 0;
            let fused = fuse(&a, &b, (&acts.0, &acts.1), opts, &mut |_, done, total| {
                seen = done;
                assert!(done <= total);
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, map_count(&opts, 4));
            assert_eq!(fused.maps.len(), seen);
            let diff = max_weight_diff(&fused.weights, &b);
            assert!(diff < 1e-5, "{opts:?}: fused differs from B by {diff}");
        }
    }

    #[test]
    fn three_models_fuse_into_the_mean_of_the_anchor_and_both_aligned_models() {
        use alignscope::fusion::family::average_fusions;
        let b = zoo("vit-b");
        let (a, c) = (permuted_copy(&b, 3), permuted_copy(&b, 9));
        let scenes = activation_scenes(32);
        let acts_b = record(&b, &scenes).unwrap();
        let opts = exact_option_grid(&[CostKind::Acts], &[QkPolicy::Separate])[0];
        let pair = |m: &VitWeights| {
            let acts = record(m, &scenes).unwrap();
            fuse(m, &b, (&acts, &acts_b), opts, &mut |_, _, _| Ok(()))
                .unwrap()
                .weights
        };
        let all = average_fusions(&b, &[pair(&a), pair(&c)]).unwrap();
        assert!(max_weight_diff(&all, &b) < 1e-5, "renamed copies fuse back");
        // With the plain means as the pairs, the result is the plain mean of all three.
        let plain = average_fusions(&b, &[a.average(&b).unwrap(), c.average(&b).unwrap()]).unwrap();
        let name = "classifier.weight";
        let (pa, pb, pc) = (
            &a.params[name].data,
            &b.params[name].data,
            &c.params[name].data,
        );
        for (k, x) in plain.params[name].data.iter().enumerate() {
            assert!((x - (pa[k] + pb[k] + pc[k]) / 3.0).abs() < 1e-6);
        }
    }

    #[test]
    fn soft_maps_blur_and_heterogeneous_fusion_takes_the_anchors_widths() {
        let (a, b) = (zoo("vit-a"), zoo("vit-narrow"));
        let scenes = activation_scenes(64);
        let acts = (record(&a, &scenes).unwrap(), record(&b, &scenes).unwrap());
        let opts = paper_defaults;
        let none = &mut |_: &_, _, _| Ok(());
        let hard = fuse(&a, &b, (&acts.0, &acts.1), opts(Solver::Emd), none).unwrap();
        let soft = fuse(
            &a,
            &b,
            (&acts.0, &acts.1),
            opts(Solver::Sinkhorn { reg: 0.08 }),
            none,
        )
        .unwrap();
        assert_eq!(hard.weights.shape, b.shape, "the anchor's widths");
        for (name, p) in &hard.weights.params {
            assert_eq!(p.shape, b.params[name].shape, "{name}");
        }
        let first = (&hard.maps[0], &soft.maps[0]);
        assert_eq!((first.0.plan.rows, first.0.plan.cols), (64, 48));
        // Exact plans are basic (≤ n + m − 1 entries); Sinkhorn's are dense.
        let support = |m: &alignscope::fusion::transport::TransportMap| {
            m.plan.t.iter().filter(|&&t| t > 1e-12).count()
        };
        assert!(support(first.0) < 64 + 48, "at most n + m − 1 entries");
        assert!(support(first.1) > 64 * 48 / 2);
        assert!(first.0.sharpness() > first.1.sharpness());
        // Far above chance (1/12) for a one-shot compression of a 64-wide model into 48.
        assert!(accuracy(&hard.weights, 300) > 0.2);
    }
}

pub mod decoder {
    pub use alignscope::fusion::activations::{record_tokens, token_tensor};
    pub use alignscope::fusion::decoder_fusion::{fuse, map_count};
    pub use alignscope::fusion::decoder_weights::{layer, DecoderWeights};
    use alignscope::train::llama::{LlamaShape, TrainLlama};
    pub use alignscope::zoo::byte_tokenizer::{self, BOS, EOS};
    use alignscope::zoo::specs::spec;
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A random decoder with grouped-query attention (4 query heads on 2 key-value heads) and
    /// a tied head, saved as a Hugging Face folder.
    pub fn random_gqa(dir: &std::path::Path, tied: bool, seed: u64) -> DecoderWeights {
        random_gqa_mlp(dir, tied, seed, 48)
    }

    /// [`random_gqa`] with an MLP of `inner` neurons.
    pub fn random_gqa_mlp(
        dir: &std::path::Path,
        tied: bool,
        seed: u64,
        inner: usize,
    ) -> DecoderWeights {
        let shape = LlamaShape {
            vocab_size: byte_tokenizer::VOCAB_SIZE,
            hidden_size: 32,
            intermediate_size: inner,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            max_positions: 64,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            tie_embeddings: tied,
            qkv_bias: false,
        };
        let varmap = candle_nn::VarMap::new();
        TrainLlama::new(shape, alignscope::train::seeded_builder(&varmap, seed)).unwrap();
        // Norm scales away from 1, so a renaming that forgot them would show.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.contains("norm") {
                let t = var.as_tensor();
                let noise = Tensor::rand(0.5f32, 1.5, t.dims(), &Device::Cpu).unwrap();
                var.set(&noise).unwrap();
            }
        }
        alignscope::train::model_folder::save_checkpoint(
            dir,
            &varmap,
            &shape.hf_config(BOS, EOS),
            |d| byte_tokenizer::write(d, 64),
        )
        .unwrap();
        DecoderWeights::load(dir).unwrap()
    }

    /// The same function with its neurons renamed: the residual stream, key-value groups,
    /// query heads within each group, value dimensions within each key-value head (queries
    /// and keys keep theirs: RoPE) and the MLP's neurons.
    pub fn renamed(w: &DecoderWeights, seed: u64) -> DecoderWeights {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let s = w.shape;
        let (h, hd, kv) = (s.hidden_size, s.head_dim(), s.num_kv_heads);
        let group = s.num_heads / kv;
        let stream = shuffled(h, &mut rng);
        let mut out = w.clone();
        let identity = |n: usize| (0..n).collect::<Vec<_>>();
        let linear = |out: &mut DecoderWeights, name: &str, rows: &[usize], cols: &[usize]| {
            permute(out, name, cols.len(), rows, true);
            permute(out, name, cols.len(), cols, false);
        };
        let vector = |out: &mut DecoderWeights, name: &str| permute(out, name, 1, &stream, true);
        linear(
            &mut out,
            "model.embed_tokens.weight",
            &identity(s.vocab_size),
            &stream,
        );
        for l in 0..s.num_layers {
            let m = |module: &str| layer(l, &format!("{module}.weight"));
            let groups = shuffled(kv, &mut rng);
            let heads: Vec<Vec<usize>> = (0..kv).map(|_| shuffled(group, &mut rng)).collect();
            let dims: Vec<Vec<usize>> = (0..kv).map(|_| shuffled(hd, &mut rng)).collect();
            // New query head j is old head `source(j)`.
            let source = |j: usize| {
                let g = groups[j / group];
                g * group + heads[g][j % group]
            };
            let q_rows: Vec<usize> = (0..s.num_heads * hd)
                .map(|r| source(r / hd) * hd + r % hd)
                .collect();
            let k_rows: Vec<usize> = (0..kv * hd).map(|r| groups[r / hd] * hd + r % hd).collect();
            let v_rows: Vec<usize> = (0..kv * hd)
                .map(|r| {
                    let g = groups[r / hd];
                    g * hd + dims[g][r % hd]
                })
                .collect();
            let o_cols: Vec<usize> = (0..s.num_heads * hd)
                .map(|c| {
                    let old = source(c / hd);
                    old * hd + dims[old / group][c % hd]
                })
                .collect();
            let mlp = shuffled(s.intermediate_size, &mut rng);
            vector(&mut out, &m("input_layernorm"));
            linear(&mut out, &m("self_attn.q_proj"), &q_rows, &stream);
            linear(&mut out, &m("self_attn.k_proj"), &k_rows, &stream);
            linear(&mut out, &m("self_attn.v_proj"), &v_rows, &stream);
            linear(&mut out, &m("self_attn.o_proj"), &stream, &o_cols);
            vector(&mut out, &m("post_attention_layernorm"));
            linear(&mut out, &m("mlp.gate_proj"), &mlp, &stream);
            linear(&mut out, &m("mlp.up_proj"), &mlp, &stream);
            linear(&mut out, &m("mlp.down_proj"), &stream, &mlp);
        }
        vector(&mut out, "model.norm.weight");
        if !s.tie_embeddings {
            linear(&mut out, "lm_head.weight", &identity(s.vocab_size), &stream);
        }
        out
    }

    pub fn token_rows(n: usize, len: usize) -> Vec<Vec<u32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        (0..n)
            .map(|_| (0..len).map(|_| rng.random_range(3..200)).collect())
            .collect()
    }

    pub fn logits(w: &DecoderWeights, rows: &[Vec<u32>]) -> Vec<f32> {
        let out = w
            .model()
            .unwrap()
            .forward(&token_tensor(rows).unwrap())
            .unwrap();
        out.flatten_all().unwrap().to_vec1().unwrap()
    }

    pub fn undoes_renaming(b: &DecoderWeights) {
        let a = renamed(b, 4);
        assert!(max_weight_diff(&a, b) > 0.01, "the copy is renamed");
        let rows = token_rows(6, 20);
        let diff = crate::common::max_abs_diff(&logits(&a, &rows), &logits(b, &rows));
        assert!(
            diff < 1e-4,
            "renaming keeps the function: logits differ by {diff}"
        );
        let acts = (
            record_tokens(&a, &rows).unwrap(),
            record_tokens(b, &rows).unwrap(),
        );
        for opts in exact_option_grid(&[CostKind::Acts, CostKind::Weights], &[QkPolicy::Separate]) {
            let mut seen = 0;
            let fused = fuse(&a, b, (&acts.0, &acts.1), opts, &mut |_, done, total| {
                seen = done;
                assert!(done <= total);
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, map_count(&b.shape), "{opts:?}");
            let diff = max_weight_diff(&fused.weights, b);
            assert!(diff < 1e-5, "{opts:?}: fused differs from B by {diff}");
        }
    }

    #[test]
    fn hard_fusion_undoes_a_renaming_of_a_gqa_decoder_exactly() {
        for tied in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            undoes_renaming(&random_gqa(&dir.path().join("m"), tied, 5));
        }
    }

    #[test]
    fn hard_fusion_undoes_a_renaming_of_the_zoo_decoder_exactly() {
        undoes_renaming(&DecoderWeights::load(&spec("tiny-base").unwrap().path()).unwrap());
    }
}

mod bert {
    use alignscope::fusion::activations::record_encoder;
    use alignscope::fusion::bert_fusion::{fuse, map_count, BERT_LAYERS, EMBEDDING_TABLES};
    use alignscope::fusion::encoder_weights::EncoderWeights;
    use alignscope::zoo::encoder::SentimentSentences;
    use rand::SeedableRng;

    use super::*;

    fn zoo(name: &str) -> EncoderWeights {
        EncoderWeights::load(&alignscope::zoo::specs::spec(name).unwrap().path()).unwrap()
    }

    fn tokens(w: &EncoderWeights, n: usize) -> Vec<Vec<u32>> {
        let tok = alignscope::zoo::minilm::padded_tokenizer(&w.source).unwrap();
        SentimentSentences::load()
            .unwrap()
            .eval()
            .iter()
            .take(n)
            .map(|(t, _)| tok.encode(t.as_str(), true).unwrap().get_ids().to_vec())
            .collect()
    }

    /// The classifier's logits on `rows`, one sentence at a time.
    fn logits(w: &EncoderWeights, rows: &[Vec<u32>]) -> Vec<f32> {
        let model = w.model().unwrap();
        rows.iter()
            .flat_map(|r| {
                let ids = candle_core::Tensor::new(r.as_slice(), &candle_core::Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                let mask = ids
                    .ones_like()
                    .unwrap()
                    .to_dtype(candle_core::DType::F32)
                    .unwrap();
                model
                    .forward(&ids, &mask)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    }

    /// The same function with its neurons renamed: the stream (every embedding table's
    /// columns, every norm), the layers' neurons and the pooler's.
    fn permuted_copy(w: &EncoderWeights, seed: u64) -> EncoderWeights {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let s = &w.shape;
        let h = s.hidden_size;
        let stream = shuffled(h, &mut rng);
        let mut out = w.clone();
        for table in EMBEDDING_TABLES {
            permute(&mut out, table, h, &stream, false);
        }
        permute_norm(&mut out, "bert.embeddings.LayerNorm", &stream);
        let (layers, heads) = (s.num_hidden_layers, s.num_attention_heads);
        rename_layers(&mut out, &BERT_LAYERS, layers, heads, &stream, &mut rng);
        let pooler = shuffled(h, &mut rng);
        permute_linear(&mut out, "bert.pooler.dense", &pooler, &stream);
        let identity: Vec<usize> = (0..w.labels.len()).collect();
        permute_linear(&mut out, "classifier", &identity, &pooler);
        out
    }

    #[test]
    fn hard_fusion_undoes_a_renaming_of_a_post_ln_encoder_exactly() {
        let b = zoo("bert-a");
        let a = permuted_copy(&b, 5);
        assert!(max_weight_diff(&a, &b) > 0.1, "the copy is renamed");
        let rows = tokens(&b, 24);
        let diff = crate::common::max_abs_diff(&logits(&a, &rows), &logits(&b, &rows));
        assert!(diff < 1e-4, "renaming keeps the function: {diff}");
        let acts = (
            record_encoder(&a, &rows).unwrap(),
            record_encoder(&b, &rows).unwrap(),
        );
        let grid = exact_option_grid(
            &[CostKind::Acts, CostKind::Weights],
            &[QkPolicy::Separate, QkPolicy::Joint],
        );
        for opts in grid {
            let mut seen = 0;
            let fused = fuse(&a, &b, (&acts.0, &acts.1), opts, &mut |_, done, _| {
                seen = done;
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, map_count(&opts, b.shape.num_hidden_layers));
            let diff = max_weight_diff(&fused.weights, &b);
            assert!(diff < 1e-5, "{opts:?}: fused differs from B by {diff}");
        }
    }

    #[test]
    fn a_soft_encoder_fusion_loads_in_candle_transformers_with_its_logits() {
        use alignscope::eval::classifier::BertClassifier;
        let (a, b) = (zoo("bert-a"), zoo("bert-b"));
        let rows = tokens(&b, 16);
        let acts = (
            record_encoder(&a, &rows).unwrap(),
            record_encoder(&b, &rows).unwrap(),
        );
        let opts = paper_defaults(Solver::Sinkhorn { reg: 0.08 });
        let fused = fuse(&a, &b, (&acts.0, &acts.1), opts, &mut |_, _, _| Ok(())).unwrap();
        let sharp = fused.maps[0].sharpness();
        assert!(sharp > 0.0 && sharp < 1.0, "a soft embedding map: {sharp}");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("fused");
        fused.weights.save(&out).unwrap();
        let texts: Vec<String> = SentimentSentences::load()
            .unwrap()
            .eval()
            .iter()
            .take(16)
            .map(|(t, _)| t.clone())
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let probs = BertClassifier::load(&out).unwrap().probs(&refs).unwrap();
        let labels = b.labels.len();
        let ours: Vec<f32> = logits(&EncoderWeights::load(&out).unwrap(), &rows)
            .chunks(labels)
            .flat_map(|l| {
                let m = l.iter().cloned().fold(f32::MIN, f32::max);
                let z: f32 = l.iter().map(|x| (x - m).exp()).sum();
                l.iter().map(move |x| (x - m).exp() / z).collect::<Vec<_>>()
            })
            .collect();
        let theirs: Vec<f32> = probs.into_iter().flatten().collect();
        let diff = crate::common::max_abs_diff(&ours, &theirs);
        assert!(
            diff < 1e-4,
            "candle-transformers' BERT against ours: {diff}"
        );
    }
}

#[test]
fn a_soft_fusion_of_two_gqa_decoders_loads_in_our_runtime_and_candle_with_its_logits() {
    use self::decoder::*;
    use alignscope::lm::{LanguageModel, Session};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let a = random_gqa(&dir.path().join("a"), false, 7);
    let b = random_gqa(&dir.path().join("b"), false, 8);
    let rows = token_rows(8, 32);
    let acts = (
        record_tokens(&a, &rows).unwrap(),
        record_tokens(&b, &rows).unwrap(),
    );
    let opts = paper_defaults(Solver::Sinkhorn { reg: 0.08 });
    // A wider MLP fuses into the anchor's narrower one.
    let wide = random_gqa_mlp(&dir.path().join("wide"), false, 9, 64);
    let acts_wide = record_tokens(&wide, &rows).unwrap();
    let narrow = fuse(
        &wide,
        &b,
        (&acts_wide, &acts.1),
        opts,
        &mut |_, _, _| Ok(()),
    )
    .unwrap();
    assert_eq!(narrow.weights.shape, b.shape);
    let map = |maps: &[alignscope::fusion::transport::TransportMap], name: &str| {
        maps.iter().find(|m| m.name == name).unwrap().clone()
    };
    let mlp = map(&narrow.maps, "layer 0 · MLP (gate and up)");
    assert_eq!((mlp.plan.rows, mlp.plan.cols), (64, 48));
    assert!(logits(&narrow.weights, &rows[..1])
        .iter()
        .all(|x| x.is_finite()));

    let fused = fuse(&a, &b, (&acts.0, &acts.1), opts, &mut |_, _, _| Ok(())).unwrap();
    // Soft maps blur: the key-value map (2 groups) is neither a permutation nor uniform.
    let kv = map(&fused.maps, "layer 0 · key-value heads");
    assert_eq!((kv.plan.rows, kv.plan.cols), (2, 2));
    let sharpness = kv.sharpness();
    assert!(
        sharpness > 0.5 && sharpness < 0.999,
        "sharpness {sharpness}"
    );
    assert!(
        max_weight_diff(&fused.weights, &b) > 1e-3,
        "A's weights went in"
    );
    let out = dir.path().join("fused");
    fused.weights.save(&out).unwrap();
    let ids: Vec<u32> = rows[0][..12].to_vec();
    let training = {
        let all = logits(
            &DecoderWeights::load(&out).unwrap(),
            std::slice::from_ref(&ids),
        );
        all[all.len() - byte_tokenizer::VOCAB_SIZE..].to_vec()
    };
    let model = Arc::new(LanguageModel::load(&out).unwrap());
    let mut s = Session::new(model);
    s.feed(&ids).unwrap();
    let ours = s.logits().unwrap().to_vec();
    let theirs = crate::zoo::candle_llama_logits(&out, &ids);
    let d1 = crate::common::max_abs_diff(&ours, &training);
    let d2 = crate::common::max_abs_diff(&theirs, &training);
    assert!(
        d1 < 1e-3 && d2 < 1e-3,
        "runtime {d1}, candle-transformers {d2}"
    );
}
