//! Where a run keeps what its stages hand on. After a stage succeeds, its
//! backend copies each path it declares out as a tar archive and puts it
//! here under a key; before a stage starts, its backend gets the archives
//! of the stages it comes after and copies them in. Backends see keys and
//! bytes, never where the store keeps them.
//!
//! The local store keeps each archive under
//! `.slipway/runs/<run>/artifacts/<stage>/artifact-<n>.tar`, unpacked beside
//! it so that a person can look at what a stage produced.

use std::path::{Path, PathBuf};

/// One declared artifact path of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    /// The stage (or matrix cell) that produces it.
    pub stage: String,
    /// Which of the stage's `artifact` paths, from 0.
    pub index: usize,
    /// The path as declared: relative to the workspace, or absolute.
    pub path: String,
}

/// A run's artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// The store of run `run` in project `workspace`.
    pub fn for_run(workspace: &Path, run: &str) -> Self {
        Self {
            root: workspace
                .join(".slipway")
                .join("runs")
                .join(run)
                .join("artifacts"),
        }
    }

    fn dir(&self, stage: &str) -> PathBuf {
        self.root.join(dir_name(stage))
    }

    /// Where the archive of `key` is kept.
    pub fn file(&self, key: &ArtifactKey) -> PathBuf {
        self.dir(&key.stage)
            .join(format!("artifact-{}.tar", key.index))
    }

    /// Keeps a stage's artifact (a tar archive of the path).
    pub fn put(&self, key: &ArtifactKey, tar: &[u8]) -> Result<(), String> {
        let dir = self.dir(&key.stage);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the artifact store `{}`: {e}", dir.display()))?;
        std::fs::write(self.file(key), tar)
            .map_err(|e| format!("cannot store artifact `{}`: {e}", key.path))?;
        tar::Archive::new(tar)
            .unpack(&dir)
            .map_err(|e| format!("cannot unpack artifact `{}`: {e}", key.path))
    }

    /// The archive kept under `key`; `None` when its stage did not run in
    /// this run (a target was chosen).
    pub fn get(&self, key: &ArtifactKey) -> Option<Vec<u8>> {
        std::fs::read(self.file(key)).ok()
    }
}

/// Where a path a stage declares lands in its container: absolute as
/// written, else under the workspace.
pub fn in_container(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!(
            "{}/{}",
            crate::run::docker::WORKSPACE,
            trimmed.trim_start_matches("./")
        )
    }
}

/// The store folder of a stage (matrix cells' names made file-safe).
fn dir_name(stage: &str) -> String {
    stage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_is_kept_by_key_and_unpacked_for_people() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::for_run(dir.path(), "r1");
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "dist/a.txt", &b"hi"[..])
            .expect("append");
        let tar = tar.into_inner().expect("tar");
        let key = ArtifactKey {
            stage: "build[NODE=20]".into(),
            index: 0,
            path: "dist/".into(),
        };
        store.put(&key, &tar).expect("put");
        assert_eq!(store.get(&key), Some(tar));
        let unpacked = dir
            .path()
            .join(".slipway/runs/r1/artifacts/build_NODE_20_/dist/a.txt");
        assert_eq!(
            std::fs::read_to_string(unpacked).ok().as_deref(),
            Some("hi")
        );
        let other = ArtifactKey { index: 1, ..key };
        assert_eq!(store.get(&other), None);
    }
}
