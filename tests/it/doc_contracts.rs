//! The reference docs keep up with the code: every diagnostic code has a
//! section in `docs/diagnostics.md` whose example really triggers it, every
//! field of the plan's JSON is documented in `docs/plan.md` (whose example is
//! real output), and every command, flag and value that `--help` prints is in
//! `docs/cli.md`.

use std::collections::BTreeSet;
use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

use crate::support::root;

fn slipway() -> Command {
    let mut cmd = Command::cargo_bin("slipway").expect("binary");
    cmd.current_dir(root())
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTIONS");
    cmd
}

fn doc(name: &str) -> String {
    std::fs::read_to_string(root().join("docs").join(name))
        .unwrap_or_else(|e| panic!("cannot read docs/{name}: {e}"))
}

/// Fenced code blocks as (info string, body), in order.
fn fenced(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    current = Some((info.trim().to_string(), String::new()));
                }
            }
            Some(_) if trimmed == "```" => out.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out
}

/// The markdown under each `## ` heading, as (heading text, section).
fn sections(markdown: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if let (false, Some(heading)) = (in_fence, line.strip_prefix("## ")) {
            out.push((heading.trim().to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// Every `slipway::NAME` written in `text`.
fn codes_in(text: &str) -> BTreeSet<String> {
    text.match_indices("slipway::")
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .map(|name| format!("slipway::{name}"))
        .collect()
}

/// Every code `Code::as_str` can return. There is no public list of the
/// codes, so they are read from the `"slipway::..."` string literals of
/// the source that defines them.
fn all_codes() -> BTreeSet<String> {
    let source = std::fs::read_to_string(root().join("src/diagnostic.rs")).expect("read source");
    let codes: BTreeSet<String> = source
        .match_indices("\"slipway::")
        .filter_map(|(i, _)| source[i + 1..].split('"').next())
        .map(str::to_string)
        .collect();
    assert!(
        codes.len() >= 20,
        "only {} codes found in src/diagnostic.rs: {codes:?}",
        codes.len()
    );
    for c in &codes {
        assert_eq!(codes_in(c), BTreeSet::from([c.clone()]), "odd code `{c}`");
    }
    codes
}

/// The code a `## `slipway::NAME`` heading is about.
fn heading_code(heading: &str) -> Option<String> {
    heading
        .strip_prefix('`')
        .and_then(|h| h.strip_suffix('`'))
        .filter(|h| h.starts_with("slipway::"))
        .map(str::to_string)
}

#[test]
fn every_code_has_a_section_in_diagnostics_md() {
    let codes = all_codes();
    let documented: BTreeSet<String> = sections(&doc("diagnostics.md"))
        .iter()
        .filter_map(|(heading, _)| heading_code(heading))
        .collect();
    let missing: Vec<&String> = codes.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "docs/diagnostics.md has no `## `CODE`` section for {missing:?}"
    );
    let unknown: Vec<&String> = documented.difference(&codes).collect();
    assert!(
        unknown.is_empty(),
        "docs/diagnostics.md has sections for codes that do not exist: {unknown:?}"
    );
}

#[test]
fn every_code_mentioned_in_the_docs_exists() {
    let codes = all_codes();
    for name in ["diagnostics.md", "cli.md", "plan.md", "language.md"] {
        let unknown: Vec<String> = codes_in(&doc(name))
            .into_iter()
            .filter(|c| !codes.contains(c))
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/{name} mentions codes that do not exist: {unknown:?}"
        );
    }
}

/// The codes of the diagnostics slipway prints for `text`, as a file named
/// `example.pipeline` in an empty folder outside any git repository. `plan`
/// loads and checks like `check`, and also reports what only planning finds.
///
/// With `backend`, `check --backend` instead: what a backend refuses is
/// only reported then.
fn reported_codes(text: &str, backend: Option<&str>) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("example.pipeline"), text).expect("write example");
    let mut cmd = slipway();
    cmd.current_dir(dir.path()).env_remove("SLIPWAY_BACKEND");
    match backend {
        Some(b) => cmd.args(["check", "--backend", b]),
        None => cmd.arg("plan"),
    };
    let out = cmd
        .args(["--diagnostics", "json", "example.pipeline"])
        .output()
        .expect("runs");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|d| d["code"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn each_example_in_diagnostics_md_triggers_its_code() {
    let mut checked = 0;
    for (heading, body) in sections(&doc("diagnostics.md")) {
        let Some(code) = heading_code(&heading) else {
            continue;
        };
        // Usage errors come from the command line, not from a file:
        // `cli::usage_errors_follow_the_diagnostics_format` covers them.
        if code == slipway::diagnostic::USAGE_CODE {
            assert!(
                body.contains(&format!("[{code}]")),
                "the section `{code}` shows no output"
            );
            checked += 1;
            continue;
        }
        let example = fenced(&body)
            .into_iter()
            .find(|(info, _)| info == "text")
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("the section `{code}` has no ```text example"));
        // The section's command names the backend, when it needs one.
        let backend = body
            .lines()
            .filter(|l| l.starts_with("$ slipway "))
            .find_map(|l| l.split_once(" --backend "))
            .and_then(|(_, rest)| rest.split_whitespace().next());
        let reported = reported_codes(&example, backend);
        assert!(
            reported.contains(&code),
            "the example of `{code}` in docs/diagnostics.md reports {reported:?}:\n{example}"
        );
        let shown = format!("[{code}]");
        assert!(
            body.contains(&shown),
            "the section `{code}` does not show slipway's output (`{shown}`)"
        );
        checked += 1;
    }
    assert_eq!(checked, all_codes().len());
}

/// Fields whose values are maps of data (env names, labels, ...), not
/// objects with fields of their own.
const PLAN_MAPS: [&str; 6] = ["matrix", "env", "secret_env", "labels", "args", "images"];

fn field_names(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                if !PLAN_MAPS.contains(&k.as_str()) {
                    field_names(v, out);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                field_names(v, out);
            }
        }
        _ => {}
    }
}

/// The command whose output docs/plan.md shows in full.
const CHAT_PLAN: [&str; 9] = [
    "examples/chat/chat.pipeline",
    "--branch",
    "main",
    "--sha",
    "0123456789abcdef0123456789abcdef01234567",
    "--changed",
    "src/server.js",
    "--format",
    "json",
];

fn plan_json(dir: &Path, args: &[&str]) -> Value {
    let out = slipway()
        .current_dir(dir)
        .arg("plan")
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "slipway plan {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the plan is JSON")
}

#[test]
fn every_plan_field_is_documented_in_plan_md() {
    let plan = plan_json(&root(), &CHAT_PLAN);
    assert_eq!(plan["version"], 1, "docs/plan.md documents version 1");
    let mut fields = BTreeSet::new();
    field_names(&plan, &mut fields);
    // The chat example has every kind of object: make sure it still does.
    for sentinel in [
        "short_sha",
        "secret_env",
        "timeout_secs",
        "dockerfile",
        "push",
        "wait_secs",
        "rollback",
    ] {
        assert!(
            fields.contains(sentinel),
            "the chat plan no longer has `{sentinel}`; plan the objects it had some other way"
        );
    }
    let text = doc("plan.md");
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !text.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/plan.md does not document {missing:?}"
    );
}

/// The JSON block in `plan.md` under `heading`.
fn plan_md_json(heading: &str) -> Value {
    let body = sections(&doc("plan.md"))
        .into_iter()
        .find(|(h, _)| h == heading)
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("docs/plan.md has no `## {heading}`"));
    let json = fenced(&body)
        .into_iter()
        .find(|(info, _)| info == "json")
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("`## {heading}` in docs/plan.md has no ```json block"));
    serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("the JSON under `## {heading}` does not parse: {e}"))
}

fn stage_named<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("the real plan has no stage `{name}`"))
}

#[test]
fn the_complete_example_in_plan_md_is_real_output() {
    let shown = plan_md_json("A complete example");
    let real = plan_json(&root(), &CHAT_PLAN);
    for field in ["version", "pipeline", "environment", "waves", "finally"] {
        assert_eq!(
            shown[field], real[field],
            "`{field}` differs from real output"
        );
    }
    // The tag comes from the checkout, whatever the command line says.
    for field in ["sha", "short_sha", "branch"] {
        assert_eq!(
            shown["git"][field], real["git"][field],
            "`git.{field}` differs"
        );
    }
    let stages = shown["stages"].as_array().expect("stages");
    assert!(stages.len() >= 3, "the example shows too few stages");
    for stage in stages {
        let name = stage["name"].as_str().expect("a stage name");
        assert_eq!(
            stage,
            stage_named(&real, name),
            "stage `{name}` in docs/plan.md differs from real output"
        );
    }
}

#[test]
fn the_secrets_example_in_plan_md_is_real_output() {
    let body = sections(&doc("plan.md"))
        .into_iter()
        .find(|(h, _)| h == "Secrets in the plan")
        .map(|(_, b)| b)
        .expect("a secrets section");
    let pipeline = fenced(&body)
        .into_iter()
        .find(|(info, _)| info == "pipeline")
        .map(|(_, b)| b)
        .expect("a ```pipeline block");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("secrets.pipeline"), pipeline).expect("write");
    let real = plan_json(dir.path(), &["secrets.pipeline", "--format", "json"]);
    let shown = plan_md_json("Secrets in the plan");
    let name = shown["name"].as_str().expect("a stage name");
    let stage = stage_named(&real, name);
    for (field, value) in shown.as_object().expect("an object") {
        assert_eq!(value, &stage[field], "`{field}` of `{name}` differs");
    }
}

fn help(command: Option<&str>) -> String {
    let out = slipway()
        .args(command)
        .arg("--help")
        .output()
        .expect("runs");
    assert!(out.status.success(), "--help of {command:?} failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The subcommands listed under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Long options, each with the values `--help` lists for it.
fn options(help: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let is_option = t.starts_with("--") || (t.starts_with('-') && t.contains(", --"));
        if is_option {
            let long = t
                .split(|c: char| c.is_whitespace() || c == ',')
                .find(|w| w.starts_with("--"))
                .map(|w| w.split(['=', '<']).next().unwrap_or(w).to_string());
            if let Some(long) = long {
                out.push((long, Vec::new()));
            }
        } else if let Some((_, values)) = out.last_mut() {
            if let Some(list) = t
                .strip_prefix("[possible values: ")
                .and_then(|l| l.strip_suffix(']'))
            {
                values.extend(list.split(", ").map(str::to_string));
            } else if let Some((value, _)) = t.strip_prefix("- ").and_then(|l| l.split_once(':')) {
                values.push(value.trim().to_string());
            }
        }
    }
    out
}

/// `word` appears in `line` on its own, not as part of a longer name.
fn has_word(line: &str, word: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        !before.is_some_and(part) && !after.is_some_and(part)
    })
}

#[test]
fn every_command_flag_and_value_is_in_cli_md() {
    let text = doc("cli.md");
    let top = help(None);
    let commands = subcommands(&top);
    assert!(
        ["check", "plan", "graph", "fmt"]
            .iter()
            .all(|c| commands.iter().any(|x| x == c)),
        "unexpected `slipway --help`: {commands:?}"
    );
    let mut helps = vec![("slipway".to_string(), top.clone())];
    for c in &commands {
        assert!(
            text.lines().any(|l| has_word(l, &format!("slipway {c}"))),
            "docs/cli.md does not mention `slipway {c}`"
        );
        if c != "help" {
            helps.push((format!("slipway {c}"), help(Some(c))));
        }
    }
    for (command, help) in helps {
        let opts = options(&help);
        assert!(!opts.is_empty(), "no options found in `{command} --help`");
        for (flag, values) in opts {
            assert!(
                text.lines().any(|l| has_word(l, &flag)),
                "docs/cli.md does not mention `{flag}` of `{command}`"
            );
            for v in values {
                assert!(
                    text.lines().any(|l| has_word(l, &flag) && has_word(l, &v)),
                    "docs/cli.md has no line with `{flag}` and its value `{v}` (`{command}`)"
                );
            }
        }
    }
}

#[test]
fn every_exit_code_is_in_cli_md() {
    use slipway::cli::exit;
    let text = doc("cli.md");
    for code in [exit::OK, exit::FAILED, exit::INVALID, exit::INTERNAL] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("| {code} |"))),
            "docs/cli.md has no row for exit code {code}"
        );
    }
}

#[test]
fn every_json_diagnostic_field_is_in_cli_md() {
    // A duplicate has a related place, so every field is filled in.
    let dir = tempfile::tempdir().expect("tempdir");
    let example = "stage a {\n  image \"local/busybox\"\n  run \"true\"\n}\n\nstage a {\n  image \"local/busybox\"\n  run \"true\"\n}\n";
    std::fs::write(dir.path().join("example.pipeline"), example).expect("write");
    let out = slipway()
        .current_dir(dir.path())
        .args(["check", "--diagnostics", "json", "example.pipeline"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().next().expect("a diagnostic");
    let diag: Value = serde_json::from_str(line).expect("a JSON line");
    assert!(
        diag["related"].as_array().is_some_and(|r| !r.is_empty()),
        "{diag}"
    );
    let mut fields = BTreeSet::new();
    field_names(&diag, &mut fields);
    let text = doc("cli.md");
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !text.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/cli.md does not document the JSON diagnostic fields {missing:?}"
    );
}
