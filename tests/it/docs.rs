//! Every ```pipeline block in the docs and the README is a complete file that
//! checks clean.

use crate::support::{files, rendered, root};

fn blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```pipeline" => current = Some((i + 1, String::new())),
            Some(_) if line.trim_start() == "```" => out.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_pipeline_block_in_the_docs_checks_clean() {
    let mut docs = files(&root().join("docs"), "md");
    docs.push(root().join("README.md"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut count = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).expect("read doc");
        for (line, body) in blocks(&text) {
            let file = dir.path().join(format!("block{count}.pipeline"));
            std::fs::write(&file, &body).expect("write");
            let checked = slipway::model::check_file(&file);
            assert!(
                checked.diagnostics.is_empty(),
                "{}:{line}: the example does not check clean:\n{}",
                doc.display(),
                rendered(&checked)
            );
            count += 1;
        }
    }
    assert!(count >= 20, "only {count} pipeline examples in the docs");
}
