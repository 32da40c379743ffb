//! `slipway plan [FILE] [STAGE...] [selection flags] [--format text|json]`

use clap::Args;

use super::{Global, Selection, exit};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlanFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    selection: Selection,

    /// `json` is a stable contract, documented in docs/plan.md.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
}

pub(crate) fn run(args: &PlanArgs, global: &Global) -> u8 {
    let plan = match super::make_plan(&args.selection, global) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let code = match args.format {
        PlanFormat::Json => write_json(&plan, global),
        PlanFormat::Text => super::write_stdout(&crate::report::plan::text(&plan, global.color)),
    };
    // Exiting next: no need to free the plan piece by piece.
    std::mem::forget(plan);
    code
}

/// Streams the plan as JSON: indented on a terminal, one line otherwise
/// (a 10,000-stage plan is 40% smaller and faster to read that way).
fn write_json(plan: &crate::plan::Plan, global: &Global) -> u8 {
    use std::io::{IsTerminal as _, Write as _};
    let stdout = std::io::stdout();
    let pretty = stdout.is_terminal();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = if pretty {
        serde_json::to_writer_pretty(&mut out, plan)
    } else {
        serde_json::to_writer(&mut out, plan)
    };
    match written.map_err(std::io::Error::from).and_then(|()| {
        out.write_all(b"\n")?;
        out.flush()
    }) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            super::error(global, &format!("cannot write the plan: {e}"), None);
            exit::INTERNAL
        }
    }
}
