//! Name resolution for `${...}`: layered scopes, resolved lazily and once.
//!
//! The global scope is pipeline env, then the chosen environment's env, then
//! `--set`. A stage's scope adds its env (template's, then its own), its
//! matrix values, and `--set` again on top. A value refers to names at the top
//! of its scope, except to its own name, which means the layer below
//! (`PATH = "${PATH}:/opt/bin"`). Secrets stay as `${secret.NAME}`
//! placeholders and mark whatever contains them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;

use super::{GitContext, Shared};
use crate::diagnostic::{Code, Diag};
use crate::model::{Env, Environment, GitField, Pipeline, Stage, Text, TextPiece, Var};
use crate::source::Span;

/// How many env values may refer through each other; deeper chains are
/// reported rather than followed, since resolution recurses.
const MAX_DEPTH: usize = 64;

/// The longest an expanded value may get: `B = "${A}${A}"` doubles, and a
/// few dozen such lines would otherwise fill memory.
const MAX_VALUE_BYTES: usize = 1 << 20;

pub(crate) struct Context {
    pub environment: String,
    pub git: GitContext,
}

impl Context {
    fn git(&self, f: GitField) -> String {
        match f {
            GitField::Sha => self.git.sha.clone(),
            GitField::ShortSha => self.git.short_sha.clone(),
            GitField::Branch => self.git.branch.clone(),
            GitField::Tag => self.git.tag.clone(),
        }
        .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// With `${secret.NAME}` placeholders where secrets go.
    pub value: Shared,
    pub secret: bool,
}

/// What a secret's value shows as, shared.
static MASKED: std::sync::LazyLock<Shared> = std::sync::LazyLock::new(|| Shared::from(super::MASK));

impl Resolved {
    pub(crate) fn shown(&self) -> Shared {
        if self.secret {
            MASKED.clone()
        } else {
            self.value.clone()
        }
    }
}

enum Layer<'a> {
    Env(&'a Env),
    Literal(&'a IndexMap<String, String>),
}

impl Layer<'_> {
    fn contains(&self, name: &str) -> bool {
        match self {
            Layer::Env(e) => e.contains_key(name),
            Layer::Literal(m) => m.contains_key(name),
        }
    }
}

pub(crate) struct Scope<'a> {
    parent: Option<&'a Scope<'a>>,
    layers: Vec<Layer<'a>>,
    ctx: &'a Context,
    memo: RefCell<HashMap<(usize, String), Resolved>>,
    visiting: RefCell<HashSet<(usize, String)>>,
    /// The global scope's every name, resolved once, in declaration order:
    /// what stage scopes fall back to.
    resolved: IndexMap<Shared, Resolved>,
    /// The names a stage scope looked up in the global one: what planning
    /// the stage read of the pipeline's values.
    asked: RefCell<Vec<String>>,
}

impl<'a> Scope<'a> {
    pub fn global(
        pipeline: &'a Pipeline,
        environment: Option<&'a Environment>,
        set: &'a IndexMap<String, String>,
        ctx: &'a Context,
        diags: &mut Vec<Diag>,
    ) -> Self {
        let mut layers = vec![Layer::Env(&pipeline.env)];
        if let Some(e) = environment {
            layers.push(Layer::Env(&e.env));
        }
        layers.push(Layer::Literal(set));
        let mut scope = Scope {
            parent: None,
            layers,
            ctx,
            memo: RefCell::default(),
            visiting: RefCell::default(),
            resolved: IndexMap::new(),
            asked: RefCell::default(),
        };
        // Resolve everything once, so stage scopes share the work and env
        // cycles are reported once.
        let mut resolved = IndexMap::new();
        for name in scope.own_names() {
            if let Some(r) = scope.lookup(&name, usize::MAX, Span::default(), diags) {
                resolved.insert(Shared::from(name), r);
            }
        }
        scope.resolved = resolved;
        scope
    }

    /// A stage cell's scope on top of this global one.
    pub fn stage_scope(
        &'a self,
        stage: &'a Stage,
        matrix: &'a IndexMap<String, String>,
        ctx: &'a Context,
    ) -> Scope<'a> {
        let mut layers = vec![Layer::Env(&stage.env), Layer::Literal(matrix)];
        if let Some(Layer::Literal(set)) = self.layers.last() {
            layers.push(Layer::Literal(set));
        }
        Scope {
            parent: Some(self),
            layers,
            ctx,
            memo: RefCell::default(),
            visiting: RefCell::default(),
            resolved: IndexMap::new(),
            asked: RefCell::default(),
        }
    }

    /// Every name of the global scope resolved, in declaration order.
    pub(crate) fn resolved(&self) -> &IndexMap<Shared, Resolved> {
        &self.resolved
    }

    /// Whether every name of the global scope resolved (none is in a
    /// cycle, or nested too deeply).
    pub(crate) fn complete(&self) -> bool {
        self.own_names().len() == self.resolved.len()
    }

    /// The names this stage scope looked up in the global one.
    pub(crate) fn asked(&self) -> Vec<String> {
        self.asked.take()
    }

    /// The names this scope's own layers define, in declaration order.
    fn own_names(&self) -> Vec<String> {
        let mut out: IndexMap<&str, ()> = IndexMap::new();
        for l in &self.layers {
            match l {
                Layer::Env(e) => out.extend(e.keys().map(|k| (k.as_str(), ()))),
                Layer::Literal(m) => out.extend(m.keys().map(|k| (k.as_str(), ()))),
            }
        }
        out.into_keys().map(str::to_string).collect()
    }

    /// The value of `name` as seen from below layer `below` (`usize::MAX`:
    /// the top of this scope).
    fn lookup(
        &self,
        name: &str,
        below: usize,
        at: Span,
        diags: &mut Vec<Diag>,
    ) -> Option<Resolved> {
        let top = below.min(self.layers.len());
        for i in (0..top).rev() {
            if self.layers[i].contains(name) {
                return self.resolve_in(i, name, at, diags);
            }
        }
        let parent = self.parent?;
        self.asked.borrow_mut().push(name.to_string());
        parent.lookup(name, usize::MAX, at, diags)
    }

    fn resolve_in(
        &self,
        layer: usize,
        name: &str,
        at: Span,
        diags: &mut Vec<Diag>,
    ) -> Option<Resolved> {
        let key = (layer, name.to_string());
        if let Some(r) = self.memo.borrow().get(&key) {
            return Some(r.clone());
        }
        let resolved = match &self.layers[layer] {
            Layer::Literal(m) => Resolved {
                value: Shared::from(m.get(name).map_or("", String::as_str)),
                secret: false,
            },
            Layer::Env(env) => {
                let def = env.get(name)?;
                if self.visiting.borrow().len() >= MAX_DEPTH {
                    diags.push(
                        Diag::error(
                            Code::EnvCycle,
                            at,
                            format!("env `{name}` is nested too deeply"),
                        )
                        .label(format!(
                            "more than {MAX_DEPTH} env values refer through each other here"
                        ))
                        .with(def.span, "defined here")
                        .help("refer to the final value directly"),
                    );
                    return None;
                }
                if !self.visiting.borrow_mut().insert(key.clone()) {
                    diags.push(
                        Diag::error(Code::EnvCycle, at, format!("env `{name}` refers to itself"))
                            .label("used here")
                            .with(def.span, "defined here")
                            .help("an env value cannot depend on itself through other values"),
                    );
                    return None;
                }
                let r = self.expand(&def.value, Some((layer, name)), diags);
                self.visiting.borrow_mut().remove(&key);
                r
            }
        };
        self.memo.borrow_mut().insert(key, resolved.clone());
        Some(resolved)
    }

    /// Fills in a text. `own` is the env entry being defined, whose own name
    /// refers to the layer below it.
    fn expand(&self, text: &Text, own: Option<(usize, &str)>, diags: &mut Vec<Diag>) -> Resolved {
        let mut value = String::new();
        let mut secret = false;
        for piece in &text.pieces {
            match piece {
                TextPiece::Lit(t) => value.push_str(t),
                TextPiece::Ref(r) => match &r.var {
                    Var::Name(n) => {
                        let below = match own {
                            Some((layer, own_name)) if own_name == n => layer,
                            _ => usize::MAX,
                        };
                        // An unresolvable name was reported by the checker
                        // (or is an environment-only value with no `--env`).
                        if let Some(res) = self.lookup(n, below, r.span, diags) {
                            if value.len() + res.value.len() > MAX_VALUE_BYTES {
                                diags.push(
                                    Diag::error(Code::BadValue, r.span, "this value expands to more than 1 MiB")
                                        .label(format!("`{n}` is {} bytes long", res.value.len()))
                                        .help("env values that repeat each other grow exponentially; simplify them"),
                                );
                                break;
                            }
                            value.push_str(&res.value);
                            secret |= res.secret;
                        }
                    }
                    Var::Secret(s) => {
                        value.push_str(&secret_placeholder(s));
                        secret = true;
                    }
                    Var::Environment => value.push_str(&self.ctx.environment),
                    Var::Git(f) => value.push_str(&self.ctx.git(*f)),
                },
            }
        }
        Resolved {
            value: Shared::from(value),
            secret,
        }
    }

    /// A text outside `env`: a secret here would leak, so it is an error.
    pub fn interpolate(&self, text: &Text, diags: &mut Vec<Diag>) -> String {
        let r = self.expand(text, None, diags);
        if r.secret {
            let names: Vec<String> = text
                .refs()
                .filter_map(|v| match &v.var {
                    Var::Name(n) => Some(format!("`{n}`")),
                    _ => None,
                })
                .collect();
            diags.push(
                Diag::error(Code::SecretOutsideEnv, text.span, "this value would contain a secret")
                    .label(format!("{} holds a secret", names.join(", ")))
                    .help("secrets reach stages only as environment variables; use them from the run script"),
            );
            return super::MASK.into();
        }
        r.value.to_string()
    }

    /// The value of a name at the top of this scope.
    pub fn get(&self, name: &str) -> Option<Resolved> {
        self.lookup(name, usize::MAX, Span::default(), &mut Vec::new())
    }

    /// Everything a stage cell exports: all visible env names and matrix
    /// values (shown, secrets masked), and the secret templates.
    pub fn stage_env(
        &self,
        diags: &mut Vec<Diag>,
    ) -> (IndexMap<Shared, Shared>, IndexMap<Shared, Shared>) {
        let mut env = IndexMap::new();
        let mut secret_env = IndexMap::new();
        let mut add = |name: Shared, r: &Resolved| {
            if r.secret {
                secret_env.insert(name.clone(), r.value.clone());
            }
            env.insert(name, r.shown());
        };
        if let Some(parent) = self.parent {
            for (name, r) in &parent.resolved {
                add(name.clone(), r);
            }
        }
        for name in self.own_names() {
            if let Some(r) = self.lookup(&name, usize::MAX, Span::default(), diags) {
                add(Shared::from(name), &r);
            }
        }
        (env, secret_env)
    }

    /// A service's own env, resolved in this scope.
    pub fn env_map(
        &self,
        e: &Env,
        diags: &mut Vec<Diag>,
    ) -> (IndexMap<Shared, Shared>, IndexMap<Shared, Shared>) {
        let mut env = IndexMap::new();
        let mut secret_env = IndexMap::new();
        for (name, v) in e {
            let r = self.expand(&v.value, None, diags);
            let name = Shared::from(name.as_str());
            if r.secret {
                secret_env.insert(name.clone(), r.value.clone());
            }
            env.insert(name, r.shown());
        }
        (env, secret_env)
    }
}

/// Where a secret's value goes in a planned env value: `${secret.NAME}`,
/// as `${...}` names it ([`crate::model::Var::Secret`]). The plan keeps
/// placeholders; [`fill_secrets`] is the one place they are filled in.
fn secret_placeholder(name: &str) -> String {
    format!("${{secret.{name}}}")
}

/// A planned value with each `${secret.NAME}` placeholder replaced by
/// `value(NAME)`; a placeholder `value` does not know is kept. Filled in
/// one pass, so a secret's value is never read for placeholders itself.
pub fn fill_secrets<'v>(template: &str, mut value: impl FnMut(&str) -> Option<&'v str>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${secret.") {
        let after = &rest[start + "${secret.".len()..];
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..start]);
        let name = &after[..end];
        match value(name) {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[start..start + "${secret.".len() + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The secrets a planned value's placeholders name, in order.
pub fn secret_names(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${secret.") {
        let after = &rest[start + "${secret.".len()..];
        let Some(end) = after.find('}') else { break };
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    names
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_in_one_pass_and_unknown_ones_kept() {
        let t = format!("a{}b{}c", secret_placeholder("X"), secret_placeholder("Y"));
        // X's value looks like a placeholder itself: it is not filled again.
        let filled = fill_secrets(&t, |n| (n == "X").then_some("${secret.Y}"));
        assert_eq!(filled, "a${secret.Y}b${secret.Y}c");
        assert_eq!(fill_secrets(&t, |_| Some("***")), "a***b***c");
        assert_eq!(secret_names(&t), ["X", "Y"]);
        assert_eq!(
            fill_secrets("no ${secret.open", |_| Some("v")),
            "no ${secret.open"
        );
    }
}
