//! The integration tests: one binary, so it links once.

mod cli;
mod conformance;
mod doc_contracts;
mod docker;
mod docs;
mod examples;
mod fixtures;
mod flagship;
mod kubernetes;
mod lsp;
mod nvim;
mod release;
mod release_kinds;
mod release_large;
mod release_trace;
mod robustness;
mod run;
mod stage_cache;
mod support;
