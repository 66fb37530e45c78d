//! Grafting on a tiny BERT pair: the graft's forward is the fine-tune's at full mask, the mask
//! search follows ∇θL ⊙ δ, masks keep what they say, exports load in candle-transformers with
//! the scores the run reported, and masks over another model are refused.

use alignscope::data::classify::ClassTask;
use alignscope::eval::classifier::bert_eval;
use alignscope::graft::encoder::EncoderGraft;
use alignscope::graft::model::Graftable;
use alignscope::graft::tasks::{run, task_rows, GraftRequest, GraftUpdate};
use alignscope::graft::{GraftMethod, Mask};

use crate::common::tiny_bert_pair;

fn request(methods: Vec<GraftMethod>) -> GraftRequest {
    let (base, ft) = tiny_bert_pair();
    let mut r = GraftRequest::new(&ft.display().to_string());
    r.base = Some(base.display().to_string());
    r.methods = methods;
    r.sparsities = vec![0.01];
    r
}

#[test]
fn the_full_mask_is_the_fine_tune_and_the_empty_one_the_base_blocks() {
    let (base, ft) = tiny_bert_pair();
    let (rows, _) = task_rows(ClassTask::Sentiment, None).unwrap();
    let model = EncoderGraft::load(&base, &ft, None).unwrap();
    // 2 layers × (4 attention matrices + 2 MLP matrices, their biases, 2 norms × 2).
    assert_eq!(model.eligible.len(), 2 * 16);
    model.set(&|_, _| 1.0).unwrap();
    let ours = model.score(&rows.test).unwrap();
    let theirs = bert_eval(&ft, &rows.test).unwrap();
    assert_eq!(ours.accuracy, theirs.accuracy);
    assert!(
        (ours.loss - theirs.loss).abs() < 1e-4,
        "{} {}",
        ours.loss,
        theirs.loss
    );
    // Zero coefficients put the base's block weights back.
    model.set(&|_, _| 0.0).unwrap();
    let out = tempfile::tempdir().unwrap();
    model.save(&out.path().join("m")).unwrap();
    let written = alignscope::checkpoint::Checkpoint::open(&out.path().join("m")).unwrap();
    let base_ck = alignscope::checkpoint::Checkpoint::open(&base).unwrap();
    let name = "bert.encoder.layer.1.attention.self.query.weight";
    assert_eq!(
        written.read_f32(written.get(name).unwrap()).unwrap(),
        base_ck.read_f32(base_ck.get(name).unwrap()).unwrap()
    );
}

#[test]
fn the_score_gradient_is_the_loss_gradient_times_delta() {
    // d L(θ_pre + c ⊙ δ) / d c_i = (∇θL)_i · δ_i: checked by finite differences on the
    // parameter with the largest product.
    let (base, ft) = tiny_bert_pair();
    let (rows, _) = task_rows(ClassTask::Sentiment, None).unwrap();
    let model = EncoderGraft::load(&base, &ft, None).unwrap();
    let batch = &rows.train[..16];
    model.set(&|_, _| 0.5).unwrap();
    let (loss, grads) = model.gradients(&[batch]).unwrap();
    let (mut best, mut at) = (0f32, (0, 0));
    for (t, g) in grads.iter().enumerate() {
        for (i, v) in g.iter().enumerate() {
            let p = v * model.eligible[t].delta[i];
            if p.abs() > best.abs() {
                (best, at) = (p, (t, i));
            }
        }
    }
    let eps = 0.5;
    model
        .set(&|t, i| if (t, i) == at { 0.5 + eps } else { 0.5 })
        .unwrap();
    let moved = model.loss(batch).unwrap().to_scalar::<f32>().unwrap();
    let predicted = loss + eps * best;
    assert!(best.abs() > 1e-6, "some parameter matters: {best}");
    assert!(
        (moved - predicted).abs() < 0.2 * (eps * best).abs(),
        "loss {loss} → {moved}, first order predicts {predicted}"
    );
}

#[test]
fn every_method_keeps_its_share_and_exports_what_it_scored() {
    let out = tempfile::tempdir().unwrap();
    let mut r = request(GraftMethod::ALL.to_vec());
    r.learn.steps = 3;
    r.learn.lr = 1e12;
    r.out = Some(out.path().to_path_buf());
    let mut steps = Vec::new();
    let outcome = run(&r, &mut |_| Ok(()), &mut |u| {
        if let GraftUpdate::Step { step, .. } = u {
            steps.push(step);
        }
        Ok(())
    })
    .unwrap();
    let k = (0.01 * outcome.eligible as f64).round() as usize;
    let labels: Vec<&str> = outcome.rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "fine-tuned",
            "no graft",
            "learned",
            "topk",
            "random",
            "dare"
        ]
    );
    for row in &outcome.rows[3..5] {
        assert_eq!(row.kept, k, "{}", row.label);
    }
    let dare = &outcome.rows[5];
    assert!(
        (dare.kept as f64 - k as f64).abs() < 0.3 * k as f64,
        "{}",
        dare.kept
    );
    // The search moves the mask at this learning rate, reports every step and keeps the best.
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().any(|s| s.changed > 0), "{steps:?}");
    let best = steps
        .iter()
        .map(|s| s.train_accuracy + s.val_accuracy)
        .fold(f64::MIN, f64::max);
    let chosen = steps.iter().rfind(|s| s.best).unwrap();
    assert_eq!(chosen.train_accuracy + chosen.val_accuracy, best);
    assert_eq!(outcome.rows[2].kept, chosen.kept);
    // Each export: the mask loads back with its provenance, the grafted model scores in
    // candle-transformers what the run reported.
    let (rows, _) = task_rows(ClassTask::Sentiment, None).unwrap();
    for row in &outcome.rows[2..] {
        let dir = row.out.as_ref().unwrap();
        let mask = Mask::load(&dir.join("mask.safetensors")).unwrap();
        assert_eq!(mask.count(), row.kept);
        assert_eq!(mask.meta["method"], row.label);
        let score = bert_eval(&dir.join("grafted"), &rows.test).unwrap();
        assert_eq!(
            score.accuracy,
            row.test.as_ref().unwrap().accuracy,
            "{}",
            row.label
        );
    }
}

#[test]
fn a_mask_over_another_model_is_refused() {
    let (_, ft) = tiny_bert_pair();
    let minilm = alignscope::assets::embedding_model();
    let mut r = request(vec![GraftMethod::Topk]);
    r.base = Some(minilm.display().to_string());
    let err = match run(&r, &mut |_| Ok(()), &mut |_| Ok(())) {
        Ok(_) => panic!("a base of another shape grafts"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("do not match"), "{err}");
    // A mask file of the tiny model checked against MiniLM's shapes.
    let out = tempfile::tempdir().unwrap();
    let (base, _) = tiny_bert_pair();
    let tiny = EncoderGraft::load(&base, &ft, None).unwrap();
    let path = out.path().join("mask.safetensors");
    tiny.empty_mask().save(&path).unwrap();
    let mask = Mask::load(&path).unwrap();
    let shapes: Vec<(String, Vec<usize>)> = tiny
        .shapes()
        .into_iter()
        .map(|(n, mut s)| {
            s[0] *= 12;
            (n, s)
        })
        .collect();
    let err = mask.check_shapes(&shapes, &path).unwrap_err().to_string();
    assert!(
        err.contains("mask.safetensors") && err.contains("in this model"),
        "{err}"
    );
}

#[test]
fn a_zoo_decoder_grafts_through_the_same_job() {
    // Keeping every parameter is the fine-tune again; keeping none, the base's blocks under the
    // fine-tuned embeddings and head.
    let mut r = GraftRequest::new("tiny-add");
    r.methods = vec![GraftMethod::Topk];
    r.sparsities = vec![1.0];
    r.eval = false;
    let outcome = run(&r, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
    assert_eq!(outcome.task, "add");
    let [fine, none, all] = &outcome.rows[..] else {
        panic!("{:?}", outcome.rows)
    };
    assert!(fine.val_accuracy > 0.9, "{}", fine.val_accuracy);
    assert!(none.val_accuracy < 0.1, "{}", none.val_accuracy);
    assert_eq!(all.kept, outcome.eligible);
    assert_eq!(all.val_accuracy, fine.val_accuracy);
    let layers: std::collections::BTreeSet<&str> =
        all.densities.iter().map(|d| d.layer.as_str()).collect();
    assert_eq!(layers.len(), 4, "{layers:?}");
    assert!(all.densities.iter().any(|d| d.module == "mlp in"));
}
