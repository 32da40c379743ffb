//! The top-level settings, read in file order: the pipeline's name, env,
//! secrets, environments and templates. Everything a stage's check depends
//! on besides its own declaration is here, so a stage whose declaration did
//! not change checks the same while these do not change either.

use std::collections::HashSet;

use indexmap::IndexMap;

use super::body::{Reader, Seen, duplicate_setting, unknown_setting};
use super::schema::Context;
use super::text::{Text, Var};
use super::types::*;
use crate::diagnostic::{Code, Diag, closest, did_you_mean};
use crate::source::{FileId, SourceMap, Span};
use crate::syntax::{Setting, Value};

/// See [`Top::declared`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Declared {
    global: Vec<String>,
    env: Vec<String>,
    secrets: Vec<String>,
    templates: Vec<String>,
}

pub(crate) struct Top<'a> {
    pub(super) sources: &'a SourceMap,
    /// Names of declarations that failed to parse: a reference to one is not
    /// a second problem, the syntax error already says what is wrong.
    pub(super) unparsed: &'a HashSet<String>,
    root: FileId,
    name: Option<(String, Span)>,
    pub(super) env: Env,
    pub(super) secrets: IndexMap<String, Span>,
    pub(super) environments: IndexMap<String, Environment>,
    pub(super) templates: IndexMap<String, Template>,
    /// The names every `${...}` can use: pipeline env and every
    /// environment's. Complete once every setting is read.
    pub(super) global: HashSet<String>,
}

impl<'a> Top<'a> {
    pub(crate) fn new(sources: &'a SourceMap, root: FileId, unparsed: &'a HashSet<String>) -> Self {
        Top {
            sources,
            unparsed,
            root,
            name: None,
            env: Env::new(),
            secrets: IndexMap::new(),
            environments: IndexMap::new(),
            templates: IndexMap::new(),
            global: HashSet::new(),
        }
    }

    /// Reads one top-level setting of `file`.
    pub(crate) fn setting(&mut self, file: FileId, s: &Setting, diags: &mut Vec<Diag>) {
        match s.key.name.as_str() {
            "pipeline" => {
                if file != self.root {
                    diags.push(
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
                    diags.push(duplicate_setting(s, *first));
                    return;
                }
                if let Some(t) = (Reader { diags: &mut *diags }).text(s, Context::Top) {
                    match t.as_literal() {
                        Some(n) if !n.trim().is_empty() => self.name = Some((n, s.key.span)),
                        _ => diags.push(
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
                Reader { diags: &mut *diags }.env_block(s, Context::Top, &mut block_env);
                for (k, v) in block_env {
                    if let Some(prev) = self.env.get(&k) {
                        diags.push(
                            Diag::twice(Code::DuplicateName, v.span, prev.span, &format!("env `{k}`"), "set", "pipeline env is one namespace across files; remove one, or override it in an `environment`"),
                        );
                    } else {
                        self.global.insert(k.clone());
                        self.env.insert(k, v);
                    }
                }
            }
            "secret" => {
                if s.args.is_empty() || s.assign.is_some() || s.block.is_some() {
                    super::body::bad_shape(s, Context::Top, "one or more secret names", diags);
                    return;
                }
                for a in &s.args {
                    let Value::Word(w) = a else {
                        diags.push(
                            Diag::error(Code::BadValue, a.span(), "a secret name is a bare name")
                                .label(format!("found {}", a.describe()))
                                .help("write `secret NPM_TOKEN`"),
                        );
                        continue;
                    };
                    if let Some(prev) = self.secrets.get(&w.name) {
                        diags.push(Diag::twice(
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
                    super::body::bad_shape(s, Context::Top, "a name and a block", diags);
                    return;
                };
                let mut env = Env::new();
                let mut seen = Seen::new();
                for inner in &block.settings {
                    let mut reader = Reader { diags: &mut *diags };
                    if !reader.admit(inner, Context::Environment, &mut seen) {
                        continue;
                    }
                    match inner.key.name.as_str() {
                        "env" => reader.env_block(inner, Context::Environment, &mut env),
                        _ => unknown_setting(inner, Context::Environment, diags),
                    }
                }
                if let Some(prev) = self.environments.get(&name.name) {
                    diags.push(Diag::twice(
                        Code::DuplicateName,
                        name.span,
                        prev.span,
                        &format!("environment `{}`", name.name),
                        "defined",
                        "merge the two blocks",
                    ));
                    return;
                }
                self.global.extend(env.keys().cloned());
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
                    super::body::bad_shape(s, Context::Top, "a name and a block", diags);
                    return;
                };
                let body = Reader { diags: &mut *diags }.body(block, Context::Template);
                if let Some(prev) = self.templates.get(&name.name) {
                    diags.push(Diag::twice(
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
            _ => unknown_setting(s, Context::Top, diags),
        }
    }

    /// The pipeline's name: its `pipeline` setting, else the main file's.
    fn name(&self) -> String {
        match &self.name {
            Some((n, _)) => n.clone(),
            None => {
                let path = &self.sources.get(self.root).path;
                path.file_stem()
                    .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy().into_owned())
            }
        }
    }

    /// The pipeline, with these stages.
    pub(super) fn into_pipeline(
        self,
        stages: IndexMap<String, Stage>,
        finally: IndexMap<String, Stage>,
    ) -> Pipeline {
        Pipeline {
            name: self.name(),
            env: self.env,
            secrets: self.secrets,
            environments: self.environments,
            templates: self.templates,
            stages,
            finally,
        }
    }

    /// Whether a template of that name is declared.
    pub(crate) fn has_template(&self, name: &str) -> bool {
        self.templates.contains_key(name)
    }

    /// The names declared at the top level: a stage's check depends on
    /// these and on the body of the template it uses, nothing else here.
    pub(crate) fn declared(&self) -> Declared {
        let mut global: Vec<String> = self.global.iter().cloned().collect();
        global.sort_unstable();
        Declared {
            global,
            env: self.env.keys().cloned().collect(),
            secrets: self.secrets.keys().cloned().collect(),
            templates: self.templates.keys().cloned().collect(),
        }
    }

    /// The pipeline without stages: what planning a stage reads of the
    /// rest (the language server plans stages one by one).
    pub(crate) fn shell(&self) -> Pipeline {
        Pipeline {
            name: self.name(),
            env: self.env.clone(),
            secrets: self.secrets.clone(),
            environments: self.environments.clone(),
            templates: IndexMap::new(),
            stages: IndexMap::new(),
            finally: IndexMap::new(),
        }
    }

    /// Every `${...}` of `text` names something in `scope`, and secrets are
    /// declared and only used in env values.
    pub(super) fn check_text(
        &self,
        text: &Text,
        scope: &HashSet<String>,
        in_env: bool,
        diags: &mut Vec<Diag>,
    ) {
        for r in text.refs() {
            match &r.var {
                Var::Name(n) => {
                    if !scope.contains(n) {
                        self.undefined(n, r.span, scope, diags);
                    }
                }
                Var::Secret(n) => {
                    if !in_env {
                        diags.push(
                            Diag::error(Code::SecretOutsideEnv, r.span, format!("secret `{n}` can only be used in an `env` value"))
                                .label("a secret here could leak into a command line or an image")
                                .help(format!("stages get secrets as environment variables: use `${n}` in the run script, or set `env {{ NAME = \"${{secret.{n}}}\" }}`")),
                        );
                    } else if !self.secrets.contains_key(n) {
                        let help = did_you_mean(n, self.secrets.keys().map(String::as_str))
                            .unwrap_or_else(|| {
                                format!("declare it at the top level: `secret {n}`")
                            });
                        diags.push(
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

    pub(super) fn undefined(
        &self,
        name: &str,
        span: Span,
        scope: &HashSet<String>,
        diags: &mut Vec<Diag>,
    ) {
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
            // In a fixed order, so that of two names as close as each
            // other the same is offered every time.
            let mut names: Vec<&str> = scope.iter().map(String::as_str).collect();
            names.sort_unstable();
            match closest(name, names.into_iter().chain(builtins)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("define it in an `env` block: `env {{ {name} = \"...\" }}`"),
            }
        };
        diags.push(
            Diag::error(
                Code::UndefinedVariable,
                span,
                format!("undefined variable `{name}`"),
            )
            .label("not defined")
            .help(help),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn of_names_as_close_the_first_by_name_is_offered() {
        let text =
            "env {\n  AC = \"c\"\n  AB = \"b\"\n}\nstage s {\n  image \"${AD}\"\n  run \"x\"\n}\n";
        // Each check hashes names its own way: ask a few times.
        for _ in 0..16 {
            let checked = crate::model::check_text(std::path::Path::new("p.pipeline"), text);
            let helps: Vec<_> = checked.diagnostics.iter().map(|d| d.help.clone()).collect();
            assert_eq!(helps, [Some("did you mean `AB`?".to_string())]);
        }
    }
}
