//! No input makes slipway panic, overflow its stack or stall: every file in
//! the malformed corpus, every example and fixture, random text, token soup,
//! mutated examples and generated pipelines go through parse, check, plan,
//! format and every renderer the CLI uses. Malformed files must report at
//! least one error; files that parse must format to text that parses, means
//! the same and is a fixed point of the formatter.
//!
//! Property tests run 2,000 cases each for cheap inputs and 1,000 for whole
//! files, so the file runs in about 20 s in a debug build; set
//! `PROPTEST_CASES` to run more. Failures are shrunk to a minimal input but
//! not persisted, so nothing is written next to this file. The fuzz target
//! in `fuzz/` runs the same checks for as long as you let it.
//!
//! Each problem this suite found keeps a test under "limits" (the library
//! handles them all now); those that crashed the process run the real binary
//! in a child process with a memory limit and a timeout, so that a
//! regression cannot take the test runner down. A problem found and not yet
//! fixed goes in a test named `known_bug_*`, which fails until it is.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use slipway::model::{Checked, Pipeline, check_text};
use slipway::plan::{GitContext, Options, plan};
use slipway::report::diagnostics::{DiagFormat, render};
use slipway::report::graph::{self, GraphFormat};
use slipway::source::FileId;

use crate::support::{files, root};

// ---------------------------------------------------------------- harness

/// What one input did, when it did not panic.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    /// Errors from checking, plus one if a checked pipeline could not be
    /// planned (env cycles and leaked secrets are found by `plan`).
    errors: usize,
    /// `syntax::parse` reported nothing, so the formatter was exercised.
    parses: bool,
    /// `check` produced a pipeline and `plan` accepted it.
    plans: bool,
}

/// An input that takes longer than this, alone, is treated as a hang. Small
/// inputs take milliseconds; the limit leaves room for a loaded machine.
const SLOW: Duration = Duration::from_secs(5);

/// Runs `text`, as the file at `path`, through everything the CLI does with
/// a pipeline file short of running it: check, render diagnostics, plan
/// (with default options and with every option set), render plans and
/// graphs; and, when it parses, formats it and checks the result.
fn exercise(path: &Path, text: &str) -> Outcome {
    let checked = check_text(path, text);
    let mut outcome = Outcome {
        errors: checked.diagnostics.iter().filter(|d| d.is_error()).count(),
        ..Outcome::default()
    };
    render_diagnostics(&checked);
    if let Some(pipeline) = &checked.pipeline {
        let mut planned = true;
        for opts in option_sets(pipeline) {
            match plan(pipeline, &opts) {
                Ok(plan) => {
                    let _ = slipway::report::plan::text(&plan, false);
                    let _ = serde_json::to_string(&plan).expect("a plan serialises");
                    for format in [GraphFormat::Dot, GraphFormat::Mermaid, GraphFormat::Text] {
                        let _ = graph::render(&plan, format);
                    }
                }
                Err(_) => planned = false,
            }
        }
        outcome.plans = planned;
        if !planned {
            outcome.errors += 1;
        }
    }
    outcome.parses = format_round_trip(text);
    outcome
}

fn render_diagnostics(checked: &Checked) {
    for format in [
        DiagFormat::Human,
        DiagFormat::Concise,
        DiagFormat::Json,
        DiagFormat::Github,
        DiagFormat::Gitlab,
    ] {
        let _ = render(&checked.diagnostics, &checked.sources, format, false);
    }
    let _ = render(
        &checked.diagnostics,
        &checked.sources,
        DiagFormat::Human,
        true,
    );
}

/// The command line's defaults, and a run with every choice made: a target,
/// an environment, a git context, changed paths and a `--set`.
fn option_sets(pipeline: &Pipeline) -> Vec<Options> {
    let git = GitContext {
        sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
        short_sha: Some("0123456".into()),
        branch: Some("feature/ünïcode branch".into()),
        tag: Some("v1.2.3".into()),
        source: Some("https://example.invalid/repo.git".into()),
        time: Some("2026-12-04T02:00:00+00:00".into()),
    };
    vec![
        Options::default(),
        Options {
            targets: pipeline.stages.keys().last().cloned().into_iter().collect(),
            environment: pipeline.environments.keys().next().cloned(),
            git,
            changed: Some(vec!["docs/readme.md".into(), "src/main.rs".into()]),
            set: [("REGISTRY".to_string(), "example.com:5000".to_string())]
                .into_iter()
                .collect(),
        },
    ]
}

/// When `text` parses without errors: its formatted form parses without
/// errors, has the same normalized Ast, and formats to itself. Returns
/// whether it parsed.
fn format_round_trip(text: &str) -> bool {
    let (ast, diags) = slipway::syntax::parse(FileId(0), text);
    if !diags.is_empty() {
        return false;
    }
    let once = slipway::format::format(&ast, text);
    let (ast_once, diags_once) = slipway::syntax::parse(FileId(0), &once);
    assert!(
        diags_once.is_empty(),
        "the formatted text does not parse: {diags_once:?}\n--- input\n{text}\n--- formatted\n{once}"
    );
    assert_eq!(
        slipway::format::normalized_ast(&ast),
        slipway::format::normalized_ast(&ast_once),
        "formatting changed the meaning\n--- input\n{text}\n--- formatted\n{once}"
    );
    let twice = slipway::format::format(&ast_once, &once);
    assert_eq!(
        once, twice,
        "formatting is not idempotent\n--- input\n{text}"
    );
    true
}

/// `exercise`, failing if it takes longer than [`SLOW`].
fn exercise_timed(path: &Path, text: &str) -> Outcome {
    let start = Instant::now();
    let outcome = exercise(path, text);
    let took = start.elapsed();
    assert!(
        took < SLOW,
        "took {took:?} for {} bytes:\n{}",
        text.len(),
        text.chars().take(2000).collect::<String>()
    );
    outcome
}

/// `PROPTEST_CASES` when set, else `default`: enough to matter, few enough
/// that this file runs in about 20 s in a debug build on two cores.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // Keep failures in the test output only: this suite does not own the
        // folder a regressions file would go to. Minimal inputs it finds
        // become `known_bug_*` tests instead.
        failure_persistence: None,
        ..Config::default()
    })
}

/// A path whose folder does not exist: generated text is checked as if it
/// were there, so its includes find nothing.
fn nowhere() -> PathBuf {
    PathBuf::from("/nonexistent-slipway-robustness/input.pipeline")
}

// ---------------------------------------------------------------- corpus

fn malformed_dir() -> PathBuf {
    root().join("tests/fixtures/malformed")
}

/// Files directly in `dir` with the `.pipeline` extension.
fn pipelines_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "pipeline"))
        .collect();
    out.sort();
    out
}

/// Runs every file through [`exercise`], catching panics so that one broken
/// file does not hide the next. Returns the outcomes and the failures.
fn exercise_files(paths: &[PathBuf]) -> (Vec<(PathBuf, Outcome)>, Vec<String>) {
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).expect("fixture is text");
        match std::panic::catch_unwind(|| exercise_timed(path, &text)) {
            Ok(outcome) => outcomes.push((path.clone(), outcome)),
            Err(_) => failures.push(format!("{}: panicked (see above)", path.display())),
        }
    }
    (outcomes, failures)
}

#[test]
fn malformed_files_report_errors_without_panicking() {
    let paths = pipelines_in(&malformed_dir());
    assert!(paths.len() >= 40, "malformed corpus: {} files", paths.len());
    let (outcomes, mut failures) = exercise_files(&paths);
    for (path, outcome) in &outcomes {
        if outcome.errors == 0 {
            failures.push(format!("{}: no error reported", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Hostile but valid: empty files, CRLF, keywords as names, limits just reached.
#[test]
fn edge_case_files_check_plan_and_format() {
    let paths = pipelines_in(&malformed_dir().join("edge"));
    assert!(paths.len() >= 10, "edge corpus: {} files", paths.len());
    let (outcomes, mut failures) = exercise_files(&paths);
    for (path, outcome) in &outcomes {
        if outcome.errors > 0 || !outcome.plans || !outcome.parses {
            failures.push(format!("{}: {outcome:?}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn examples_and_fixtures_survive_everything() {
    let mut paths = files(&root().join("examples"), "pipeline");
    let ok = files(&root().join("tests/fixtures/ok"), "pipeline");
    let err = files(&root().join("tests/fixtures/err"), "pipeline");
    paths.extend(ok.iter().cloned());
    paths.extend(err.iter().cloned());
    let (outcomes, mut failures) = exercise_files(&paths);
    for (path, outcome) in &outcomes {
        let expect_errors = err.contains(path);
        // `fixtures/err` also holds warning-only files.
        let warnings_only = path.ends_with("warnings.pipeline");
        if expect_errors && !warnings_only && outcome.errors == 0 {
            failures.push(format!("{}: no error reported", path.display()));
        }
        if !expect_errors && outcome.errors > 0 {
            failures.push(format!("{}: {outcome:?}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------- strategies

/// Pieces of the language and of the mistakes people make with it.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    // keywords and setting names
    "stage", "finally", "after", "uses", "when", "pipeline", "include", "env", "secret",
    "environment", "template", "image", "run", "matrix", "service", "retry", "timeout",
    "allow-failure", "artifact", "cache", "build", "release", "manual", "dockerfile", "target",
    "tag", "label", "arg", "push", "namespace", "manifests", "wait", "rollback", "prune",
    "history", "on-failure", "true", "false", "changed",
    // names and paths
    "a", "b", "deploy", "s-1", "_x", "NODE", "A_B-9", "branch", "tag", "git.sha", "env.NODE",
    "git.short_sha",
    // strings, whole and broken
    "\"x\"", "\"\"", "\"local/busybox\"", "\"${NODE}\"", "\"${git.branch}\"",
    "\"${secret.T}\"", "\"${environment}\"", "\"\\\"\"", "\"\\${x}\"", "\"\\q\"", "\"\\",
    "\"\"\"", "\"\"\"\n  one\n    two\n  \"\"\"", "\"${", "\"", "'x'", "\"🚀 ünï\"",
    "\"docs/**\"", "\"^v[0-9]+\"", "\"([\"", "\"ci/common.pipeline\"",
    // structure and operators
    "{", "}", "[", "]", "(", ")", ",", "=", "==", "!=", "=~", "&&", "||", "!", ".", ":", "${",
    "$", "\\",
    // trivia
    "\n", "\n", "\n", "\r\n", "\r", " ", "  ", "\t", "\\\n", "#", "# comment\n", "#{\n",
    // numbers and durations
    "0", "2", "-1", "100", "101", "99999999999999999999", "10m", "5s", "1h30m", "10x", "1.5",
    // unicode and control characters
    "é", "🚀", "\u{feff}", "\0", "\u{2028}", "\u{200d}", "\u{0301}",
];

/// Random tokens, with or without a space between each pair.
fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(TOKENS), any::<bool>()), 0..80).prop_map(|parts| {
        let mut out = String::new();
        for (token, space) in parts {
            out.push_str(token);
            if space {
                out.push(' ');
            }
        }
        out
    })
}

/// Every example and fixture, with the path it was read from.
fn seeds() -> &'static [(PathBuf, String)] {
    static SEEDS: OnceLock<Vec<(PathBuf, String)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut paths = files(&root().join("examples"), "pipeline");
        paths.extend(files(&root().join("tests/fixtures/ok"), "pipeline"));
        paths.extend(files(&root().join("tests/fixtures/err"), "pipeline"));
        paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("seed is text");
                (p, text)
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteRange { at: Index, len: usize },
    DuplicateLine(Index),
    InsertToken { at: Index, token: &'static str },
    SwapLines(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::DeleteRange { at, len }),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), prop::sample::select(TOKENS))
            .prop_map(|(at, token)| Mutation::InsertToken { at, token }),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

/// The byte offset of a char boundary chosen by `at` (the end included).
fn boundary(text: &str, at: &Index) -> usize {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    bounds[at.index(bounds.len())]
}

fn mutate(text: &str, m: &Mutation) -> String {
    match m {
        Mutation::DeleteRange { at, len } => {
            let start = boundary(text, at);
            let end = text[start..]
                .char_indices()
                .nth(*len)
                .map_or(text.len(), |(i, _)| start + i);
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::InsertToken { at, token } => {
            let at = boundary(text, at);
            format!("{}{token}{}", &text[..at], &text[at..])
        }
        Mutation::DuplicateLine(i) => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if !lines.is_empty() {
                let i = i.index(lines.len());
                lines.insert(i, lines[i]);
            }
            lines.concat()
        }
        Mutation::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if !lines.is_empty() {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
            }
            lines.concat()
        }
    }
}

/// A seed and one to four mutations of it.
fn mutated_seed() -> impl Strategy<Value = (usize, String)> {
    let n = seeds().len();
    (0..n, prop::collection::vec(mutation(), 1..5)).prop_map(|(i, ms)| {
        let mut text = seeds()[i].1.clone();
        for m in &ms {
            text = mutate(&text, m);
        }
        (i, text)
    })
}

// Generated pipelines: valid syntax by construction, odd layout on purpose,
// so that the formatter sees comments, continuations, one-line blocks,
// multi-line `after` lists and triple strings in every position.

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(&["a", "b", "build", "test-1", "_x", "NODE", "deploy", "A_B"][..])
        .prop_map(str::to_string)
}

fn comment() -> impl Strategy<Value = String> {
    prop::sample::select(&["", "", "", "  # note", " #", "\t# ünï 🚀 {\"", " ##  x  "][..])
        .prop_map(str::to_string)
}

fn string_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "\"x\"",
                "\"\"",
                "\"local/busybox\"",
                "\"${NODE}\"",
                "\"a ${git.branch}-${git.short_sha} b\"",
                "\"\\\"q\\\" \\\\ \\n \\t \\$\"",
                "\"# not a comment\"",
                "\"🚀 ünïcode\"",
                "\"${secret.T}\"",
            ][..]
        )
        .prop_map(str::to_string),
        (0usize..4, prop::collection::vec("[a-z ${}#\"]{0,12}", 0..4)).prop_map(
            |(indent, lines)| {
                let pad = " ".repeat(indent);
                let body: String = lines
                    .iter()
                    // `"""` and `${` without `}` cannot appear inside.
                    .map(|l| format!("{pad}{}\n", l.replace('"', "'").replace("${", "$ {")))
                    .collect();
                format!("\"\"\"\n{body}{pad}\"\"\"")
            }
        ),
    ]
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        string_lit(),
        prop::sample::select(
            &[
                "0",
                "3",
                "-7",
                "10m",
                "1h30m",
                "true",
                "false",
                "word",
                "on-failure"
            ][..]
        )
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        (
            prop::collection::vec(inner, 0..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(items, multiline, trailing)| {
                let sep = if multiline { ",\n    " } else { ", " };
                let mut out = format!("[{}", items.join(sep));
                if trailing && !items.is_empty() {
                    out.push(',');
                }
                out.push(']');
                out
            })
    })
}

fn condition() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(
            &[
                "branch == \"main\"",
                "tag =~ \"^v[0-9]+\"",
                "env.NODE != \"18\"",
                "environment == \"production\"",
                "changed(\"docs/**\", \"*.md\")",
                "true",
                "false",
                "git.sha",
            ][..]
        )
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone(), any::<bool>())
                .prop_map(|(a, b, nl)| format!("{a} &&{}{b}", if nl { "\n    " } else { " " })),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} || {b}")),
            inner.clone().prop_map(|a| format!("!{a}")),
            (inner, any::<bool>()).prop_map(|(a, nl)| if nl {
                format!("(\n  {a}\n)")
            } else {
                format!("({a})")
            }),
        ]
    })
}

/// `key args... [= value] [{ block }]` lines, nested up to `depth` blocks.
fn settings(depth: u32) -> BoxedStrategy<Vec<String>> {
    let key = prop::sample::select(
        &[
            "image",
            "run",
            "retry",
            "timeout",
            "allow-failure",
            "artifact",
            "cache",
            "tag",
            "x-y",
        ][..],
    );
    let line = (
        key,
        prop::collection::vec(value(), 0..3),
        prop::option::of(value()),
        any::<bool>(),
        comment(),
    )
        .prop_map(|(key, args, assign, continued, comment)| {
            let mut out = key.to_string();
            for a in &args {
                out.push_str(if continued { " \\\n      " } else { " " });
                out.push_str(a);
            }
            if let Some(v) = assign {
                out.push_str(" = ");
                out.push_str(&v);
            }
            format!("{out}{comment}")
        });
    if depth == 0 {
        return prop::collection::vec(line, 0..4).boxed();
    }
    let nested = (name(), settings(depth - 1), any::<bool>())
        .prop_map(|(n, body, blank)| format!("service {n} \"img\" {}", block(&body, blank)));
    prop::collection::vec(prop_oneof![3 => line, 1 => nested], 0..5).boxed()
}

/// A block holding `lines`, on one line when it holds at most one.
fn block(lines: &[String], blank: bool) -> String {
    match lines {
        [] => "{}".into(),
        [one] if !one.contains('\n') && !one.contains('#') => format!("{{ {one} }}"),
        _ => {
            let sep = if blank { "\n\n" } else { "\n" };
            let body: Vec<String> = lines
                .iter()
                .map(|l| l.replace('\n', "\n  "))
                .map(|l| format!("  {l}"))
                .collect();
            format!("{{\n{}\n}}", body.join(sep))
        }
    }
}

fn item() -> impl Strategy<Value = String> {
    let stage = (
        prop::sample::select(&["stage", "finally"][..]),
        name(),
        prop::collection::vec(name(), 0..4),
        any::<bool>(),
        prop::option::of(name()),
        prop::option::of(condition()),
        settings(1),
        comment(),
        any::<bool>(),
    )
        .prop_map(|(kw, n, after, wrap, uses, when, body, comment, blank)| {
            let mut head = format!("{kw} {n}");
            if !after.is_empty() {
                let sep = if wrap { ",\n      " } else { ", " };
                head.push_str(&format!(" after {}", after.join(sep)));
            }
            if let Some(t) = uses {
                head.push_str(&format!(" uses {t}"));
            }
            if let Some(c) = when {
                head.push_str(&format!(" when {c}"));
            }
            format!("{head} {}{comment}", block(&body, blank))
        });
    let env = (
        prop::collection::vec((name(), value(), comment()), 0..5),
        any::<bool>(),
    )
        .prop_map(|(entries, blank)| {
            let lines: Vec<String> = entries
                .iter()
                .map(|(k, v, c)| format!("{k} = {v}{c}"))
                .collect();
            format!("env {}", block(&lines, blank))
        });
    prop_oneof![
        4 => stage,
        2 => env,
        1 => string_lit().prop_map(|s| format!("pipeline {s}")),
        1 => name().prop_map(|n| format!("secret {n}")),
        1 => (name(), settings(0), any::<bool>())
            .prop_map(|(n, body, blank)| format!("template {n} {}", block(&body, blank))),
        1 => comment().prop_map(|c| format!("#{c}")),
    ]
}

fn generated_pipeline() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((item(), 1usize..3), 0..6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(items, crlf, final_newline)| {
            let mut out = String::new();
            for (item, newlines) in items {
                out.push_str(&item);
                out.push_str(&"\n".repeat(newlines));
            }
            if !final_newline {
                while out.ends_with('\n') {
                    out.pop();
                }
            }
            if crlf { out.replace('\n', "\r\n") } else { out }
        })
}

// ---------------------------------------------------------------- properties

/// Runs a property, and reports how many inputs it tried and how many of
/// them parsed (so a property cannot silently test nothing).
fn run_property<S>(
    what: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(&S::Value) -> Outcome,
) -> (usize, usize)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let ran = AtomicUsize::new(0);
    let parsed = AtomicUsize::new(0);
    let start = Instant::now();
    let result = runner(cases).run(&strategy, |input| {
        let outcome = test(&input);
        ran.fetch_add(1, Ordering::Relaxed);
        if outcome.parses {
            parsed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{what}: {e}");
    }
    let (ran, parsed) = (ran.into_inner(), parsed.into_inner());
    println!(
        "{what}: {ran} inputs, {parsed} parsed cleanly, 0 panics, in {:?}",
        start.elapsed()
    );
    (ran, parsed)
}

#[test]
fn arbitrary_text_never_panics() {
    let path = nowhere();
    run_property(
        "arbitrary text",
        cases(2_000),
        "(?s).{0,400}",
        |text: &String| exercise_timed(&path, text),
    );
}

#[test]
fn token_soup_never_panics() {
    let path = nowhere();
    run_property("token soup", cases(2_000), token_soup(), |text: &String| {
        exercise_timed(&path, text)
    });
}

#[test]
fn mutated_examples_never_panic() {
    run_property(
        "mutated examples",
        cases(1_000),
        mutated_seed(),
        |(i, text): &(usize, String)| {
            // Checked where the seed lives, so its includes still resolve.
            exercise_timed(&seeds()[*i].0, text)
        },
    );
}

#[test]
fn generated_pipelines_format_to_a_fixed_point() {
    let path = nowhere();
    let (ran, parsed) = run_property(
        "generated pipelines",
        cases(1_000),
        generated_pipeline(),
        |text: &String| exercise_timed(&path, text),
    );
    // The generator writes valid syntax; if most of its output fails to
    // parse, it is the generator that broke, and the property tests nothing.
    assert!(parsed * 10 >= ran * 9, "only {parsed} of {ran} parsed");
}

// ---------------------------------------------------------------- large inputs

/// `n` stages, each written over four lines, each after the one before.
fn chain(n: usize) -> String {
    let mut text = String::from("pipeline \"chain\"\n\n");
    for i in 0..n {
        let after = if i == 0 {
            String::new()
        } else {
            format!(" after s{}", i - 1)
        };
        text.push_str(&format!(
            "stage s{i}{after} {{\n  image \"local/busybox\"\n  run \"echo {i}\"\n}}\n"
        ));
    }
    text
}

fn assert_fast(what: &str, took: Duration, limit: Duration) {
    println!("{what}: {took:?}");
    assert!(took < limit, "{what} took {took:?} (limit {limit:?})");
}

#[test]
fn ten_thousand_stage_chain_checks_and_plans() {
    let text = chain(10_000);
    let start = Instant::now();
    let checked = check_text(&nowhere(), &text);
    let pipeline = checked.pipeline.expect("the chain checks");
    assert_eq!(pipeline.stages.len(), 10_000);
    let plan = plan(&pipeline, &Options::default()).expect("the chain plans");
    assert_eq!(plan.waves.len(), 10_000);
    assert_fast(
        "10,000-stage chain",
        start.elapsed(),
        Duration::from_secs(60),
    );
}

#[test]
fn five_thousand_wide_fan_in_checks_and_plans() {
    let n = 5_000;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "stage s{i} {{\n  image \"local/busybox\"\n  run \"echo {i}\"\n}}\n"
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    // One long `after` list, continued over lines of ten names.
    let lines: Vec<String> = names.chunks(10).map(|c| c.join(", ")).collect();
    text.push_str(&format!(
        "stage gather after {} {{\n  image \"local/busybox\"\n  run \"echo done\"\n}}\n",
        lines.join(",\n    ")
    ));
    let start = Instant::now();
    let checked = check_text(&nowhere(), &text);
    let pipeline = checked.pipeline.expect("the fan-in checks");
    let plan = plan(&pipeline, &Options::default()).expect("the fan-in plans");
    assert_eq!(plan.waves.len(), 2);
    assert_eq!(plan.waves[0].len(), n);
    assert_fast(
        "5,000-wide fan-in",
        start.elapsed(),
        Duration::from_secs(60),
    );
}

/// Writes `n` files `f0.pipeline` … in `dir`, each including the next; the
/// last includes `last_includes` if given, else it holds a stage.
fn include_chain(dir: &Path, n: usize, last_includes: Option<&str>) -> PathBuf {
    for i in 0..n {
        let text = if i + 1 < n {
            format!(
                "include \"f{}.pipeline\"\nenv {{\n  V{i} = \"{i}\"\n}}\n",
                i + 1
            )
        } else if let Some(target) = last_includes {
            format!("include \"{target}\"\n")
        } else {
            "stage last {\n  image \"local/busybox\"\n  run \"true\"\n}\n".to_string()
        };
        std::fs::write(dir.join(format!("f{i}.pipeline")), text).expect("write include");
    }
    dir.join("f0.pipeline")
}

/// In process, on a test thread's 2 MiB stack. Loading used to recurse once
/// per include, about 6 KiB of stack per level in a debug build, so this
/// overflowed between 300 and 400 levels (and the 8 MiB main thread between
/// 1,000 and 2,000); it was also quadratic, 2,000 levels taking 10 s.
#[test]
fn five_hundred_nested_includes_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = include_chain(dir.path(), 500, None);
    let text = std::fs::read_to_string(&main).expect("read");
    let start = Instant::now();
    let checked = check_text(&main, &text);
    assert!(
        checked.diagnostics.is_empty(),
        "{:?}",
        checked.diagnostics.first()
    );
    let pipeline = checked.pipeline.expect("the include chain checks");
    assert_eq!(pipeline.env.len(), 499);
    assert_eq!(checked.sources.files().count(), 500);
    plan(&pipeline, &Options::default()).expect("plans");
    assert_fast(
        "500 nested includes",
        start.elapsed(),
        Duration::from_secs(30),
    );
}

#[test]
fn fifty_file_include_cycle_is_reported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = include_chain(dir.path(), 50, Some("f0.pipeline"));
    let text = std::fs::read_to_string(&main).expect("read");
    let start = Instant::now();
    let checked = check_text(&main, &text);
    let errors: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let message = format!("{:?}", errors[0]);
    assert!(message.contains("include cycle"), "{message}");
    assert!(message.contains("f49.pipeline"), "{message}");
    assert_fast(
        "50-file include cycle",
        start.elapsed(),
        Duration::from_secs(30),
    );
}

#[test]
fn long_lines_and_many_comments_check() {
    let long = format!(
        "stage a {{\n  image \"local/busybox\"\n  run \"{}\"\n}}\n",
        "x".repeat(256 << 10)
    );
    let comments = "# a comment line\n".repeat(20_000);
    // An error at column 60,000 (past 65,535, see below).
    let late_error = format!("{}frobnicate 1\n", " ".repeat(60_000));
    for (what, text, ok) in [
        ("a 256 KiB string", long, true),
        ("20,000 comment lines", comments, true),
        ("an error at column 60,000", late_error, false),
    ] {
        let start = Instant::now();
        let outcome = exercise(&nowhere(), &text);
        assert_eq!(outcome.errors == 0, ok, "{what}: {outcome:?}");
        assert_fast(what, start.elapsed(), Duration::from_secs(30));
    }
}

// ---------------------------------------------------------------- limits

/// `MAX_OPERATORS` is per item: 300 one-line stages with one `&&` each are
/// fine. (`too_complex` used to count to the end of the file unless a
/// closing bracket started a line, and reported this as "too deeply
/// nested".)
#[test]
fn operator_limit_counts_one_item_at_a_time() {
    let mut text = String::from("template t {\n  image \"local/busybox\"\n  run \"x\"\n}\n");
    for i in 0..300 {
        text.push_str(&format!(
            "stage s{i} uses t when branch == \"main\" && tag == \"\" {{ }}\n"
        ));
    }
    let (_, diags) = slipway::syntax::parse(FileId(0), &text);
    assert!(
        diags.is_empty(),
        "{} diagnostics, first: {:?}",
        diags.len(),
        diags.first()
    );
}

/// Items on one line parse as fast as items over several. (The same scan
/// made this quadratic: 3,000 one-line stages took 3.3 s to parse in a
/// debug build, against 0.7 s over three lines, and 8,000 took 6.9 s to
/// check.)
#[test]
fn one_line_items_parse_in_linear_time() {
    let n = 2_000;
    let mut one_line = String::new();
    let mut multi_line = String::new();
    for i in 0..n {
        one_line.push_str(&format!("stage s{i} uses t {{ run \"x\" }}\n"));
        multi_line.push_str(&format!("stage s{i} uses t {{\n  run \"x\"\n}}\n"));
    }
    // Processor time this test process used (nextest runs each test in a
    // process of its own), the quickest of a few runs, alternating: other
    // tests and programs busy on the same cores do not decide the ratio.
    let cpu = || {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
            .expect("process CPU clock");
        Duration::from(t)
    };
    let time = |text: &str| {
        let start = cpu();
        let (ast, diags) = slipway::syntax::parse(FileId(0), text);
        assert!(diags.is_empty() && ast.items.len() == n);
        cpu() - start
    };
    let (mut one, mut multi) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        one = one.min(time(&one_line));
        multi = multi.min(time(&multi_line));
    }
    println!("{n} one-line stages: {one:?}; over three lines: {multi:?}");
    assert!(
        one < multi * 2,
        "one-line items parse {:.1}x slower ({one:?} against {multi:?})",
        one.as_secs_f64() / multi.as_secs_f64()
    );
}

/// Nesting is bounded however the brackets are spread over lines.
#[test]
fn nesting_limit_holds_across_lines() {
    let text = format!(
        "stage a when {}branch == \"x\"{} {{\n  image \"local/busybox\"\n  run \"x\"\n}}\n",
        "(\n".repeat(100),
        "\n)".repeat(100)
    );
    let (_, diags) = slipway::syntax::parse(FileId(0), &text);
    assert!(diags.iter().any(|d| d.is_error()), "{diags:?}");
}

/// Rust's formatter rejects widths over 65,535, and miette's graphical
/// renderer pads with `format!("{:width$}")`: a diagnostic whose label
/// started past visual column 65,535 panicked in `render(.., Human, ..)`,
/// which `slipway check` prints by default (exit code 101). A tab counts
/// four columns, so 16,384 tabs then `frobnicate 1` (16 KiB) was enough.
#[test]
fn human_diagnostics_render_past_column_65535() {
    let tabs = format!("{}frobnicate 1\n", "\t".repeat(16_384));
    let unclosed = format!("env {{\n  A = \"{}\n}}\n", "y".repeat(70_000));
    let mut panicked = Vec::new();
    for (what, text) in [
        ("16,384 tabs", tabs),
        ("a 70,000-character unclosed string", unclosed),
    ] {
        let checked = check_text(&nowhere(), &text);
        assert!(checked.diagnostics.iter().any(|d| d.is_error()), "{what}");
        let rendered = std::panic::catch_unwind(|| {
            render(
                &checked.diagnostics,
                &checked.sources,
                DiagFormat::Human,
                false,
            )
        });
        if rendered.is_err() {
            panicked.push(what);
        }
    }
    assert!(panicked.is_empty(), "rendering panicked for: {panicked:?}");
}

/// Runs `slipway ARGS FILE` in `dir`, in a child process under the shell
/// `limits` (`ulimit ...`) and a timeout, so that a crash or a runaway
/// allocation cannot take the test runner down. Returns the exit code
/// (`None` when a signal ended it: a stack overflow, an abort on allocation
/// failure, or the timeout) and the start of stderr.
fn run_limited(dir: &Path, args: &[&str], file: &str, limits: &str) -> (Option<i32>, String) {
    let out = assert_cmd::Command::new("sh")
        .current_dir(dir)
        .arg("-c")
        .arg(format!("{limits} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .arg(file)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code(), stderr.chars().take(1500).collect())
}

/// Writes `text` to `input.pipeline` in a new temporary folder.
fn input_file(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("input.pipeline"), text).expect("write input");
    dir
}

/// `plan::scope` resolved `${NAME}` recursively, one frame per link, so a
/// long chain of env values overflowed the stack: a debug build at ~4,000
/// links, release at ~50,000. Input: `env { A0 = "${A1}" … A10000 = "end" }`.
#[test]
fn long_env_chain_does_not_overflow_the_stack_in_plan() {
    let n = 10_000;
    let mut text = String::from("env {\n");
    for i in 0..n {
        text.push_str(&format!("  A{i} = \"${{A{}}}\"\n", i + 1));
    }
    text.push_str(&format!(
        "  A{n} = \"end\"\n}}\nstage a {{\n  image \"local/busybox\"\n  run \"echo\"\n}}\n"
    ));
    let dir = input_file(&text);
    let limits = "ulimit -v 4194304";
    let (code, stderr) = run_limited(dir.path(), &["plan"], "input.pipeline", limits);
    assert!(code.is_some(), "`slipway plan` crashed:\n{stderr}");
}

/// Each `${...}` was expanded in full, so 40 env values that each use the
/// one before twice expand to 8 TiB: this 1 KiB file made `slipway plan`
/// run out of memory (24 levels already took 1 GiB).
#[test]
fn doubling_env_values_do_not_exhaust_memory_in_plan() {
    let mut text = String::from("env {\n  A0 = \"xxxxxxxx\"\n");
    for i in 1..=40 {
        text.push_str(&format!("  A{i} = \"${{A{p}}}${{A{p}}}\"\n", p = i - 1));
    }
    text.push_str("}\nstage a {\n  image \"local/busybox\"\n  run \"echo\"\n}\n");
    let dir = input_file(&text);
    // Half a gigabyte is plenty for a 1 KiB file, and was reached in seconds.
    let limits = "ulimit -v 524288";
    let (code, stderr) = run_limited(dir.path(), &["plan"], "input.pipeline", limits);
    assert!(
        code.is_some(),
        "`slipway plan` crashed or stalled:\n{stderr}"
    );
}

/// Includes were read to the end with no limit (the size from `metadata` is
/// 0 for devices): `include "/dev/zero"` read until memory ran out, and
/// `/dev/urandom`, `/dev/stdin` or a FIFO would too.
#[test]
fn include_of_dev_zero_is_refused() {
    let dir = input_file("include \"/dev/zero\"\n");
    let limits = "ulimit -v 1048576";
    let (code, stderr) = run_limited(dir.path(), &["check"], "input.pipeline", limits);
    assert!(
        code.is_some(),
        "`slipway check` crashed or stalled:\n{stderr}"
    );
    assert!(
        !stderr.contains("out of memory"),
        "`slipway check` read /dev/zero until memory ran out:\n{stderr}"
    );
}

/// A condition may continue after `&&` or `||` on the next line. When the
/// pre-parse scan learned to stop at a top-level line that starts with a
/// letter, a condition continued on unindented lines escaped
/// `MAX_OPERATORS`: 300 operators were accepted, and in a debug build 1,000
/// overflowed a 2 MiB stack and 3,000 the 8 MiB main thread. Minimal input:
/// `stage a when `, then 257 lines of `branch == "x" &&`, then `true {}`.
#[test]
fn operator_limit_holds_across_unindented_continuation_lines() {
    let text = |n: usize| {
        format!(
            "stage a when {}true {{\n  image \"local/busybox\"\n  run \"x\"\n}}\n",
            "branch == \"x\" &&\n".repeat(n)
        )
    };
    let (_, diags) = slipway::syntax::parse(FileId(0), &text(300));
    assert!(diags.iter().any(|d| d.is_error()), "300 `&&` were accepted");
    // Far past the limit, through the binary on a 2 MiB stack.
    let dir = input_file(&text(5_000));
    let limits = "ulimit -v 4194304 && ulimit -s 2048";
    let (code, stderr) = run_limited(dir.path(), &["check"], "input.pipeline", limits);
    assert!(code.is_some(), "`slipway check` crashed:\n{stderr}");
}
