//! Ast → [`Pipeline`]: includes loaded, templates applied, every name,
//! reference and value checked. [`check`] reports every problem it finds, not
//! just the first; a `Pipeline` exists only when there is no error.

mod body;
mod cond;
mod dag;
mod load;
mod resolve;
mod schema;
mod stage;
mod text;
mod top;
mod types;

use std::path::Path;

pub(crate) use cond::Compiled;
pub use cond::{Cond, CondExpr, CondOperand};
pub use dag::topo_order;
pub(crate) use load::load_parsed_with;
pub use load::{Loaded, load, load_with, read_source};
pub(crate) use resolve::assemble;
/// Where a setting is, which keys are allowed there, and what their blocks
/// hold: the language server completes the same keys the checker accepts.
pub(crate) use schema::{Context, Inside, inside};
pub(crate) use stage::StageUnit;
pub use text::{GitField, Text, TextPiece, Var, VarRef};
pub(crate) use top::{Declared, Top};
pub use types::*;

use crate::diagnostic::Diag;
use crate::syntax::ParseOptions;

/// The result of checking: the pipeline when there were no errors, and every
/// diagnostic (warnings too) either way.
#[derive(Debug)]
pub struct Checked {
    pub pipeline: Option<Pipeline>,
    pub diagnostics: Vec<Diag>,
    pub sources: crate::source::SourceMap,
}

/// Loads `path` and its includes from disk and checks them.
pub fn check_file(path: &Path) -> Checked {
    check_file_with(path, ParseOptions::default())
}

/// [`check_file`], parsing with `options`.
pub fn check_file_with(path: &Path, options: ParseOptions) -> Checked {
    check(load_parsed_with(
        path,
        &mut |p: &Path| read_source(p),
        &mut |id, text| crate::syntax::parse_with(id, text, options),
    ))
}

/// Checks `text` as if it were the file at `path`; includes are read from
/// disk relative to it. For editors and fuzzers.
pub fn check_text(path: &Path, text: &str) -> Checked {
    let mut read = |p: &Path| {
        if p == path {
            Ok(text.to_string())
        } else {
            load::read_source(p)
        }
    };
    check(load_with(path, &mut read))
}

/// Checks loaded files.
pub fn check(loaded: Loaded) -> Checked {
    let Loaded {
        sources,
        items,
        mut diagnostics,
        root,
        unparsed,
    } = loaded;
    let pipeline = resolve::resolve(&sources, root, items, &unparsed, &mut diagnostics);
    crate::diagnostic::sort(&mut diagnostics);
    diagnostics.dedup();
    let failed = diagnostics.iter().any(Diag::is_error);
    Checked {
        pipeline: if failed { None } else { Some(pipeline) },
        diagnostics,
        sources,
    }
}
