//! What a backend is given and what it reports. Backends only execute: the
//! scheduler owns the run's state. Docker specifics (mounts, networks,
//! volumes) stay inside their backend, so that another backend can run a
//! stage as a Pod.

use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::artifacts::{ArtifactKey, ArtifactStore};
use super::events::{Event, Stream};
use super::mask::Masker;
use crate::plan::{GitContext, PlannedAction, PlannedStage};

/// What every attempt of a run shares: who runs what, where, from which
/// commit. Backends read the git context from here, never back out of the
/// stage's `SLIPWAY_*` env.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The run's id (minted by the scheduler).
    pub run: String,
    pub pipeline: String,
    /// `--env`, when given.
    pub environment: Option<String>,
    pub git: GitContext,
    /// The project directory (the pipeline file's folder).
    pub workspace: PathBuf,
    /// Where stages hand on their artifacts.
    pub artifacts: ArtifactStore,
}

/// One env entry as a stage gets it.
#[derive(Clone, PartialEq, Eq)]
pub enum EnvValue {
    Plain(String),
    /// Holds a secret's value: never printed, and a backend that can keep
    /// it apart (a Pod backend: in a Secret) does.
    Secret(String),
}

impl EnvValue {
    pub fn value(&self) -> &str {
        match self {
            EnvValue::Plain(v) | EnvValue::Secret(v) => v,
        }
    }
}

impl std::fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvValue::Plain(v) => write!(f, "{v:?}"),
            EnvValue::Secret(_) => f.write_str("***"),
        }
    }
}

/// An environment, in order.
pub type Env = IndexMap<String, EnvValue>;

/// One attempt of one stage.
#[derive(Debug, Clone)]
pub struct Job {
    pub stage: PlannedStage,
    pub attempt: u32,
    /// The stage's environment with secrets filled in and the `SLIPWAY_*`
    /// context added.
    pub env: Env,
    /// Each service's environment, secrets filled in, in the order of
    /// `stage.services`.
    pub service_env: Vec<Env>,
    pub context: Arc<RunContext>,
    /// The artifacts of earlier stages this stage gets: each stage it comes
    /// after, directly or not, that declared some.
    pub inputs: Vec<ArtifactKey>,
    /// Where this stage's own artifacts go, one per declared path.
    pub outputs: Vec<ArtifactKey>,
}

impl Job {
    /// The env as plain strings, for a backend that passes it as one.
    pub fn env_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.value()))
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// Not run: its result came from the stage cache.
    Cached,
    /// The scheduler stopped it at its `timeout`.
    TimedOut,
    Cancelled,
    /// It could not run, or was ended by something other than its script.
    Failed(Failure),
    /// slipway itself failed (a bug: the stage's task panicked): the stage
    /// fails, and the run exits 3.
    Internal(String),
}

impl Outcome {
    /// The stage's own doing (a bad image, a missing artifact, a failed
    /// build): the run exits 1.
    pub fn stage(message: impl Into<String>) -> Self {
        Outcome::Failed(Failure {
            kind: FailureKind::Stage,
            message: message.into(),
        })
    }

    /// A component the stage needs (the engine, the Kubernetes API) did not
    /// answer: the run exits 3.
    pub fn infrastructure(message: impl Into<String>) -> Self {
        Outcome::Failed(Failure {
            kind: FailureKind::Infrastructure,
            message: message.into(),
        })
    }

    pub fn failed(kind: FailureKind, message: impl Into<String>) -> Self {
        Outcome::Failed(Failure {
            kind,
            message: message.into(),
        })
    }

    /// Whether the run exits 3 for it rather than 1.
    pub fn exits_3(&self) -> bool {
        match self {
            Outcome::Internal(_) => true,
            Outcome::Failed(f) => f.kind.is_infrastructure(),
            _ => false,
        }
    }
}

/// Why an attempt failed without its script deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Something the stage asks for cannot be done.
    Stage,
    /// A component did not answer: the engine, the API server.
    Infrastructure,
    /// Its image (or a service's) could not be pulled.
    ImagePull,
    /// No node can take it.
    Unschedulable,
    /// The kernel killed it for memory.
    OomKilled,
    /// Its node evicted it.
    Evicted,
}

impl FailureKind {
    pub fn is_infrastructure(self) -> bool {
        self == FailureKind::Infrastructure
    }
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

    /// The same stage's output, its events sent to `events` instead (to be
    /// looked at on their way), and where they went before.
    pub fn redirected(&self, events: mpsc::Sender<Event>) -> (Output, mpsc::Sender<Event>) {
        (
            Output {
                stage: self.stage.clone(),
                events,
                masker: self.masker.clone(),
            },
            self.events.clone(),
        )
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

pub use futures_util::future::BoxFuture;

/// What a backend is told when a run opens.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The run's id (minted by the scheduler): labels, the events, the
    /// release's record.
    pub run: String,
    pub pipeline: String,
}

/// An attempt a backend got ready ahead ([`Backend::prepare`]). The
/// scheduler holds it and gives it back to `execute` or `discard`; what is
/// inside is the backend's own.
pub struct Prepared(Box<dyn std::any::Any + Send>);

impl Prepared {
    pub fn new<T: Send + 'static>(inner: T) -> Self {
        Self(Box::new(inner))
    }

    /// What the backend put in, if it is a `T`.
    pub fn into_inner<T: 'static>(self) -> Option<T> {
        self.0.downcast::<T>().ok().map(|b| *b)
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared(..)")
    }
}

/// The attempts a backend is getting going for `execute` right now. Work
/// done ahead ([`Backend::prepare`]) waits until there are none, so that
/// the engine or the cluster first starts what the run waits for.
#[derive(Clone)]
pub struct Starts(Arc<tokio::sync::watch::Sender<usize>>);

impl Default for Starts {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

impl Starts {
    /// Counts one attempt as starting until the guard is dropped.
    pub fn begin(&self) -> Starting {
        self.0.send_modify(|n| *n += 1);
        Starting(self.0.clone())
    }

    /// Returns once no attempt is starting.
    pub async fn none(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// One attempt counted in [`Starts`] until dropped.
pub struct Starting(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

pub trait Backend: Send + Sync {
    /// The content id of `image` as this backend would run it, for the
    /// stage cache's keys; `None` when it cannot tell (then nothing is
    /// cached).
    fn image_id(&self, image: &str) -> BoxFuture<'static, Option<String>> {
        let _ = image;
        Box::pin(async { None })
    }

    /// Makes what the run's stages share (the Docker backend: a network).
    /// Called once, before any stage.
    fn open<'a>(&'a self, info: &'a RunInfo) -> BoxFuture<'a, Result<(), String>> {
        let _ = info;
        Box::pin(async { Ok(()) })
    }

    /// Whether this backend can run `action`: asked of every stage before
    /// the run starts, so an unsupported stage is refused up front with
    /// this message, never failed halfway through.
    fn supports(&self, action: &PlannedAction) -> Result<(), String> {
        let _ = action;
        Ok(())
    }

    /// Whether this backend can run `stage` as a whole (its action, and
    /// what else it asks for: services, artifacts, caches); by default,
    /// whether it supports its action.
    fn supports_stage(&self, stage: &PlannedStage) -> Result<(), String> {
        self.supports(&stage.action)
    }

    /// How many prepared attempts the scheduler may hold at once (never
    /// more than `-j`). Preparing ahead is nearly free for containers, but
    /// a Pod made ahead holds cluster capacity; 0, the default, prepares
    /// nothing.
    fn ahead(&self) -> usize {
        0
    }

    /// Gets an attempt ready while the stages before it still run (the
    /// Docker backend creates and starts its container behind a gate), so
    /// that `execute` only has to let it go. `execute` must work without
    /// it.
    fn prepare(&self, job: &Job) -> Option<Prepared> {
        let _ = job;
        None
    }

    /// Runs one attempt until it ends or `cancel` stops it. The scheduler
    /// owns deadlines: a timeout is a cancellation it reports as
    /// [`Outcome::TimedOut`].
    fn execute(
        &self,
        job: Job,
        prepared: Option<Prepared>,
        output: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Outcome>;

    /// Undoes a preparation whose stage never ran.
    fn discard(&self, prepared: Prepared) -> BoxFuture<'static, ()> {
        drop(prepared);
        Box::pin(async {})
    }

    /// Cleans up what `open` made. Called once, after the last stage and
    /// after every unused preparation was discarded.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// The content digest of an image reference as the backend's image
    /// store knows it (`repository@sha256:...`, from its registry), for the
    /// release step's record and to pin what it deploys. `None` when the
    /// backend keeps no images, or the reference was never pushed or pulled.
    fn resolve_image(&self, reference: &str) -> BoxFuture<'static, Option<String>> {
        let _ = reference;
        Box::pin(async { None })
    }
}
