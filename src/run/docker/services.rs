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

/// Waits until a service is ready: healthy, when its image declares a
/// `HEALTHCHECK`; running, otherwise. A service that exits or turns
/// unhealthy fails the stage with what its healthcheck last said.
pub(super) async fn ready(
    attempt: &Attempt,
    name: &str,
    id: &str,
    output: &Output,
) -> Result<(), Failure> {
    use bollard::models::HealthStatusEnum;
    let mut told = false;
    loop {
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
                return Err(super::engine::stage(format!(
                    "service `{name}` is unhealthy: {}",
                    last.trim()
                )));
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
