//! Where cached stage results are kept: a folder laid out as an OCI image
//! layout is (content-addressed blobs, and a small manifest per key that
//! names them), so that the same entries can go to a registry.
//!
//! Every blob is checked against its digest when read: a corrupt, missing
//! or unreadable entry is a miss (with the reason, for a warning), never a
//! wrong result. Writes go through temporary files renamed into place, so
//! a reader never sees half an entry.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::key::Key;

/// The manifest's format; another is a miss.
const FORMAT: &str = "slipway-stage-cache/1";

/// What a stage's cached run left: how it ended, what it printed, and its
/// artifacts (each a tar, by the artifact's declared path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The attempt's exit code (0: a cache only keeps successes).
    pub exit_code: i32,
    pub duration_ms: u64,
    /// The lines it printed, in order: `(stream, line)`, secrets masked.
    pub log: Vec<(String, String)>,
}

/// A blob as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Blob {
    /// `blake3:<64 hex digits>`.
    digest: String,
    size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    /// The [`Recorded`] result, as a JSON blob.
    result: Blob,
    /// Each artifact's tar, by its declared path.
    artifacts: Vec<(String, Blob)>,
}

/// A lookup's answer.
#[derive(Debug)]
pub enum Lookup {
    /// The result, and where each artifact's tar is (checked).
    Hit {
        recorded: Recorded,
        artifacts: Vec<(String, PathBuf)>,
    },
    Miss,
    /// An entry that cannot be used, and why: a miss to say.
    Bad(String),
}

/// A store in a folder (by default under the user's cache folder).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$XDG_CACHE_HOME/slipway/stage-cache`, else `~/.cache/...`.
    pub fn default_root() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("slipway/stage-cache"))
    }

    fn manifest_path(&self, key: &Key) -> PathBuf {
        self.root.join("entries").join(key.hex())
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("blake3:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.root.join("blobs/blake3").join(hex))
    }

    /// The entry for `key`, every blob checked.
    pub fn get(&self, key: &Key) -> Lookup {
        let text = match std::fs::read(self.manifest_path(key)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Bad(format!("cannot read the entry of {key}: {e}")),
        };
        let manifest: Manifest = match serde_json::from_slice(&text) {
            Ok(m) => m,
            Err(e) => return Lookup::Bad(format!("the entry of {key} does not parse: {e}")),
        };
        if manifest.format != FORMAT {
            return Lookup::Bad(format!(
                "the entry of {key} is in format `{}`, not `{FORMAT}`",
                manifest.format
            ));
        }
        let result = match self.checked(&manifest.result) {
            Ok(path) => path,
            Err(e) => return Lookup::Bad(format!("the entry of {key}: {e}")),
        };
        let recorded: Recorded = match std::fs::read(&result)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => return Lookup::Bad(format!("the result of {key} cannot be read: {e}")),
        };
        let mut artifacts = Vec::new();
        for (path, blob) in &manifest.artifacts {
            match self.checked(blob) {
                Ok(p) => artifacts.push((path.clone(), p)),
                Err(e) => return Lookup::Bad(format!("artifact `{path}` of {key}: {e}")),
            }
        }
        // Used now: `trim` keeps what was used lately.
        let _ = std::fs::File::options()
            .append(true)
            .open(self.manifest_path(key))
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Lookup::Hit {
            recorded,
            artifacts,
        }
    }

    /// Removes the entries not used (kept or read) for `unused`, then the
    /// blobs no entry names any more, and temporary files left by writes
    /// that did not finish; with `dry_run`, only counts them. Returns the
    /// entries, the blobs and their bytes.
    pub fn trim(&self, unused: std::time::Duration, dry_run: bool) -> std::io::Result<Trimmed> {
        let mut trimmed = Trimmed::default();
        let now = std::time::SystemTime::now();
        let old = |meta: &std::fs::Metadata| {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > unused)
        };
        // A write still going on (another run) is not cut short: only
        // temporary files an hour old go.
        let stale = |meta: &std::fs::Metadata| {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600))
        };
        let is_tmp = |e: &std::fs::DirEntry| e.file_name().to_string_lossy().ends_with(".tmp");
        let mut named = std::collections::HashSet::new();
        for entry in read_dir(&self.root.join("entries"))? {
            let meta = entry.metadata()?;
            if is_tmp(&entry) {
                if stale(&meta) && !dry_run {
                    std::fs::remove_file(entry.path())?;
                }
                continue;
            }
            if old(&meta) {
                trimmed.entries += 1;
                if !dry_run {
                    std::fs::remove_file(entry.path())?;
                }
                continue;
            }
            // An entry that does not parse names nothing: its blobs go.
            if let Ok(m) = serde_json::from_slice::<Manifest>(&std::fs::read(entry.path())?) {
                named.insert(m.result.digest);
                named.extend(m.artifacts.into_iter().map(|(_, b)| b.digest));
            }
        }
        for blob in read_dir(&self.root.join("blobs/blake3"))? {
            let meta = blob.metadata()?;
            let name = blob.file_name().to_string_lossy().into_owned();
            // A blob no entry names yet may be a write still going on,
            // its entry to come.
            if named.contains(&format!("blake3:{name}")) || !stale(&meta) {
                continue;
            }
            trimmed.blobs += 1;
            trimmed.bytes += meta.len();
            if !dry_run {
                std::fs::remove_file(blob.path())?;
            }
        }
        Ok(trimmed)
    }

    /// The blob's file, once its size and digest are what the manifest
    /// says.
    fn checked(&self, blob: &Blob) -> Result<PathBuf, String> {
        let path = self
            .blob_path(&blob.digest)
            .ok_or_else(|| format!("`{}` is not a digest", blob.digest))?;
        let (digest, size) =
            hash_file(&path).map_err(|e| format!("blob {} cannot be read: {e}", blob.digest))?;
        if size != blob.size || digest != blob.digest {
            return Err(format!(
                "blob {} is damaged ({size} bytes hashing to {digest})",
                blob.digest
            ));
        }
        Ok(path)
    }

    /// Keeps `recorded` and the artifact tars (by declared path) under
    /// `key`, replacing what was there.
    pub fn put(
        &self,
        key: &Key,
        recorded: &Recorded,
        artifacts: &[(String, PathBuf)],
    ) -> std::io::Result<()> {
        let result = self.put_blob_bytes(&serde_json::to_vec(recorded)?)?;
        let mut blobs = Vec::new();
        for (path, file) in artifacts {
            blobs.push((path.clone(), self.put_blob_file(file)?));
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            result,
            artifacts: blobs,
        };
        write_atomically(&self.manifest_path(key), &serde_json::to_vec(&manifest)?)
    }

    fn put_blob_bytes(&self, bytes: &[u8]) -> std::io::Result<Blob> {
        let digest = format!("blake3:{}", blake3::hash(bytes).to_hex());
        let path = self.blob_path(&digest).expect("a digest made here");
        if !path.exists() {
            write_atomically(&path, bytes)?;
        }
        Ok(Blob {
            digest,
            size: bytes.len() as u64,
        })
    }

    fn put_blob_file(&self, file: &Path) -> std::io::Result<Blob> {
        let (digest, size) = hash_file(file)?;
        let path = self.blob_path(&digest).expect("a digest made here");
        if !path.exists() {
            into_place(&path, |tmp| std::fs::copy(file, tmp).map(drop))?;
        }
        Ok(Blob { digest, size })
    }
}

/// What [`LocalStore::trim`] removed (or would).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    pub entries: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// A folder's entries; none when it does not exist.
fn read_dir(dir: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((format!("blake3:{}", hasher.finalize().to_hex()), size))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    into_place(path, |tmp| std::fs::File::create(tmp)?.write_all(bytes))
}

/// Makes `path` by having `write` fill a temporary file beside it, then
/// renaming that into place: a reader sees all of it or none. Each
/// temporary name is this process's and this call's own, as several
/// stages' results are written at once. Not synced: a file cut short by a
/// crash fails its digest, a miss.
fn into_place(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no folder"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = write(&tmp).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Recorded {
        Recorded {
            exit_code: 0,
            duration_ms: 1234,
            log: vec![
                ("stdout".into(), "built".into()),
                ("stderr".into(), "a warning".into()),
            ],
        }
    }

    fn key(s: &str) -> Key {
        Key(blake3::hash(s.as_bytes()))
    }

    #[test]
    fn an_entry_comes_back_as_it_was_kept_and_others_are_misses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("store"));
        let tar = dir.path().join("dist.tar");
        std::fs::write(&tar, b"tar bytes").expect("write");
        store
            .put(&key("a"), &recorded(), &[("dist/".into(), tar)])
            .expect("put");
        match store.get(&key("a")) {
            Lookup::Hit {
                recorded: r,
                artifacts,
            } => {
                assert_eq!(r, recorded());
                assert_eq!(artifacts.len(), 1);
                assert_eq!(artifacts[0].0, "dist/");
                assert_eq!(std::fs::read(&artifacts[0].1).expect("read"), b"tar bytes");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.get(&key("b")), Lookup::Miss));
    }

    #[test]
    fn trimming_removes_entries_unused_lately_and_the_blobs_only_they_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("store"));
        let (old_tar, new_tar) = (dir.path().join("old.tar"), dir.path().join("new.tar"));
        std::fs::write(&old_tar, b"old only").expect("write");
        std::fs::write(&new_tar, b"new only").expect("write");
        store
            .put(&key("old"), &recorded(), &[("a/".into(), old_tar)])
            .expect("put");
        store
            .put(&key("new"), &recorded(), &[("a/".into(), new_tar)])
            .expect("put");
        let month = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
        std::fs::File::options()
            .append(true)
            .open(store.manifest_path(&key("old")))
            .expect("open")
            .set_modified(month)
            .expect("age");
        let old_blob = store
            .blob_path(&format!("blake3:{}", blake3::hash(b"old only").to_hex()))
            .expect("path");
        std::fs::File::options()
            .append(true)
            .open(&old_blob)
            .expect("open")
            .set_modified(month)
            .expect("age");
        let week = std::time::Duration::from_secs(7 * 86_400);
        // Counted, nothing removed.
        let would = store.trim(week, true).expect("trim");
        assert_eq!((would.entries, would.blobs, would.bytes), (1, 1, 8));
        assert!(matches!(store.get(&key("old")), Lookup::Hit { .. }));
        // Read just now: used lately, kept.
        assert_eq!(store.trim(week, false).expect("trim").entries, 0);
        std::fs::File::options()
            .append(true)
            .open(store.manifest_path(&key("old")))
            .expect("open")
            .set_modified(month)
            .expect("age");
        let done = store.trim(week, false).expect("trim");
        assert_eq!((done.entries, done.blobs), (1, 1));
        assert!(matches!(store.get(&key("old")), Lookup::Miss));
        // The result blob both share, and the newer entry, are kept.
        assert!(matches!(store.get(&key("new")), Lookup::Hit { .. }));
    }

    #[test]
    fn a_damaged_missing_or_foreign_entry_is_a_miss_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("store"));
        let tar = dir.path().join("dist.tar");
        std::fs::write(&tar, b"tar bytes").expect("write");
        store
            .put(&key("a"), &recorded(), &[("dist/".into(), tar)])
            .expect("put");
        let blob = store
            .blob_path(&format!("blake3:{}", blake3::hash(b"tar bytes").to_hex()))
            .expect("path");

        // One byte changed, same size: caught by the digest.
        std::fs::write(&blob, b"tar bytez").expect("write");
        match store.get(&key("a")) {
            Lookup::Bad(why) => assert!(why.contains("damaged"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Gone.
        std::fs::remove_file(&blob).expect("rm");
        match store.get(&key("a")) {
            Lookup::Bad(why) => assert!(why.contains("cannot be read"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A manifest that does not parse, or of another format.
        let manifest = store.manifest_path(&key("a"));
        std::fs::write(&manifest, b"{not json").expect("write");
        assert!(matches!(store.get(&key("a")), Lookup::Bad(_)));
        std::fs::write(
            &manifest,
            br#"{"format":"other/9","result":{"digest":"blake3:00","size":0},"artifacts":[]}"#,
        )
        .expect("write");
        match store.get(&key("a")) {
            Lookup::Bad(why) => assert!(why.contains("other/9"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A digest that names a path outside the store is not followed.
        std::fs::write(
            &manifest,
            br#"{"format":"slipway-stage-cache/1","result":{"digest":"blake3:../../etc/passwd","size":0},"artifacts":[]}"#,
        )
        .expect("write");
        match store.get(&key("a")) {
            Lookup::Bad(why) => assert!(why.contains("not a digest"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
