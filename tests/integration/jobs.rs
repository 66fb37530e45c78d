//! The job system: partial results, progress, cancellation, failures, panics, run records.

use std::time::{Duration, Instant};

use alignscope::jobs::{JobBoard, JobSpec, JobState, Report, RunRecord};
use serde_json::json;

struct Count(u32);

impl Report for Count {
    fn metrics(&self) -> serde_json::Value {
        json!({ "count": self.0 })
    }
}

fn spec(kind: &str) -> JobSpec {
    JobSpec {
        kind: kind.into(),
        title: format!("test {kind}"),
        inputs: json!({ "n": 5 }),
        seed: Some(9),
    }
}

fn wait_finished(board: &JobBoard, id: u64) -> JobState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = board.status(id).unwrap().state;
        if s.is_finished() {
            return s;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn partials_progress_and_a_run_record() {
    let dir = tempfile::tempdir().unwrap();
    let board = JobBoard::new(Some(dir.path().to_path_buf()));
    let handle = board.spawn(spec("count"), |ctx| {
        for i in 0..5u32 {
            ctx.progress(Some(i as f32 / 5.0), format!("step {i}"));
            ctx.log(format!("line {i}"));
            ctx.send(i);
        }
        Ok(Count(5))
    });
    let mut seen = Vec::new();
    let result = handle.wait(|p| seen.push(p)).unwrap();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    assert_eq!(result.0, 5);
    assert_eq!(wait_finished(&board, handle.id()), JobState::Succeeded);
    // The record is written just after the result; give the worker a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let path = loop {
        if let Some(p) = board.status(handle.id()).unwrap().record {
            break p;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    };
    let record = RunRecord::load(&path).unwrap();
    assert_eq!(record.kind, "count");
    assert_eq!(record.state, "done");
    assert_eq!(record.seed, Some(9));
    assert_eq!(record.inputs["n"], 5);
    assert_eq!(record.metrics["count"], 5);
    assert_eq!(record.logs.len(), 5);
    assert_eq!(alignscope::jobs::record::list(dir.path()), vec![path]);
}

#[test]
fn cancel_stops_a_job_that_checks() {
    let board = JobBoard::new(None);
    let handle = board.spawn::<(), (), _>(spec("forever"), |ctx| loop {
        ctx.check()?;
        std::thread::sleep(Duration::from_millis(10));
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(board.status(handle.id()).unwrap().state, JobState::Running);
    board.cancel(handle.id());
    assert_eq!(wait_finished(&board, handle.id()), JobState::Cancelled);
    assert_eq!(handle.wait(|_| {}).unwrap_err(), "cancelled");
}

#[test]
fn errors_and_panics_become_failed_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let board = JobBoard::new(Some(dir.path().to_path_buf()));
    let failing =
        board.spawn::<(), (), _>(spec("fail"), |_| anyhow::bail!("the input file is empty"));
    assert_eq!(failing.wait(|_| {}).unwrap_err(), "the input file is empty");
    let panicking = board.spawn::<(), (), _>(spec("panic"), |_| panic!("index out of range"));
    let msg = panicking.wait(|_| {}).unwrap_err();
    assert!(
        msg.contains("panicked") && msg.contains("index out of range"),
        "{msg}"
    );
    match wait_finished(&board, panicking.id()) {
        JobState::Failed(m) => assert!(m.contains("index out of range")),
        s => panic!("{s:?}"),
    }
    // Failed jobs leave records too, with the error.
    let deadline = Instant::now() + Duration::from_secs(5);
    while alignscope::jobs::record::list(dir.path()).len() < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let records: Vec<RunRecord> = alignscope::jobs::record::list(dir.path())
        .iter()
        .map(|p| RunRecord::load(p).unwrap())
        .collect();
    assert!(records
        .iter()
        .all(|r| r.state == "failed" && r.error.is_some()));
}
