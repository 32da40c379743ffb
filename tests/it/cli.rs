//! The real binary, end to end (assert_cmd).

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

use crate::support::root;

fn slipway() -> Command {
    let mut cmd = Command::cargo_bin("slipway").expect("binary");
    cmd.current_dir(root())
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTIONS");
    cmd
}

fn plan_json(args: &[&str]) -> Value {
    let out = slipway()
        .args(["plan", "--format", "json"])
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("plan is JSON")
}

fn waves(plan: &Value) -> Vec<Vec<String>> {
    serde_json::from_value(plan["waves"].clone()).expect("waves")
}

fn stage<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no stage {name}"))
}

#[test]
fn chat_on_main_runs_every_wave_through_deploy() {
    let plan = plan_json(&[
        "examples/chat/chat.pipeline",
        "--branch",
        "main",
        "--changed",
        "src/server.js",
    ]);
    assert_eq!(
        waves(&plan),
        vec![
            vec!["install"],
            vec!["lint", "test[NODE=18]", "test[NODE=20]"],
            vec!["package"],
            vec!["approve"],
            vec!["deploy"],
        ]
    );
    assert_eq!(plan["pipeline"], "chat");
    assert_eq!(plan["finally"], serde_json::json!(["notify"]));
    let test18 = stage(&plan, "test[NODE=18]");
    assert_eq!(test18["image"], "node:18-alpine");
    assert_eq!(test18["after"], serde_json::json!(["install"]));
    assert_eq!(test18["skipped"], false);
    // Secrets are masked; run scripts are not interpolated.
    assert_eq!(test18["env"]["NPM_TOKEN"], "***");
    assert_eq!(test18["run"], "npm run setup\nnpm test");
}

#[test]
fn chat_plan_as_documented_in_the_issue() {
    // Exactly the command from the issue, with the git context of this checkout.
    let plan = plan_json(&["examples/chat/chat.pipeline", "--branch", "main"]);
    let w = waves(&plan);
    assert_eq!(w[0], vec!["install"]);
    assert_eq!(w[1], vec!["lint", "test[NODE=18]", "test[NODE=20]"]);
    assert_eq!(w[2], vec!["package"]);
    assert_eq!(w[3], vec!["approve"]);
}

#[test]
fn chat_on_a_feature_branch_skips_approve_and_deploy_with_reasons() {
    let plan = plan_json(&["examples/chat/chat.pipeline", "--branch", "feature/x"]);
    assert_eq!(waves(&plan).len(), 3);
    let approve = stage(&plan, "approve");
    assert_eq!(approve["skipped"], true);
    assert!(
        approve["reason"]
            .as_str()
            .is_some_and(|r| r.contains("feature/x")),
        "{approve}"
    );
    let deploy = stage(&plan, "deploy");
    assert_eq!(deploy["skipped"], true);
    assert!(
        deploy["reason"]
            .as_str()
            .is_some_and(|r| r.contains("approve"))
    );
}

#[test]
fn changed_docs_skip_the_deploy() {
    let plan = plan_json(&[
        "examples/chat/chat.pipeline",
        "--branch",
        "main",
        "--changed",
        "docs/intro.md",
    ]);
    let deploy = stage(&plan, "deploy");
    assert_eq!(deploy["skipped"], true);
    assert!(
        deploy["reason"]
            .as_str()
            .is_some_and(|r| r.contains("docs/intro.md")),
        "{deploy}"
    );
}

#[test]
fn naming_a_target_keeps_it_and_its_dependencies() {
    let plan = plan_json(&["examples/chat/chat.pipeline", "lint", "--branch", "main"]);
    assert_eq!(waves(&plan), vec![vec!["install"], vec!["lint"]]);
    let plan = plan_json(&[
        "examples/chat/chat.pipeline",
        "test[NODE=20]",
        "--branch",
        "main",
    ]);
    assert_eq!(waves(&plan), vec![vec!["install"], vec!["test[NODE=20]"]]);
}

#[test]
fn env_and_set_choose_values() {
    let plan = plan_json(&[
        "examples/chat/chat.pipeline",
        "--branch",
        "release/1.2",
        "--sha",
        "0123456789abcdef",
        "--env",
        "production",
        "--set",
        "REGISTRY=registry.example:5000",
    ]);
    let install = stage(&plan, "install");
    assert_eq!(install["env"]["REPLICAS"], "3");
    assert_eq!(
        install["env"]["IMAGE"],
        "registry.example:5000/chat:release/1.2-0123456"
    );
    // The image reference in the build is made a valid tag.
    let package = stage(&plan, "package");
    assert_eq!(
        package["build"]["tags"],
        serde_json::json!(["registry.example:5000/chat:release-1.2-0123456"])
    );
    assert_eq!(plan["environment"], "production");
}

#[test]
fn unknown_environment_and_unknown_target_are_usage_errors() {
    slipway()
        .args(["plan", "examples/chat/chat.pipeline", "--env", "prod"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("unknown environment `prod`")
                .and(predicate::str::contains("production")),
        );
    slipway()
        .args(["plan", "examples/chat/chat.pipeline", "instal"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean `install`?"));
}

#[test]
fn check_reports_all_three_problems_with_locations_and_exits_2() {
    slipway()
        .args(["check", "tests/fixtures/err/combined.pipeline"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("unknown stage `instal`")
                .and(predicate::str::contains("did you mean `install`?"))
                .and(predicate::str::contains(
                    "dependency cycle: `a` → `c` → `b` → `a`",
                ))
                .and(predicate::str::contains("undefined variable `VERSON`"))
                .and(predicate::str::contains(
                    "tests/fixtures/err/combined.pipeline:8:19",
                ))
                .and(predicate::str::contains(
                    "tests/fixtures/err/combined.pipeline:9:24",
                )),
        );
}

#[test]
fn check_concise_and_json_formats() {
    slipway()
        .args(["check", "--diagnostics", "concise", "tests/fixtures/err/combined.pipeline"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "tests/fixtures/err/combined.pipeline:8:19: error[slipway::unknown-stage]: unknown stage `instal`",
        ));
    let out = slipway()
        .args([
            "check",
            "--diagnostics",
            "json",
            "tests/fixtures/err/combined.pipeline",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let first: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .expect("a line"),
    )
    .expect("JSON");
    assert_eq!(first["code"], "slipway::unknown-stage");
    assert_eq!(first["line"], 8);
    assert_eq!(first["column"], 19);
}

#[test]
fn github_annotations_inside_github_actions() {
    slipway()
        .env("GITHUB_ACTIONS", "true")
        .args(["check", "tests/fixtures/err/combined.pipeline"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "::error file=tests/fixtures/err/combined.pipeline,line=8,col=19,",
        ));
}

#[test]
fn check_without_a_file_uses_the_single_pipeline_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("app.pipeline"),
        "stage a {\n  image \"x\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    slipway()
        .current_dir(dir.path())
        .arg("check")
        .assert()
        .success()
        .stderr(predicate::str::contains("pipeline `app` is valid: 1 stage"));
    std::fs::write(dir.path().join("other.pipeline"), "").expect("write");
    slipway()
        .current_dir(dir.path())
        .arg("check")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("several `.pipeline` files"));
    std::fs::write(
        dir.path().join("slipway.pipeline"),
        "stage b {\n  manual \"ok?\"\n}\n",
    )
    .expect("write");
    slipway()
        .current_dir(dir.path())
        .arg("check")
        .assert()
        .success()
        .stderr(predicate::str::contains("pipeline `slipway` is valid"));
    let empty = tempfile::tempdir().expect("tempdir");
    slipway()
        .current_dir(empty.path())
        .arg("check")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no `.pipeline` file"));
}

#[test]
fn missing_file_and_bad_usage_exit_2() {
    slipway()
        .args(["check", "nope.pipeline"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no such file"));
    slipway()
        .args(["plan", "--format", "yaml"])
        .assert()
        .code(2);
    slipway().arg("frobnicate").assert().code(2);
    slipway()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes"));
}

#[test]
fn graph_draws_skipped_stages_differently() {
    slipway()
        .args([
            "graph",
            "examples/chat/chat.pipeline",
            "--branch",
            "feature/x",
            "--format",
            "dot",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("\"install\" -> \"lint\";")
                .and(predicate::str::contains("\"approve\" [style=dashed"))
                .and(predicate::str::contains("\"notify\" [style=rounded]")),
        );
    slipway()
        .args([
            "graph",
            "examples/chat/chat.pipeline",
            "--branch",
            "feature/x",
            "--format",
            "mermaid",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with("flowchart LR")
                .and(predicate::str::contains("class s5,s6 skipped")),
        );
    slipway()
        .args([
            "graph",
            "examples/chat/chat.pipeline",
            "--branch",
            "main",
            "--changed",
            "x",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("wave 5   deploy")
                .and(predicate::str::contains("finally  notify")),
        );
}

#[test]
fn plan_text_explains_skips() {
    slipway()
        .args([
            "plan",
            "examples/chat/chat.pipeline",
            "--branch",
            "feature/x",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("skipped").and(predicate::str::contains(
                "condition `branch == \"main\"` is false (branch is `feature/x`)",
            )),
        );
}

#[test]
fn fmt_check_diff_write_and_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x.pipeline");
    std::fs::write(
        &file,
        "stage   a   {\n      image \"x\"\n run \"true\"\n}\n",
    )
    .expect("write");
    slipway()
        .current_dir(dir.path())
        .args(["fmt", "--check", "x.pipeline"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("+stage a {"))
        .stderr(predicate::str::contains("would reformat x.pipeline"));
    slipway()
        .current_dir(dir.path())
        .args(["fmt", "x.pipeline"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "stage a {\n  image \"x\"\n  run   \"true\"\n}\n"
    );
    slipway()
        .current_dir(dir.path())
        .args(["fmt", "--check", "x.pipeline"])
        .assert()
        .success();
    std::fs::write(&file, "stage a {\n").expect("write");
    slipway()
        .current_dir(dir.path())
        .args(["fmt", "x.pipeline"])
        .assert()
        .code(2);
    slipway()
        .args(["fmt", "-"])
        .write_stdin("stage  a {\nmanual \"ok?\"\n}\n")
        .assert()
        .success()
        .stdout("stage a {\n  manual \"ok?\"\n}\n");
}

#[test]
fn check_reports_what_only_planning_finds() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("cycle.pipeline"),
        "env {\n  A = \"${B}\"\n  B = \"${A}\"\n}\n\nstage a {\n  image \"x:${A}\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    slipway()
        .current_dir(dir.path())
        .args(["check", "--diagnostics", "concise", "cycle.pipeline"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("error[slipway::env-cycle]"));
}

#[test]
fn changed_takes_commas_and_repeats_without_swallowing_the_file() {
    for args in [
        vec!["--changed", "a.js,docs/x.md", "examples/chat/chat.pipeline"],
        vec![
            "--changed",
            "a.js",
            "--changed",
            "docs/x.md",
            "examples/chat/chat.pipeline",
        ],
    ] {
        let mut full = vec!["--branch", "main"];
        full.extend(args);
        let plan = plan_json(&full);
        let deploy = stage(&plan, "deploy");
        assert_eq!(deploy["skipped"], true, "{full:?}");
        assert!(
            deploy["reason"]
                .as_str()
                .is_some_and(|r| r.contains("docs/x.md"))
        );
    }
}

#[test]
fn unknown_changed_since_revision_is_a_usage_error() {
    slipway()
        .args([
            "plan",
            "examples/chat/chat.pipeline",
            "--changed-since",
            "no-such-ref-anywhere",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no such revision"));
}

#[test]
fn usage_errors_follow_the_diagnostics_format() {
    let out = slipway()
        .args([
            "--diagnostics",
            "json",
            "plan",
            "examples/chat/chat.pipeline",
            "--env",
            "prod",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let line: Value = serde_json::from_slice(&out.stderr).expect("one JSON line");
    assert_eq!(line["code"], "slipway::usage");
    assert_eq!(line["severity"], "error");
}

#[test]
fn ci_variables_give_the_context_outside_git() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("app.pipeline"),
        "stage a {\n  image \"x:${git.branch}-${git.short_sha}\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    let out = slipway()
        .current_dir(dir.path())
        .env("GITHUB_REF_NAME", "release/2")
        .env("GITHUB_SHA", "abcdef0123456789")
        .env_remove("GITHUB_HEAD_REF")
        .args(["plan", "--format", "json"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(plan["git"]["branch"], "release/2");
    assert_eq!(stage(&plan, "a")["image"], "x:release/2-abcdef0");
}

#[test]
fn gitlab_report_is_one_array_even_when_empty() {
    let out = slipway()
        .args([
            "check",
            "--diagnostics",
            "gitlab",
            "examples/fanout/fanout.pipeline",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stderr).expect("JSON");
    assert_eq!(report, serde_json::json!([]));
}

#[test]
fn check_finds_a_secret_that_only_one_environment_leaks() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("leak.pipeline"),
        "secret TOKEN\n\nenv { TAG = \"dev\" }\n\nenvironment production {\n  env { TAG = \"${secret.TOKEN}\" }\n}\n\nstage a {\n  image \"x:${TAG}\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    slipway()
        .current_dir(dir.path())
        .args(["check", "--diagnostics", "concise", "leak.pipeline"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error[slipway::secret-outside-env]",
        ));
}

#[test]
fn check_backend_reports_what_that_backend_would_refuse_with_its_place_and_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.pipeline");
    std::fs::write(
        &file,
        "stage image {\n  build \".\" {\n    tag \"localhost:5000/app:1\"\n  }\n}\n\n\
         stage pushed after image {\n  build \".\" {\n    tag \"localhost:5000/app:2\"\n    push true\n  }\n}\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf-8");
    // Without a backend, and on Docker, both builds are fine.
    slipway()
        .env_remove("SLIPWAY_BACKEND")
        .args(["check", file])
        .assert()
        .success();
    slipway()
        .args(["check", "--backend", "docker", file])
        .assert()
        .success();
    // Under kubernetes only the build without `push` is refused, where it is.
    slipway()
        .args(["check", "--backend", "kubernetes", "--diagnostics", "concise", file])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(
                "p.pipeline:2:3: error[slipway::backend-refuses]: the kubernetes backend refuses stage `image`",
            )
            .and(predicate::str::contains("(add `push true`, with a tag in a registry the cluster pulls from)"))
            .and(predicate::str::contains("stage `pushed`").not()),
        );
    // The environment names it as for `run`; `local` refuses every build.
    slipway()
        .env("SLIPWAY_BACKEND", "local")
        .args(["check", "--diagnostics", "concise", file])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("the local backend refuses stage `image`").and(
                predicate::str::contains("the local backend refuses stage `pushed`"),
            ),
        );
}

#[test]
fn plan_shows_what_a_stages_inputs_match_and_its_digest_follows_their_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for (path, text) in [
        ("src/a.js", "a"),
        ("src/lib/b.js", "b"),
        ("build/out.js", "ignored by git"),
        ("package.json", "{}"),
        (".gitignore", "build/\n"),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    std::fs::write(
        root.join("slipway.pipeline"),
        "template node {\n  image \"local/node:20\"\n  inputs \"package.json\"\n}\n\n\
         stage test uses node {\n  inputs \"src/**\", \"build/**\"\n  run \"npm test\"\n}\n\n\
         stage bad {\n  image \"local/busybox\"\n  inputs \"src/[\"\n  run \"true\"\n}\n",
    )
    .expect("write");
    let plan = |root: &std::path::Path| -> Value {
        let out = slipway()
            .current_dir(root)
            .args(["plan", "--format", "json"])
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let first = plan(root);
    let test = stage(&first, "test");
    assert_eq!(
        test["inputs"],
        serde_json::json!(["package.json", "src/**", "build/**"])
    );
    // package.json and the two sources; build/ is ignored by git, so no
    // stage's workspace holds it.
    assert_eq!(test["inputs_found"]["count"], 3, "{test}");
    let digest = test["inputs_found"]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert_eq!(digest.len(), 64);
    assert!(
        stage(&first, "bad")["inputs_found"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("bad glob")),
        "{first}"
    );
    // The same files: the same digest; one changed: another.
    assert_eq!(
        stage(&plan(root), "test")["inputs_found"]["digest"],
        digest.as_str()
    );
    std::fs::write(root.join("src/lib/b.js"), "B").expect("write");
    assert_ne!(
        stage(&plan(root), "test")["inputs_found"]["digest"],
        digest.as_str()
    );
    // The text plan says it too.
    let text = slipway()
        .current_dir(root)
        .args(["plan"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("3 files, digest "), "{text}");
}
