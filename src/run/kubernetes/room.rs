//! A Pod with `resources` that no node has room for now: it waits while
//! room may come (other Pods, the run's own among them, end), and fails at
//! once when no node could ever take it.

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::Api;
use kube::runtime::wait::await_condition;

use crate::plan::resources::{cpu_nanos, memory_bytes};
use crate::run::backend::{FailureKind, Outcome, Output};
use crate::run::events::Stream;

/// Waits until the scheduler has placed Pod `name`. While it says no node
/// has room, the wait goes on if some node could take the Pod once it is
/// free (said once on the stage's standard error); if none could, or the
/// nodes cannot be read, the stage fails with the scheduler's reason.
pub(super) async fn placed(
    pods: &Api<Pod>,
    nodes: &Api<Node>,
    name: &str,
    output: Option<&Output>,
) -> Result<(), Outcome> {
    let mut waiting = false;
    loop {
        let seen = await_condition(pods.clone(), name, |p: Option<&Pod>| {
            p.is_none_or(|p| {
                scheduled(p) || other_failure(p) || (!waiting && unschedulable(p).is_some())
            })
        })
        .await;
        let pod = match seen {
            Ok(Some(pod)) => pod,
            Ok(None) => return Err(Outcome::infrastructure("the stage's Pod was deleted")),
            // The Pod's later watches say what went wrong, if anything did.
            Err(_) => return Ok(()),
        };
        if scheduled(&pod) || other_failure(&pod) || waiting {
            return Ok(());
        }
        let reason = unschedulable(&pod).unwrap_or_default();
        match fits_somewhere(nodes, &pod).await {
            Ok(true) => {
                waiting = true;
                if let Some(output) = output {
                    output
                        .line(
                            Stream::Stderr,
                            &format!("slipway: waiting for room on the cluster ({reason})"),
                        )
                        .await;
                }
            }
            Ok(false) => {
                return Err(Outcome::failed(
                    FailureKind::Unschedulable,
                    format!("no node can take the stage's Pod: {reason}"),
                ));
            }
            Err(e) => {
                return Err(Outcome::failed(
                    FailureKind::Unschedulable,
                    format!(
                        "no node can take the stage's Pod now: {reason} (with leave to list \
                         nodes slipway would wait while room may come: {e})"
                    ),
                ));
            }
        }
    }
}

fn scheduled(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
}

/// A Pod that failed otherwise (evicted, say): the caller's watches tell.
fn other_failure(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Failed" || p == "Succeeded")
}

/// The scheduler's reason when it could not place the Pod.
pub(super) fn unschedulable(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

/// Whether some node open to the Pod has CPU and memory enough for its
/// requests with nothing else on it.
async fn fits_somewhere(nodes: &Api<Node>, pod: &Pod) -> Result<bool, kube::Error> {
    let wanted = requests(pod);
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let list = nodes.list(&Default::default()).await?;
    Ok(list
        .items
        .iter()
        .any(|n| open(n, &tolerations) && covers(&allocatable(n), &wanted)))
}

/// CPU in nano-CPUs and memory in bytes; `None` where not set or not read.
#[derive(Debug, Default, PartialEq)]
struct Amounts {
    cpu: Option<i64>,
    memory: Option<i64>,
}

fn amounts(
    q: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> Amounts {
    let get = |key: &str| q.and_then(|m| m.get(key)).map(|v| v.0.as_str());
    Amounts {
        cpu: get("cpu").and_then(|v| cpu_nanos(v).ok()),
        memory: get("memory").and_then(|v| memory_bytes(v).ok()),
    }
}

/// The sum of the Pod's containers' requests.
fn requests(pod: &Pod) -> Amounts {
    let mut sum = Amounts::default();
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        let a = amounts(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
        let add = |x: Option<i64>, y: Option<i64>| match (x, y) {
            (Some(x), Some(y)) => Some(x.saturating_add(y)),
            (x, y) => x.or(y),
        };
        sum.cpu = add(sum.cpu, a.cpu);
        sum.memory = add(sum.memory, a.memory);
    }
    sum
}

fn allocatable(node: &Node) -> Amounts {
    amounts(node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
}

/// Whether `have` covers `want`; an amount that cannot be read is no
/// reason to give up.
fn covers(have: &Amounts, want: &Amounts) -> bool {
    let enough = |h: Option<i64>, w: Option<i64>| match (h, w) {
        (Some(h), Some(w)) => h >= w,
        _ => true,
    };
    enough(have.cpu, want.cpu) && enough(have.memory, want.memory)
}

/// A node the scheduler may place the Pod on: not cordoned, and each of
/// its taints that keeps Pods off tolerated.
fn open(node: &Node, tolerations: &[Toleration]) -> bool {
    let spec = node.spec.as_ref();
    if spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        return false;
    }
    spec.and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect = tol
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = tol.key.as_deref().unwrap_or_default();
    let matches = if tol.operator.as_deref() == Some("Exists") {
        key.is_empty() || key == taint.key
    } else {
        key == taint.key
            && tol.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
    };
    effect && matches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: serde_json::Value) -> Node {
        serde_json::from_value(json).expect("a node")
    }

    #[test]
    fn a_pod_fits_a_node_open_to_it_with_enough_allocatable() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "stage", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}},
                {"name": "service-0"}
            ]}
        }))
        .expect("a pod");
        let want = requests(&pod);
        assert_eq!(
            want,
            Amounts {
                cpu: Some(1_500_000_000),
                memory: Some(1 << 30)
            }
        );
        let two = node(serde_json::json!({"metadata": {"name": "a"},
            "status": {"allocatable": {"cpu": "2", "memory": "24563380Ki"}}}));
        let one = node(serde_json::json!({"metadata": {"name": "b"},
            "status": {"allocatable": {"cpu": "1", "memory": "24563380Ki"}}}));
        assert!(covers(&allocatable(&two), &want));
        assert!(!covers(&allocatable(&one), &want));
        assert!(open(&two, &[]));

        let cordoned =
            node(serde_json::json!({"metadata": {"name": "c"}, "spec": {"unschedulable": true}}));
        assert!(!open(&cordoned, &[]));
        let tainted = node(serde_json::json!({"metadata": {"name": "d"},
            "spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}));
        assert!(!open(&tainted, &[]));
        let exists: Toleration =
            serde_json::from_value(serde_json::json!({"key": "gpu", "operator": "Exists"}))
                .expect("t");
        assert!(open(&tainted, &[exists]));
        let other: Toleration =
            serde_json::from_value(serde_json::json!({"key": "gpu", "value": "no"})).expect("t");
        assert!(!open(&tainted, &[other]));
        let soft = node(serde_json::json!({"metadata": {"name": "e"},
            "spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}));
        assert!(open(&soft, &[]));
    }
}
