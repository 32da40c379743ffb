//! `slipway gc [--dry-run]`

use clap::Args;

use super::Global;
use crate::error::Error;

#[derive(Args, Debug)]
pub(crate) struct GcArgs {
    /// Say what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Removes what ended runs left on the Docker engine (containers,
/// networks, workspace volumes, scratch folders), one line per run.
pub(crate) fn run(args: &GcArgs, _global: &Global) -> Result<(), Error> {
    let runtime = super::runtime()?;
    let found = runtime.block_on(crate::run::docker::gc::collect(args.dry_run))?;
    let mut text = String::new();
    if found.is_empty() {
        text.push_str("nothing to remove: no run that ended left anything on the engine\n");
    }
    for l in &found {
        let mut parts = Vec::new();
        for (n, one, many) in [
            (l.containers.len(), "container", "containers"),
            (l.networks.len(), "network", "networks"),
            (l.volumes.len(), "volume", "volumes"),
            (
                usize::from(l.scratch.is_some()),
                "scratch folder",
                "scratch folders",
            ),
        ] {
            if n > 0 {
                parts.push(format!("{n} {}", if n == 1 { one } else { many }));
            }
        }
        text.push_str(&format!(
            "{} run {}{}: {}\n",
            if args.dry_run {
                "would remove"
            } else {
                "removed"
            },
            l.run,
            l.pipeline
                .as_ref()
                .map(|p| format!(" (pipeline `{p}`)"))
                .unwrap_or_default(),
            parts.join(", ")
        ));
    }
    runtime.shutdown_background();
    super::write_stdout(&text)
}
