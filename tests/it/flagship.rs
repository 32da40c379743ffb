//! The README's first command, `scripts/deliver`, run as the README runs it:
//! the chat example's pipeline installs, lints, tests against PostgreSQL,
//! builds and pushes its image to the registry on localhost:5000 and
//! releases it to the test cluster, from images built out of Debian's
//! packages; then `scripts/deliver --broken` is rolled back on its own.
//!
//! The only differences from the README: the slipway binary under test
//! (`SLIPWAY_BIN`), a namespace of the test's own (`--namespace`), and, when
//! `SLIPWAY_TEST_KUBECONFIG` names a cluster, that cluster
//! (`SLIPWAY_KUBECONFIG`). With `CI` set the test fails when the Docker
//! engine, the registry or the cluster is missing; elsewhere it says so and
//! passes.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};

use crate::release::{cluster, drop_namespace, kube, unique};
use crate::support::root;

/// Whether the engine and the registry answer; panics in CI when not.
pub(crate) fn engine_and_registry() -> bool {
    let engine = std::process::Command::new("/usr/bin/docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let registry = std::net::TcpStream::connect("127.0.0.1:5000").is_ok();
    if !(engine && registry) {
        assert!(
            std::env::var("CI").is_err(),
            "CI needs the Docker engine and the registry on 127.0.0.1:5000 (engine: {engine}, registry: {registry}): run scripts/dev-env.sh"
        );
        eprintln!("skipped: no Docker engine or no registry (scripts/dev-env.sh starts both)");
    }
    engine && registry
}

struct Delivered {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn deliver(ns: &str, extra: &[&str]) -> Delivered {
    let mut cmd = std::process::Command::new(root().join("scripts/deliver"));
    cmd.current_dir(root())
        .args(extra)
        .args(["--namespace", ns])
        .env("SLIPWAY_BIN", assert_cmd::cargo::cargo_bin("slipway"))
        .env_remove("KUBECONFIG");
    if let Some(kc) = std::env::var_os("SLIPWAY_TEST_KUBECONFIG") {
        cmd.env("SLIPWAY_KUBECONFIG", kc);
    }
    let start = Instant::now();
    let out = cmd.output().expect("scripts/deliver runs");
    Delivered {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// `slipway release ARGS` against the cluster, as text.
fn release(kubeconfig: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(root())
        .env("KUBECONFIG", kubeconfig)
        .arg("release")
        .args(args)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "slipway release {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The chat Deployment's Ready pods that are not going away.
fn ready_pods(kubeconfig: &Path, ns: &str) -> Vec<Pod> {
    let ns = ns.to_string();
    kube(kubeconfig, async move |client| {
        let api: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
        api.list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=chat"))
            .await
            .expect("pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .collect()
    })
}

/// The messages of the events about one pod.
fn pod_events(kubeconfig: &Path, ns: &str, pod: &str) -> Vec<String> {
    let (ns, pod) = (ns.to_string(), pod.to_string());
    kube(kubeconfig, async move |client| {
        let api: kube::Api<Event> = kube::Api::namespaced(client, &ns);
        api.list(&kube::api::ListParams::default().fields(&format!("involvedObject.name={pod}")))
            .await
            .expect("events")
            .items
            .into_iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                )
            })
            .collect()
    })
}

/// A plain HTTP/1.0 GET: the status line and the body.
fn get(ip: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect_timeout(
        &format!("{ip}:8080").parse().expect("address"),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("{ip}:8080 does not answer: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

#[test]
fn scripts_deliver_builds_pushes_and_releases_chat_then_rolls_a_broken_change_back() {
    if !engine_and_registry() {
        return;
    }
    let Some(kc) = cluster() else { return };
    let ns = unique("flagship");
    // The commit every revision is made from (the checkout's own).
    let head = std::process::Command::new("git")
        .current_dir(root())
        .args(["rev-parse", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("git");

    // README command 1.
    let good = deliver(&ns, &[]);
    assert_eq!(good.code, Some(0), "{}\n{}", good.stdout, good.stderr);
    for part in [
        "test[NODE=18]",
        "test[NODE=20]",
        "setup: db:5432 is up",
        "pushing localhost:5000/chat:main-",
        "revision 1 deployed and healthy",
        "chat answers at http://",
    ] {
        assert!(
            good.stdout.contains(part),
            "no `{part}` in:\n{}",
            good.stdout
        );
    }

    // The release is healthy: revision 1, deployed.
    let status = release(&kc, &["status", "chat", "-n", &ns]);
    assert!(status.contains("deployed:  revision 1"), "{status}");
    assert!(
        status.contains("chat = localhost:5000/chat:main-"),
        "{status}"
    );

    // Its one pod runs the pushed image, pulled from the registry: the
    // kubelet says it pulled it, and the engine knows it by the registry's
    // digest.
    let pods = ready_pods(&kc, &ns);
    assert_eq!(pods.len(), 1, "{pods:?}");
    let pod = &pods[0];
    let name = pod.metadata.name.clone().expect("a name");
    let status = pod.status.as_ref().expect("a status");
    let chat = status
        .container_statuses
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.name == "chat"))
        .expect("the chat container");
    assert!(
        chat.image_id
            .starts_with("docker-pullable://localhost:5000/chat@sha256:"),
        "{}",
        chat.image_id
    );
    let digest = chat.image_id.rsplit('@').next().unwrap_or_default();
    // The kubelet posts events after the fact, one at a time: a backlog
    // from other tests' Pods may hold this one back a while.
    let pulled = |e: &String| {
        e.starts_with("Pulled: Successfully pulled image \"localhost:5000/chat")
            && e.contains(digest)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut events = pod_events(&kc, &ns, &name);
    while !events.iter().any(pulled) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        events = pod_events(&kc, &ns, &name);
    }
    assert!(
        events.iter().any(pulled),
        "no pull of {digest} in {events:?}"
    );

    // The service answers, as the script showed.
    let ip = status.pod_ip.clone().expect("a pod IP");
    assert!(
        good.stdout
            .contains(&format!("chat answers at http://{ip}:8080")),
        "{}",
        good.stdout
    );
    let (line, body) = get(&ip, "/healthz");
    assert!(line.contains(" 200 "), "{line}");
    assert_eq!(body, "ok\n");
    let (line, body) = get(&ip, "/messages");
    assert!(line.contains(" 200 "), "{line}");
    assert!(body.contains("\"room\":\"lobby\""), "{body}");

    // README command 1 again, nothing changed: the same commit builds the
    // same image (same digest), so the release applies nothing and the pod
    // keeps running.
    let again = deliver(&ns, &[]);
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    assert!(
        again
            .stdout
            .contains("no changes; revision 1 is live and healthy"),
        "{}",
        again.stdout
    );
    let still = ready_pods(&kc, &ns);
    assert!(
        still.len() == 1 && still[0].metadata.uid == pod.metadata.uid,
        "the pod was replaced: {still:?}"
    );

    // The documented second command: a broken change, rolled back.
    let broken = deliver(&ns, &["--broken"]);
    assert_eq!(broken.code, Some(0), "{}\n{}", broken.stdout, broken.stderr);
    for part in [
        "progress deadline exceeded",
        "revision 2 of `chat` failed",
        "rolled back: revision 3",
    ] {
        assert!(
            broken.stdout.contains(part),
            "no `{part}` in:\n{}",
            broken.stdout
        );
    }
    assert!(
        broken.stderr.contains("rolled back as expected"),
        "{}",
        broken.stderr
    );
    // History says which commit each revision was, and what became of it.
    let history: serde_json::Value = serde_json::from_str(&release(
        &kc,
        &["history", "chat", "-n", &ns, "--output", "json"],
    ))
    .expect("history is JSON");
    let rows: Vec<(u64, String, String)> = history["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default().to_string(),
                r["commit"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, "superseded".to_string(), head.clone()),
            (2, "rolled-back".to_string(), head.clone()),
            (3, "deployed".to_string(), head.clone()),
        ],
        "{history}"
    );
    assert!(
        history["revisions"][0]["images"][0]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("localhost:5000/chat@sha256:") && d.ends_with(digest)),
        "{history}"
    );
    // Serving again, from a Ready pod of the revision rolled back to.
    let pods = ready_pods(&kc, &ns);
    assert_eq!(pods.len(), 1, "{pods:?}");
    let ip = pods[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a pod IP");
    assert!(get(&ip, "/healthz").0.contains(" 200 "));

    eprintln!(
        "flagship timings: scripts/deliver {:.1}s, again {:.1}s, scripts/deliver --broken {:.1}s",
        good.took.as_secs_f64(),
        again.took.as_secs_f64(),
        broken.took.as_secs_f64()
    );
    drop_namespace(&kc, &ns);
}
