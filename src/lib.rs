//! slipway: pipeline-as-code for Kubernetes delivery.
//!
//! A `.pipeline` file flows through one type per phase:
//!
//! ```text
//! text ─syntax::parse─▶ Ast ─model::check─▶ Pipeline ─plan::plan─▶ Plan ─run─▶ RunSummary
//! ```
//!
//! - [`syntax`] parses one file into an [`syntax::Ast`] with spans; it is the
//!   only user of pest, and it recovers from errors so that a file reports all
//!   of them.
//! - [`model`] loads includes, resolves templates and checks everything into a
//!   validated [`model::Pipeline`], a DAG of stages, reporting every problem at
//!   once as [`diagnostic::Diag`]s.
//! - [`plan`] applies the command line's choices (target stages, `--env`, git
//!   context, `--set`), expands matrices, evaluates `when` conditions and
//!   interpolates values into a serialisable [`plan::Plan`]: exactly what
//!   would run, in which waves.
//! - `image` reads image references once, with Docker's rules, for the
//!   plan, the Docker backend and releases alike.
//! - [`report`] renders diagnostics, plans and graphs; [`cli`] wires it to
//!   the command line, where what goes wrong is one `Error` (`error.rs`) with
//!   an exit code; `lsp` serves the same checks to editors.
//!
//! `syntax`, `model` and `plan` are synchronous and pure: they read files but
//! start nothing.

pub mod cache;
pub mod cli;
pub mod diagnostic;
mod error;
pub mod format;
mod image;
mod lsp;
pub mod model;
pub mod plan;
pub mod release;
pub mod report;
pub mod run;
pub mod source;
pub mod syntax;
