//! Talking to the API server about objects of any kind: discovery (one
//! group-version at a time, cached), server-side apply with the field
//! manager `slipway`, reads, deletes.

use std::collections::HashMap;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use super::render::Object;
use super::store::Item;

pub const MANAGER: &str = "slipway";

/// Why a call failed; `Unreachable` means the API server did not answer
/// (exit 3), the rest are the release's own failures.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Failed(String),
}

impl ApiError {
    /// Sorts a kube error: transport problems are the cluster's, API
    /// answers are the release's.
    pub fn from_kube(context: &str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => {
                ApiError::Failed(format!("{context}: {} ({})", status.message, status.code))
            }
            kube::Error::Discovery(d) => ApiError::Failed(format!("{context}: {d}")),
            other => ApiError::Unreachable(format!(
                "{context}: the Kubernetes API did not answer ({other})"
            )),
        }
    }
}

/// Resources found by discovery, by group/version/kind.
#[derive(Default)]
pub struct Kinds {
    found: HashMap<(String, String), (ApiResource, ApiCapabilities)>,
}

impl Kinds {
    pub async fn resolve(
        &mut self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ApiError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.found.get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(|e| match e {
                kube::Error::Discovery(_) | kube::Error::Api(_) => ApiError::Failed(format!(
                    "the cluster does not know `{kind}` in `{api_version}`"
                )),
                other => ApiError::from_kube(&format!("discovering `{kind}`"), other),
            })?;
        self.found.insert(key, found.clone());
        Ok(found)
    }

    /// The API for one object: namespaced kinds in the object's namespace,
    /// or the release's.
    pub async fn api(
        &mut self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        default_ns: &str,
    ) -> Result<(Api<DynamicObject>, Option<String>), ApiError> {
        let (ar, caps) = self.resolve(client, api_version, kind).await?;
        Ok(match caps.scope {
            Scope::Namespaced => {
                let ns = namespace.unwrap_or(default_ns).to_string();
                (Api::namespaced_with(client.clone(), &ns, &ar), Some(ns))
            }
            Scope::Cluster => (Api::all_with(client.clone(), &ar), None),
        })
    }
}

/// Server-side applies one object (or dry-runs it), returning what the
/// server made of it and the inventory entry.
pub async fn apply(
    client: &kube::Client,
    kinds: &mut Kinds,
    object: &Object,
    default_ns: &str,
    force: bool,
    dry_run: bool,
) -> Result<(DynamicObject, Item), ApiError> {
    let (api, ns) = kinds
        .api(
            client,
            &object.api_version,
            &object.kind,
            object.namespace.as_deref(),
            default_ns,
        )
        .await?;
    let mut value = object.value.clone();
    if let (Some(ns), Some(meta)) = (&ns, value.get_mut("metadata")) {
        meta["namespace"] = Value::String(ns.clone());
    }
    let mut params = PatchParams::apply(MANAGER);
    if force {
        params = params.force();
    }
    if dry_run {
        params = params.dry_run();
    }
    let item = Item {
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        namespace: ns,
        name: object.name.clone(),
    };
    match api
        .patch(&object.name, &params, &Patch::Apply(&value))
        .await
    {
        Ok(applied) => Ok((applied, item)),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(ApiError::Failed(format!(
            "`{}`: {}; another field manager owns these fields. Run with `--force-conflicts` to take them over",
            item.id(),
            status.message
        ))),
        Err(e) => Err(ApiError::from_kube(&format!("applying `{}`", item.id()), e)),
    }
}

/// The live object, if it exists.
pub async fn get(
    client: &kube::Client,
    kinds: &mut Kinds,
    item: &Item,
) -> Result<Option<DynamicObject>, ApiError> {
    let (api, _) = kinds
        .api(
            client,
            &item.api_version,
            &item.kind,
            item.namespace.as_deref(),
            item.namespace.as_deref().unwrap_or("default"),
        )
        .await?;
    api.get_opt(&item.name)
        .await
        .map_err(|e| ApiError::from_kube(&format!("reading `{}`", item.id()), e))
}

/// Deletes an object that slipway applied: only when the live object still
/// has `slipway` among its field managers, so that an object somebody else
/// took over (or made) is never touched. Returns whether it was deleted.
pub async fn delete_ours(
    client: &kube::Client,
    kinds: &mut Kinds,
    item: &Item,
) -> Result<bool, ApiError> {
    let Some(live) = get(client, kinds, item).await? else {
        return Ok(false);
    };
    let ours = live
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|m| m.manager.as_deref() == Some(MANAGER));
    if !ours {
        return Ok(false);
    }
    let (api, _) = kinds
        .api(
            client,
            &item.api_version,
            &item.kind,
            item.namespace.as_deref(),
            "default",
        )
        .await?;
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(&item.name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(ApiError::from_kube(&format!("deleting `{}`", item.id()), e)),
    }
}
