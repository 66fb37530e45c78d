//! Background jobs: work runs on a worker thread, streams typed partial results and progress,
//! can be cancelled, turns errors and panics into failed jobs, and leaves a run record.
//!
//! Flow: a front end calls [`JobBoard::spawn`] with a closure; the worker thread runs it with a
//! [`JobCtx`] through which it reports progress, log lines and partial results (each report
//! wakes the UI through the board's notifier); the front end drains partials from its
//! [`JobHandle`] every frame and reads the shared [`JobStatus`] list for the Jobs panel.

pub mod record;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use record::{Report, RunRecord};

pub type JobId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed(String),
    Cancelled,
}

impl JobState {
    pub fn is_finished(&self) -> bool {
        !matches!(self, JobState::Running)
    }

    pub fn label(&self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "done",
            JobState::Failed(_) => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobStatus {
    pub id: JobId,
    pub kind: String,
    pub title: String,
    pub state: JobState,
    /// 0..=1 when the job knows how far it is.
    pub progress: Option<f32>,
    pub message: String,
    pub logs: Vec<String>,
    pub started: Instant,
    pub elapsed: Option<Duration>,
    pub record: Option<PathBuf>,
    cancel: Arc<AtomicBool>,
}

impl JobStatus {
    pub fn elapsed(&self) -> Duration {
        self.elapsed.unwrap_or_else(|| self.started.elapsed())
    }
}

/// What a job is, for the board and its run record.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub kind: String,
    pub title: String,
    pub inputs: serde_json::Value,
    pub seed: Option<u64>,
}

type Notify = Arc<dyn Fn() + Send + Sync>;

/// All jobs of the app (or of one CLI run).
#[derive(Clone)]
pub struct JobBoard {
    jobs: Arc<Mutex<Vec<JobStatus>>>,
    next_id: Arc<AtomicU64>,
    runs_dir: Option<PathBuf>,
    notify: Arc<Mutex<Notify>>,
}

impl JobBoard {
    /// `runs_dir`: where run records go (`None`: keep no records).
    pub fn new(runs_dir: Option<PathBuf>) -> Self {
        Self {
            jobs: Default::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            runs_dir,
            notify: Arc::new(Mutex::new(Arc::new(|| {}))),
        }
    }

    pub fn runs_dir(&self) -> Option<&PathBuf> {
        self.runs_dir.as_ref()
    }

    /// Called whenever a job reports something (the GUI passes `ctx.request_repaint`).
    pub fn set_notify(&self, f: impl Fn() + Send + Sync + 'static) {
        *lock(&self.notify) = Arc::new(f);
    }

    pub fn snapshot(&self) -> Vec<JobStatus> {
        lock(&self.jobs).clone()
    }

    pub fn status(&self, id: JobId) -> Option<JobStatus> {
        lock(&self.jobs).iter().find(|j| j.id == id).cloned()
    }

    pub fn running(&self) -> usize {
        lock(&self.jobs)
            .iter()
            .filter(|j| !j.state.is_finished())
            .count()
    }

    /// Drops finished jobs from the list (their records stay on disk).
    pub fn clear_finished(&self) {
        lock(&self.jobs).retain(|j| !j.state.is_finished());
    }

    pub fn spawn<P, R, F>(&self, spec: JobSpec, work: F) -> JobHandle<P, R>
    where
        P: Send + 'static,
        R: Report + Send + 'static,
        F: FnOnce(&JobCtx<P>) -> anyhow::Result<R> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let result = Arc::new(Mutex::new(None));
        lock(&self.jobs).push(JobStatus {
            id,
            kind: spec.kind.clone(),
            title: spec.title.clone(),
            state: JobState::Running,
            progress: None,
            message: String::new(),
            logs: Vec::new(),
            started: Instant::now(),
            elapsed: None,
            record: None,
            cancel: cancel.clone(),
        });
        let ctx = JobCtx {
            id,
            cancel: cancel.clone(),
            tx,
            board: self.clone(),
        };
        let board = self.clone();
        let slot = result.clone();
        std::thread::Builder::new()
            .name(format!("job-{id}-{}", spec.kind))
            .spawn(move || {
                let started_at = SystemTime::now();
                let outcome = catch_unwind(AssertUnwindSafe(|| work(&ctx)));
                let cancelled = ctx.is_cancelled();
                let (state, report): (JobState, Option<R>) = match outcome {
                    Ok(Ok(r)) if cancelled => (JobState::Cancelled, Some(r)),
                    Ok(Ok(r)) => (JobState::Succeeded, Some(r)),
                    Ok(Err(_)) if cancelled => (JobState::Cancelled, None),
                    Ok(Err(e)) => (JobState::Failed(format!("{e:#}")), None),
                    Err(panic) => (
                        JobState::Failed(format!("the job panicked: {}", panic_message(&panic))),
                        None,
                    ),
                };
                board.finish(id, &spec, started_at, state.clone(), report.as_ref());
                *lock(&slot) = Some(match (report, state) {
                    (Some(r), _) => Ok(r),
                    (None, JobState::Failed(msg)) => Err(msg),
                    (None, _) => Err("cancelled".to_string()),
                });
                board.wake();
            })
            .expect("the OS refused to start a worker thread");
        JobHandle {
            id,
            rx,
            result,
            cancel,
        }
    }

    fn finish<R: Report>(
        &self,
        id: JobId,
        spec: &JobSpec,
        started_at: SystemTime,
        state: JobState,
        report: Option<&R>,
    ) {
        let (elapsed, logs) = {
            let mut jobs = lock(&self.jobs);
            let Some(job) = jobs.iter_mut().find(|j| j.id == id) else {
                return;
            };
            job.elapsed = Some(job.started.elapsed());
            job.state = state.clone();
            if job.state == JobState::Succeeded {
                job.progress = Some(1.0);
            }
            (job.elapsed(), job.logs.clone())
        };
        let Some(dir) = &self.runs_dir else { return };
        let record = RunRecord::new(id, spec, started_at, elapsed, &state, report, logs);
        let saved = record.save(dir);
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.iter_mut().find(|j| j.id == id) {
            match saved {
                Ok(path) => job.record = Some(path),
                Err(e) => job
                    .logs
                    .push(format!("could not write the run record: {e:#}")),
            }
        }
    }

    fn update(&self, id: JobId, f: impl FnOnce(&mut JobStatus)) {
        if let Some(job) = lock(&self.jobs).iter_mut().find(|j| j.id == id) {
            f(job);
        }
        self.wake();
    }

    fn wake(&self) {
        let notify = lock(&self.notify).clone();
        notify();
    }

    /// Asks a running job to stop (the Jobs panel's Cancel button).
    pub fn cancel(&self, id: JobId) {
        if let Some(job) = lock(&self.jobs)
            .iter_mut()
            .find(|j| j.id == id && !j.state.is_finished())
        {
            job.cancel.store(true, Ordering::Relaxed);
            job.message = "cancelling…".into();
        }
        self.wake();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking job cannot leave these plain lists inconsistent; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// The job's side: report progress, logs and partial results; check for cancellation.
pub struct JobCtx<P> {
    id: JobId,
    cancel: Arc<AtomicBool>,
    tx: Sender<P>,
    board: JobBoard,
}

impl<P> JobCtx<P> {
    pub fn id(&self) -> JobId {
        self.id
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// `Err` once cancellation was asked for: use with `?` between steps.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.is_cancelled() {
            anyhow::bail!("cancelled");
        }
        Ok(())
    }

    /// Reports a stage without a fraction, first stopping if the job was cancelled: what engine
    /// functions taking an `on_stage` callback are given.
    pub fn stage(&self, stage: &str) -> anyhow::Result<()> {
        self.check()?;
        self.progress(None, stage);
        Ok(())
    }

    pub fn progress(&self, fraction: Option<f32>, message: impl Into<String>) {
        let message = message.into();
        self.board.update(self.id, |j| {
            j.progress = fraction.map(|f| f.clamp(0.0, 1.0));
            j.message = message;
        });
    }

    pub fn log(&self, line: impl Into<String>) {
        let line = line.into();
        self.board.update(self.id, |j| j.logs.push(line));
    }

    /// Sends a partial result to the front end that started the job.
    pub fn send(&self, partial: P) {
        // The receiver may be gone (panel closed); the job still runs to its end.
        let _ = self.tx.send(partial);
        self.board.wake();
    }
}

/// The front end's side of one job.
pub struct JobHandle<P, R> {
    id: JobId,
    rx: Receiver<P>,
    result: Arc<Mutex<Option<Result<R, String>>>>,
    cancel: Arc<AtomicBool>,
}

impl<P, R> JobHandle<P, R> {
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Partial results that arrived since the last call.
    pub fn drain(&self) -> Vec<P> {
        self.rx.try_iter().collect()
    }

    /// The final result, once (`Err` holds the failure message or "cancelled").
    pub fn take_result(&self) -> Option<Result<R, String>> {
        lock(&self.result).take()
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Blocks until the job ends (CLI use), handing partial results to `on_partial` meanwhile.
    pub fn wait(&self, mut on_partial: impl FnMut(P)) -> Result<R, String> {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(p) => on_partial(p),
                Err(_) => {
                    if let Some(r) = self.take_result() {
                        for p in self.drain() {
                            on_partial(p);
                        }
                        return r;
                    }
                }
            }
        }
    }
}
