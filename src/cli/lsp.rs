//! `slipway lsp`

use clap::Args;

use super::Global;

#[derive(Args, Debug)]
pub(crate) struct LspArgs {
    /// Talk over standard input and output: the default and only transport
    /// (accepted because editor clients pass it).
    #[arg(long)]
    stdio: bool,
}

pub(crate) fn run(_args: &LspArgs, global: &Global) -> u8 {
    crate::lsp::serve(global.parse)
}
