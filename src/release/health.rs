//! Waiting until what a revision applied is really healthy, for any kind,
//! in the way of kstatus (sigs.k8s.io/cli-utils `pkg/kstatus/status`): one
//! function, [`compute`], reads an object's status. The controller must
//! have seen the object's generation (`observedGeneration`); the common
//! workloads have rules of their own (Deployments, StatefulSets,
//! DaemonSets and ReplicaSets rolled out, Jobs complete, Pods ready,
//! claims bound, definitions established); any other kind is judged by
//! its conditions (`Ready` or `Available` true; `Stalled` or `Failed`
//! true fails), and a kind that reports none is healthy once applied.
//! The workloads are read through k8s-openapi's types: one that cannot be
//! read as its kind fails, and a custom resource of another group that
//! shares a workload's kind name is judged by its conditions.
//! Pods stuck in CrashLoopBackOff or an image pull error fail the wait at
//! once, with the container's last message; so does a Deployment's
//! `ProgressDeadlineExceeded`. Everything is polled, which works the same
//! on every API version.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::Metadata;
use k8s_openapi::api::apps::v1::{
    DaemonSet, Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetStatus,
    StatefulSet,
};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, PodCondition};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams};
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::apply::{ApiError, Kinds, get};
use super::store::Item;

const POLL: Duration = Duration::from_millis(500);

/// What one object looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ready,
    /// Not yet; the text says how far.
    Waiting(String),
    /// It will not get better: fail now.
    Broken(String),
}

/// Kinds that never report a status: healthy once applied, without a
/// read. Any other kind is read and judged by [`compute`].
fn statusless(kind: &str) -> bool {
    matches!(
        kind,
        "ConfigMap"
            | "Secret"
            | "ServiceAccount"
            | "Role"
            | "ClusterRole"
            | "RoleBinding"
            | "ClusterRoleBinding"
    )
}

/// Waits until the named CustomResourceDefinitions are established, so
/// that resources of their kinds can be applied; a definition whose names
/// the server refused fails at once.
pub async fn established(
    client: &kube::Client,
    names: &[String],
    deadline: Instant,
    notes: &UnboundedSender<String>,
) -> Result<(), ApiError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        loop {
            let crd = api
                .get(name)
                .await
                .map_err(|e| ApiError::from_kube(&format!("reading `{name}`"), e))?;
            match judge(&crd) {
                State::Ready => {
                    let _ = notes.send(format!("CustomResourceDefinition/{name}: established"));
                    break;
                }
                State::Broken(why) => {
                    return Err(ApiError::failed(format!(
                        "`CustomResourceDefinition/{name}` failed: {why}"
                    )));
                }
                State::Waiting(why) if Instant::now() >= deadline => {
                    return Err(ApiError::failed(format!(
                        "`CustomResourceDefinition/{name}` was not established in time: {why}"
                    )));
                }
                State::Waiting(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// Waits until every watched item is ready, or one is broken, or `limit`
/// passes. Sends a line to `notes` whenever an object's state changes.
pub async fn wait(
    client: &kube::Client,
    kinds: &mut Kinds,
    items: &[Item],
    limit: Duration,
    notes: &UnboundedSender<String>,
) -> Result<(), ApiError> {
    let start = Instant::now();
    let watched: Vec<&Item> = items.iter().filter(|i| !statusless(&i.kind)).collect();
    let mut last: BTreeMap<String, State> = BTreeMap::new();
    loop {
        let mut pending = Vec::new();
        for item in &watched {
            let state = state(client, kinds, item).await?;
            if last.get(&item.id()) != Some(&state) {
                let _ = notes.send(match &state {
                    State::Ready => format!("{}: ready", item.id()),
                    State::Waiting(why) | State::Broken(why) => format!("{}: {why}", item.id()),
                });
                last.insert(item.id(), state.clone());
            }
            match state {
                State::Ready => {}
                State::Waiting(why) => pending.push(format!("{} ({why})", item.id())),
                State::Broken(why) => {
                    return Err(ApiError::failed(format!("`{}` failed: {why}", item.id())));
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(ApiError::failed(format!(
                "not healthy after {}: {}",
                humantime::format_duration(limit),
                pending.join("; ")
            )));
        }
        tokio::time::sleep(POLL.min(limit.saturating_sub(start.elapsed()))).await;
    }
}

async fn state(client: &kube::Client, kinds: &mut Kinds, item: &Item) -> Result<State, ApiError> {
    let Some(live) = get(client, kinds, item).await? else {
        return Ok(State::Waiting("not found yet".into()));
    };
    let object = serde_json::to_value(&live).unwrap_or_default();
    let mut own = compute(&item.kind, &object);
    if own == State::Ready {
        return Ok(own);
    }
    // Pods that will not recover fail the wait now rather than at the
    // deadline.
    let selector = match item.kind.as_str() {
        "Pod" => None,
        _ => match_labels(&object),
    };
    let selector = match (item.kind.as_str(), selector) {
        // Only the pods of the Deployment's current ReplicaSet: during a
        // rollback, the failed revision's pods are still going away.
        ("Deployment", Some(sel)) => {
            let Ok(deployment) = Deployment::deserialize(&object) else {
                return Ok(own);
            };
            let generation = deployment.metadata.generation.unwrap_or(0);
            let observed = deployment.observed().unwrap_or(0);
            let revision = deployment
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"));
            match revision {
                Some(revision) if observed >= generation => {
                    match current_hash(client, item, revision, &sel).await? {
                        Some(hash) => {
                            if stale_deadline(&deployment, &format!("{}-{hash}", item.name)) {
                                own = State::Waiting(
                                    "waiting for the controller (the progress deadline it \
                                     reports is an earlier ReplicaSet's)"
                                        .into(),
                                );
                            }
                            Some(format!("{sel},pod-template-hash={hash}"))
                        }
                        None => return Ok(own),
                    }
                }
                _ => return Ok(own),
            }
        }
        (_, sel) => sel,
    };
    let pods: Vec<Pod> = match (&item.namespace, selector) {
        (Some(ns), Some(sel)) if !sel.is_empty() => {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            api.list(&ListParams::default().labels(&sel))
                .await
                .map_err(|e| ApiError::from_kube("listing pods", e))?
                .items
        }
        // A bare Pod is the object just read.
        (_, None) if item.kind == "Pod" => Pod::deserialize(&object).into_iter().collect(),
        _ => Vec::new(),
    };
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        if let Some((container, broken)) = stuck(pod) {
            let said = last_words(client, pod, &container).await;
            return Ok(State::Broken(format!("{broken}{said}")));
        }
    }
    Ok(own)
}

/// The object's `spec.selector.matchLabels` as a label selector
/// (`app=web,tier=front`), for any kind that selects pods that way.
fn match_labels(object: &Value) -> Option<String> {
    let selector = LabelSelector::deserialize(object.pointer("/spec/selector")?).ok()?;
    Some(
        selector
            .match_labels?
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The `pod-template-hash` of the Deployment's current ReplicaSet: the one
/// whose revision annotation matches the Deployment's.
/// Whether the Deployment's "progress deadline exceeded" names another
/// ReplicaSet than `current`: after a rollback the controller has seen the
/// new generation, and says so, some time before it updates the progress
/// condition, which still names the failed revision's ReplicaSet.
fn stale_deadline(deployment: &Deployment, current: &str) -> bool {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
        .and_then(|c| c.message.as_deref())
        .is_some_and(|m| m.contains("ReplicaSet \"") && !m.contains(&format!("\"{current}\"")))
}

async fn current_hash(
    client: &kube::Client,
    item: &Item,
    revision: &str,
    selector: &str,
) -> Result<Option<String>, ApiError> {
    const REVISION: &str = "deployment.kubernetes.io/revision";
    let Some(ns) = &item.namespace else {
        return Ok(None);
    };
    let api: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), ns);
    let sets = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| ApiError::from_kube("listing replica sets", e))?;
    Ok(sets
        .items
        .into_iter()
        .find(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .is_some_and(|r| r == revision)
        })
        .and_then(|rs| rs.metadata.labels?.get("pod-template-hash").cloned()))
}

/// The last lines the container's previous run wrote, for the report.
async fn last_words(client: &kube::Client, pod: &Pod, container: &str) -> String {
    let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
        return String::new();
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = kube::api::LogParams {
        container: Some(container.to_string()),
        previous: true,
        tail_lines: Some(3),
        ..Default::default()
    };
    match api.logs(name, &params).await {
        Ok(text) if !text.trim().is_empty() => {
            format!("; its last output: {}", text.trim().replace('\n', " | "))
        }
        _ => String::new(),
    }
}

/// What an object's status says of its health: kstatus's rules. A
/// controller that has not seen the newest generation means waiting; the
/// common workloads are judged by their own fields, read through
/// k8s-openapi's types; any other kind by its conditions; a kind without
/// conditions is healthy once it exists.
pub fn compute(kind: &str, object: &Value) -> State {
    match kind {
        "Deployment" => typed::<Deployment>(object),
        "StatefulSet" => typed::<StatefulSet>(object),
        "DaemonSet" => typed::<DaemonSet>(object),
        "ReplicaSet" => typed::<ReplicaSet>(object),
        "Job" => typed::<Job>(object),
        "Pod" => typed::<Pod>(object),
        "PersistentVolumeClaim" => typed::<PersistentVolumeClaim>(object),
        "Namespace" => typed::<Namespace>(object),
        "CustomResourceDefinition" => typed::<CustomResourceDefinition>(object),
        _ => custom(object),
    }
}

/// A built-in kind with rules of its own.
trait Workload: Metadata<Ty = ObjectMeta> + DeserializeOwned {
    /// The generation its controller has seen, for kinds that report it.
    fn observed(&self) -> Option<i64> {
        None
    }

    /// Its health once its controller has seen its generation.
    fn health(&self) -> State;
}

/// Reads `object` as the built-in `K` and judges it. An object of another
/// group that has a built-in's kind name is judged as any kind is; one
/// that cannot be read as its kind fails: there is no telling its health.
fn typed<K: Workload>(object: &Value) -> State {
    let version = object.get("apiVersion").and_then(Value::as_str);
    if version.is_some_and(|v| v != K::API_VERSION) {
        return custom(object);
    }
    match K::deserialize(object) {
        Ok(workload) => judge(&workload),
        Err(e) => State::Broken(format!("cannot be read as a {} ({e})", K::KIND)),
    }
}

fn judge<K: Workload>(workload: &K) -> State {
    // Until the controller has seen this generation, what the status says
    // is about an earlier one (a rollback must not fail on the deadline
    // the failed revision exceeded).
    if let (Some(generation), Some(observed)) =
        (workload.metadata().generation, workload.observed())
    {
        if observed < generation {
            return State::Waiting("waiting for the controller".into());
        }
    }
    workload.health()
}

/// Any other kind: the generation seen, then its conditions.
fn custom(object: &Value) -> State {
    let status = &object["status"];
    let generation = object["metadata"]["generation"].as_i64();
    let observed = status["observedGeneration"].as_i64();
    if let (Some(generation), Some(observed)) = (generation, observed) {
        if observed < generation {
            return State::Waiting("waiting for the controller".into());
        }
    }
    let conditions: Vec<Condition<'_>> = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |field: &str| c[field].as_str().unwrap_or_default();
            Condition {
                type_: text("type"),
                status: text("status"),
                reason: text("reason"),
                message: text("message"),
            }
        })
        .collect();
    by_conditions(&conditions)
}

/// What health reads of a status condition, whichever kind reported it.
#[derive(Debug, Clone, Copy)]
struct Condition<'a> {
    type_: &'a str,
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

impl Condition<'_> {
    fn is_true(&self) -> bool {
        self.status == "True"
    }

    /// Its reason and message, for a report.
    fn said(&self) -> String {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (true, true) if self.status.is_empty() => "status unknown".into(),
            (true, true) => format!("status {}", self.status),
            (false, true) => self.reason.to_string(),
            (true, false) => self.message.to_string(),
            (false, false) => format!("{}: {}", self.reason, self.message),
        }
    }
}

/// k8s-openapi's condition types, one per kind, read alike.
macro_rules! conditions {
    ($($condition:ty),* $(,)?) => {$(
        impl<'a> From<&'a $condition> for Condition<'a> {
            fn from(c: &'a $condition) -> Self {
                Condition {
                    type_: &c.type_,
                    status: &c.status,
                    reason: c.reason.as_deref().unwrap_or_default(),
                    message: c.message.as_deref().unwrap_or_default(),
                }
            }
        }
    )*};
}

conditions!(
    DeploymentCondition,
    JobCondition,
    PodCondition,
    CustomResourceDefinitionCondition,
);

/// The condition of this type, if reported.
fn condition<'a, C>(conditions: Option<&'a Vec<C>>, type_: &str) -> Option<Condition<'a>>
where
    Condition<'a>: From<&'a C>,
{
    conditions
        .into_iter()
        .flatten()
        .map(Condition::from)
        .find(|c| c.type_ == type_)
}

/// kstatus's rules for any kind: `Stalled` or `Failed` true fails;
/// `Reconciling` true waits; `Ready` (else `Available`) decides when
/// reported; without these, the object is healthy.
fn by_conditions(conditions: &[Condition<'_>]) -> State {
    let find = |type_: &str| conditions.iter().find(|c| c.type_ == type_);
    for failed in ["Stalled", "Failed"] {
        if let Some(c) = find(failed).filter(|c| c.is_true()) {
            return State::Broken(format!("{failed}: {}", c.said()));
        }
    }
    if let Some(c) = find("Reconciling").filter(|c| c.is_true()) {
        return State::Waiting(format!("reconciling: {}", c.said()));
    }
    for kind in ["Ready", "Available"] {
        if let Some(c) = find(kind) {
            return if c.is_true() {
                State::Ready
            } else {
                State::Waiting(format!("not {}: {}", kind.to_lowercase(), c.said()))
            };
        }
    }
    State::Ready
}

impl Workload for Deployment {
    fn observed(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }

    fn health(&self) -> State {
        let none = DeploymentStatus::default();
        let status = self.status.as_ref().unwrap_or(&none);
        let generation = self.metadata.generation.unwrap_or(0);
        if status.observed_generation.unwrap_or(0) < generation {
            return State::Waiting("waiting for the controller".into());
        }
        if let Some(c) = condition(status.conditions.as_ref(), "Progressing")
            .filter(|c| c.reason == "ProgressDeadlineExceeded")
        {
            return State::Broken(format!("progress deadline exceeded: {}", c.message));
        }
        let want = self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let (updated, ready, available, total) = (
            status.updated_replicas.unwrap_or(0),
            status.ready_replicas.unwrap_or(0),
            status.available_replicas.unwrap_or(0),
            status.replicas.unwrap_or(0),
        );
        if updated == want && ready == want && available == want && total == want {
            State::Ready
        } else {
            State::Waiting(format!(
                "{updated}/{want} updated, {ready}/{want} ready, {available}/{want} available{}",
                if total > want {
                    format!(", {} old", total - updated)
                } else {
                    String::new()
                }
            ))
        }
    }
}

impl Workload for StatefulSet {
    fn observed(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }

    fn health(&self) -> State {
        let want = self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let Some(status) = self
            .status
            .as_ref()
            .filter(|s| s.observed_generation.is_some())
        else {
            return State::Waiting("waiting for the controller".into());
        };
        let ready = status.ready_replicas.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0);
        if ready == want && updated == want && status.current_revision == status.update_revision {
            State::Ready
        } else {
            State::Waiting(format!("{updated}/{want} updated, {ready}/{want} ready"))
        }
    }
}

impl Workload for DaemonSet {
    fn observed(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }

    fn health(&self) -> State {
        let Some(status) = self
            .status
            .as_ref()
            .filter(|s| s.observed_generation.is_some())
        else {
            return State::Waiting("waiting for the controller".into());
        };
        let want = status.desired_number_scheduled;
        let updated = status.updated_number_scheduled.unwrap_or(0);
        let available = status.number_available.unwrap_or(0);
        if updated == want && available == want {
            State::Ready
        } else {
            State::Waiting(format!(
                "{updated}/{want} updated, {available}/{want} available"
            ))
        }
    }
}

impl Workload for ReplicaSet {
    fn observed(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }

    fn health(&self) -> State {
        let want = self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let none = ReplicaSetStatus::default();
        let status = self.status.as_ref().unwrap_or(&none);
        let ready = status.ready_replicas.unwrap_or(0);
        let available = status.available_replicas.unwrap_or(0);
        if status.observed_generation.is_none() && want > 0 {
            State::Waiting("waiting for the controller".into())
        } else if ready == want && available == want {
            State::Ready
        } else {
            State::Waiting(format!(
                "{ready}/{want} ready, {available}/{want} available"
            ))
        }
    }
}

impl Workload for Job {
    fn health(&self) -> State {
        let none = JobStatus::default();
        let status = self.status.as_ref().unwrap_or(&none);
        let reported = status.conditions.as_ref();
        for c in reported.into_iter().flatten().map(Condition::from) {
            if !c.is_true() {
                continue;
            }
            match c.type_ {
                "Complete" => return State::Ready,
                "Failed" => return State::Broken(format!("the job failed: {}", c.message)),
                _ => {}
            }
        }
        State::Waiting(format!(
            "{} active, {} succeeded",
            status.active.unwrap_or(0),
            status.succeeded.unwrap_or(0)
        ))
    }
}

impl Workload for Pod {
    fn observed(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }

    fn health(&self) -> State {
        let status = self.status.as_ref();
        let ready = condition(status.and_then(|s| s.conditions.as_ref()), "Ready")
            .is_some_and(|c| c.is_true());
        match status.and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") => State::Ready,
            Some("Failed") => State::Broken("the pod failed".into()),
            _ if ready => State::Ready,
            phase => State::Waiting(phase.unwrap_or("pending").to_lowercase()),
        }
    }
}

impl Workload for PersistentVolumeClaim {
    fn health(&self) -> State {
        match self.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Bound") => State::Ready,
            Some("Lost") => State::Broken("the claim lost its volume".into()),
            phase => State::Waiting(format!(
                "{} (not bound)",
                phase.unwrap_or("pending").to_lowercase()
            )),
        }
    }
}

impl Workload for Namespace {
    fn health(&self) -> State {
        match self.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Terminating") => State::Waiting("terminating".into()),
            _ => State::Ready,
        }
    }
}

impl Workload for CustomResourceDefinition {
    fn health(&self) -> State {
        let conditions = self.status.as_ref().and_then(|s| s.conditions.as_ref());
        if let Some(c) = condition(conditions, "NamesAccepted").filter(|c| c.status == "False") {
            return State::Broken(format!("names not accepted: {}", c.said()));
        }
        match condition(conditions, "Established") {
            Some(c) if c.is_true() => State::Ready,
            _ => State::Waiting("not established yet".into()),
        }
    }
}

/// A pod that will not get better by waiting: a container in a crash loop
/// or unable to get its image, with the container's name and how it ended.
fn stuck(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in all {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let fatal = matches!(
            reason,
            "CrashLoopBackOff"
                | "ImagePullBackOff"
                | "ErrImagePull"
                | "ErrImageNeverPull"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError"
        );
        if !fatal {
            continue;
        }
        let last = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| {
                let said = t
                    .message
                    .clone()
                    .or_else(|| t.reason.clone())
                    .unwrap_or_default();
                format!(
                    "; it last exited with {}{}",
                    t.exit_code,
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", said.trim())
                    }
                )
            })
            .unwrap_or_default();
        // A crash loop's own message only repeats the pod's name.
        let message = waiting
            .message
            .as_deref()
            .filter(|_| reason != "CrashLoopBackOff")
            .map(|m| format!(" ({})", m.trim()))
            .unwrap_or_default();
        return Some((
            c.name.clone(),
            format!(
                "pod `{name}`, container `{}`: {reason}{message}{last}",
                c.name
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Deployment, State, compute, match_labels, stale_deadline};

    fn waiting(s: &State) -> bool {
        matches!(s, State::Waiting(_))
    }

    #[test]
    fn a_progress_deadline_naming_an_earlier_replica_set_is_stale() {
        let deployment = |message: &str| -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": "chat", "generation": 3},
                "status": {"observedGeneration": 3, "conditions": [{
                    "type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded", "message": message,
                }]},
            }))
            .expect("a deployment")
        };
        let failed = deployment("ReplicaSet \"chat-7ddf8c7bbc\" has timed out progressing.");
        // Rolled back to chat-5d4f: the condition is the failed revision's.
        assert!(stale_deadline(&failed, "chat-5d4f"));
        // Still the current one's: the revision really failed.
        assert!(!stale_deadline(&failed, "chat-7ddf8c7bbc"));
        // A message naming no ReplicaSet is taken as said.
        assert!(!stale_deadline(&deployment("timed out"), "chat-5d4f"));
    }

    #[test]
    fn a_generation_the_controller_has_not_seen_waits_whatever_else_the_status_says() {
        let d = json!({
            "metadata": {"generation": 3},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                "readyReplicas": 1, "availableReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded"}]}
        });
        // A rollback right after a deadline: the stale condition must not fail it.
        assert!(waiting(&compute("Deployment", &d)));
        let widget = json!({
            "metadata": {"generation": 2},
            "status": {"observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True"}]}
        });
        assert!(waiting(&compute("Widget", &widget)));
    }

    #[test]
    fn any_kind_is_judged_by_its_conditions_else_healthy_once_applied() {
        let with = |conditions: serde_json::Value| {
            compute(
                "Widget",
                &json!({"metadata": {"generation": 1},
                "status": {"observedGeneration": 1, "conditions": conditions}}),
            )
        };
        assert_eq!(
            with(json!([{"type": "Ready", "status": "True"}])),
            State::Ready
        );
        assert_eq!(
            with(
                json!([{"type": "Ready", "status": "False", "reason": "Warming", "message": "wait"}])
            ),
            State::Waiting("not ready: Warming: wait".into())
        );
        assert_eq!(
            with(json!([{"type": "Available", "status": "True"}])),
            State::Ready
        );
        assert_eq!(
            with(json!([{"type": "Ready", "status": "True"},
                {"type": "Stalled", "status": "True", "reason": "BadSpec"}])),
            State::Broken("Stalled: BadSpec".into())
        );
        assert!(matches!(
            with(json!([{"type": "Failed", "status": "True", "message": "no"}])),
            State::Broken(_)
        ));
        assert!(waiting(&with(
            json!([{"type": "Reconciling", "status": "True"}])
        )));
        assert_eq!(
            with(json!([{"type": "Synced", "status": "False"}])),
            State::Ready
        );
        assert_eq!(compute("Widget", &json!({"spec": {}})), State::Ready);
    }

    #[test]
    fn built_in_kinds_have_rules_of_their_own() {
        let crd = |established: &str| {
            json!({"status": {"conditions": [
                {"type": "NamesAccepted", "status": "True"},
                {"type": "Established", "status": established}]}})
        };
        assert_eq!(
            compute("CustomResourceDefinition", &crd("True")),
            State::Ready
        );
        assert!(waiting(&compute("CustomResourceDefinition", &crd("False"))));
        let refused = json!({"status": {"conditions": [
            {"type": "NamesAccepted", "status": "False", "reason": "MultipleNamesNotAllowed"}]}});
        assert!(matches!(
            compute("CustomResourceDefinition", &refused),
            State::Broken(_)
        ));
        assert_eq!(
            compute(
                "PersistentVolumeClaim",
                &json!({"status": {"phase": "Bound"}})
            ),
            State::Ready
        );
        assert!(waiting(&compute(
            "PersistentVolumeClaim",
            &json!({"status": {"phase": "Pending"}})
        )));
        assert!(waiting(&compute(
            "Namespace",
            &json!({"status": {"phase": "Terminating"}})
        )));
        let rs = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "availableReplicas": 1}});
        assert!(waiting(&compute("ReplicaSet", &rs)));
        let job = json!({"status": {"conditions": [{"type": "Failed", "status": "True", "message": "backoff"}]}});
        assert!(matches!(compute("Job", &job), State::Broken(_)));
    }

    #[test]
    fn workloads_say_how_far_they_are() {
        let deployment = json!({"apiVersion": "apps/v1", "metadata": {"generation": 2},
            "spec": {"replicas": 3},
            "status": {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1,
                "readyReplicas": 3, "availableReplicas": 3}});
        assert_eq!(
            compute("Deployment", &deployment),
            State::Waiting("1/3 updated, 3/3 ready, 3/3 available, 3 old".into())
        );
        let deadline = json!({"metadata": {"generation": 1},
            "status": {"observedGeneration": 1, "conditions": [{"type": "Progressing",
                "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}]}});
        assert_eq!(
            compute("Deployment", &deadline),
            State::Broken("progress deadline exceeded: timed out".into())
        );
        let set = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
                "updatedReplicas": 2, "currentRevision": "a", "updateRevision": "b"}});
        assert_eq!(
            compute("StatefulSet", &set),
            State::Waiting("2/2 updated, 2/2 ready".into())
        );
        let daemons = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
            "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 1,
            "currentNumberScheduled": 2, "numberMisscheduled": 0, "numberReady": 1}});
        assert_eq!(
            compute("DaemonSet", &daemons),
            State::Waiting("2/2 updated, 1/2 available".into())
        );
        assert_eq!(
            compute("Job", &json!({"status": {"active": 1}})),
            State::Waiting("1 active, 0 succeeded".into())
        );
        let pod = |phase: &str, ready: &str| {
            compute(
                "Pod",
                &json!({"status": {"phase": phase,
                    "conditions": [{"type": "Ready", "status": ready}]}}),
            )
        };
        assert_eq!(pod("Running", "True"), State::Ready);
        assert_eq!(pod("Running", "False"), State::Waiting("running".into()));
        assert_eq!(
            pod("Failed", "False"),
            State::Broken("the pod failed".into())
        );
    }

    #[test]
    fn a_built_in_that_cannot_be_read_as_its_kind_fails_and_another_groups_is_any_kind() {
        let garbled = json!({"apiVersion": "apps/v1", "spec": {"replicas": "three"}});
        assert!(matches!(
            compute("Deployment", &garbled),
            State::Broken(why) if why.starts_with("cannot be read as a Deployment (")
        ));
        // A custom resource named like a built-in is judged by its conditions.
        let theirs = json!({"apiVersion": "example.com/v1", "spec": {"replicas": "three"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(compute("Deployment", &theirs), State::Ready);
    }

    #[test]
    fn pods_are_selected_by_match_labels() {
        let d = json!({"spec": {"selector": {"matchLabels": {"tier": "front", "app": "web"}}}});
        assert_eq!(match_labels(&d).as_deref(), Some("app=web,tier=front"));
        // A Service's selector is a plain map: no pods of its own to judge.
        let service = json!({"spec": {"selector": {"app": "web"}}});
        assert_eq!(match_labels(&service), None);
        assert_eq!(match_labels(&json!({"spec": {}})), None);
    }
}
