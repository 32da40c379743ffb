//! What runs on a cluster left behind when they ended without cleaning up
//! (killed with SIGKILL, their machine gone): Pods, the run's Secret, its
//! Lease, all labelled with the run's id. A run is over when its Lease
//! (see `lease`) is no longer renewed, or is gone; runs still going are
//! not touched, whichever machine drives them.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::NamespaceResourceScope;

use super::{RUN_LABEL, lease};
use crate::release::apply::ApiError;

/// What one ended run left on the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub run: String,
    pub namespace: String,
    pub pipeline: Option<String>,
    pub pods: Vec<String>,
    pub secrets: Vec<String>,
    pub leases: Vec<String>,
}

/// Finds what runs that are over left in `namespace` (else in every
/// namespace the account may list, else in the context's), and deletes it
/// unless `dry_run`.
pub async fn collect(
    context: Option<&str>,
    namespace: Option<&str>,
    dry_run: bool,
) -> Result<Vec<Leftovers>, ApiError> {
    let client = crate::release::client::connect(context).await?;
    let params = ListParams::default().labels(RUN_LABEL);
    let mut runs: BTreeMap<(String, String), Leftovers> = BTreeMap::new();
    let mut held = std::collections::BTreeSet::new();
    let now = jiff::Timestamp::now();
    let scope = match namespace {
        Some(ns) => Some(ns.to_string()),
        None => {
            // Every namespace, if the account may list them all.
            let all: Api<Pod> = Api::all(client.clone());
            match all.list(&params.clone().limit(1)).await {
                Ok(_) => None,
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    Some(client.default_namespace().to_string())
                }
                Err(e) => return Err(ApiError::from_kube("cannot list Pods", e)),
            }
        }
    };
    for p in list::<Pod>(&client, scope.as_deref(), &params).await? {
        if let Some((e, name)) = entry(&mut runs, &p.metadata) {
            e.pods.push(name);
        }
    }
    for s in list::<Secret>(&client, scope.as_deref(), &params).await? {
        if let Some((e, name)) = entry(&mut runs, &s.metadata) {
            e.secrets.push(name);
        }
    }
    for l in list::<Lease>(&client, scope.as_deref(), &params).await? {
        let going = lease::held(&l, now);
        if let Some((e, name)) = entry(&mut runs, &l.metadata) {
            if going {
                held.insert((e.namespace.clone(), e.run.clone()));
            }
            e.pipeline = l
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("slipway.dev/pipeline").cloned());
            e.leases.push(name);
        }
    }
    let over: Vec<Leftovers> = runs
        .into_iter()
        .filter(|(key, _)| !held.contains(key))
        .map(|(_, l)| l)
        .collect();
    if !dry_run {
        for l in &over {
            delete::<Pod>(&client, &l.namespace, &l.pods, true).await?;
            delete::<Secret>(&client, &l.namespace, &l.secrets, false).await?;
            delete::<Lease>(&client, &l.namespace, &l.leases, false).await?;
        }
    }
    Ok(over)
}

async fn list<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Vec<K>, ApiError>
where
    K: kube::Resource<Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let kind = K::kind(&K::DynamicType::default()).to_string();
    api.list(params)
        .await
        .map(|l| l.items)
        .map_err(|e| ApiError::from_kube(&format!("cannot list {kind}s"), e))
}

async fn delete<K>(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
    at_once: bool,
) -> Result<(), ApiError>
where
    K: kube::Resource<Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = if at_once {
        DeleteParams::default().grace_period(0)
    } else {
        DeleteParams::default()
    };
    let kind = K::kind(&K::DynamicType::default()).to_string();
    for name in names {
        match api.delete(name, &params).await {
            Ok(_) => {}
            // Gone meanwhile.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(ApiError::from_kube(
                    &format!("cannot delete {kind} `{name}` in `{namespace}`"),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// The entry of the run an object belongs to, and the object's name.
fn entry<'a>(
    runs: &'a mut BTreeMap<(String, String), Leftovers>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<(&'a mut Leftovers, String)> {
    let run = meta.labels.as_ref()?.get(RUN_LABEL)?.clone();
    let namespace = meta.namespace.clone()?;
    let name = meta.name.clone()?;
    // Already on its way out.
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let e = runs
        .entry((namespace.clone(), run.clone()))
        .or_insert_with(|| Leftovers {
            run,
            namespace,
            ..Default::default()
        });
    Some((e, name))
}
