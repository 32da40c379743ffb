//! `slipway run` through the real binary, on the local backend (host
//! processes): the scheduler's semantics without an engine.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

fn write(dir: &Path, text: &str) {
    std::fs::write(dir.join("p.pipeline"), text).expect("write pipeline");
}

/// Runs `slipway run --backend local --output json` in `dir`; returns the
/// exit code, the events and the elapsed time.
fn run_json(dir: &Path, extra: &[&str]) -> (Option<i32>, Vec<Value>, Duration) {
    let start = Instant::now();
    let out = Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args([
            "run",
            "p.pipeline",
            "--backend",
            "local",
            "--output",
            "json",
        ])
        .args(extra)
        .output()
        .expect("runs");
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out.status.code(), events, start.elapsed())
}

fn finished<'a>(events: &'a [Value], stage: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == "stage_finished" && e["stage"] == stage)
        .collect()
}

fn status(events: &[Value], stage: &str) -> String {
    finished(events, stage)
        .last()
        .map(|e| e["status"].as_str().unwrap_or_default().to_string())
        .or_else(|| {
            events
                .iter()
                .find(|e| e["event"] == "stage_skipped" && e["stage"] == stage)
                .map(|_| "skipped".to_string())
        })
        .unwrap_or_else(|| "none".into())
}

/// Whether a process is still running (a zombie waiting for an init that
/// does not reap, as in some sandboxes, is not).
fn running(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    stat.rsplit(") ")
        .next()
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('Z'))
}

fn time_of(e: &Value) -> jiff::Timestamp {
    e["time"]
        .as_str()
        .expect("time")
        .parse()
        .expect("RFC 3339 time")
}

#[test]
fn a_fan_out_really_overlaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("stage first {\n  image \"x\"\n  run \"true\"\n}\n");
    for i in 0..4 {
        text.push_str(&format!(
            "stage s{i} after first {{\n  image \"x\"\n  run \"sleep 1\"\n}}\n"
        ));
    }
    write(dir.path(), &text);
    let (code, events, took) = run_json(dir.path(), &["-j", "4"]);
    assert_eq!(code, Some(0));
    let starts: Vec<jiff::Timestamp> = events
        .iter()
        .filter(|e| {
            e["event"] == "stage_started" && e["stage"].as_str().is_some_and(|s| s.starts_with('s'))
        })
        .map(time_of)
        .collect();
    let first_end = (0..4)
        .map(|i| time_of(finished(&events, &format!("s{i}"))[0]))
        .min()
        .expect("ends");
    assert_eq!(starts.len(), 4);
    assert!(
        starts.iter().all(|s| *s < first_end),
        "the four stages did not all start before one ended"
    );
    assert!(
        took < Duration::from_millis(3500),
        "4 × 1 s in parallel took {took:?}"
    );
}

#[test]
fn fail_fast_cancels_and_skips_keep_going_runs_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage bad {\n  image \"x\"\n  run \"exit 3\"\n}\n\
         stage slow {\n  image \"x\"\n  run \"sleep 3\"\n}\n\
         stage after-bad after bad {\n  image \"x\"\n  run \"true\"\n}\n\
         stage after-slow after slow {\n  image \"x\"\n  run \"true\"\n}\n",
    );
    let (code, events, took) = run_json(dir.path(), &["-j", "2"]);
    assert_eq!(code, Some(1));
    assert_eq!(status(&events, "bad"), "failed");
    assert_eq!(status(&events, "slow"), "cancelled");
    assert_eq!(status(&events, "after-bad"), "skipped");
    assert_eq!(status(&events, "after-slow"), "skipped");
    assert!(
        took < Duration::from_millis(2500),
        "fail-fast waited for the slow stage: {took:?}"
    );

    let (code, events, _) = run_json(dir.path(), &["-j", "2", "--keep-going"]);
    assert_eq!(code, Some(1));
    assert_eq!(status(&events, "slow"), "succeeded");
    assert_eq!(status(&events, "after-slow"), "succeeded");
    assert_eq!(status(&events, "after-bad"), "skipped");
    let reason = events
        .iter()
        .find(|e| e["event"] == "stage_skipped" && e["stage"] == "after-bad")
        .and_then(|e| e["reason"].as_str())
        .expect("reason");
    assert!(reason.contains("`bad`"), "{reason}");
}

#[test]
fn retry_then_success_and_allow_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage flaky {\n  image \"x\"\n  retry 2\n  run \"\"\"\n    n=$(cat count 2>/dev/null || echo 0)\n    echo $((n + 1)) > count\n    [ \"$n\" -ge 1 ]\n  \"\"\"\n}\n\
         stage lint {\n  image \"x\"\n  allow-failure\n  run \"exit 1\"\n}\n\
         stage next after flaky, lint {\n  image \"x\"\n  run \"true\"\n}\n",
    );
    let (code, events, _) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0));
    let attempts: Vec<&str> = finished(&events, "flaky")
        .iter()
        .map(|e| e["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(attempts, ["failed", "succeeded"]);
    assert_eq!(status(&events, "lint"), "failed_allowed");
    assert_eq!(status(&events, "next"), "succeeded");
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage hang {\n  image \"x\"\n  timeout 1s\n  run \"sleep 60 & echo $! > child.pid; wait\"\n}\n",
    );
    let (code, events, took) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1));
    assert_eq!(status(&events, "hang"), "timed_out");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let pid = std::fs::read_to_string(dir.path().join("child.pid"))
        .expect("the stage wrote its child's pid");
    assert!(
        !running(&pid),
        "the stage's child {} survived the timeout",
        pid.trim()
    );
}

#[test]
fn finally_runs_after_a_failure_with_the_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage bad {\n  image \"x\"\n  run \"exit 1\"\n}\n\
         finally notify {\n  image \"x\"\n  run \"echo status=$SLIPWAY_PIPELINE_STATUS stage=$SLIPWAY_STAGE\"\n}\n",
    );
    let (code, events, _) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1));
    assert_eq!(status(&events, "notify"), "succeeded");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "log" && e["line"] == "status=failed stage=notify"),
        "{events:?}"
    );
}

#[test]
fn secrets_are_masked_in_json_and_human_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "secret TOKEN\n\nstage leak {\n  image \"x\"\n  env { AUTH = \"Bearer ${secret.TOKEN}\" }\n  run \"echo token=$TOKEN; echo $AUTH; echo prefix${TOKEN}suffix\"\n}\n",
    );
    let value = "hunter2-very-secret";
    let out = Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir.path())
        .env("TOKEN", value)
        .args([
            "run",
            "p.pipeline",
            "--backend",
            "local",
            "--output",
            "json",
        ])
        .output()
        .expect("runs");
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{json}");
    assert!(
        !json.contains(value),
        "the secret leaked into JSON:\n{json}"
    );
    assert!(
        json.contains("token=***")
            && json.contains("Bearer ***")
            && json.contains("prefix***suffix"),
        "{json}"
    );

    let out = Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir.path())
        .env("TOKEN", value)
        .env("NO_COLOR", "1")
        .args(["run", "p.pipeline", "--backend", "local"])
        .output()
        .expect("runs");
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        !human.contains(value),
        "the secret leaked into human output:\n{human}"
    );
    assert!(human.contains("leak │ token=***"), "{human}");

    // Without the secret, nothing runs.
    Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir.path())
        .env_remove("TOKEN")
        .args(["run", "p.pipeline", "--backend", "local"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("secret `TOKEN` is not set"));
}

#[test]
fn a_manual_gate_waits_without_approve_and_runs_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage build {\n  image \"x\"\n  run \"true\"\n}\n\
         stage approve after build {\n  manual \"Ship it?\"\n}\n\
         stage deploy after approve {\n  image \"x\"\n  run \"echo deploying\"\n}\n",
    );
    let (code, events, _) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0));
    assert_eq!(status(&events, "approve"), "waiting_for_approval");
    assert_eq!(status(&events, "deploy"), "skipped");

    let (code, events, _) = run_json(dir.path(), &["--approve", "approve"]);
    assert_eq!(code, Some(0));
    assert_eq!(status(&events, "approve"), "succeeded");
    assert_eq!(status(&events, "deploy"), "succeeded");
}

#[test]
fn human_output_ends_with_a_table_and_the_critical_path() {
    let out = Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(crate::support::root())
        .env("NO_COLOR", "1")
        .args([
            "run",
            "examples/fanout/fanout.pipeline",
            "--backend",
            "local",
            "-j",
            "8",
        ])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("shard-3 │ shard 3 of 8: working"), "{text}");
    assert!(text.contains("critical path: split → shard-"), "{text}");
    assert!(text.contains("run succeeded in"), "{text}");
}

#[test]
fn sigterm_mid_run_stops_everything_runs_finally_and_exits_130() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage long {\n  image \"x\"\n  run \"sleep 60 & echo $! > child.pid; wait\"\n}\n\
         stage later after long {\n  image \"x\"\n  run \"true\"\n}\n\
         finally notify {\n  image \"x\"\n  run \"echo status=$SLIPWAY_PIPELINE_STATUS\"\n}\n",
    );
    let bin = assert_cmd::cargo::cargo_bin("slipway");
    let child = std::process::Command::new(bin)
        .current_dir(dir.path())
        .args([
            "run",
            "p.pipeline",
            "--backend",
            "local",
            "--output",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid_file = dir.path().join("child.pid");
    let start = Instant::now();
    while !pid_file.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(status(&events, "long"), "cancelled");
    assert_eq!(status(&events, "later"), "skipped");
    assert!(
        events.iter().any(|e| e["line"] == "status=cancelled"),
        "{events:?}"
    );
    let sleeper = std::fs::read_to_string(&pid_file).expect("pid");
    assert!(
        !running(&sleeper),
        "the stage's child {} survived",
        sleeper.trim()
    );
}

#[test]
fn the_junit_report_parses_back_with_one_case_per_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage ok {\n  image \"x\"\n  run \"true\"\n}\n\
         stage bad {\n  image \"x\"\n  run \"echo nope; exit 4\"\n}\n\
         stage after-bad after bad {\n  image \"x\"\n  run \"true\"\n}\n",
    );
    let (code, _, _) = run_json(dir.path(), &["--keep-going", "--junit", "report.xml"]);
    assert_eq!(code, Some(1));
    let xml = std::fs::read_to_string(dir.path().join("report.xml")).expect("report written");
    let report = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit XML");
    let suite = &report.test_suites[0];
    assert_eq!(suite.test_cases.len(), 3);
    let case = |name: &str| {
        suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("no test case {name}"))
    };
    assert!(matches!(
        case("ok").status,
        quick_junit::TestCaseStatus::Success { .. }
    ));
    match &case("bad").status {
        quick_junit::TestCaseStatus::NonSuccess { message, .. } => {
            assert_eq!(message.as_ref().map(|m| m.as_str()), Some("exited with 4"));
        }
        other => panic!("bad: {other:?}"),
    }
    assert!(matches!(
        case("after-bad").status,
        quick_junit::TestCaseStatus::Skipped { .. }
    ));
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), running
/// stages show as spinners with their elapsed time, redrawn in place under
/// the log lines; piped, the same run prints no spinner.
#[test]
fn the_live_view_draws_spinners_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage slow {\n  image \"local/busybox\"\n  run \"sleep 1.5; echo done\"\n}\n\
         stage quick {\n  image \"local/busybox\"\n  run \"sleep 0.5\"\n}\n",
    );
    let bin = assert_cmd::cargo::cargo_bin("slipway");
    let command = format!("{} run p.pipeline --backend local", bin.display());
    let out = std::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .output()
        .expect("util-linux `script` gives the run a pseudo-terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // Spinners with their elapsed time, for both stages, and a second tick.
    for part in ["slow 0s", "quick 0s", "slow 1s", "\x1b[2K"] {
        assert!(
            text.contains(part),
            "no {part:?} in the terminal output:\n{text}"
        );
    }
    assert!(text.contains("done"), "{text}");
    assert!(text.contains("critical path: slow"), "{text}");

    let piped = Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir.path())
        .args(["run", "p.pipeline", "--backend", "local"])
        .output()
        .expect("runs");
    let plain = String::from_utf8_lossy(&piped.stdout);
    assert!(
        !plain.contains("slow 0s") && !plain.contains('\x1b'),
        "{plain}"
    );
    assert!(plain.contains("critical path: slow"), "{plain}");
}

#[test]
fn a_stage_the_backend_cannot_run_refuses_the_run_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage first {\n  image \"x\"\n  run \"touch ran\"\n}\n\
         stage image after first {\n  build \".\"\n}\n",
    );
    Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .args(["run", "p.pipeline", "--backend", "local"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "cannot run `image`: the local backend runs only `run` stages, not `build` stages",
        ));
    assert!(!dir.path().join("ran").exists(), "nothing may run");
}

#[test]
fn runs_lists_each_run_with_its_status_and_failed_stages_and_a_killed_one_as_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stage a {\n  image \"x\"\n  run \"echo a\"\n}\n\
         stage b after a {\n  image \"x\"\n  run \"exit 3\"\n}\n",
    );
    let (code, _, _) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1));
    // A run killed mid-stage cannot say how it ended.
    write(
        dir.path(),
        "stage long {\n  image \"x\"\n  run \"echo $$ > started; sleep 60\"\n}\n",
    );
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir.path())
        .args([
            "run",
            "p.pipeline",
            "--backend",
            "local",
            "--output",
            "json",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while !dir.path().join("started").exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    // What the killed run left (its stage's process group) goes too.
    let script: i32 = std::fs::read_to_string(dir.path().join("started"))
        .expect("the script's pid")
        .trim()
        .parse()
        .expect("a pid");
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(script),
        nix::sys::signal::Signal::SIGKILL,
    );
    let out = Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir.path())
        .args(["runs", "--format", "json"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let runs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    // Newest first.
    assert_eq!(runs[0]["state"], "killed", "{runs:?}");
    assert_eq!(runs[1]["state"], "failed");
    assert_eq!(runs[1]["stages"][1]["name"], "b");
    assert_eq!(runs[1]["stages"][1]["status"], "failed");
    let text = Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir.path())
        .args(["runs"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("killed") && text.contains("failed"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("failed") && l.trim_end().ends_with(" b")),
        "{text}"
    );
}

#[test]
fn resume_runs_only_what_failed_or_changed_and_what_comes_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache");
    let run = |extra: &[&str]| -> (Option<i32>, Vec<Value>) {
        let out = Command::cargo_bin("slipway")
            .expect("binary")
            .current_dir(dir.path())
            .env("XDG_CACHE_HOME", cache.path())
            .args([
                "run",
                "p.pipeline",
                "--backend",
                "local",
                "--output",
                "json",
            ])
            .args(extra)
            .output()
            .expect("runs");
        let events = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (out.status.code(), events)
    };
    let pipeline = |b: &str, d: &str| {
        format!(
            "stage a {{\n  image \"x\"\n  run \"echo a\"\n}}\n\
             stage b after a {{\n  image \"x\"\n  run \"{b}\"\n}}\n\
             stage c after b {{\n  image \"x\"\n  run \"echo c\"\n}}\n\
             stage d {{\n  image \"x\"\n  run \"{d}\"\n}}\n"
        )
    };
    write(dir.path(), &pipeline("exit 3", "echo d"));
    let (code, first) = run(&[]);
    assert_eq!(code, Some(1));
    assert_eq!(status(&first, "b"), "failed");
    assert_eq!(status(&first, "c"), "skipped");

    // Fixed; `d` changed too: `a` is not run again, the rest is.
    write(dir.path(), &pipeline("echo b fixed", "echo d changed"));
    let (code, resumed) = run(&["--resume"]);
    assert_eq!(code, Some(0), "{resumed:?}");
    assert_eq!(status(&resumed, "a"), "cached");
    assert_eq!(status(&resumed, "b"), "succeeded");
    assert_eq!(status(&resumed, "c"), "succeeded");
    assert_eq!(status(&resumed, "d"), "succeeded");
    // `a`'s output is shown as it was.
    assert!(
        resumed
            .iter()
            .any(|e| e["stage"] == "a" && e["line"] == "a"),
        "{resumed:?}"
    );

    // Without `--resume`, stages without `inputs` always run.
    let (_, again) = run(&[]);
    assert_eq!(status(&again, "a"), "succeeded");

    // A run that is not recorded here cannot be resumed.
    let out = Command::cargo_bin("slipway")
        .expect("binary")
        .current_dir(dir.path())
        .env("XDG_CACHE_HOME", cache.path())
        .args([
            "run",
            "p.pipeline",
            "--backend",
            "local",
            "--resume",
            "no-such-run",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no run `no-such-run` recorded here"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
