//! Artifacts between containers: after a stage succeeds, each path it
//! declares is copied out of its container into the run's store
//! (`.slipway/runs/<run>/artifacts/<stage>/`, as a tar and unpacked), and
//! into the containers of every stage after it, at the same path.

use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt as _;

use super::docker::WORKSPACE;

/// The store folder of a stage (matrix cells' names made file-safe).
pub(crate) fn dir_name(stage: &str) -> String {
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

/// An artifact path inside the container.
fn in_container(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("{WORKSPACE}/{}", trimmed.trim_start_matches("./"))
    }
}

fn tar_file(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("artifact-{index}.tar"))
}

/// Copies a finished stage's artifacts out of its container.
pub(crate) async fn take(
    docker: &Docker,
    id: &str,
    dir: &Path,
    paths: &[String],
) -> Result<(), String> {
    if paths.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the artifact store `{}`: {e}", dir.display()))?;
    for (i, path) in paths.iter().enumerate() {
        let source = in_container(path);
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(&source)
            .build();
        let mut stream = docker.download_from_container(id, Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("artifact `{path}` was not produced ({e})"))?;
            tar.extend_from_slice(&chunk);
        }
        let file = tar_file(dir, i);
        std::fs::write(&file, &tar).map_err(|e| format!("cannot store artifact `{path}`: {e}"))?;
        tar::Archive::new(tar.as_slice())
            .unpack(dir)
            .map_err(|e| format!("cannot unpack artifact `{path}`: {e}"))?;
    }
    Ok(())
}

/// Copies earlier stages' artifacts into a container before it starts.
pub(crate) async fn put(
    docker: &Docker,
    id: &str,
    store: &Path,
    inputs: &[(String, Vec<String>)],
) -> Result<(), String> {
    for (stage, paths) in inputs {
        let dir = store.join(dir_name(stage));
        for (i, path) in paths.iter().enumerate() {
            let Ok(tar) = std::fs::read(tar_file(&dir, i)) else {
                // The stage did not run in this run (a target was chosen).
                continue;
            };
            let target = in_container(path);
            let parent = Path::new(&target)
                .parent()
                .map_or("/".to_string(), |p| p.display().to_string());
            let options = UploadToContainerOptionsBuilder::default()
                .path(&parent)
                .build();
            docker
                .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
                .await
                .map_err(|e| format!("cannot copy artifact `{path}` of `{stage}` in: {e}"))?;
        }
    }
    Ok(())
}
