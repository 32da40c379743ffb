//! A stage's `cache` paths on a cluster: one PersistentVolumeClaim per
//! pipeline and path (named as the Docker backend names its volume), made
//! when missing and kept across runs, mounted at the path. A claim that
//! does not bind (no StorageClass provisions it) is not waited for: the
//! stage runs with an empty folder there, and says so.

use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;

use super::Inner;
use crate::run::backend::Job;

/// How long a new claim may take to bind before the stage goes without it
/// (one that was there before and is not bound is not waited for).
const BIND_LIMIT: Duration = Duration::from_secs(10);

/// One `cache` path of a stage, as its Pod mounts it.
pub(super) struct Claim {
    /// Where it is mounted.
    pub(super) path: String,
    /// The bound claim; `None`: an empty folder.
    pub(super) claim: Option<String>,
    /// Why the cache is not kept, when it is not.
    pub(super) warning: Option<String>,
}

/// The claim of each of `job`'s caches, made if missing; each is checked
/// once a run.
pub(super) async fn claims(inner: &Inner, job: &Job) -> Vec<Claim> {
    let mut out = Vec::new();
    for path in &job.stage.caches {
        let name = claim_name(&job.context.pipeline, path);
        let bound = {
            let known = inner.claims.lock().await.get(&name).cloned();
            match known {
                Some(b) => b,
                None => {
                    let b = bind(inner, &name, &job.context.pipeline, path).await;
                    inner.claims.lock().await.insert(name.clone(), b.clone());
                    b
                }
            }
        };
        let path = crate::run::artifacts::in_container(path);
        out.push(match bound {
            Ok(()) => Claim {
                path,
                claim: Some(name),
                warning: None,
            },
            Err(why) => Claim {
                warning: Some(format!(
                    "cache `{path}` is not kept: {why}; the stage runs with an empty folder there"
                )),
                path,
                claim: None,
            },
        });
    }
    out
}

/// The claim of `pipeline`'s cache at `path`: a DNS name.
fn claim_name(pipeline: &str, path: &str) -> String {
    let name = crate::run::docker::cache_volume(pipeline, path)
        .to_lowercase()
        .replace(['_', '.'], "-");
    let mut name = name.trim_matches('-').to_string();
    name.truncate(253);
    name
}

/// Makes the claim when it is missing, and waits a moment for it to bind.
async fn bind(inner: &Inner, name: &str, pipeline: &str, path: &str) -> Result<(), String> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(inner.client.clone(), &inner.namespace);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| format!("its claim `{name}` cannot be read ({e})"))?;
    let phase = |c: &PersistentVolumeClaim| {
        c.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    match &found {
        Some(c) if phase(c) == "Bound" => return Ok(()),
        // Made by an earlier run, and still not bound: not waited for again.
        Some(c) => {
            return Err(format!(
                "its claim `{name}` is not bound ({}; does a StorageClass provision it?)",
                phase(c)
            ));
        }
        None => {}
    }
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            // Not a run's: `slipway gc` keeps it.
            "labels": { "dev.slipway.cache": "true" },
            "annotations": {
                "slipway.dev/pipeline": pipeline,
                "slipway.dev/cache": path,
            },
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": "1Gi" } },
        },
    }))
    .map_err(|e| e.to_string())?;
    match api.create(&PostParams::default(), &claim).await {
        Ok(_) => {}
        // Made meanwhile by another run.
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(format!("its claim `{name}` cannot be made ({e})")),
    }
    let bound = |c: Option<&PersistentVolumeClaim>| {
        c.and_then(|c| c.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Bound")
    };
    match tokio::time::timeout(BIND_LIMIT, await_condition(api, name, bound)).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err(format!("its claim `{name}` was deleted")),
        Ok(Err(e)) => Err(format!("its claim `{name}` cannot be watched ({e})")),
        Err(_) => Err(format!(
            "its claim `{name}` is not bound after {} s (does a StorageClass provision it?)",
            BIND_LIMIT.as_secs()
        )),
    }
}
