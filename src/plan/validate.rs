//! What `slipway check` adds to the model's checks: the problems only
//! planning finds (env cycles, values that grow too large, secrets reaching
//! places they would leak from), for every environment the pipeline can run
//! in.
//!
//! Planning a stage's cells depends only on the stage and on the pipeline's
//! env, secrets and environments, so [`Validation::stage`] plans one stage
//! and [`Validation::collect`] puts the findings in the order [`validate`]
//! reports them: the language server keeps each stage's findings while
//! neither the stage nor those settings change.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;

use super::scope::{self, Scope};
use super::{Cell, GitContext, Shared, cell_deps, cell_name, matrix_cells, plan_cell};
use crate::diagnostic::Diag;
use crate::model::{Dep, Pipeline, Stage};

/// Everything `slipway check` reports, in the order it prints it: the
/// checker's diagnostics and, when they hold no error, what [`validate`]
/// finds (which then also drops the pipeline). The language server reports
/// the same, so that an editor and `check` never disagree.
pub fn validate_checked(checked: &mut crate::model::Checked) {
    if let Some(pipeline) = &checked.pipeline {
        let found = validate(pipeline);
        if !found.is_empty() {
            checked.diagnostics.extend(found);
            crate::diagnostic::sort(&mut checked.diagnostics);
            checked.pipeline = None;
        }
    }
}

/// Problems only planning finds, for every environment the pipeline can
/// run in: what `slipway check` adds to the model's checks.
///
/// Stages are planned once, with no environment. An environment changes
/// only the values it defines: those are resolved on their own, and the
/// stages planned again only when the environment brings secrets, the one
/// way its values can leak into a stage.
pub fn validate(pipeline: &Pipeline) -> Vec<Diag> {
    let environments = Environments::new(pipeline);
    let validation = Validation::new(pipeline, &environments);
    let stages: Vec<&Stage> = pipeline
        .stages
        .values()
        .chain(pipeline.finally.values())
        .collect();
    let found: Vec<StageFindings> = stages.iter().map(|s| validation.stage(s)).collect();
    let graph: Vec<(&str, &[Dep], usize)> = stages
        .iter()
        .zip(&found)
        .map(|(s, f)| (s.name.as_str(), s.after.as_slice(), f.cells))
        .collect();
    validation.collect(&cell_order(&graph), |stage| &found[stage])
}

/// The environments validation plans in: none, then each declared one.
pub(crate) struct Environments {
    contexts: Vec<(Option<String>, scope::Context)>,
    /// No `--set`.
    set: IndexMap<String, String>,
}

impl Environments {
    pub(crate) fn new(pipeline: &Pipeline) -> Self {
        let none = (None, context(String::new()));
        let named = pipeline
            .environments
            .keys()
            .map(|name| (Some(name.clone()), context(name.clone())));
        Environments {
            contexts: std::iter::once(none).chain(named).collect(),
            set: IndexMap::new(),
        }
    }
}

fn context(environment: String) -> scope::Context {
    scope::Context {
        environment,
        git: GitContext::default(),
    }
}

/// Each environment's global scope, resolved, with what resolving it found.
pub(crate) struct Validation<'a> {
    pipeline: &'a Pipeline,
    globals: Vec<Global<'a>>,
}

struct Global<'a> {
    ctx: &'a scope::Context,
    scope: Scope<'a>,
    found: Vec<Diag>,
    /// Whether stages are planned in this environment: with none, and in
    /// environments that bring secrets.
    stages: bool,
}

/// What planning one stage found: for each environment that plans stages,
/// for each of the stage's cells, the diagnostics.
#[derive(Debug, Clone, Default)]
pub(crate) struct StageFindings {
    pub(crate) cells: usize,
    pub(crate) found: Vec<Vec<Vec<Diag>>>,
    /// The pipeline's env names planning the stage looked up, sorted: it
    /// finds the same while they keep their values ([`Globals::changed`]).
    pub(crate) asked: Vec<String>,
}

/// What planning a stage can read of each environment's global scope:
/// whether the environment plans stages, and every value.
#[derive(Debug, PartialEq)]
pub(crate) struct Globals(Vec<GlobalValues>);

#[derive(Debug, PartialEq)]
struct GlobalValues {
    environment: String,
    stages: bool,
    /// Every name's value and whether it holds a secret; `None` when a
    /// name does not resolve (a cycle): looking it up reports afresh.
    values: Option<IndexMap<Shared, (Shared, bool)>>,
}

impl Globals {
    /// The names whose value differs between `self` and `now`; `None` when
    /// more than values changed (environments, or names that do not
    /// resolve), and every stage may plan differently.
    pub(crate) fn changed(&self, now: &Globals) -> Option<HashSet<String>> {
        if self.0.len() != now.0.len() {
            return None;
        }
        let mut changed = HashSet::new();
        for (old, new) in self.0.iter().zip(&now.0) {
            if old.environment != new.environment || old.stages != new.stages {
                return None;
            }
            let (Some(a), Some(b)) = (&old.values, &new.values) else {
                return None;
            };
            for (name, value) in a {
                if b.get(name) != Some(value) {
                    changed.insert(name.to_string());
                }
            }
            for name in b.keys() {
                if !a.contains_key(name) {
                    changed.insert(name.to_string());
                }
            }
        }
        Some(changed)
    }
}

impl<'a> Validation<'a> {
    /// `pipeline`'s stages are not read: stages are planned one by one.
    pub(crate) fn new(pipeline: &'a Pipeline, environments: &'a Environments) -> Self {
        let globals = environments
            .contexts
            .iter()
            .map(|(name, ctx)| {
                let environment = name.as_ref().and_then(|n| pipeline.environments.get(n));
                let stages = environment
                    .is_none_or(|e| e.env.values().any(crate::model::EnvValue::is_secret));
                let mut found = Vec::new();
                let scope =
                    Scope::global(pipeline, environment, &environments.set, ctx, &mut found);
                Global {
                    ctx,
                    scope,
                    found,
                    stages,
                }
            })
            .collect();
        Validation { pipeline, globals }
    }

    /// Every environment's global values.
    pub(crate) fn globals(&self) -> Globals {
        Globals(
            self.globals
                .iter()
                .map(|g| GlobalValues {
                    environment: g.ctx.environment.clone(),
                    stages: g.stages,
                    values: g.scope.complete().then(|| {
                        g.scope
                            .resolved()
                            .iter()
                            .map(|(k, r)| (k.clone(), (r.value.clone(), r.secret)))
                            .collect()
                    }),
                })
                .collect(),
        )
    }

    /// Plans each cell of `stage` in each environment that plans stages.
    pub(crate) fn stage(&self, stage: &Stage) -> StageFindings {
        let cells = matrix_cells(stage);
        let mut asked = Vec::new();
        let found = self
            .globals
            .iter()
            .filter(|g| g.stages)
            .map(|g| {
                cells
                    .iter()
                    .map(|values| {
                        let cell = Cell {
                            stage,
                            values: values.clone(),
                            name: Shared::from(cell_name(&stage.name, values)),
                        };
                        let scope = g.scope.stage_scope(stage, &cell.values, g.ctx);
                        let mut found = Vec::new();
                        plan_cell(self.pipeline, &cell, &scope, g.ctx, &mut found);
                        asked.extend(scope.asked());
                        found
                    })
                    .collect()
            })
            .collect();
        asked.sort_unstable();
        asked.dedup();
        StageFindings {
            cells: cells.len(),
            found,
            asked,
        }
    }

    /// Every finding once, in [`validate`]'s order: for each environment,
    /// its global scope's, then, when it plans stages, each cell's in
    /// `order` (from [`cell_order`]); `found(i)` is what
    /// [`Self::stage`] found for the `i`th stage.
    pub(crate) fn collect<'f>(
        &self,
        order: &[(usize, usize)],
        found: impl Fn(usize) -> &'f StageFindings,
    ) -> Vec<Diag> {
        let mut diags: Vec<Diag> = Vec::new();
        let mut add = |d: &Diag| {
            if !diags.contains(d) {
                diags.push(d.clone());
            }
        };
        let mut planned = 0;
        for g in &self.globals {
            g.found.iter().for_each(&mut add);
            if !g.stages {
                continue;
            }
            for &(stage, cell) in order {
                let cells = found(stage).found.get(planned);
                if let Some(list) = cells.and_then(|c| c.get(cell)) {
                    list.iter().for_each(&mut add);
                }
            }
            planned += 1;
        }
        diags
    }
}

/// The cells of `stages` (each its name, what it runs after and how many
/// cells it has) in the order planning visits them, as (stage, cell)
/// pairs: each after the cells of the stages it runs after.
pub(crate) fn cell_order(stages: &[(&str, &[Dep], usize)]) -> Vec<(usize, usize)> {
    let mut cells: Vec<(usize, usize)> = Vec::new();
    let mut cells_of: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, &(name, _, n)) in stages.iter().enumerate() {
        for c in 0..n {
            cells_of.entry(name).or_default().push(cells.len());
            cells.push((i, c));
        }
    }
    let deps = cell_deps(cells.iter().map(|&(i, _)| stages[i].1), &cells_of);
    crate::model::topo_order(&deps)
        .unwrap_or_else(|| (0..cells.len()).collect())
        .into_iter()
        .map(|k| cells[k])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Options, PlanError, plan};
    use super::*;

    /// `validate` as it was written before stages were planned one by one:
    /// whole plans, one per environment that plans stages.
    fn by_whole_plans(pipeline: &Pipeline) -> Vec<Diag> {
        let mut diags: Vec<Diag> = Vec::new();
        let mut add = |found: Vec<Diag>| {
            for d in found {
                if !diags.contains(&d) {
                    diags.push(d);
                }
            }
        };
        let planned = |environment: Option<String>| {
            let opts = Options {
                environment,
                ..Options::default()
            };
            match plan(pipeline, &opts) {
                Err(PlanError::Diagnostics(found)) => found,
                _ => Vec::new(),
            }
        };
        add(planned(None));
        for (name, environment) in &pipeline.environments {
            if environment
                .env
                .values()
                .any(crate::model::EnvValue::is_secret)
            {
                add(planned(Some(name.clone())));
            } else {
                let ctx = context(name.clone());
                let set = IndexMap::new();
                let mut found = Vec::new();
                Scope::global(pipeline, Some(environment), &set, &ctx, &mut found);
                add(found);
            }
        }
        diags
    }

    #[test]
    fn stage_by_stage_is_whole_plans() {
        let texts = [
            // Env cycles, in the pipeline's env and through a stage's.
            "env {\n  A = \"${B}\"\n  B = \"${A}\"\n  C = \"x\"\n}\n\
             stage s {\n  image \"i\"\n  env { D = \"${A}${C}\" }\n  run \"x\"\n}\n\
             stage t after s {\n  image \"${C}\"\n  env { E = \"${E}\" }\n  run \"x\"\n}\n",
            // Secrets that leak into images, with a matrix, a template and
            // environments with and without secrets.
            "secret S\nenv { K = \"${secret.S}\" }\n\
             environment prod {\n  env {\n    P = \"${secret.S}\"\n    Q = \"${K}\"\n  }\n}\n\
             environment dev { env { Q = \"q\" } }\n\
             template t { image \"${Q}-${K}\" }\n\
             stage a uses t {\n  matrix { N = [\"1\", \"2\"] }\n  run \"x\"\n}\n\
             stage b after a uses t {\n  image \"${P}\"\n  artifact \"${K}\"\n  run \"x\"\n}\n\
             finally f {\n  image \"i-${Q}\"\n  run \"x\"\n}\n",
            // Nothing to find.
            "env { A = \"a\" }\nstage a {\n  image \"${A}\"\n  run \"x\"\n}\n",
        ];
        let mut counts = Vec::new();
        for text in texts {
            let checked =
                crate::model::check_text(std::path::Path::new("/nonexistent/p.pipeline"), text);
            let Some(pipeline) = &checked.pipeline else {
                panic!("{text}\n{:#?}", checked.diagnostics);
            };
            let found = validate(pipeline);
            assert_eq!(found, by_whole_plans(pipeline), "{text}");
            counts.push(found.len());
        }
        assert_eq!(counts, [1, 4, 0]);
    }
}
