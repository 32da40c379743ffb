//! The event stream of a run. Backends and the scheduler produce events;
//! reporters (human, JSON lines) render the same stream. The JSON form is a
//! documented contract (`docs/events.md`).

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run: String,
        pipeline: String,
        stages: usize,
        time: String,
    },
    StageStarted {
        stage: String,
        attempt: u32,
        time: String,
    },
    /// One line of a stage's output, secrets masked.
    Log {
        stage: String,
        stream: Stream,
        line: String,
    },
    StageFinished {
        stage: String,
        status: StageStatus,
        attempt: u32,
        duration_ms: u64,
        exit_code: Option<i32>,
        message: Option<String>,
        time: String,
    },
    StageSkipped {
        stage: String,
        reason: String,
    },
    RunFinished {
        status: RunStatus,
        duration_ms: u64,
        time: String,
    },
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Succeeded,
    /// Failed, but the stage has `allow-failure`.
    FailedAllowed,
    Failed,
    TimedOut,
    Cancelled,
    /// A `manual` stage that nobody approved.
    WaitingForApproval,
    /// Not run: the stage cache held its result for the same key.
    Cached,
}

impl StageStatus {
    /// Whether stages after this one may run.
    pub fn lets_dependents_run(self) -> bool {
        matches!(
            self,
            StageStatus::Succeeded | StageStatus::FailedAllowed | StageStatus::Cached
        )
    }

    /// Whether this fails the pipeline.
    pub fn fails_pipeline(self) -> bool {
        matches!(self, StageStatus::Failed | StageStatus::TimedOut)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    /// `SLIPWAY_PIPELINE_STATUS` for `finally` stages.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// Now, as an RFC 3339 timestamp.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}
