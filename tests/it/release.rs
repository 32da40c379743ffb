//! `release` stages end to end, through the binary, against a real cluster:
//! the one in `SLIPWAY_TEST_KUBECONFIG` (kind, k3d, ...), else the test
//! cluster `scripts/test-cluster.sh start` builds from Debian's packages.
//! With `CI` set these tests fail when no cluster comes up; elsewhere they
//! say so and pass. Each test works in namespaces of its own.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::build_image;

/// The test cluster's kubeconfig, started once per test process.
pub(crate) fn cluster() -> Option<PathBuf> {
    static KUBECONFIG: OnceLock<Option<PathBuf>> = OnceLock::new();
    KUBECONFIG
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("SLIPWAY_TEST_KUBECONFIG") {
                return Some(PathBuf::from(p));
            }
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = std::process::Command::new(root.join("scripts/test-cluster.sh"))
                .arg("start")
                .current_dir(root)
                .stderr(std::process::Stdio::inherit())
                .output();
            let path = out.ok().filter(|o| o.status.success()).and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .last()
                    .map(|l| PathBuf::from(l.trim()))
            });
            if path.is_none() {
                assert!(
                    std::env::var("CI").is_err(),
                    "CI needs a Kubernetes cluster: `scripts/test-cluster.sh start` failed (see above)"
                );
                eprintln!("skipped: no cluster (scripts/test-cluster.sh start, or SLIPWAY_TEST_KUBECONFIG)");
            }
            path
        })
        .clone()
}

/// A web server that really runs as the chat container would: non-root,
/// on 8080, answering `/healthz`.
pub(crate) fn good_image() -> &'static str {
    build_image(
        "local/slipway-chat-test:good",
        "FROM local/busybox\nRUN mkdir -p /www && echo ok > /www/healthz\nUSER 1000\nEXPOSE 8080\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
}

/// A container that exits 1 at once, saying why.
pub(crate) fn broken_image() -> &'static str {
    build_image(
        "local/slipway-chat-test:broken",
        "FROM local/busybox\nUSER 1000\nCMD [\"sh\", \"-c\", \"echo cannot reach the database >&2; exit 1\"]\n",
    )
}

pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) events: Vec<Value>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn finished(&self) -> &Value {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "stage_finished")
            .unwrap_or_else(|| panic!("no stage_finished in {}\n{}", self.stdout, self.stderr))
    }

    pub(crate) fn logs(&self) -> String {
        self.events
            .iter()
            .filter(|e| e["event"] == "log")
            .map(|e| e["line"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub(crate) fn slipway(dir: &Path, kubeconfig: &Path, args: &[&str]) -> Run {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir)
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        code: out.status.code(),
        events: stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A namespace name of this test process's own.
pub(crate) fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Reads the cluster with the kube crate, outside slipway.
pub(crate) fn kube<T>(kubeconfig: &Path, f: impl AsyncFnOnce(kube::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(config).expect("client");
        f(client).await
    })
}

/// Deletes a namespace without waiting (pods may take a while to go).
pub(crate) fn drop_namespace(kubeconfig: &Path, ns: &str) {
    let ns = ns.to_string();
    kube(kubeconfig, async move |client| {
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        let _ = api.delete(&ns, &Default::default()).await;
    });
}

/// Ready pods of the chat Deployment, by image.
fn ready_images(kubeconfig: &Path, ns: &str) -> Vec<String> {
    let ns = ns.to_string();
    kube(kubeconfig, async move |client| {
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, &ns);
        let pods = api
            .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=chat"))
            .await
            .expect("pods");
        pods.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.clone())
            })
            .collect()
    })
}

/// A project with the chat example's manifests and a pipeline whose deploy
/// stage is the chat example's release. Environment `env` makes the
/// namespace `chat-<env>`. The manifests are verbatim but for the pull
/// policy: the example's Pods pull `Always` from the registry, this test's
/// images are only in the engine (tests/it/flagship.rs runs the example's
/// own pipeline, registry and all).
fn chat_project(env: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let k8s = dir.path().join("deploy/k8s");
    std::fs::create_dir_all(&k8s).expect("mkdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/chat/deploy/k8s");
    for entry in std::fs::read_dir(example).expect("example manifests") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let text = text.replace("imagePullPolicy: Always", "imagePullPolicy: IfNotPresent");
        std::fs::write(k8s.join(path.file_name().expect("name")), text).expect("write");
    }
    std::fs::write(
        dir.path().join("chat.pipeline"),
        format!(
            "pipeline \"chat\"\n\nenv {{\n  IMAGE = \"local/slipway-chat-test:good\"\n  \
             READINESS_PATH = \"/healthz\"\n  PROGRESS_DEADLINE = \"120\"\n}}\n\n\
             environment {env} {{ env {{ REPLICAS = \"1\" }} }}\n\n\
             stage deploy {{\n  release chat {{\n    namespace \"chat-${{environment}}\"\n    manifests \"deploy/k8s/*.yaml\"\n    \
             image     \"chat\" = \"${{IMAGE}}\"\n    wait      2m\n    rollback  on-failure\n    prune     true\n    history   10\n  }}\n}}\n"
        ),
    )
    .expect("write");
    dir
}

#[test]
fn a_healthy_release_then_a_broken_one_rolled_back_on_its_own() {
    let Some(kc) = cluster() else { return };
    let (good, broken) = (good_image(), broken_image());
    let env = unique("roll");
    let ns = format!("chat-{env}");
    let dir = chat_project(&env);
    let p = dir.path();

    // Revision 1: healthy, its pods run.
    let start = Instant::now();
    let first = slipway(p, &kc, &["run", "--env", &env, "--output", "json"]);
    let healthy = start.elapsed();
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.logs().contains("revision 1 deployed and healthy"),
        "{}",
        first.logs()
    );
    assert_eq!(ready_images(&kc, &ns), vec![good.to_string()]);

    // Revision 2: its container exits 1. Seen as failed well within the
    // 2m wait, rolled back on its own to revision 1's image.
    let start = Instant::now();
    let second = slipway(
        p,
        &kc,
        &[
            "run",
            "--env",
            &env,
            "--output",
            "json",
            "--set",
            &format!("IMAGE={broken}"),
        ],
    );
    let failing = start.elapsed();
    assert_eq!(second.code, Some(1), "{}\n{}", second.stdout, second.stderr);
    let message = second.finished()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for part in [
        "revision 2 of `chat` failed",
        "CrashLoopBackOff",
        "cannot reach the database",
        "rolled back: revision 3",
        good,
    ] {
        assert!(message.contains(part), "no `{part}` in: {message}");
    }
    assert!(failing < Duration::from_secs(90), "took {failing:?}");
    assert_eq!(ready_images(&kc, &ns), vec![good.to_string()]);

    let history = slipway(p, &kc, &["release", "history", "chat", "-n", &ns]);
    assert_eq!(history.code, Some(0), "{}", history.stderr);
    let statuses: Vec<(String, String)> = history
        .stdout
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[2].to_string())
        })
        .collect();
    assert_eq!(
        statuses,
        [("1", "superseded"), ("2", "rolled-back"), ("3", "deployed")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let status = slipway(p, &kc, &["release", "status", "chat", "-n", &ns]);
    assert!(
        status.stdout.contains("deployed:  revision 3"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("Deployment/"), "{}", status.stdout);
    eprintln!(
        "release timings: healthy {:.1}s, failing to verdict (with rollback) {:.1}s",
        healthy.as_secs_f64(),
        failing.as_secs_f64()
    );
    drop_namespace(&kc, &ns);
}

/// A project of ConfigMaps (and, with `deployment`, a Deployment whose
/// replicas come from `${REPLICAS}`).
fn small_project(ns: &str, configmaps: &[&str], deployment: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifests(dir.path(), configmaps, deployment);
    std::fs::write(
        dir.path().join("p.pipeline"),
        format!(
            "pipeline \"small\"\n\nenv {{\n  REPLICAS = \"1\"\n  PROBE = \"/healthz\"\n}}\n\n\
             stage deploy {{\n  release small {{\n    namespace \"{ns}\"\n    manifests \"k8s/*.yaml\"\n    \
             wait 2m\n    prune true\n  }}\n}}\n"
        ),
    )
    .expect("write");
    dir
}

fn write_manifests(dir: &Path, configmaps: &[&str], deployment: bool) {
    let k8s = dir.join("k8s");
    let _ = std::fs::remove_dir_all(&k8s);
    std::fs::create_dir_all(&k8s).expect("mkdir");
    let mut text = String::new();
    for name in configmaps {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n"
        ));
    }
    std::fs::write(k8s.join("config.yaml"), text).expect("write");
    if deployment {
        std::fs::write(
            k8s.join("web.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: ${REPLICAS}\n  \
             progressDeadlineSeconds: 600\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    \
             spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n        - name: web\n          image: local/slipway-chat-test:good\n          \
             imagePullPolicy: Never\n          ports:\n            - containerPort: 8080\n          readinessProbe:\n            httpGet:\n              \
             path: ${PROBE}\n              port: 8080\n            periodSeconds: 1\n",
        )
        .expect("write");
    }
}

#[test]
fn prune_deletes_what_the_release_dropped_and_nothing_else() {
    let Some(kc) = cluster() else { return };
    let ns = unique("prune");
    let dir = small_project(&ns, &["kept", "dropped"], false);
    let first = slipway(dir.path(), &kc, &["run", "--output", "json"]);
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);

    // Somebody else's ConfigMap in the same namespace.
    let names = {
        let ns = ns.clone();
        move |kc: &Path| {
            let ns = ns.clone();
            kube(kc, async move |client| {
                let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                    kube::Api::namespaced(client, &ns);
                let mut names: Vec<String> = api
                    .list(&Default::default())
                    .await
                    .expect("list")
                    .items
                    .into_iter()
                    .filter_map(|c| c.metadata.name)
                    .filter(|n| n != "kube-root-ca.crt")
                    .collect();
                names.sort();
                names
            })
        }
    };
    {
        let ns = ns.clone();
        kube(&kc, async move |client| {
            let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                kube::Api::namespaced(client, &ns);
            let cm = k8s_openapi::api::core::v1::ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some("foreign".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            api.create(&Default::default(), &cm).await.expect("create");
        });
    }
    assert_eq!(names(&kc), ["dropped", "foreign", "kept"]);

    write_manifests(dir.path(), &["kept"], false);
    let second = slipway(dir.path(), &kc, &["run", "--output", "json"]);
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    assert!(
        second
            .logs()
            .contains(&format!("pruned ConfigMap/{ns}/dropped")),
        "{}",
        second.logs()
    );
    assert_eq!(names(&kc), ["foreign", "kept"]);
    drop_namespace(&kc, &ns);
}

#[test]
fn diff_shows_a_changed_replica_count_before_anything_is_applied() {
    let Some(kc) = cluster() else { return };
    good_image();
    let ns = unique("diff");
    let dir = small_project(&ns, &["settings"], true);
    let first = slipway(dir.path(), &kc, &["run", "--output", "json"]);
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);

    let same = slipway(dir.path(), &kc, &["release", "diff"]);
    assert_eq!(same.code, Some(0), "{}\n{}", same.stdout, same.stderr);
    assert!(same.stderr.contains("no changes"), "{}", same.stderr);

    let diff = slipway(dir.path(), &kc, &["release", "diff", "--set", "REPLICAS=3"]);
    assert_eq!(diff.code, Some(1), "{}\n{}", diff.stdout, diff.stderr);
    assert!(
        diff.stdout
            .contains(&format!("--- live/Deployment/{ns}/web")),
        "{}",
        diff.stdout
    );
    assert!(diff.stdout.contains("-  replicas: 1"), "{}", diff.stdout);
    assert!(diff.stdout.contains("+  replicas: 3"), "{}", diff.stdout);
    // Only that line differs, and nothing was applied.
    assert_eq!(
        diff.stdout
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .count(),
        1
    );
    let replicas = {
        let ns = ns.clone();
        kube(&kc, async move |client| {
            let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
                kube::Api::namespaced(client, &ns);
            api.get("web")
                .await
                .expect("get")
                .spec
                .and_then(|s| s.replicas)
        })
    };
    assert_eq!(replicas, Some(1));
    drop_namespace(&kc, &ns);
}

#[test]
fn ctrl_c_during_the_wait_leaves_a_release_the_next_run_completes() {
    let Some(kc) = cluster() else { return };
    good_image();
    let ns = unique("interrupt");
    let dir = small_project(&ns, &["settings"], true);
    // A readiness probe that never passes: the release waits.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir.path())
        .env("KUBECONFIG", &kc)
        .args(["run", "--output", "json", "--set", "PROBE=/missing"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("applied Deployment/") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(60)).is_ok(),
        "never applied"
    );
    std::thread::sleep(Duration::from_secs(2));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
    let status = child.wait().expect("wait");
    let lines = reader.join().expect("reader");
    assert_eq!(status.code(), Some(130), "{lines:?}");

    let history = slipway(dir.path(), &kc, &["release", "history", "small", "-n", &ns]);
    assert!(history.stdout.contains("pending"), "{}", history.stdout);

    // The next run is not blocked: it settles revision 1 and completes.
    let next = slipway(dir.path(), &kc, &["run", "--output", "json"]);
    assert_eq!(next.code, Some(0), "{}\n{}", next.stdout, next.stderr);
    assert!(
        next.logs()
            .contains("revision 1 was interrupted before its verdict"),
        "{}",
        next.logs()
    );
    assert!(
        next.logs().contains("revision 2 deployed and healthy"),
        "{}",
        next.logs()
    );
    let history = slipway(dir.path(), &kc, &["release", "history", "small", "-n", &ns]);
    let statuses: Vec<&str> = history
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(statuses, ["failed", "deployed"], "{}", history.stdout);
    drop_namespace(&kc, &ns);
}

#[test]
fn an_api_server_that_does_not_answer_exits_3_with_a_clear_message() {
    // A kubeconfig whose server is a closed port on loopback: what a
    // client sees when the API server is stopped.
    let dir = small_project("nowhere", &["settings"], false);
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\ncurrent-context: down\nclusters:\n- name: down\n  cluster:\n    server: https://127.0.0.1:9\n\
         contexts:\n- name: down\n  context:\n    cluster: down\n    user: nobody\nusers:\n- name: nobody\n  user:\n    token: x\n",
    )
    .expect("write");
    let run = slipway(
        dir.path(),
        &kc,
        &["run", "--backend", "local", "--output", "json"],
    );
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    let message = run.finished()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("the Kubernetes API at https://127.0.0.1:9/ does not answer"),
        "{message}"
    );
    let status = slipway(dir.path(), &kc, &["release", "status", "small", "-n", "x"]);
    assert_eq!(status.code, Some(3), "{}", status.stderr);
    assert!(
        status.stderr.contains("does not answer"),
        "{}",
        status.stderr
    );
}

#[test]
fn a_field_conflict_names_its_manager_and_force_conflicts_takes_it_over() {
    let Some(kc) = cluster() else { return };
    good_image();
    let ns = unique("conflict");
    let dir = small_project(&ns, &[], true);
    let first = slipway(dir.path(), &kc, &["run", "--output", "json"]);
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);

    // Somebody scales the Deployment with their own field manager.
    {
        let ns = ns.clone();
        kube(&kc, async move |client| {
            let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
                kube::Api::namespaced(client, &ns);
            let patch = serde_json::json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": { "name": "web" },
                "spec": { "replicas": 2 }
            });
            api.patch(
                "web",
                &kube::api::PatchParams::apply("ops-scaler").force(),
                &kube::api::Patch::Apply(&patch),
            )
            .await
            .expect("patch");
        });
    }
    let conflict = slipway(dir.path(), &kc, &["run", "--output", "json"]);
    assert_eq!(
        conflict.code,
        Some(1),
        "{}\n{}",
        conflict.stdout,
        conflict.stderr
    );
    let message = conflict.finished()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for part in ["ops-scaler", ".spec.replicas", "--force-conflicts"] {
        assert!(message.contains(part), "no `{part}` in: {message}");
    }
    let forced = slipway(
        dir.path(),
        &kc,
        &["run", "--output", "json", "--force-conflicts"],
    );
    assert_eq!(forced.code, Some(0), "{}\n{}", forced.stdout, forced.stderr);
    drop_namespace(&kc, &ns);
}
