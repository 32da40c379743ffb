//! Text → [`Ast`]. The only module that uses pest; the grammar is
//! `grammar/pipeline.pest`.

pub mod ast;
mod cache;
mod parser;
pub mod strings;

pub use ast::*;
pub(crate) use cache::{
    ParseCache, each_span, parse_cached, parse_pieces, piece_after, piece_before,
};
pub use parser::parse;

#[cfg(test)]
mod tests;
