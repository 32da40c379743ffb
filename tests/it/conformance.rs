//! One meaning on every backend: the same pipelines run on `docker`,
//! `local` and `kubernetes`, and their exit codes, stage statuses, skip
//! reasons, log lines and (where a backend keeps them) artifact digests
//! are compared. With `CI` set the Docker and Kubernetes runs fail when
//! their component is missing.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sha2::Digest as _;

use crate::release::{cluster, drop_namespace, unique};

/// What a run did, as the comparison sees it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    code: Option<i32>,
    statuses: BTreeMap<String, String>,
    skipped: BTreeMap<String, String>,
    /// Each stage's lines on each stream, in order.
    logs: BTreeMap<String, Vec<String>>,
    /// Each kept artifact file's SHA-256, by path in the run's store;
    /// `None` for a backend that keeps none (`local` runs in the project).
    artifacts: Option<BTreeMap<String, String>>,
}

fn run_on(backend: &str, text: &str, kubeconfig: Option<&Path>, ns: &str) -> Seen {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.pipeline"), text).expect("write");
    std::fs::write(dir.path().join("data.txt"), "from the workspace\n").expect("write");
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"));
    cmd.current_dir(dir.path())
        .args([
            "run",
            "p.pipeline",
            "--output",
            "json",
            "--backend",
            backend,
        ])
        .args(["--keep-going", "--pull", "never"]);
    if let Some(kc) = kubeconfig {
        cmd.env("KUBECONFIG", kc).args(["--namespace", ns]);
    }
    let out = cmd.output().expect("runs");
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut seen = Seen {
        code: out.status.code(),
        statuses: BTreeMap::new(),
        skipped: BTreeMap::new(),
        logs: BTreeMap::new(),
        artifacts: None,
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for e in &events {
        let stage = text(&e["stage"]);
        match e["event"].as_str() {
            Some("stage_finished") => {
                seen.statuses.insert(stage, text(&e["status"]));
            }
            Some("stage_skipped") => {
                seen.skipped.insert(stage, text(&e["reason"]));
            }
            // In order within each stream; the order across the two is
            // not kept by any backend (they are two pipes).
            Some("log") => seen
                .logs
                .entry(format!("{stage} {}", text(&e["stream"])))
                .or_default()
                .push(text(&e["line"])),
            _ => {}
        }
    }
    if backend != "local" {
        let run = events.first().map(|e| text(&e["run"])).unwrap_or_default();
        let store = dir.path().join(format!(".slipway/runs/{run}/artifacts"));
        let mut digests = BTreeMap::new();
        for f in walk(&store) {
            if f.extension().is_some_and(|x| x == "tar") {
                // The archives' bytes carry times and owners: compare what
                // is in them.
                continue;
            }
            let bytes = std::fs::read(&f).expect("read");
            let rel = f.strip_prefix(&store).unwrap_or(&f).display().to_string();
            digests.insert(rel, format!("{:x}", sha2::Sha256::digest(&bytes)));
        }
        seen.artifacts = Some(digests);
    }
    assert!(
        !events.is_empty(),
        "{backend}: no events\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The pipelines every backend must agree on.
const PIPELINES: &[(&str, &str)] = &[
    (
        "flow",
        "pipeline \"conf-flow\"\n\n\
         env { GREETING = \"hi\" }\n\n\
         stage a {\n  image \"local/busybox\"\n  run \"cat data.txt; echo a=$GREETING\"\n}\n\n\
         stage b after a {\n  image \"local/busybox\"\n  run \"echo b; echo to-stderr >&2; exit 3\"\n}\n\n\
         stage c after b {\n  image \"local/busybox\"\n  run \"echo c\"\n}\n\n\
         stage d {\n  image \"local/busybox\"\n  matrix { N = [\"1\", \"2\"] }\n  run \"echo d$N\"\n}\n\n\
         stage e after d {\n  image \"local/busybox\"\n  allow-failure\n  run \"echo e; exit 2\"\n}\n\n\
         stage f after e {\n  image \"local/busybox\"\n  run \"printf 'no newline'\"\n}\n\n\
         finally report {\n  image \"local/busybox\"\n  run \"echo status=$SLIPWAY_PIPELINE_STATUS\"\n}\n",
    ),
    (
        "artifacts",
        "pipeline \"conf-art\"\n\n\
         stage make {\n  image \"local/busybox\"\n  artifact \"dist/\"\n  run \"mkdir -p dist/sub && echo one > dist/a.txt && echo two > dist/sub/b.txt\"\n}\n\n\
         stage use after make {\n  image \"local/busybox\"\n  run \"cat dist/a.txt dist/sub/b.txt\"\n}\n",
    ),
    (
        "timeout",
        "pipeline \"conf-timeout\"\n\n\
         stage slow {\n  image \"local/busybox\"\n  timeout 2s\n  run \"echo begun; sleep 60\"\n}\n\n\
         stage after-slow after slow {\n  image \"local/busybox\"\n  run \"echo never\"\n}\n\n\
         stage quick {\n  image \"local/busybox\"\n  run \"echo quick\"\n}\n",
    ),
];

/// The examples that run here (the chat example needs a registry, a
/// release and services: the flagship test runs it), and whether their
/// logs can agree: `matrix` prints `uname -a`, which names the machine.
const EXAMPLES: &[(&str, bool)] = &[("fanout", true), ("matrix", false)];

#[test]
fn docker_local_and_kubernetes_give_the_same_runs() {
    if !crate::docker::engine() {
        return;
    }
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-conformance");
    let mut differences = Vec::new();
    let examples: Vec<(String, String, bool)> = EXAMPLES
        .iter()
        .map(|(name, logs)| {
            let file = crate::support::root().join(format!("examples/{name}/{name}.pipeline"));
            let text = std::fs::read_to_string(&file).expect("an example");
            ((*name).to_string(), text, *logs)
        })
        .collect();
    let all = PIPELINES
        .iter()
        .map(|(n, t)| ((*n).to_string(), (*t).to_string(), true))
        .chain(examples);
    for (name, text, logs) in all {
        let (name, text) = (name.as_str(), text.as_str());
        let unlogged = |s: Seen| {
            if logs {
                s
            } else {
                Seen {
                    logs: BTreeMap::new(),
                    ..s
                }
            }
        };
        let docker = unlogged(run_on("docker", text, None, &ns));
        let local = unlogged(run_on("local", text, None, &ns));
        let pods = unlogged(run_on("kubernetes", text, Some(&kubeconfig), &ns));
        // The local backend keeps no artifacts: compare the rest with it.
        let without = |s: &Seen| Seen {
            artifacts: None,
            code: s.code,
            statuses: s.statuses.clone(),
            skipped: s.skipped.clone(),
            logs: s.logs.clone(),
        };
        differences.extend(differ(name, "local", &without(&docker), &local));
        differences.extend(differ(name, "kubernetes", &docker, &pods));
        // Each pipeline means something: a run that did nothing would
        // agree everywhere.
        assert!(!docker.statuses.is_empty(), "{name}: {docker:?}");
        if name == "artifacts" {
            assert_eq!(
                docker.artifacts.as_ref().map(BTreeMap::len),
                Some(2),
                "{docker:?}"
            );
        }
    }
    drop_namespace(&kubeconfig, &ns);
    assert!(differences.is_empty(), "{}", differences.join("\n\n"));
}

/// Each way `other` differs from what Docker did.
fn differ(pipeline: &str, backend: &str, docker: &Seen, other: &Seen) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |what: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{pipeline}: {what}: docker {a}, {backend} {b}"));
        }
    };
    field(
        "exit code",
        format!("{:?}", docker.code),
        format!("{:?}", other.code),
    );
    field(
        "statuses",
        format!("{:?}", docker.statuses),
        format!("{:?}", other.statuses),
    );
    field(
        "skip reasons",
        format!("{:?}", docker.skipped),
        format!("{:?}", other.skipped),
    );
    field(
        "logs",
        format!("{:?}", docker.logs),
        format!("{:?}", other.logs),
    );
    field(
        "artifacts",
        format!("{:?}", docker.artifacts),
        format!("{:?}", other.artifacts),
    );
    out
}
