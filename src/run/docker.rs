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
//! ahead this way while the stages they wait for still run
//! ([`Backend::prepare`]): starting a container is the engine's slow part
//! (about half a second here), so with it done ahead a dependent's script
//! begins within milliseconds of its dependencies' end. `execute` copies
//! the artifacts in, opens the gate and closes standard input, so the
//! script sees the same empty input as a container started without one.
//!
//! The gate also tells when the script has ended, sooner than the engine
//! does (it reports an exit only after tearing down the container's network
//! and mounts, about 0.1–0.2 s here): after the script, it writes a line
//! with a per-container nonce and the exit status on both output streams.
//! slipway reads the output straight from the attached streams, so once it
//! has seen that line on both, it has every line before it, and the stage
//! is over; the line itself is never shown.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::backend::{Backend, BoxFuture, Job, Outcome, Output, RunInfo};
use super::events::Stream;

/// Where the project directory is mounted in every stage's container.
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

/// A stage's container, started with its script waiting behind the gate.
struct Created {
    id: String,
    /// The overlay volume holding its view of the workspace.
    volume: Option<String>,
    gate: Gate,
}

/// A stage container's standard input (a line on it runs the script) and
/// output, attached before it started.
struct Gate {
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: LogStream,
    /// What the end-of-script line starts with.
    nonce: String,
}

type LogStream = Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
            > + Send,
    >,
>;

/// The command of every stage's container: it waits for one line on
/// standard input (or its end, which stops it), runs the stage's
/// `sh -e -c SCRIPT` (`$1`), then writes `NONCE STATUS` (`$2`) on standard
/// output and standard error, and exits with the script's status.
const GATE: &str =
    "read -r _ || exit 0; sh -e -c \"$1\"; s=$?; echo \"$2 $s\"; echo \"$2 $s\" >&2; exit $s";

/// A container being made ahead. `claimed` is cancelled when the stage is
/// executed: a preparation that has not begun by then is dropped, and the
/// stage makes its container itself rather than queue behind others (or
/// behind itself: a preparation waits while executed stages start).
struct Pending {
    claimed: CancellationToken,
    task: tokio::task::JoinHandle<Result<Created, String>>,
}

/// Counts an executed stage as starting until dropped (see
/// [`Shared::starting`]).
struct Starting(Arc<tokio::sync::watch::Sender<usize>>);

impl Starting {
    fn new(counter: &Arc<tokio::sync::watch::Sender<usize>>) -> Self {
        counter.send_modify(|n| *n += 1);
        Self(counter.clone())
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Shared {
    /// Waits until no executed stage is getting its container going.
    async fn none_starting(&self) {
        let mut rx = self.starting.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Removes a container (and its workspace volume) in the background;
    /// `finish` waits for it.
    async fn remove_later(&self, docker: &Docker, id: String, volume: Option<String>) {
        let task = {
            let docker = docker.clone();
            tokio::spawn(async move { remove_created(&docker, &id, volume).await })
        };
        // The guard is dropped before any await.
        let unqueued = match self.removals.lock() {
            Ok(mut pending) => {
                pending.push(task);
                None
            }
            Err(_) => Some(task),
        };
        if let Some(task) = unqueued {
            let _ = task.await;
        }
    }
}

/// What the stages of one run share.
#[derive(Clone)]
struct Shared {
    /// Images known to be on the engine: each is looked up once per run.
    images: Arc<Mutex<HashSet<String>>>,
    /// Containers being removed in the background: a dependent need not
    /// wait for its predecessor's container to be deleted. `finish` waits.
    removals: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Containers made ahead, by stage and attempt.
    prepared: Arc<Mutex<HashMap<(String, u32), Pending>>>,
    /// Making containers ahead goes [`AHEAD`] at a time, so that a wave
    /// of dependents being prepared does not crowd out the engine while it
    /// starts the stages they wait for.
    ahead: Arc<tokio::sync::Semaphore>,
    /// How many executed stages are still getting their containers going:
    /// a container made ahead is begun only when none is, so that the
    /// engine starts what the run waits for first.
    starting: Arc<tokio::sync::watch::Sender<usize>>,
    pull: Pull,
    mode: WorkspaceMode,
    /// Where the overlay volumes' writable layers live, one folder per
    /// container; removed when the run finishes.
    scratch: PathBuf,
}

impl DockerBackend {
    /// Connects to the engine (`DOCKER_HOST`, or `/var/run/docker.sock`)
    /// and checks that it answers; `open` then makes the run's network.
    pub async fn connect(pull: Pull, mode: WorkspaceMode) -> Result<Self, String> {
        let docker =
            Docker::connect_with_local_defaults().map_err(|e| not_running(&e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| not_running(&e.to_string()))?;
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
                prepared: Arc::default(),
                ahead: Arc::new(tokio::sync::Semaphore::new(AHEAD)),
                starting: Arc::new(tokio::sync::watch::Sender::new(0)),
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

    /// Removes the containers created ahead that never ran, waits for every
    /// container's removal, then removes the run's network and scratch.
    async fn finish(&self) {
        let unused: Vec<Pending> = self
            .shared
            .prepared
            .lock()
            .map(|mut p| p.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for pending in unused {
            pending.claimed.cancel();
            if let Ok(Ok(created)) = pending.task.await {
                self.shared
                    .remove_later(&self.docker, created.id, created.volume)
                    .await;
            }
        }
        loop {
            let pending: Vec<_> = self
                .shared
                .removals
                .lock()
                .map(|mut r| r.drain(..).collect())
                .unwrap_or_default();
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

    /// The labels and the network of a stage's containers; `None` before
    /// `open`.
    fn for_stage(&self, stage: &str) -> Option<(HashMap<String, String>, String)> {
        let opened = self.opened.get()?;
        Some((
            HashMap::from([
                (RUN_LABEL.to_string(), opened.run_id.clone()),
                ("dev.slipway.pipeline".to_string(), opened.pipeline.clone()),
                ("dev.slipway.stage".to_string(), stage.to_string()),
            ]),
            opened.network.clone(),
        ))
    }
}

/// The registry digest of an image, asked of the local engine outside a
/// run (`slipway release diff`); `None` when the engine does not answer or
/// does not know it.
pub async fn image_digest(reference: &str) -> Option<String> {
    let docker = Docker::connect_with_local_defaults().ok()?;
    super::build::repo_digest(&docker, reference).await
}

fn not_running(why: &str) -> String {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    format!(
        "the Docker engine does not answer at {host} ({why}); start it (`sudo systemctl start docker`, or `dockerd &`), or point DOCKER_HOST at a running engine"
    )
}

impl Backend for DockerBackend {
    fn open<'a>(&'a self, info: &'a RunInfo) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.open_run(info))
    }

    /// Removes the containers created ahead that never ran, waits for every
    /// container's removal, then removes the run's network and scratch.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.finish())
    }

    fn resolve_image(&self, reference: &str) -> BoxFuture<'static, Option<String>> {
        let docker = self.docker.clone();
        let reference = reference.to_string();
        Box::pin(async move { super::build::repo_digest(&docker, &reference).await })
    }

    /// Creates and starts the container of a plain `run` stage ahead, its
    /// script behind the gate, when its image is already settled (pulls
    /// stay in `execute`, where they are reported).
    fn prepare(&self, job: &Job) {
        if job.stage.build.is_some() || !job.stage.services.is_empty() {
            return;
        }
        let (Some(script), Some(image)) = (job.stage.run.clone(), job.stage.image.clone()) else {
            return;
        };
        let Some((labels, network)) = self.for_stage(&job.stage.name) else {
            return;
        };
        let docker = self.docker.clone();
        let shared = self.shared.clone();
        let job = job.clone();
        let key = (job.stage.name.clone(), job.attempt);
        let claimed = CancellationToken::new();
        let task = {
            let claimed = claimed.clone();
            tokio::spawn(async move {
                let turn = async {
                    let permit = shared.ahead.clone().acquire_owned().await;
                    shared.none_starting().await;
                    permit
                };
                let _turn = tokio::select! {
                    biased;
                    () = claimed.cancelled() => return Err(String::new()),
                    permit = turn => permit,
                };
                if !image_settled(&docker, &image, &shared).await {
                    return Err(String::new());
                }
                start_stage(&docker, &job, labels, network, script, image, &shared).await
            })
        };
        if let Ok(mut prepared) = self.shared.prepared.lock() {
            prepared.insert(key, Pending { claimed, task });
        }
    }

    fn execute(
        &self,
        job: Job,
        output: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Outcome> {
        let Some((labels, network)) = self.for_stage(&job.stage.name) else {
            return Box::pin(async { Outcome::Internal("the backend was not opened".into()) });
        };
        let docker = self.docker.clone();
        let shared = self.shared.clone();
        // Counted at once, before any preparation the scheduler asks for
        // next can begin.
        let starting = Starting::new(&shared.starting);
        Box::pin(async move {
            run(
                docker, job, output, cancel, labels, network, shared, starting,
            )
            .await
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    docker: Docker,
    job: Job,
    output: Output,
    cancel: CancellationToken,
    labels: HashMap<String, String>,
    network: String,
    shared: Shared,
    starting: Starting,
) -> Outcome {
    if let Some(build) = job.stage.build.clone() {
        drop(starting);
        return super::build::build(&docker, &job, &build, &output, &cancel).await;
    }
    let Some(script) = job.stage.run.clone() else {
        return Outcome::Error(format!(
            "the docker backend does not run `{}` stages yet (`{}`)",
            job.stage.kind, job.stage.name
        ));
    };
    let Some(image) = job.stage.image.clone() else {
        return Outcome::Error(format!("stage `{}` has no image", job.stage.name));
    };
    if let Err(e) = ensure_image(&docker, &image, &shared, &output).await {
        return Outcome::Error(e);
    }
    // A stage with services gets a network of its own, so two stages (two
    // matrix cells, say) can each have a `db` without their names clashing.
    let own_network = !job.stage.services.is_empty();
    let network = if own_network {
        let name = format!("{network}-{}-{}", sanitize(&job.stage.name), job.attempt);
        if let Err(e) = docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
        {
            return Outcome::Error(format!("cannot create the stage's network: {e}"));
        }
        name
    } else {
        network
    };
    let mut services = Vec::new();
    let mut outcome = None;
    for svc in &job.stage.services {
        match start_service(&docker, svc, &job, &labels, &network, &shared, &output).await {
            Ok(id) => services.push((svc.name.clone(), id)),
            Err(e) => {
                outcome = Some(Outcome::Error(e));
                break;
            }
        }
    }
    // All services start at once; then the stage waits for each to be ready,
    // and other stages' containers may be made meanwhile.
    let starting = services.is_empty().then_some(starting);
    if outcome.is_none() {
        let limit = job.timeout.unwrap_or(SERVICE_READY_LIMIT);
        for (name, id) in &services {
            let ready = tokio::select! {
                r = tokio::time::timeout(limit, service_ready(&docker, name, id, &output)) => {
                    r.unwrap_or_else(|_| Err(format!(
                        "service `{name}` was not healthy after {}", humantime::format_duration(limit)
                    )))
                }
                () = cancel.cancelled() => Err("cancelled".into()),
            };
            if let Err(e) = ready {
                outcome = Some(if cancel.is_cancelled() {
                    Outcome::Cancelled
                } else {
                    Outcome::Error(e)
                });
                break;
            }
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => {
            let starting = starting.unwrap_or_else(|| Starting::new(&shared.starting));
            // With services, the stage's network goes once all its
            // containers are gone, so its removal is waited for.
            let background = (!own_network).then(|| shared.clone());
            let ahead = shared
                .prepared
                .lock()
                .ok()
                .and_then(|mut p| p.remove(&(job.stage.name.clone(), job.attempt)));
            // A container made ahead is used when it was made (or is being
            // made); otherwise (not begun yet, image not yet there, or it
            // failed) it is made now, and any error is this attempt's.
            let ahead = match ahead {
                Some(pending) => {
                    pending.claimed.cancel();
                    pending.task.await.ok().and_then(Result::ok)
                }
                None => None,
            };
            let created = match ahead {
                Some(c) => Ok(c),
                None => {
                    start_stage(
                        &docker,
                        &job,
                        labels.clone(),
                        network.clone(),
                        script,
                        image,
                        &shared,
                    )
                    .await
                }
            };
            match created {
                Ok(created) => {
                    let run_id = labels.get(RUN_LABEL).cloned().unwrap_or_default();
                    run_stage(
                        &docker, created, &job, &output, &cancel, &run_id, background, starting,
                    )
                    .await
                }
                Err(e) => Outcome::Error(e),
            }
        }
    };
    for (_, id) in services {
        remove(&docker, &id).await;
    }
    if own_network {
        let _ = docker.remove_network(&network).await;
    }
    outcome
}

/// Makes sure the engine has `image`, pulling it as `--pull` says; each
/// image is settled once per run.
async fn ensure_image(
    docker: &Docker,
    image: &str,
    shared: &Shared,
    output: &Output,
) -> Result<(), String> {
    if image_settled(docker, image, shared).await {
        return Ok(());
    }
    // Not on the engine, or `--pull always`.
    if shared.pull == Pull::Never {
        return Err(format!(
            "image `{image}` is not on this engine, and `--pull never` forbids pulling it; build it first (`docker build -t {image} ...`)"
        ));
    }
    output
        .line(Stream::Stdout, &format!("pulling {image}"))
        .await;
    // By its tag or digest, `latest` when it names neither, as `docker pull`
    // does: given a bare name, the engine pulls every tag.
    let reference = crate::image::ImageRef::split(image);
    let options = bollard::query_parameters::CreateImageOptionsBuilder::default()
        .from_image(&reference.repository())
        .tag(reference.digest().or(reference.tag()).unwrap_or("latest"))
        .build();
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            return Err(format!(
                "image `{image}` could not be pulled ({e}); build it first (`docker build -t {image} ...`), or push it to a registry this engine can reach"
            ));
        }
    }
    if let Ok(mut images) = shared.images.lock() {
        images.insert(image.to_string());
    }
    Ok(())
}

/// Starts a service container, reachable on `network` by its name.
async fn start_service(
    docker: &Docker,
    svc: &crate::plan::PlannedService,
    job: &Job,
    labels: &HashMap<String, String>,
    network: &str,
    shared: &Shared,
    output: &Output,
) -> Result<String, String> {
    ensure_image(docker, &svc.image, shared, output)
        .await
        .map_err(|e| format!("service `{}`: {e}", svc.name))?;
    let mut env: Vec<String> = svc
        .env
        .iter()
        .filter(|(k, _)| !svc.secret_env.contains_key(*k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for (k, template) in &svc.secret_env {
        let mut value = template.to_string();
        for (name, secret) in &job.secrets {
            value = value.replace(&format!("${{secret.{name}}}"), secret);
        }
        env.push(format!("{k}={value}"));
    }
    let mut labels = labels.clone();
    labels.insert("dev.slipway.service".into(), svc.name.clone());
    let body = ContainerCreateBody {
        image: Some(svc.image.clone()),
        env: Some(env),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_string(),
                EndpointSettings {
                    aliases: Some(vec![svc.name.clone()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .map_err(|e| format!("service `{}`: cannot create its container: {e}", svc.name))?;
    if let Err(e) = docker.start_container(&created.id, None).await {
        remove(docker, &created.id).await;
        return Err(format!("service `{}`: cannot start: {e}", svc.name));
    }
    Ok(created.id)
}

/// How long a stage waits for its services' healthchecks when it has no
/// `timeout` of its own.
const SERVICE_READY_LIMIT: Duration = Duration::from_secs(120);

/// Waits until a service is ready: healthy, when its image declares a
/// `HEALTHCHECK`; running, otherwise. A service that exits or turns
/// unhealthy fails the stage with what its healthcheck last said.
async fn service_ready(
    docker: &Docker,
    name: &str,
    id: &str,
    output: &Output,
) -> Result<(), String> {
    use bollard::models::HealthStatusEnum;
    let mut told = false;
    loop {
        let info = docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| format!("service `{name}`: cannot inspect its container: {e}"))?;
        let state = info.state.unwrap_or_default();
        if state.running != Some(true) {
            return Err(format!(
                "service `{name}` exited with {} before it was ready",
                state.exit_code.unwrap_or_default()
            ));
        }
        let Some(health) = state.health else {
            return Ok(());
        };
        match health.status {
            None
            | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY | HealthStatusEnum::HEALTHY) => {
                return Ok(());
            }
            Some(HealthStatusEnum::UNHEALTHY) => {
                let last = health
                    .log
                    .and_then(|l| l.last().and_then(|r| r.output.clone()))
                    .unwrap_or_default();
                return Err(format!("service `{name}` is unhealthy: {}", last.trim()));
            }
            Some(HealthStatusEnum::STARTING) => {
                if !told {
                    output
                        .line(
                            Stream::Stdout,
                            &format!("waiting for service `{name}` to be healthy"),
                        )
                        .await;
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Removes a stage's container, then its workspace volume.
async fn remove_created(docker: &Docker, id: &str, volume: Option<String>) {
    remove(docker, id).await;
    if let Some(v) = volume {
        let _ = docker.remove_volume(&v, None::<RemoveVolumeOptions>).await;
    }
}

/// Removes a container and its anonymous volumes.
async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let _ = docker.remove_container(id, Some(options)).await;
}

/// The volume a `cache` path lives in: one per pipeline and path, kept
/// across runs.
pub fn cache_volume(pipeline: &str, path: &str) -> String {
    // FNV-1a: stable across runs and versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("slipway-cache-{}-{h:016x}", sanitize(pipeline))
}

/// Whether `image` can be used without a pull: known this run, or on the
/// engine when `--pull` does not ask for a fresh copy.
async fn image_settled(docker: &Docker, image: &str, shared: &Shared) -> bool {
    if shared.images.lock().is_ok_and(|i| i.contains(image)) {
        return true;
    }
    if shared.pull == Pull::Always || docker.inspect_image(image).await.is_err() {
        return false;
    }
    if let Ok(mut images) = shared.images.lock() {
        images.insert(image.to_string());
    }
    true
}

/// Creates and starts the container of a `run` stage, its script behind
/// the gate, attached.
async fn start_stage(
    docker: &Docker,
    job: &Job,
    labels: HashMap<String, String>,
    network: String,
    script: String,
    image: String,
    shared: &Shared,
) -> Result<Created, String> {
    let nonce = nonce();
    let (id, volume) =
        create_stage(docker, job, labels, network, script, image, shared, &nonce).await?;
    match start_gated(docker, &id, nonce).await {
        Ok(gate) => Ok(Created { id, volume, gate }),
        Err(e) => {
            remove_created(docker, &id, volume).await;
            Err(e)
        }
    }
}

/// Creates (does not start) the container of a `run` stage, with its view
/// of the workspace, its caches, env and labels, its script behind
/// [`GATE`] with standard input open. Gives its id and workspace volume.
#[allow(clippy::too_many_arguments)]
async fn create_stage(
    docker: &Docker,
    job: &Job,
    labels: HashMap<String, String>,
    network: String,
    script: String,
    image: String,
    shared: &Shared,
    nonce: &str,
) -> Result<(String, Option<String>), String> {
    let workspace = std::fs::canonicalize(&job.workspace).map_err(|e| {
        format!(
            "cannot use the workspace `{}`: {e}",
            job.workspace.display()
        )
    })?;
    let pipeline = labels
        .get("dev.slipway.pipeline")
        .cloned()
        .unwrap_or_default();
    // Unique per container: a retry or a matrix cell never shares a name.
    let name = format!(
        "slipway-{}-{}-{}",
        sanitize(&job.stage.name),
        job.attempt,
        jiff::Timestamp::now().as_microsecond()
    );
    let volume = match shared.mode {
        WorkspaceMode::Isolated => {
            Some(overlay_volume(docker, &workspace, &name, &labels, &shared.scratch).await?)
        }
        WorkspaceMode::Shared => None,
    };
    let mut binds = vec![format!(
        "{}:{WORKSPACE}",
        volume
            .clone()
            .unwrap_or_else(|| workspace.display().to_string())
    )];
    for path in &job.stage.caches {
        let target = if path.starts_with('/') {
            path.clone()
        } else {
            format!("{WORKSPACE}/{}", path.trim_start_matches("./"))
        };
        binds.push(format!("{}:{target}", cache_volume(&pipeline, path)));
    }
    // The script is not secret; secrets reach it only through the env.
    let cmd = vec![
        "sh".into(),
        "-c".into(),
        GATE.into(),
        "sh".into(),
        script,
        nonce.into(),
    ];
    let body = ContainerCreateBody {
        image: Some(image),
        cmd: Some(cmd),
        // Standard input, for the gate; closed once it is open (stdin_once).
        open_stdin: Some(true),
        stdin_once: Some(true),
        attach_stdin: Some(true),
        env: Some(job.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: Some(WORKSPACE.into()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some(network),
            ..Default::default()
        }),
        ..Default::default()
    };
    match docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
    {
        Ok(c) => Ok((c.id, volume)),
        Err(e) => {
            if let Some(v) = &volume {
                let _ = docker.remove_volume(v, None::<RemoveVolumeOptions>).await;
            }
            Err(format!("cannot create the container: {e}"))
        }
    }
}

/// A volume that shows the project read-only with a writable layer of its
/// own on top (overlayfs through the `local` driver), so that a container
/// can write anywhere in its workspace without touching the project or
/// another container's files.
async fn overlay_volume(
    docker: &Docker,
    workspace: &Path,
    name: &str,
    labels: &HashMap<String, String>,
    scratch: &Path,
) -> Result<String, String> {
    let lower = workspace.display().to_string();
    // overlayfs splits its options on `,` and its lower dirs on `:`.
    if lower.contains([',', ':']) {
        return Err(format!(
            "the workspace path `{lower}` contains `,` or `:`, which an overlay mount cannot take; run with `--workspace shared`"
        ));
    }
    let dir = scratch.join(name);
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir_all(d)
            .map_err(|e| format!("cannot create `{}` for the workspace: {e}", d.display()))?;
    }
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some("local".into()),
            driver_opts: Some(HashMap::from([
                ("type".to_string(), "overlay".to_string()),
                ("device".to_string(), "overlay".to_string()),
                ("o".to_string(), options),
            ])),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create the workspace volume: {e}"))?;
    Ok(name.to_string())
}

/// A fresh end-of-script marker: random, so that no output can pass for it
/// (the clock, should the system's generator fail).
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = jiff::Timestamp::now().as_nanosecond().to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("slipway-end-{hex}")
}

/// Attaches to a gated container's standard streams, then starts it: its
/// script waits until [`open_gate`].
async fn start_gated(docker: &Docker, id: &str, nonce: String) -> Result<Gate, String> {
    let options = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .build();
    let attached = docker
        .attach_container(id, Some(options))
        .await
        .map_err(|e| format!("cannot attach to the container: {e}"))?;
    docker
        .start_container(id, None)
        .await
        .map_err(|e| format!("cannot start the container: {e}"))?;
    Ok(Gate {
        input: attached.input,
        output: attached.output,
        nonce,
    })
}

/// Lets a gated container's script run, and closes its standard input.
async fn open_gate(input: &mut Pin<Box<dyn AsyncWrite + Send>>) -> Result<(), String> {
    input
        .write_all(b"\n")
        .await
        .and(input.flush().await)
        .map_err(|e| format!("cannot start the stage's script: {e}"))?;
    let _ = input.shutdown().await;
    Ok(())
}

/// Copies the artifacts in, runs the script to its end, and copies its own
/// artifacts out when it succeeded.
#[allow(clippy::too_many_arguments)]
async fn run_stage(
    docker: &Docker,
    created: Created,
    job: &Job,
    output: &Output,
    cancel: &CancellationToken,
    run_id: &str,
    background: Option<Shared>,
    starting: Starting,
) -> Outcome {
    let store = job
        .workspace
        .join(".slipway")
        .join("runs")
        .join(run_id)
        .join("artifacts");
    let Created { id, volume, gate } = created;
    let mut outcome = match super::artifacts::put(docker, &id, &store, &job.inputs).await {
        Ok(()) => supervise(docker, &id, gate, job, output, cancel, starting).await,
        Err(e) => Outcome::Error(e),
    };
    if outcome == Outcome::Exited(0) {
        if let Err(e) = super::artifacts::take(
            docker,
            &id,
            &store.join(super::artifacts::dir_name(&job.stage.name)),
            &job.stage.artifacts,
        )
        .await
        {
            outcome = Outcome::Error(e);
        }
    }
    match background {
        Some(shared) => shared.remove_later(docker, id, volume).await,
        None => remove_created(docker, &id, volume).await,
    }
    outcome
}

/// Opens a started container's gate and follows its script to the end:
/// the gate's word, the container's exit, the timeout or cancellation.
async fn supervise(
    docker: &Docker,
    id: &str,
    mut gate: Gate,
    job: &Job,
    output: &Output,
    cancel: &CancellationToken,
    starting: Starting,
) -> Outcome {
    let begun = open_gate(&mut gate.input).await;
    drop(starting);
    if let Err(e) = begun {
        return Outcome::Error(e);
    }
    // The script's status, when the gate reports it.
    let (ended, reported) = tokio::sync::oneshot::channel();
    let logs = {
        let output = output.clone();
        tokio::spawn(async move { stream_output(gate.output, &gate.nonce, &output, ended).await })
    };
    let reported = async {
        match reported.await {
            Ok(code) => Outcome::Exited(code),
            Err(_) => std::future::pending().await,
        }
    };
    let deadline = async {
        match job.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let wait = async {
        let mut stream = docker.wait_container(
            id,
            Some(
                WaitContainerOptionsBuilder::default()
                    .condition("not-running")
                    .build(),
            ),
        );
        match stream.next().await {
            Some(Ok(r)) => Outcome::Exited(i32::try_from(r.status_code).unwrap_or(1)),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Outcome::Exited(i32::try_from(code).unwrap_or(1))
            }
            Some(Err(e)) => Outcome::Error(format!("waiting for the container failed: {e}")),
            None => Outcome::Error("the engine stopped answering".into()),
        }
    };
    let outcome = tokio::select! {
        o = reported => o,
        o = wait => o,
        () = deadline => { kill(docker, id).await; Outcome::TimedOut }
        () = cancel.cancelled() => { kill(docker, id).await; Outcome::Cancelled }
    };
    // Logs end when the container does; do not wait long for a stuck stream.
    let _ = tokio::time::timeout(Duration::from_secs(5), logs).await;
    outcome
}

async fn kill(docker: &Docker, id: &str) {
    let _ = docker
        .kill_container(
            id,
            Some(
                KillContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .build(),
            ),
        )
        .await;
}

/// Streams a container's output line by line as it comes, from its
/// attached streams. The gate's end marker is taken out of the output;
/// once it has come on both streams, the script's status goes to `ended`.
async fn stream_output(
    mut logs: LogStream,
    nonce: &str,
    output: &Output,
    ended: tokio::sync::oneshot::Sender<i32>,
) {
    let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    // The status each stream's end marker gave.
    let mut marked: [Option<i32>; 2] = [None, None];
    while let Some(Ok(chunk)) = logs.next().await {
        let (which, kind, bytes) = match chunk {
            bollard::container::LogOutput::StdErr { message } => (1, Stream::Stderr, message),
            bollard::container::LogOutput::StdOut { message }
            | bollard::container::LogOutput::Console { message } => (0, Stream::Stdout, message),
            bollard::container::LogOutput::StdIn { .. } => continue,
        };
        let buf = &mut pending[which];
        buf.extend_from_slice(&bytes);
        while let Some(n) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=n).collect();
            let text = String::from_utf8_lossy(&line);
            let mut shown = text.as_ref();
            if let Some(at) = text.find(nonce) {
                let status = text[at..].split_whitespace().nth(1).map(str::parse::<i32>);
                if let Some(Ok(status)) = status {
                    marked[which] = Some(status);
                    // What the script wrote without a final line break.
                    shown = &text[..at];
                    if shown.is_empty() {
                        continue;
                    }
                }
            }
            output.line(kind, shown).await;
        }
        if let [Some(status), Some(_)] = marked {
            let _ = ended.send(status);
            return;
        }
    }
    for (which, kind) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
        if !pending[which].is_empty() {
            output
                .line(kind, &String::from_utf8_lossy(&pending[which]))
                .await;
        }
    }
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
