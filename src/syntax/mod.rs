//! Text → [`Ast`]. The only module that uses pest; the grammar is
//! `grammar/pipeline.pest`.

pub mod ast;
mod cache;
mod parser;
pub mod strings;

pub use ast::*;
pub(crate) use cache::{ParseCache, each_span, parse_cached};
pub use parser::{ParseOptions, parse, parse_with};
pub(crate) use parser::{SyntaxError, parse_from};

#[cfg(test)]
mod tests;
