//! What runs that ended without cleaning up left on the engine: a run
//! killed with SIGKILL, or whose machine went down, leaves its containers,
//! networks and workspace volumes behind, all labelled with its id. A run's
//! id ends with its process id, so a run is over when no `slipway` process
//! of that id runs here any more.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveVolumeOptions,
};

use super::RUN_LABEL;
use super::container::remove;
use super::engine::Unreachable;

/// What one ended run left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub run: String,
    pub pipeline: Option<String>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// The run's scratch folder (its workspaces' writable layers).
    pub scratch: Option<std::path::PathBuf>,
}

/// Finds what runs that are over left behind, and removes it unless
/// `dry_run`. Runs still going are not touched.
pub async fn collect(dry_run: bool) -> Result<Vec<Leftovers>, Unreachable> {
    let docker = Docker::connect_with_local_defaults()?;
    docker.ping().await?;
    let mut runs: BTreeMap<String, Leftovers> = BTreeMap::new();
    let filter = HashMap::from([("label".to_string(), vec![RUN_LABEL.to_string()])]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await?;
    for c in containers {
        if let (Some(e), Some(id)) = (entry(&mut runs, c.labels.as_ref()), c.id) {
            e.containers.push(id);
        }
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filter)
                .build(),
        ))
        .await?;
    for n in networks {
        if let (Some(e), Some(name)) = (entry(&mut runs, n.labels.as_ref()), n.name) {
            e.networks.push(name);
        }
    }
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filter)
                .build(),
        ))
        .await?;
    for v in volumes.volumes.unwrap_or_default() {
        if let Some(e) = entry(&mut runs, Some(&v.labels)) {
            e.volumes.push(v.name);
        }
    }
    let mut over: Vec<Leftovers> = runs
        .into_values()
        .filter(|l| !still_going(&l.run))
        .collect();
    for l in &mut over {
        l.scratch = scratch_of(&l.run);
    }
    if !dry_run {
        for l in &over {
            for id in &l.containers {
                remove(&docker, id).await;
            }
            for n in &l.networks {
                let _ = docker.remove_network(n).await;
            }
            for v in &l.volumes {
                let _ = docker.remove_volume(v, None::<RemoveVolumeOptions>).await;
            }
            if let Some(dir) = &l.scratch {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    Ok(over)
}

/// The leftovers of the run whose labels these are, if they name one.
fn entry<'a>(
    runs: &'a mut BTreeMap<String, Leftovers>,
    labels: Option<&HashMap<String, String>>,
) -> Option<&'a mut Leftovers> {
    let labels = labels?;
    let run = labels.get(RUN_LABEL)?.clone();
    let e = runs.entry(run.clone()).or_insert_with(|| Leftovers {
        run,
        ..Leftovers::default()
    });
    if e.pipeline.is_none() {
        e.pipeline = labels.get("dev.slipway.pipeline").cloned();
    }
    Some(e)
}

/// The process id a run id ends with (`<millis>-<pid>`).
fn pid_of(run: &str) -> Option<u32> {
    run.rsplit_once('-')?.1.parse().ok()
}

/// Whether the `slipway` process that started run `run` still runs here.
fn still_going(run: &str) -> bool {
    let Some(pid) = pid_of(run) else {
        // Not an id slipway makes: leave it alone.
        return true;
    };
    slipway_runs(&pid.to_string())
}

/// Whether process `pid` of this machine is a `slipway`.
pub(crate) fn slipway_runs(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end() == "slipway")
}

/// The scratch folder of the run's process (`slipway-<pid>-<millis>` in
/// the temporary folder), if it is there.
fn scratch_of(run: &str) -> Option<std::path::PathBuf> {
    let pid = pid_of(run)?;
    let prefix = format!("slipway-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_going_while_its_slipway_process_runs() {
        assert_eq!(pid_of("1796359903413-4975"), Some(4975));
        assert_eq!(pid_of("nonsense"), None);
        // Not ours: never collected.
        assert!(still_going("nonsense"));
        // This test's own process runs, but it is not `slipway`.
        assert!(!still_going(&format!("1-{}", std::process::id())));
        // No such process.
        assert!(!still_going(&format!("1-{}", u32::MAX - 1)));
    }
}
