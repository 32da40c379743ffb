//! How a stage's container sees the project: an overlay volume of its own
//! (the project read-only below, a scratch layer on top), or the project
//! itself with `--workspace shared`; and its `cache` volumes.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::models::VolumeCreateRequest;

use super::engine::failure;
use super::{WORKSPACE, sanitize};
use crate::run::backend::Failure;

/// A volume that shows the project read-only with a writable layer of its
/// own on top (overlayfs through the `local` driver), so that a container
/// can write anywhere in its workspace without touching the project or
/// another container's files.
pub(super) async fn overlay_volume(
    docker: &Docker,
    workspace: &Path,
    name: &str,
    labels: &HashMap<String, String>,
    scratch: &Path,
) -> Result<String, Failure> {
    let lower = workspace.display().to_string();
    // overlayfs splits its options on `,` and its lower dirs on `:`.
    if lower.contains([',', ':']) {
        return Err(super::engine::stage(format!(
            "the workspace path `{lower}` contains `,` or `:`, which an overlay mount cannot take; run with `--workspace shared`"
        )));
    }
    let dir = scratch.join(name);
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| {
            super::engine::stage(format!(
                "cannot create `{}` for the workspace: {e}",
                d.display()
            ))
        })?;
    }
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some("local".into()),
            driver_opts: Some(HashMap::from([
                ("type".to_string(), "overlay".to_string()),
                ("device".to_string(), "overlay".to_string()),
                ("o".to_string(), options),
            ])),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| failure("cannot create the workspace volume", &e))?;
    Ok(name.to_string())
}

/// The bind of a `cache` path: a volume per pipeline and path, kept across
/// runs.
pub(super) fn cache_bind(pipeline: &str, path: &str) -> String {
    let target = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{WORKSPACE}/{}", path.trim_start_matches("./"))
    };
    format!("{}:{target}", cache_volume(pipeline, path))
}

/// The volume a `cache` path lives in: one per pipeline and path, kept
/// across runs.
pub fn cache_volume(pipeline: &str, path: &str) -> String {
    // FNV-1a: stable across runs and versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("slipway-cache-{}-{h:016x}", sanitize(pipeline))
}
