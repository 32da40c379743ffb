//! `slipway run --backend kubernetes` on the test cluster (see
//! `release.rs`): stages as Pods, the workspace sent in, secrets through
//! the run's Secret, exit codes, timeouts, fast failures, and nothing left
//! behind. With `CI` set these fail when no cluster comes up.

use std::io::BufRead as _;
use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::Value;

use crate::release::{cluster, drop_namespace, kube, slipway, unique};

/// Pods (not on their way out), Secrets and Leases of any run in `ns`.
fn objects_left(kubeconfig: &Path, ns: &str) -> usize {
    let ns = ns.to_string();
    kube(kubeconfig, async move |client| {
        let params = kube::api::ListParams::default().labels("dev.slipway.run");
        let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), &ns);
        let secrets: kube::Api<Secret> = kube::Api::namespaced(client, &ns);
        // Pods deleted with no grace period may still be listed while the
        // kubelet stops them; those are on their way out.
        let live = pods
            .list(&params)
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .count()
            })
            .unwrap_or(0);
        let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
            kube::Api::namespaced(secrets.clone().into_client(), &ns);
        live + secrets
            .list(&params)
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
            + leases
                .list(&params)
                .await
                .map(|l| l.items.len())
                .unwrap_or(0)
    })
}

/// Starts `slipway run p.pipeline` in `dir` on the kubernetes backend, in
/// `ns`, with `TOKEN` set, JSON events on standard output.
fn start_run(
    dir: &Path,
    kubeconfig: &Path,
    ns: &str,
    token: &str,
    extra: &[&str],
) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir)
        .env("KUBECONFIG", kubeconfig)
        .env("TOKEN", token)
        .args([
            "run",
            "p.pipeline",
            "--backend",
            "kubernetes",
            "--namespace",
            ns,
        ])
        .args(["--pull", "never", "--output", "json"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns")
}

#[test]
fn stages_run_as_pods_with_the_workspace_their_env_and_secrets_and_leave_nothing() {
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-k8s-run");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(root.join("data.txt"), "from the workspace\n").expect("write");
    std::fs::write(root.join(".gitignore"), "*.log\n").expect("write");
    std::fs::write(root.join("skip.log"), "not sent\n").expect("write");
    std::fs::write(
        root.join("p.pipeline"),
        "pipeline \"k8s\"\n\nsecret TOKEN\n\nenv {\n  GREETING = \"hi\"\n  AUTH = \"Bearer ${secret.TOKEN}\"\n}\n\n\
         stage first {\n  image \"local/busybox\"\n  run \"\"\"\n    cat data.txt\n    test ! -e skip.log\n    echo $GREETING\n    echo auth=$AUTH\n    echo started\n    sleep 3\n  \"\"\"\n}\n\n\
         stage fails after first {\n  image \"local/busybox\"\n  run \"echo failing >&2; exit 3\"\n}\n\n\
         stage late {\n  image \"local/busybox\"\n  timeout 3s\n  run \"sleep 60\"\n}\n\n\
         stage unpullable {\n  image \"local/slipway-no-such-image:1\"\n  timeout 60s\n  run \"true\"\n}\n",
    )
    .expect("write");
    let mut child = start_run(root, &kubeconfig, &ns, "s3cret-value", &["--keep-going"]);
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .collect::<Vec<Value>>()
    });
    // While the stages run: their Pods are there, and no Pod spec holds the
    // secret's value; it comes through the run's Secret.
    let specs = {
        let ns = ns.clone();
        kube(&kubeconfig, async move |client| {
            let pods: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
            for _ in 0..600 {
                let list = pods.list(&Default::default()).await.expect("pods");
                if list.items.iter().any(|p| {
                    p.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.get("slipway.dev/stage").is_some_and(|s| s == "first"))
                }) {
                    return serde_json::to_string(&list.items).expect("json");
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            String::new()
        })
    };
    assert!(specs.contains("secretKeyRef"), "{specs}");
    assert!(!specs.contains("s3cret-value"), "a secret in a Pod spec");
    let events = reader.join().expect("events");
    let status = child.wait().expect("exits");
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut s, &mut stderr);
    }
    let finished = |stage: &str| {
        events
            .iter()
            .rev()
            .find(|e| e["event"] == "stage_finished" && e["stage"] == stage)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let logs = |stage: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == "log" && e["stage"] == stage)
            .filter_map(|e| e["line"].as_str().map(str::to_string))
            .collect()
    };
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    assert_eq!(status.code(), Some(1), "{stderr}\n{events:?}");
    assert_eq!(finished("first")["status"], "succeeded", "{events:?}");
    assert_eq!(
        logs("first"),
        ["from the workspace", "hi", "auth=Bearer ***", "started"]
    );
    assert_eq!(finished("fails")["status"], "failed");
    assert_eq!(finished("fails")["exit_code"], 3);
    assert_eq!(logs("fails"), ["failing"]);
    assert_eq!(finished("late")["status"], "timed_out", "{events:?}");
    // Refused by the kubelet at once, not at the stage's 60 s timeout.
    let unpullable = finished("unpullable");
    assert_eq!(unpullable["status"], "failed", "{unpullable}");
    assert!(
        unpullable["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not be pulled")),
        "{unpullable}"
    );
    assert_eq!(left, 0, "no Pod or Secret of the run is left");
}

#[test]
fn a_stage_the_kubernetes_backend_cannot_run_yet_is_refused_before_anything_runs() {
    let Some(kubeconfig) = cluster() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-refused\"\n\nstage it {\n  build \".\" {\n    tag \"localhost:5000/x:1\"\n    push false\n  }\n}\n",
    )
    .expect("write");
    let ns = unique("slipway-k8s-refused");
    let run = slipway(
        dir.path(),
        &kubeconfig,
        &[
            "run",
            "p.pipeline",
            "--backend",
            "kubernetes",
            "--namespace",
            &ns,
        ],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot run `it`: a `build` stage must `push` under the kubernetes backend"),
        "{}",
        run.stderr
    );
}

/// The Role in docs/kubernetes.md, as written there.
fn documented_role() -> Value {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kubernetes.md"))
            .expect("docs/kubernetes.md");
    let start = doc.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + doc[start..].find("```").expect("its end");
    serde_yaml_ng::from_str(&doc[start..end]).expect("the Role parses")
}

#[test]
fn the_role_in_the_docs_is_enough_to_run() {
    let Some(admin) = cluster() else { return };
    let ns = unique("slipway-k8s-rbac");
    let role = documented_role();
    let token = {
        let ns = ns.clone();
        kube(&admin, async move |client| {
            use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
            use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
            let pp = kube::api::PostParams::default();
            let namespace: Namespace =
                serde_json::from_value(serde_json::json!({ "metadata": { "name": ns } }))
                    .expect("ns");
            kube::Api::<Namespace>::all(client.clone())
                .create(&pp, &namespace)
                .await
                .expect("namespace");
            let sa: ServiceAccount =
                serde_json::from_value(serde_json::json!({ "metadata": { "name": "runner" } }))
                    .expect("sa");
            kube::Api::<ServiceAccount>::namespaced(client.clone(), &ns)
                .create(&pp, &sa)
                .await
                .expect("service account");
            let role: Role = serde_json::from_value(role).expect("role");
            kube::Api::<Role>::namespaced(client.clone(), &ns)
                .create(&pp, &role)
                .await
                .expect("role");
            let binding: RoleBinding = serde_json::from_value(serde_json::json!({
                "metadata": { "name": "slipway-run" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "slipway-run" },
                "subjects": [{ "kind": "ServiceAccount", "name": "runner", "namespace": ns }],
            }))
            .expect("binding");
            kube::Api::<RoleBinding>::namespaced(client.clone(), &ns)
                .create(&pp, &binding)
                .await
                .expect("binding");
            // The token controller gives the account a token Secret.
            let secrets: kube::Api<Secret> = kube::Api::namespaced(client, &ns);
            for _ in 0..300 {
                let list = secrets.list(&Default::default()).await.expect("secrets");
                let token = list.items.iter().find_map(|s| {
                    let for_runner = s.metadata.annotations.as_ref().is_some_and(|a| {
                        a.get("kubernetes.io/service-account.name")
                            .is_some_and(|n| n == "runner")
                    });
                    for_runner
                        .then(|| s.data.as_ref()?.get("token").cloned())
                        .flatten()
                });
                if let Some(t) = token {
                    return String::from_utf8(t.0).expect("token");
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("no token for the service account");
        })
    };
    // The admin kubeconfig's cluster, with the account's token as its user.
    let mut config: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&admin).expect("kubeconfig"))
            .expect("yaml");
    config["users"] = serde_json::json!([{ "name": "runner", "user": { "token": token } }]);
    config["contexts"][0]["context"]["user"] = "runner".into();
    config["contexts"][0]["context"]["namespace"] = ns.clone().into();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("runner.kubeconfig");
    std::fs::write(
        &kubeconfig,
        serde_yaml_ng::to_string(&config).expect("yaml"),
    )
    .expect("write");
    // The authorizer learns of a new binding a moment after it is made:
    // wait until the account may list Pods, which the Role grants.
    {
        let ns = ns.clone();
        kube(&kubeconfig, async move |client| {
            let pods: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
            for _ in 0..100 {
                if pods.list(&Default::default()).await.is_ok() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
    }
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-rbac\"\n\nsecret TOKEN\n\nstage it {\n  image \"local/busybox\"\n  env { T = \"${secret.TOKEN}\" }\n  run \"test -n \\\"$T\\\" && echo ran as the runner\"\n}\n",
    )
    .expect("write");
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir.path())
        .env("KUBECONFIG", &kubeconfig)
        .env("TOKEN", "x")
        .args([
            "run",
            "p.pipeline",
            "--backend",
            "kubernetes",
            "--pull",
            "never",
            "--output",
            "json",
        ])
        .output()
        .expect("runs");
    // Without leave to list nodes, a Pod the scheduler cannot place fails
    // at once (slipway cannot tell whether room may come), and says why.
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-rbac\"\n\nstage big {\n  image \"local/busybox\"\n  timeout 10m\n  resources {\n    cpu \"500\"\n  }\n  run \"true\"\n}\n",
    )
    .expect("write");
    let big = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir.path())
        .env("KUBECONFIG", &kubeconfig)
        .args(["run", "p.pipeline", "--backend", "kubernetes"])
        .args(["--pull", "never", "--output", "json"])
        .output()
        .expect("runs");
    let left = objects_left(&admin, &ns);
    drop_namespace(&admin, &ns);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ran as the runner"), "{stdout}");
    let big = String::from_utf8_lossy(&big.stdout);
    assert!(
        big.contains("no node can take the stage's Pod now")
            && big.contains("with leave to list nodes slipway would wait")
            && big.contains("nodes is forbidden"),
        "{big}"
    );
    assert_eq!(left, 0);
}

#[test]
fn sigterm_mid_run_deletes_the_pods_and_the_secret() {
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-k8s-term");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-term\"\n\nsecret TOKEN\n\nstage a {\n  image \"local/busybox\"\n  env { T = \"${secret.TOKEN}\" }\n  run \"echo started; sleep 120\"\n}\n\n\
         stage b {\n  image \"local/busybox\"\n  run \"echo started; sleep 120\"\n}\n",
    )
    .expect("write");
    let mut child = start_run(dir.path(), &kubeconfig, &ns, "x", &["-j", "2"]);
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut started = 0;
    for line in lines.by_ref() {
        if line.is_ok_and(|l| l.contains("\"line\":\"started\"")) {
            started += 1;
            if started == 2 {
                break;
            }
        }
    }
    assert_eq!(started, 2, "both stages run");
    assert!(
        objects_left(&kubeconfig, &ns) >= 3,
        "two Pods and the Secret"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("exits");
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert_eq!(
        rest.iter()
            .filter(|l| l.contains("\"status\":\"cancelled\""))
            .count(),
        3,
        "both stages and the run are cancelled: {rest:?}"
    );
    assert_eq!(left, 0, "nothing of the run is left");
}

#[test]
fn a_stage_no_node_can_take_fails_at_once_with_the_reason() {
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-k8s-big");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-big\"\n\nstage huge {\n  image \"local/busybox\"\n  timeout 10m\n  resources {\n    cpu    \"500\"\n    memory \"64Mi\"\n  }\n  run \"true\"\n}\n",
    )
    .expect("write");
    let run = slipway(
        dir.path(),
        &kubeconfig,
        &[
            "run",
            "p.pipeline",
            "--backend",
            "kubernetes",
            "--namespace",
            &ns,
            "--pull",
            "never",
            "--output",
            "json",
        ],
    );
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let finished = run
        .events
        .iter()
        .find(|e| e["event"] == "stage_finished")
        .cloned()
        .unwrap_or(Value::Null);
    // Failed as soon as the scheduler said so, not timed out at 10 minutes.
    assert_eq!(finished["status"], "failed", "{finished}");
    let message = finished["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no node can take the stage's Pod")
            && message.contains("Insufficient cpu"),
        "{message}"
    );
    assert_eq!(left, 0);
}

/// The nodes open for Pods: name and allocatable CPU in millicores.
fn open_nodes(kubeconfig: &Path) -> Vec<(String, i64)> {
    kube(kubeconfig, async move |client| {
        let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
        let nodes = api.list(&Default::default()).await.expect("nodes");
        nodes
            .items
            .into_iter()
            .filter(|n| {
                let spec = n.spec.clone().unwrap_or_default();
                !spec.unschedulable.unwrap_or(false)
                    && spec
                        .taints
                        .unwrap_or_default()
                        .iter()
                        .all(|t| t.effect == "PreferNoSchedule")
            })
            .map(|n| {
                let cpu = n
                    .status
                    .and_then(|s| s.allocatable)
                    .and_then(|a| a.get("cpu").cloned())
                    .map(|q| slipway::plan::resources::cpu_nanos(&q.0).expect("cpu") / 1_000_000)
                    .expect("allocatable cpu");
                (n.metadata.name.unwrap_or_default(), cpu)
            })
            .collect()
    })
}

#[test]
fn a_wide_fan_out_spreads_over_both_nodes_and_waits_for_room() {
    let Some(kubeconfig) = cluster() else { return };
    let nodes = open_nodes(&kubeconfig);
    assert!(
        nodes.len() >= 2,
        "this test needs two nodes (scripts/test-cluster.sh starts two unless SLIPWAY_K8S_NODES=1): {nodes:?}"
    );
    // Each stage asks for a third of the largest node's CPU: no node takes
    // more than three at once, so eight spread over at least two nodes, and
    // on two nodes two of them wait for room.
    let fan = 8;
    let per_node = 3;
    let cpu = nodes.iter().map(|(_, c)| *c).max().unwrap_or(0) / per_node;
    let ns = unique("slipway-k8s-wide");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from(
        "pipeline \"k8s-wide\"\n\nstage split {\n  image \"local/busybox\"\n  run \"echo split\"\n}\n",
    );
    for i in 0..fan {
        text.push_str(&format!(
            "\nstage shard-{i} after split {{\n  image \"local/busybox\"\n  timeout 5m\n  resources {{\n    cpu \"{cpu}m\"\n  }}\n  run \"echo shard {i}; sleep 4\"\n}}\n"
        ));
    }
    std::fs::write(dir.path().join("p.pipeline"), text).expect("write");
    let mut child = start_run(dir.path(), &kubeconfig, &ns, "unused", &["-j", "16"]);
    // Where each stage's Pod was placed, read while the run goes on (its
    // Pods are deleted as they end).
    let placed = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        String,
    >::new()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (placed, done, kubeconfig, ns) =
            (placed.clone(), done.clone(), kubeconfig.clone(), ns.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let ns = ns.clone();
                let seen = kube(&kubeconfig, async move |client| {
                    let pods: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
                    pods.list(&kube::api::ListParams::default().labels("dev.slipway.stage"))
                        .await
                        .map(|l| l.items)
                        .unwrap_or_default()
                });
                for p in seen {
                    let stage = p
                        .metadata
                        .labels
                        .unwrap_or_default()
                        .get("dev.slipway.stage")
                        .cloned();
                    let node = p.spec.and_then(|s| s.node_name);
                    if let (Some(stage), Some(node)) = (stage, node) {
                        placed.lock().expect("lock").insert(stage, node);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        })
    };
    let out = {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut text)
            .expect("read");
        text
    };
    let status = child.wait().expect("waits");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().expect("watcher");
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    let events: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(status.code(), Some(0), "{out}");
    let succeeded = events
        .iter()
        .filter(|e| e["event"] == "stage_finished" && e["status"] == "succeeded")
        .count();
    assert_eq!(succeeded, fan + 1, "{out}");
    let placed = placed.lock().expect("lock").clone();
    let used: std::collections::BTreeSet<&String> = placed
        .iter()
        .filter(|(stage, _)| stage.starts_with("shard-"))
        .map(|(_, node)| node)
        .collect();
    assert!(
        used.len() >= 2,
        "the shards ran on {used:?} only: {placed:?}"
    );
    if nodes.len() * usize::try_from(per_node).expect("small") < fan {
        assert!(
            events.iter().any(|e| e["event"] == "log"
                && e["line"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("slipway: waiting for room on the cluster (")
                && e["line"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Insufficient cpu")),
            "no shard waited for room: {out}"
        );
    }
    assert_eq!(left, 0);
}

#[test]
fn dependents_wait_made_ahead_at_their_gate_and_a_skipped_ones_pod_is_deleted() {
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-k8s-ahead");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data.txt"), "from the workspace\n").expect("write");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-ahead\"\n\n\
         stage first {\n  image \"local/busybox\"\n  run \"echo started; sleep 6\"\n}\n\n\
         stage bad {\n  image \"local/busybox\"\n  run \"echo started; sleep 6; exit 1\"\n}\n\n\
         stage next after first {\n  image \"local/busybox\"\n  run \"cat data.txt; echo pod=$HOSTNAME\"\n}\n\n\
         stage never after bad {\n  image \"local/busybox\"\n  run \"echo ran\"\n}\n",
    )
    .expect("write");
    let mut child = start_run(dir.path(), &kubeconfig, &ns, "x", &["--keep-going"]);
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let mut started = 0;
    for line in lines.by_ref().map_while(Result::ok) {
        started += usize::from(line.contains("\"line\":\"started\""));
        seen.push(line);
        if started == 2 {
            break;
        }
    }
    assert_eq!(started, 2, "first and bad run: {seen:?}");
    // While `first` and `bad` run, the Pods of `next` and `never` are made
    // already (their scripts wait at their gates).
    let waiting = {
        let ns = ns.clone();
        kube(&kubeconfig, async move |client| {
            let pods: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
            let mut waiting = std::collections::BTreeMap::new();
            for _ in 0..100 {
                waiting.clear();
                for p in pods.list(&Default::default()).await.expect("pods").items {
                    let stage = p
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("slipway.dev/stage").cloned())
                        .unwrap_or_default();
                    if stage == "next" || stage == "never" {
                        waiting.insert(stage, p.metadata.name.clone().unwrap_or_default());
                    }
                }
                if waiting.len() == 2 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            waiting
        })
    };
    let events: Vec<Value> = seen
        .into_iter()
        .chain(lines.map_while(Result::ok))
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let status = child.wait().expect("exits");
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert_eq!(status.code(), Some(1), "{events:?}");
    // `next` ran in the Pod made ahead for it (a Pod's host name is its
    // name), with the workspace.
    let logs: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "log" && e["stage"] == "next")
        .filter_map(|e| e["line"].as_str())
        .collect();
    assert_eq!(
        logs,
        [
            "from the workspace".to_string(),
            format!("pod={}", waiting["next"])
        ],
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "stage_skipped" && e["stage"] == "never"),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "log" && e["stage"] == "never"),
        "{events:?}"
    );
    assert_eq!(left, 0, "nothing of the run is left, made ahead or not");
}

#[test]
fn artifacts_go_out_of_one_pod_into_the_store_and_into_the_next() {
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-k8s-art");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-art\"\n\n\
         stage build {\n  image \"local/busybox\"\n  artifact \"dist/\"\n  run \"mkdir -p dist/sub && echo built > dist/out.txt && echo deep > dist/sub/x.txt\"\n}\n\n\
         stage use after build {\n  image \"local/busybox\"\n  run \"cat dist/out.txt dist/sub/x.txt\"\n}\n\n\
         stage forgets {\n  image \"local/busybox\"\n  artifact \"missing/\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    let run = slipway(
        dir.path(),
        &kubeconfig,
        &[
            "run",
            "p.pipeline",
            "--backend",
            "kubernetes",
            "--namespace",
            &ns,
            "--pull",
            "never",
            "--output",
            "json",
            "--keep-going",
        ],
    );
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    let finished = |stage: &str| {
        run.events
            .iter()
            .find(|e| e["event"] == "stage_finished" && e["stage"] == stage)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(run.code, Some(1), "{}\n{:?}", run.stderr, run.events);
    assert_eq!(finished("build")["status"], "succeeded");
    assert_eq!(finished("use")["status"], "succeeded", "{:?}", run.events);
    let logs: Vec<&str> = run
        .events
        .iter()
        .filter(|e| e["event"] == "log" && e["stage"] == "use")
        .filter_map(|e| e["line"].as_str())
        .collect();
    assert_eq!(logs, ["built", "deep"]);
    // In the run's store, as on Docker.
    let id = run.events[0]["run"].as_str().expect("a run id");
    let kept = dir
        .path()
        .join(format!(".slipway/runs/{id}/artifacts/build/dist/sub/x.txt"));
    assert_eq!(
        std::fs::read_to_string(&kept).ok().as_deref(),
        Some("deep\n"),
        "{}",
        kept.display()
    );
    let forgets = finished("forgets");
    assert_eq!(forgets["status"], "failed", "{forgets}");
    assert!(
        forgets["message"]
            .as_str()
            .is_some_and(|m| m.contains("artifact `missing/` was not produced")),
        "{forgets}"
    );
    assert_eq!(left, 0);
}

/// Pods, Secrets and Leases of run `run` in `ns` (those not on their way
/// out).
fn run_objects(kubeconfig: &Path, ns: &str, run: &str) -> usize {
    let (ns, selector) = (ns.to_string(), format!("dev.slipway.run={run}"));
    kube(kubeconfig, async move |client| {
        use k8s_openapi::api::coordination::v1::Lease;
        let params = kube::api::ListParams::default().labels(&selector);
        let live = |m: &kube::api::ObjectMeta| m.deletion_timestamp.is_none();
        let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), &ns);
        let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &ns);
        let leases: kube::Api<Lease> = kube::Api::namespaced(client, &ns);
        let p = pods.list(&params).await.expect("pods").items;
        let s = secrets.list(&params).await.expect("secrets").items;
        let l = leases.list(&params).await.expect("leases").items;
        p.iter().filter(|o| live(&o.metadata)).count()
            + s.iter().filter(|o| live(&o.metadata)).count()
            + l.iter().filter(|o| live(&o.metadata)).count()
    })
}

#[test]
fn gc_deletes_what_a_killed_run_left_on_the_cluster_and_keeps_a_run_still_going() {
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-k8s-gc");
    let start = |name: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("p.pipeline"),
            format!(
                "pipeline \"{name}\"\n\nsecret TOKEN\n\nstage long {{\n  image \"local/busybox\"\n  env {{ T = \"${{secret.TOKEN}}\" }}\n  run \"echo started; sleep 120\"\n}}\n"
            ),
        )
        .expect("write");
        let mut child = start_run(dir.path(), &kubeconfig, &ns, "x", &[]);
        let stdout = child.stdout.take().expect("stdout");
        let mut run = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(e) = serde_json::from_str::<Value>(&line)
                && e["event"] == "run_started"
            {
                run = e["run"].as_str().unwrap_or_default().to_string();
            }
            if line.contains("\"line\":\"started\"") {
                break;
            }
        }
        (child, run, dir)
    };
    let (mut dead, killed, _a) = start("gc-killed");
    let (mut alive, going, _b) = start("gc-going");
    // SIGKILL: no chance to clean up.
    dead.kill().expect("kill");
    let _ = dead.wait();
    assert_eq!(
        run_objects(&kubeconfig, &ns, &killed),
        3,
        "a Pod, the Secret and the Lease"
    );
    let gc = |extra: &[&str]| {
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
            .env("KUBECONFIG", &kubeconfig)
            .args(["gc", "--namespace", &ns])
            .args(extra)
            .output()
            .expect("gc");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = gc(&["--dry-run"]);
    assert!(
        said.contains(&format!(
            "kubernetes: would remove run {killed} in `{ns}` (pipeline `gc-killed`): 1 Pod, 1 Secret, 1 Lease"
        )),
        "{said}"
    );
    assert!(
        !said.contains(&going),
        "a run still going is not touched: {said}"
    );
    assert_eq!(
        run_objects(&kubeconfig, &ns, &killed),
        3,
        "--dry-run deletes nothing"
    );
    let said = gc(&[]);
    assert!(
        said.contains(&format!("kubernetes: removed run {killed}")),
        "{said}"
    );
    let (left, kept) = (
        run_objects(&kubeconfig, &ns, &killed),
        run_objects(&kubeconfig, &ns, &going),
    );
    // The live run ends and cleans up after itself.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(alive.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = alive.wait();
    let after = run_objects(&kubeconfig, &ns, &going);
    drop_namespace(&kubeconfig, &ns);
    assert_eq!(left, 0, "{said}");
    assert_eq!(kept, 3, "the live run keeps its objects");
    assert_eq!(after, 0);
}

#[test]
fn plan_says_which_backend_a_run_would_use_and_what_it_would_refuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-plan\"\n\nstage it {\n  build \".\" {\n    tag \"localhost:5000/x:1\"\n    push false\n  }\n}\n\nstage fine {\n  image \"local/busybox\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    let plan = |backend: &str| {
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
            .current_dir(dir.path())
            .env("SLIPWAY_BACKEND", backend)
            .args(["plan", "p.pipeline", "--format", "json"])
            .output()
            .expect("plan");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<Value>(&out.stdout).expect("json")["backend"].clone()
    };
    assert_eq!(
        plan("kubernetes"),
        serde_json::json!({
            "name": "kubernetes",
            "refused": [{
                "stage": "it",
                "reason": "a `build` stage must `push` under the kubernetes backend: its image is built on this machine's Docker engine, where no Pod can use it (help: add `push true`, with a tag in a registry the cluster pulls from)",
            }],
        })
    );
    assert_eq!(
        plan("docker"),
        serde_json::json!({ "name": "docker", "refused": [] })
    );
}

#[test]
fn services_are_containers_in_the_pod_reachable_by_name_and_waited_for() {
    let Some(kubeconfig) = cluster() else { return };
    // Serves `/ping` only after a second and a half: without waiting for
    // the `ready` command the stage would start before it answers.
    let image = crate::support::build_image(
        "local/slipway-test-httpd:k8s",
        "FROM local/busybox\n\
         CMD [\"sh\", \"-c\", \"mkdir -p /srv && sleep 1.5 && echo pong-$TOKEN_SEEN > /srv/ping && exec httpd -f -p 8080 -h /srv\"]\n",
    );
    let ns = unique("slipway-k8s-svc");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.pipeline"),
        format!(
            "pipeline \"k8s-svc\"\n\nsecret TOKEN\n\n\
             stage use {{\n  image \"local/busybox\"\n  service web \"{image}\" {{\n    env {{ TOKEN_SEEN = \"${{secret.TOKEN}}\" }}\n    ready \"wget -q -O- http://127.0.0.1:8080/ping\"\n  }}\n  run \"\"\"\n    wget -q -O- http://web:8080/ping\n    wget -q -O- http://localhost:8080/ping\n  \"\"\"\n}}\n\n\
             stage never {{\n  image \"local/busybox\"\n  timeout 5m\n  service down \"local/busybox\"\n  run \"echo ran\"\n}}\n"
        ),
    )
    .expect("write");
    let run = {
        let mut child = start_run(dir.path(), &kubeconfig, &ns, "t0ken", &["--keep-going"]);
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
        }
        let status = child.wait().expect("exits");
        (status.code(), out)
    };
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    let events: Vec<Value> = run
        .1
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let finished = |stage: &str| {
        events
            .iter()
            .find(|e| e["event"] == "stage_finished" && e["stage"] == stage)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(run.0, Some(1), "{events:?}");
    assert_eq!(finished("use")["status"], "succeeded", "{events:?}");
    let logs: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "log" && e["stage"] == "use")
        .filter_map(|e| e["line"].as_str())
        .collect();
    // The secret reached the service (and is masked in what it said).
    assert_eq!(logs, ["pong-***", "pong-***"], "{events:?}");
    // A service whose container ends at once (busybox's `sh` with no
    // input) fails its stage, at once and with the reason.
    let never = finished("never");
    assert_eq!(never["status"], "failed", "{never}");
    assert!(
        never["message"]
            .as_str()
            .is_some_and(|m| m.contains("service `down` exited with 0 before it was ready")),
        "{never}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "log" && e["stage"] == "never")
    );
    assert_eq!(left, 0);
}

#[test]
fn a_cache_is_a_claim_kept_across_runs_and_an_unbound_one_is_said() {
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-k8s-cache");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-cache\"\n\nstage count {\n  image \"local/busybox\"\n  cache \"/cache\"\n  cache \"unbound/\"\n  run \"\"\"\n    echo x >> /cache/runs\n    echo runs=$(wc -l < /cache/runs)\n    test -d unbound\n  \"\"\"\n}\n",
    )
    .expect("write");
    // The second cache's claim is made first, of a class no one provisions:
    // it cannot bind.
    {
        let ns = ns.clone();
        kube(&kubeconfig, async move |client| {
            use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
            let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
            let _ = namespaces
                .create(
                    &Default::default(),
                    &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
                        .expect("ns"),
                )
                .await;
            let claims: kube::Api<PersistentVolumeClaim> = kube::Api::namespaced(client, &ns);
            let claim = serde_json::from_value(serde_json::json!({
                "metadata": { "name": "slipway-cache-k8s-cache-2ef4e0c2950f6a0f" },
                "spec": {
                    "storageClassName": "nobody-provisions-this",
                    "accessModes": ["ReadWriteOnce"],
                    "resources": { "requests": { "storage": "1Gi" } },
                },
            }))
            .expect("claim");
            claims
                .create(&Default::default(), &claim)
                .await
                .expect("claim made");
        });
    }
    let run = || {
        slipway(
            dir.path(),
            &kubeconfig,
            &[
                "run",
                "p.pipeline",
                "--backend",
                "kubernetes",
                "--namespace",
                &ns,
                "--pull",
                "never",
                "--output",
                "json",
            ],
        )
    };
    let (first, second) = (run(), run());
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    let lines = |r: &crate::release::Run| -> Vec<String> {
        r.events
            .iter()
            .filter(|e| e["event"] == "log")
            .filter_map(|e| e["line"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(first.code, Some(0), "{}\n{:?}", first.stderr, first.events);
    assert_eq!(
        second.code,
        Some(0),
        "{}\n{:?}",
        second.stderr,
        second.events
    );
    let warning = "slipway: cache `/workspace/unbound` is not kept: its claim `slipway-cache-k8s-cache-2ef4e0c2950f6a0f` is not bound (Pending; does a StorageClass provision it?); the stage runs with an empty folder there";
    assert_eq!(lines(&first), [warning, "runs=1"]);
    // The bound claim kept what the first run wrote.
    assert_eq!(lines(&second), [warning, "runs=2"]);
    assert_eq!(left, 0, "the claims are kept, no run's object is");
}

#[test]
fn a_build_pushes_from_the_engine_and_a_later_pod_pulls_it_from_the_registry() {
    let Some(kubeconfig) = cluster() else { return };
    if !crate::flagship::engine_and_registry() {
        return;
    }
    let ns = unique("slipway-k8s-build");
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = format!("localhost:5000/slipway-k8s-build:{}", std::process::id());
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM local/busybox\nARG WORD\nRUN echo built-$WORD > /built\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("p.pipeline"),
        format!(
            "pipeline \"k8s-build\"\n\n\
             stage image {{\n  build \".\" {{\n    tag \"{tag}\"\n    arg \"WORD\" = \"{ns}\"\n    push true\n  }}\n}}\n\n\
             stage use after image {{\n  image \"{tag}\"\n  run \"cat /built\"\n}}\n"
        ),
    )
    .expect("write");
    let run = slipway(
        dir.path(),
        &kubeconfig,
        &[
            "run",
            "p.pipeline",
            "--backend",
            "kubernetes",
            "--namespace",
            &ns,
            "--pull",
            "always",
            "--output",
            "json",
        ],
    );
    let pulled = {
        let ns = ns.clone();
        kube(&kubeconfig, async move |client| {
            use k8s_openapi::api::core::v1::Event;
            let events: kube::Api<Event> = kube::Api::namespaced(client, &ns);
            // The kubelet posts its events after the fact.
            for _ in 0..100 {
                let list = events.list(&Default::default()).await.expect("events");
                if let Some(e) = list
                    .items
                    .iter()
                    .find(|e| e.reason.as_deref() == Some("Pulled"))
                {
                    return e.message.clone().unwrap_or_default();
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            String::new()
        })
    };
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    assert_eq!(run.code, Some(0), "{}\n{:?}", run.stderr, run.events);
    let logs: Vec<&str> = run
        .events
        .iter()
        .filter(|e| e["event"] == "log" && e["stage"] == "use")
        .filter_map(|e| e["line"].as_str())
        .collect();
    assert_eq!(logs, [format!("built-{ns}")]);
    // The Pod's image came from the registry, not from the engine's store.
    assert!(
        pulled.contains(&format!("Successfully pulled image \"{tag}\"")),
        "{pulled}"
    );
    assert_eq!(left, 0);
}

#[test]
fn an_api_server_that_does_not_answer_exits_3_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-dead\"\n\nstage it {\n  image \"local/busybox\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    // A kubeconfig whose server nothing listens on.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\ncontexts:\n- name: dead\n  context: {cluster: dead, user: nobody}\ncurrent-context: dead\nusers:\n- name: nobody\n  user: {token: x}\n",
    )
    .expect("write");
    let run = slipway(
        dir.path(),
        &kubeconfig,
        &[
            "run",
            "p.pipeline",
            "--backend",
            "kubernetes",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the Kubernetes API at https://127.0.0.1:1/ does not answer"),
        "{}",
        run.stderr
    );
    assert!(
        !run.events.iter().any(|e| e["event"] == "stage_started"),
        "{:?}",
        run.events
    );
}

/// A TCP port that forwards to the test cluster's API server until it is
/// cut: every connection is shut down at once, and no new one is taken.
struct CuttableApi {
    port: u16,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CuttableApi {
    fn new(target: String) -> Self {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (streams, cut) = (streams.clone(), cut.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    // Checked and registered under the lock `cut` takes: a
                    // connection accepted as the cut comes is cut too.
                    let Ok(mut registered) = streams.lock() else {
                        break;
                    };
                    if cut.load(Ordering::SeqCst) {
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    let Ok(server) = TcpStream::connect(&target) else {
                        continue;
                    };
                    let pipes = [
                        (client.try_clone(), server.try_clone()),
                        (server.try_clone(), client.try_clone()),
                    ];
                    registered.extend([client, server]);
                    drop(registered);
                    for (from, to) in pipes {
                        if let (Ok(mut from), Ok(mut to)) = (from, to) {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(std::net::Shutdown::Write);
                            });
                        }
                    }
                }
            });
        }
        Self { port, streams, cut }
    }

    /// The API server "goes away".
    fn cut(&self) {
        if let Ok(streams) = self.streams.lock() {
            self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
            for s in streams.iter() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        // Wakes the accept loop so that it stops listening.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[test]
fn the_api_server_going_away_mid_stage_exits_3() {
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-k8s-gone");
    let dir = tempfile::tempdir().expect("tempdir");
    // The same cluster, through a port that can be cut.
    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("a server")
        .trim_end_matches('/')
        .to_string();
    let proxy = CuttableApi::new(server.clone());
    let via = dir.path().join("kubeconfig");
    std::fs::write(
        &via,
        text.replace(
            &format!("server: https://{server}"),
            &format!("server: https://127.0.0.1:{}", proxy.port),
        ),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "pipeline \"k8s-gone\"\n\nstage long {\n  image \"local/busybox\"\n  timeout 2m\n  run \"echo started; sleep 60\"\n}\n\nstage next after long {\n  image \"local/busybox\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    let mut child = start_run(dir.path(), &via, &ns, "x", &[]);
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("\"line\":\"started\""));
    assert!(started, "the stage runs");
    proxy.cut();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("exits");
    drop_namespace(&kubeconfig, &ns);
    assert_eq!(status.code(), Some(3), "{rest:?}");
    let finished = rest
        .iter()
        .find(|l| l.contains("\"stage_finished\"") && l.contains("\"long\""))
        .cloned()
        .unwrap_or_default();
    // Failed by the lost API, not timed out at the stage's 2 minutes.
    assert!(
        finished.contains("\"status\":\"failed\"")
            && finished.contains("watching the stage's Pod failed"),
        "{finished}"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("\"stage_skipped\"") && l.contains("\"next\"")),
        "{rest:?}"
    );
}

/// The documents of the docs' "Running slipway itself as a Job" block.
fn documented_job() -> Vec<Value> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kubernetes.md"))
            .expect("docs/kubernetes.md");
    let section = &doc[doc
        .find("## Running slipway itself as a Job")
        .expect("the Job section")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + section[start..].find("```").expect("its end");
    serde_yaml_ng::Deserializer::from_str(&section[start..end])
        .map(|d| serde::Deserialize::deserialize(d).expect("a document"))
        .collect()
}

#[test]
fn slipway_runs_as_the_documented_job_inside_the_cluster() {
    let Some(admin) = cluster() else { return };
    let ns = unique("slipway-k8s-job");
    // An image with slipway (stripped: the test build carries its debug
    // information) and a project, in place of the docs' clone.
    let ctx = tempfile::tempdir().expect("tempdir");
    let bin = ctx.path().join("slipway");
    std::fs::copy(assert_cmd::cargo::cargo_bin("slipway"), &bin).expect("copy");
    let stripped = std::process::Command::new("strip")
        .arg(&bin)
        .status()
        .expect("strip");
    assert!(stripped.success());
    std::fs::create_dir(ctx.path().join("src")).expect("mkdir");
    std::fs::write(
        ctx.path().join("src/p.pipeline"),
        "pipeline \"in-cluster\"\n\nstage hello {\n  image \"local/busybox\"\n  run \"echo hello from a stage the Job ran\"\n}\n\n\
         stage after after hello {\n  image \"local/busybox\"\n  run \"echo after\"\n}\n",
    )
    .expect("write");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM local/debian\nCOPY slipway /usr/local/bin/slipway\nCOPY src /src\n",
    )
    .expect("write");
    let tag = "local/slipway-in-cluster:test";
    crate::support::build_image_in(tag, ctx.path());

    let mut docs = documented_job();
    assert_eq!(docs.len(), 3, "{docs:?}");
    let mut job = docs.pop().expect("the Job");
    let binding = docs.pop().expect("the RoleBinding");
    let account = docs.pop().expect("the ServiceAccount");
    let container = &mut job["spec"]["template"]["spec"]["containers"][0];
    let script = container["args"][0]
        .as_str()
        .expect("the script")
        .to_string();
    // The docs clone the project first; here it is in the image.
    let (clone, rest) = script.split_once(" && ").expect("clone, then run");
    assert!(clone.starts_with("git clone"), "{script}");
    assert!(
        rest.starts_with("cd /src && slipway run --backend kubernetes --namespace ci"),
        "{script}"
    );
    container["args"][0] = rest
        .replace("--namespace ci", &format!("--namespace {ns}"))
        .into();
    container["image"] = tag.into();
    container["imagePullPolicy"] = "Never".into();
    // The test cluster routes no Service addresses (no kube-proxy): its
    // Pods reach the API server on the node's loopback.
    let server: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&admin).expect("kubeconfig"))
            .expect("yaml");
    let server = server["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(port) = server.strip_prefix("https://127.0.0.1:") {
        container["env"] = serde_json::json!([
            { "name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1" },
            { "name": "KUBERNETES_SERVICE_PORT", "value": port },
        ]);
        job["spec"]["template"]["spec"]["hostNetwork"] = true.into();
    }
    let role = documented_role();
    let job_name = job["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    let logs = {
        let ns = ns.clone();
        kube(&admin, async move |client| {
            use k8s_openapi::api::batch::v1::Job;
            use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
            use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
            let pp = kube::api::PostParams::default();
            let in_ns = |mut v: Value| {
                if v["metadata"]["namespace"].is_string() {
                    v["metadata"]["namespace"] = ns.clone().into();
                }
                for s in v["subjects"].as_array_mut().into_iter().flatten() {
                    s["namespace"] = ns.clone().into();
                }
                v
            };
            let namespace: Namespace =
                serde_json::from_value(serde_json::json!({ "metadata": { "name": ns } }))
                    .expect("ns");
            kube::Api::<Namespace>::all(client.clone())
                .create(&pp, &namespace)
                .await
                .expect("namespace");
            kube::Api::<Role>::namespaced(client.clone(), &ns)
                .create(&pp, &serde_json::from_value(role).expect("role"))
                .await
                .expect("role");
            kube::Api::<ServiceAccount>::namespaced(client.clone(), &ns)
                .create(
                    &pp,
                    &serde_json::from_value(in_ns(account)).expect("account"),
                )
                .await
                .expect("account");
            kube::Api::<RoleBinding>::namespaced(client.clone(), &ns)
                .create(
                    &pp,
                    &serde_json::from_value(in_ns(binding)).expect("binding"),
                )
                .await
                .expect("binding");
            // The token controller gives the account its token before a
            // Pod may use it.
            let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &ns);
            for _ in 0..300 {
                let list = secrets.list(&Default::default()).await.expect("secrets");
                if list.items.iter().any(|s| {
                    s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                        && s.metadata.annotations.as_ref().is_some_and(|a| {
                            a.get("kubernetes.io/service-account.name")
                                .is_some_and(|n| n == "slipway")
                        })
                }) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let jobs = kube::Api::<Job>::namespaced(client.clone(), &ns);
            jobs.create(&pp, &serde_json::from_value(in_ns(job)).expect("job"))
                .await
                .expect("job");
            let mut ended = false;
            for _ in 0..1200 {
                let j = jobs.get(&job_name).await.expect("job");
                let status = j.status.unwrap_or_default();
                if status.succeeded.unwrap_or(0) + status.failed.unwrap_or(0) > 0 {
                    ended = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let pods: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
            let mut logs = String::new();
            let list = pods
                .list(&kube::api::ListParams::default().labels(&format!("job-name={job_name}")))
                .await
                .expect("pods");
            for p in list.items {
                let name = p.metadata.name.unwrap_or_default();
                logs.push_str(
                    &pods
                        .logs(&name, &Default::default())
                        .await
                        .unwrap_or_default(),
                );
            }
            if !ended {
                logs.push_str("\n(the Job did not end within 2 minutes)");
            }
            logs
        })
    };
    let left = objects_left(&admin, &ns);
    drop_namespace(&admin, &ns);
    let _ = std::process::Command::new("/usr/bin/docker")
        .args(["rmi", tag])
        .output();
    let events: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let finished = events
        .iter()
        .find(|e| e["event"] == "run_finished")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(finished["status"], "succeeded", "{logs}");
    assert!(
        events
            .iter()
            .any(|e| e["stage"] == "hello" && e["line"] == "hello from a stage the Job ran"),
        "{logs}"
    );
    assert_eq!(left, 0, "{logs}");
}

#[test]
fn an_image_whose_user_is_not_root_still_gets_a_writable_workspace() {
    let Some(kubeconfig) = cluster() else { return };
    // USER 1000: the container's own /workspace is root's, so its Pod is
    // made again with a volume that user can write.
    let image = crate::release::good_image();
    let ns = unique("slipway-k8s-user");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data.txt"), "from the workspace\n").expect("write");
    std::fs::write(
        dir.path().join("p.pipeline"),
        format!(
            "pipeline \"k8s-user\"\n\nstage as-user {{\n  image \"{image}\"\n  artifact \"out.txt\"\n  run \"id -u; cat data.txt; echo written > out.txt\"\n}}\n\n\
             stage as-root after as-user {{\n  image \"local/busybox\"\n  run \"id -u; cat data.txt out.txt\"\n}}\n"
        ),
    )
    .expect("write");
    let run = slipway(
        dir.path(),
        &kubeconfig,
        &[
            "run",
            "p.pipeline",
            "--backend",
            "kubernetes",
            "--namespace",
            &ns,
            "--pull",
            "never",
            "--output",
            "json",
        ],
    );
    let left = objects_left(&kubeconfig, &ns);
    drop_namespace(&kubeconfig, &ns);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let lines = |stage: &str| -> Vec<String> {
        run.events
            .iter()
            .filter(|e| e["event"] == "log" && e["stage"] == stage)
            .map(|e| e["line"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        lines("as-user"),
        ["1000", "from the workspace"],
        "{}",
        run.stdout
    );
    assert_eq!(
        lines("as-root"),
        ["0", "from the workspace", "written"],
        "{}",
        run.stdout
    );
    assert_eq!(left, 0);
}
