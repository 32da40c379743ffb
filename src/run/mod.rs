//! Plan → [`RunSummary`]: the scheduler runs the plan's stages on a backend
//! and reports a stream of [`Event`]s. Only this module (and the backends
//! below it) is async.

pub mod artifacts;
pub mod backend;
pub mod docker;
pub mod events;
mod gate;
pub mod kubernetes;
pub mod local;
pub mod mask;
pub mod record;
pub mod releasing;
pub mod scheduler;
mod state;
pub(crate) mod tarball;

pub use events::{Event, RunStatus, StageStatus};
pub use scheduler::{Question, RunError, RunOptions, RunSummary, StageResult, run};
