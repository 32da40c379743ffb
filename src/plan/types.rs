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
    /// The backend a run would use, and what it would refuse; set by
    /// `slipway plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<PlanBackend>,
}

/// Which backend a run of the plan would use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanBackend {
    /// `docker`, `local` or `kubernetes`.
    pub name: String,
    /// The stages it cannot run: a run would stop before it starts.
    pub refused: Vec<Refused>,
}

/// A stage a backend cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub stage: String,
    pub reason: String,
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

/// One stage (or matrix cell) as it will run.
///
/// Its JSON form keeps the fields of plan version 1 in their order: the
/// action is written as `kind` plus one of `run`, `build`, `release` or
/// `manual` (the others `null`), see [`Wire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    /// Unique: the stage name, or `stage[KEY=value,...]` for a matrix cell.
    pub name: String,
    /// The declared stage this comes from.
    pub stage: String,
    /// This cell's matrix values, in key declaration order.
    pub matrix: IndexMap<String, String>,
    /// Names of the planned stages this one waits for.
    pub after: Vec<Shared>,
    /// What the stage does.
    pub action: PlannedAction,
    pub template: Option<String>,
    /// The `when` condition as written.
    pub when: Option<String>,
    pub image: Option<String>,
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
    /// `inputs`: globs of the files its result depends on, relative to
    /// the project.
    pub inputs: Vec<String>,
    /// What the globs match now, filled in by `slipway plan`.
    pub inputs_found: Option<InputsFound>,
    pub retry: u32,
    pub timeout_secs: Option<u64>,
    pub allow_failure: bool,
    pub finally: bool,
    pub skipped: bool,
    /// Why the stage is skipped.
    pub reason: Option<String>,
    /// 1-based wave; `None` when skipped or `finally`.
    pub wave: Option<usize>,
    /// `resources { ... }`, when the stage has it.
    pub resources: Option<PlannedResources>,
}

/// The files a stage's `inputs` match: how many, and one BLAKE3 digest of
/// their paths and contents (or why they could not be read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputsFound {
    Files { count: usize, digest: String },
    Error { error: String },
}

/// What a stage's container may use, as Kubernetes quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedResources {
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

/// What a planned stage does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedAction {
    /// A script, not interpolated: the shell expands `${NAME}`.
    Run {
        script: String,
    },
    Build(Box<PlannedBuild>),
    Release(Box<PlannedRelease>),
    /// The question a `manual` stage asks.
    Manual {
        question: String,
    },
}

impl PlannedAction {
    /// `run`, `build`, `release` or `manual`: the plan's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            PlannedAction::Run { .. } => "run",
            PlannedAction::Build(_) => "build",
            PlannedAction::Release(_) => "release",
            PlannedAction::Manual { .. } => "manual",
        }
    }
}

impl PlannedStage {
    /// The script of a `run` stage.
    pub fn script(&self) -> Option<&str> {
        match &self.action {
            PlannedAction::Run { script } => Some(script),
            _ => None,
        }
    }

    pub fn build(&self) -> Option<&PlannedBuild> {
        match &self.action {
            PlannedAction::Build(b) => Some(b),
            _ => None,
        }
    }

    pub fn release(&self) -> Option<&PlannedRelease> {
        match &self.action {
            PlannedAction::Release(r) => Some(r),
            _ => None,
        }
    }

    pub fn release_mut(&mut self) -> Option<&mut PlannedRelease> {
        match &mut self.action {
            PlannedAction::Release(r) => Some(r),
            _ => None,
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(self.action, PlannedAction::Manual { .. })
    }
}

/// A planned stage as plan version 1 writes it: the action spread over
/// `kind` and four optional fields, in this order.
#[derive(Serialize)]
struct WireOut<'a> {
    name: &'a str,
    stage: &'a str,
    matrix: &'a IndexMap<String, String>,
    after: &'a [Shared],
    kind: &'static str,
    template: &'a Option<String>,
    when: &'a Option<String>,
    image: &'a Option<String>,
    run: Option<&'a str>,
    env: &'a IndexMap<Shared, Shared>,
    secrets: &'a [Shared],
    secret_env: &'a IndexMap<Shared, Shared>,
    services: &'a [PlannedService],
    artifacts: &'a [String],
    caches: &'a [String],
    retry: u32,
    timeout_secs: Option<u64>,
    allow_failure: bool,
    finally: bool,
    build: Option<&'a PlannedBuild>,
    release: Option<&'a PlannedRelease>,
    manual: Option<&'a str>,
    skipped: bool,
    reason: &'a Option<String>,
    wave: Option<usize>,
    /// Added after version 1's fields; left out when the stage has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: &'a Option<PlannedResources>,
    /// Added after version 1's fields; left out when the stage has none.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    inputs: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs_found: &'a Option<InputsFound>,
}

impl Serialize for PlannedStage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (run, build, release, manual) = match &self.action {
            PlannedAction::Run { script } => (Some(script.as_str()), None, None, None),
            PlannedAction::Build(b) => (None, Some(&**b), None, None),
            PlannedAction::Release(r) => (None, None, Some(&**r), None),
            PlannedAction::Manual { question } => (None, None, None, Some(question.as_str())),
        };
        WireOut {
            name: &self.name,
            stage: &self.stage,
            matrix: &self.matrix,
            after: &self.after,
            kind: self.action.kind(),
            template: &self.template,
            when: &self.when,
            image: &self.image,
            run,
            env: &self.env,
            secrets: &self.secrets,
            secret_env: &self.secret_env,
            services: &self.services,
            artifacts: &self.artifacts,
            caches: &self.caches,
            retry: self.retry,
            timeout_secs: self.timeout_secs,
            allow_failure: self.allow_failure,
            finally: self.finally,
            build,
            release,
            manual,
            skipped: self.skipped,
            reason: &self.reason,
            wave: self.wave,
            resources: &self.resources,
            inputs: &self.inputs,
            inputs_found: &self.inputs_found,
        }
        .serialize(serializer)
    }
}

/// A planned stage as read back from plan JSON.
#[derive(Deserialize)]
struct WireIn {
    name: String,
    stage: String,
    matrix: IndexMap<String, String>,
    after: Vec<Shared>,
    kind: String,
    template: Option<String>,
    when: Option<String>,
    image: Option<String>,
    run: Option<String>,
    env: IndexMap<Shared, Shared>,
    secrets: Vec<Shared>,
    secret_env: IndexMap<Shared, Shared>,
    services: Vec<PlannedService>,
    artifacts: Vec<String>,
    caches: Vec<String>,
    retry: u32,
    timeout_secs: Option<u64>,
    allow_failure: bool,
    finally: bool,
    build: Option<Box<PlannedBuild>>,
    release: Option<Box<PlannedRelease>>,
    manual: Option<String>,
    skipped: bool,
    reason: Option<String>,
    wave: Option<usize>,
    #[serde(default)]
    resources: Option<PlannedResources>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    inputs_found: Option<InputsFound>,
}

impl<'de> Deserialize<'de> for PlannedStage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let w = WireIn::deserialize(deserializer)?;
        let missing = |field: &str| {
            D::Error::custom(format!(
                "stage `{}` is a `{}` stage without `{field}`",
                w.name, w.kind
            ))
        };
        let action = match w.kind.as_str() {
            "run" => PlannedAction::Run {
                script: w.run.clone().ok_or_else(|| missing("run"))?,
            },
            "build" => PlannedAction::Build(w.build.clone().ok_or_else(|| missing("build"))?),
            "release" => {
                PlannedAction::Release(w.release.clone().ok_or_else(|| missing("release"))?)
            }
            "manual" => PlannedAction::Manual {
                question: w.manual.clone().ok_or_else(|| missing("manual"))?,
            },
            other => {
                return Err(D::Error::unknown_variant(
                    other,
                    &["run", "build", "release", "manual"],
                ));
            }
        };
        Ok(PlannedStage {
            name: w.name,
            stage: w.stage,
            matrix: w.matrix,
            after: w.after,
            action,
            template: w.template,
            when: w.when,
            image: w.image,
            env: w.env,
            secrets: w.secrets,
            secret_env: w.secret_env,
            services: w.services,
            artifacts: w.artifacts,
            caches: w.caches,
            retry: w.retry,
            timeout_secs: w.timeout_secs,
            allow_failure: w.allow_failure,
            finally: w.finally,
            skipped: w.skipped,
            reason: w.reason,
            wave: w.wave,
            resources: w.resources,
            inputs: w.inputs,
            inputs_found: w.inputs_found,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedService {
    pub name: String,
    pub image: String,
    pub env: IndexMap<Shared, Shared>,
    pub secret_env: IndexMap<Shared, Shared>,
    /// The command that tells the service is ready (`ready "..."`), run in
    /// its container until it succeeds; `None`: its image's
    /// `HEALTHCHECK`, or running.
    #[serde(default)]
    pub ready: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(text: &str) -> Plan {
        let checked = crate::model::check_text(std::path::Path::new("t.pipeline"), text);
        let pipeline = checked
            .pipeline
            .unwrap_or_else(|| panic!("{:?}", checked.diagnostics));
        crate::plan::plan(&pipeline, &crate::plan::Options::default()).expect("plans")
    }

    /// The action is written as version 1 wrote it: `kind`, then `run`,
    /// `build`, `release` and `manual` in their places, all but one `null`;
    /// and it reads back to the same plan.
    #[test]
    fn the_typed_action_keeps_the_plan_json_of_version_1() {
        let plan = planned(
            "pipeline \"p\"\nstage test {\n  image \"x\"\n  run \"make test\"\n}\n\
             stage img {\n  build \".\" { tag \"reg/p:1\" }\n}\n\
             stage ok {\n  manual \"Ship?\"\n}\n\
             stage ship after ok {\n  release p { manifests \"k8s/*.yaml\" }\n}\n",
        );
        let json = serde_json::to_value(&plan).expect("json");
        let stages = json["stages"].as_array().expect("stages");
        let keys: Vec<&str> = stages[0]
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "stage",
                "matrix",
                "after",
                "kind",
                "template",
                "when",
                "image",
                "run",
                "env",
                "secrets",
                "secret_env",
                "services",
                "artifacts",
                "caches",
                "retry",
                "timeout_secs",
                "allow_failure",
                "finally",
                "build",
                "release",
                "manual",
                "skipped",
                "reason",
                "wave"
            ]
        );
        let shape: Vec<(&str, [bool; 4])> = stages
            .iter()
            .map(|s| {
                (
                    s["kind"].as_str().unwrap_or_default(),
                    ["run", "build", "release", "manual"].map(|k| !s[k].is_null()),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("run", [true, false, false, false]),
                ("build", [false, true, false, false]),
                ("manual", [false, false, false, true]),
                ("release", [false, false, true, false]),
            ]
        );
        assert_eq!(stages[0]["run"], "make test");
        assert_eq!(stages[2]["manual"], "Ship?");
        let back: Plan = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, plan);
    }

    #[test]
    fn a_stage_whose_kind_lacks_its_field_is_refused() {
        let plan = planned("pipeline \"p\"\nstage test {\n  image \"x\"\n  run \"true\"\n}\n");
        let mut json = serde_json::to_value(&plan).expect("json");
        json["stages"][0]["run"] = serde_json::Value::Null;
        let err = serde_json::from_value::<Plan>(json.clone()).expect_err("no script");
        assert!(err.to_string().contains("without `run`"), "{err}");
        json["stages"][0]["kind"] = "deploy".into();
        let err = serde_json::from_value::<Plan>(json).expect_err("unknown kind");
        assert!(err.to_string().contains("deploy"), "{err}");
    }
}
