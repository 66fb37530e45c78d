//! The OT solvers against POT (fixtures from scripts/ot_fixtures.py).

use alignscope::fusion::emd::emd;
use alignscope::fusion::ot::{sinkhorn_log, SinkhornOptions};

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

mod vit {
    use alignscope::eval::classifier::{eval_scenes, score_scenes};
    use alignscope::fusion::activations::{activation_scenes, record};
    use alignscope::fusion::transport::Solver;
    use alignscope::fusion::vit_fusion::{
        fuse, BranchMap, CostKind, FuseOptions, QkPolicy, ResidualPolicy,
    };
    use alignscope::fusion::vit_weights::{layer, VitWeights};
    use alignscope::zoo::specs::spec;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    fn zoo(name: &str) -> VitWeights {
        VitWeights::load(&spec(name).unwrap().path()).unwrap()
    }

    fn accuracy(w: &VitWeights, n: usize) -> f64 {
        let model = w.model().unwrap();
        score_scenes(&eval_scenes(n), |x| model.forward(x))
            .unwrap()
            .accuracy
    }

    /// `new[j] = old[perm[j]]` over the rows (`rows`) or columns of a tensor seen as a matrix
    /// with `cols` columns.
    fn permute(w: &mut VitWeights, name: &str, cols: usize, perm: &[usize], rows: bool) {
        let old = w.params[name].data.clone();
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
        let mut p: Vec<usize> = (0..n).collect();
        p.shuffle(rng);
        p
    }

    /// The same function with its neurons renamed: the residual stream, heads (Q, K and V
    /// together), positions within heads (Q with K, V alone) and the feed-forward neurons.
    fn permuted_copy(w: &VitWeights, seed: u64) -> VitWeights {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let s = w.shape;
        let (h, inner, heads) = (s.hidden_size, s.intermediate_size, s.num_heads);
        let dh = h / heads;
        let stream = shuffled(h, &mut rng);
        let mut out = w.clone();
        let vec_rows = |out: &mut VitWeights, module: &str, perm: &[usize]| {
            permute(out, &format!("{module}.bias"), 1, perm, true);
        };
        let patch = "vit.embeddings.patch_embeddings.projection";
        let patch_len = w.params[&format!("{patch}.weight")].data.len() / h;
        permute(
            &mut out,
            &format!("{patch}.weight"),
            patch_len,
            &stream,
            true,
        );
        vec_rows(&mut out, patch, &stream);
        permute(&mut out, "vit.embeddings.cls_token", h, &stream, false);
        permute(
            &mut out,
            "vit.embeddings.position_embeddings",
            h,
            &stream,
            false,
        );
        let norm = |out: &mut VitWeights, module: &str| {
            permute(out, &format!("{module}.weight"), 1, &stream, true);
            permute(out, &format!("{module}.bias"), 1, &stream, true);
        };
        let linear = |out: &mut VitWeights, module: &str, rows: &[usize], cols: &[usize]| {
            let name = format!("{module}.weight");
            permute(out, &name, cols.len(), rows, true);
            permute(out, &name, cols.len(), cols, false);
            vec_rows(out, module, rows);
        };
        for l in 0..s.num_layers {
            let head_order = shuffled(heads, &mut rng);
            let within = |inner: &[usize]| -> Vec<usize> {
                (0..h)
                    .map(|j| head_order[j / dh] * dh + inner[j % dh])
                    .collect()
            };
            let qk = within(&shuffled(dh, &mut rng));
            let v = within(&shuffled(dh, &mut rng));
            let ffn = shuffled(inner, &mut rng);
            norm(&mut out, &layer(l, "layernorm_before"));
            linear(
                &mut out,
                &layer(l, "attention.attention.query"),
                &qk,
                &stream,
            );
            linear(&mut out, &layer(l, "attention.attention.key"), &qk, &stream);
            linear(
                &mut out,
                &layer(l, "attention.attention.value"),
                &v,
                &stream,
            );
            linear(&mut out, &layer(l, "attention.output.dense"), &stream, &v);
            norm(&mut out, &layer(l, "layernorm_after"));
            linear(&mut out, &layer(l, "intermediate.dense"), &ffn, &stream);
            linear(&mut out, &layer(l, "output.dense"), &stream, &ffn);
        }
        norm(&mut out, "vit.layernorm");
        let identity: Vec<usize> = (0..s.num_labels).collect();
        linear(&mut out, "classifier", &identity, &stream);
        out
    }

    fn max_weight_diff(a: &VitWeights, b: &VitWeights) -> f32 {
        a.params
            .iter()
            .map(|(k, p)| crate::common::max_abs_diff(&p.data, &b.params[k].data))
            .fold(0.0, f32::max)
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
        let residuals = [
            ResidualPolicy::Mean,
            ResidualPolicy::Weighted,
            ResidualPolicy::Skip,
            ResidualPolicy::Branch,
            ResidualPolicy::Shared,
        ];
        for cost in [CostKind::Acts, CostKind::Weights] {
            for qk in [QkPolicy::Separate, QkPolicy::Joint] {
                for (residual, branch_map) in residuals
                    .iter()
                    .map(|&r| (r, BranchMap::Own))
                    .chain([(ResidualPolicy::Mean, BranchMap::Stream)])
                {
                    let opts = FuseOptions {
                        cost,
                        solver: Solver::Emd,
                        qk,
                        residual,
                        branch_map,
                    };
                    let mut seen = 0;
                    let fused = fuse(&a, &b, (&acts.0, &acts.1), opts, &mut |_, done, total| {
                        seen = done;
                        assert!(done <= total);
                        Ok(())
                    })
                    .unwrap();
                    assert_eq!(seen, opts.map_count(4));
                    assert_eq!(fused.maps.len(), seen);
                    let diff = max_weight_diff(&fused.weights, &b);
                    let what = format!("{cost:?} {qk:?} {residual:?} {branch_map:?}");
                    assert!(diff < 1e-5, "{what}: fused differs from B by {diff}");
                }
            }
        }
    }

    #[test]
    fn soft_maps_blur_and_heterogeneous_fusion_takes_the_anchors_widths() {
        let (a, b) = (zoo("vit-a"), zoo("vit-narrow"));
        let scenes = activation_scenes(64);
        let acts = (record(&a, &scenes).unwrap(), record(&b, &scenes).unwrap());
        let opts = |solver| FuseOptions {
            cost: CostKind::Acts,
            solver,
            qk: QkPolicy::Separate,
            residual: ResidualPolicy::Mean,
            branch_map: BranchMap::Own,
        };
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
