//! Reading generic settings into typed values, context by context. Which
//! keys each context has comes from the table in `schema.rs`; anything else
//! is reported with a "did you mean", or with where it belongs.

use std::time::Duration;

use indexmap::IndexMap;

use super::schema::{Context, usage};
use super::text::Text;
use super::types::*;
use crate::diagnostic::{Code, Diag, closest};
use crate::source::Span;
use crate::syntax::strings::raw_value;
use crate::syntax::{Block, Setting, Value};

/// Reports a setting that does not belong in `ctx`.
pub(super) fn unknown_setting(s: &Setting, ctx: Context, diags: &mut Vec<Diag>) {
    let key = s.key.name.as_str();
    if let Some(home) = Context::home_of(key) {
        diags.push(
            Diag::error(
                Code::MisplacedSetting,
                s.key.span,
                format!("`{key}` cannot be used {}", ctx.describe()),
            )
            .label("not allowed here")
            .help(format!("`{key}` belongs {}", home.home())),
        );
        return;
    }
    let mut d = Diag::error(
        Code::UnknownSetting,
        s.key.span,
        format!("unknown setting `{key}` {}", ctx.describe()),
    )
    .label("unknown setting");
    d = match closest(key, ctx.keys()) {
        Some(c) => d.help(format!("did you mean `{c}`?")),
        None => d.help(format!(
            "settings {} are {}",
            ctx.describe(),
            ctx.keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    diags.push(d);
}

/// A wrongly shaped setting: "`retry` expects a number".
pub(super) fn bad_shape(s: &Setting, ctx: Context, expected: &str, diags: &mut Vec<Diag>) {
    let (span, found) = found(s);
    diags.push(
        Diag::error(
            Code::BadValue,
            span,
            format!("`{}` expects {expected}", s.key.name),
        )
        .label(found)
        .help(format!("write `{}`", usage(&s.key.name, ctx))),
    );
}

fn found(s: &Setting) -> (Span, String) {
    if let Some(extra) = s.args.get(1) {
        return (extra.span(), format!("unexpected {}", extra.describe()));
    }
    if let Some(a) = s.args.first() {
        return (a.span(), format!("found {}", a.describe()));
    }
    if let Some(v) = &s.assign {
        return (v.span(), format!("found `= {}`", v.describe()));
    }
    if let Some(b) = &s.block {
        return (b.span, "found a block".into());
    }
    (s.key.span, "nothing given".into())
}

/// Reads values out of settings, collecting diagnostics.
pub(super) struct Reader<'d> {
    pub diags: &'d mut Vec<Diag>,
}

/// The settings of one block a block has at most once, read so far.
pub(super) type Seen<'s> = IndexMap<&'s str, Span>;

impl Reader<'_> {
    /// Whether `s` is to be read in a block of `ctx`: it belongs there, and
    /// it is not the second of a setting a block has once. Reports why not.
    pub fn admit<'s>(&mut self, s: &'s Setting, ctx: Context, seen: &mut Seen<'s>) -> bool {
        let key = s.key.name.as_str();
        let Some(spec) = ctx.setting(key) else {
            unknown_setting(s, ctx, self.diags);
            return false;
        };
        if !spec.repeatable {
            if let Some(first) = seen.get(key) {
                self.diags.push(duplicate_setting(s, *first));
                return false;
            }
            seen.insert(key, s.key.span);
        }
        true
    }

    /// `key "string"`
    /// One or more file globs: strings, separated by spaces or commas, or
    /// one list of them (`manifests`, `inputs`).
    pub fn globs(&mut self, s: &Setting, ctx: Context, what: &str) -> Vec<Text> {
        let items: &[Value] = match (s.args.as_slice(), &s.assign, &s.block) {
            ([Value::List { items, .. }], None, None) => items,
            (args, None, None)
                if !args.is_empty() && args.iter().all(|a| matches!(a, Value::Str(_))) =>
            {
                args
            }
            _ => {
                bad_shape(s, ctx, "one or more file globs", self.diags);
                return Vec::new();
            }
        };
        items
            .iter()
            .filter_map(|item| self.value_text(item, what))
            .collect()
    }

    pub fn text(&mut self, s: &Setting, ctx: Context) -> Option<Text> {
        match (s.args.as_slice(), &s.assign, &s.block) {
            ([Value::Str(v)], None, None) => Some(Text::from_str(v, self.diags)),
            _ => {
                bad_shape(s, ctx, "a string", self.diags);
                None
            }
        }
    }

    /// A value usable as text: strings, numbers and booleans.
    pub fn value_text(&mut self, v: &Value, what: &str) -> Option<Text> {
        match v {
            Value::Str(s) => Some(Text::from_str(s, self.diags)),
            Value::Number { value, span } => Some(Text::literal(value.to_string(), *span)),
            Value::Bool { value, span } => Some(Text::literal(value.to_string(), *span)),
            other => {
                let hint = match other {
                    Value::Word(w) => format!("write it as a string: \"{}\"", w.name),
                    _ => "write a string".into(),
                };
                self.diags.push(
                    Diag::error(
                        Code::BadValue,
                        other.span(),
                        format!("{what} must be a string"),
                    )
                    .label(format!("found {}", other.describe()))
                    .help(hint),
                );
                None
            }
        }
    }

    /// `key` alone, or `key true|false`.
    pub fn flag(&mut self, s: &Setting, ctx: Context) -> Option<bool> {
        match (s.args.as_slice(), &s.assign, &s.block) {
            ([], None, None) => Some(true),
            ([Value::Bool { value, .. }], None, None) => Some(*value),
            _ => {
                bad_shape(s, ctx, "nothing, `true` or `false`", self.diags);
                None
            }
        }
    }

    /// `key true|false`.
    pub fn boolean(&mut self, s: &Setting, ctx: Context) -> Option<bool> {
        match (s.args.as_slice(), &s.assign, &s.block) {
            ([Value::Bool { value, .. }], None, None) => Some(*value),
            _ => {
                bad_shape(s, ctx, "`true` or `false`", self.diags);
                None
            }
        }
    }

    /// `key N`, N ≥ 0.
    pub fn count(&mut self, s: &Setting, ctx: Context, max: u32) -> Option<u32> {
        match (s.args.as_slice(), &s.assign, &s.block) {
            ([Value::Number { value, span }], None, None) => match u32::try_from(*value) {
                Ok(n) if n <= max => Some(n),
                _ => {
                    self.diags.push(
                        Diag::error(
                            Code::BadValue,
                            *span,
                            format!("`{}` must be between 0 and {max}", s.key.name),
                        )
                        .label("out of range")
                        .help(format!("write `{}`", usage(&s.key.name, ctx))),
                    );
                    None
                }
            },
            _ => {
                bad_shape(s, ctx, "a number", self.diags);
                None
            }
        }
    }

    /// `key 10m`.
    pub fn duration(&mut self, s: &Setting, ctx: Context) -> Option<Duration> {
        match (s.args.as_slice(), &s.assign, &s.block) {
            ([v], None, None) => self.duration_value(v, &s.key.name),
            _ => {
                bad_shape(s, ctx, "a duration", self.diags);
                None
            }
        }
    }

    fn duration_value(&mut self, v: &Value, key: &str) -> Option<Duration> {
        let (text, span) = match v {
            Value::Duration { text, span } => (text.clone(), *span),
            Value::Str(s) => {
                let t = Text::from_str(s, self.diags);
                match t.as_literal() {
                    Some(lit) => (lit, s.span),
                    None => {
                        self.diags.push(bad_duration(
                            s.span,
                            key,
                            "a duration cannot use `${...}`",
                        ));
                        return None;
                    }
                }
            }
            Value::Number { value, span } => {
                self.diags.push(
                    bad_duration(*span, key, "a duration needs a unit").help(format!(
                        "write `{value}s` for seconds or `{value}m` for minutes"
                    )),
                );
                return None;
            }
            other => {
                self.diags.push(bad_duration(
                    other.span(),
                    key,
                    &format!("found {}", other.describe()),
                ));
                return None;
            }
        };
        match humantime::parse_duration(&text) {
            Ok(d) if d.subsec_nanos() != 0 => {
                self.diags
                    .push(bad_duration(span, key, "durations are whole seconds"));
                None
            }
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.diags.push(bad_duration(
                    span,
                    key,
                    "a duration must be longer than zero",
                ));
                None
            }
            Err(e) => {
                self.diags.push(bad_duration(span, key, &e.to_string()));
                None
            }
        }
    }

    /// `env { NAME = value ... }`, merged into `env`.
    pub fn env_block(&mut self, s: &Setting, ctx: Context, env: &mut Env) {
        let Some(block) = self.block_only(s, ctx) else {
            return;
        };
        for entry in &block.settings {
            let (Some(value), true, None) = (&entry.assign, entry.args.is_empty(), &entry.block)
            else {
                self.diags.push(
                    Diag::error(
                        Code::BadValue,
                        entry.key.span,
                        format!("expected `{} = \"value\"`", entry.key.name),
                    )
                    .label("an env entry is `NAME = value`")
                    .help("write `NAME = \"value\"`; env names are exported to stages as environment variables"),
                );
                continue;
            };
            let Some(text) = self.value_text(value, &format!("env `{}`", entry.key.name)) else {
                continue;
            };
            if let Some(prev) = env.get(&entry.key.name) {
                self.diags.push(
                    Diag::error(
                        Code::DuplicateName,
                        entry.key.span,
                        format!("env `{}` is set twice in this block", entry.key.name),
                    )
                    .label("set again here")
                    .with(prev.span, "first set here")
                    .help("remove one of them"),
                );
                continue;
            }
            env.insert(
                entry.key.name.clone(),
                EnvValue {
                    value: text,
                    span: entry.key.span,
                },
            );
        }
    }

    /// `key { ... }` with no arguments.
    fn block_only<'b>(&mut self, s: &'b Setting, ctx: Context) -> Option<&'b Block> {
        match (s.args.as_slice(), &s.assign, &s.block) {
            ([], None, Some(b)) => Some(b),
            _ => {
                bad_shape(s, ctx, "a block `{ ... }`", self.diags);
                None
            }
        }
    }

    /// A stage or template body.
    pub fn body(&mut self, block: &Block, ctx: Context) -> Body {
        let mut body = Body::default();
        let mut seen = Seen::new();
        for s in &block.settings {
            if !self.admit(s, ctx, &mut seen) {
                continue;
            }
            match s.key.name.as_str() {
                "image" => body.image = self.text(s, ctx),
                "run" => match (s.args.as_slice(), &s.assign, &s.block) {
                    ([Value::Str(v)], None, None) => {
                        let script = raw_value(v, self.diags);
                        body.run.push((script, v.span));
                    }
                    _ => bad_shape(s, ctx, "a string", self.diags),
                },
                "env" => self.env_block(s, ctx, &mut body.env),
                "matrix" => body.matrix = self.matrix(s, ctx),
                "service" => {
                    if let Some(svc) = self.service(s, ctx) {
                        if let Some(prev) = body.services.iter().find(|p| p.name == svc.name) {
                            self.diags.push(Diag::twice(
                                Code::DuplicateName,
                                svc.span,
                                prev.span,
                                &format!("service `{}`", svc.name),
                                "defined",
                                "give each service its own name",
                            ));
                        } else {
                            body.services.push(svc);
                        }
                    }
                }
                "retry" => body.retry = self.count(s, ctx, 100),
                "timeout" => body.timeout = self.duration(s, ctx),
                "allow-failure" => body.allow_failure = self.flag(s, ctx),
                "artifact" => body.artifacts.extend(self.text(s, ctx)),
                "cache" => body.caches.extend(self.text(s, ctx)),
                "inputs" => body.inputs.extend(self.globs(s, ctx, "an input glob")),
                "build" => body.build = self.build(s, ctx).map(Box::new),
                "release" => body.release = self.release(s, ctx).map(Box::new),
                "manual" => body.manual = self.text(s, ctx),
                "resources" => body.resources = self.resources(s, ctx),
                _ => unknown_setting(s, ctx, self.diags),
            }
        }
        body
    }

    fn matrix(&mut self, s: &Setting, ctx: Context) -> Option<IndexMap<String, Vec<MatrixValue>>> {
        let block = self.block_only(s, ctx)?;
        let mut matrix: IndexMap<String, Vec<MatrixValue>> = IndexMap::new();
        let mut spans: IndexMap<String, Span> = IndexMap::new();
        for entry in &block.settings {
            let Some(Value::List { items, span }) = &entry.assign else {
                self.diags.push(
                    Diag::error(
                        Code::BadValue,
                        entry.span,
                        format!("matrix `{}` expects a list", entry.key.name),
                    )
                    .label("expected `NAME = [...]`")
                    .help(format!("write `{} = [\"a\", \"b\"]`", entry.key.name)),
                );
                continue;
            };
            if let Some(prev) = spans.get(&entry.key.name) {
                self.diags.push(Diag::twice(
                    Code::DuplicateName,
                    entry.key.span,
                    *prev,
                    &format!("matrix `{}`", entry.key.name),
                    "set",
                    "put all values in one list",
                ));
                continue;
            }
            if items.is_empty() {
                self.diags.push(
                    Diag::error(
                        Code::BadValue,
                        *span,
                        format!("matrix `{}` has no values", entry.key.name),
                    )
                    .label("empty list")
                    .help("give at least one value, or remove the key"),
                );
                continue;
            }
            let mut values: Vec<MatrixValue> = Vec::new();
            for item in items {
                let value = match item {
                    Value::Number { value, .. } => Some(value.to_string()),
                    Value::Bool { value, .. } => Some(value.to_string()),
                    Value::Word(w) => Some(w.name.clone()),
                    Value::Str(st) => {
                        let t = Text::from_str(st, self.diags);
                        let lit = t.as_literal();
                        if lit.is_none() {
                            self.diags.push(
                                Diag::error(
                                    Code::BadValue,
                                    st.span,
                                    "matrix values cannot use `${...}`",
                                )
                                .label("interpolated")
                                .help("write the values out; use them elsewhere as `${NAME}`"),
                            );
                        }
                        lit
                    }
                    other => {
                        self.diags.push(
                            Diag::error(
                                Code::BadValue,
                                other.span(),
                                "matrix values are strings or numbers",
                            )
                            .label(format!("found {}", other.describe())),
                        );
                        None
                    }
                };
                let Some(value) = value else { continue };
                if let Some(prev) = values.iter().find(|v| v.value == value) {
                    self.diags.push(
                        Diag::error(
                            Code::DuplicateName,
                            item.span(),
                            format!("matrix value `{value}` is listed twice"),
                        )
                        .label("listed again here")
                        .with(prev.span, "first listed here"),
                    );
                    continue;
                }
                values.push(MatrixValue {
                    value,
                    span: item.span(),
                });
            }
            spans.insert(entry.key.name.clone(), entry.key.span);
            matrix.insert(entry.key.name.clone(), values);
        }
        Some(matrix)
    }

    fn service(&mut self, s: &Setting, ctx: Context) -> Option<Service> {
        let (Some(Value::Word(name)), Some(Value::Str(image)), 2, None) =
            (s.args.first(), s.args.get(1), s.args.len(), &s.assign)
        else {
            bad_shape(s, ctx, "a name and an image", self.diags);
            return None;
        };
        let mut env = Env::new();
        let mut ready = None;
        if let Some(block) = &s.block {
            let mut seen = Seen::new();
            for inner in &block.settings {
                if !self.admit(inner, Context::Service, &mut seen) {
                    continue;
                }
                match inner.key.name.as_str() {
                    "env" => self.env_block(inner, Context::Service, &mut env),
                    "ready" => ready = self.text(inner, Context::Service),
                    _ => unknown_setting(inner, Context::Service, self.diags),
                }
            }
        }
        Some(Service {
            name: name.name.clone(),
            span: name.span,
            image: Text::from_str(image, self.diags),
            env,
            ready,
        })
    }

    /// `resources { cpu "2" memory "4Gi" }`; literal quantities are
    /// checked here, interpolated ones when planned.
    fn resources(&mut self, s: &Setting, ctx: Context) -> Option<Resources> {
        let (Some(block), [], None) = (&s.block, s.args.as_slice(), &s.assign) else {
            bad_shape(s, ctx, "a block", self.diags);
            return None;
        };
        let mut resources = Resources::default();
        let mut seen = Seen::new();
        for inner in &block.settings {
            if !self.admit(inner, Context::Resources, &mut seen) {
                continue;
            }
            let key = inner.key.name.as_str();
            let value = match (inner.args.as_slice(), &inner.assign, &inner.block) {
                ([v], None, None) => self.value_text(v, key),
                _ => {
                    bad_shape(inner, Context::Resources, "a quantity", self.diags);
                    None
                }
            };
            let Some(value) = value else { continue };
            if let Some(literal) = value.as_literal() {
                let read = match key {
                    "cpu" => crate::plan::resources::cpu_nanos(&literal).map(drop),
                    _ => crate::plan::resources::memory_bytes(&literal).map(drop),
                };
                if let Err(why) = read {
                    self.diags.push(
                        Diag::error(Code::BadValue, value.span, why)
                            .label(format!("not a {key} quantity"))
                            .help(format!("write `{}`", usage(key, Context::Resources))),
                    );
                    continue;
                }
            }
            match key {
                "cpu" => resources.cpu = Some(value),
                "memory" => resources.memory = Some(value),
                _ => unknown_setting(inner, Context::Resources, self.diags),
            }
        }
        Some(resources)
    }

    fn build(&mut self, s: &Setting, ctx: Context) -> Option<Build> {
        let context = match (s.args.as_slice(), &s.assign) {
            ([], None) => Text::literal(".", s.key.span),
            ([Value::Str(c)], None) => Text::from_str(c, self.diags),
            _ => {
                bad_shape(s, ctx, "a context folder and a block", self.diags);
                return None;
            }
        };
        let mut build = Build {
            context,
            dockerfile: None,
            target: None,
            tags: Vec::new(),
            labels: IndexMap::new(),
            args: IndexMap::new(),
            push: false,
            span: s.span,
        };
        let Some(block) = &s.block else {
            return Some(build);
        };
        let mut seen = Seen::new();
        for inner in &block.settings {
            if !self.admit(inner, Context::Build, &mut seen) {
                continue;
            }
            match inner.key.name.as_str() {
                "dockerfile" => build.dockerfile = self.text(inner, Context::Build),
                "target" => build.target = self.text(inner, Context::Build),
                "tag" => build.tags.extend(self.text(inner, Context::Build)),
                "push" => build.push = self.boolean(inner, Context::Build).unwrap_or(false),
                "label" => {
                    if let Some((k, v)) = self.pair(inner, Context::Build) {
                        build.labels.insert(k, v);
                    }
                }
                "arg" => {
                    if let Some((k, v)) = self.pair(inner, Context::Build) {
                        build.args.insert(k, v);
                    }
                }
                _ => unknown_setting(inner, Context::Build, self.diags),
            }
        }
        Some(build)
    }

    /// `key "name" = "value"`.
    fn pair(&mut self, s: &Setting, ctx: Context) -> Option<(String, Text)> {
        match (s.args.as_slice(), &s.assign, &s.block) {
            ([Value::Str(k)], Some(v), None) => {
                let key = Text::from_str(k, self.diags);
                let Some(key) = key.as_literal() else {
                    self.diags.push(
                        Diag::error(
                            Code::BadValue,
                            k.span,
                            format!("a `{}` name cannot use `${{...}}`", s.key.name),
                        )
                        .label("interpolated"),
                    );
                    return None;
                };
                let value = self.value_text(v, &format!("`{}` value", s.key.name))?;
                Some((key, value))
            }
            _ => {
                bad_shape(s, ctx, "`\"name\" = \"value\"`", self.diags);
                None
            }
        }
    }

    fn release(&mut self, s: &Setting, ctx: Context) -> Option<Release> {
        let (Some(Value::Word(name)), 1, None, Some(block)) =
            (s.args.first(), s.args.len(), &s.assign, &s.block)
        else {
            bad_shape(s, ctx, "a release name and a block", self.diags);
            return None;
        };
        let mut release = Release {
            name: name.name.clone(),
            namespace: None,
            manifests: Vec::new(),
            images: IndexMap::new(),
            wait: Release::DEFAULT_WAIT,
            rollback: Rollback::OnFailure,
            prune: false,
            history: Release::DEFAULT_HISTORY,
            span: s.span,
        };
        let mut seen = Seen::new();
        let mut manifests_span = None;
        for inner in &block.settings {
            if !self.admit(inner, Context::Release, &mut seen) {
                continue;
            }
            match inner.key.name.as_str() {
                "namespace" => release.namespace = self.text(inner, Context::Release),
                "manifests" => {
                    manifests_span = Some(inner.key.span);
                    let globs = self.globs(inner, Context::Release, "a manifest glob");
                    release.manifests.extend(globs);
                }
                "image" => {
                    if let Some((container, image)) = self.pair(inner, Context::Release) {
                        release.images.insert(container, image);
                    }
                }
                "wait" => {
                    if let Some(d) = self.duration(inner, Context::Release) {
                        release.wait = d;
                    }
                }
                "rollback" => match inner.args.as_slice() {
                    [Value::Word(w)] if inner.assign.is_none() && inner.block.is_none() => {
                        match w.name.as_str() {
                            "on-failure" => release.rollback = Rollback::OnFailure,
                            "never" => release.rollback = Rollback::Never,
                            other => self.diags.push(
                                Diag::error(
                                    Code::BadValue,
                                    w.span,
                                    format!("unknown rollback policy `{other}`"),
                                )
                                .label("expected `on-failure` or `never`")
                                .help(
                                    closest(other, ["on-failure", "never"]).map_or_else(
                                        || "write `rollback on-failure` or `rollback never`".into(),
                                        |c| format!("did you mean `{c}`?"),
                                    ),
                                ),
                            ),
                        }
                    }
                    _ => bad_shape(
                        inner,
                        Context::Release,
                        "`on-failure` or `never`",
                        self.diags,
                    ),
                },
                "prune" => release.prune = self.boolean(inner, Context::Release).unwrap_or(false),
                "history" => {
                    if let Some(n) = self.count(inner, Context::Release, 1000) {
                        if n == 0 {
                            self.diags.push(
                                Diag::error(
                                    Code::BadValue,
                                    inner.span,
                                    "`history` must keep at least 1 revision",
                                )
                                .label("zero")
                                .help("write `history 10`"),
                            );
                        } else {
                            release.history = n;
                        }
                    }
                }
                _ => unknown_setting(inner, Context::Release, self.diags),
            }
        }
        if release.manifests.is_empty() && manifests_span.is_none() {
            self.diags.push(
                Diag::error(
                    Code::MissingValue,
                    name.span,
                    format!("release `{}` has no `manifests`", name.name),
                )
                .label("nothing to apply")
                .help("add `manifests \"deploy/k8s/*.yaml\"` to the release block"),
            );
        }
        Some(release)
    }
}

pub(super) fn duplicate_setting(s: &Setting, first: Span) -> Diag {
    Diag::twice(
        Code::DuplicateSetting,
        s.key.span,
        first,
        &format!("`{}`", s.key.name),
        "set",
        "remove one of them",
    )
}

fn bad_duration(span: Span, key: &str, why: &str) -> Diag {
    Diag::error(
        Code::BadDuration,
        span,
        format!("bad duration for `{key}`: {why}"),
    )
    .label("not a duration")
    .help("durations are written like `30s`, `10m` or `1h30m`")
}
