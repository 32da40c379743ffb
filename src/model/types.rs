//! The checked pipeline. Every value here has passed `model::check`; names
//! resolve, the DAG has no cycle, durations parse.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

use super::cond::Cond;
use super::text::Text;
use crate::source::Span;

#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub name: String,
    /// Pipeline-level `env`, main file and includes merged in order.
    pub env: Env,
    /// `secret NAME` declarations.
    pub secrets: IndexMap<String, Span>,
    pub environments: IndexMap<String, Environment>,
    pub templates: IndexMap<String, Template>,
    /// DAG stages, in the order they are written (includes inline).
    pub stages: IndexMap<String, Stage>,
    /// `finally` stages, in the order they are written.
    pub finally: IndexMap<String, Stage>,
}

pub type Env = IndexMap<String, EnvValue>;

#[derive(Debug, Clone, Serialize)]
pub struct EnvValue {
    pub value: Text,
    /// The name's span.
    pub span: Span,
}

impl EnvValue {
    /// Whether the value carries a `${secret.NAME}`, so it must be masked.
    pub fn is_secret(&self) -> bool {
        self.value
            .refs()
            .any(|r| matches!(r.var, super::text::Var::Secret(_)))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    pub span: Span,
    pub env: Env,
}

#[derive(Debug, Clone, Serialize)]
pub struct Template {
    pub name: String,
    pub span: Span,
    pub body: Body,
}

/// A stage with its template applied.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: String,
    /// The name's span.
    pub span: Span,
    pub finally: bool,
    pub after: Vec<Dep>,
    pub template: Option<String>,
    pub when: Option<Box<Cond>>,
    pub image: Option<Text>,
    pub action: Action,
    /// Template env, then the stage's own.
    pub env: Env,
    /// Keys in declaration order, each with its values.
    pub matrix: IndexMap<String, Vec<MatrixValue>>,
    pub services: Vec<Service>,
    pub retry: u32,
    pub timeout: Option<Duration>,
    pub allow_failure: bool,
    pub artifacts: Vec<Text>,
    pub caches: Vec<Text>,
    /// `inputs`: globs of the files the stage's result depends on.
    pub inputs: Vec<Text>,
    pub resources: Option<Resources>,
}

/// `resources { cpu "2" memory "4Gi" }`: what a stage's container may use
/// (Docker: its limits; Kubernetes: the Pod's requests and limits).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    pub cpu: Option<Text>,
    pub memory: Option<Text>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dep {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatrixValue {
    pub value: String,
    pub span: Span,
}

/// What a stage does: exactly one of these.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `run` lines, joined into one `sh -e` script. Not interpolated.
    Run {
        script: String,
        span: Span,
    },
    // Boxed: a stage is kept per stage, and most stages only run a script.
    Build(Box<Build>),
    Release(Box<Release>),
    /// `manual "prompt"`.
    Manual {
        prompt: Text,
    },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Run { .. } => "run",
            Action::Build(_) => "build",
            Action::Release(_) => "release",
            Action::Manual { .. } => "manual",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub span: Span,
    pub image: Text,
    pub env: Env,
    /// `ready "command"`: run in the service's container until it
    /// succeeds, before the stage's script.
    pub ready: Option<Text>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Build {
    /// The build context directory (default `.`).
    pub context: Text,
    pub dockerfile: Option<Text>,
    pub target: Option<Text>,
    /// `tag` lines; none means the default `{branch}-{short_sha}`.
    pub tags: Vec<Text>,
    pub labels: IndexMap<String, Text>,
    pub args: IndexMap<String, Text>,
    pub push: bool,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rollback {
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub name: String,
    pub namespace: Option<Text>,
    /// Globs of YAML files, relative to the pipeline file's directory.
    pub manifests: Vec<Text>,
    /// Container name → image reference.
    pub images: IndexMap<String, Text>,
    pub wait: Duration,
    pub rollback: Rollback,
    pub prune: bool,
    pub history: u32,
    pub span: Span,
}

impl Release {
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
    pub const DEFAULT_HISTORY: u32 = 10;
}

/// The settings of a stage or template body, before the template is applied:
/// each is `None` when the body does not say.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Body {
    pub image: Option<Text>,
    pub run: Vec<(String, Span)>,
    pub build: Option<Box<Build>>,
    pub release: Option<Box<Release>>,
    pub manual: Option<Text>,
    pub env: Env,
    pub matrix: Option<IndexMap<String, Vec<MatrixValue>>>,
    pub services: Vec<Service>,
    pub retry: Option<u32>,
    pub timeout: Option<Duration>,
    pub allow_failure: Option<bool>,
    pub artifacts: Vec<Text>,
    pub caches: Vec<Text>,
    /// `inputs`: globs of the files the stage's result depends on.
    pub inputs: Vec<Text>,
    pub resources: Option<Resources>,
}
