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
    let out = match args.format {
        PlanFormat::Json => match serde_json::to_string_pretty(&plan) {
            Ok(s) => s + "\n",
            Err(e) => {
                super::error(global, &format!("cannot write the plan as JSON: {e}"), None);
                return exit::INTERNAL;
            }
        },
        PlanFormat::Text => crate::report::plan::text(&plan, global.color),
    };
    super::write_stdout(&out)
}
