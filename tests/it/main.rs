//! The integration tests: one binary, so it links once.

mod cli;
mod doc_contracts;
mod docker;
mod docs;
mod examples;
mod fixtures;
mod lsp;
mod nvim;
mod release;
mod robustness;
mod run;
mod support;
