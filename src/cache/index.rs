//! The files a stage's `inputs` match and their contents' BLAKE3 hashes,
//! found fast: an index of each file's size, times and inode (as git's)
//! skips hashing what has not changed since it was last hashed.
//!
//! The files are those the stage's workspace holds (what git ignores and
//! what `.slipwayignore` lists are not sent, so they cannot change a
//! stage's result), matched by the globs, relative to the project.
//!
//! The index is only a speed-up: one that is missing, unreadable or from
//! another format is empty, and every file is hashed again.

use std::collections::HashMap;
use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// The first line of an index file; another means another format.
const HEADER: &str = "slipway-index 1";

/// A file modified this recently (nanoseconds) is hashed again next time:
/// it may change again within the file system's time granularity without
/// its modification time showing it ("racy git"). Its change time, which
/// no tool sets back, is compared too.
const RACY_NS: i128 = 2_000_000_000;

/// What the index knows of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    hash: [u8; 32],
}

impl Entry {
    fn same_file(&self, meta: &std::fs::Metadata) -> bool {
        self.size == meta.size()
            && self.mtime_ns == mtime_ns(meta)
            && self.ctime_ns == ctime_ns(meta)
            && self.inode == meta.ino()
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

fn ctime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// The index of a project's files, by path relative to the project.
#[derive(Debug, Default)]
pub struct Index {
    entries: HashMap<String, Entry>,
    /// Whether an entry was added or changed since it was read.
    changed: bool,
    /// How many files the last lookups hashed, and how many they took from
    /// the index.
    pub hashed: usize,
    pub reused: usize,
}

impl Index {
    /// Reads the index at `path`; empty when there is none or it cannot be
    /// read.
    pub fn open(path: &Path) -> Self {
        let mut index = Index::default();
        let Ok(file) = std::fs::File::open(path) else {
            return index;
        };
        let mut lines = std::io::BufReader::new(file).lines();
        if lines.next().and_then(Result::ok).as_deref() != Some(HEADER) {
            return index;
        }
        for line in lines {
            let Ok(line) = line else {
                return Index::default();
            };
            match parse(&line) {
                Some((path, entry)) => {
                    index.entries.insert(path, entry);
                }
                // A damaged index is no index.
                None => return Index::default(),
            }
        }
        index
    }

    /// Writes the index to `path` (through a temporary file, so a reader
    /// never sees half of it), when anything changed.
    pub fn save(&mut self, path: &Path) -> std::io::Result<()> {
        if !self.changed {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        writeln!(out, "{HEADER}")?;
        let mut paths: Vec<&String> = self.entries.keys().collect();
        paths.sort();
        for p in paths {
            let e = &self.entries[p];
            writeln!(
                out,
                "{} {} {} {} {} {p}",
                blake3::Hash::from(e.hash).to_hex(),
                e.size,
                e.mtime_ns,
                e.ctime_ns,
                e.inode
            )?;
        }
        out.into_inner()
            .map_err(std::io::Error::other)?
            .sync_all()?;
        std::fs::rename(&tmp, path)?;
        self.changed = false;
        Ok(())
    }

    /// The BLAKE3 hash of the file `rel` under `root`: from the index when
    /// the file's size, times and inode are those it was hashed with, else
    /// read and hashed (and remembered).
    pub fn hash(&mut self, root: &Path, rel: &str) -> std::io::Result<blake3::Hash> {
        let path = root.join(rel);
        let meta = std::fs::symlink_metadata(&path)?;
        if let Some(e) = self.entries.get(rel) {
            if e.same_file(&meta) {
                self.reused += 1;
                return Ok(blake3::Hash::from(e.hash));
            }
        }
        let hash = hash_file(&path, &meta)?;
        self.hashed += 1;
        // Changed too lately to trust its times next time: not kept.
        if now_ns() - mtime_ns(&meta) > RACY_NS {
            self.entries.insert(
                rel.to_string(),
                Entry {
                    size: meta.size(),
                    mtime_ns: mtime_ns(&meta),
                    ctime_ns: ctime_ns(&meta),
                    inode: meta.ino(),
                    hash: *hash.as_bytes(),
                },
            );
            self.changed = true;
        } else if self.entries.remove(rel).is_some() {
            self.changed = true;
        }
        Ok(hash)
    }
}

/// A file's contents hashed; a symbolic link's target path instead.
fn hash_file(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    if meta.file_type().is_symlink() {
        hasher.update(b"symlink\0");
        hasher.update(std::fs::read_link(path)?.as_os_str().as_encoded_bytes());
        return Ok(hasher.finalize());
    }
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize())
}

fn parse(line: &str) -> Option<(String, Entry)> {
    let mut parts = line.splitn(6, ' ');
    let hash = blake3::Hash::from_hex(parts.next()?).ok()?;
    let size = parts.next()?.parse().ok()?;
    let mtime_ns = parts.next()?.parse().ok()?;
    let ctime_ns = parts.next()?.parse().ok()?;
    let inode = parts.next()?.parse().ok()?;
    let path = parts.next()?.to_string();
    Some((
        path,
        Entry {
            size,
            mtime_ns,
            ctime_ns,
            inode,
            hash: *hash.as_bytes(),
        },
    ))
}

/// The files under `root` that `globs` match, relative to it with `/`
/// between parts, sorted; what the stage's workspace leaves out (git's
/// ignores, `.slipwayignore`, `.git` and `.slipway`) is left out here too.
pub fn matched(root: &Path, globs: &[String]) -> Result<Vec<String>, globset::Error> {
    let mut set = globset::GlobSetBuilder::new();
    for g in globs {
        set.add(
            globset::GlobBuilder::new(g)
                .literal_separator(true)
                .build()?,
        );
    }
    let set = set.build()?;
    let mut files: Vec<String> = crate::run::tarball::workspace_walk(root)
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_some_and(|t| !t.is_dir()))
        .filter_map(|e| {
            let rel: PathBuf = e.path().strip_prefix(root).ok()?.to_path_buf();
            let rel = rel.to_str()?.to_string();
            set.is_match(&rel).then_some(rel)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// One hash of the files `globs` match under `root`: their paths and
/// contents, in order. Also how many files it covers.
pub fn digest(
    root: &Path,
    globs: &[String],
    index: &mut Index,
) -> Result<(blake3::Hash, usize), DigestError> {
    // No inputs: nothing to walk.
    let files = if globs.is_empty() {
        Vec::new()
    } else {
        matched(root, globs).map_err(DigestError::Glob)?
    };
    let mut hasher = blake3::Hasher::new();
    for rel in &files {
        let hash = index
            .hash(root, rel)
            .map_err(|e| DigestError::Read(rel.clone(), e))?;
        hasher.update(rel.as_bytes());
        hasher.update(b"\0");
        hasher.update(hash.as_bytes());
    }
    Ok((hasher.finalize(), files.len()))
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("bad glob: {0}")]
    Glob(globset::Error),
    #[error("cannot read `{0}`: {1}")]
    Read(String, std::io::Error),
    #[error("the inputs index was left half-updated by a panic")]
    Poisoned,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    /// Sets a file's modification time well in the past, so that the index
    /// trusts it (see [`RACY_NS`]).
    fn age(root: &Path, rel: &str) {
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        std::fs::File::options()
            .write(true)
            .open(root.join(rel))
            .expect("open")
            .set_times(
                std::fs::FileTimes::new()
                    .set_modified(old)
                    .set_accessed(old),
            )
            .expect("set times");
    }

    #[test]
    fn globs_match_what_the_workspace_holds_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for rel in [
            "src/a.js",
            "src/lib/b.js",
            "src/notes.md",
            "package.json",
            "build/out.js",
            ".git/HEAD",
            ".slipway/runs/x",
        ] {
            write(root, rel, rel);
        }
        write(root, ".gitignore", "build/\n");
        let got = matched(root, &["src/**/*.js".into(), "package.json".into()]).expect("globs");
        assert_eq!(got, ["package.json", "src/a.js", "src/lib/b.js"]);
        // `*` stops at `/`, as in `.gitignore`.
        assert_eq!(
            matched(root, &["src/*".into()]).expect("globs"),
            ["src/a.js", "src/notes.md"]
        );
        assert!(matched(root, &["src/[".into()]).is_err());
    }

    #[test]
    fn the_digest_follows_names_and_contents_and_the_index_spares_the_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "src/a.js", "one");
        write(root, "src/b.js", "two");
        age(root, "src/a.js");
        age(root, "src/b.js");
        let globs = vec!["src/**".to_string()];
        let index_path = root.join(".slipway/index");

        let mut index = Index::open(&index_path);
        let (first, n) = digest(root, &globs, &mut index).expect("digest");
        assert_eq!((n, index.hashed, index.reused), (2, 2, 0));
        index.save(&index_path).expect("save");

        // Unchanged: nothing is read again.
        let mut index = Index::open(&index_path);
        let (again, _) = digest(root, &globs, &mut index).expect("digest");
        assert_eq!(again, first);
        assert_eq!((index.hashed, index.reused), (0, 2));

        // New contents, same size, then aged: a new hash (the times and the
        // change time differ from the index's).
        write(root, "src/b.js", "TWO");
        age(root, "src/b.js");
        let mut index = Index::open(&index_path);
        let (changed, _) = digest(root, &globs, &mut index).expect("digest");
        assert_ne!(changed, first);
        assert_eq!((index.hashed, index.reused), (1, 1));

        // A file renamed, contents kept: another digest.
        write(root, "src/b.js", "two");
        std::fs::rename(root.join("src/b.js"), root.join("src/c.js")).expect("rename");
        let mut index = Index::open(&index_path);
        let (renamed, _) = digest(root, &globs, &mut index).expect("digest");
        assert_ne!(renamed, first);
        assert_ne!(renamed, changed);
    }

    #[test]
    fn a_file_changed_just_now_is_not_trusted_to_the_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "a", "fresh");
        let index_path = root.join("index");
        let mut index = Index::open(&index_path);
        index.hash(root, "a").expect("hash");
        index.save(&index_path).expect("save");
        let mut index = Index::open(&index_path);
        index.hash(root, "a").expect("hash");
        assert_eq!((index.hashed, index.reused), (1, 0));
    }

    #[test]
    fn a_damaged_or_foreign_index_is_an_empty_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "a", "x");
        age(root, "a");
        let index_path = root.join("index");
        let mut index = Index::open(&index_path);
        let right = index.hash(root, "a").expect("hash");
        index.save(&index_path).expect("save");
        let text = std::fs::read_to_string(&index_path).expect("read");
        // A wrong hash recorded for the file would be a wrong result: a
        // line that does not parse must not be half-read.
        std::fs::write(&index_path, text.replace(' ', "  ")).expect("write");
        let mut index = Index::open(&index_path);
        assert_eq!(index.hash(root, "a").expect("hash"), right);
        assert_eq!(index.hashed, 1);
        std::fs::write(&index_path, "another format\n").expect("write");
        assert_eq!(Index::open(&index_path).entries.len(), 0);
    }
}
