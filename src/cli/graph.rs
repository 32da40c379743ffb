//! `slipway graph [FILE] [STAGE...] [selection flags] --format dot|mermaid|text`

use clap::Args;

use super::{Global, Selection};
use crate::error::Error;
use crate::report::graph::GraphFormat;

#[derive(Args, Debug)]
pub(crate) struct GraphArgs {
    #[command(flatten)]
    selection: Selection,

    /// Graphviz `dot`, a Mermaid flowchart, or an indented text tree.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    format: GraphFormat,
}

pub(crate) fn run(args: &GraphArgs, global: &Global) -> Result<(), Error> {
    let plan = super::make_plan(&args.selection, global)?;
    super::write_stdout(&crate::report::graph::render(&plan, args.format))
}
