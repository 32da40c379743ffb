//! The Kubernetes backend: each stage attempt runs as a Pod in the run's
//! namespace, labelled `dev.slipway.run=<run id>` and
//! `dev.slipway.stage=<stage>`, with `restartPolicy: Never`.
//!
//! The project reaches the Pod through the API: an init container,
//! `workspace`, unpacks a tar of it (without what `.gitignore` and
//! `.slipwayignore` leave out, nor `.git` and `.slipway`) from its standard
//! input into an `emptyDir` at `/workspace`, which slipway sends over an
//! attach. Each attempt gets its own copy, and the project on the host is
//! never written. The stage's container then starts with its script
//! behind the same gate as on Docker (`run::gate`): slipway attaches to it,
//! sends the line that lets the script run, and reads its output from the
//! container's followed log; the gate's end line gives the exit status. Secret env
//! values live in one Secret per run and reach containers through
//! `secretKeyRef`, never in a Pod spec. A Pod that cannot be scheduled, or
//! whose image cannot be pulled, fails its stage as soon as the cluster
//! says so. Timeouts and Ctrl-C delete the Pod at once.
//!
//! While the stages a stage waits for run, its Pod is made ahead and its
//! script waits at its gate (`ahead`).
//!
//! Artifacts are copied out of a finished stage's container and into the
//! next ones' through execs of `tar`.
//!
//! A stage's services are more containers in its Pod, reachable on
//! `localhost` and by their names (`hostAliases`); the gate opens once each
//! is ready.
//!
//! Caches are claims kept across runs (`caches`).
//!
//! `build` stages build and push on the Docker engine (`builds`).

mod ahead;
mod builds;
mod caches;
pub mod gc;
mod lease;
mod pod;
mod room;
mod workspace;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use super::backend::{
    Backend, BoxFuture, EnvValue, Job, Outcome, Output, Prepared, RunInfo, Starts,
};
use super::docker::Pull;
use crate::plan::{PlannedAction, PlannedStage};

/// How many Pods may wait made ahead at once (never more than `-j`).
const AHEAD: usize = 8;

pub use builds::WithBuilds;

/// The label every Pod and Secret of a run carries.
pub const RUN_LABEL: &str = "dev.slipway.run";

pub struct KubernetesBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    namespace: String,
    pull: Pull,
    /// Set by `open`.
    run: OnceLock<String>,
    /// The run's Secret: each secret value a stage uses, by key. Kept here
    /// so that each value is added once.
    secrets: tokio::sync::Mutex<BTreeMap<String, String>>,
    /// Pods being made for `execute`: Pods made ahead wait for them.
    starting: Starts,
    /// Whether each cache claim used in this run is bound (else why not).
    claims: tokio::sync::Mutex<std::collections::HashMap<String, Result<(), String>>>,
    /// Renews the run's Lease (see `lease`) until the run closes.
    lease: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl KubernetesBackend {
    /// Connects with the default loading rules (`KUBECONFIG`, else
    /// `~/.kube/config`, else the in-cluster account), in `context` when
    /// given; Pods go to `namespace`, else the context's namespace.
    pub async fn connect(
        context: Option<&str>,
        namespace: Option<&str>,
        pull: Pull,
    ) -> Result<Self, crate::release::apply::ApiError> {
        let client = crate::release::client::connect(context).await?;
        let namespace =
            namespace.map_or_else(|| client.default_namespace().to_string(), str::to_string);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                namespace,
                pull,
                run: OnceLock::new(),
                secrets: tokio::sync::Mutex::new(BTreeMap::new()),
                starting: Starts::default(),
                lease: std::sync::Mutex::new(None),
                claims: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }
}

impl Inner {
    fn run(&self) -> &str {
        self.run.get().map_or("", String::as_str)
    }

    fn secret_name(&self) -> String {
        format!("slipway-{}", self.run())
    }

    /// Creates the namespace when it is missing.
    async fn namespace(&self) -> Result<(), String> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let found = match namespaces.get_opt(&self.namespace).await {
            Ok(found) => found,
            // An account with only the run's Role may not read namespaces:
            // the namespace is taken to be there, and the first Pod says
            // if it is not.
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(()),
            Err(e) => return Err(format!("cannot read namespace `{}`: {e}", self.namespace)),
        };
        if found.is_none() {
            let ns: Namespace = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": self.namespace },
            }))
            .map_err(|e| e.to_string())?;
            match namespaces.create(&PostParams::default(), &ns).await {
                Ok(_) => {}
                // Made meanwhile by another run.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    return Err(format!("cannot create namespace `{}`: {e}", self.namespace));
                }
            }
        }
        Ok(())
    }

    /// The keys of the run's Secret that hold `job`'s secret values,
    /// adding those it does not hold yet.
    async fn secret_keys(&self, job: &Job) -> Result<BTreeMap<String, String>, Outcome> {
        let values: Vec<&str> = job
            .env
            .values()
            .chain(job.service_env.iter().flat_map(|e| e.values()))
            .filter_map(|v| match v {
                EnvValue::Secret(s) => Some(s.as_str()),
                EnvValue::Plain(_) => None,
            })
            .collect();
        if values.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut kept = self.secrets.lock().await;
        let before = kept.len();
        for v in &values {
            if !kept.contains_key(*v) {
                let key = format!("v{}", kept.len());
                kept.insert((*v).to_string(), key);
            }
        }
        if kept.len() != before {
            let data: BTreeMap<&str, &str> =
                kept.iter().map(|(v, k)| (k.as_str(), v.as_str())).collect();
            let secret: Secret = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": self.secret_name(),
                    "labels": { RUN_LABEL: self.run() },
                },
                "type": "Opaque",
                "stringData": data,
            }))
            .map_err(|e| Outcome::Internal(e.to_string()))?;
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            api.patch(
                &self.secret_name(),
                &PatchParams::apply("slipway").force(),
                &Patch::Apply(&secret),
            )
            .await
            .map_err(|e| pod::failed("cannot write the run's Secret", &e))?;
        }
        Ok(kept.clone())
    }

    /// Deletes the run's Secret and any Pod of the run still there.
    async fn finish(&self) {
        let Some(run) = self.run.get() else { return };
        let labels = ListParams::default().labels(&format!("{RUN_LABEL}={run}"));
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let _ = pods
            .delete_collection(&DeleteParams::default().grace_period(0), &labels)
            .await;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let _ = secrets
            .delete(&self.secret_name(), &DeleteParams::default())
            .await;
        // Last: until it goes, `slipway gc` takes the run as going.
        let renewing = self
            .lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(renewing) = renewing {
            renewing.abort();
            lease::release(self.client.clone(), &self.namespace, run).await;
        }
    }
}

/// Why a `build` without `push` cannot feed this backend's Pods, and the
/// way out: a run's refusal and `slipway check --backend kubernetes` say
/// both.
pub const BUILD_WITHOUT_PUSH: &str = "a `build` stage must `push` under the kubernetes backend: \
     its image is built on this machine's Docker engine, where no Pod can use it";
pub const BUILD_WITHOUT_PUSH_HELP: &str =
    "add `push true`, with a tag in a registry the cluster pulls from";

/// Whether the kubernetes backend can run `action` (see
/// [`Backend::supports`]).
pub fn supports(action: &PlannedAction) -> Result<(), String> {
    match action {
        PlannedAction::Run { .. } => Ok(()),
        PlannedAction::Build(b) if b.push => Ok(()),
        PlannedAction::Build(_) => Err(format!(
            "{BUILD_WITHOUT_PUSH} (help: {BUILD_WITHOUT_PUSH_HELP})"
        )),
        other => Err(format!(
            "the kubernetes backend does not run `{}` stages",
            other.kind()
        )),
    }
}

/// Whether the kubernetes backend can run `stage` as a whole (see
/// [`Backend::supports_stage`]).
pub fn supports_stage(stage: &PlannedStage) -> Result<(), String> {
    supports(&stage.action)?;
    if stage.build().is_some() {
        return Ok(());
    }
    if stage.image.is_none() {
        return Err("a stage needs an `image` to run as a Pod".into());
    }
    Ok(())
}

impl Backend for KubernetesBackend {
    fn open<'a>(&'a self, info: &'a RunInfo) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.inner
                .run
                .set(info.run.clone())
                .map_err(|_| "the backend was opened twice".to_string())?;
            self.inner.namespace().await?;
            let renewing = lease::hold(
                self.inner.client.clone(),
                &self.inner.namespace,
                &info.run,
                &info.pipeline,
            )
            .await
            .map_err(|e| match pod::failed("cannot take the run's Lease", &e) {
                Outcome::Failed(f) => f.message,
                other => format!("{other:?}"),
            })?;
            *self
                .inner
                .lease
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(renewing);
            Ok(())
        })
    }

    fn supports(&self, action: &PlannedAction) -> Result<(), String> {
        supports(action)
    }

    fn supports_stage(&self, stage: &PlannedStage) -> Result<(), String> {
        supports_stage(stage)
    }

    /// Pods made ahead hold a little of the cluster (memory, a Pod slot)
    /// while they wait: a few at a time.
    fn ahead(&self) -> usize {
        AHEAD
    }

    fn prepare(&self, job: &Job) -> Option<Prepared> {
        // A Pod that asks for resources would hold them while it waits,
        // and could keep a running stage's Pod from being scheduled.
        if job.stage.resources.is_some() {
            return None;
        }
        Some(Prepared::new(ahead::begin(&self.inner, job.clone())))
    }

    fn execute(
        &self,
        job: Job,
        prepared: Option<Prepared>,
        output: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Outcome> {
        let inner = Arc::clone(&self.inner);
        let pending = prepared.and_then(Prepared::into_inner::<ahead::Pending>);
        // Counted at once, before any preparation the scheduler asks for
        // next can begin; until the Pod is made, or the claimed one is.
        let starting = inner.starting.begin();
        Box::pin(async move {
            let ready = match pending {
                Some(p) => match p.claim(&inner, &cancel).await {
                    Ok(ready) => ready,
                    Err(()) => return Outcome::Cancelled,
                },
                None => None,
            };
            pod::attempt(&inner, job, ready, starting, &output, &cancel).await
        })
    }

    fn discard(&self, prepared: Prepared) -> BoxFuture<'static, ()> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            if let Some(p) = prepared.into_inner::<ahead::Pending>() {
                p.discard(&inner).await;
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.finish())
    }
}
