//! `slipway run` on the real Docker engine. With `CI=true` these tests fail
//! when no engine answers; elsewhere they say so and pass, so that
//! `scripts/test` works on a laptop without Docker. `.ci/run` starts the
//! engine and builds the images with `scripts/dev-env.sh` first.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::PredicateBooleanExt as _;
use serde_json::Value;

use crate::support::build_image;

/// Whether the engine answers; panics in CI when it does not.
pub(crate) fn engine() -> bool {
    let up = std::process::Command::new("/usr/bin/docker")
        .args(["image", "inspect", "local/busybox"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !up {
        assert!(
            std::env::var("CI").is_err(),
            "CI needs the Docker engine and local/busybox: run scripts/dev-env.sh"
        );
        eprintln!("skipped: no Docker engine with local/busybox (scripts/dev-env.sh starts one)");
    }
    up
}

fn run(dir: &Path, text: &str, extra: &[&str]) -> (Option<i32>, Vec<Value>, String, Duration) {
    std::fs::write(dir.join("p.pipeline"), text).expect("write");
    let start = Instant::now();
    let out = Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir)
        .args(["run", "p.pipeline", "--output", "json"])
        .args(extra)
        .output()
        .expect("runs");
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status.code(),
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

/// Containers and networks of a pipeline still there.
fn left_behind(pipeline: &str) -> usize {
    let filter = format!("label=dev.slipway.pipeline={pipeline}");
    let list = |what: &[&str]| {
        std::process::Command::new("/usr/bin/docker")
            .args(what)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    };
    list(&["ps", "-a", "-q", "--filter", &filter])
        + list(&["network", "ls", "-q", "--filter", &filter])
        + list(&["volume", "ls", "-q", "--filter", &filter])
}

/// A web server image built from local/busybox whose `HEALTHCHECK` passes
/// only once it has served for a second: a stage that used it too early
/// would not find `/ping`.
fn httpd_image() -> &'static str {
    build_image(
        "local/slipway-test-httpd:healthcheck",
        "FROM local/busybox\n\
         HEALTHCHECK --interval=1s --timeout=1s --retries=30 CMD test -f /srv/ping\n\
         CMD [\"sh\", \"-c\", \"mkdir -p /srv && sleep 1.5 && echo pong > /srv/ping && exec httpd -f -p 8080 -h /srv\"]\n",
    )
}

#[test]
fn stages_run_in_containers_in_parallel_and_leave_nothing() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = format!("leak-check-{}", std::process::id());
    let mut text = format!(
        "pipeline \"{pipeline}\"\n\nenv {{ GREETING = \"hello\" }}\n\nstage first {{\n  image \"local/busybox\"\n  artifact \"first.txt\"\n  run \"echo $GREETING > first.txt\"\n}}\n"
    );
    for i in 0..3 {
        text.push_str(&format!(
            "stage s{i} after first {{\n  image \"local/busybox\"\n  run \"sleep 2; echo s{i} read $(cat first.txt) in $SLIPWAY_STAGE at $(pwd)\"\n}}\n"
        ));
    }
    let (code, events, stderr, took) = run(dir.path(), &text, &["-j", "3"]);
    assert_eq!(code, Some(0), "{stderr}");
    for i in 0..3 {
        let line = format!("s{i} read hello in s{i} at /workspace");
        assert!(
            events.iter().any(|e| e["line"] == line.as_str()),
            "no `{line}` in {events:?}"
        );
    }
    // They overlapped: all three started before the first of them ended.
    let time = |e: &Value| {
        e["time"]
            .as_str()
            .expect("time")
            .parse::<jiff::Timestamp>()
            .expect("RFC 3339")
    };
    let of = |kind: &str| -> Vec<jiff::Timestamp> {
        events
            .iter()
            .filter(|e| {
                e["event"] == kind && e["stage"].as_str().is_some_and(|s| s.starts_with('s'))
            })
            .map(time)
            .collect()
    };
    let (starts, ends) = (of("stage_started"), of("stage_finished"));
    let first_end = ends.iter().min().expect("ends");
    assert!(
        starts.len() == 3 && starts.iter().all(|s| s < first_end),
        "the stages did not overlap"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(
        left_behind(&pipeline),
        0,
        "containers or networks of the run were left"
    );
}

#[test]
fn a_missing_image_fails_with_its_name() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, events, _, _) = run(
        dir.path(),
        "stage a {\n  image \"local/does-not-exist:1\"\n  run \"true\"\n}\n",
        &[],
    );
    assert_eq!(code, Some(1));
    let message = events
        .iter()
        .find(|e| e["event"] == "stage_finished")
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("local/does-not-exist:1"), "{message}");
}

#[test]
fn secrets_reach_the_container_only_masked_in_output() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("secrets"), "TOKEN=s3cr3t-value\n").expect("write");
    let (code, events, stderr, _) = run(
        dir.path(),
        "secret TOKEN\n\nstage a {\n  image \"local/busybox\"\n  run \"echo got=$TOKEN; echo len=${#TOKEN}\"\n}\n",
        &["--secrets-file", "secrets"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let all = serde_json::to_string(&events).expect("json");
    assert!(!all.contains("s3cr3t-value"), "{all}");
    assert!(all.contains("got=***") && all.contains("len=12"), "{all}");
}

#[test]
fn no_engine_is_an_infrastructure_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.pipeline"),
        "stage a {\n  image \"local/busybox\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["run", "p.pipeline"])
        .assert()
        .code(3)
        .stderr(
            predicates::str::contains("unix:///nonexistent/docker.sock")
                .and(predicates::str::contains("DOCKER_HOST"))
                // A user who installed slipway has no development scripts.
                .and(predicates::str::contains("scripts/").not()),
        );
}

#[test]
fn a_cache_survives_two_runs() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = format!("cache-check-{}", std::process::id());
    let text = format!(
        "pipeline \"{pipeline}\"\n\nstage count {{\n  image \"local/busybox\"\n  cache \"/cache/counter\"\n  \
         run \"n=$(cat /cache/counter/n 2>/dev/null || echo 0); n=$((n + 1)); echo $n > /cache/counter/n; echo count=$n\"\n}}\n"
    );
    let mut counts = Vec::new();
    for _ in 0..2 {
        let (code, events, stderr, _) = run(dir.path(), &text, &[]);
        assert_eq!(code, Some(0), "{stderr}");
        counts.extend(events.iter().filter_map(|e| {
            e["line"]
                .as_str()
                .and_then(|l| l.strip_prefix("count="))
                .map(str::to_string)
        }));
    }
    let volume = slipway::run::docker::cache_volume(&pipeline, "/cache/counter");
    let _ = std::process::Command::new("/usr/bin/docker")
        .args(["volume", "rm", "-f", &volume])
        .output();
    assert_eq!(
        counts,
        ["1", "2"],
        "the cache did not keep its content between runs"
    );
}

#[test]
fn a_service_is_reached_by_its_name_once_healthy() {
    if !engine() {
        return;
    }
    let image = httpd_image();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two cells with the same service name run at once without clashing;
    // one request each, with no retry: the stage starts only once its
    // service's healthcheck passes.
    let (code, events, stderr, _) = run(
        dir.path(),
        &format!(
            "stage probe {{\n  matrix {{ N = [\"1\", \"2\"] }}\n  image \"local/busybox\"\n  service web \"{image}\"\n  \
             run \"wget -q -O - http://web:8080/ping\"\n}}\n"
        ),
        &["-j", "2"],
    );
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    let pongs = events.iter().filter(|e| e["line"] == "pong").count();
    assert_eq!(pongs, 2, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["line"] == "waiting for service `web` to be healthy"),
        "{events:?}"
    );
}

#[test]
fn a_service_that_exits_fails_the_stage_with_its_name() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // It exits with 3 while its healthcheck has not passed yet.
    let image = build_image(
        "local/slipway-test-dies:healthcheck",
        "FROM local/busybox\n\
         HEALTHCHECK --interval=1s --timeout=1s --retries=30 CMD test -f /never\n\
         CMD [\"sh\", \"-c\", \"sleep 1; exit 3\"]\n",
    );
    let (code, events, stderr, _) = run(
        dir.path(),
        &format!(
            "stage probe {{\n  image \"local/busybox\"\n  service web \"{image}\"\n  run \"echo never\"\n}}\n"
        ),
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}\n{events:?}");
    let finished = events
        .iter()
        .find(|e| e["event"] == "stage_finished")
        .expect("finished");
    assert!(
        finished["message"]
            .as_str()
            .is_some_and(|m| m.contains("service `web` exited with 3 before it was ready")),
        "{finished}"
    );
    assert!(!events.iter().any(|e| e["line"] == "never"));
}

#[test]
fn stages_at_once_each_see_their_own_workspace_and_the_project_is_not_written() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("input.txt"), "from the project\n").expect("write");
    // Each stage overwrites the same file, waits while the other does too,
    // and checks it still has its own; and each sees the project's files.
    let stage = |name: &str| {
        format!(
            "stage {name} {{\n  image \"local/busybox\"\n  run \"\"\"\n    grep -q 'from the project' input.txt\n    echo $SLIPWAY_STAGE > out.txt\n    echo changed > input.txt\n    sleep 1.5\n    test \"$(cat out.txt)\" = $SLIPWAY_STAGE\n    echo $SLIPWAY_STAGE kept its own\n  \"\"\"\n}}\n"
        )
    };
    let pipeline = format!("{}{}{}", stage("left"), stage("right"), stage("third"));
    let (code, events, stderr, _) = run(dir.path(), &pipeline, &["-j", "3"]);
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    for name in ["left", "right", "third"] {
        let line = format!("{name} kept its own");
        assert!(
            events.iter().any(|e| e["line"] == line.as_str()),
            "{events:?}"
        );
    }
    assert!(
        !dir.path().join("out.txt").exists(),
        "a stage wrote into the project"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("input.txt")).expect("read"),
        "from the project\n"
    );
}

#[test]
fn sigterm_mid_run_leaves_no_container_network_or_volume() {
    if !engine() {
        return;
    }
    let image = httpd_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = format!("sigterm-check-{}", std::process::id());
    std::fs::write(
        dir.path().join("p.pipeline"),
        format!(
            "pipeline \"{pipeline}\"\n\nstage long {{\n  image \"local/busybox\"\n  service helper \"{image}\"\n  run \"echo started; sleep 60\"\n}}\n\
             stage other {{\n  image \"local/busybox\"\n  run \"sleep 60\"\n}}\n"
        ),
    )
    .expect("write");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir.path())
        .args(["run", "p.pipeline", "--output", "json", "-j", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    // Wait for the stage's own output: its service is up, it is running.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(r#""line":"started""#) {
                let _ = tx.send(());
            }
        }
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(30)).is_ok(),
        "the stage never started"
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = child.wait().expect("wait");
    let _ = reader.join();
    assert_eq!(status.code(), Some(130));
    assert!(start.elapsed() < Duration::from_secs(40));
    assert_eq!(
        left_behind(&pipeline),
        0,
        "the run left containers, networks or volumes behind"
    );
    // Nor the scratch layers of its workspaces (`slipway-<time>-<pid>`).
    let suffix = format!("-{}", child.id());
    let scratch: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("slipway-") && n.ends_with(&suffix))
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");
}

fn registry_up() -> bool {
    let up = std::net::TcpStream::connect("127.0.0.1:5000").is_ok();
    assert!(
        up || std::env::var("CI").is_err(),
        "CI needs the registry on 127.0.0.1:5000: run scripts/dev-env.sh"
    );
    up
}

#[test]
fn an_image_is_built_with_labels_pushed_and_inspected_back() {
    if !engine() || !registry_up() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Dockerfile"), "FROM local/busybox AS base\nRUN echo built > /built\nFROM base AS release\nARG GREETING\nRUN echo $GREETING > /greeting\n").expect("write");
    std::fs::write(dir.path().join(".dockerignore"), "secret.txt\n").expect("write");
    std::fs::write(dir.path().join("secret.txt"), "do not send").expect("write");
    let tag = format!("127.0.0.1:5000/slipway-test/app:t{}", std::process::id());
    let text = format!(
        "pipeline \"labels\"\n\nstage package {{\n  build \".\" {{\n    target \"release\"\n    tag \"{tag}\"\n    label \"org.example.team\" = \"qa\"\n    arg \"GREETING\" = \"hi\"\n    push true\n  }}\n}}\n"
    );
    let (code, events, stderr, _) = run(dir.path(), &text, &["--sha", "0123456789abcdef"]);
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("/usr/bin/docker")
            .args(args)
            .output()
            .expect("docker");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Gone locally, back from the registry.
    docker(&["rmi", &tag]);
    docker(&["pull", "-q", &tag]);
    let labels: Value = serde_json::from_str(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &tag,
    ]))
    .expect("labels");
    assert_eq!(labels["org.example.team"], "qa");
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        "0123456789abcdef"
    );
    assert_eq!(labels["org.opencontainers.image.title"], "labels");
    assert!(
        labels["org.opencontainers.image.created"]
            .as_str()
            .is_some_and(|c| c.starts_with("20"))
    );
    assert_eq!(
        docker(&["run", "--rm", &tag, "cat", "/built", "/greeting"]),
        "built\nhi"
    );
    let listing = docker(&["run", "--rm", &tag, "ls", "/"]);
    assert!(!listing.contains("secret.txt"));
    docker(&["rmi", &tag]);
}

#[test]
fn the_same_commit_builds_the_same_image() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(
        p.join("Dockerfile"),
        "FROM local/busybox\nRUN echo built > /built\n",
    )
    .expect("write");
    let tag = format!("local/slipway-test-same:t{}", std::process::id());
    let text = format!(
        "pipeline \"same\"\n\nstage package {{\n  build \".\" {{\n    tag \"{tag}\"\n  }}\n}}\n"
    );
    std::fs::write(p.join("p.pipeline"), &text).expect("write");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(p)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_DATE", "2026-12-01T10:00:00+00:00")
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    let id = || {
        let out = std::process::Command::new("/usr/bin/docker")
            .args([
                "image",
                "inspect",
                "--format",
                "{{.Id}} {{index .Config.Labels \"org.opencontainers.image.created\"}}",
                &tag,
            ])
            .output()
            .expect("docker");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (code, events, stderr, _) = run(p, &text, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    let first = id();
    assert!(first.contains(" 2026-12-01T10:00:00"), "{first}");
    let (code, events, stderr, _) = run(p, &text, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    assert_eq!(
        id(),
        first,
        "a second build of the commit is the same image"
    );
    let _ = std::process::Command::new("/usr/bin/docker")
        .args(["rmi", &tag])
        .output();
}

#[test]
fn an_artifact_is_handed_to_later_stages_and_kept() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, events, stderr, _) = run(
        dir.path(),
        "stage make {\n  image \"local/busybox\"\n  artifact \"/out/\"\n  run \"mkdir -p /out && echo made-by-make > /out/report.txt\"\n}\n\
         stage use after make {\n  image \"local/busybox\"\n  artifact \"used.txt\"\n  run \"echo use saw $(cat /out/report.txt); echo used-by-use > used.txt\"\n}\n\
         stage later after use {\n  image \"local/busybox\"\n  run \"echo later saw $(cat /out/report.txt) and $(cat used.txt)\"\n}\n",
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    // `use` was started ahead and ends by its gate's word: its artifact is
    // still taken from its container.
    for line in [
        "use saw made-by-make",
        "later saw made-by-make and used-by-use",
    ] {
        assert!(
            events.iter().any(|e| e["line"] == line),
            "no `{line}` in {events:?}"
        );
    }
    let runs = dir.path().join(".slipway/runs");
    let run = std::fs::read_dir(&runs)
        .expect("run store")
        .next()
        .expect("one run")
        .expect("entry")
        .path();
    let kept = std::fs::read_to_string(run.join("artifacts/make/out/report.txt"))
        .expect("artifact kept in the store");
    assert_eq!(kept.trim(), "made-by-make");
}

#[test]
fn images_are_pulled_when_missing_and_never_with_pull_never() {
    if !engine() || !registry_up() {
        return;
    }
    let image = format!("127.0.0.1:5000/slipway-test/pullme:p{}", std::process::id());
    let docker = |args: &[&str]| {
        std::process::Command::new("/usr/bin/docker")
            .args(args)
            .output()
            .expect("docker")
            .status
            .success()
    };
    assert!(docker(&["tag", "local/busybox", &image]));
    assert!(docker(&["push", "-q", &image]));
    assert!(docker(&["rmi", &image]));
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("stage a {{\n  image \"{image}\"\n  run \"echo pulled and ran\"\n}}\n");

    let (code, events, _, _) = run(dir.path(), &text, &["--pull", "never"]);
    assert_eq!(code, Some(1));
    assert!(
        serde_json::to_string(&events)
            .expect("json")
            .contains("--pull never"),
        "{events:?}"
    );

    let (code, events, stderr, _) = run(dir.path(), &text, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    assert!(
        events.iter().any(|e| e["line"] == "pulled and ran"),
        "{events:?}"
    );
    docker(&["rmi", &image]);
}

/// Dependents are started ahead, their scripts held behind a gate: the
/// container of `b` runs while `a` still does, yet `b`'s script begins only
/// after `a` has succeeded, with its standard input closed and its own exit
/// status; a dependent of a failure never runs its script, and its
/// waiting container is removed.
#[test]
fn dependents_start_ahead_but_run_only_after_their_dependencies() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = format!("ahead-{}", std::process::id());
    let text = format!(
        "pipeline \"{pipeline}\"\n\n\
         stage a {{\n  image \"local/busybox\"\n  run \"sleep 6; echo a-done\"\n}}\n\
         stage b after a {{\n  image \"local/busybox\"\n  run \"\"\"\n    if read -r line; then echo \"stdin:$line\"; else echo stdin-closed; fi\n    echo b-ran\n    echo to-stderr >&2\n    printf no-line-break\n    exit 7\n  \"\"\"\n}}\n\
         stage t after a {{\n  image \"local/busybox\"\n  timeout 1s\n  allow-failure\n  run \"sleep 30\"\n}}\n"
    );
    std::fs::write(dir.path().join("p.pipeline"), &text).expect("write");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir.path())
        .args(["run", "p.pipeline", "--output", "json", "--keep-going"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // While `a` sleeps, `b`'s container is already up: both run at once
    // (however slowly a busy engine starts them).
    let filter = format!("label=dev.slipway.pipeline={pipeline}");
    let running = |stage: &str| {
        std::process::Command::new("/usr/bin/docker")
            .args(["ps", "-q", "--filter", &filter, "--filter"])
            .arg(format!("label=dev.slipway.stage={stage}"))
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    let mut seen = false;
    while !seen && matches!(child.try_wait(), Ok(None)) {
        seen = running("b") && running("a");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("wait");
    assert!(seen, "b's container was not started while a ran");
    assert_eq!(out.status.code(), Some(1));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let index = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred);
    let a_done = index(&|e| e["event"] == "stage_finished" && e["stage"] == "a").expect("a ends");
    let b_log = |line: &str| {
        let line = line.to_string();
        index(&move |e| e["stage"] == "b" && e["line"] == line.as_str())
    };
    assert!(b_log("b-ran").expect("b ran") > a_done, "{events:?}");
    assert!(b_log("stdin-closed").is_some(), "{events:?}");
    // Everything the script wrote, and nothing of the gate's end marker.
    assert!(b_log("to-stderr").is_some(), "{events:?}");
    assert!(b_log("no-line-break").is_some(), "{events:?}");
    let all = serde_json::to_string(&events).expect("json");
    assert!(!all.contains("slipway-end-"), "{all}");
    // A timeout still kills a container started ahead.
    let t = events
        .iter()
        .find(|e| e["event"] == "stage_finished" && e["stage"] == "t")
        .expect("t ends");
    assert!(
        t["message"]
            .as_str()
            .is_some_and(|m| m.contains("killed after its timeout")),
        "{t}"
    );
    let b = events
        .iter()
        .find(|e| e["event"] == "stage_finished" && e["stage"] == "b")
        .expect("b ends");
    assert_eq!(b["exit_code"], 7, "{b}");
    assert_eq!(left_behind(&pipeline), 0, "containers of the run were left");

    // `c` waits ahead behind `a`, which fails: `c`'s script never runs (it
    // would write to the project, which the shared workspace shows).
    let text = format!(
        "pipeline \"{pipeline}\"\n\n\
         stage a {{\n  image \"local/busybox\"\n  run \"sleep 2; exit 1\"\n}}\n\
         stage c after a {{\n  image \"local/busybox\"\n  run \"touch c-ran\"\n}}\n"
    );
    let (code, events, stderr, _) = run(dir.path(), &text, &["--workspace", "shared"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "stage_skipped" && e["stage"] == "c"),
        "{events:?}"
    );
    assert!(!dir.path().join("c-ran").exists(), "c's script ran");
    assert_eq!(left_behind(&pipeline), 0, "the waiting container was left");
}

#[test]
fn dockerignore_re_includes_reach_the_build_context() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(root.join("Dockerfile"), "FROM local/busybox\nCOPY . /ctx\n").expect("write");
    std::fs::write(
        root.join(".dockerignore"),
        "*.log\n!keep.log\nbuild/\n!build/keep.txt\n",
    )
    .expect("write");
    std::fs::create_dir_all(root.join("build")).expect("mkdir");
    for f in ["keep.log", "drop.log", "build/keep.txt", "build/drop.txt"] {
        std::fs::write(root.join(f), f).expect("write");
    }
    let tag = format!("local/slipway-test-ignore:t{}", std::process::id());
    let text = format!(
        "pipeline \"ignore\"\n\nstage image {{\n  build \".\" {{\n    tag \"{tag}\"\n  }}\n}}\n"
    );
    let (code, events, stderr, _) = run(root, &text, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    let out = std::process::Command::new("/usr/bin/docker")
        .args(["run", "--rm", &tag, "find", "/ctx", "-type", "f"])
        .output()
        .expect("docker run");
    let _ = std::process::Command::new("/usr/bin/docker")
        .args(["rmi", &tag])
        .output();
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/build/keep.txt",
            "/ctx/keep.log",
            "/ctx/p.pipeline"
        ],
        "re-included files are sent, the rest of the excluded ones are not"
    );
}

/// A Unix socket that forwards to the engine's until it is cut: every
/// connection is shut down at once, and no new one is taken.
struct Cuttable {
    path: std::path::PathBuf,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Cuttable {
    fn new(dir: &Path) -> Self {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::Ordering;
        let path = dir.join("engine.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::<UnixStream>::new()));
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
                    let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                        continue;
                    };
                    let pipes = [
                        (client.try_clone(), engine.try_clone()),
                        (engine.try_clone(), client.try_clone()),
                    ];
                    registered.extend([client, engine]);
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
        Self { path, streams, cut }
    }

    /// The engine "dies": every connection through this socket ends.
    fn cut(&self) {
        if let Ok(streams) = self.streams.lock() {
            self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
            for s in streams.iter() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        // Wakes the accept loop so that it stops listening.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn the_engine_going_away_mid_run_fails_the_stage_and_exits_3() {
    use std::io::BufRead as _;
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = tempfile::tempdir().expect("tempdir");
    let proxy = Cuttable::new(socket.path());
    let pipeline = format!("engine-gone-{}", std::process::id());
    std::fs::write(
        dir.path().join("p.pipeline"),
        format!(
            "pipeline \"{pipeline}\"\n\nstage long {{\n  image \"local/busybox\"\n  run \"echo started; sleep 60\"\n}}\n\nstage after after long {{\n  image \"local/busybox\"\n  run \"true\"\n}}\n"
        ),
    )
    .expect("write");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir.path())
        .args(["run", "p.pipeline", "--output", "json"])
        .env("DOCKER_HOST", format!("unix://{}", proxy.path.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut events = Vec::new();
    // The script is running once its first line comes.
    while let Ok(e) = rx.recv_timeout(Duration::from_secs(120)) {
        let started = e["event"] == "log" && e["line"] == "started";
        events.push(e);
        if started {
            break;
        }
    }
    assert!(events.iter().any(|e| e["line"] == "started"), "{events:?}");
    proxy.cut();
    events.extend(rx.iter());
    let status = child.wait().expect("exits");
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut s, &mut stderr);
    }
    // What the run could not remove through the dead socket goes now.
    let filter = format!("label=dev.slipway.pipeline={pipeline}");
    let ids = std::process::Command::new("/usr/bin/docker")
        .args(["ps", "-aq", "--filter", &filter])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for id in ids.split_whitespace() {
        let _ = std::process::Command::new("/usr/bin/docker")
            .args(["rm", "-f", "-v", id])
            .output();
    }
    for kind in ["network", "volume"] {
        let ids = std::process::Command::new("/usr/bin/docker")
            .args([kind, "ls", "-q", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = std::process::Command::new("/usr/bin/docker")
                .args([kind, "rm", id])
                .output();
        }
    }
    assert_eq!(status.code(), Some(3), "{stderr}\n{events:?}");
    let finished = events
        .iter()
        .find(|e| e["event"] == "stage_finished" && e["stage"] == "long")
        .expect("long finished");
    assert_eq!(finished["status"], "failed", "{finished}");
    assert!(
        finished["message"]
            .as_str()
            .is_some_and(|m| m.contains("the Docker engine stopped answering")),
        "{finished}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "stage_skipped" && e["stage"] == "after"),
        "{events:?}"
    );
}

/// A web server built from local/busybox that serves `/ping` only after a
/// second and a half, and declares no `HEALTHCHECK`: without a `ready`
/// command a stage would start before it answers.
fn slow_httpd_image() -> &'static str {
    build_image(
        "local/slipway-test-httpd:slow",
        "FROM local/busybox\n\
         CMD [\"sh\", \"-c\", \"mkdir -p /srv && sleep 1.5 && echo pong > /srv/ping && exec httpd -f -p 8080 -h /srv\"]\n",
    )
}

#[test]
fn a_service_is_waited_for_until_its_ready_command_succeeds() {
    if !engine() {
        return;
    }
    let image = slow_httpd_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = format!("ready-{}", std::process::id());
    let text = format!(
        "pipeline \"{pipeline}\"\n\nstage use {{\n  image \"local/busybox\"\n  service web \"{image}\" {{\n    ready \"wget -q -O- http://127.0.0.1:8080/ping\"\n  }}\n  run \"wget -q -O- http://web:8080/ping\"\n}}\n\n\
         stage never {{\n  image \"local/busybox\"\n  timeout 3s\n  service web \"{image}\" {{\n    ready \"test -f /never\"\n  }}\n  run \"true\"\n}}\n"
    );
    let (code, events, stderr, _) = run(dir.path(), &text, &["--keep-going"]);
    assert_eq!(code, Some(1), "{stderr}\n{events:?}");
    let logs = |stage: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == "log" && e["stage"] == stage)
            .filter_map(|e| e["line"].as_str().map(str::to_string))
            .collect()
    };
    let status = |stage: &str| {
        events
            .iter()
            .rev()
            .find(|e| e["event"] == "stage_finished" && e["stage"] == stage)
            .map(|e| e["status"].clone())
    };
    assert_eq!(status("use"), Some("succeeded".into()), "{events:?}");
    let use_logs = logs("use");
    assert_eq!(
        use_logs,
        [
            "waiting for service `web` to be ready (`wget -q -O- http://127.0.0.1:8080/ping`)",
            "pong"
        ],
        "the script ran once the service answered"
    );
    // A service that never gets ready holds the stage until its timeout.
    assert_eq!(status("never"), Some("timed_out".into()), "{events:?}");
    assert!(
        logs("never")
            .iter()
            .any(|l| l.contains("waiting for service `web` to be ready")),
        "{events:?}"
    );
    assert_eq!(left_behind(&pipeline), 0);
}

/// Starts `slipway run` of `text` in `dir` and returns it once its stage
/// has printed `started`.
fn run_until_started(dir: &Path, text: &str) -> std::process::Child {
    use std::io::BufRead as _;
    std::fs::write(dir.join("p.pipeline"), text).expect("write");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir)
        .args(["run", "p.pipeline", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let started = lines.any(|l| l.is_ok_and(|l| l.contains("\"line\":\"started\"")));
    assert!(started, "the stage never started");
    // Keep reading, so the run never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

#[test]
fn gc_removes_what_a_killed_run_left_and_keeps_a_run_still_going() {
    if !engine() {
        return;
    }
    let pid = std::process::id();
    let (killed, going) = (format!("gc-killed-{pid}"), format!("gc-going-{pid}"));
    let pipeline = |name: &str| {
        format!(
            "pipeline \"{name}\"\n\nstage long {{\n  image \"local/busybox\"\n  run \"echo started; sleep 120\"\n}}\n"
        )
    };
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut dead = run_until_started(a.path(), &pipeline(&killed));
    let mut alive = run_until_started(b.path(), &pipeline(&going));
    // SIGKILL: no chance to clean up.
    dead.kill().expect("kill");
    let _ = dead.wait();
    assert!(
        left_behind(&killed) >= 3,
        "a container, a network, a volume"
    );
    let gc = |extra: &[&str]| {
        let out = Command::cargo_bin("slipway")
            .expect("binary")
            .arg("gc")
            .args(extra)
            .output()
            .expect("gc");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = gc(&["--dry-run"]);
    assert!(
        said.contains("would remove run") && said.contains(&format!("(pipeline `{killed}`)")),
        "{said}"
    );
    assert!(
        !said.contains(&going),
        "a run still going is not touched: {said}"
    );
    // The stage cache is trimmed too (or said to have nothing to trim).
    assert!(said.contains("stage cache: "), "{said}");
    assert!(left_behind(&killed) >= 3, "--dry-run removes nothing");
    let said = gc(&[]);
    assert!(
        said.contains(&format!(
            "(pipeline `{killed}`): 1 container, 1 network, 1 volume"
        )),
        "{said}"
    );
    assert_eq!(left_behind(&killed), 0, "{said}");
    assert!(left_behind(&going) >= 3, "the live run keeps its objects");
    // The live run ends normally and cleans up after itself.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(alive.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = alive.wait();
    assert_eq!(left_behind(&going), 0);
}

#[test]
fn resources_become_the_containers_limits() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "pipeline \"limits\"\n\nenv { MEM = \"64Mi\" }\n\ntemplate t {\n  image \"local/busybox\"\n  resources {\n    cpu \"0.5\"\n  }\n}\n\n\
                stage limited uses t {\n  resources {\n    memory \"${MEM}\"\n  }\n  run \"\"\"\n    # cgroup v2, else v1\n    if [ -f /sys/fs/cgroup/memory.max ]; then\n      cat /sys/fs/cgroup/memory.max; tr ' ' / < /sys/fs/cgroup/cpu.max\n    else\n      cat /sys/fs/cgroup/memory/memory.limit_in_bytes\n      echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)/$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)\n    fi\n  \"\"\"\n}\n";
    let (code, events, stderr, _) = run(dir.path(), text, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    let lines: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "log")
        .filter_map(|e| e["line"].as_str())
        .collect();
    // 64 MiB from the stage, half a core (50 ms in each 100 ms) from its template.
    assert_eq!(lines, ["67108864", "50000/100000"], "{events:?}");
}
