//! Pipeline → [`Plan`]: the command line's choices applied. Matrices are
//! expanded into cells, `when` conditions evaluated, `${...}` interpolated
//! (except in `run` scripts, which the shell expands), target stages selected
//! with their dependencies, and the rest ordered into waves of stages that can
//! run together. A `Plan` is exactly what `slipway run` executes; its JSON
//! form is a documented contract (`docs/plan.md`).

mod eval;
pub mod resources;
mod scope;
mod types;
mod validate;

use std::collections::HashMap;

use indexmap::IndexMap;

pub use scope::{fill_secrets, secret_names};
pub use types::*;
pub(crate) use validate::{Environments, Globals, StageFindings, Validation, cell_order};
pub use validate::{validate, validate_checked};

pub use crate::image::sanitize_tag;

use crate::diagnostic::{Diag, did_you_mean};
use crate::image::ImageRef;
use crate::model::{Action, Pipeline, Stage};
use scope::Scope;

/// What the command line decides.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stages to run, with their dependencies; empty means all.
    pub targets: Vec<String>,
    /// `--env NAME`.
    pub environment: Option<String>,
    pub git: GitContext,
    /// Paths changed by the change being built; `None` when unknown, and
    /// then every `changed(...)` is true.
    pub changed: Option<Vec<String>>,
    /// `--set NAME=VALUE`: overrides env values of that name everywhere.
    pub set: IndexMap<String, String>,
}

/// Why no plan could be made.
#[derive(Debug)]
pub enum PlanError {
    /// A choice on the command line does not fit the pipeline.
    Usage {
        message: String,
        help: Option<String>,
    },
    /// Problems in the source found while planning (env cycles, secrets
    /// reaching a place they would leak from).
    Diagnostics(Vec<Diag>),
}

/// The secret placeholder shown wherever a secret's value would be.
pub const MASK: &str = "***";

pub fn plan(pipeline: &Pipeline, opts: &Options) -> Result<Plan, PlanError> {
    let environment = match &opts.environment {
        None => None,
        Some(name) => match pipeline.environments.get(name) {
            Some(e) => Some(e),
            None => {
                return Err(PlanError::Usage {
                    message: format!("unknown environment `{name}`"),
                    help: Some(
                        did_you_mean(name, pipeline.environments.keys().map(String::as_str))
                            .unwrap_or_else(|| {
                                if pipeline.environments.is_empty() {
                                    "this pipeline declares no `environment` blocks".into()
                                } else {
                                    format!(
                                        "environments are {}",
                                        pipeline
                                            .environments
                                            .keys()
                                            .map(|k| format!("`{k}`"))
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    )
                                }
                            }),
                    ),
                });
            }
        },
    };
    let mut diags = Vec::new();
    let ctx = scope::Context {
        environment: opts.environment.clone().unwrap_or_default(),
        git: opts.git.clone(),
    };
    let global = Scope::global(pipeline, environment, &opts.set, &ctx, &mut diags);

    // Expand matrices into cells, in declaration order.
    let mut cells: Vec<Cell<'_>> = Vec::new();
    let mut cells_of: HashMap<&str, Vec<usize>> = HashMap::new();
    for stage in pipeline.stages.values().chain(pipeline.finally.values()) {
        for values in matrix_cells(stage) {
            cells_of
                .entry(stage.name.as_str())
                .or_default()
                .push(cells.len());
            let name = Shared::from(cell_name(&stage.name, &values));
            cells.push(Cell {
                stage,
                values,
                name,
            });
        }
    }

    let deps = cell_deps(cells.iter().map(|c| c.stage.after.as_slice()), &cells_of);
    let selected = select(&cells, &cells_of, &deps, &opts.targets, pipeline)?;

    let order = crate::model::topo_order(&deps).unwrap_or_else(|| (0..cells.len()).collect());
    let mut skipped: Vec<Option<String>> = vec![None; cells.len()];
    let mut wave: Vec<Option<usize>> = vec![None; cells.len()];
    let mut stages: Vec<Option<PlannedStage>> = (0..cells.len()).map(|_| None).collect();
    for &i in &order {
        if !selected[i] {
            continue;
        }
        let cell = &cells[i];
        let scope = global.stage_scope(cell.stage, &cell.values, &ctx);
        let mut planned = plan_cell(pipeline, cell, &scope, &ctx, &mut diags);
        planned.after = deps[i]
            .iter()
            .filter(|&&d| selected[d])
            .map(|&d| cells[d].name.clone())
            .collect();

        let reason = if let Some(&d) = deps[i]
            .iter()
            .find(|&&d| selected[d] && skipped[d].is_some())
        {
            Some(format!("needs `{}`, which is skipped", cells[d].name))
        } else if let Some(when) = &cell.stage.when {
            let env = eval::Env {
                git: &opts.git,
                environment: &ctx.environment,
                changed: opts.changed.as_deref(),
                scope: &scope,
            };
            let (result, detail) = eval::eval(&when.expr, &env);
            (!result).then(|| {
                if detail.is_empty() {
                    format!("condition `{}` is false", when.text)
                } else {
                    format!("condition `{}` is false ({})", when.text, detail.join(", "))
                }
            })
        } else {
            None
        };
        if !cell.stage.finally && reason.is_none() {
            wave[i] = Some(
                deps[i]
                    .iter()
                    .filter(|&&d| selected[d])
                    .filter_map(|&d| wave[d])
                    .max()
                    .map_or(0, |w| w + 1),
            );
        }
        planned.skipped = reason.is_some();
        planned.reason.clone_from(&reason);
        planned.wave = wave[i].map(|w| w + 1);
        skipped[i] = reason;
        stages[i] = Some(planned);
    }
    if !diags.is_empty() {
        return Err(PlanError::Diagnostics(diags));
    }

    let mut waves: Vec<Vec<String>> = Vec::new();
    for (i, w) in wave.iter().enumerate() {
        if let Some(w) = *w {
            if waves.len() <= w {
                waves.resize(w + 1, Vec::new());
            }
            waves[w].push(cells[i].name.to_string());
        }
    }
    let finally = cells
        .iter()
        .enumerate()
        .filter(|(i, c)| c.stage.finally && selected[*i] && skipped[*i].is_none())
        .map(|(_, c)| c.name.to_string())
        .collect();
    Ok(Plan {
        version: PLAN_VERSION,
        pipeline: pipeline.name.clone(),
        environment: opts.environment.clone(),
        git: opts.git.clone(),
        stages: stages.into_iter().flatten().collect(),
        waves,
        finally,
        backend: None,
    })
}

/// One matrix cell of a stage (a stage without a matrix has one cell).
struct Cell<'p> {
    stage: &'p Stage,
    values: IndexMap<String, String>,
    /// `test[NODE=18,OS=linux]`, keys in declaration order.
    name: Shared,
}

pub fn cell_name(stage: &str, values: &IndexMap<String, String>) -> String {
    if values.is_empty() {
        return stage.to_string();
    }
    let parts: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{stage}[{}]", parts.join(","))
}

/// What each cell waits for: every cell of every stage its stage runs
/// after. `afters` are the cells' stages' `after` lists.
fn cell_deps<'d>(
    afters: impl Iterator<Item = &'d [crate::model::Dep]>,
    cells_of: &HashMap<&str, Vec<usize>>,
) -> Vec<Vec<usize>> {
    afters
        .map(|after| {
            after
                .iter()
                .flat_map(|d| cells_of.get(d.name.as_str()).into_iter().flatten().copied())
                .collect()
        })
        .collect()
}

/// The cartesian product of a stage's matrix, first key outermost.
fn matrix_cells(stage: &Stage) -> Vec<IndexMap<String, String>> {
    let mut out = vec![IndexMap::new()];
    for (key, values) in &stage.matrix {
        out = out
            .into_iter()
            .flat_map(|cell| {
                values.iter().map(move |v| {
                    let mut c = cell.clone();
                    c.insert(key.clone(), v.value.clone());
                    c
                })
            })
            .collect();
    }
    out
}

/// Which cells the targets keep: the targets and everything they need.
/// `finally` stages are always kept.
fn select(
    cells: &[Cell<'_>],
    cells_of: &HashMap<&str, Vec<usize>>,
    deps: &[Vec<usize>],
    targets: &[String],
    pipeline: &Pipeline,
) -> Result<Vec<bool>, PlanError> {
    if targets.is_empty() {
        return Ok(vec![true; cells.len()]);
    }
    let mut keep = vec![false; cells.len()];
    let mut stack = Vec::new();
    for t in targets {
        let found: Vec<usize> = match cells_of.get(t.as_str()) {
            Some(ix) => ix.clone(),
            None => cells
                .iter()
                .enumerate()
                .filter(|(_, c)| *c.name == **t)
                .map(|(i, _)| i)
                .collect(),
        };
        if found.is_empty() {
            let names = pipeline
                .stages
                .keys()
                .chain(pipeline.finally.keys())
                .map(String::as_str);
            return Err(PlanError::Usage {
                message: format!("unknown stage `{t}`"),
                help: Some(did_you_mean(t, names).unwrap_or_else(|| {
                    "name stages as they are declared, or a matrix cell as `test[NODE=18]`".into()
                })),
            });
        }
        stack.extend(found);
    }
    while let Some(i) = stack.pop() {
        if !keep[i] {
            keep[i] = true;
            stack.extend(deps[i].iter().copied());
        }
    }
    for (i, c) in cells.iter().enumerate() {
        if c.stage.finally {
            keep[i] = true;
        }
    }
    Ok(keep)
}

fn plan_cell(
    pipeline: &Pipeline,
    cell: &Cell<'_>,
    scope: &Scope<'_>,
    ctx: &scope::Context,
    diags: &mut Vec<Diag>,
) -> PlannedStage {
    let stage = cell.stage;
    let (mut env, secret_env) = scope.stage_env(diags);
    // Every declared secret is exported under its own name.
    for name in pipeline.secrets.keys() {
        env.insert(Shared::from(name.as_str()), Shared::from(MASK));
    }
    let services = stage
        .services
        .iter()
        .map(|s| {
            let (env, secret_env) = scope.env_map(&s.env, diags);
            PlannedService {
                name: s.name.clone(),
                image: scope.interpolate(&s.image, diags),
                env,
                secret_env,
                ready: s.ready.as_ref().map(|r| scope.interpolate(r, diags)),
            }
        })
        .collect();
    let mut text = |t: &crate::model::Text| scope.interpolate(t, diags);
    let mut planned = PlannedStage {
        name: cell.name.to_string(),
        stage: stage.name.clone(),
        matrix: cell.values.clone(),
        after: Vec::new(),
        action: PlannedAction::Manual {
            question: String::new(),
        },
        template: stage.template.clone(),
        when: stage.when.as_ref().map(|w| w.text.clone()),
        image: stage.image.as_ref().map(&mut text),
        env,
        secrets: pipeline
            .secrets
            .keys()
            .map(|s| Shared::from(s.as_str()))
            .collect(),
        secret_env,
        services,
        artifacts: stage.artifacts.iter().map(&mut text).collect(),
        inputs: stage.inputs.iter().map(&mut text).collect(),
        inputs_found: None,
        caches: stage.caches.iter().map(&mut text).collect(),
        retry: stage.retry,
        timeout_secs: stage.timeout.map(|d| d.as_secs()),
        allow_failure: stage.allow_failure,
        finally: stage.finally,
        skipped: false,
        reason: None,
        wave: None,
        resources: None,
    };
    planned.action = match &stage.action {
        Action::Run { script, .. } => PlannedAction::Run {
            script: script.clone(),
        },
        Action::Build(b) => {
            let mut tags: Vec<String> = b
                .tags
                .iter()
                .map(|t| sanitize_image_ref(&text(t)))
                .collect();
            if tags.is_empty() {
                tags.push(format!(
                    "{}:{}",
                    sanitize_repository(&pipeline.name),
                    default_tag(&ctx.git)
                ));
            }
            PlannedAction::Build(Box::new(PlannedBuild {
                context: text(&b.context),
                dockerfile: b.dockerfile.as_ref().map(&mut text),
                target: b.target.as_ref().map(&mut text),
                tags,
                labels: b.labels.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
                args: b.args.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
                push: b.push,
            }))
        }
        Action::Release(r) => PlannedAction::Release(Box::new(PlannedRelease {
            name: r.name.clone(),
            namespace: r.namespace.as_ref().map(&mut text),
            manifests: r.manifests.iter().map(&mut text).collect(),
            images: r
                .images
                .iter()
                .map(|(k, v)| (k.clone(), sanitize_image_ref(&text(v))))
                .collect(),
            wait_secs: r.wait.as_secs(),
            rollback: r.rollback,
            prune: r.prune,
            history: r.history,
            objects: Vec::new(),
            objects_error: None,
        })),
        Action::Manual { prompt } => PlannedAction::Manual {
            question: text(prompt),
        },
    };
    if let Some(r) = &stage.resources {
        let mut read = |t: &crate::model::Text, key| {
            let value = scope.interpolate(t, diags);
            quantity(value, t, key, diags)
        };
        planned.resources = Some(PlannedResources {
            cpu: r.cpu.as_ref().map(|t| read(t, "cpu")),
            memory: r.memory.as_ref().map(|t| read(t, "memory")),
        });
    }
    planned
}

/// An interpolated quantity, checked once it is known (literal ones were
/// checked with the rest of the stage).
fn quantity(value: String, text: &crate::model::Text, key: &str, diags: &mut Vec<Diag>) -> String {
    if text.as_literal().is_none() {
        let read = match key {
            "cpu" => resources::cpu_nanos(&value).map(drop),
            _ => resources::memory_bytes(&value).map(drop),
        };
        if let Err(why) = read {
            diags.push(
                Diag::error(crate::diagnostic::Code::BadValue, text.span, why)
                    .label(format!("`{}` is `{value}` here", text.display())),
            );
        }
    }
    value
}

/// `{branch}-{short_sha}`, made a valid image tag.
pub fn default_tag(git: &GitContext) -> String {
    let branch = git.branch.as_deref().unwrap_or("detached");
    let sha = git.short_sha.as_deref().unwrap_or("unknown");
    sanitize_tag(&format!("{branch}-{sha}"))
}

/// An image reference whose tag part is made valid (`chat:feature/x` →
/// `chat:feature-x`), so `${git.branch}` can be used in tags. References
/// with a digest are left alone.
pub fn sanitize_image_ref(raw: &str) -> String {
    let image = ImageRef::split(raw);
    match image.tag() {
        Some(tag) if image.digest().is_none() => {
            let tag = sanitize_tag(tag);
            image.with_tag(&tag).to_string()
        }
        _ => raw.to_string(),
    }
}

fn sanitize_repository(raw: &str) -> String {
    let r: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let r = r.trim_matches(['.', '-', '_', '/']).to_string();
    if r.is_empty() { "pipeline".into() } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_made_valid() {
        assert_eq!(sanitize_tag("feature/x-1a2b3c4"), "feature-x-1a2b3c4");
        assert_eq!(sanitize_tag("-.x"), "x");
        assert_eq!(sanitize_tag("///"), "latest");
        assert_eq!(sanitize_tag(&"a".repeat(200)).len(), 128);
        assert_eq!(
            sanitize_image_ref("localhost:5000/chat:feature/x-1a2b"),
            "localhost:5000/chat:feature-x-1a2b"
        );
        assert_eq!(sanitize_image_ref("chat:main"), "chat:main");
        assert_eq!(sanitize_image_ref("reg.io/team/chat"), "reg.io/team/chat");
        assert_eq!(sanitize_image_ref("chat@sha256:abc"), "chat@sha256:abc");
    }

    /// What the plan writes, a build reads the same way (`image` has the
    /// one set of rules): the tag follows the first `:` after the registry.
    #[test]
    fn a_tag_with_a_branch_slash_is_mended_with_or_without_a_registry() {
        assert_eq!(sanitize_image_ref("chat:feature/x"), "chat:feature-x");
        assert_eq!(
            sanitize_image_ref("team/app:feature/x-1"),
            "team/app:feature-x-1"
        );
        assert_eq!(
            sanitize_image_ref("myhost:5000/chat:feature/x"),
            "myhost:5000/chat:feature-x"
        );
        assert_eq!(sanitize_image_ref("chat:a:b"), "chat:a-b");
        assert_eq!(sanitize_image_ref("localhost:5000"), "localhost:5000");
        assert_eq!(sanitize_image_ref("chat:"), "chat:latest");
    }
}
