//! The Docker backend (bollard): each stage attempt runs in its own
//! container on one network per run, with the workspace mounted at
//! [`WORKSPACE`]. Everything a run creates carries the label
//! `dev.slipway.run=<run id>`, so that nothing is left behind unnoticed.
//!
//! The workspace is isolated by default: each container sees the project
//! through an overlay volume of its own (the project read-only below, a
//! scratch layer on top), so stages running at once cannot clobber each
//! other's files, and the project itself is never written. What a stage
//! hands on goes through `artifact`.
//!
//! A stage's container is created *and started* with its script behind a
//! gate that waits for a line on the container's standard input; its
//! standard streams are attached before it starts. Containers are made
//! ahead this way while the stages they wait for still run (`ahead`):
//! starting a container is the engine's slow part (about half a second
//! here), so with it done ahead a dependent's script begins within
//! milliseconds of its dependencies' end. `execute` copies the artifacts
//! in, opens the gate and closes standard input, so the script sees the
//! same empty input as a container started without one.
//!
//! The gate also tells when the script has ended, sooner than the engine
//! does (it reports an exit only after tearing down the container's network
//! and mounts, about 0.1–0.2 s here): after the script, it writes a line
//! with a per-container nonce and the exit status on both output streams.
//! slipway reads the output straight from the attached streams, so once it
//! has seen that line on both, it has every line before it, and the stage
//! is over; the line itself is never shown (`container`, `logs`).
//!
//! Modules: `engine` (errors, images), `container` (create, gate,
//! supervise, artifacts in and out), `services`, `workspace` (overlay and
//! cache volumes), `logs`, `ahead`, `build`.

mod ahead;
mod build;
mod container;
mod engine;
pub mod gc;
mod logs;
mod services;
mod workspace;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use tokio_util::sync::CancellationToken;

pub use engine::Unreachable;
pub use workspace::cache_volume;

use self::ahead::Pending;
use super::backend::{Backend, BoxFuture, Env, Job, Outcome, Output, Prepared, RunInfo};
use super::backend::{Starting, Starts};
use crate::plan::PlannedAction;

/// Where the workspace is mounted in every stage's container.
pub const WORKSPACE: &str = "/workspace";

/// The label every container and network of a run carries.
pub const RUN_LABEL: &str = "dev.slipway.run";

/// How many containers are made ahead at once.
const AHEAD: usize = 2;

/// When to pull a stage's or service's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Pull {
    /// Never: an image must already be on the engine.
    Never,
    /// When the engine does not have it.
    #[default]
    Missing,
    /// Before every run, even when the engine has it.
    Always,
}

/// How stages see the project directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WorkspaceMode {
    /// Each container gets its own copy-on-write view (an overlay volume);
    /// the project is not written.
    #[default]
    Isolated,
    /// Every container mounts the project directory itself, read-write.
    Shared,
}

pub struct DockerBackend {
    docker: Docker,
    /// Set by `open`: the run's id, network and pipeline.
    opened: std::sync::OnceLock<Opened>,
    shared: Shared,
}

struct Opened {
    run_id: String,
    network: String,
    pipeline: String,
}

/// What the stages of one run share.
#[derive(Clone)]
struct Shared {
    /// Images known to be on the engine: each is looked up once per run.
    images: Arc<Mutex<HashSet<String>>>,
    /// Containers being removed in the background: a dependent need not
    /// wait for its predecessor's container to be deleted. `close` waits.
    removals: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Making containers ahead goes [`AHEAD`] at a time, so that a wave
    /// of dependents being prepared does not crowd out the engine while it
    /// starts the stages they wait for.
    ahead: Arc<tokio::sync::Semaphore>,
    /// How many executed stages are still getting their containers going:
    /// a container made ahead is begun only when none is, so that the
    /// engine starts what the run waits for first.
    starting: Starts,
    pull: Pull,
    mode: WorkspaceMode,
    /// Where the overlay volumes' writable layers live, one folder per
    /// container; removed when the run finishes.
    scratch: PathBuf,
}

/// A lock that a panic elsewhere cannot poison for good: what it guards
/// (a cache, a list of removals) stays right, and a removal is never
/// dropped for want of a lock.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn images(&self) -> MutexGuard<'_, HashSet<String>> {
        lock(&self.images)
    }

    /// Removes a container (and its workspace volume) in the background;
    /// `close` waits for it.
    fn remove_later(&self, docker: &Docker, id: String, volume: Option<String>) {
        let docker = docker.clone();
        let task =
            tokio::spawn(async move { container::remove_created(&docker, &id, volume).await });
        lock(&self.removals).push(task);
    }
}

/// One attempt as this backend runs it: the job, and where its containers
/// go and what they carry.
struct Attempt {
    docker: Docker,
    job: Job,
    /// The labels of every container the attempt makes.
    labels: HashMap<String, String>,
    /// The network its containers join.
    network: String,
    shared: Shared,
}

impl DockerBackend {
    /// Connects to the engine (`DOCKER_HOST`, or `/var/run/docker.sock`)
    /// and checks that it answers; `open` then makes the run's network.
    pub async fn connect(pull: Pull, mode: WorkspaceMode) -> Result<Self, Unreachable> {
        let docker = Docker::connect_with_local_defaults()?;
        docker.ping().await?;
        let scratch = format!(
            "slipway-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_millisecond()
        );
        Ok(Self {
            docker,
            opened: std::sync::OnceLock::new(),
            shared: Shared {
                images: Arc::default(),
                removals: Arc::default(),
                ahead: Arc::new(tokio::sync::Semaphore::new(AHEAD)),
                starting: Starts::default(),
                pull,
                mode,
                scratch: std::env::temp_dir().join(scratch),
            },
        })
    }

    /// Creates the run's network.
    async fn open_run(&self, info: &RunInfo) -> Result<(), String> {
        let network = format!("slipway-{}", info.run);
        self.docker
            .create_network(NetworkCreateRequest {
                name: network.clone(),
                labels: Some(HashMap::from([
                    (RUN_LABEL.to_string(), info.run.clone()),
                    ("dev.slipway.pipeline".to_string(), info.pipeline.clone()),
                ])),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot create the run's network: {e}"))?;
        self.opened
            .set(Opened {
                run_id: info.run.clone(),
                network,
                pipeline: info.pipeline.clone(),
            })
            .map_err(|_| "the backend was opened twice".to_string())
    }

    /// Waits for every container's removal, then removes the run's network
    /// and scratch.
    async fn finish(&self) {
        loop {
            let pending: Vec<_> = lock(&self.shared.removals).drain(..).collect();
            if pending.is_empty() {
                break;
            }
            for handle in pending {
                let _ = handle.await;
            }
        }
        if let Some(opened) = self.opened.get() {
            let _ = self.docker.remove_network(&opened.network).await;
        }
        if self.shared.scratch.exists() {
            let _ = std::fs::remove_dir_all(&self.shared.scratch);
        }
    }

    /// An attempt of `job` on the run's network; `None` before `open`.
    fn attempt(&self, job: Job) -> Option<Attempt> {
        let opened = self.opened.get()?;
        Some(Attempt {
            docker: self.docker.clone(),
            labels: HashMap::from([
                (RUN_LABEL.to_string(), opened.run_id.clone()),
                ("dev.slipway.pipeline".to_string(), opened.pipeline.clone()),
                ("dev.slipway.stage".to_string(), job.stage.name.clone()),
            ]),
            network: opened.network.clone(),
            shared: self.shared.clone(),
            job,
        })
    }
}

/// The registry digest of an image, asked of the local engine outside a
/// run (`slipway release diff`); `None` when the engine does not answer or
/// does not know it.
pub async fn image_digest(reference: &str) -> Option<String> {
    let docker = Docker::connect_with_local_defaults().ok()?;
    build::repo_digest(&docker, reference).await
}

/// Whether the docker backend can run `action` (see
/// [`Backend::supports`]).
pub fn supports(action: &PlannedAction) -> Result<(), String> {
    match action {
        PlannedAction::Run { .. } | PlannedAction::Build(_) => Ok(()),
        other => Err(format!(
            "the docker backend does not run `{}` stages",
            other.kind()
        )),
    }
}

impl Backend for DockerBackend {
    /// The image's id on the engine (the digest of its configuration);
    /// `None` while the engine does not have it.
    fn image_id(&self, image: &str) -> BoxFuture<'static, Option<String>> {
        let (docker, image) = (self.docker.clone(), image.to_string());
        Box::pin(async move { docker.inspect_image(&image).await.ok()?.id })
    }

    fn open<'a>(&'a self, info: &'a RunInfo) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.open_run(info))
    }

    fn supports(&self, action: &PlannedAction) -> Result<(), String> {
        supports(action)
    }

    /// Containers are cheap to hold ready: up to `-j` of them.
    fn ahead(&self) -> usize {
        usize::MAX
    }

    /// Creates and starts the container of a plain `run` stage ahead, its
    /// script behind the gate.
    fn prepare(&self, job: &Job) -> Option<Prepared> {
        if !job.stage.services.is_empty() {
            return None;
        }
        let script = job.stage.script()?.to_string();
        let image = job.stage.image.clone()?;
        let attempt = self.attempt(job.clone())?;
        Some(Prepared::new(ahead::begin(attempt, script, image)))
    }

    fn execute(
        &self,
        job: Job,
        prepared: Option<Prepared>,
        output: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Outcome> {
        let Some(attempt) = self.attempt(job) else {
            return Box::pin(async { Outcome::Internal("the backend was not opened".into()) });
        };
        // Counted at once, before any preparation the scheduler asks for
        // next can begin.
        let starting = attempt.shared.starting.begin();
        let ahead = prepared.and_then(Prepared::into_inner::<Pending>);
        Box::pin(async move { execute(attempt, ahead, output, cancel, starting).await })
    }

    fn discard(&self, prepared: Prepared) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        let docker = self.docker.clone();
        Box::pin(async move {
            if let Some(pending) = prepared.into_inner::<Pending>() {
                pending.discard(&shared, &docker).await;
            }
        })
    }

    /// Waits for every container's removal, then removes the run's network
    /// and scratch.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.finish())
    }

    fn resolve_image(&self, reference: &str) -> BoxFuture<'static, Option<String>> {
        let docker = self.docker.clone();
        let reference = reference.to_string();
        Box::pin(async move { build::repo_digest(&docker, &reference).await })
    }
}

/// Runs one attempt: a build, or a script in its container with its
/// services beside it.
async fn execute(
    mut attempt: Attempt,
    ahead: Option<Pending>,
    output: Output,
    cancel: CancellationToken,
    starting: Starting,
) -> Outcome {
    let (script, image) = match &attempt.job.stage.action {
        PlannedAction::Build(build) => {
            drop(starting);
            let build = build.clone();
            return build::build(&attempt, &build, &output, &cancel).await;
        }
        PlannedAction::Run { script } => (script.clone(), attempt.job.stage.image.clone()),
        other => {
            return Outcome::stage(format!(
                "the docker backend does not run `{}` stages yet (`{}`)",
                other.kind(),
                attempt.job.stage.name
            ));
        }
    };
    let Some(image) = image else {
        return Outcome::stage(format!("stage `{}` has no image", attempt.job.stage.name));
    };
    if let Err(f) = engine::ensure_image(&attempt.docker, &image, &attempt.shared, &output).await {
        if let Some(pending) = ahead {
            pending.discard(&attempt.shared, &attempt.docker).await;
        }
        return Outcome::Failed(f);
    }
    // A stage with services gets a network of its own, so two stages (two
    // matrix cells, say) can each have a `db` without their names clashing.
    let own_network = !attempt.job.stage.services.is_empty();
    if own_network {
        let name = format!(
            "{}-{}-{}",
            attempt.network,
            sanitize(&attempt.job.stage.name),
            attempt.job.attempt
        );
        if let Err(e) = attempt
            .docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                labels: Some(attempt.labels.clone()),
                ..Default::default()
            })
            .await
        {
            return Outcome::Failed(engine::failure("cannot create the stage's network", &e));
        }
        attempt.network = name;
    }
    let mut running = Vec::new();
    let mut outcome = start_services(&attempt, &output, &cancel, &mut running).await;
    // All services start at once; then the stage waits for each to be ready,
    // and other stages' containers may be made meanwhile.
    let starting = running.is_empty().then_some(starting);
    if outcome.is_none() {
        let starting = starting.unwrap_or_else(|| attempt.shared.starting.begin());
        // A container made ahead is used when it was made (or is being
        // made); otherwise (not begun yet, image not yet there, or it
        // failed) it is made now, and any error is this attempt's.
        let made = match ahead {
            Some(pending) => pending.claim().await,
            None => None,
        };
        let created = match made {
            Some(c) => Ok(c),
            None => container::start(&attempt, &script, &image).await,
        };
        // With services, the stage's network goes once all its containers
        // are gone, so its removal is waited for.
        outcome = Some(match created {
            Ok(created) => {
                container::run(&attempt, created, &output, &cancel, !own_network, starting).await
            }
            Err(f) => Outcome::Failed(f),
        });
    }
    for id in running {
        container::remove(&attempt.docker, &id).await;
    }
    if own_network {
        let _ = attempt.docker.remove_network(&attempt.network).await;
    }
    outcome.unwrap_or(Outcome::Cancelled)
}

/// Starts the stage's services and waits until each is ready; `Some` is
/// how the attempt ended when one could not be. The started containers'
/// ids go to `running`, for their removal.
async fn start_services(
    attempt: &Attempt,
    output: &Output,
    cancel: &CancellationToken,
    running: &mut Vec<String>,
) -> Option<Outcome> {
    let no_env = Env::new();
    let stage = &attempt.job.stage;
    for (i, svc) in stage.services.iter().enumerate() {
        let env = attempt.job.service_env.get(i).unwrap_or(&no_env);
        match services::start(attempt, svc, env, output).await {
            Ok(id) => running.push(id),
            Err(f) => return Some(Outcome::Failed(f)),
        }
    }
    for (svc, id) in stage.services.iter().zip(running.iter()) {
        let ready = tokio::select! {
            r = services::ready(attempt, svc, id, output, services::READY_LIMIT) => r,
            () = cancel.cancelled() => return Some(Outcome::Cancelled),
        };
        if let Err(f) = ready {
            return Some(Outcome::Failed(f));
        }
    }
    None
}

/// A container name part: `test[NODE=18]` → `test-NODE-18`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}
