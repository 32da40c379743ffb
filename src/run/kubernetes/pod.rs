//! One attempt as one Pod: made, given the workspace, let go, followed to
//! its end, and deleted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, AttachParams, DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::{Inner, RUN_LABEL};
use crate::run::backend::{EnvValue, FailureKind, Job, Outcome, Output};
use crate::run::docker::Pull;
use crate::run::events::Stream;

const WORKSPACE: &str = "/workspace";

/// A failed API call as the stage's outcome: infrastructure when the API
/// server did not answer, the stage's own when it refused.
pub(super) fn failed(what: &str, e: &kube::Error) -> Outcome {
    match e {
        kube::Error::Api(s) if s.code == 403 => Outcome::stage(format!(
            "{what}: forbidden: {} (the account slipway runs as needs this verb on this resource)",
            s.message
        )),
        kube::Error::Api(s) => Outcome::stage(format!("{what}: {}", s.message)),
        other => Outcome::infrastructure(format!(
            "{what}: the Kubernetes API server does not answer ({other})"
        )),
    }
}

/// Runs one attempt of `job` as a Pod, to its end or until `cancel`; the
/// Pod is deleted either way.
pub(super) async fn attempt(
    inner: &Inner,
    job: Job,
    output: &Output,
    cancel: &CancellationToken,
) -> Outcome {
    let pods: Api<Pod> = Api::namespaced(inner.client.clone(), &inner.namespace);
    let keys = match inner.secret_keys(&job).await {
        Ok(k) => k,
        Err(o) => return o,
    };
    let nonce = crate::run::gate::nonce();
    let name = pod_name(&job.stage.name, job.attempt, &nonce);
    let pod = match spec(inner, &job, &name, &keys, &nonce) {
        Ok(p) => p,
        Err(e) => return Outcome::Internal(format!("cannot write the Pod spec: {e}")),
    };
    if let Err(e) = pods.create(&PostParams::default(), &pod).await {
        return failed("cannot create the stage's Pod", &e);
    }
    let outcome = tokio::select! {
        o = follow(&pods, &name, &job, output, &nonce) => o,
        () = cancel.cancelled() => Outcome::Cancelled,
    };
    // At once: a timed-out or cancelled script must not go on.
    let _ = pods
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;
    outcome
}

/// A Pod name: `slipway-<stage>-<attempt>-<part of the nonce>`, made a DNS
/// label (lower case, at most 63 characters).
fn pod_name(stage: &str, attempt: u32, nonce: &str) -> String {
    let suffix = format!("-{attempt}-{}", &nonce[nonce.len().saturating_sub(6)..]);
    let mut base: String = format!("slipway-{}", label_value(stage)).to_lowercase();
    base.truncate(63 - suffix.len());
    format!("{}{suffix}", base.trim_end_matches(['-', '.', '_']))
}

/// A label value: letters, digits, `-`, `_` and `.`, at most 63, starting
/// and ending with a letter or digit.
fn label_value(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut v = mapped.trim_matches('-').to_string();
    v.truncate(63);
    v.trim_end_matches('-').to_string()
}

fn spec(
    inner: &Inner,
    job: &Job,
    name: &str,
    keys: &BTreeMap<String, String>,
    nonce: &str,
) -> Result<Pod, serde_json::Error> {
    let image = job.stage.image.clone().unwrap_or_default();
    let script = job.stage.script().unwrap_or_default();
    let pull = match inner.pull {
        Pull::Never => "Never",
        Pull::Missing => "IfNotPresent",
        Pull::Always => "Always",
    };
    let env: Vec<serde_json::Value> = job
        .env
        .iter()
        .map(|(k, v)| match v {
            EnvValue::Plain(v) => serde_json::json!({ "name": k, "value": v }),
            EnvValue::Secret(v) => serde_json::json!({
                "name": k,
                "valueFrom": { "secretKeyRef": {
                    "name": inner.secret_name(),
                    "key": keys.get(v).cloned().unwrap_or_default(),
                }},
            }),
        })
        .collect();
    let mount = serde_json::json!([{ "name": "workspace", "mountPath": WORKSPACE }]);
    // `resources`: requests and limits alike, so the scheduler places the
    // stage where it fits and it gets no more than it asked for.
    let mut quantities = serde_json::Map::new();
    if let Some(r) = &job.stage.resources {
        if let Some(cpu) = &r.cpu {
            quantities.insert("cpu".into(), cpu.clone().into());
        }
        if let Some(memory) = &r.memory {
            quantities.insert("memory".into(), memory.clone().into());
        }
    }
    let resources = serde_json::json!({ "requests": quantities, "limits": quantities });
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                RUN_LABEL: inner.run(),
                "dev.slipway.stage": label_value(&job.stage.name),
                "dev.slipway.pipeline": label_value(&job.context.pipeline),
            },
            "annotations": { "slipway.dev/stage": job.stage.name },
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "enableServiceLinks": false,
            "automountServiceAccountToken": false,
            "volumes": [{ "name": "workspace", "emptyDir": {} }],
            "initContainers": [{
                "name": "workspace",
                "image": image,
                "imagePullPolicy": pull,
                "command": ["sh", "-c", format!("tar x -C {WORKSPACE}")],
                "stdin": true,
                "stdinOnce": true,
                "volumeMounts": mount,
            }],
            "containers": [{
                "name": "stage",
                "image": image,
                "imagePullPolicy": pull,
                "command": crate::run::gate::command(script, nonce),
                "stdin": true,
                "stdinOnce": true,
                "workingDir": WORKSPACE,
                "env": env,
                "volumeMounts": mount,
                "resources": resources,
            }],
        },
    }))
}

/// Gives the Pod its workspace, lets its script go, and follows it to its
/// end.
async fn follow(pods: &Api<Pod>, name: &str, job: &Job, output: &Output, nonce: &str) -> Outcome {
    let workspace = job.context.workspace.clone();
    let tar = match tokio::task::spawn_blocking(move || super::workspace::tar(&workspace)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Outcome::stage(format!("cannot read the workspace: {e}")),
        Err(e) => return Outcome::Internal(e.to_string()),
    };
    if let Err(o) = until(pods, name, |p| running(p, "workspace", true)).await {
        return o;
    }
    if let Err(o) = send(pods, name, "workspace", &tar, true).await {
        return o;
    }
    if let Err(o) = until(pods, name, |p| running(p, "stage", false)).await {
        return o;
    }
    // The line that lets the script run. Its output is read from the
    // container's log, followed: the kubelet keeps it whole, where it may
    // cut attach streams while it stops other containers.
    if let Err(o) = send(pods, name, "stage", b"\n", false).await {
        return o;
    }
    let mut log = LogLines {
        output,
        nonce,
        shown: 0,
        seen: 0,
        kept: Some(Vec::new()),
        kept_bytes: 0,
    };
    if let Some(code) = follow_log(pods, name, &mut log).await {
        // A followed log can miss a line written as the follow began; the
        // whole log, read now, has every line.
        let _ = fill_gaps(pods, name, &mut log).await;
        return Outcome::Exited(code);
    }
    if let Err(o) = until(pods, name, ended).await {
        return o;
    }
    // The container has ended, and its log may still be catching up with
    // its last lines (the engine writes it a moment after), or the kubelet
    // may not have the log of a container that ended at once ready yet:
    // read it again until the gate's end line is in it, for a moment at
    // most (a killed script never writes one).
    let mut unread = None;
    for _ in 0..25 {
        match whole_log(pods, name, &mut log).await {
            Ok(Some(code)) => return Outcome::Exited(code),
            Ok(None) => unread = None,
            Err(e) => unread = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    if let Some(e) = unread {
        output
            .line(
                Stream::Stderr,
                &format!("slipway: the stage container's log could not be read: {e}"),
            )
            .await;
    }
    terminated(pods, name).await
}

/// The stage container's log as it is read, once or more from its start:
/// each line is shown once (the log has both streams; its lines are shown
/// as output), the gate's end line never.
struct LogLines<'a> {
    output: &'a Output,
    nonce: &'a str,
    /// Lines shown so far.
    shown: usize,
    /// Lines read in this reading.
    seen: usize,
    /// The lines shown, while they are few enough to keep
    /// ([`KEPT_BYTES`]), to find the ones a followed log missed.
    kept: Option<Vec<String>>,
    kept_bytes: usize,
}

/// How much shown output is kept to check a followed log against.
const KEPT_BYTES: usize = 1 << 20;

impl LogLines<'_> {
    /// Reads one line; the status the gate's end line carries.
    async fn read(&mut self, line: &str) -> Option<i32> {
        let (text, status) = crate::run::gate::read_line(line, self.nonce);
        if let Some(text) = text {
            self.seen += 1;
            if self.seen > self.shown {
                self.output.line(Stream::Stdout, text).await;
                self.shown = self.seen;
                self.kept_bytes += text.len();
                if self.kept_bytes > KEPT_BYTES {
                    self.kept = None;
                } else if let Some(kept) = &mut self.kept {
                    kept.push(text.to_string());
                }
            }
        }
        status
    }
}

/// Shows the lines of the stage container's whole log that a followed
/// reading missed: those shown are in it in order, and every other line
/// (but the gate's) is shown now. Only when all that was shown is kept.
async fn fill_gaps(pods: &Api<Pod>, name: &str, log: &mut LogLines<'_>) -> Result<(), kube::Error> {
    let Some(kept) = log.kept.take() else {
        return Ok(());
    };
    let params = kube::api::LogParams {
        container: Some("stage".into()),
        ..Default::default()
    };
    let text = pods.logs(name, &params).await?;
    let mut next = kept.iter().peekable();
    for line in text.lines() {
        let (Some(text), _) = crate::run::gate::read_line(line, log.nonce) else {
            continue;
        };
        if next.peek().is_some_and(|k| k.as_str() == text) {
            next.next();
        } else {
            log.output.line(Stream::Stdout, text).await;
        }
    }
    Ok(())
}

/// Follows the stage container's log to the gate's end line (its status)
/// or the log's end.
async fn follow_log(pods: &Api<Pod>, name: &str, log: &mut LogLines<'_>) -> Option<i32> {
    use futures_util::{AsyncBufReadExt as _, StreamExt as _};
    let params = kube::api::LogParams {
        container: Some("stage".into()),
        follow: true,
        ..Default::default()
    };
    let mut lines = pods.log_stream(name, &params).await.ok()?.lines();
    log.seen = 0;
    while let Some(Ok(line)) = lines.next().await {
        if let Some(status) = log.read(&line).await {
            return Some(status);
        }
    }
    None
}

/// Reads the stage container's whole log, showing what was not shown yet;
/// the gate's status if the log has its end line.
async fn whole_log(
    pods: &Api<Pod>,
    name: &str,
    log: &mut LogLines<'_>,
) -> Result<Option<i32>, kube::Error> {
    let params = kube::api::LogParams {
        container: Some("stage".into()),
        ..Default::default()
    };
    let text = pods.logs(name, &params).await?;
    log.seen = 0;
    for line in text.lines() {
        if let Some(status) = log.read(line).await {
            return Ok(Some(status));
        }
    }
    Ok(None)
}

/// What a Pod's state means while slipway waits for `container`:
/// `Some(Ok)` it runs, `Some(Err)` the stage cannot go on, `None` not yet.
fn running(pod: &Pod, container: &str, init: bool) -> Option<Result<(), Outcome>> {
    if let Some(o) = stuck(pod) {
        return Some(Err(o));
    }
    let status = pod.status.as_ref()?;
    let statuses = if init {
        status.init_container_statuses.as_ref()
    } else {
        status.container_statuses.as_ref()
    }?;
    let s = statuses.iter().find(|s| s.name == container)?;
    let state = s.state.as_ref()?;
    if state.running.is_some() {
        return Some(Ok(()));
    }
    if let Some(t) = &state.terminated {
        if init {
            return Some(Err(Outcome::stage(format!(
                "the workspace could not be unpacked in the Pod (exit {}{})",
                t.exit_code,
                t.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ))));
        }
        // Ended before slipway attached: only the gate's end of input ends
        // it this way, or a kill.
        return Some(Ok(()));
    }
    None
}

/// A Pod that will not get going: unschedulable, its image not pulled, its
/// container not creatable, or evicted.
fn stuck(pod: &Pod) -> Option<Outcome> {
    let status = pod.status.as_ref()?;
    if status.reason.as_deref() == Some("Evicted") {
        return Some(Outcome::failed(
            FailureKind::Evicted,
            format!(
                "the Pod was evicted: {}",
                status.message.clone().unwrap_or_default()
            ),
        ));
    }
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
        {
            return Some(Outcome::failed(
                FailureKind::Unschedulable,
                format!(
                    "no node can take the stage's Pod: {}",
                    c.message.clone().unwrap_or_default()
                ),
            ));
        }
    }
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in all {
        if let Some(o) = waiting_for_good(c) {
            return Some(o);
        }
    }
    None
}

fn waiting_for_good(c: &ContainerStatus) -> Option<Outcome> {
    let waiting = c.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    let message = waiting.message.clone().unwrap_or_default();
    match reason {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            Some(Outcome::failed(
                FailureKind::ImagePull,
                format!(
                    "image `{}` could not be pulled ({reason}): {message}",
                    c.image
                ),
            ))
        }
        "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
            Some(Outcome::stage(format!(
                "the stage's container could not start ({reason}): {message}"
            )))
        }
        _ => None,
    }
}

/// Whether the stage's container has terminated.
fn ended(pod: &Pod) -> Option<Result<(), Outcome>> {
    let status = pod.status.as_ref()?;
    let c = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "stage")?;
    c.state.as_ref()?.terminated.as_ref().map(|_| Ok(()))
}

/// How the stage's container ended, from its terminated state.
async fn terminated(pods: &Api<Pod>, name: &str) -> Outcome {
    let pod = match pods.get(name).await {
        Ok(p) => p,
        Err(e) => return failed("cannot read the stage's Pod", &e),
    };
    let t = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().find(|c| c.name == "stage"))
        .and_then(|c| c.state)
        .and_then(|s| s.terminated);
    match t {
        Some(t) if t.reason.as_deref() == Some("OOMKilled") => Outcome::failed(
            FailureKind::OomKilled,
            format!(
                "killed: the container ran out of memory (exit {})",
                t.exit_code
            ),
        ),
        Some(t) => Outcome::Exited(t.exit_code),
        None => Outcome::infrastructure("the stage's Pod went away"),
    }
}

/// Waits, watching the Pod, until `state` says it may go on (`Ok`) or
/// cannot (`Err`).
async fn until(
    pods: &Api<Pod>,
    name: &str,
    state: impl Fn(&Pod) -> Option<Result<(), Outcome>>,
) -> Result<(), Outcome> {
    let decided = |p: Option<&Pod>| p.is_none_or(|p| state(p).is_some());
    match await_condition(pods.clone(), name, decided).await {
        Ok(Some(pod)) => state(&pod).unwrap_or(Ok(())),
        Ok(None) => Err(Outcome::infrastructure("the stage's Pod was deleted")),
        Err(e) => Err(Outcome::infrastructure(format!(
            "watching the stage's Pod failed: {e}"
        ))),
    }
}

/// Attaches to `container`'s standard input, writes `input` and closes it;
/// with `wait`, waits for the attachment to end (the container to be done
/// with its input).
async fn send(
    pods: &Api<Pod>,
    name: &str,
    container: &str,
    input: &[u8],
    wait: bool,
) -> Result<(), Outcome> {
    let params = AttachParams::default()
        .container(container)
        .stdin(true)
        .stdout(false)
        .stderr(false);
    let mut attached = pods
        .attach(name, &params)
        .await
        .map_err(|e| failed("cannot attach to the stage's Pod", &e))?;
    if let Some(mut stdin) = attached.stdin() {
        stdin.write_all(input).await.map_err(|e| {
            Outcome::infrastructure(format!("cannot write to the stage's Pod: {e}"))
        })?;
        let _ = stdin.shutdown().await;
    }
    if wait {
        let _ = attached.join().await;
    } else {
        // The attachment ends with the container; its output is read from
        // the log meanwhile.
        tokio::spawn(async move {
            let _ = attached.join().await;
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_and_label_values_are_what_the_api_takes() {
        let n = pod_name("test[NODE=18]", 2, "slipway-end-0123456789abcdef");
        assert_eq!(n, "slipway-test-node-18-2-abcdef");
        let long = pod_name(&"x".repeat(200), 1, "slipway-end-00aa11");
        assert!(long.len() <= 63 && long.ends_with("-1-00aa11"), "{long}");
        assert_eq!(label_value("-a.b[c]-"), "a-b-c");
    }
}
