//! The checker proper: top-level items into a [`Pipeline`], templates
//! applied, and every cross-reference checked.

use std::collections::HashSet;

use indexmap::IndexMap;

use super::body::{Context, Reader, duplicate_setting, unknown_setting};
use super::cond::{self, CondExpr, CondOperand};
use super::dag;
use super::text::{Text, Var};
use super::types::*;
use crate::diagnostic::{Code, Diag, closest, did_you_mean};
use crate::source::{FileId, SourceMap, Span};
use crate::syntax::{Clause, Item, Setting, StageDecl, StageKind, Value};

/// Consumes the items, so each stage's syntax is freed once it is checked:
/// the peak memory of a large file is then its Ast or its model, not both.
pub(super) fn resolve(
    sources: &SourceMap,
    root: FileId,
    items: Vec<(FileId, Item)>,
    unparsed: &HashSet<String>,
    diags: &mut Vec<Diag>,
) -> Pipeline {
    let mut r = Resolver {
        sources,
        unparsed,
        root,
        diags,
        name: None,
        env: Env::new(),
        secrets: IndexMap::new(),
        environments: IndexMap::new(),
        templates: IndexMap::new(),
        decls: Vec::new(),
        compiled: cond::Compiled::default(),
    };
    for (file, item) in items {
        match item {
            Item::Setting(s) => r.top_setting(file, &s),
            Item::Stage(decl) => r.decls.push(decl),
        }
    }
    let (stages, finally) = r.stages();
    r.check_dag(&stages, &finally);
    r.check_refs(&stages, &finally);
    r.warn_unused_templates(&stages, &finally);
    let name = r.name.take().map(|(n, _)| n).unwrap_or_else(|| {
        let path = &sources.get(root).path;
        path.file_stem()
            .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy().into_owned())
    });
    Pipeline {
        name,
        env: r.env,
        secrets: r.secrets,
        environments: r.environments,
        templates: r.templates,
        stages,
        finally,
    }
}

struct Resolver<'a> {
    sources: &'a SourceMap,
    /// Names of declarations that failed to parse: a reference to one is not
    /// a second problem, the syntax error already says what is wrong.
    unparsed: &'a HashSet<String>,
    root: FileId,
    diags: &'a mut Vec<Diag>,
    name: Option<(String, Span)>,
    env: Env,
    secrets: IndexMap<String, Span>,
    environments: IndexMap<String, Environment>,
    templates: IndexMap<String, Template>,
    decls: Vec<StageDecl>,
    compiled: cond::Compiled,
}

impl<'a> Resolver<'a> {
    fn reader(&mut self) -> Reader<'_> {
        Reader { diags: self.diags }
    }

    fn top_setting(&mut self, file: FileId, s: &Setting) {
        match s.key.name.as_str() {
            "pipeline" => {
                if file != self.root {
                    self.diags.push(
                        Diag::error(
                            Code::MisplacedSetting,
                            s.key.span,
                            "`pipeline` can only be in the main file",
                        )
                        .label("in an included file")
                        .help("remove it: an included file adds to the pipeline that includes it"),
                    );
                    return;
                }
                if let Some((_, first)) = &self.name {
                    self.diags.push(duplicate_setting(s, *first));
                    return;
                }
                if let Some(t) = self.reader().text(s, Context::Top) {
                    match t.as_literal() {
                        Some(n) if !n.trim().is_empty() => self.name = Some((n, s.key.span)),
                        _ => self.diags.push(
                            Diag::error(
                                Code::BadValue,
                                t.span,
                                "the pipeline name must be plain, non-empty text",
                            )
                            .label("not a plain name")
                            .help("write `pipeline \"chat\"`"),
                        ),
                    }
                }
            }
            "env" => {
                let mut block_env = Env::new();
                self.reader().env_block(s, Context::Top, &mut block_env);
                for (k, v) in block_env {
                    if let Some(prev) = self.env.get(&k) {
                        self.diags.push(
                            Diag::twice(Code::DuplicateName, v.span, prev.span, &format!("env `{k}`"), "set", "pipeline env is one namespace across files; remove one, or override it in an `environment`"),
                        );
                    } else {
                        self.env.insert(k, v);
                    }
                }
            }
            "secret" => {
                if s.args.is_empty() || s.assign.is_some() || s.block.is_some() {
                    super::body::bad_shape(s, Context::Top, "one or more secret names", self.diags);
                    return;
                }
                for a in &s.args {
                    let Value::Word(w) = a else {
                        self.diags.push(
                            Diag::error(Code::BadValue, a.span(), "a secret name is a bare name")
                                .label(format!("found {}", a.describe()))
                                .help("write `secret NPM_TOKEN`"),
                        );
                        continue;
                    };
                    if let Some(prev) = self.secrets.get(&w.name) {
                        self.diags.push(Diag::twice(
                            Code::DuplicateName,
                            w.span,
                            *prev,
                            &format!("secret `{}`", w.name),
                            "declared",
                            "remove one of them",
                        ));
                    } else {
                        self.secrets.insert(w.name.clone(), w.span);
                    }
                }
            }
            "environment" => {
                let (Some(Value::Word(name)), 1, None, Some(block)) =
                    (s.args.first(), s.args.len(), &s.assign, &s.block)
                else {
                    super::body::bad_shape(s, Context::Top, "a name and a block", self.diags);
                    return;
                };
                let mut env = Env::new();
                for inner in &block.settings {
                    match inner.key.name.as_str() {
                        "env" => self
                            .reader()
                            .env_block(inner, Context::Environment, &mut env),
                        _ => unknown_setting(inner, Context::Environment, self.diags),
                    }
                }
                if let Some(prev) = self.environments.get(&name.name) {
                    self.diags.push(Diag::twice(
                        Code::DuplicateName,
                        name.span,
                        prev.span,
                        &format!("environment `{}`", name.name),
                        "defined",
                        "merge the two blocks",
                    ));
                    return;
                }
                self.environments.insert(
                    name.name.clone(),
                    Environment {
                        name: name.name.clone(),
                        span: name.span,
                        env,
                    },
                );
            }
            "template" => {
                let (Some(Value::Word(name)), 1, None, Some(block)) =
                    (s.args.first(), s.args.len(), &s.assign, &s.block)
                else {
                    super::body::bad_shape(s, Context::Top, "a name and a block", self.diags);
                    return;
                };
                let body = self.reader().body(block, Context::Template);
                if let Some(prev) = self.templates.get(&name.name) {
                    self.diags.push(Diag::twice(
                        Code::DuplicateTemplate,
                        name.span,
                        prev.span,
                        &format!("template `{}`", name.name),
                        "defined",
                        "rename or remove one of them",
                    ));
                    return;
                }
                self.templates.insert(
                    name.name.clone(),
                    Template {
                        name: name.name.clone(),
                        span: name.span,
                        body,
                    },
                );
            }
            _ => unknown_setting(s, Context::Top, self.diags),
        }
    }

    /// Reads every stage declaration and applies its template.
    fn stages(&mut self) -> (IndexMap<String, Stage>, IndexMap<String, Stage>) {
        let decls = std::mem::take(&mut self.decls);
        let mut stages: IndexMap<String, Stage> = IndexMap::with_capacity(decls.len());
        let mut finally: IndexMap<String, Stage> = IndexMap::new();
        for decl in decls {
            let stage = self.stage(&decl);
            drop(decl);
            let Some(stage) = stage else {
                continue;
            };
            let prev = stages.get(&stage.name).or_else(|| finally.get(&stage.name));
            if let Some(prev) = prev {
                self.diags.push(Diag::twice(
                    Code::DuplicateStage,
                    stage.span,
                    prev.span,
                    &format!("stage `{}`", stage.name),
                    "defined",
                    "stage names are unique across the pipeline and its includes; rename one",
                ));
                continue;
            }
            if stage.finally {
                finally.insert(stage.name.clone(), stage);
            } else {
                stages.insert(stage.name.clone(), stage);
            }
        }
        (stages, finally)
    }

    fn stage(&mut self, decl: &StageDecl) -> Option<Stage> {
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
                self.diags.push(Diag::twice(
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
                        self.diags.push(
                            Diag::error(
                                Code::MisplacedSetting,
                                *span,
                                "a `finally` stage cannot have `after`",
                            )
                            .label("not allowed here")
                            .help(
                                "`finally` stages run after every other stage, whatever happened",
                            ),
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
                    let text = self.sources.slice(expr.span()).to_string();
                    when = Some(Box::new(cond::check(
                        expr,
                        &text,
                        &mut self.compiled,
                        self.diags,
                    )));
                }
            }
        }
        let own = self.reader().body(&decl.body, Context::Stage);
        let base = match &template {
            Some((t, span)) => match self.templates.get(t) {
                Some(tpl) => Some(tpl.body.clone()),
                None if self.unparsed.contains(t) => None,
                None => {
                    let help = did_you_mean(t, self.templates.keys().map(String::as_str))
                        .unwrap_or_else(|| {
                            if self.templates.is_empty() {
                                "define it with `template NAME { ... }`".into()
                            } else {
                                format!(
                                    "templates are {}",
                                    self.templates
                                        .keys()
                                        .map(|k| format!("`{k}`"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            }
                        });
                    self.diags.push(
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
        let action = self.action(decl, &merged)?;
        if matches!(action, Action::Run { .. }) && merged.image.is_none() && template_known {
            self.diags.push(
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
        })
    }

    fn action(&mut self, decl: &StageDecl, body: &Body) -> Option<Action> {
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
                self.diags.push(
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
                self.diags.push(
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

    fn check_dag(&mut self, stages: &IndexMap<String, Stage>, finally: &IndexMap<String, Stage>) {
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(stages.len());
        for stage in stages.values() {
            let mut ds = Vec::new();
            for dep in &stage.after {
                match stages.get_index_of(&dep.name) {
                    Some(i) => ds.push(i),
                    None => self.unknown_stage(stage, dep, stages, finally),
                }
            }
            deps.push(ds);
        }
        for cycle in dag::cycles(&deps) {
            let names: Vec<&Stage> = cycle.iter().map(|&i| &stages[i]).collect();
            let first = names[0];
            let path = names
                .iter()
                .chain(std::iter::once(&first))
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(" → ");
            // Label the `after` reference that makes each step of the cycle.
            let edge = |from: &Stage, to: &Stage| {
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
            self.diags.push(d.help("each stage in the cycle waits for the next one, so none can start; remove one `after`"));
        }
    }

    fn unknown_stage(
        &mut self,
        stage: &Stage,
        dep: &Dep,
        stages: &IndexMap<String, Stage>,
        finally: &IndexMap<String, Stage>,
    ) {
        if self.unparsed.contains(&dep.name) {
            return;
        }
        if let Some(f) = finally.get(&dep.name) {
            self.diags.push(
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
            stages
                .keys()
                .map(String::as_str)
                .filter(|n| *n != stage.name),
        )
        .unwrap_or_else(|| "`after` names stages defined in this pipeline or its includes".into());
        self.diags.push(
            Diag::error(
                Code::UnknownStage,
                dep.span,
                format!("unknown stage `{}`", dep.name),
            )
            .label("no such stage")
            .help(help),
        );
    }

    /// Every `${...}` and `env.NAME` names something that exists where it is used.
    fn check_refs(&mut self, stages: &IndexMap<String, Stage>, finally: &IndexMap<String, Stage>) {
        let mut global: HashSet<String> = self.env.keys().cloned().collect();
        for e in self.environments.values() {
            global.extend(e.env.keys().cloned());
        }
        let env = self.env.clone();
        for v in env.values() {
            self.check_text(&v.value, &global, true);
        }
        let environments: Vec<Environment> = self.environments.values().cloned().collect();
        for e in &environments {
            for v in e.env.values() {
                self.check_text(&v.value, &global, true);
            }
        }
        for stage in stages.values().chain(finally.values()) {
            let mut scope = global.clone();
            scope.extend(stage.env.keys().cloned());
            scope.extend(stage.matrix.keys().cloned());
            self.check_stage_texts(stage, &scope);
            for (k, _) in &stage.matrix {
                if let Some(v) = stage.env.get(k).or_else(|| self.env.get(k)) {
                    self.diags.push(
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
        }
        // Templates no stage uses are still checked, in their own scope.
        let used: HashSet<&str> = stages
            .values()
            .chain(finally.values())
            .filter_map(|s| s.template.as_deref())
            .collect();
        let unused: Vec<Template> = self
            .templates
            .values()
            .filter(|t| !used.contains(t.name.as_str()))
            .cloned()
            .collect();
        for t in unused {
            let mut scope = global.clone();
            scope.extend(t.body.env.keys().cloned());
            if let Some(m) = &t.body.matrix {
                scope.extend(m.keys().cloned());
            }
            for text in body_texts(&t.body) {
                self.check_text(text, &scope, false);
            }
            for v in t
                .body
                .env
                .values()
                .chain(t.body.services.iter().flat_map(|s| s.env.values()))
            {
                self.check_text(&v.value, &scope, true);
            }
        }
    }

    fn check_stage_texts(&mut self, stage: &Stage, scope: &HashSet<String>) {
        let mut texts: Vec<&Text> = Vec::new();
        texts.extend(stage.image.iter());
        texts.extend(stage.artifacts.iter());
        texts.extend(stage.caches.iter());
        texts.extend(stage.services.iter().map(|s| &s.image));
        match &stage.action {
            Action::Run { .. } => {}
            Action::Build(b) => texts.extend(build_texts(b)),
            Action::Release(r) => texts.extend(release_texts(r)),
            Action::Manual { prompt } => texts.push(prompt),
        }
        for t in texts {
            self.check_text(t, scope, false);
        }
        for v in stage
            .env
            .values()
            .chain(stage.services.iter().flat_map(|s| s.env.values()))
        {
            self.check_text(&v.value, scope, true);
        }
        if let Some(when) = &stage.when {
            let mut names = Vec::new();
            let mut texts = Vec::new();
            cond_refs(&when.expr, &mut names, &mut texts);
            for (name, span) in names {
                if !scope.contains(&name) {
                    self.undefined(&name, span, scope);
                }
            }
            for t in texts {
                self.check_text(t, scope, false);
            }
        }
    }

    fn check_text(&mut self, text: &Text, scope: &HashSet<String>, in_env: bool) {
        for r in text.refs() {
            match &r.var {
                Var::Name(n) => {
                    if !scope.contains(n) {
                        self.undefined(n, r.span, scope);
                    }
                }
                Var::Secret(n) => {
                    if !in_env {
                        self.diags.push(
                            Diag::error(Code::SecretOutsideEnv, r.span, format!("secret `{n}` can only be used in an `env` value"))
                                .label("a secret here could leak into a command line or an image")
                                .help(format!("stages get secrets as environment variables: use `${n}` in the run script, or set `env {{ NAME = \"${{secret.{n}}}\" }}`")),
                        );
                    } else if !self.secrets.contains_key(n) {
                        let help = did_you_mean(n, self.secrets.keys().map(String::as_str))
                            .unwrap_or_else(|| {
                                format!("declare it at the top level: `secret {n}`")
                            });
                        self.diags.push(
                            Diag::error(
                                Code::UndeclaredSecret,
                                r.span,
                                format!("undeclared secret `{n}`"),
                            )
                            .label("not declared")
                            .help(help),
                        );
                    }
                }
                Var::Environment | Var::Git(_) => {}
            }
        }
    }

    fn undefined(&mut self, name: &str, span: Span, scope: &HashSet<String>) {
        let help = if self.secrets.contains_key(name) {
            format!(
                "`{name}` is a secret: stages get it as the environment variable `${name}`; in an `env` value write `${{secret.{name}}}`"
            )
        } else {
            let builtins = [
                "environment",
                "git.sha",
                "git.short_sha",
                "git.branch",
                "git.tag",
            ];
            match closest(name, scope.iter().map(String::as_str).chain(builtins)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("define it in an `env` block: `env {{ {name} = \"...\" }}`"),
            }
        };
        self.diags.push(
            Diag::error(
                Code::UndefinedVariable,
                span,
                format!("undefined variable `{name}`"),
            )
            .label("not defined")
            .help(help),
        );
    }

    fn warn_unused_templates(
        &mut self,
        stages: &IndexMap<String, Stage>,
        finally: &IndexMap<String, Stage>,
    ) {
        let used: HashSet<&str> = stages
            .values()
            .chain(finally.values())
            .filter_map(|s| s.template.as_deref())
            .collect();
        for t in self.templates.values() {
            if !used.contains(t.name.as_str()) {
                self.diags.push(
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
    }
}

fn body_texts(b: &Body) -> Vec<&Text> {
    let mut out: Vec<&Text> = Vec::new();
    out.extend(b.image.iter());
    out.extend(b.artifacts.iter());
    out.extend(b.caches.iter());
    out.extend(b.services.iter().map(|s| &s.image));
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
