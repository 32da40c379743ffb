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
    /// Each stage's attempts' statuses, in order.
    statuses: BTreeMap<String, Vec<String>>,
    skipped: BTreeMap<String, String>,
    /// Each stage's lines on each stream, in order.
    logs: BTreeMap<String, Vec<String>>,
    /// Each kept artifact file's SHA-256, by path in the run's store;
    /// `None` for a backend that keeps none (`local` runs in the project).
    artifacts: Option<BTreeMap<String, String>>,
}

/// One run every backend must agree on.
struct Case {
    name: &'static str,
    text: String,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// Send SIGTERM once this stage has printed a line.
    sigterm_after: Option<&'static str>,
    /// Whether the logs can agree.
    logs: bool,
}

fn run_on(backend: &str, case: &Case, kubeconfig: Option<&Path>, ns: &str) -> Seen {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.pipeline"), &case.text).expect("write");
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
            "--pull",
            "never",
        ])
        .args(case.args)
        .envs(case.env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(kc) = kubeconfig {
        cmd.env("KUBECONFIG", kc).args(["--namespace", ns]);
    }
    let mut child = cmd.spawn().expect("runs");
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).ok();
        text
    });
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut events: Vec<Value> = Vec::new();
    let mut signalled = false;
    for line in std::io::BufRead::lines(stdout).map_while(Result::ok) {
        let Ok(e) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if !signalled && e["event"] == "log" && case.sigterm_after.is_some_and(|s| e["stage"] == s)
        {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
            signalled = true;
        }
        events.push(e);
    }
    let status = child.wait().expect("waits");
    let errors = errors.join().unwrap_or_default();
    assert!(
        case.sigterm_after.is_none() || signalled,
        "{backend}: {}: the run ended before it was signalled\n{errors}",
        case.name
    );
    let mut seen = Seen {
        code: status.code(),
        statuses: BTreeMap::new(),
        skipped: BTreeMap::new(),
        logs: BTreeMap::new(),
        artifacts: None,
    };
    let logged = case.logs;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for e in &events {
        let stage = text(&e["stage"]);
        match e["event"].as_str() {
            Some("stage_finished") => {
                seen.statuses
                    .entry(stage)
                    .or_default()
                    .push(text(&e["status"]));
            }
            Some("stage_skipped") => {
                seen.skipped.insert(stage, text(&e["reason"]));
            }
            // In order within each stream; the order across the two is
            // not kept by any backend (they are two pipes).
            Some("log") if logged => seen
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
    assert!(!events.is_empty(), "{backend}: no events\n{errors}");
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

const BUSYBOX: &str = "image \"local/busybox\"";

/// The runs every backend must agree on: the run tests' pipelines
/// (`tests/it/run.rs`) and the examples that run here.
fn cases() -> Vec<Case> {
    let case = |name, text: &str, args| Case {
        name,
        text: text.replace("IMAGE", BUSYBOX),
        args,
        env: &[],
        sigterm_after: None,
        logs: true,
    };
    let mut cases = vec![
        case(
            "flow",
            "pipeline \"conf-flow\"\n\n\
             env { GREETING = \"hi\" }\n\n\
             stage a {\n  IMAGE\n  run \"cat data.txt; echo a=$GREETING\"\n}\n\n\
             stage b after a {\n  IMAGE\n  run \"echo b; echo to-stderr >&2; exit 3\"\n}\n\n\
             stage c after b {\n  IMAGE\n  run \"echo c\"\n}\n\n\
             stage d {\n  IMAGE\n  matrix { N = [\"1\", \"2\"] }\n  run \"echo d$N\"\n}\n\n\
             stage e after d {\n  IMAGE\n  allow-failure\n  run \"echo e; exit 2\"\n}\n\n\
             stage f after e {\n  IMAGE\n  run \"printf 'no newline'\"\n}\n\n\
             finally report {\n  IMAGE\n  run \"echo status=$SLIPWAY_PIPELINE_STATUS\"\n}\n",
            &["--keep-going"],
        ),
        case(
            "artifacts",
            "pipeline \"conf-art\"\n\n\
             stage make {\n  IMAGE\n  artifact \"dist/\"\n  run \"mkdir -p dist/sub && echo one > dist/a.txt && echo two > dist/sub/b.txt\"\n}\n\n\
             stage use after make {\n  IMAGE\n  run \"cat dist/a.txt dist/sub/b.txt\"\n}\n",
            &[],
        ),
        case(
            "timeout",
            "pipeline \"conf-timeout\"\n\n\
             stage slow {\n  IMAGE\n  timeout 2s\n  run \"echo begun; sleep 60\"\n}\n\n\
             stage after-slow after slow {\n  IMAGE\n  run \"echo never\"\n}\n\n\
             stage quick {\n  IMAGE\n  run \"echo quick\"\n}\n",
            &["--keep-going"],
        ),
        // Every attempt is a new container, Pod or process, from a fresh
        // copy of the workspace (the local backend runs in the project).
        case(
            "retry",
            "pipeline \"conf-retry\"\n\n\
             stage flaky {\n  IMAGE\n  retry 2\n  run \"echo attempt; exit 4\"\n}\n\n\
             stage lint {\n  IMAGE\n  allow-failure\n  run \"echo lint; exit 1\"\n}\n\n\
             stage next after lint {\n  IMAGE\n  run \"echo next\"\n}\n\n\
             stage never after flaky {\n  IMAGE\n  run \"echo never\"\n}\n",
            &["--keep-going"],
        ),
        // Without `--keep-going` the first failure cancels what runs and
        // skips the rest.
        case(
            "fail-fast",
            "pipeline \"conf-fail-fast\"\n\n\
             stage bad {\n  IMAGE\n  run \"exit 3\"\n}\n\n\
             stage slow {\n  IMAGE\n  run \"sleep 60\"\n}\n\n\
             stage after-bad after bad {\n  IMAGE\n  run \"true\"\n}\n\n\
             stage after-slow after slow {\n  IMAGE\n  run \"true\"\n}\n\n\
             finally report {\n  IMAGE\n  run \"echo status=$SLIPWAY_PIPELINE_STATUS\"\n}\n",
            &["-j", "2"],
        ),
        case("manual", MANUAL, &[]),
        case("manual-approved", MANUAL, &["--approve", "approve"]),
        Case {
            env: &[("TOKEN", "hunter2-very-secret")],
            ..case(
                "masking",
                "pipeline \"conf-masking\"\n\nsecret TOKEN\n\n\
                 stage leak {\n  IMAGE\n  env { AUTH = \"Bearer ${secret.TOKEN}\" }\n  \
                 run \"echo token=$TOKEN; echo $AUTH; echo prefix${TOKEN}suffix; echo $TOKEN >&2\"\n}\n",
                &[],
            )
        },
        Case {
            sigterm_after: Some("long"),
            ..case(
                "sigterm",
                "pipeline \"conf-sigterm\"\n\n\
                 stage long {\n  IMAGE\n  run \"echo begun; sleep 60\"\n}\n\n\
                 stage later after long {\n  IMAGE\n  run \"echo later\"\n}\n\n\
                 finally notify {\n  IMAGE\n  run \"echo status=$SLIPWAY_PIPELINE_STATUS\"\n}\n",
                &[],
            )
        },
    ];
    // The chat example needs a registry, a release and services (the
    // flagship test runs it); `matrix` prints `uname -a`, which names the
    // machine, so its logs cannot agree.
    for (name, logs) in [("fanout", true), ("matrix", false)] {
        let file = crate::support::root().join(format!("examples/{name}/{name}.pipeline"));
        let text = std::fs::read_to_string(&file).expect("an example");
        cases.push(Case {
            name,
            text,
            args: &["--keep-going"],
            env: &[],
            sigterm_after: None,
            logs,
        });
    }
    cases
}

const MANUAL: &str = "pipeline \"conf-manual\"\n\n\
     stage build {\n  IMAGE\n  run \"echo built\"\n}\n\n\
     stage approve after build {\n  manual \"Ship it?\"\n}\n\n\
     stage deploy after approve {\n  IMAGE\n  run \"echo deploying\"\n}\n";

#[test]
fn docker_local_and_kubernetes_give_the_same_runs() {
    if !crate::docker::engine() {
        return;
    }
    let Some(kubeconfig) = cluster() else { return };
    let ns = unique("slipway-conformance");
    let mut differences = Vec::new();
    for case in cases() {
        let name = case.name;
        let docker = run_on("docker", &case, None, &ns);
        let local = run_on("local", &case, None, &ns);
        let pods = run_on("kubernetes", &case, Some(&kubeconfig), &ns);
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
        let expect = |stage: &str, statuses: &[&str]| {
            assert_eq!(
                docker
                    .statuses
                    .get(stage)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                statuses,
                "{name}: {stage}: {docker:?}"
            );
        };
        match name {
            "artifacts" => assert_eq!(
                docker.artifacts.as_ref().map(BTreeMap::len),
                Some(2),
                "{docker:?}"
            ),
            "retry" => expect("flaky", &["failed", "failed", "failed"]),
            "fail-fast" => expect("slow", &["cancelled"]),
            "manual" => expect("approve", &["waiting_for_approval"]),
            "manual-approved" => expect("deploy", &["succeeded"]),
            "masking" => assert!(
                !format!("{docker:?}").contains("hunter2")
                    && format!("{docker:?}").contains("Bearer ***"),
                "{docker:?}"
            ),
            "sigterm" => {
                assert_eq!(docker.code, Some(130));
                expect("notify", &["succeeded"]);
            }
            _ => {}
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
