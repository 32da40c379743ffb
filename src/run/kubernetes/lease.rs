//! A run's Lease: how `slipway gc` tells a run still going from one that
//! ended without cleaning up (killed with SIGKILL, its machine gone).
//! Runs on a cluster are driven from many machines, so no process table
//! can say; instead each run holds a `coordination.k8s.io` Lease named
//! after it, labelled with its id, and renews it every [`RENEW`]. A run
//! whose Lease was not renewed for [`LEASE_SECONDS`], or that has none, is
//! over, and what carries its label can go. On the machine that took it,
//! a Lease is held exactly while its `slipway` process runs.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use super::RUN_LABEL;

/// How long a Lease holds without renewal.
pub(super) const LEASE_SECONDS: i32 = 60;
/// How often a run renews its Lease.
const RENEW: Duration = Duration::from_secs(15);

/// The Lease of run `run`.
pub(super) fn name(run: &str) -> String {
    format!("slipway-{run}")
}

/// Takes the run's Lease, and renews it until the returned task is
/// aborted.
pub(super) async fn hold(
    client: kube::Client,
    namespace: &str,
    run: &str,
    pipeline: &str,
) -> Result<tokio::task::JoinHandle<()>, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let holder = format!("{}:{}", host(), std::process::id());
    renew(&api, run, pipeline, &holder).await?;
    let (run, pipeline) = (run.to_string(), pipeline.to_string());
    Ok(tokio::spawn(async move {
        loop {
            tokio::time::sleep(RENEW).await;
            // A missed renewal is tried again at the next; gc waits for
            // several to be missed.
            let _ = renew(&api, &run, &pipeline, &holder).await;
        }
    }))
}

async fn renew(
    api: &Api<Lease>,
    run: &str,
    pipeline: &str,
    holder: &str,
) -> Result<(), kube::Error> {
    let now = jiff::Timestamp::now();
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name(run),
            "labels": { RUN_LABEL: run },
            "annotations": { "slipway.dev/pipeline": pipeline },
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        },
    }))
    .map_err(kube::Error::SerdeError)?;
    api.patch(
        &name(run),
        &PatchParams::apply("slipway").force(),
        &Patch::Apply(&lease),
    )
    .await?;
    Ok(())
}

/// Gives the run's Lease up.
pub(super) async fn release(client: kube::Client, namespace: &str, run: &str) {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let _ = api.delete(&name(run), &DeleteParams::default()).await;
}

/// Whether `lease` is held: when it was taken on this machine, while its
/// process runs; else renewed within its duration of `now`.
pub(super) fn held(lease: &Lease, now: jiff::Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    if let Some((host_, pid)) = spec
        .holder_identity
        .as_deref()
        .and_then(|h| h.rsplit_once(':'))
        && host_ == host()
    {
        return crate::run::docker::gc::slipway_runs(pid);
    }
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return false;
    };
    renewed.0 + jiff::SignedDuration::from_secs(i64::from(seconds)) > now
}

fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
