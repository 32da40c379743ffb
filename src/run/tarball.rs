//! Files into a tar as they are when read: a file that grows or shrinks
//! while the tar is made (a log being written, an editor saving) is taken
//! whole with the length read, where the tar crate's own `append_path`
//! fails ("Did the file change while appending?").

use std::path::Path;

/// The files of the project at `dir` that a stage's workspace holds, in
/// name order: what git would ignore (`.gitignore` files,
/// `.git/info/exclude`) and what a `.slipwayignore` lists is left out, and
/// so are `.git` and `.slipway`. The Pods' workspace and the stage cache's
/// `inputs` both walk it: a file a stage is not sent cannot change it.
pub(crate) fn workspace_walk(dir: &Path) -> ignore::Walk {
    ignore::WalkBuilder::new(dir)
        .hidden(false)
        .parents(false)
        .git_global(false)
        .require_git(false)
        .add_custom_ignore_filename(".slipwayignore")
        .filter_entry(|e| !matches!(e.file_name().to_str(), Some(".git" | ".slipway")))
        .sort_by_file_name(std::cmp::Ord::cmp)
        .build()
}

/// Appends `path` as `rel`: a regular file read whole, anything else
/// (a folder, a symbolic link) by its metadata (a link as a link when the
/// builder does not follow them, as slipway's never do).
pub(crate) fn append<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    rel: &Path,
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return tar.append_path_with_name(path, rel);
    }
    let bytes = std::fs::read(path)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata(&meta);
    header.set_size(bytes.len() as u64);
    tar.append_data(&mut header, rel, bytes.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_taken_with_the_length_read_and_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("run.sh");
        std::fs::write(&file, "echo hi\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::symlink("run.sh", dir.path().join("link")).expect("symlink");
        let mut tar = tar::Builder::new(Vec::new());
        tar.follow_symlinks(false);
        append(&mut tar, &file, Path::new("run.sh")).expect("file");
        append(&mut tar, &dir.path().join("link"), Path::new("link")).expect("link");
        let bytes = tar.into_inner().expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).expect("read");
            let h = entry.header();
            seen.push((
                entry.path().expect("path").display().to_string(),
                h.entry_type().is_symlink(),
                h.mode().expect("mode") & 0o777,
                text,
            ));
        }
        assert_eq!(
            seen,
            [
                ("run.sh".to_string(), false, 0o755, "echo hi\n".to_string()),
                ("link".to_string(), true, 0o777, String::new()),
            ]
        );
    }
}
