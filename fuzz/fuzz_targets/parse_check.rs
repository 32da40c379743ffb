//! Bytes → text → parse, check, plan, format, and every renderer the CLI
//! uses on the result. Any panic is a bug; so is a file that parses cleanly
//! but whose formatted text does not parse, changes meaning, or formats
//! differently a second time.
//!
//! Includes are served from memory, not from disk: this is what
//! `model::check_text` does, minus the disk, so that a run is reproducible
//! and does not depend on the files of the machine it runs on (reading
//! devices such as `/dev/zero` is tested in `tests/it/robustness.rs`).

#![no_main]

use std::io;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use slipway::model::{check, load_with};
use slipway::plan::{GitContext, Options, plan};
use slipway::report::diagnostics::{DiagFormat, render};
use slipway::report::graph::{self, GraphFormat};
use slipway::source::FileId;

/// Where the input pretends to live; includes resolve next to it.
const ROOT: &str = "/fuzz/main.pipeline";

/// A tiny file system: the input itself, two files it may include (one
/// includes the input back, for cycles), and nothing else.
fn read(input: &str, path: &Path) -> io::Result<String> {
    match path.to_str() {
        Some(ROOT) => Ok(input.to_string()),
        Some("/fuzz/common.pipeline") => Ok("env {\n  SHARED = \"1\"\n}\n".into()),
        Some("/fuzz/back.pipeline") => Ok("include \"main.pipeline\"\n".into()),
        _ => Err(io::Error::from(io::ErrorKind::NotFound)),
    }
}

fn option_sets(pipeline: &slipway::model::Pipeline) -> Vec<Options> {
    let mut all = vec![Options::default()];
    let git = GitContext {
        sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
        short_sha: Some("0123456".into()),
        branch: Some("main".into()),
        tag: Some("v1.2.3".into()),
    };
    all.push(Options {
        targets: pipeline.stages.keys().take(1).cloned().collect(),
        environment: pipeline.environments.keys().next().cloned(),
        git,
        changed: Some(vec!["docs/readme.md".into(), "src/main.rs".into()]),
        set: [("REGISTRY".to_string(), "example.com".to_string())]
            .into_iter()
            .collect(),
    });
    all
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let root = PathBuf::from(ROOT);
    let checked = check(load_with(&root, &mut |p: &Path| read(text, p)));
    for format in [
        DiagFormat::Human,
        DiagFormat::Concise,
        DiagFormat::Json,
        DiagFormat::Github,
        DiagFormat::Gitlab,
    ] {
        let _ = render(&checked.diagnostics, &checked.sources, format, false);
    }
    if let Some(pipeline) = &checked.pipeline {
        for opts in option_sets(pipeline) {
            if let Ok(plan) = plan(pipeline, &opts) {
                let _ = slipway::report::plan::text(&plan, false);
                for format in [GraphFormat::Dot, GraphFormat::Mermaid, GraphFormat::Text] {
                    let _ = graph::render(&plan, format);
                }
            }
        }
    }

    let (ast, diags) = slipway::syntax::parse(FileId(0), text);
    if !diags.is_empty() {
        // The formatter only promises to handle files that parse.
        return;
    }
    let once = slipway::format::format(&ast, text);
    let (ast_once, diags_once) = slipway::syntax::parse(FileId(0), &once);
    assert!(
        diags_once.is_empty(),
        "formatted text does not parse: {diags_once:?}\n--- input\n{text}\n--- formatted\n{once}"
    );
    assert_eq!(
        slipway::format::normalized_ast(&ast),
        slipway::format::normalized_ast(&ast_once),
        "format changed the meaning\n--- input\n{text}\n--- formatted\n{once}"
    );
    let twice = slipway::format::format(&ast_once, &once);
    assert_eq!(once, twice, "format is not idempotent\n--- input\n{text}");
});
