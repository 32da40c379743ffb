//! Text → [`Ast`]. The only module that uses pest; the grammar is
//! `grammar/pipeline.pest`.

pub mod ast;
mod cache;
mod parser;
mod scan;
pub mod strings;

pub use ast::*;
pub(crate) use cache::{ParseCache, each_span, parse_cached};
pub use parser::{ParseOptions, parse, parse_with};
pub(crate) use parser::{SyntaxError, parse_from};
pub(crate) use scan::{Segment, segments, top_level_line_after};
