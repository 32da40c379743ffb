//! The integration tests: one binary, so it links once.

mod cli;
mod docs;
mod examples;
mod fixtures;
mod support;
