//! `slipway gc [--dry-run] [--context CTX] [--namespace NS]`

use clap::Args;

use super::Global;
use crate::error::Error;

#[derive(Args, Debug)]
pub(crate) struct GcArgs {
    /// Say what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// The kubeconfig context of the cluster to clean (default: the
    /// current one).
    #[arg(long, value_name = "CONTEXT")]
    context: Option<String>,
    /// Only this namespace of the cluster (default: every namespace the
    /// account may list, else the context's).
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Stage cache entries not used (kept or read) for this long are
    /// removed, with the blobs only they name.
    #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = humantime::parse_duration)]
    cache_unused: std::time::Duration,
}

/// Removes what ended runs left on the Docker engine (containers,
/// networks, workspace volumes, scratch folders) and on the cluster (Pods,
/// Secrets, Leases), one line per run. One of the two not answering is
/// said and skipped; both not answering is an error (exit 3).
pub(crate) fn run(args: &GcArgs, _global: &Global) -> Result<(), Error> {
    let runtime = super::runtime()?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let (docker, cluster) = runtime.block_on(async {
        tokio::join!(
            crate::run::docker::gc::collect(args.dry_run),
            crate::run::kubernetes::gc::collect(
                args.context.as_deref(),
                args.namespace.as_deref(),
                args.dry_run
            )
        )
    });
    runtime.shutdown_background();
    let mut text = String::new();
    let mut notes = String::new();
    if let Some(root) = crate::cache::store::LocalStore::default_root() {
        let store = crate::cache::store::LocalStore::new(&root);
        match store.trim(args.cache_unused, args.dry_run) {
            Ok(t) if t.entries == 0 && t.blobs == 0 => text.push_str(&format!(
                "stage cache: nothing to remove: no entry unused for {}\n",
                humantime::format_duration(args.cache_unused)
            )),
            Ok(t) => text.push_str(&format!(
                "stage cache: {verb} {} {} unused for {}, and {} blob{} ({:.1} MiB)\n",
                t.entries,
                if t.entries == 1 { "entry" } else { "entries" },
                humantime::format_duration(args.cache_unused),
                t.blobs,
                if t.blobs == 1 { "" } else { "s" },
                t.bytes as f64 / 1_048_576.0
            )),
            Err(e) => notes.push_str(&format!(
                "slipway gc: the stage cache `{}` skipped: {e}\n",
                root.display()
            )),
        }
    }
    match &docker {
        Ok(found) if found.is_empty() => {
            text.push_str("docker: nothing to remove: no run that ended left anything\n");
        }
        Ok(found) => {
            for l in found {
                let parts = counted(&[
                    (l.containers.len(), "container", "containers"),
                    (l.networks.len(), "network", "networks"),
                    (l.volumes.len(), "volume", "volumes"),
                    (
                        usize::from(l.scratch.is_some()),
                        "scratch folder",
                        "scratch folders",
                    ),
                ]);
                text.push_str(&format!(
                    "docker: {verb} run {}{}: {parts}\n",
                    l.run,
                    pipeline(l.pipeline.as_deref())
                ));
            }
        }
        Err(e) => notes.push_str(&format!("slipway gc: docker skipped: {e}\n")),
    }
    match &cluster {
        Ok(found) if found.is_empty() => {
            text.push_str("kubernetes: nothing to remove: no run that ended left anything\n");
        }
        Ok(found) => {
            for l in found {
                let parts = counted(&[
                    (l.pods.len(), "Pod", "Pods"),
                    (l.secrets.len(), "Secret", "Secrets"),
                    (l.leases.len(), "Lease", "Leases"),
                ]);
                text.push_str(&format!(
                    "kubernetes: {verb} run {} in `{}`{}: {parts}\n",
                    l.run,
                    l.namespace,
                    pipeline(l.pipeline.as_deref())
                ));
            }
        }
        Err(e) => notes.push_str(&format!("slipway gc: kubernetes skipped: {e}\n")),
    }
    match (docker, cluster) {
        (Err(e), Err(_)) => {
            eprint!("{notes}");
            Err(e.into())
        }
        (Ok(_), Err(e @ crate::release::apply::ApiError::Failed { .. })) => {
            super::write_stdout(&text)?;
            Err(e.into())
        }
        _ => {
            eprint!("{notes}");
            super::write_stdout(&text)
        }
    }
}

fn counted(parts: &[(usize, &str, &str)]) -> String {
    parts
        .iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pipeline(name: Option<&str>) -> String {
    name.map(|p| format!(" (pipeline `{p}`)"))
        .unwrap_or_default()
}
