//! `slipway lsp`

use clap::Args;

use super::Global;
use crate::error::Error;

#[derive(Args, Debug)]
pub(crate) struct LspArgs {
    /// Talk over standard input and output: the default and only transport
    /// (accepted because editor clients pass it).
    #[arg(long)]
    stdio: bool,
}

/// Serves until the client says exit; exit 1 when it did so before
/// asking the server to shut down, as the protocol says.
pub(crate) fn run(_args: &LspArgs, global: &Global) -> Result<(), Error> {
    match crate::lsp::serve(global.parse) {
        0 => Ok(()),
        _ => Err(Error::Failed),
    }
}
