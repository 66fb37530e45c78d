//! Run records: one JSON file per finished job (kind, inputs, seed, metrics, timings, outputs),
//! written atomically under the runs folder and reopened by the Jobs panel.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{JobId, JobSpec, JobState};

/// What a job's result contributes to its run record.
pub trait Report {
    fn metrics(&self) -> serde_json::Value;
    fn outputs(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

impl Report for () {
    fn metrics(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// A job whose product is a file or folder.
impl Report for PathBuf {
    fn metrics(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn outputs(&self) -> serde_json::Value {
        serde_json::json!(self)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub id: JobId,
    pub kind: String,
    pub title: String,
    pub state: String,
    pub error: Option<String>,
    pub inputs: serde_json::Value,
    pub seed: Option<u64>,
    pub metrics: serde_json::Value,
    pub outputs: serde_json::Value,
    /// Seconds since the Unix epoch.
    pub started_unix: f64,
    pub elapsed_seconds: f64,
    pub logs: Vec<String>,
}

impl RunRecord {
    pub(super) fn new<R: Report>(
        id: JobId,
        spec: &JobSpec,
        started: SystemTime,
        elapsed: Duration,
        state: &JobState,
        report: Option<&R>,
        logs: Vec<String>,
    ) -> Self {
        Self {
            id,
            kind: spec.kind.clone(),
            title: spec.title.clone(),
            state: state.label().to_string(),
            error: match state {
                JobState::Failed(m) => Some(m.clone()),
                _ => None,
            },
            inputs: spec.inputs.clone(),
            seed: spec.seed,
            metrics: report.map(Report::metrics).unwrap_or_default(),
            outputs: report.map(Report::outputs).unwrap_or_default(),
            started_unix: started
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            elapsed_seconds: elapsed.as_secs_f64(),
            logs,
        }
    }

    /// Writes `<dir>/<unix-ms>-<kind>-<id>.json` through a temporary file and a rename, so a
    /// crash never leaves half a record.
    pub fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let name = format!(
            "{}-{}-{}.json",
            (self.started_unix * 1000.0) as u64,
            self.kind,
            self.id
        );
        let path = dir.join(name);
        crate::fs::write_atomic(&path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a run record", path.display()))
    }
}

/// Run records in `dir`, newest first. Files that are not records are skipped.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.reverse();
    paths
}

/// The default runs folder: `ALIGNSCOPE_RUNS`, else the user's data folder.
pub fn default_runs_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ALIGNSCOPE_RUNS") {
        return PathBuf::from(dir);
    }
    let data = std::env::var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|_| PathBuf::from("."));
    data.join("alignscope").join("runs")
}
