//! The stage cache on the Docker engine: an unchanged re-run starts no
//! container, a changed input re-runs its stage and those after it and
//! nothing else, and every part of a stage's key (image, script, env,
//! secret values) makes a miss when it changes.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Runs `slipway run` in `dir` with its own cache folder; returns the exit
/// code, each stage's status, and how many containers the engine created
/// for this pipeline meanwhile (from the engine's events).
fn run(
    dir: &Path,
    cache: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, BTreeMap<String, String>, usize, String) {
    let since = jiff::Timestamp::now().as_second() - 1;
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("slipway"))
        .current_dir(dir)
        .env("XDG_CACHE_HOME", cache)
        .envs(env.iter().copied())
        .args(["run", "p.pipeline", "--output", "json"])
        .args(extra)
        .output()
        .expect("runs");
    let until = jiff::Timestamp::now().as_second() + 1;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // This run's containers only (by its id's label): the window of
    // seconds above also holds the end of the run before.
    let run_id = stdout
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|e| e["run"].as_str().map(str::to_string))
        .unwrap_or_default();
    let mut statuses = BTreeMap::new();
    for e in stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if e["event"] == "stage_finished" {
            statuses.insert(
                e["stage"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    let events = std::process::Command::new("/usr/bin/docker")
        .args([
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
        ])
        .args(["--filter", "type=container", "--filter", "event=create"])
        .args(["--filter", &format!("label=dev.slipway.run={run_id}")])
        .args(["--format", "{{.Actor.ID}}"])
        .output()
        .expect("docker events");
    let created = String::from_utf8_lossy(&events.stdout).lines().count();
    (out.status.code(), statuses, created, stdout)
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

const PIPELINE: &str = "pipeline \"NAME\"\n\nsecret TOKEN\n\nenv { MODE = \"fast\" }\n\n\
     stage a {\n  image \"local/busybox\"\n  inputs \"a/**\"\n  artifact \"out-a/\"\n  env { T = \"${secret.TOKEN}\" }\n  run \"mkdir -p out-a && cat a/x > out-a/x && echo a=$(cat a/x) $MODE\"\n}\n\n\
     stage b {\n  image \"local/busybox\"\n  inputs \"b/**\"\n  run \"echo b=$(cat b/x)\"\n}\n\n\
     stage c after a {\n  image \"local/busybox\"\n  inputs \"c/**\"\n  run \"echo c sees $(cat out-a/x)\"\n}\n\n\
     stage always after b {\n  image \"local/busybox\"\n  run \"echo no inputs, always runs\"\n}\n";

/// A project of three inputs, each `1`, and the pipeline named `name`
/// (with this process's id), written and returned.
fn project(name: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = PIPELINE.replace("NAME", &format!("{name}-{}", std::process::id()));
    for (f, t) in [("a/x", "1"), ("b/x", "1"), ("c/x", "1")] {
        write(dir.path(), f, t);
    }
    write(dir.path(), "p.pipeline", &pipeline);
    (dir, pipeline)
}

#[test]
fn an_unchanged_rerun_starts_no_container_and_a_change_reruns_only_what_it_touches() {
    if !crate::docker::engine() {
        return;
    }
    let (dir, pipeline) = project("cache-rerun");
    let (root, pipeline) = (dir.path(), pipeline.as_str());
    let cache = root.join("cache");
    let token = [("TOKEN", "s3cret")];
    let ran = |s: &BTreeMap<String, String>| -> Vec<String> {
        s.iter()
            .filter(|(_, v)| *v == "succeeded")
            .map(|(k, _)| k.clone())
            .collect()
    };
    let cached = |s: &BTreeMap<String, String>| -> Vec<String> {
        s.iter()
            .filter(|(_, v)| *v == "cached")
            .map(|(k, _)| k.clone())
            .collect()
    };

    let (code, first, created, out) = run(root, &cache, &[], &token);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(ran(&first), ["a", "always", "b", "c"]);
    assert_eq!(created, 4, "{out}");

    // Unchanged: every stage with inputs is cached, only `always` runs.
    let (code, second, created, out) = run(root, &cache, &[], &token);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(cached(&second), ["a", "b", "c"], "{out}");
    assert_eq!(ran(&second), ["always"]);
    assert_eq!(created, 1, "only `always` made a container: {out}");
    // The recorded output is shown, and c got a's artifact restored.
    assert!(
        out.contains("a=1 fast") && out.contains("c sees 1"),
        "{out}"
    );

    // One input of `a` changes: `a` and `c` (after it) run, `b` does not.
    write(root, "a/x", "2");
    let (_, third, _, out) = run(root, &cache, &[], &token);
    assert_eq!(ran(&third), ["a", "always", "c"], "{out}");
    assert_eq!(cached(&third), ["b"]);
    assert!(out.contains("c sees 2"), "{out}");

    // A secret's value, an env value, the script, the image: each a miss
    // for `a` (and so for `c`).
    let (_, s, _, _) = run(root, &cache, &[], &[("TOKEN", "other")]);
    assert_eq!(s["a"], "succeeded", "a new secret value");
    // A declared secret is in every stage's env, under its own name.
    assert_eq!(s["b"], "succeeded");
    write(
        root,
        "p.pipeline",
        &pipeline.replace("MODE = \"fast\"", "MODE = \"slow\""),
    );
    let (_, s, _, _) = run(root, &cache, &[], &token);
    assert_eq!(s["a"], "succeeded", "a new env value");
    write(root, "p.pipeline", &pipeline.replace("echo a=", "echo A="));
    let (_, s, _, _) = run(root, &cache, &[], &token);
    assert_eq!(s["a"], "succeeded", "a new script");
    write(
        root,
        "p.pipeline",
        &pipeline.replacen("local/busybox", "local/debian", 1),
    );
    let (_, s, _, _) = run(root, &cache, &[], &token);
    assert_eq!(s["a"], "succeeded", "another image");

    // `--no-cache` runs everything (and keeps writing).
    write(root, "p.pipeline", pipeline);
    let (_, s, created, _) = run(root, &cache, &["--no-cache"], &token);
    assert_eq!(ran(&s), ["a", "always", "b", "c"]);
    assert_eq!(created, 4);
}

#[test]
fn a_damaged_cache_entry_is_a_miss_with_a_warning_never_a_wrong_result() {
    if !crate::docker::engine() {
        return;
    }
    let (dir, _) = project("cache-damaged");
    let root = dir.path();
    let cache = root.join("cache");
    let token = [("TOKEN", "s3cret")];
    let (code, _, _, out) = run(root, &cache, &[], &token);
    assert_eq!(code, Some(0), "{out}");
    // Every blob of the store changed, sizes kept.
    let blobs = cache.join("slipway/stage-cache/blobs/blake3");
    for e in std::fs::read_dir(&blobs).expect("blobs").flatten() {
        let mut bytes = std::fs::read(e.path()).expect("read");
        if let Some(b) = bytes.first_mut() {
            *b ^= 0xff;
        }
        std::fs::write(e.path(), bytes).expect("write");
    }
    let (code, s, _, out) = run(root, &cache, &[], &token);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(s["a"], "succeeded", "{out}");
    assert!(
        out.contains("cache entry not used") && out.contains("damaged"),
        "{out}"
    );
    assert!(out.contains("c sees 1"), "{out}");
}
