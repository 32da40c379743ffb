//! A `run` stage's container and its gate.
//!
//! The container is created *and started* with its script behind a gate
//! that waits for a line on its standard input; its standard streams are
//! attached before it starts. Opening the gate runs the script; after it,
//! the gate writes `NONCE STATUS` on both output streams, so slipway knows
//! the script ended (and has every line before it) sooner than the engine
//! reports the container's exit.

use std::pin::Pin;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, UploadToContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures_util::StreamExt as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::engine::{failure, stage};
use super::logs::{LogStream, stream_output};
use super::workspace::{cache_bind, overlay_volume};
use super::{Attempt, Starting, WORKSPACE, WorkspaceMode, sanitize};
use crate::run::artifacts::in_container;
use crate::run::backend::{Failure, FailureKind, Outcome, Output};

/// A stage's container, started with its script waiting behind the gate.
pub(super) struct Created {
    pub(super) id: String,
    /// The overlay volume holding its view of the workspace.
    pub(super) volume: Option<String>,
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

/// Creates and starts the container of a `run` stage, its script behind
/// the gate, attached.
pub(super) async fn start(
    attempt: &Attempt,
    script: &str,
    image: &str,
) -> Result<Created, Failure> {
    let nonce = crate::run::gate::nonce();
    let (id, volume) = create(attempt, script, image, &nonce).await?;
    match start_gated(&attempt.docker, &id, nonce).await {
        Ok(gate) => Ok(Created { id, volume, gate }),
        Err(e) => {
            remove_created(&attempt.docker, &id, volume).await;
            Err(e)
        }
    }
}

/// Creates (does not start) the container of a `run` stage, with its view
/// of the workspace, its caches, env and labels, its script behind
/// the gate (`run::gate`) with standard input open. Gives its id and workspace volume.
async fn create(
    attempt: &Attempt,
    script: &str,
    image: &str,
    nonce: &str,
) -> Result<(String, Option<String>), Failure> {
    let docker = &attempt.docker;
    let job = &attempt.job;
    let workspace = std::fs::canonicalize(&job.context.workspace).map_err(|e| {
        stage(format!(
            "cannot use the workspace `{}`: {e}",
            job.context.workspace.display()
        ))
    })?;
    // Unique per container: a retry or a matrix cell never shares a name.
    let name = format!(
        "slipway-{}-{}-{}",
        sanitize(&job.stage.name),
        job.attempt,
        jiff::Timestamp::now().as_microsecond()
    );
    let shared = &attempt.shared;
    let volume = match shared.mode {
        WorkspaceMode::Isolated => {
            Some(overlay_volume(docker, &workspace, &name, &attempt.labels, &shared.scratch).await?)
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
        binds.push(cache_bind(&job.context.pipeline, path));
    }
    // The script is not secret; secrets reach it only through the env.
    let cmd = crate::run::gate::command(script, nonce);
    let resources = job.stage.resources.as_ref();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        // Standard input, for the gate; closed once it is open (stdin_once).
        open_stdin: Some(true),
        stdin_once: Some(true),
        attach_stdin: Some(true),
        env: Some(job.env_pairs().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: Some(WORKSPACE.into()),
        labels: Some(attempt.labels.clone()),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some(attempt.network.clone()),
            // `resources`: the container's limits (checked when planned).
            nano_cpus: resources
                .and_then(|r| r.cpu.as_deref())
                .and_then(|q| crate::plan::resources::cpu_nanos(q).ok()),
            memory: resources
                .and_then(|r| r.memory.as_deref())
                .and_then(|q| crate::plan::resources::memory_bytes(q).ok()),
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
            Err(failure("cannot create the container", &e))
        }
    }
}

/// Attaches to a gated container's standard streams, then starts it: its
/// script waits until [`open_gate`].
async fn start_gated(docker: &Docker, id: &str, nonce: String) -> Result<Gate, Failure> {
    let options = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .build();
    let attached = docker
        .attach_container(id, Some(options))
        .await
        .map_err(|e| failure("cannot attach to the container", &e))?;
    docker
        .start_container(id, None)
        .await
        .map_err(|e| failure("cannot start the container", &e))?;
    Ok(Gate {
        input: attached.input,
        output: attached.output,
        nonce,
    })
}

/// Lets a gated container's script run, and closes its standard input.
async fn open_gate(input: &mut Pin<Box<dyn AsyncWrite + Send>>) -> Result<(), Failure> {
    input
        .write_all(b"\n")
        .await
        .and(input.flush().await)
        .map_err(|e| Failure {
            kind: FailureKind::Infrastructure,
            message: format!("cannot start the stage's script: {e}"),
        })?;
    let _ = input.shutdown().await;
    Ok(())
}

/// Copies the artifacts in, runs the script to its end, and copies its own
/// artifacts out when it succeeded. The container is removed in the
/// background when `background` (the attempt's network outlives it).
pub(super) async fn run(
    attempt: &Attempt,
    created: Created,
    output: &Output,
    cancel: &CancellationToken,
    background: bool,
    starting: Starting,
) -> Outcome {
    let docker = &attempt.docker;
    let Created { id, volume, gate } = created;
    let mut outcome = match put_artifacts(attempt, &id).await {
        Ok(()) => supervise(docker, &id, gate, output, cancel, starting).await,
        Err(f) => Outcome::Failed(f),
    };
    if outcome == Outcome::Exited(0) {
        if let Err(f) = take_artifacts(attempt, &id).await {
            outcome = Outcome::Failed(f);
        }
    }
    if background {
        attempt.shared.remove_later(docker, id, volume);
    } else {
        remove_created(docker, &id, volume).await;
    }
    outcome
}

/// Opens a started container's gate and follows its script to the end:
/// the gate's word, the container's exit, or cancellation.
async fn supervise(
    docker: &Docker,
    id: &str,
    mut gate: Gate,
    output: &Output,
    cancel: &CancellationToken,
    starting: Starting,
) -> Outcome {
    let begun = open_gate(&mut gate.input).await;
    drop(starting);
    if let Err(f) = begun {
        return Outcome::Failed(f);
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
            Some(Err(e)) => Outcome::Failed(match super::engine::kind(&e) {
                FailureKind::Infrastructure => Failure {
                    kind: FailureKind::Infrastructure,
                    message: format!(
                        "the Docker engine stopped answering while the stage ran ({e})"
                    ),
                },
                _ => failure("waiting for the container failed", &e),
            }),
            None => Outcome::infrastructure("the engine stopped answering"),
        }
    };
    let outcome = tokio::select! {
        o = reported => o,
        o = wait => o,
        () = cancel.cancelled() => { kill(docker, id).await; Outcome::Cancelled }
    };
    // Logs end when the container does; do not wait long for a stuck stream.
    let _ = tokio::time::timeout(Duration::from_secs(5), logs).await;
    match outcome {
        // Killed by the kernel for memory: say so rather than "exited with 137".
        Outcome::Exited(137) if oom_killed(docker, id).await => Outcome::failed(
            FailureKind::OomKilled,
            "killed: the container ran out of memory (exit 137)",
        ),
        o => o,
    }
}

async fn oom_killed(docker: &Docker, id: &str) -> bool {
    docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.oom_killed)
        .unwrap_or(false)
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

/// Copies earlier stages' artifacts into the container before its script
/// runs, each at the path its stage declared.
async fn put_artifacts(attempt: &Attempt, id: &str) -> Result<(), Failure> {
    let store = &attempt.job.context.artifacts;
    for key in &attempt.job.inputs {
        let Some(tar) = store.get(key) else {
            // The stage did not run in this run (a target was chosen).
            continue;
        };
        let target = in_container(&key.path);
        let parent = std::path::Path::new(&target)
            .parent()
            .map_or("/".to_string(), |p| p.display().to_string());
        let options = UploadToContainerOptionsBuilder::default()
            .path(&parent)
            .build();
        attempt
            .docker
            .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(|e| {
                failure(
                    format_args!("cannot copy artifact `{}` of `{}` in", key.path, key.stage),
                    &e,
                )
            })?;
    }
    Ok(())
}

/// Copies a finished stage's artifacts out of its container into the store.
async fn take_artifacts(attempt: &Attempt, id: &str) -> Result<(), Failure> {
    for key in &attempt.job.outputs {
        let source = in_container(&key.path);
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(&source)
            .build();
        let mut stream = attempt.docker.download_from_container(id, Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Failure {
                kind: super::engine::kind(&e),
                message: format!("artifact `{}` was not produced ({e})", key.path),
            })?;
            tar.extend_from_slice(&chunk);
        }
        attempt
            .job
            .context
            .artifacts
            .put(key, &tar)
            .map_err(stage)?;
    }
    Ok(())
}

/// Removes a stage's container, then its workspace volume.
pub(super) async fn remove_created(docker: &Docker, id: &str, volume: Option<String>) {
    remove(docker, id).await;
    if let Some(v) = volume {
        let _ = docker.remove_volume(&v, None::<RemoveVolumeOptions>).await;
    }
}

/// Removes a container and its anonymous volumes.
pub(super) async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let _ = docker.remove_container(id, Some(options)).await;
}
