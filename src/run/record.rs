//! A run's record, `.slipway/runs/<run>/run.json` in the project: written
//! as the run opens (status `running`, with the process id) and again when
//! it ends, with how each stage ended. `slipway runs` lists them; a record
//! still `running` whose process is gone was killed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::scheduler::RunSummary;

/// One run, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub run: String,
    pub pipeline: String,
    /// RFC 3339.
    pub started: String,
    /// `running` until the run ends, then the run's status.
    pub status: String,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub stages: Vec<StageRecord>,
}

/// How one stage ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    /// A stage status (`docs/events.md`), or `skipped`.
    pub status: String,
    pub attempts: u32,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Its stage cache key, when it had one (`--resume` compares it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The folder of a project's run records.
pub fn runs_dir(workspace: &Path) -> PathBuf {
    workspace.join(".slipway/runs")
}

fn path(workspace: &Path, run: &str) -> PathBuf {
    runs_dir(workspace).join(run).join("run.json")
}

fn status_name<T: Serialize>(status: &T) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Record {
    /// The record of a run that begins now.
    pub fn begin(workspace: &Path, run: &str, pipeline: &str) -> Self {
        let record = Record {
            run: run.to_string(),
            pipeline: pipeline.to_string(),
            started: jiff::Timestamp::now().to_string(),
            status: "running".into(),
            pid: std::process::id(),
            duration_ms: None,
            stages: Vec::new(),
        };
        record.write(workspace);
        record
    }

    /// The record once the run ended.
    pub fn finish(
        mut self,
        workspace: &Path,
        summary: &RunSummary,
        key: impl Fn(&str) -> Option<String>,
    ) {
        self.status = status_name(&summary.status);
        self.duration_ms = Some(u64::try_from(summary.duration.as_millis()).unwrap_or(u64::MAX));
        self.stages = summary
            .stages
            .iter()
            .map(|s| StageRecord {
                name: s.name.clone(),
                status: match &s.status {
                    Ok(status) => status_name(status),
                    Err(_) => "skipped".into(),
                },
                attempts: s.attempts,
                duration_ms: u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX),
                message: match &s.status {
                    Ok(_) => s.message.clone(),
                    Err(reason) => Some(reason.clone()),
                },
                key: key(&s.name),
            })
            .collect();
        self.write(workspace);
    }

    /// Written whole or not at all (a temporary file renamed); a record
    /// that cannot be written does not stop the run.
    fn write(&self, workspace: &Path) {
        let path = path(workspace, &self.run);
        let Some(dir) = path.parent() else { return };
        let tmp = dir.join("run.json.tmp");
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec_pretty(self)?))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            eprintln!(
                "slipway: warning: cannot write the run record {}: {e}",
                path.display()
            );
        }
    }

    /// Whether the run is over: recorded as ended, or its process is gone
    /// (killed: it could not say).
    pub fn state(&self) -> String {
        if self.status != "running" {
            return self.status.clone();
        }
        if alive(self.pid) {
            "running".into()
        } else {
            "killed".into()
        }
    }

    /// The stages that failed, timed out or were cancelled.
    pub fn failed(&self) -> Vec<&str> {
        self.stages
            .iter()
            .filter(|s| matches!(s.status.as_str(), "failed" | "timed_out" | "cancelled"))
            .map(|s| s.name.as_str())
            .collect()
    }
}

fn alive(pid: u32) -> bool {
    // A process of that id running slipway (ids are reused).
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|b| *b == 0)
            .next()
            .is_some_and(|a| a.ends_with(b"slipway"))
    })
}

/// The project's run records, newest first; records that cannot be read
/// are left out.
pub fn list(workspace: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(runs_dir(workspace)) else {
        return Vec::new();
    };
    let mut records: Vec<Record> = entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("run.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    records.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.run.cmp(&a.run)));
    records
}

/// The record of run `run`, or of the newest ended run of `pipeline`
/// here.
pub fn find(workspace: &Path, pipeline: &str, run: Option<&str>) -> Option<Record> {
    list(workspace).into_iter().find(|r| match run {
        Some(id) => r.run == id,
        None => r.pipeline == pipeline && r.state() != "running",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::events::{RunStatus, StageStatus};
    use crate::run::scheduler::StageResult;

    #[test]
    fn a_record_says_running_then_how_each_stage_ended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = Record::begin(dir.path(), "r1", "p");
        let read = list(dir.path());
        assert_eq!(read.len(), 1);
        // This process runs the test, not slipway: a `running` record of a
        // process that is not slipway is a killed run.
        assert_eq!(read[0].status, "running");
        assert_eq!(read[0].state(), "killed");
        let stage = |name: &str, status| StageResult {
            name: name.into(),
            status,
            attempts: 1,
            duration: std::time::Duration::from_millis(5),
            span: None,
            message: None,
            unreachable: false,
        };
        record.finish(
            dir.path(),
            &RunSummary {
                run: "r1".into(),
                status: RunStatus::Failed,
                stages: vec![
                    stage("a", Ok(StageStatus::Succeeded)),
                    stage("b", Ok(StageStatus::Failed)),
                    stage("c", Err("needs `b`, which failed".into())),
                ],
                duration: std::time::Duration::from_millis(42),
            },
            |stage| (stage == "a").then(|| "k".to_string()),
        );
        let read = list(dir.path());
        assert_eq!(read[0].state(), "failed");
        assert_eq!(read[0].duration_ms, Some(42));
        assert_eq!(read[0].failed(), ["b"]);
        assert_eq!(read[0].stages[2].status, "skipped");
        assert_eq!(read[0].stages[0].key.as_deref(), Some("k"));
    }
}
