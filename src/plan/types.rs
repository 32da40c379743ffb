//! The plan's types. Their JSON form is a public contract, documented in
//! `docs/plan.md`: fields may be added, never renamed or removed, without
//! raising [`PLAN_VERSION`].

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::model::Rollback;

pub const PLAN_VERSION: u32 = 1;

/// A string shared between stages: every stage carries the pipeline's env,
/// and sharing it keeps a 10,000-stage plan small. Serialises as a string.
pub type Shared = std::sync::Arc<str>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub pipeline: String,
    pub environment: Option<String>,
    pub git: GitContext,
    /// Every selected stage, matrix cells expanded, in declaration order
    /// (includes where they are included), `finally` stages last.
    pub stages: Vec<PlannedStage>,
    /// Stages that can run together, in order; skipped and `finally` stages
    /// are in none.
    pub waves: Vec<Vec<String>>,
    /// `finally` stages, run after everything else.
    pub finally: Vec<String>,
}

impl Plan {
    pub fn stage(&self, name: &str) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// What the repository says about the change being built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitContext {
    pub sha: Option<String>,
    pub short_sha: Option<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// Where the code comes from (the `origin` remote's URL), for image labels.
    #[serde(default)]
    pub source: Option<String>,
    /// When the commit was made (RFC 3339): built images' `created`, so that
    /// building the same commit again gives the same image.
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStage {
    /// Unique: the stage name, or `stage[KEY=value,...]` for a matrix cell.
    pub name: String,
    /// The declared stage this comes from.
    pub stage: String,
    /// This cell's matrix values, in key declaration order.
    pub matrix: IndexMap<String, String>,
    /// Names of the planned stages this one waits for.
    pub after: Vec<Shared>,
    /// `run`, `build`, `release` or `manual`.
    pub kind: String,
    pub template: Option<String>,
    /// The `when` condition as written.
    pub when: Option<String>,
    pub image: Option<String>,
    /// The script, not interpolated: the shell expands `${NAME}`.
    pub run: Option<String>,
    /// Exported to the stage. Secret values are shown as `***`.
    pub env: IndexMap<Shared, Shared>,
    /// Secrets exported under their own names, from the environment or
    /// `--secrets-file` at run time.
    pub secrets: Vec<Shared>,
    /// Env values built from secrets, with `${secret.NAME}` left for `run`
    /// to fill in; `env` shows them as `***`.
    pub secret_env: IndexMap<Shared, Shared>,
    pub services: Vec<PlannedService>,
    pub artifacts: Vec<String>,
    pub caches: Vec<String>,
    pub retry: u32,
    pub timeout_secs: Option<u64>,
    pub allow_failure: bool,
    pub finally: bool,
    pub build: Option<Box<PlannedBuild>>,
    pub release: Option<Box<PlannedRelease>>,
    /// The question a `manual` stage asks.
    pub manual: Option<String>,
    pub skipped: bool,
    /// Why the stage is skipped.
    pub reason: Option<String>,
    /// 1-based wave; `None` when skipped or `finally`.
    pub wave: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedService {
    pub name: String,
    pub image: String,
    pub env: IndexMap<Shared, Shared>,
    pub secret_env: IndexMap<Shared, Shared>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedBuild {
    pub context: String,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub tags: Vec<String>,
    pub labels: IndexMap<String, String>,
    pub args: IndexMap<String, String>,
    pub push: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedRelease {
    pub name: String,
    pub namespace: Option<String>,
    pub manifests: Vec<String>,
    pub images: IndexMap<String, String>,
    pub wait_secs: u64,
    pub rollback: Rollback,
    pub prune: bool,
    pub history: u32,
    /// The objects it would apply (`Kind/namespace/name`), read from the
    /// manifests by `slipway plan`; empty when not read.
    #[serde(default)]
    pub objects: Vec<String>,
    /// Why the manifests could not be read, when they could not.
    #[serde(default)]
    pub objects_error: Option<String>,
}
