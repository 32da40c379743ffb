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

/// An error an [`ApiError`] comes from: a `kube::Error`, a kubeconfig
/// that cannot be loaded, or an earlier `ApiError`.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a call failed; `Unreachable` means the API server did not answer
/// (exit 3), `Failed` is the release's own failure (exit 1). The message
/// is what a user reads; the error it comes from, if any, is kept as its
/// source.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Unreachable {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("{message}")]
    Failed {
        message: String,
        #[source]
        source: Option<Cause>,
    },
}

impl ApiError {
    /// The release's own failure, which no other error caused.
    pub fn failed(message: impl Into<String>) -> Self {
        ApiError::Failed {
            message: message.into(),
            source: None,
        }
    }

    /// The cluster did not answer, as `source` says.
    pub fn unreachable(message: impl Into<String>, source: impl Into<Cause>) -> Self {
        ApiError::Unreachable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Sorts a kube error: transport problems are the cluster's, API
    /// answers are the release's. The message is `context`'s; the error
    /// stays as its source.
    pub fn from_kube(context: &str, e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(status) => ApiError::Failed {
                message: format!("{context}: {} ({})", status.message, status.code),
                source: Some(e.into()),
            },
            kube::Error::Discovery(d) => ApiError::Failed {
                message: format!("{context}: {d}"),
                source: Some(e.into()),
            },
            other => ApiError::unreachable(
                format!("{context}: the Kubernetes API did not answer ({other})"),
                e,
            ),
        }
    }

    /// The same error with its message rewritten by `f` (put in context);
    /// its kind and source stay.
    #[must_use]
    pub fn map_message(self, f: impl FnOnce(&str) -> String) -> Self {
        match self {
            ApiError::Unreachable { message, source } => ApiError::Unreachable {
                message: f(&message),
                source,
            },
            ApiError::Failed { message, source } => ApiError::Failed {
                message: f(&message),
                source,
            },
        }
    }
}

/// Resources found by discovery, by group/version/kind; and the kinds
/// that CustomResourceDefinitions of the release being applied declare,
/// which discovery cannot know before those are applied.
#[derive(Default)]
pub struct Kinds {
    found: HashMap<(String, String), (ApiResource, ApiCapabilities)>,
    declared: HashMap<(String, String), Scope>,
}

impl Kinds {
    /// Notes the kinds that the CustomResourceDefinitions among `objects`
    /// declare (every served version), with their scope.
    pub fn declare(&mut self, objects: &[Object]) {
        for o in objects.iter().filter(|o| is_crd(&o.api_version, &o.kind)) {
            let spec = &o.value["spec"];
            let (Some(group), Some(kind)) =
                (spec["group"].as_str(), spec["names"]["kind"].as_str())
            else {
                continue;
            };
            let scope = match spec["scope"].as_str() {
                Some("Cluster") => Scope::Cluster,
                _ => Scope::Namespaced,
            };
            for version in spec["versions"].as_array().into_iter().flatten() {
                if let Some(v) = version["name"].as_str() {
                    self.declared
                        .insert((format!("{group}/{v}"), kind.to_string()), scope.clone());
                }
            }
        }
    }

    /// Waits until discovery serves a kind this release's
    /// CustomResourceDefinition declares: the API server may publish a
    /// new group a moment after the definition is established.
    pub async fn wait_served(
        &mut self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
        deadline: std::time::Instant,
    ) -> Result<(), ApiError> {
        loop {
            match self.resolve(client, api_version, kind).await {
                Ok(_) => return Ok(()),
                Err(ApiError::Failed { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether a CustomResourceDefinition of this release declares the kind.
    pub fn is_declared(&self, api_version: &str, kind: &str) -> bool {
        self.declared
            .contains_key(&(api_version.to_string(), kind.to_string()))
    }

    /// The kind's scope: from discovery, or, for a kind the cluster does
    /// not serve yet, from this release's CustomResourceDefinition.
    pub async fn scope(
        &mut self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
    ) -> Result<Scope, ApiError> {
        match self.resolve(client, api_version, kind).await {
            Ok((_, caps)) => Ok(caps.scope),
            Err(e) => self
                .declared
                .get(&(api_version.to_string(), kind.to_string()))
                .cloned()
                .ok_or(e),
        }
    }

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
                kube::Error::Discovery(_) | kube::Error::Api(_) => ApiError::Failed {
                    message: format!("the cluster does not know `{kind}` in `{api_version}`"),
                    source: Some(e.into()),
                },
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

/// Whether an object is a CustomResourceDefinition.
pub fn is_crd(api_version: &str, kind: &str) -> bool {
    kind == "CustomResourceDefinition" && api_version.starts_with("apiextensions.k8s.io/")
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
        Err(kube::Error::Api(status)) if status.code == 409 => Err(ApiError::Failed {
            message: format!(
                "`{}`: {}; another field manager owns these fields. Run with `--force-conflicts` to take them over",
                item.id(),
                status.message
            ),
            source: Some(kube::Error::Api(status).into()),
        }),
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

/// An object as a reader compares it: without what the server keeps for
/// itself (managed fields, versions, status, ...), and with Secret data
/// masked as `***` when `mask` is set.
pub fn clean(mut v: Value, mask: bool) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("deployment.kubernetes.io/revision");
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        if meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(serde_json::Map::is_empty)
        {
            meta.remove("annotations");
        }
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    if mask && v.get("kind").and_then(Value::as_str) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(data) = v.get_mut(field).and_then(Value::as_object_mut) {
                for value in data.values_mut() {
                    *value = Value::String("***".into());
                }
            }
        }
    }
    v
}

/// Whether applying `objects` would change nothing in the cluster: each
/// exists, and a server-side dry-run apply of it gives the live object
/// back, field for field.
pub async fn unchanged(
    client: &kube::Client,
    kinds: &mut Kinds,
    objects: &[Object],
    default_ns: &str,
) -> Result<bool, ApiError> {
    for object in objects {
        let (desired, item) = match apply(client, kinds, object, default_ns, false, true).await {
            Ok(x) => x,
            // A conflict, a missing namespace, ...: the real apply will say.
            Err(ApiError::Failed { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(live) = get(client, kinds, &item).await? else {
            return Ok(false);
        };
        let as_value = |o: DynamicObject| clean(serde_json::to_value(o).unwrap_or_default(), false);
        if as_value(desired) != as_value(live) {
            return Ok(false);
        }
    }
    Ok(true)
}
