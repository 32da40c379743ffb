//! One stage declaration, checked: its clauses and body read, its template
//! applied, and every `${...}` in it looked up. What comes out depends only
//! on the declaration and on the top-level settings ([`Top`]), so the
//! language server keeps it while neither changes; what depends on the
//! other stages (duplicates, the graph) is [`super::resolve`]'s.

use std::collections::HashSet;

use indexmap::IndexMap;

use super::body::Reader;
use super::cond::{self, CondExpr, CondOperand};
use super::schema::Context;
use super::text::Text;
use super::top::Top;
use super::types::*;
use crate::diagnostic::{Code, Diag, did_you_mean};
use crate::source::Span;
use crate::syntax::{Clause, StageDecl, StageKind};

/// A checked stage declaration.
pub(crate) struct StageUnit {
    /// The stage, until someone takes it (the pipeline being built, or
    /// planning its cells). `None` also when the declaration has no name.
    pub(crate) stage: Option<Stage>,
    /// What the rest of the check needs of the stage; `None` when there is
    /// no stage.
    pub(crate) head: Option<Head>,
    /// The problems of the declaration itself.
    pub(crate) own: Vec<Diag>,
    /// The problems of its references (`${...}`, `env.NAME`), reported
    /// after the graph's, and only when the stage is not a duplicate.
    pub(crate) refs: Vec<Diag>,
}

/// A stage's name, place and dependencies.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) name: String,
    /// The name's span.
    pub(crate) span: Span,
    pub(crate) finally: bool,
    pub(crate) after: Vec<Dep>,
    pub(crate) template: Option<String>,
}

impl StageUnit {
    /// Checks `decl` under the top-level settings `top`.
    pub(crate) fn check(top: &Top<'_>, compiled: &mut cond::Compiled, decl: &StageDecl) -> Self {
        let mut own = Vec::new();
        let stage = stage(top, compiled, decl, &mut own);
        let mut refs = Vec::new();
        let head = stage.as_ref().map(|stage| {
            let mut scope = top.global.clone();
            scope.extend(stage.env.keys().cloned());
            scope.extend(stage.matrix.keys().cloned());
            check_texts(top, stage, &scope, &mut refs);
            for (k, _) in &stage.matrix {
                if let Some(v) = stage.env.get(k).or_else(|| top.env.get(k)) {
                    refs.push(
                        Diag::warning(
                            Code::DuplicateName,
                            v.span,
                            format!("matrix `{k}` hides env `{k}`"),
                        )
                        .label("this value is never used in the stage")
                        .help("rename the env value or the matrix key"),
                    );
                }
            }
            Head {
                name: stage.name.clone(),
                span: stage.span,
                finally: stage.finally,
                after: stage.after.clone(),
                template: stage.template.clone(),
            }
        });
        StageUnit {
            stage,
            head,
            own,
            refs,
        }
    }
}

fn stage(
    top: &Top<'_>,
    compiled: &mut cond::Compiled,
    decl: &StageDecl,
    diags: &mut Vec<Diag>,
) -> Option<Stage> {
    if decl.name.name.is_empty() {
        return None;
    }
    let mut after: Vec<Dep> = Vec::new();
    let mut template: Option<(String, Span)> = None;
    let mut when = None;
    let mut seen: IndexMap<&str, Span> = IndexMap::new();
    for clause in &decl.clauses {
        let kw = clause.keyword();
        if let Some(first) = seen.get(kw) {
            let help = match kw {
                "after" => "list every dependency in one `after`: `after a, b`",
                "when" => "combine the conditions with `&&` or `||`",
                _ => "a stage uses one template",
            };
            diags.push(Diag::twice(
                Code::DuplicateSetting,
                clause.span(),
                *first,
                &format!("`{kw}`"),
                "given",
                help,
            ));
            continue;
        }
        seen.insert(kw, clause.span());
        match clause {
            Clause::After { names, span } => {
                if decl.kind == StageKind::Finally {
                    diags.push(
                        Diag::error(
                            Code::MisplacedSetting,
                            *span,
                            "a `finally` stage cannot have `after`",
                        )
                        .label("not allowed here")
                        .help("`finally` stages run after every other stage, whatever happened"),
                    );
                    continue;
                }
                for n in names {
                    if !after.iter().any(|d| d.name == n.name) {
                        after.push(Dep {
                            name: n.name.clone(),
                            span: n.span,
                        });
                    }
                }
            }
            Clause::Uses { template: t, .. } => template = Some((t.name.clone(), t.span)),
            Clause::When { expr, .. } => {
                let text = top.sources.slice(expr.span()).to_string();
                when = Some(Box::new(cond::check(expr, &text, compiled, diags)));
            }
        }
    }
    let own = Reader { diags: &mut *diags }.body(&decl.body, Context::Stage);
    let base = match &template {
        Some((t, span)) => match top.templates.get(t) {
            Some(tpl) => Some(tpl.body.clone()),
            None if top.unparsed.contains(t) => None,
            None => {
                let help = did_you_mean(t, top.templates.keys().map(String::as_str))
                    .unwrap_or_else(|| {
                        if top.templates.is_empty() {
                            "define it with `template NAME { ... }`".into()
                        } else {
                            format!(
                                "templates are {}",
                                top.templates
                                    .keys()
                                    .map(|k| format!("`{k}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    });
                diags.push(
                    Diag::error(
                        Code::UnknownTemplate,
                        *span,
                        format!("unknown template `{t}`"),
                    )
                    .label("no such template")
                    .help(help),
                );
                None
            }
        },
        None => None,
    };
    // With an unknown template, what the template would give is unknown.
    let template_known = template.is_none() || base.is_some();
    let merged = merge(base.unwrap_or_default(), own);
    let action = action(decl, &merged, diags)?;
    if matches!(action, Action::Run { .. }) && merged.image.is_none() && template_known {
        diags.push(
            Diag::error(
                Code::MissingImage,
                decl.name.span,
                format!("stage `{}` has no image", decl.name.name),
            )
            .label("runs a script, but in which image?")
            .help(if template.is_some() {
                "add `image \"...\"` to the stage or to its template"
            } else {
                "add `image \"...\"`, or `uses` a template that has one"
            }),
        );
    }
    if let Some(first) = merged.inputs.first() {
        let never = match &action {
            _ if decl.kind == StageKind::Finally => Some("a `finally` stage"),
            Action::Release(_) => Some("a `release` stage"),
            Action::Manual { .. } => Some("a `manual` stage"),
            Action::Build(b) if b.push => Some("a `build` that pushes"),
            _ => None,
        };
        if let Some(what) = never {
            diags.push(
                Diag::warning(
                    Code::UncachedInputs,
                    first.span,
                    format!(
                        "stage `{}` is never cached: {what} always runs, so its `inputs` mean nothing",
                        decl.name.name
                    ),
                )
                .help("remove `inputs` from the stage or its template"),
            );
        }
    }
    Some(Stage {
        name: decl.name.name.clone(),
        span: decl.name.span,
        finally: decl.kind == StageKind::Finally,
        after,
        template: template.map(|(t, _)| t),
        when,
        image: merged.image,
        action,
        env: merged.env,
        matrix: merged.matrix.unwrap_or_default(),
        services: merged.services,
        retry: merged.retry.unwrap_or(0),
        timeout: merged.timeout,
        allow_failure: merged.allow_failure.unwrap_or(false),
        artifacts: merged.artifacts,
        caches: merged.caches,
        inputs: merged.inputs,
        resources: merged.resources,
    })
}

fn action(decl: &StageDecl, body: &Body, diags: &mut Vec<Diag>) -> Option<Action> {
    let mut actions: Vec<(&str, Action)> = Vec::new();
    if let Some((_, first)) = body.run.first() {
        let script = body
            .run
            .iter()
            .map(|(s, _)| s.strip_suffix('\n').unwrap_or(s))
            .collect::<Vec<_>>()
            .join("\n");
        actions.push((
            "run",
            Action::Run {
                script,
                span: *first,
            },
        ));
    }
    if let Some(b) = &body.build {
        actions.push(("build", Action::Build(b.clone())));
    }
    if let Some(r) = &body.release {
        actions.push(("release", Action::Release(r.clone())));
    }
    if let Some(m) = &body.manual {
        actions.push(("manual", Action::Manual { prompt: m.clone() }));
    }
    match actions.len() {
        0 => {
            diags.push(
                Diag::error(Code::NoAction, decl.name.span, format!("stage `{}` does nothing", decl.name.name))
                    .label("no `run`, `build`, `release` or `manual`")
                    .help("a stage runs a script (`run`), builds an image (`build`), releases (`release`) or asks (`manual`)"),
            );
            // Keep checking the rest of the stage as if it ran nothing.
            Some(Action::Run {
                script: String::new(),
                span: decl.name.span,
            })
        }
        1 => actions.pop().map(|(_, a)| a),
        _ => {
            let kinds: Vec<String> = actions.iter().map(|(k, _)| format!("`{k}`")).collect();
            diags.push(
                Diag::error(
                    Code::ManyActions,
                    decl.name.span,
                    format!("stage `{}` does more than one thing", decl.name.name),
                )
                .label(format!("has {}", kinds.join(" and ")))
                .help("split it into one stage per action, joined with `after`"),
            );
            actions.into_iter().next().map(|(_, a)| a)
        }
    }
}

fn check_texts(top: &Top<'_>, stage: &Stage, scope: &HashSet<String>, diags: &mut Vec<Diag>) {
    let mut texts: Vec<&Text> = Vec::new();
    texts.extend(stage.image.iter());
    texts.extend(stage.artifacts.iter());
    texts.extend(stage.caches.iter());
    texts.extend(stage.inputs.iter());
    texts.extend(stage.services.iter().map(|s| &s.image));
    texts.extend(stage.services.iter().filter_map(|s| s.ready.as_ref()));
    texts.extend(
        stage
            .resources
            .iter()
            .flat_map(|r| r.cpu.iter().chain(r.memory.iter())),
    );
    match &stage.action {
        Action::Run { .. } => {}
        Action::Build(b) => texts.extend(build_texts(b)),
        Action::Release(r) => texts.extend(release_texts(r)),
        Action::Manual { prompt } => texts.push(prompt),
    }
    for t in texts {
        top.check_text(t, scope, false, diags);
    }
    for v in stage
        .env
        .values()
        .chain(stage.services.iter().flat_map(|s| s.env.values()))
    {
        top.check_text(&v.value, scope, true, diags);
    }
    if let Some(when) = &stage.when {
        let mut names = Vec::new();
        let mut texts = Vec::new();
        cond_refs(&when.expr, &mut names, &mut texts);
        for (name, span) in names {
            if !scope.contains(&name) {
                top.undefined(&name, span, scope, diags);
            }
        }
        for t in texts {
            top.check_text(t, scope, false, diags);
        }
    }
}

/// A template's body under a stage's own: the stage wins for single values;
/// lists and env add up.
fn merge(base: Body, own: Body) -> Body {
    let mut env = base.env;
    for (k, v) in own.env {
        env.insert(k, v);
    }
    let mut services = base.services;
    for s in own.services {
        match services.iter_mut().find(|b| b.name == s.name) {
            Some(b) => *b = s,
            None => services.push(s),
        }
    }
    let has_action =
        !own.run.is_empty() || own.build.is_some() || own.release.is_some() || own.manual.is_some();
    let (run, build, release, manual) = if has_action {
        (own.run, own.build, own.release, own.manual)
    } else {
        (base.run, base.build, base.release, base.manual)
    };
    Body {
        image: own.image.or(base.image),
        run,
        build,
        release,
        manual,
        env,
        matrix: own.matrix.or(base.matrix),
        services,
        retry: own.retry.or(base.retry),
        timeout: own.timeout.or(base.timeout),
        allow_failure: own.allow_failure.or(base.allow_failure),
        artifacts: base.artifacts.into_iter().chain(own.artifacts).collect(),
        caches: base.caches.into_iter().chain(own.caches).collect(),
        inputs: base.inputs.into_iter().chain(own.inputs).collect(),
        resources: match (base.resources, own.resources) {
            (Some(b), Some(o)) => Some(Resources {
                cpu: o.cpu.or(b.cpu),
                memory: o.memory.or(b.memory),
            }),
            (b, o) => o.or(b),
        },
    }
}

pub(super) fn body_texts(b: &Body) -> Vec<&Text> {
    let mut out: Vec<&Text> = Vec::new();
    out.extend(b.image.iter());
    out.extend(b.artifacts.iter());
    out.extend(b.caches.iter());
    out.extend(b.inputs.iter());
    out.extend(b.services.iter().map(|s| &s.image));
    out.extend(b.services.iter().filter_map(|s| s.ready.as_ref()));
    out.extend(
        b.resources
            .iter()
            .flat_map(|r| r.cpu.iter().chain(r.memory.iter())),
    );
    out.extend(b.manual.iter());
    if let Some(build) = &b.build {
        out.extend(build_texts(build));
    }
    if let Some(r) = &b.release {
        out.extend(release_texts(r));
    }
    out
}

fn build_texts(b: &Build) -> Vec<&Text> {
    let mut out = vec![&b.context];
    out.extend(b.dockerfile.iter());
    out.extend(b.target.iter());
    out.extend(b.tags.iter());
    out.extend(b.labels.values());
    out.extend(b.args.values());
    out
}

fn release_texts(r: &Release) -> Vec<&Text> {
    let mut out: Vec<&Text> = r.namespace.iter().collect();
    out.extend(r.manifests.iter());
    out.extend(r.images.values());
    out
}

fn cond_refs<'c>(e: &'c CondExpr, names: &mut Vec<(String, Span)>, texts: &mut Vec<&'c Text>) {
    let operand =
        |o: &'c CondOperand, names: &mut Vec<(String, Span)>, texts: &mut Vec<&'c Text>| match o {
            CondOperand::Env { name, span } => names.push((name.clone(), *span)),
            CondOperand::Text(t) => texts.push(t),
            _ => {}
        };
    match e {
        CondExpr::And(l, r) | CondExpr::Or(l, r) => {
            cond_refs(l, names, texts);
            cond_refs(r, names, texts);
        }
        CondExpr::Not(x) => cond_refs(x, names, texts),
        CondExpr::Compare { lhs, rhs, .. } => {
            operand(lhs, names, texts);
            operand(rhs, names, texts);
        }
        CondExpr::Truthy(o) => operand(o, names, texts),
    }
}
