//! The command line. One file per subcommand; this one holds what they share:
//! finding the pipeline file, the selection flags, colour, exit codes.
//! Subcommands return `Result<(), Error>`; [`main`] reports the error and
//! exits with its code.

mod check;
mod fmt;
mod gc;
mod git;
mod graph;
mod lsp;
mod plan;
mod release;
mod run;
mod runs;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::diagnostic::Diag;
use crate::error::Error;
use crate::model::{Checked, Pipeline};
use crate::report::diagnostics::{DiagFormat, render};
use crate::source::SourceMap;
use crate::syntax::ParseOptions;

/// Exit codes, documented in the README.
pub mod exit {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// The pipeline ran and failed (`fmt --check`: files need formatting).
    pub const FAILED: u8 = 1;
    /// Invalid input: a parse or check error, or bad usage.
    pub const INVALID: u8 = 2;
    /// Infrastructure or internal error.
    pub const INTERNAL: u8 = 3;
    /// Stopped by Ctrl-C or SIGTERM.
    pub const CANCELLED: u8 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "slipway",
    version,
    about = "Pipeline-as-code for Kubernetes delivery",
    long_about = "slipway reads a `.pipeline` file, checks it, plans it into waves of stages, \
                  and runs them in containers before releasing to Kubernetes.",
    after_help = "Exit codes: 0 ok, 1 the pipeline ran and failed, 2 invalid input, 3 infrastructure or internal error.\n\
                  Docs: docs/language.md (the language), docs/cli.md (commands and JSON formats)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    /// When to use colour: auto (a terminal, and NO_COLOR unset), always, never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,

    /// How to print diagnostics. Defaults to `github` inside GitHub Actions.
    #[arg(long, global = true, value_enum)]
    diagnostics: Option<DiagFormat>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a pipeline and report every problem in it.
    Check(check::CheckArgs),
    /// Show what would run: stages, waves, images, env, and why stages are skipped.
    Plan(plan::PlanArgs),
    /// Draw the stage graph (dot, mermaid or text).
    Graph(graph::GraphArgs),
    /// Format pipeline files in the canonical layout.
    Fmt(fmt::FmtArgs),
    /// Run the plan's stages, in containers or as host processes.
    Run(run::RunArgs),
    /// Look at releases in the cluster, roll one back, or diff what a
    /// pipeline would apply.
    Release(release::ReleaseArgs),
    /// List the recent runs here: status, time and failed stages.
    Runs(runs::RunsArgs),
    /// Remove what killed runs left behind on the Docker engine.
    Gc(gc::GcArgs),
    /// Start the language server, for editors (over standard input and output).
    Lsp(lsp::LspArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Color {
    Auto,
    Always,
    Never,
}

/// What every subcommand gets besides its own arguments.
pub(crate) struct Global {
    color: bool,
    diagnostics: DiagFormat,
    /// How pipeline files are parsed (`SLIPWAY_THREADS`).
    parse: ParseOptions,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            });
        }
    };
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    };
    let global = Global {
        color,
        diagnostics: cli.diagnostics.unwrap_or_else(DiagFormat::detect),
        parse: parse_options(std::env::var("SLIPWAY_THREADS").ok().as_deref()),
    };
    let result = match cli.command {
        Command::Check(a) => check::run(&a, &global),
        Command::Plan(a) => plan::run(&a, &global),
        Command::Runs(a) => runs::run(&a, &global),
        Command::Graph(a) => graph::run(&a, &global),
        Command::Fmt(a) => fmt::run(&a, &global),
        Command::Run(a) => run::run(&a, &global),
        Command::Release(a) => release::run(&a, &global),
        Command::Gc(a) => gc::run(&a, &global),
        Command::Lsp(a) => lsp::run(&a, &global),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            if let Some(diag) = e.diag() {
                print_diags(&[diag], &SourceMap::default(), &global);
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// `SLIPWAY_THREADS=N` parses large files on N threads; `1` on one (for
/// measurements, and for hosts that count cores they do not give). Unset or
/// not a number: one per core.
fn parse_options(threads: Option<&str>) -> ParseOptions {
    match threads.and_then(|t| t.parse::<usize>().ok()) {
        Some(threads) => ParseOptions { threads },
        None => ParseOptions::default(),
    }
}

/// The async runtime of `run` and `release`: one thread, as they wait on
/// the engine and the API rather than compute.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            action: "start the runtime".into(),
            source,
        })
}

/// The pipeline file: the one given, else the single `*.pipeline` in the
/// current directory, else `slipway.pipeline`.
pub(crate) fn find_pipeline(given: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(".")
        .map_err(|e| {
            Error::usage(
                format!("cannot list the current directory: {e}"),
                "pass a FILE",
            )
        })?
        .filter_map(Result::ok)
        .map(|e| PathBuf::from(e.file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "pipeline") && p.is_file())
        .collect();
    found.sort();
    let default = PathBuf::from("slipway.pipeline");
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::usage(
            "no `.pipeline` file in the current directory",
            "pass a FILE, or create `slipway.pipeline`",
        )),
        _ if found.contains(&default) => Ok(default),
        _ => Err(Error::usage(
            format!(
                "several `.pipeline` files here: {}",
                found
                    .iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "pass the one to use as FILE, or name it `slipway.pipeline`",
        )),
    }
}

/// `FILE` names no file.
pub(crate) fn no_such_file(path: &Path) -> Error {
    Error::usage(
        format!("no such file `{}`", path.display()),
        "pass the path of a `.pipeline` file",
    )
}

/// Loads and checks; when there are errors, prints the diagnostics and
/// returns [`Error::Invalid`].
pub(crate) fn load_checked(path: &Path, global: &Global) -> Result<(Pipeline, Checked), Error> {
    if !path.exists() {
        return Err(no_such_file(path));
    }
    let mut checked = crate::model::check_file_with(path, global.parse);
    match checked.pipeline.take() {
        Some(p) => Ok((p, checked)),
        None => {
            print_diagnostics(&checked, global);
            Err(Error::Invalid)
        }
    }
}

pub(crate) fn print_diagnostics(checked: &Checked, global: &Global) {
    print_diags(&checked.diagnostics, &checked.sources, global);
}

/// Prints diagnostics as one report (a GitLab report is one JSON array,
/// empty when there is nothing to say).
pub(crate) fn print_diags(diags: &[Diag], sources: &SourceMap, global: &Global) {
    if diags.is_empty() && global.diagnostics != DiagFormat::Gitlab {
        return;
    }
    eprint!(
        "{}",
        render(diags, sources, global.diagnostics, global.color)
    );
}

/// `[FILE] [STAGE...]` and the flags that choose what runs: shared by
/// `plan`, `graph` and `run`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct Selection {
    /// The pipeline file (default: the single `*.pipeline` here, or `slipway.pipeline`),
    /// then the stages to keep, with their dependencies (default: all).
    /// A matrix cell is named `test[NODE=18]`.
    #[arg(value_name = "FILE|STAGE")]
    args: Vec<String>,

    /// The branch, instead of the repository's current one.
    #[arg(long, value_name = "B")]
    branch: Option<String>,

    /// The tag, instead of the one on HEAD.
    #[arg(long, value_name = "T")]
    tag: Option<String>,

    /// The commit, instead of HEAD.
    #[arg(long, value_name = "SHA")]
    sha: Option<String>,

    /// A changed path `changed("glob")` looks at, instead of asking git.
    /// Repeat it, or separate paths with commas.
    #[arg(long, value_name = "PATH", value_delimiter = ',')]
    changed: Vec<String>,

    /// Take changed paths from `git diff REF...HEAD` (plus uncommitted changes).
    #[arg(long, value_name = "REF", conflicts_with = "changed")]
    changed_since: Option<String>,

    /// The environment whose `env` applies (an `environment` block).
    #[arg(long = "env", value_name = "NAME")]
    environment: Option<String>,

    /// Set an env value: it overrides the value of that name wherever it is
    /// defined, and is exported to every stage.
    #[arg(long, value_name = "K=V", value_parser = parse_set)]
    set: Vec<(String, String)>,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

impl Selection {
    /// The project directory: the pipeline file's folder.
    pub(crate) fn workspace(&self) -> Result<PathBuf, Error> {
        let (file, _) = self.file_and_targets();
        Ok(find_pipeline(file.as_deref())?
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf))
    }

    /// Splits `args` into the file and the stages.
    pub(crate) fn file_and_targets(&self) -> (Option<PathBuf>, Vec<String>) {
        let mut args = self.args.clone();
        let is_file = args
            .first()
            .is_some_and(|a| a.ends_with(".pipeline") || Path::new(a).is_file());
        let file = is_file.then(|| PathBuf::from(args.remove(0)));
        (file, args)
    }

    /// The plan options, with git's answers where no flag overrides them.
    pub(crate) fn options(&self, pipeline_file: &Path) -> Result<crate::plan::Options, Error> {
        let dir = pipeline_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let repo = git::Repo::at(dir);
        let mut ctx = repo
            .as_ref()
            .map_or_else(git::ci_context, git::Repo::context);
        if let Some(b) = &self.branch {
            ctx.branch = Some(b.clone());
        }
        if let Some(t) = &self.tag {
            ctx.tag = Some(t.clone());
        }
        if let Some(s) = &self.sha {
            ctx.short_sha = Some(s.chars().take(7).collect());
            ctx.sha = Some(s.clone());
            // The time was HEAD's, not this commit's.
            ctx.time = None;
        }
        if let Some(base) = &self.changed_since {
            if !repo.as_ref().is_some_and(|r| r.has_revision(base)) {
                return Err(Error::usage(
                    format!("`--changed-since {base}`: no such revision"),
                    "name a branch, tag or commit of the repository around the pipeline file",
                ));
            }
        }
        let changed = if !self.changed.is_empty() {
            Some(self.changed.clone())
        } else {
            repo.as_ref()
                .and_then(|r| r.changed(self.changed_since.as_deref()))
        };
        let (_, targets) = self.file_and_targets();
        Ok(crate::plan::Options {
            targets,
            environment: self.environment.clone(),
            git: ctx,
            changed,
            set: self.set.iter().cloned().collect(),
        })
    }
}

/// Loads, checks and plans: what `plan`, `graph` and `run` start with.
/// Warnings and plan errors (a stage or an environment the pipeline does
/// not have among them) are printed together, as one report.
pub(crate) fn make_plan(sel: &Selection, global: &Global) -> Result<crate::plan::Plan, Error> {
    let (file, _) = sel.file_and_targets();
    let path = find_pipeline(file.as_deref())?;
    let (pipeline, checked) = load_checked(&path, global)?;
    let options = sel.options(&path)?;
    let mut diags = checked.diagnostics;
    let plan = match crate::plan::plan(&pipeline, &options) {
        Ok(plan) => Some(plan),
        Err(crate::plan::PlanError::Usage { message, help }) => {
            let usage = Diag::usage(message);
            diags.push(match help {
                Some(h) => usage.help(h),
                None => usage,
            });
            None
        }
        Err(crate::plan::PlanError::Diagnostics(found)) => {
            diags.extend(found);
            None
        }
    };
    crate::diagnostic::sort(&mut diags);
    print_diags(&diags, &checked.sources, global);
    // The process ends soon after: freeing a large model piece by piece
    // would only delay the exit.
    std::mem::forget(pipeline);
    plan.ok_or(Error::Invalid)
}

/// Writes to stdout; a closed pipe (`slipway plan | head`) is not an error.
pub(crate) fn write_stdout(s: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            action: "write to standard output".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slipway_threads_chooses_the_parse_threads() {
        assert_eq!(parse_options(Some("1")).threads, 1);
        assert_eq!(parse_options(Some("0")).threads, 0);
        assert_eq!(parse_options(Some("12")).threads, 12);
        for other in [None, Some(""), Some("many"), Some("-1")] {
            assert_eq!(parse_options(other), ParseOptions::default());
        }
    }
}
