//! The checker proper: top-level items into a [`Pipeline`], templates
//! applied, and every cross-reference checked.
//!
//! It goes in three steps, each its own function so that the language
//! server can keep the middle one's results between edits: the top-level
//! settings ([`Top`]), each stage declaration on its own ([`StageUnit`]),
//! then what needs every stage ([`assemble`]: duplicates, the graph,
//! references in the pipeline's env, unused templates).

use std::collections::HashSet;

use indexmap::IndexMap;

use super::cond;
use super::dag;
use super::stage::{Head, StageUnit, body_texts};
use super::top::Top;
use super::types::*;
use crate::diagnostic::{Code, Diag, did_you_mean};
use crate::source::{FileId, SourceMap};
use crate::syntax::Item;

/// Consumes the items, so each stage's syntax is freed once it is checked:
/// the peak memory of a large file is then its Ast or its model, not both.
pub(super) fn resolve(
    sources: &SourceMap,
    root: FileId,
    items: Vec<(FileId, Item)>,
    unparsed: &HashSet<String>,
    diags: &mut Vec<Diag>,
) -> Pipeline {
    let mut top = Top::new(sources, root, unparsed);
    let mut decls = Vec::new();
    for (file, item) in items {
        match item {
            Item::Setting(s) => top.setting(file, &s, diags),
            Item::Stage(decl) => decls.push(decl),
        }
    }
    let mut compiled = cond::Compiled::default();
    let mut units: Vec<StageUnit> = decls
        .into_iter()
        .map(|decl| StageUnit::check(&top, &mut compiled, &decl))
        .collect();
    let placed = assemble(&top, &units.iter().collect::<Vec<_>>(), diags);
    let mut take = |ix: &[usize]| -> IndexMap<String, Stage> {
        ix.iter()
            .filter_map(|&i| units[i].stage.take())
            .map(|s| (s.name.clone(), s))
            .collect()
    };
    let stages = take(&placed.stages);
    let finally = take(&placed.finally);
    top.into_pipeline(stages, finally)
}

/// Which units make the pipeline's stages and `finally` stages, in order:
/// every named stage but the second of a duplicate.
pub(crate) struct Placed {
    pub(crate) stages: Vec<usize>,
    pub(crate) finally: Vec<usize>,
}

/// Reports what the stages' own checks found, in declaration order, then
/// what needs them all: duplicates, unknown stages and cycles, references
/// in the pipeline's and environments' env, then each stage's references,
/// and templates no stage uses. `units` are the stage declarations' checks,
/// in declaration order, under `top`.
pub(crate) fn assemble(top: &Top<'_>, units: &[&StageUnit], diags: &mut Vec<Diag>) -> Placed {
    let mut stages: Placing<'_> = IndexMap::with_capacity(units.len());
    let mut finally: Placing<'_> = IndexMap::new();
    for (i, unit) in units.iter().enumerate() {
        diags.extend(unit.own.iter().cloned());
        let Some(head) = &unit.head else {
            continue;
        };
        let prev = stages
            .get(head.name.as_str())
            .or_else(|| finally.get(head.name.as_str()));
        if let Some((_, first)) = prev {
            diags.push(Diag::twice(
                Code::DuplicateStage,
                head.span,
                first.span,
                &format!("stage `{}`", head.name),
                "defined",
                "stage names are unique across the pipeline and its includes; rename one",
            ));
            continue;
        }
        if head.finally {
            finally.insert(&head.name, (i, head));
        } else {
            stages.insert(&head.name, (i, head));
        }
    }
    let graph = Graph {
        stages: &stages,
        finally: &finally,
    };
    graph.check_dag(top, diags);
    // References: the pipeline's env, each environment's, each stage's.
    for v in top.env.values() {
        top.check_text(&v.value, &top.global, true, diags);
    }
    for e in top.environments.values() {
        for v in e.env.values() {
            top.check_text(&v.value, &top.global, true, diags);
        }
    }
    for &(i, _) in stages.values().chain(finally.values()) {
        diags.extend(units[i].refs.iter().cloned());
    }
    // Templates no stage uses are still checked, in their own scope.
    let used: HashSet<&str> = stages
        .values()
        .chain(finally.values())
        .filter_map(|(_, head)| head.template.as_deref())
        .collect();
    for t in top.templates.values() {
        if used.contains(t.name.as_str()) {
            continue;
        }
        let mut scope = top.global.clone();
        scope.extend(t.body.env.keys().cloned());
        if let Some(m) = &t.body.matrix {
            scope.extend(m.keys().cloned());
        }
        for text in body_texts(&t.body) {
            top.check_text(text, &scope, false, diags);
        }
        for v in t
            .body
            .env
            .values()
            .chain(t.body.services.iter().flat_map(|s| s.env.values()))
        {
            top.check_text(&v.value, &scope, true, diags);
        }
    }
    for t in top.templates.values() {
        if !used.contains(t.name.as_str()) {
            diags.push(
                Diag::warning(
                    Code::UnusedTemplate,
                    t.span,
                    format!("template `{}` is never used", t.name),
                )
                .label("no stage `uses` it")
                .help(format!(
                    "use it with `stage NAME uses {} {{ ... }}`, or remove it",
                    t.name
                )),
            );
        }
    }
    Placed {
        stages: stages.into_values().map(|(i, _)| i).collect(),
        finally: finally.into_values().map(|(i, _)| i).collect(),
    }
}

/// Stages by name: which unit each is, and its head.
type Placing<'u> = IndexMap<&'u str, (usize, &'u Head)>;

/// The placed stages, by name.
struct Graph<'u> {
    stages: &'u Placing<'u>,
    finally: &'u Placing<'u>,
}

impl Graph<'_> {
    fn check_dag(&self, top: &Top<'_>, diags: &mut Vec<Diag>) {
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(self.stages.len());
        for &(_, stage) in self.stages.values() {
            let mut ds = Vec::new();
            for dep in &stage.after {
                match self.stages.get_index_of(dep.name.as_str()) {
                    Some(i) => ds.push(i),
                    None => self.unknown_stage(top, stage, dep, diags),
                }
            }
            deps.push(ds);
        }
        for cycle in dag::cycles(&deps) {
            let names: Vec<&Head> = cycle.iter().map(|&i| self.stages[i].1).collect();
            let first = names[0];
            let path = names
                .iter()
                .chain(std::iter::once(&first))
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(" → ");
            // Label the `after` reference that makes each step of the cycle.
            let edge = |from: &Head, to: &Head| {
                from.after
                    .iter()
                    .find(|d| d.name == to.name)
                    .map_or(from.span, |d| d.span)
            };
            let next = names.get(1).copied().unwrap_or(first);
            let mut d = Diag::error(
                Code::Cycle,
                edge(first, next),
                if names.len() == 1 {
                    format!("stage `{}` depends on itself", first.name)
                } else {
                    format!("dependency cycle: {path}")
                },
            )
            .label(format!("`{}` runs after `{}`", first.name, next.name));
            for (i, s) in names.iter().enumerate().skip(1) {
                let to = names.get(i + 1).copied().unwrap_or(first);
                d = d.with(
                    edge(s, to),
                    format!("`{}` runs after `{}`", s.name, to.name),
                );
            }
            diags.push(d.help("each stage in the cycle waits for the next one, so none can start; remove one `after`"));
        }
    }

    fn unknown_stage(&self, top: &Top<'_>, stage: &Head, dep: &Dep, diags: &mut Vec<Diag>) {
        if top.unparsed.contains(&dep.name) {
            return;
        }
        if let Some((_, f)) = self.finally.get(dep.name.as_str()) {
            diags.push(
                Diag::error(
                    Code::UnknownStage,
                    dep.span,
                    format!("`{}` is a `finally` stage", dep.name),
                )
                .label("nothing can run after it")
                .with(f.span, "defined here")
                .help("`finally` stages run last; make it a `stage` to depend on it"),
            );
            return;
        }
        let help = did_you_mean(
            &dep.name,
            self.stages.keys().copied().filter(|n| *n != stage.name),
        )
        .unwrap_or_else(|| "`after` names stages defined in this pipeline or its includes".into());
        diags.push(
            Diag::error(
                Code::UnknownStage,
                dep.span,
                format!("unknown stage `{}`", dep.name),
            )
            .label("no such stage")
            .help(help),
        );
    }
}
