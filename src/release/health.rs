//! Waiting until what a revision applied is really healthy, for any kind,
//! in the way of kstatus (sigs.k8s.io/cli-utils `pkg/kstatus/status`): one
//! function, [`compute`], reads an object's status. The controller must
//! have seen the object's generation (`observedGeneration`); the common
//! workloads have rules of their own (Deployments, StatefulSets,
//! DaemonSets and ReplicaSets rolled out, Jobs complete, Pods ready,
//! claims bound, definitions established); any other kind is judged by
//! its conditions (`Ready` or `Available` true; `Stalled` or `Failed`
//! true fails), and a kind that reports none is healthy once applied.
//! Pods stuck in CrashLoopBackOff or an image pull error fail the wait at
//! once, with the container's last message; so does a Deployment's
//! `ProgressDeadlineExceeded`. Everything is polled, which works the same
//! on every API version.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
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
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        loop {
            let crd = api
                .get(name)
                .await
                .map_err(|e| ApiError::from_kube(&format!("reading `{name}`"), e))?;
            let value = serde_json::to_value(&crd).unwrap_or_default();
            match compute("CustomResourceDefinition", &value) {
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
    let generation = live.metadata.generation.unwrap_or(0);
    let data = &live.data;
    let observed = data["status"]["observedGeneration"].as_i64().unwrap_or(0);
    let own = compute(&item.kind, &serde_json::to_value(&live).unwrap_or_default());
    if own == State::Ready {
        return Ok(own);
    }
    // Pods that will not recover fail the wait now rather than at the
    // deadline.
    let selector = match item.kind.as_str() {
        "Pod" => None,
        _ => data["spec"]["selector"]["matchLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
    };
    let selector = match (item.kind.as_str(), selector) {
        // Only the pods of the Deployment's current ReplicaSet: during a
        // rollback, the failed revision's pods are still going away.
        ("Deployment", Some(sel)) => {
            let revision = live
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"));
            match revision {
                Some(revision) if observed >= generation => {
                    match current_hash(client, item, revision, &sel).await? {
                        Some(hash) => Some(format!("{sel},pod-template-hash={hash}")),
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
        (_, None) if item.kind == "Pod" => serde_json::to_value(&live)
            .and_then(serde_json::from_value::<Pod>)
            .into_iter()
            .collect(),
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

/// The `pod-template-hash` of the Deployment's current ReplicaSet: the one
/// whose revision annotation matches the Deployment's.
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
/// common workloads are judged by their own fields; any other kind by its
/// conditions; a kind without conditions is healthy once it exists.
pub fn compute(kind: &str, object: &Value) -> State {
    let status = &object["status"];
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    let generation = object["metadata"]["generation"].as_i64();
    let observed = status["observedGeneration"].as_i64();
    // Until the controller has seen this generation, what the status says
    // is about an earlier one (a rollback must not fail on the deadline
    // the failed revision exceeded).
    if let (Some(generation), Some(observed)) = (generation, observed) {
        if observed < generation {
            return State::Waiting("waiting for the controller".into());
        }
    }
    match kind {
        "Deployment" => deployment(object),
        "StatefulSet" => {
            let want = object["spec"]["replicas"].as_i64().unwrap_or(1);
            let (ready, updated) = (
                int(&status["readyReplicas"]),
                int(&status["updatedReplicas"]),
            );
            if observed.is_none() {
                State::Waiting("waiting for the controller".into())
            } else if ready == want
                && updated == want
                && status["currentRevision"] == status["updateRevision"]
            {
                State::Ready
            } else {
                State::Waiting(format!("{updated}/{want} updated, {ready}/{want} ready"))
            }
        }
        "DaemonSet" => {
            let want = int(&status["desiredNumberScheduled"]);
            let updated = int(&status["updatedNumberScheduled"]);
            let available = int(&status["numberAvailable"]);
            if observed.is_none() {
                State::Waiting("waiting for the controller".into())
            } else if updated == want && available == want {
                State::Ready
            } else {
                State::Waiting(format!(
                    "{updated}/{want} updated, {available}/{want} available"
                ))
            }
        }
        "ReplicaSet" => {
            let want = object["spec"]["replicas"].as_i64().unwrap_or(1);
            let (ready, available) = (
                int(&status["readyReplicas"]),
                int(&status["availableReplicas"]),
            );
            if observed.is_none() && want > 0 {
                State::Waiting("waiting for the controller".into())
            } else if ready == want && available == want {
                State::Ready
            } else {
                State::Waiting(format!(
                    "{ready}/{want} ready, {available}/{want} available"
                ))
            }
        }
        "Job" => job(status),
        "Pod" => {
            let ready = condition(status, "Ready").is_some_and(|c| c["status"] == "True");
            match status["phase"].as_str() {
                Some("Succeeded") => State::Ready,
                Some("Failed") => State::Broken("the pod failed".into()),
                _ if ready => State::Ready,
                phase => State::Waiting(phase.unwrap_or("pending").to_lowercase()),
            }
        }
        "PersistentVolumeClaim" => match status["phase"].as_str() {
            Some("Bound") => State::Ready,
            Some("Lost") => State::Broken("the claim lost its volume".into()),
            phase => State::Waiting(format!(
                "{} (not bound)",
                phase.unwrap_or("pending").to_lowercase()
            )),
        },
        "Namespace" => match status["phase"].as_str() {
            Some("Terminating") => State::Waiting("terminating".into()),
            _ => State::Ready,
        },
        "CustomResourceDefinition" => {
            if let Some(c) = condition(status, "NamesAccepted").filter(|c| c["status"] == "False") {
                return State::Broken(format!("names not accepted: {}", said(c)));
            }
            match condition(status, "Established") {
                Some(c) if c["status"] == "True" => State::Ready,
                _ => State::Waiting("not established yet".into()),
            }
        }
        _ => by_conditions(status),
    }
}

/// kstatus's rules for any kind: `Stalled` or `Failed` true fails;
/// `Reconciling` true waits; `Ready` (else `Available`) decides when
/// reported; without these, the object is healthy.
fn by_conditions(status: &Value) -> State {
    for failed in ["Stalled", "Failed"] {
        if let Some(c) = condition(status, failed).filter(|c| c["status"] == "True") {
            return State::Broken(format!("{failed}: {}", said(c)));
        }
    }
    if let Some(c) = condition(status, "Reconciling").filter(|c| c["status"] == "True") {
        return State::Waiting(format!("reconciling: {}", said(c)));
    }
    for kind in ["Ready", "Available"] {
        if let Some(c) = condition(status, kind) {
            return if c["status"] == "True" {
                State::Ready
            } else {
                State::Waiting(format!("not {}: {}", kind.to_lowercase(), said(c)))
            };
        }
    }
    State::Ready
}

/// The status condition of this type, if reported.
fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// A condition's reason and message, for a report.
fn said(c: &Value) -> String {
    let reason = c["reason"].as_str().unwrap_or_default();
    let message = c["message"].as_str().unwrap_or_default();
    match (reason.is_empty(), message.is_empty()) {
        (true, true) => format!("status {}", c["status"].as_str().unwrap_or("unknown")),
        (false, true) => reason.to_string(),
        (true, false) => message.to_string(),
        (false, false) => format!("{reason}: {message}"),
    }
}

fn deployment(object: &Value) -> State {
    let status = &object["status"];
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
    if int(&status["observedGeneration"]) < generation {
        return State::Waiting("waiting for the controller".into());
    }
    if let Some(c) =
        condition(status, "Progressing").filter(|c| c["reason"] == "ProgressDeadlineExceeded")
    {
        return State::Broken(format!(
            "progress deadline exceeded: {}",
            c["message"].as_str().unwrap_or_default()
        ));
    }
    let want = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let (updated, ready, available, total) = (
        int(&status["updatedReplicas"]),
        int(&status["readyReplicas"]),
        int(&status["availableReplicas"]),
        int(&status["replicas"]),
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

fn job(status: &Value) -> State {
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    for c in &conditions {
        if c["status"] != "True" {
            continue;
        }
        match c["type"].as_str() {
            Some("Complete") => return State::Ready,
            Some("Failed") => {
                return State::Broken(format!(
                    "the job failed: {}",
                    c["message"].as_str().unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
    State::Waiting(format!(
        "{} active, {} succeeded",
        status["active"].as_i64().unwrap_or(0),
        status["succeeded"].as_i64().unwrap_or(0)
    ))
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

    use super::{State, compute};

    fn waiting(s: &State) -> bool {
        matches!(s, State::Waiting(_))
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
}
