//! A stage's services: containers on the stage's own network, reachable by
//! their names, each waited for until it is ready.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};

use super::container::remove;
use super::engine::{ensure_image, failure};
use super::{Attempt, Env};
use crate::plan::PlannedService;
use crate::run::backend::{Failure, Output};
use crate::run::events::Stream;

/// How long a stage waits for its services to be ready; its own `timeout`,
/// which the scheduler holds, may end it sooner.
pub(super) const READY_LIMIT: Duration = Duration::from_secs(120);

/// Starts a service container, reachable on the attempt's network by its
/// name.
pub(super) async fn start(
    attempt: &Attempt,
    svc: &PlannedService,
    env: &Env,
    output: &Output,
) -> Result<String, Failure> {
    let docker = &attempt.docker;
    ensure_image(docker, &svc.image, &attempt.shared, output)
        .await
        .map_err(|f| Failure {
            message: format!("service `{}`: {}", svc.name, f.message),
            ..f
        })?;
    let mut labels = attempt.labels.clone();
    labels.insert("dev.slipway.service".into(), svc.name.clone());
    let network = attempt.network.clone();
    let body = ContainerCreateBody {
        image: Some(svc.image.clone()),
        env: Some(
            env.iter()
                .map(|(k, v)| format!("{k}={}", v.value()))
                .collect(),
        ),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(network.clone()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network,
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
        .map_err(|e| {
            failure(
                format_args!("service `{}`: cannot create its container", svc.name),
                &e,
            )
        })?;
    if let Err(e) = docker.start_container(&created.id, None).await {
        remove(docker, &created.id).await;
        return Err(failure(
            format_args!("service `{}`: cannot start", svc.name),
            &e,
        ));
    }
    Ok(created.id)
}

/// Waits until a service is ready, within `limit`: until its `ready`
/// command succeeds in its container, when it has one; else until it is
/// healthy, when its image declares a `HEALTHCHECK`; else until it runs. A
/// service that exits, or turns unhealthy, fails the stage with what its
/// check last said.
pub(super) async fn ready(
    attempt: &Attempt,
    svc: &PlannedService,
    id: &str,
    output: &Output,
    limit: Duration,
) -> Result<(), Failure> {
    let name = &svc.name;
    let deadline = tokio::time::Instant::now() + limit;
    let mut told = false;
    // What the `ready` command last printed.
    let mut last = String::new();
    loop {
        let state = running(attempt, name, id).await?;
        let verdict = match &svc.ready {
            Some(command) => {
                let (ok, said) = check(attempt, name, id, command).await?;
                last = said;
                ok.then_some(Ok(()))
            }
            None => by_healthcheck(name, state),
        };
        if let Some(verdict) = verdict {
            return verdict;
        }
        if tokio::time::Instant::now() >= deadline {
            let why = if last.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", last.trim())
            };
            return Err(super::engine::stage(format!(
                "service `{name}` was not {} after {}{why}",
                if svc.ready.is_some() {
                    "ready"
                } else {
                    "healthy"
                },
                humantime::format_duration(limit)
            )));
        }
        if !told {
            let line = match &svc.ready {
                Some(command) => format!("waiting for service `{name}` to be ready (`{command}`)"),
                None => format!("waiting for service `{name}` to be healthy"),
            };
            output.line(Stream::Stdout, &line).await;
            told = true;
        }
        let pause = if svc.ready.is_some() { 250 } else { 200 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// The service's container state; an error when it no longer runs.
async fn running(
    attempt: &Attempt,
    name: &str,
    id: &str,
) -> Result<bollard::models::ContainerState, Failure> {
    let info = attempt
        .docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(|e| {
            failure(
                format_args!("service `{name}`: cannot inspect its container"),
                &e,
            )
        })?;
    let state = info.state.unwrap_or_default();
    if state.running != Some(true) {
        return Err(super::engine::stage(format!(
            "service `{name}` exited with {} before it was ready",
            state.exit_code.unwrap_or_default()
        )));
    }
    Ok(state)
}

/// Runs the `ready` command once in the service's container (`sh -c`):
/// whether it succeeded, and the end of what it printed.
async fn check(
    attempt: &Attempt,
    name: &str,
    id: &str,
    command: &str,
) -> Result<(bool, String), Failure> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures_util::StreamExt as _;
    let docker = &attempt.docker;
    let exec = docker
        .create_exec(
            id,
            CreateExecOptions {
                cmd: Some(vec!["sh", "-c", command]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            failure(
                format_args!("service `{name}`: cannot run its `ready` check"),
                &e,
            )
        })?;
    let mut said = Vec::new();
    if let Ok(StartExecResults::Attached { mut output, .. }) =
        docker.start_exec(&exec.id, None).await
    {
        while let Some(Ok(chunk)) = output.next().await {
            said.extend_from_slice(&chunk.into_bytes());
            // Only the end is shown.
            if said.len() > 4096 {
                said.drain(..said.len() - 4096);
            }
        }
    }
    let code = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(|e| {
            failure(
                format_args!("service `{name}`: cannot read its `ready` check"),
                &e,
            )
        })?
        .exit_code;
    let said = String::from_utf8_lossy(&said);
    let tail: Vec<&str> = said.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Ok((code == Some(0), tail.join(" / ")))
}

/// Readiness as the image's `HEALTHCHECK` tells: `None` while it is still
/// starting.
fn by_healthcheck(
    name: &str,
    state: bollard::models::ContainerState,
) -> Option<Result<(), Failure>> {
    use bollard::models::HealthStatusEnum;
    let Some(health) = state.health else {
        return Some(Ok(()));
    };
    match health.status {
        None
        | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY | HealthStatusEnum::HEALTHY) => {
            Some(Ok(()))
        }
        Some(HealthStatusEnum::UNHEALTHY) => {
            let last = health
                .log
                .and_then(|l| l.last().and_then(|r| r.output.clone()))
                .unwrap_or_default();
            Some(Err(super::engine::stage(format!(
                "service `{name}` is unhealthy: {}",
                last.trim()
            ))))
        }
        Some(HealthStatusEnum::STARTING) => None,
    }
}
