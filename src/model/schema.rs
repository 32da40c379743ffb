//! Every setting of the language in one table: where it may be written, how
//! it is written, whether it may be written twice, and what its block holds.
//! The checker, its help lines, its duplicate check and the language
//! server's completion all read this table, so a new setting is one line
//! here (and its reader in `body.rs` or `top.rs`; a test fails until it has
//! one).

use std::sync::LazyLock;

/// Where a setting is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Top,
    Stage,
    Template,
    Environment,
    Service,
    Build,
    Release,
    Resources,
}

/// What a setting's block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inside {
    /// No block, or none the editor completes in.
    Nothing,
    /// The settings of a context: `build { ... }`.
    Settings(Context),
    /// Names of one's own, `NAME = value`: `env { ... }`, `matrix { ... }`.
    Names,
}

/// One setting in one or more contexts.
#[derive(Debug)]
pub(crate) struct SettingSpec {
    /// The word that starts the line.
    pub(crate) key: &'static str,
    /// Where it may be written.
    pub(crate) contexts: &'static [Context],
    /// How it is written, for help lines: "write `retry 2`".
    pub(crate) usage: &'static str,
    /// Whether a block may have it more than once (each `run` adds a line);
    /// a second of any other is reported.
    pub(crate) repeatable: bool,
    pub(crate) inside: Inside,
}

impl SettingSpec {
    /// A setting a block has at most once.
    const fn once(key: &'static str, contexts: &'static [Context], usage: &'static str) -> Self {
        SettingSpec {
            key,
            contexts,
            usage,
            repeatable: false,
            inside: Inside::Nothing,
        }
    }

    /// A setting a block may have any number of times.
    const fn many(key: &'static str, contexts: &'static [Context], usage: &'static str) -> Self {
        SettingSpec {
            repeatable: true,
            ..Self::once(key, contexts, usage)
        }
    }

    /// Its block holds the settings of `context`.
    const fn opens(self, context: Context) -> Self {
        SettingSpec {
            inside: Inside::Settings(context),
            ..self
        }
    }

    /// Its block holds `NAME = value` lines.
    const fn names(self) -> Self {
        SettingSpec {
            inside: Inside::Names,
            ..self
        }
    }
}

const TOP: &[Context] = &[Context::Top];
const BODY: &[Context] = &[Context::Stage, Context::Template];
const ENV_HOLDERS: &[Context] = &[Context::Environment, Context::Service];
const SERVICE: &[Context] = &[Context::Service];
const BUILD: &[Context] = &[Context::Build];
const RESOURCES: &[Context] = &[Context::Resources];
const RELEASE: &[Context] = &[Context::Release];

const ENV: &str = "env { NAME = \"value\" }";

/// The settings. A context lists its own in this order (in "settings in a
/// stage are ..." help and in completion).
pub(crate) static SETTINGS: &[SettingSpec] = &[
    // At the top level. `include` is read by the loader, `stage` and
    // `finally` are declarations with their own grammar.
    SettingSpec::once("pipeline", TOP, "pipeline \"name\""),
    SettingSpec::many("include", TOP, "include \"ci/common.pipeline\""),
    SettingSpec::many("env", TOP, ENV).names(),
    SettingSpec::many("secret", TOP, "secret NPM_TOKEN"),
    SettingSpec::many(
        "environment",
        TOP,
        "environment staging { env { REPLICAS = \"1\" } }",
    )
    .opens(Context::Environment),
    SettingSpec::many(
        "template",
        TOP,
        "template node { image \"node:20-alpine\" }",
    )
    .opens(Context::Template),
    SettingSpec::many("stage", TOP, "stage test after build { run \"npm test\" }")
        .opens(Context::Stage),
    SettingSpec::many("finally", TOP, "finally notify { run \"echo done\" }").opens(Context::Stage),
    // In stages and templates.
    SettingSpec::once("image", BODY, "image \"node:20-alpine\""),
    SettingSpec::many("run", BODY, "run \"npm test\""),
    SettingSpec::many("env", BODY, ENV).names(),
    SettingSpec::once("matrix", BODY, "matrix { NODE = [\"18\", \"20\"] }").names(),
    SettingSpec::many(
        "service",
        BODY,
        "service db \"postgres:16\" { env { POSTGRES_PASSWORD = \"test\" } }",
    )
    .opens(Context::Service),
    SettingSpec::once("retry", BODY, "retry 2"),
    SettingSpec::once("timeout", BODY, "timeout 10m"),
    SettingSpec::once("allow-failure", BODY, "allow-failure"),
    SettingSpec::many("artifact", BODY, "artifact \"coverage/\""),
    SettingSpec::many("cache", BODY, "cache \"node_modules\""),
    SettingSpec::many("inputs", BODY, "inputs \"src/**\", \"package.json\""),
    SettingSpec::once("build", BODY, "build \".\" { tag \"${IMAGE}\" }").opens(Context::Build),
    SettingSpec::once(
        "release",
        BODY,
        "release chat { manifests \"deploy/k8s/*.yaml\" }",
    )
    .opens(Context::Release),
    SettingSpec::once("manual", BODY, "manual \"Release to ${environment}?\""),
    SettingSpec::once("resources", BODY, "resources { memory \"4Gi\" }").opens(Context::Resources),
    // In a `resources` block.
    SettingSpec::once("cpu", RESOURCES, "cpu \"2\""),
    SettingSpec::once("memory", RESOURCES, "memory \"4Gi\""),
    // In `environment` and `service` blocks.
    SettingSpec::many("env", ENV_HOLDERS, ENV).names(),
    // In a `service` block.
    SettingSpec::once("ready", SERVICE, "ready \"pg_isready -U postgres\""),
    // In a `build` block.
    SettingSpec::once("dockerfile", BUILD, "dockerfile \"Dockerfile\""),
    SettingSpec::once("target", BUILD, "target \"release\""),
    SettingSpec::many("tag", BUILD, "tag \"${IMAGE}\""),
    SettingSpec::many(
        "label",
        BUILD,
        "label \"org.opencontainers.image.title\" = \"chat\"",
    ),
    SettingSpec::many("arg", BUILD, "arg \"NODE_VERSION\" = \"20\""),
    SettingSpec::once("push", BUILD, "push true"),
    // In a `release` block.
    SettingSpec::once("namespace", RELEASE, "namespace \"chat-${environment}\""),
    SettingSpec::many("manifests", RELEASE, "manifests \"deploy/k8s/*.yaml\""),
    SettingSpec::many(
        "image",
        RELEASE,
        "image \"container\" = \"registry/image:tag\"",
    ),
    SettingSpec::once("wait", RELEASE, "wait 5m"),
    SettingSpec::once("rollback", RELEASE, "rollback on-failure"),
    SettingSpec::once("prune", RELEASE, "prune true"),
    SettingSpec::once("history", RELEASE, "history 10"),
];

/// Each context's settings, in table order; indexed by `Context as usize`.
static BY_CONTEXT: LazyLock<Vec<Vec<&'static SettingSpec>>> = LazyLock::new(|| {
    Context::ALL
        .iter()
        .map(|ctx| {
            SETTINGS
                .iter()
                .filter(|s| s.contexts.contains(ctx))
                .collect()
        })
        .collect()
});

impl Context {
    pub(crate) const ALL: [Context; 8] = [
        Context::Top,
        Context::Stage,
        Context::Template,
        Context::Environment,
        Context::Service,
        Context::Build,
        Context::Release,
        Context::Resources,
    ];

    /// Where a misplaced setting belongs: the first of these that has it.
    /// (A template has what a stage has.)
    const HOMES: [Context; 7] = [
        Context::Top,
        Context::Stage,
        Context::Environment,
        Context::Build,
        Context::Release,
        Context::Service,
        Context::Resources,
    ];

    /// The settings allowed here, in table order.
    pub(crate) fn settings(self) -> &'static [&'static SettingSpec] {
        BY_CONTEXT.get(self as usize).map_or(&[], Vec::as_slice)
    }

    /// The keys allowed here, in table order.
    pub(crate) fn keys(self) -> impl Iterator<Item = &'static str> + Clone {
        self.settings().iter().map(|s| s.key)
    }

    /// The setting `key` here, if it is allowed here.
    pub(crate) fn setting(self, key: &str) -> Option<&'static SettingSpec> {
        self.settings().iter().copied().find(|s| s.key == key)
    }

    /// Where a setting that is not allowed here belongs, if anywhere.
    pub(crate) fn home_of(key: &str) -> Option<Context> {
        Self::HOMES.into_iter().find(|c| c.setting(key).is_some())
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Context::Top => "at the top level",
            Context::Stage => "in a stage",
            Context::Template => "in a template",
            Context::Environment => "in an `environment` block",
            Context::Service => "in a `service` block",
            Context::Build => "in a `build` block",
            Context::Release => "in a `release` block",
            Context::Resources => "in a `resources` block",
        }
    }

    pub(crate) fn home(self) -> &'static str {
        match self {
            Context::Top => "at the top level",
            Context::Stage | Context::Template => "in a stage or template",
            Context::Environment | Context::Service => "in `environment` and `service` blocks",
            Context::Build => "in a `build` block",
            Context::Release => "in a `release` block",
            Context::Resources => "in a `resources` block",
        }
    }
}

/// What the block of a setting `key` holds, wherever it is written.
pub(crate) fn inside(key: &str) -> Inside {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .map_or(Inside::Nothing, |s| s.inside)
}

/// How `key` is written in `ctx`, for help lines; how it is written
/// anywhere when `ctx` does not have it.
pub(crate) fn usage(key: &str, ctx: Context) -> &'static str {
    ctx.setting(key)
        .or_else(|| SETTINGS.iter().find(|s| s.key == key))
        .map_or("", |s| s.usage)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::diagnostic::Code;

    #[test]
    fn each_key_is_in_a_context_once() {
        for ctx in Context::ALL {
            let keys: Vec<&str> = ctx.keys().collect();
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[..i].contains(k), "`{k}` twice {}", ctx.describe());
            }
            assert!(!keys.is_empty());
        }
        for s in SETTINGS {
            assert!(!s.contexts.is_empty() && !s.usage.is_empty(), "{s:?}");
            assert!(s.usage.starts_with(s.key), "{s:?}");
            if let Inside::Settings(inner) = s.inside {
                assert!(!inner.keys().collect::<Vec<_>>().is_empty(), "{}", s.key);
            }
        }
    }

    /// `key` written in `ctx`, in a pipeline that is otherwise fine.
    fn written_in(ctx: Context, key: &str) -> String {
        let body = format!("  {key}\n  image \"i\"\n  run \"r\"\n");
        match ctx {
            Context::Top => format!("{key}\n"),
            Context::Stage => format!("stage s {{\n  {key}\n  run \"r\"\n}}\n"),
            Context::Template => {
                format!("template t {{\n{body}}}\nstage s uses t {{\n  run \"r\"\n}}\n")
            }
            Context::Environment => format!("environment e {{\n  {key}\n}}\n"),
            Context::Service => {
                format!("stage s {{\n  service db \"d\" {{\n    {key}\n  }}\n  run \"r\"\n}}\n")
            }
            Context::Build => format!("stage s {{\n  build \".\" {{\n    {key}\n  }}\n}}\n"),
            Context::Release => {
                format!("stage s {{\n  release r {{\n    manifests \"m\"\n    {key}\n  }}\n}}\n")
            }
            Context::Resources => {
                format!("stage s {{\n  resources {{\n    {key}\n  }}\n  run \"r\"\n}}\n")
            }
        }
    }

    fn refused(ctx: Context, key: &str) -> Vec<String> {
        let text = written_in(ctx, key);
        crate::model::check_text(Path::new("/nowhere/main.pipeline"), &text)
            .diagnostics
            .into_iter()
            .filter(|d| matches!(d.code, Code::UnknownSetting | Code::MisplacedSetting))
            .map(|d| format!("{text}: {}", d.message))
            .collect()
    }

    /// A line in the table without a reader is reported as unknown: every
    /// key is read in every context the table allows it in.
    #[test]
    fn every_setting_has_a_reader_where_it_is_allowed() {
        for ctx in Context::ALL {
            for key in ctx.keys() {
                let refused = refused(ctx, key);
                assert!(
                    refused.is_empty(),
                    "`{key}` has no reader {}: {refused:?}",
                    ctx.describe()
                );
            }
            assert_eq!(refused(ctx, "no-such-setting").len(), 1, "{ctx:?}");
        }
    }

    #[test]
    fn blocks_know_what_they_hold() {
        assert_eq!(inside("build"), Inside::Settings(Context::Build));
        assert_eq!(inside("finally"), Inside::Settings(Context::Stage));
        assert_eq!(inside("matrix"), Inside::Names);
        assert_eq!(inside("retry"), Inside::Nothing);
        assert_eq!(inside("nope"), Inside::Nothing);
        assert_eq!(Context::home_of("image"), Some(Context::Stage));
        assert_eq!(Context::home_of("env"), Some(Context::Top));
        assert_eq!(
            usage("image", Context::Release),
            "image \"container\" = \"registry/image:tag\""
        );
        assert_eq!(
            usage("image", Context::Template),
            "image \"node:20-alpine\""
        );
    }
}
