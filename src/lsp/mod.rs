//! `slipway lsp`: a language server for `.pipeline` files, over standard
//! input and output.
//!
//! - [`transport`] reads messages on a thread of its own and writes replies;
//! - [`server`] is the loop that handles them, one at a time, in order;
//! - [`workspace`] holds the open documents and, for each pipeline they
//!   belong to, an [`analysis::Analysis`]: the files loaded (open buffers
//!   over the disk), checked exactly as `slipway check` does, and an
//!   [`index::Index`] of the names declared and referenced in them;
//! - an analysis keeps its [`checker::Checker`]: the top-level items and
//!   what checking each stage found, so that an edit ([`edit::Region`])
//!   parses, checks and plans again only the stages it touched;
//! - one file per feature turns an analysis into answers: [`diagnostics`],
//!   [`navigation`] (definition, references, rename), [`completion`],
//!   [`hover`], [`symbols`] and [`formatting`]; [`position`] converts
//!   between byte offsets and the protocol's UTF-16 positions.
//!
//! Edits only mark documents as changed. Pipelines are checked again when
//! no message is waiting, or before a request that needs them, so a burst of
//! keystrokes costs one check, not one per keystroke.

mod analysis;
mod checker;
mod completion;
mod diagnostics;
mod edit;
mod formatting;
mod hover;
mod index;
mod navigation;
mod position;
mod server;
mod symbols;
mod transport;
mod workspace;

pub(crate) use server::serve;
