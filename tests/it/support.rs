//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use slipway::model::{Checked, check_file};
use slipway::report::diagnostics::{DiagFormat, render};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs with the crate root as the working directory, so file names in
/// diagnostics are short and stable.
pub fn check_relative(path: &Path) -> Checked {
    let rel = path.strip_prefix(root()).unwrap_or(path);
    check_file(&root().join(rel))
}

/// Diagnostics as a person sees them (no colour) and one line each.
pub fn rendered(checked: &Checked) -> String {
    let human = render(
        &checked.diagnostics,
        &checked.sources,
        DiagFormat::Human,
        false,
    );
    let concise = render(
        &checked.diagnostics,
        &checked.sources,
        DiagFormat::Concise,
        false,
    );
    let root = format!("{}/", root().display());
    format!("{human}\n---\n{concise}").replace(&root, "")
}

/// Every file under `dir` (recursively) with extension `ext`.
pub fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Builds `dockerfile` (FROM local images only) as `tag` (see
/// [`build_image_in`]).
pub fn build_image(tag: &'static str, dockerfile: &str) -> &'static str {
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("write");
    build_image_in(tag, ctx.path());
    tag
}

/// Builds the context `dir` (its `Dockerfile` FROM local images only) as
/// `tag`, and copies the image to the test cluster's second node, whose
/// engine pulls nothing from here (`scripts/test-cluster.sh load` does
/// nothing when that node is not up).
pub fn build_image_in(tag: &str, dir: &Path) {
    let built = std::process::Command::new("/usr/bin/docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag, "."])
        .current_dir(dir)
        .output()
        .expect("docker build");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let loaded = std::process::Command::new(root().join("scripts/test-cluster.sh"))
        .args(["load", tag])
        .output()
        .expect("scripts/test-cluster.sh load");
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
}
