//! Every example checks clean, and the formatter keeps every example and
//! fixture's meaning while reaching a fixed point.

use slipway::source::FileId;

use crate::support::{check_relative, files, rendered, root};

#[test]
fn every_example_checks_clean() {
    let examples = files(&root().join("examples"), "pipeline");
    assert!(examples.len() >= 3, "examples: {examples:?}");
    for path in examples {
        let checked = check_relative(&path);
        assert!(
            checked.diagnostics.is_empty(),
            "{}:\n{}",
            path.display(),
            rendered(&checked)
        );
        assert!(checked.pipeline.is_some());
    }
}

#[test]
fn fmt_is_idempotent_and_keeps_the_ast() {
    let mut all = files(&root().join("examples"), "pipeline");
    all.extend(files(&root().join("tests/fixtures/ok"), "pipeline"));
    for path in all {
        let text = std::fs::read_to_string(&path).expect("read");
        let (ast, diags) = slipway::syntax::parse(FileId(0), &text);
        assert!(diags.is_empty(), "{}", path.display());
        let once = slipway::format::format(&ast, &text);
        let (ast_once, diags) = slipway::syntax::parse(FileId(0), &once);
        assert!(
            diags.is_empty(),
            "{} does not parse after fmt:\n{once}",
            path.display()
        );
        let twice = slipway::format::format(&ast_once, &once);
        assert_eq!(once, twice, "{}: fmt is not idempotent", path.display());
        assert_eq!(
            slipway::format::normalized_ast(&ast),
            slipway::format::normalized_ast(&ast_once),
            "{}: fmt changed the meaning",
            path.display()
        );
    }
}
