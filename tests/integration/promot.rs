//! ProMoT on the zoo's tiny byte-level decoder (the pipeline; the effect itself is measured on
//! SmolLM2 by `scripts/promot_evidence.sh`): both stages train, the second keeps the first's
//! prompt frozen, a prompt run's soft prompt is reused by ProMoT, the scores are what the
//! answers say, and the suite's questions never show their answer as a shot.

use std::sync::Arc;

use alignscope::data::Sources;
use alignscope::lm::{LanguageModel, SoftPrompt};
use alignscope::promot::icl::{self, questions, IclTask};
use alignscope::promot::run::{
    promot, run_dir, PromotMethod, PromotOutcome, PromotRequest, Stage, RESULT_FILE,
};
use alignscope::promot::tasks::PromotTask;

fn tiny_request(root: &std::path::Path, method: PromotMethod) -> PromotRequest {
    let mut r = PromotRequest::new(PromotTask::Sentiment, method);
    r.model = alignscope::zoo::specs::spec("tiny-base").unwrap().path();
    (r.steps, r.prompt_steps, r.prompt_len, r.batch) = (3, 4, 4, 4);
    r.out = run_dir(root, r.task, method);
    r
}

fn sources() -> Sources {
    Sources::load(&alignscope::zoo::dir().join("data")).unwrap()
}

/// Runs `request`, returning the outcome and which stages reported steps.
fn run(request: &PromotRequest) -> (PromotOutcome, Vec<Stage>) {
    let mut stages = Vec::new();
    let outcome = promot(request, &mut |_| Ok(()), &mut |s| {
        stages.push(s.stage);
        Ok(())
    })
    .unwrap();
    (outcome, stages)
}

#[test]
fn promot_trains_the_prompt_then_the_model_with_the_prompt_frozen() {
    let root = tempfile::tempdir().unwrap();
    let prompt_run = tiny_request(root.path(), PromotMethod::Prompt);
    let (prompt, stages) = run(&prompt_run);
    assert_eq!(stages, vec![Stage::Prompt; 4]);
    assert!(prompt.model_losses.is_empty());
    let trained = SoftPrompt::load(&prompt_run.out.join("soft_prompt.safetensors")).unwrap();
    assert_eq!(trained.len(), 4);

    // ProMoT beside it reuses that prompt (same schedule), then tunes the model.
    let request = tiny_request(root.path(), PromotMethod::Promot);
    let (outcome, stages) = run(&request);
    assert_eq!(stages, vec![Stage::Model; 3], "the prompt stage was reused");
    assert_eq!(outcome.prompt_losses, prompt.prompt_losses);
    assert_eq!(outcome.model_losses.len(), 3);
    // The prompt in front of the tuned model is the first stage's, untouched by the second.
    let kept = SoftPrompt::load(&request.out.join("model/soft_prompt.safetensors")).unwrap();
    assert_eq!(kept.rows(), trained.rows());
    let copied = SoftPrompt::load(&request.out.join("soft_prompt.safetensors")).unwrap();
    assert_eq!(copied.rows(), trained.rows());
    // The weights did change.
    let base = tiny_request(root.path(), PromotMethod::Base).model;
    let a =
        candle_core::safetensors::load(base.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let b = candle_core::safetensors::load(
        request.out.join("model/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let w = "model.layers.0.mlp.up_proj.weight";
    let diff = (&a[w] - &b[w])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff > 0.0, "model stage left {w} unchanged");

    // The stored result is what the run returned.
    let read = PromotOutcome::read(&request.out.join(RESULT_FILE)).unwrap();
    assert_eq!(read.model_losses, outcome.model_losses);
    assert_eq!(read.icl.answers.len(), IclTask::ALL.len() * 30);
}

#[test]
fn scores_are_counted_from_the_answers() {
    let root = tempfile::tempdir().unwrap();
    let (o, stages) = run(&tiny_request(root.path(), PromotMethod::Base));
    assert!(stages.is_empty(), "the base model is not trained");
    let labels = PromotTask::Sentiment.labels();
    for t in &o.icl.tasks {
        let answers: Vec<_> = o
            .icl
            .answers
            .iter()
            .filter(|a| a.question.task == t.task)
            .collect();
        let right = answers
            .iter()
            .filter(|a| icl::correct(&a.got, &a.question.query.answer))
            .count();
        assert_eq!(
            t.accuracy,
            right as f64 / answers.len() as f64,
            "{}",
            t.task
        );
        let in_labels = answers
            .iter()
            .filter(|a| labels.iter().any(|l| icl::correct(&a.got, l)))
            .count();
        assert_eq!(t.specialised, Some(in_labels as f64 / answers.len() as f64));
        assert!(answers
            .iter()
            .all(|a| a.correct == icl::correct(&a.got, &a.question.query.answer)));
    }
    let right = o
        .target
        .answers
        .iter()
        .filter(|(q, got)| icl::correct(got, &q.label))
        .count();
    assert_eq!(
        o.target.accuracy,
        right as f64 / o.target.answers.len() as f64
    );
    assert_eq!(o.target.answers.len(), 100);
}

#[test]
fn the_suite_asks_each_query_after_other_pairs_as_chat_turns() {
    let sources = sources();
    for &task in IclTask::ALL {
        let qs = questions(task, &sources, 3);
        assert_eq!(qs.len(), 30, "{task}");
        for q in &qs {
            assert_eq!(q.shots.len(), 3);
            assert!(
                q.shots.iter().all(|s| s.input != q.query.input),
                "{task}: the query is a shot"
            );
            let m = q.messages();
            assert_eq!(m.len(), 7);
            assert_eq!(m[6].content, q.query.input);
            assert_eq!(m[1].content, q.shots[0].answer);
        }
        // Fixed by the seed: every model is asked the same questions.
        assert_eq!(qs, questions(task, &sources, 3));
    }
    let capital = IclTask::Capital.pool(&sources);
    assert!(capital.iter().any(|p| p.answer == "Tokyo"));
}

#[test]
fn the_held_out_task_questions_are_balanced_and_unseen() {
    let sources = sources();
    for &task in PromotTask::ALL {
        let d = task.data(&sources);
        assert_eq!(d.eval.len(), 100);
        let first: Vec<&str> = d
            .eval
            .iter()
            .take(d.labels.len())
            .map(|r| r.label.as_str())
            .collect();
        let labels: Vec<&str> = d.labels.iter().map(String::as_str).collect();
        assert_eq!(
            first, labels,
            "{task}: held-out questions interleave the labels"
        );
        assert!(d
            .eval
            .iter()
            .all(|e| !d.train.iter().any(|t| t.input == e.input)));
        assert_eq!(d.labels, task.labels());
    }
}

#[test]
fn a_soft_prompt_reaches_the_suite_through_the_runtime() {
    // The same model with and without a soft prompt in front answers differently somewhere:
    // the prompt is really put before the chat.
    let root = tempfile::tempdir().unwrap();
    let request = tiny_request(root.path(), PromotMethod::Prompt);
    run(&request);
    let model = Arc::new(LanguageModel::load(&request.model).unwrap());
    let prompt = Arc::new(SoftPrompt::load(&request.out.join("soft_prompt.safetensors")).unwrap());
    let sources = sources();
    let ask = |p: Option<&Arc<SoftPrompt>>| {
        icl::evaluate(
            &model,
            p,
            &sources,
            &[IclTask::Plural],
            3,
            None,
            &mut |_| Ok(()),
        )
        .unwrap()
    };
    let (with, without) = (ask(Some(&prompt)), ask(None));
    assert!(with
        .answers
        .iter()
        .zip(&without.answers)
        .any(|(a, b)| a.got != b.got));
    assert_eq!(with.specialised, None);
}
