//! The project as a tar, as it is sent into each Pod: what git would
//! ignore (`.gitignore` files, `.git/info/exclude`) and what a
//! `.slipwayignore` lists is left out, and so are `.git` and `.slipway`.

use std::path::Path;

/// The tar of `dir`'s files, paths relative to it.
pub(super) fn tar(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    for entry in crate::run::tarball::workspace_walk(dir) {
        let entry = entry.map_err(std::io::Error::other)?;
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(dir) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        if entry.file_type().is_some_and(|t| t.is_dir()) {
            tar.append_dir(rel, path)?;
        } else {
            crate::run::tarball::append(&mut tar, path, rel)?;
        }
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_git_and_slipwayignore_leave_out_is_not_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for (path, text) in [
            (".gitignore", "target/\n*.log\n"),
            (".slipwayignore", "big.bin\n"),
            ("src/main.rs", "fn main() {}"),
            ("target/debug/x", "built"),
            ("run.log", "log"),
            ("big.bin", "0000"),
            (".git/HEAD", "ref"),
            (".slipway/runs/x", "old"),
            (".env.example", "A=1"),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        let bytes = tar(root).expect("tar");
        let mut names: Vec<String> = tar::Archive::new(bytes.as_slice())
            .entries()
            .expect("entries")
            .filter_map(Result::ok)
            .filter(|e| e.header().entry_type().is_file())
            .map(|e| e.path().expect("path").display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".env.example",
                ".gitignore",
                ".slipwayignore",
                "src/main.rs"
            ]
        );
    }
}
