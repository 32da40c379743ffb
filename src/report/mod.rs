//! Rendering for people and machines: diagnostics, plans, graphs.

pub mod diagnostics;
pub mod graph;
pub mod junit;
pub mod live;
pub mod plan;
pub mod run;
pub mod style;
