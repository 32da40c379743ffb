//! Fixture files through the parser and checker, into insta snapshots:
//! `tests/fixtures/ok/*.pipeline` must check clean (their Ast is snapshotted),
//! `tests/fixtures/err/*.pipeline` and `tests/fixtures/malformed/*.pipeline`
//! must report (their rendered diagnostics are snapshotted).

use slipway::source::FileId;

use crate::support::{check_relative, rendered};

#[test]
fn ok_fixtures_parse_and_check_clean() {
    insta::glob!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"),
        "ok/*.pipeline",
        |path| {
            let text = std::fs::read_to_string(path).expect("fixture");
            let (ast, syntax) = slipway::syntax::parse(FileId(0), &text);
            assert!(syntax.is_empty(), "{}: {syntax:#?}", path.display());
            insta::assert_yaml_snapshot!("ast", ast);
            let checked = check_relative(path);
            assert!(
                checked.diagnostics.is_empty(),
                "{}:\n{}",
                path.display(),
                rendered(&checked)
            );
        }
    );
}

#[test]
fn err_fixtures_report_every_problem() {
    insta::glob!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"),
        "err/*.pipeline",
        |path| {
            let checked = check_relative(path);
            assert!(
                !checked.diagnostics.is_empty(),
                "{} reports nothing",
                path.display()
            );
            insta::assert_snapshot!("diagnostics", rendered(&checked));
        }
    );
}

#[test]
fn combined_fixture_reports_unknown_stage_cycle_and_undefined_variable_at_once() {
    let path = crate::support::root().join("tests/fixtures/err/combined.pipeline");
    let checked = check_relative(&path);
    let codes: Vec<&str> = checked
        .diagnostics
        .iter()
        .map(|d| d.code.as_str())
        .collect();
    for code in [
        "slipway::unknown-stage",
        "slipway::cycle",
        "slipway::undefined-variable",
    ] {
        assert!(codes.contains(&code), "missing {code} in {codes:?}");
    }
    assert!(checked.pipeline.is_none());
}

/// Every file of the malformed corpus, as `slipway check` reports it
/// (checking, then what only planning finds): each message, span and help
/// in a snapshot, not just "at least one error".
#[test]
fn malformed_fixtures_report_spanned_errors() {
    insta::glob!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"),
        "malformed/*.pipeline",
        |path| {
            let mut checked = check_relative(path);
            slipway::plan::validate_checked(&mut checked);
            assert!(
                checked.diagnostics.iter().any(|d| d.is_error()),
                "{} reports no error",
                path.display()
            );
            insta::assert_snapshot!("malformed", rendered(&checked));
        }
    );
}
