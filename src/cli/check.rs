//! `slipway check [FILE]`

use std::path::PathBuf;

use clap::Args;

use super::Global;
use crate::diagnostic::{Code, Diag};
use crate::error::Error;
use crate::report::diagnostics::DiagFormat;

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// The pipeline file (default: the single `*.pipeline` here, or `slipway.pipeline`).
    file: Option<PathBuf>,

    /// Fail (exit 2) on warnings too.
    #[arg(long)]
    deny_warnings: bool,

    /// Also check that this backend can run every stage (as `slipway run
    /// --backend` does before it starts): a `build` without `push` under
    /// `kubernetes`, say.
    #[arg(long, value_enum, env = "SLIPWAY_BACKEND")]
    backend: Option<super::run::BackendKind>,
}

pub(crate) fn run(args: &CheckArgs, global: &Global) -> Result<(), Error> {
    let path = super::find_pipeline(args.file.as_deref())?;
    if !path.exists() {
        return Err(super::no_such_file(&path));
    }
    let mut checked = crate::model::check_file_with(&path, global.parse);
    // What only planning finds, for every environment: env cycles, values
    // that grow too large, secrets that would leak.
    crate::plan::validate_checked(&mut checked);
    if let (Some(backend), Some(pipeline)) = (args.backend, &checked.pipeline) {
        let refused: Vec<Diag> = pipeline
            .stages
            .values()
            .chain(pipeline.finally.values())
            .filter_map(|stage| {
                let (span, why, help) = backend.refuses(stage)?;
                let diag = Diag::error(
                    Code::BackendRefuses,
                    span,
                    format!(
                        "the {} backend refuses stage `{}`: {why}",
                        backend.name(),
                        stage.name
                    ),
                );
                Some(match help {
                    Some(h) => diag.help(h),
                    None => diag,
                })
            })
            .collect();
        checked.diagnostics.extend(refused);
        crate::diagnostic::sort(&mut checked.diagnostics);
    }
    super::print_diagnostics(&checked, global);
    let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = checked.diagnostics.len() - errors;
    if global.diagnostics == DiagFormat::Human {
        let summary = match &checked.pipeline {
            Some(p) if errors == 0 => format!(
                "{}: pipeline `{}` is valid: {} stage{}, {} finally, {} template{}",
                path.display(),
                p.name,
                p.stages.len(),
                if p.stages.len() == 1 { "" } else { "s" },
                p.finally.len(),
                p.templates.len(),
                if p.templates.len() == 1 { "" } else { "s" },
            ),
            _ => format!(
                "{}: {errors} error{}",
                path.display(),
                if errors == 1 { "" } else { "s" }
            ),
        };
        let warn = match warnings {
            0 => String::new(),
            1 => ", 1 warning".into(),
            n => format!(", {n} warnings"),
        };
        eprintln!("{summary}{warn}");
    }
    // Exiting next: no need to free the model piece by piece.
    std::mem::forget(checked);
    if errors > 0 || (args.deny_warnings && warnings > 0) {
        Err(Error::Invalid)
    } else {
        Ok(())
    }
}
