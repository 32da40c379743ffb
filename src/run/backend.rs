//! What a backend is given and what it reports. Backends only execute: the
//! scheduler owns the run's state. Docker specifics (mounts, networks,
//! volumes) stay inside their backend, so that another backend can run a
//! stage as a Pod.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::{Event, Stream};
use super::mask::Masker;
use crate::plan::PlannedStage;

/// One attempt of one stage.
#[derive(Debug, Clone)]
pub struct Job {
    pub stage: PlannedStage,
    pub attempt: u32,
    /// The stage's environment with secrets filled in and the `SLIPWAY_*`
    /// context added. Never printed.
    pub env: IndexMap<String, String>,
    /// The project directory (the pipeline file's folder).
    pub workspace: PathBuf,
    pub timeout: Option<Duration>,
    /// Secret values by name, for services' env. Never printed.
    pub secrets: IndexMap<String, String>,
    /// Where the code comes from, for image labels.
    pub source: Option<String>,
    /// The artifacts of earlier stages this stage gets: each stage it comes
    /// after, directly or not, with the paths that stage declared.
    pub inputs: Vec<(String, Vec<String>)>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    TimedOut,
    Cancelled,
    /// The backend could not run the stage at all.
    Error(String),
    /// A component the stage needs (the Kubernetes API) did not answer:
    /// the stage fails, and the run exits 3 rather than 1.
    Unreachable(String),
    /// slipway itself failed (a bug: the stage's task panicked): the stage
    /// fails, and the run exits 3.
    Internal(String),
}

/// Where a backend sends a stage's output.
#[derive(Clone)]
pub struct Output {
    stage: String,
    events: mpsc::Sender<Event>,
    masker: Masker,
}

impl Output {
    pub fn new(stage: String, events: mpsc::Sender<Event>, masker: Masker) -> Self {
        Self {
            stage,
            events,
            masker,
        }
    }

    /// Sends one line, secrets masked.
    pub async fn line(&self, stream: Stream, line: &str) {
        let _ = self
            .events
            .send(Event::Log {
                stage: self.stage.clone(),
                stream,
                line: self.masker.mask(line.trim_end_matches(['\n', '\r'])),
            })
            .await;
    }
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub trait Backend: Send + Sync {
    /// Gets an attempt ready while the stages before it still run (the
    /// Docker backend creates its container), so that `execute` only has to
    /// start it. `execute` must work without it; a prepared attempt that
    /// never executes is cleaned up when the backend finishes.
    fn prepare(&self, job: &Job) {
        let _ = job;
    }

    /// Runs one attempt until it ends, is cancelled or times out.
    fn execute(&self, job: Job, output: Output, cancel: CancellationToken) -> BoxFuture<Outcome>;

    /// A short name for messages.
    fn name(&self) -> &'static str;

    /// The content digest of an image reference as the backend's image
    /// store knows it (`repository@sha256:...`, from its registry), for the
    /// release step's record and to pin what it deploys. `None` when the
    /// backend keeps no images, or the reference was never pushed or pulled.
    fn resolve_image(&self, reference: &str) -> BoxFuture<Option<String>> {
        let _ = reference;
        Box::pin(async { None })
    }
}
