//! One attempt as one Pod: made, given the workspace, let go, followed to
//! its end, and deleted.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, AttachParams, DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::{Inner, RUN_LABEL};
use crate::run::backend::{EnvValue, FailureKind, Job, Outcome, Output, Starting};
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

/// A Pod whose script waits at its gate: made, its workspace unpacked.
pub(super) struct Ready {
    pub(super) name: String,
    nonce: String,
    /// What the stage is told when its gate opens (a cache not kept).
    warnings: Vec<String>,
    /// Set once it is made.
    gate: Option<Gate>,
    /// Whether `/workspace` is a volume of its own (see [`make`]).
    volume: bool,
}

/// What opens a made Pod's gate and reads its script's output, opened
/// while the Pod is made so that the stage's turn only writes one line.
struct Gate {
    /// The stage container's standard input, attached.
    stdin: tokio::io::WriteHalf<tokio::io::SimplexStream>,
    /// Its output, attached from before the gate opens: no line the script
    /// writes can come before.
    streams: Streams,
}

/// A container's two output streams, attached.
struct Streams {
    stdout: tokio::io::ReadHalf<tokio::io::SimplexStream>,
    stderr: tokio::io::ReadHalf<tokio::io::SimplexStream>,
    /// Kept while the streams are read: dropped, it ends the attach.
    _attached: kube::api::AttachedProcess,
}

type LogStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<String>> + Send>>;

/// A Pod's name and its gate's nonce, before it is made.
pub(super) fn named(job: &Job) -> Ready {
    let nonce = crate::run::gate::nonce();
    Ready {
        name: pod_name(&job.stage.name, job.attempt, &nonce),
        nonce,
        warnings: Vec::new(),
        gate: None,
        volume: false,
    }
}

/// Why making a Pod failed: unpacking the workspace, which is tried again
/// on a volume, or anything else.
enum Made {
    Unpacking(Outcome),
    Other(Outcome),
}

impl From<Outcome> for Made {
    fn from(o: Outcome) -> Self {
        Self::Other(o)
    }
}

/// Runs one attempt of `job` as a Pod, to its end or until `cancel`; the
/// Pod is deleted either way. With `ready`, a Pod made ahead whose script
/// only waits for its gate to open.
pub(super) async fn attempt(
    inner: &Inner,
    job: Job,
    ready: Option<Ready>,
    starting: Starting,
    output: &Output,
    cancel: &CancellationToken,
) -> Outcome {
    let pods: Api<Pod> = Api::namespaced(inner.client.clone(), &inner.namespace);
    let mut pod = ready.unwrap_or_else(|| named(&job));
    let name = pod.name.clone();
    let outcome = tokio::select! {
        o = async {
            if pod.gate.is_none() {
                make(inner, &pods, &job, &mut pod, Some(output)).await?;
            }
            drop(starting);
            put_artifacts(&pods, &pod.name, &job).await?;
            Ok::<_, Outcome>(go(&pods, pod, &job, output).await)
        } => o.unwrap_or_else(|o| o),
        () = cancel.cancelled() => Outcome::Cancelled,
    };
    if matches!(outcome, Outcome::Exited(_)) {
        // Its script has ended: the next stage need not wait for the
        // delete (the run's close deletes every Pod of the run anyway).
        tokio::spawn(async move { delete(&pods, &name).await });
    } else {
        // At once: a timed-out or cancelled script must not go on.
        delete(&pods, &name).await;
    }
    outcome
}

/// With `SLIPWAY_POD_TIMINGS` set, says on standard error when one of a
/// Pod's steps is done, in seconds since the run's first: where a Pod's
/// time goes (`scripts/bench-run` sums them up).
pub(super) fn mark(name: &str, what: &str) {
    static T0: std::sync::OnceLock<Option<std::time::Instant>> = std::sync::OnceLock::new();
    let t0 = T0
        .get_or_init(|| std::env::var_os("SLIPWAY_POD_TIMINGS").map(|_| std::time::Instant::now()));
    if let Some(t0) = t0 {
        eprintln!("pod-timing {:.3} {name} {what}", t0.elapsed().as_secs_f64());
    }
}

/// Deletes a Pod at once (no grace: its script must not go on).
pub(super) async fn delete(pods: &Api<Pod>, name: &str) {
    let _ = pods
        .delete(name, &DeleteParams::default().grace_period(0))
        .await;
}

/// Makes the Pod `pod` names for `job`, unpacks the workspace in it, and
/// opens its gate's attach and log; done when its script waits at its
/// gate.
///
/// `/workspace` is first the container's own folder, made by the engine:
/// a volume costs the kubelet a few hundred milliseconds more before the
/// Pod starts. That folder is root's, so in an image whose user is not
/// root the unpacking fails: the Pod is then made again, named anew, with
/// an `emptyDir` volume any user can write.
pub(super) async fn make(
    inner: &Inner,
    pods: &Api<Pod>,
    job: &Job,
    pod: &mut Ready,
    output: Option<&Output>,
) -> Result<(), Outcome> {
    match make_once(inner, pods, job, pod, output).await {
        Ok(()) => Ok(()),
        Err(Made::Unpacking(_)) if !pod.volume => {
            mark(&pod.name, "again, with a volume");
            delete(pods, &pod.name).await;
            *pod = Ready {
                volume: true,
                ..named(job)
            };
            make_once(inner, pods, job, pod, output)
                .await
                .map_err(|(Made::Unpacking(o) | Made::Other(o))| o)
        }
        Err(Made::Unpacking(o) | Made::Other(o)) => Err(o),
    }
}

async fn make_once(
    inner: &Inner,
    pods: &Api<Pod>,
    job: &Job,
    pod: &mut Ready,
    output: Option<&Output>,
) -> Result<(), Made> {
    let keys = inner.secret_keys(job).await?;
    let claims = super::caches::claims(inner, job).await;
    let spec = spec(inner, job, pod, &keys, &claims)
        .map_err(|e| Outcome::Internal(format!("cannot write the Pod spec: {e}")))?;
    pod.warnings = claims.iter().filter_map(|c| c.warning.clone()).collect();
    let workspace = job.context.workspace.clone();
    let tar = tokio::task::spawn_blocking(move || super::workspace::tar(&workspace));
    mark(&pod.name, "create");
    let sent = std::sync::atomic::AtomicBool::new(false);
    let post = PostParams::default();
    let created = in_transit(|| {
        let again = sent.swap(true, std::sync::atomic::Ordering::Relaxed);
        let create = pods.create(&post, &spec);
        async move {
            match create.await {
                // Sent before the connection dropped: the name is this
                // attempt's own.
                Err(kube::Error::Api(s)) if s.code == 409 && again => Ok(()),
                other => other.map(drop),
            }
        }
    })
    .await;
    created.map_err(|e| failed("cannot create the stage's Pod", &e))?;
    mark(&pod.name, "created");
    let tar = match tar.await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(Outcome::stage(format!("cannot read the workspace: {e}")).into()),
        Err(e) => return Err(Outcome::Internal(e.to_string()).into()),
    };
    let name = &pod.name;
    // Beside the rest: whether the scheduler places the Pod, or it waits
    // for room, or no node could ever take it.
    let nodes = Api::all(inner.client.clone());
    let placing = super::room::placed(pods, &nodes, name, output);
    let going = async {
        // The kubelet reports a container running only when it next looks
        // (every second), and its status reaches the API server later still
        // when it has many to post; but it can exec in one as soon as the
        // engine runs it.
        let unpacking = eagerly(
            pods,
            name,
            |p| running(p, "stage"),
            || start_unpack(pods, name, tar.len()),
        )
        .await?
        .map_err(|e| failed("cannot send the workspace into the stage's Pod", &e))?;
        mark(name, "running");
        let (unpacked, attached) = tokio::join!(unpack(unpacking, &tar), attach(pods, name));
        unpacked.map_err(Made::Unpacking)?;
        let (stdin, streams) = attached?;
        services_ready(pods, name, job).await?;
        Ok::<_, Made>(Gate { stdin, streams })
    };
    let ((), gate) = tokio::try_join!(async { placing.await.map_err(Made::Other) }, going)?;
    pod.gate = Some(gate);
    mark(name, "ready");
    Ok(())
}

/// Tries `call` every [`EAGER`] until it works, and once more, for good,
/// when the Pod's `state` says it may go on: `Ok` with the last try's
/// result, `Err` when `state` says it cannot.
async fn eagerly<T, E, F: Future<Output = Result<T, E>>>(
    pods: &Api<Pod>,
    name: &str,
    state: impl Fn(&Pod) -> Option<Result<(), Outcome>>,
    call: impl Fn() -> F,
) -> Result<Result<T, E>, Outcome> {
    let seen = until(pods, name, state);
    tokio::pin!(seen);
    let mut tries = tokio::time::interval(EAGER);
    tries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            r = &mut seen => {
                r?;
                return Ok(call().await);
            }
            _ = tries.tick() => {
                if let Ok(t) = call().await {
                    return Ok(Ok(t));
                }
            }
        }
    }
}

/// How often a call that needs the stage's container running is tried
/// before the Pod is seen running.
const EAGER: std::time::Duration = std::time::Duration::from_millis(150);

/// Starts unpacking a tar of `len` bytes into `/workspace` with `tar` in
/// the stage's container (see [`unpack`]).
async fn start_unpack(
    pods: &Api<Pod>,
    name: &str,
    len: usize,
) -> Result<kube::api::AttachedProcess, kube::Error> {
    start_unpack_in(pods, name, len, WORKSPACE).await
}

/// Starts unpacking a tar of `len` bytes into `dir` (made if missing).
async fn start_unpack_in(
    pods: &Api<Pod>,
    name: &str,
    len: usize,
    dir: &str,
) -> Result<kube::api::AttachedProcess, kube::Error> {
    let params = AttachParams::default()
        .container("stage")
        .stdin(true)
        .stdout(false)
        .stderr(true);
    let command = format!("mkdir -p \"$1\" && head -c {len} | tar x -C \"$1\"");
    pods.exec(name, ["sh", "-c", command.as_str(), "sh", dir], &params)
        .await
}

/// Copies earlier stages' artifacts into the stage's container before its
/// gate opens, each at the path its stage declared.
async fn put_artifacts(pods: &Api<Pod>, name: &str, job: &Job) -> Result<(), Outcome> {
    let store = &job.context.artifacts;
    for key in &job.inputs {
        let Some(tar) = store.get(key) else {
            // The stage did not run in this run (a target was chosen).
            continue;
        };
        let target = crate::run::artifacts::in_container(&key.path);
        let parent = std::path::Path::new(&target)
            .parent()
            .map_or("/".to_string(), |p| p.display().to_string());
        let what = format!("cannot copy artifact `{}` of `{}` in", key.path, key.stage);
        let unpacking = start_unpack_in(pods, name, tar.len(), &parent)
            .await
            .map_err(|e| failed(&what, &e))?;
        unpack(unpacking, &tar)
            .await
            .map_err(|_| Outcome::stage(format!("{what}: `tar` in the stage's image failed")))?;
    }
    Ok(())
}

/// Runs `command` in `container` of Pod `name` to its end: whether it
/// succeeded, its standard output, and its standard error.
async fn run_in(
    pods: &Api<Pod>,
    name: &str,
    container: &str,
    command: &[&str],
) -> Result<(bool, Vec<u8>, String), kube::Error> {
    use tokio::io::AsyncReadExt as _;
    let params = AttachParams::default()
        .container(container)
        .stdout(true)
        .stderr(true);
    let mut process = pods.exec(name, command.to_vec(), &params).await?;
    let status = process.take_status();
    let (mut out, mut err) = (process.stdout(), process.stderr());
    let (mut stdout, mut stderr) = (Vec::new(), String::new());
    let read_out = async {
        if let Some(out) = &mut out {
            let _ = out.read_to_end(&mut stdout).await;
        }
    };
    let read_err = async {
        if let Some(err) = &mut err {
            let _ = err.read_to_string(&mut stderr).await;
        }
    };
    tokio::join!(read_out, read_err);
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let _ = process.join().await;
    let ok = status.is_some_and(|s| s.status.as_deref() == Some("Success"));
    Ok((ok, stdout, stderr))
}

/// Copies a finished stage's artifacts out of its container (still there:
/// the gate waits for its input to end) into the store.
async fn take_artifacts(pods: &Api<Pod>, name: &str, job: &Job) -> Result<(), Outcome> {
    for key in &job.outputs {
        let source = crate::run::artifacts::in_container(&key.path);
        let path = std::path::Path::new(&source);
        let parent = path
            .parent()
            .map_or("/".into(), |p| p.display().to_string());
        let base = path
            .file_name()
            .map_or(".".into(), |b| b.to_string_lossy().into_owned());
        let (ok, tar, errors) = run_in(pods, name, "stage", &["tar", "c", "-C", &parent, &base])
            .await
            .map_err(|e| failed(&format!("cannot copy artifact `{}` out", key.path), &e))?;
        if !ok {
            return Err(Outcome::stage(format!(
                "artifact `{}` was not produced ({})",
                key.path,
                errors.trim()
            )));
        }
        job.context
            .artifacts
            .put(key, &tar)
            .map_err(Outcome::stage)?;
    }
    Ok(())
}

/// The container of the `index`th service.
fn service_container(index: usize) -> String {
    format!("service-{index}")
}

/// How long a stage waits for its services to be ready (as on Docker);
/// its own `timeout` may end it sooner.
const READY_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until each of the stage's services is ready: its `ready` command
/// succeeds in its container, or, without one, the container runs. A
/// service that ends or cannot start fails the stage, with what its check
/// last said.
async fn services_ready(pods: &Api<Pod>, name: &str, job: &Job) -> Result<(), Outcome> {
    for (index, svc) in job.stage.services.iter().enumerate() {
        let container = service_container(index);
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        let command: Vec<&str> = match &svc.ready {
            Some(c) => vec!["sh", "-c", c.as_str()],
            None => vec!["true"],
        };
        let mut last = String::new();
        loop {
            // A check that hangs is cut at the deadline.
            let tried = tokio::time::timeout_at(deadline, run_in(pods, name, &container, &command));
            if let Ok(Ok((ok, out, err))) = tried.await {
                if ok {
                    break;
                }
                let said = format!("{}{err}", String::from_utf8_lossy(&out));
                last = said.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
            }
            let pod = get_pod(pods, name)
                .await
                .map_err(|e| failed("cannot read the stage's Pod", &e))?;
            if let Some(o) = stuck(&pod) {
                return Err(match o {
                    Outcome::Failed(f) => Outcome::Failed(crate::run::backend::Failure {
                        message: format!("service `{}`: {}", svc.name, f.message),
                        ..f
                    }),
                    other => other,
                });
            }
            let state = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == container))
                .and_then(|c| c.state.clone());
            if let Some(t) = state.as_ref().and_then(|s| s.terminated.as_ref()) {
                return Err(Outcome::stage(format!(
                    "service `{}` exited with {} before it was ready",
                    svc.name, t.exit_code
                )));
            }
            if svc.ready.is_none() && state.as_ref().is_some_and(|s| s.running.is_some()) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Outcome::stage(format!(
                    "service `{}` was not ready after {}{}",
                    svc.name,
                    humantime::format_duration(READY_LIMIT),
                    if last.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", last.trim())
                    }
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// Attaches to the stage container: its standard input and its output.
/// One attach for both: the engine closes a
/// container's input (`stdinOnce`) when any attach to it ends.
async fn attach(
    pods: &Api<Pod>,
    name: &str,
) -> Result<(tokio::io::WriteHalf<tokio::io::SimplexStream>, Streams), Outcome> {
    let params = AttachParams::default()
        .container("stage")
        .stdin(true)
        .stdout(true)
        .stderr(true);
    let mut attached = in_transit(|| pods.attach(name, &params))
        .await
        .map_err(|e| failed("cannot attach to the stage's Pod", &e))?;
    let stdin = attached
        .stdin()
        .ok_or_else(|| Outcome::Internal("an attach without standard input".into()))?;
    let (Some(stdout), Some(stderr)) = (attached.stdout(), attached.stderr()) else {
        return Err(Outcome::Internal("an attach without output".into()));
    };
    let streams = Streams {
        stdout,
        stderr,
        _attached: attached,
    };
    Ok((stdin, streams))
}

/// The stage container's log, followed.
async fn open_log(pods: &Api<Pod>, name: &str) -> Result<LogStream, kube::Error> {
    use futures_util::AsyncBufReadExt as _;
    let params = kube::api::LogParams {
        container: Some("stage".into()),
        follow: true,
        ..Default::default()
    };
    let lines = pods.log_stream(name, &params).await?.lines();
    Ok(Box::pin(lines))
}

/// Sends the workspace's tar to its unpacking in the stage's container
/// (begun by [`start_unpack`]), while its script waits at the gate, and
/// waits for it to end. The command reads as
/// many bytes as the tar has and no more: an API server before 1.29 can
/// end an exec's input only by closing the whole stream, and then the
/// command's status would never come back.
async fn unpack(mut unpacking: kube::api::AttachedProcess, tar: &[u8]) -> Result<(), Outcome> {
    use tokio::io::AsyncReadExt as _;
    let status = unpacking.take_status();
    let mut stderr = unpacking.stderr();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(stderr) = &mut stderr {
            let _ = stderr.read_to_string(&mut text).await;
        }
        text
    });
    // Kept open until the status comes (see above).
    let mut stdin = unpacking.stdin();
    if let Some(stdin) = &mut stdin {
        stdin.write_all(tar).await.map_err(|e| {
            Outcome::infrastructure(format!(
                "cannot send the workspace into the stage's Pod: {e}"
            ))
        })?;
        let _ = stdin.flush().await;
    }
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    drop(stdin);
    let _ = unpacking.join().await;
    let errors = errors.await.unwrap_or_default();
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => Ok(()),
        Some(s) => Err(Outcome::stage(format!(
            "the workspace could not be unpacked in the stage's container (`tar` from its image): {}{}",
            s.message.unwrap_or_default(),
            if errors.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", errors.trim())
            }
        ))),
        None => Err(Outcome::infrastructure(
            "the workspace was sent into the stage's Pod, but its unpacking did not report how it ended",
        )),
    }
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
    pod: &Ready,
    keys: &BTreeMap<String, String>,
    claims: &[super::caches::Claim],
) -> Result<Pod, serde_json::Error> {
    let (name, nonce) = (pod.name.as_str(), pod.nonce.as_str());
    let image = job.stage.image.clone().unwrap_or_default();
    let script = job.stage.script().unwrap_or_default();
    let pull = match inner.pull {
        Pull::Never => "Never",
        Pull::Missing => "IfNotPresent",
        Pull::Always => "Always",
    };
    let mount = serde_json::json!([{ "name": "workspace", "mountPath": WORKSPACE }]);
    // Each cache: its claim when it is bound, else an empty folder.
    let (mut volumes, mut stage_mounts) = if pod.volume {
        (
            vec![serde_json::json!({ "name": "workspace", "emptyDir": {} })],
            mount.as_array().cloned().unwrap_or_default(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    for (i, c) in claims.iter().enumerate() {
        let volume = format!("cache-{i}");
        volumes.push(match &c.claim {
            Some(claim) => serde_json::json!({
                "name": volume,
                "persistentVolumeClaim": { "claimName": claim },
            }),
            None => serde_json::json!({ "name": volume, "emptyDir": {} }),
        });
        stage_mounts.push(serde_json::json!({ "name": volume, "mountPath": c.path }));
    }
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
    let env_of = |env: &crate::run::backend::Env| -> Vec<serde_json::Value> {
        env.iter()
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
            .collect()
    };
    let mut containers = vec![serde_json::json!({
        "name": "stage",
        "image": image,
        "imagePullPolicy": pull,
        "command": crate::run::gate::command(script, nonce),
        "stdin": true,
        "stdinOnce": true,
        "workingDir": WORKSPACE,
        "env": env_of(&job.env),
        "volumeMounts": stage_mounts,
        "resources": resources,
    })];
    for (index, svc) in job.stage.services.iter().enumerate() {
        let empty = crate::run::backend::Env::new();
        containers.push(serde_json::json!({
            "name": service_container(index),
            "image": svc.image,
            "imagePullPolicy": pull,
            "env": env_of(job.service_env.get(index).unwrap_or(&empty)),
        }));
    }
    // Services answer on localhost, as in one network namespace, and by
    // their names.
    let names: Vec<&str> = job.stage.services.iter().map(|s| s.name.as_str()).collect();
    let aliases = if names.is_empty() {
        serde_json::json!([])
    } else {
        serde_json::json!([{ "ip": "127.0.0.1", "hostnames": names }])
    };
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
            "volumes": volumes,
            "containers": containers,
            "hostAliases": aliases,
        },
    }))
}

/// Lets the script of a Pod at its gate go, and follows it to its end.
async fn go(pods: &Api<Pod>, pod: Ready, job: &Job, output: &Output) -> Outcome {
    let (name, nonce) = (pod.name.as_str(), pod.nonce.as_str());
    // Both kept to the end: the attach ending closes the container's input,
    // and the gate then lets the container end (see `gate`).
    let Some(Gate {
        mut stdin,
        mut streams,
    }) = pod.gate
    else {
        return Outcome::Internal("a Pod's gate was opened before it was made".into());
    };
    mark(name, "go");
    for w in &pod.warnings {
        output.line(Stream::Stderr, &format!("slipway: {w}")).await;
    }
    // The line that lets the script run. The input stays open: before API
    // server 1.29, ending it ends the whole attach, output too (the script
    // reads no input: see `gate`).
    let sent = async {
        stdin.write_all(b"\n").await?;
        stdin.flush().await
    };
    if let Err(e) = sent.await {
        return Outcome::infrastructure(format!("cannot write to the stage's Pod: {e}"));
    }
    let mut shown = Shown {
        output,
        nonce,
        count: 0,
        kept: Some(HashMap::new()),
        kept_bytes: 0,
    };
    // The attach alone may not notice an API server that went away: the
    // Pod is watched meanwhile, and a watch that fails ends the stage.
    let attached = tokio::select! {
        code = read_attached(&mut streams, &mut shown) => code,
        gone = until(pods, name, |_| None) => {
            return gone.err().unwrap_or_else(|| {
                Outcome::infrastructure("the stage's Pod was deleted")
            });
        }
    };
    if let Some(code) = attached {
        mark(name, "end");
        if code == 0
            && let Err(o) = take_artifacts(pods, name, job).await
        {
            return o;
        }
        return Outcome::Exited(code);
    }
    // The attach streams were cut before the gate's end lines (the kubelet
    // may cut them while it stops other containers): the log has the rest.
    if let Some(code) = follow_log(pods, name, &mut shown).await {
        mark(name, "end");
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
        match whole_log(pods, name, &mut shown).await {
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
    match terminated(pods, name).await {
        // The gate ends this way only when the container's input closed
        // before its line came: the script never began.
        Outcome::Exited(0) => Outcome::infrastructure(
            "the stage's container lost its input before its script began (its attach was cut); the script did not run",
        ),
        other => other,
    }
}

/// Reads the stage container's attach streams to the gate's end line on
/// both: its status. `None` when they end before.
async fn read_attached(streams: &mut Streams, shown: &mut Shown<'_>) -> Option<i32> {
    use tokio::io::AsyncBufReadExt as _;
    let (mut out, mut err) = (
        tokio::io::BufReader::new(&mut streams.stdout),
        tokio::io::BufReader::new(&mut streams.stderr),
    );
    let (mut out_line, mut err_line) = (Vec::new(), Vec::new());
    let (mut status, mut err_done) = (None, false);
    while status.is_none() || !err_done {
        // Reading a line is cancel safe: what was read stays in its
        // buffer for the next call.
        tokio::select! {
            read = out.read_until(b'\n', &mut out_line), if status.is_none() => {
                if !matches!(read, Ok(n) if n > 0) {
                    return None;
                }
                let line = String::from_utf8_lossy(&out_line).into_owned();
                out_line.clear();
                status = shown.attached(Stream::Stdout, &line).await;
            }
            read = err.read_until(b'\n', &mut err_line), if !err_done => {
                if !matches!(read, Ok(n) if n > 0) {
                    return None;
                }
                let line = String::from_utf8_lossy(&err_line).into_owned();
                err_line.clear();
                err_done = shown.attached(Stream::Stderr, &line).await.is_some();
            }
        }
    }
    status
}

/// The stage container's output as it is shown: from its attach streams,
/// live from the engine (whether or not the kubelet has noticed the
/// container yet), and, should they be cut, from its log, which the
/// kubelet keeps whole (but gives only once it has seen the container
/// run). Each line is shown once, the gate's end line never.
struct Shown<'a> {
    output: &'a Output,
    nonce: &'a str,
    /// Lines shown so far.
    count: usize,
    /// Each line shown and how often, while they are few enough to keep
    /// ([`KEPT_BYTES`]): a reading of the log shows only the lines not
    /// shown yet, whatever order the two attach streams came in.
    kept: Option<HashMap<String, usize>>,
    kept_bytes: usize,
}

/// How much shown output is kept to check a log against.
const KEPT_BYTES: usize = 1 << 20;

/// One reading of the log from its start: the lines it skips, as shown
/// before it began.
struct Reading {
    kept: Option<HashMap<String, usize>>,
    /// Without them (too much output to keep), the first `count` lines.
    count: usize,
    seen: usize,
}

impl Shown<'_> {
    async fn show(&mut self, stream: Stream, text: &str) {
        self.output.line(stream, text).await;
        self.count += 1;
        self.kept_bytes += text.len();
        if self.kept_bytes > KEPT_BYTES {
            self.kept = None;
        } else if let Some(kept) = &mut self.kept {
            *kept.entry(text.to_string()).or_default() += 1;
        }
    }

    /// One line from an attach stream; the status its end line carries.
    async fn attached(&mut self, stream: Stream, line: &str) -> Option<i32> {
        let (text, status) = crate::run::gate::read_line(line, self.nonce);
        if let Some(text) = text {
            self.show(stream, text).await;
        }
        status
    }

    fn reading(&self) -> Reading {
        Reading {
            kept: self.kept.clone(),
            count: self.count,
            seen: 0,
        }
    }

    /// One line of the log in `reading`; the status its end line carries.
    /// The log merges both streams: its lines are shown as output.
    async fn logged(&mut self, reading: &mut Reading, line: &str) -> Option<i32> {
        let (text, status) = crate::run::gate::read_line(line, self.nonce);
        if let Some(text) = text {
            let before = match &mut reading.kept {
                Some(kept) => kept.get_mut(text).is_some_and(|n| {
                    let was = *n > 0;
                    *n = n.saturating_sub(1);
                    was
                }),
                None => {
                    reading.seen += 1;
                    reading.seen <= reading.count
                }
            };
            if !before {
                self.show(Stream::Stdout, text).await;
            }
        }
        status
    }
}

/// Follows the stage container's log from its start to the gate's end
/// line (its status) or the log's end, showing what was not shown yet.
async fn follow_log(pods: &Api<Pod>, name: &str, shown: &mut Shown<'_>) -> Option<i32> {
    use futures_util::StreamExt as _;
    // The kubelet has a log to give once it has seen the container run.
    let mut lines = eagerly(pods, name, started, || open_log(pods, name))
        .await
        .ok()?
        .ok()?;
    mark(name, "log");
    let mut reading = shown.reading();
    while let Some(Ok(line)) = lines.next().await {
        if let Some(status) = shown.logged(&mut reading, &line).await {
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
    shown: &mut Shown<'_>,
) -> Result<Option<i32>, kube::Error> {
    let params = kube::api::LogParams {
        container: Some("stage".into()),
        ..Default::default()
    };
    let text = pods.logs(name, &params).await?;
    let mut reading = shown.reading();
    for line in text.lines() {
        if let Some(status) = shown.logged(&mut reading, line).await {
            return Ok(Some(status));
        }
    }
    Ok(None)
}

/// What a Pod's state means while slipway waits for `container` to run:
/// `Some(Ok)` it runs, `Some(Err)` the stage cannot go on, `None` not yet.
fn running(pod: &Pod, container: &str) -> Option<Result<(), Outcome>> {
    if let Some(o) = stuck(pod) {
        return Some(Err(o));
    }
    let status = pod.status.as_ref()?;
    let s = status
        .container_statuses
        .iter()
        .flatten()
        .find(|s| s.name == container)?;
    let state = s.state.as_ref()?;
    if state.running.is_some() {
        return Some(Ok(()));
    }
    if let Some(t) = &state.terminated {
        // Its script waits at the gate: only a kill ends it before then.
        return Some(Err(Outcome::stage(format!(
            "the stage's container ended before its script began (exit {}{})",
            t.exit_code,
            t.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ))));
    }
    None
}

/// A Pod that will not get going: its image not pulled, its container not
/// creatable, or evicted. (One the scheduler cannot place yet is for
/// [`super::room::placed`] to judge.)
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

/// Whether the kubelet has seen the stage's container run (it may have
/// ended since).
fn started(pod: &Pod) -> Option<Result<(), Outcome>> {
    let status = pod.status.as_ref()?;
    let c = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "stage")?;
    let state = c.state.as_ref()?;
    (state.running.is_some() || state.terminated.is_some()).then_some(Ok(()))
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
    let pod = match get_pod(pods, name).await {
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
    let mut tries = 0;
    loop {
        match await_condition(pods.clone(), name, &decided).await {
            Ok(Some(pod)) => return state(&pod).unwrap_or(Ok(())),
            Ok(None) => return Err(Outcome::infrastructure("the stage's Pod was deleted")),
            // A connection the API server dropped: watched again, a few
            // times.
            Err(_) if tries < RETRIES => {
                tries += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => {
                return Err(Outcome::infrastructure(format!(
                    "watching the stage's Pod failed: {e}"
                )));
            }
        }
    }
}

/// How often a read that failed in transit is tried again, and after how
/// long: the API server may drop a pooled connection under load.
const RETRIES: u32 = 3;
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// Makes a request, again (up to [`RETRIES`] times) when it failed in
/// transit, not when the API server answered with an error.
async fn in_transit<T, F: Future<Output = Result<T, kube::Error>>>(
    call: impl Fn() -> F,
) -> Result<T, kube::Error> {
    let mut tries = 0;
    loop {
        match call().await {
            Err(e) if !matches!(e, kube::Error::Api(_)) && tries < RETRIES => {
                tries += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

/// Reads Pod `name` (see [`in_transit`]).
async fn get_pod(pods: &Api<Pod>, name: &str) -> Result<Pod, kube::Error> {
    in_transit(|| pods.get(name)).await
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
