//! `slipway runs [--limit N] [--format text|json]`

use std::io::Write as _;

use clap::Args;

use super::Global;
use crate::error::Error;
use crate::run::record::{Record, list};

#[derive(Args, Debug)]
pub(crate) struct RunsArgs {
    /// How many runs to list, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// `json`: one object per run, as recorded, with `state` (the status,
    /// or `killed` for a run whose process is gone).
    #[arg(long, value_enum, default_value_t = RunsFormat::Text)]
    format: RunsFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RunsFormat {
    Text,
    Json,
}

/// Lists the recent runs of the project in the current folder, from their
/// records in `.slipway/runs/`.
pub(crate) fn run(args: &RunsArgs, _global: &Global) -> Result<(), Error> {
    let workspace = std::env::current_dir().map_err(|source| Error::Io {
        action: "read the current folder".into(),
        source,
    })?;
    let records: Vec<Record> = list(&workspace).into_iter().take(args.limit).collect();
    let text = match args.format {
        RunsFormat::Json => records
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["state"] = r.state().into();
                v.to_string() + "\n"
            })
            .collect(),
        RunsFormat::Text => table(&records),
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}

fn table(records: &[Record]) -> String {
    if records.is_empty() {
        return "no runs recorded here (.slipway/runs/)\n".into();
    }
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(["RUN", "PIPELINE", "STARTED", "STATUS", "DURATION", "FAILED"]);
    for r in records {
        let started = r
            .started
            .parse::<jiff::Timestamp>()
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| r.started.clone());
        let duration = r.duration_ms.map_or_else(String::new, |ms| {
            format!("{:.1}s", std::time::Duration::from_millis(ms).as_secs_f64())
        });
        table.add_row([
            r.run.clone(),
            r.pipeline.clone(),
            started,
            r.state(),
            duration,
            r.failed().join(", "),
        ]);
    }
    let mut out = table.trim_fmt();
    out.push('\n');
    out
}
