//! The one diagnostic type. Every phase reports problems as [`Diag`]s that
//! point into the [`SourceMap`](crate::source::SourceMap); `report::diagnostics` renders them for people
//! (miette), machines (JSON) and CI systems (GitHub, GitLab annotations), and
//! the language server turns them into LSP diagnostics.

use serde::Serialize;

use crate::source::Span;

/// Stable diagnostic codes. The string form (`slipway::unknown-stage`) is a
/// public contract: documented in `docs/diagnostics.md` and matched by tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    Syntax,
    BadString,
    UnknownSetting,
    MisplacedSetting,
    DuplicateSetting,
    BadValue,
    MissingValue,
    UnknownStage,
    Cycle,
    DuplicateStage,
    DuplicateTemplate,
    DuplicateName,
    UnknownTemplate,
    UndefinedVariable,
    BadDuration,
    NoAction,
    ManyActions,
    MissingImage,
    UndeclaredSecret,
    SecretOutsideEnv,
    MissingInclude,
    IncludeCycle,
    BadExpression,
    BadRegex,
    BadGlob,
    EnvCycle,
    UnusedTemplate,
    /// `inputs` on a stage that is never cached.
    UncachedInputs,
    /// A stage the backend named with `check --backend` would refuse.
    BackendRefuses,
    /// An error with no place in a file: the command line asks for what the
    /// pipeline does not have, a file cannot be read, the cluster does not
    /// answer.
    Usage,
}

impl Code {
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "slipway::syntax",
            Code::BadString => "slipway::bad-string",
            Code::UnknownSetting => "slipway::unknown-setting",
            Code::MisplacedSetting => "slipway::misplaced-setting",
            Code::DuplicateSetting => "slipway::duplicate-setting",
            Code::BadValue => "slipway::bad-value",
            Code::MissingValue => "slipway::missing-value",
            Code::UnknownStage => "slipway::unknown-stage",
            Code::Cycle => "slipway::cycle",
            Code::DuplicateStage => "slipway::duplicate-stage",
            Code::DuplicateTemplate => "slipway::duplicate-template",
            Code::DuplicateName => "slipway::duplicate-name",
            Code::UnknownTemplate => "slipway::unknown-template",
            Code::UndefinedVariable => "slipway::undefined-variable",
            Code::BadDuration => "slipway::bad-duration",
            Code::NoAction => "slipway::no-action",
            Code::ManyActions => "slipway::many-actions",
            Code::MissingImage => "slipway::missing-image",
            Code::UndeclaredSecret => "slipway::undeclared-secret",
            Code::SecretOutsideEnv => "slipway::secret-outside-env",
            Code::MissingInclude => "slipway::missing-include",
            Code::IncludeCycle => "slipway::include-cycle",
            Code::BadExpression => "slipway::bad-expression",
            Code::BadRegex => "slipway::bad-regex",
            Code::BadGlob => "slipway::bad-glob",
            Code::EnvCycle => "slipway::env-cycle",
            Code::UnusedTemplate => "slipway::unused-template",
            Code::UncachedInputs => "slipway::uncached-inputs",
            Code::BackendRefuses => "slipway::backend-refuses",
            Code::Usage => "slipway::usage",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The code of errors that have no place in a file: a flag that does not
/// fit the pipeline, a missing pipeline file.
pub const USAGE_CODE: &str = Code::Usage.as_str();

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A labelled place in the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diag {
    pub code: Code,
    pub severity: Severity,
    /// Lowercase, names in backticks: "unknown stage `deploy`".
    pub message: String,
    /// Where the problem is; `None` for a problem with no place in a file
    /// (the command line's, the cluster's).
    pub primary: Option<Label>,
    /// Other places that explain it (the first definition of a duplicate, the
    /// rest of a cycle). They may be in other files.
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diag {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary: Some(Label {
                span,
                message: String::new(),
            }),
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, span, message)
        }
    }

    /// An error with no place in a file, with the code `slipway::usage`.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: Code::Usage,
            severity: Severity::Error,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    /// "`thing` is `verb` twice", pointing at both places.
    pub fn twice(code: Code, span: Span, first: Span, thing: &str, verb: &str, help: &str) -> Self {
        Self::error(code, span, format!("{thing} is {verb} twice"))
            .label(format!("{verb} again here"))
            .with(first, format!("first {verb} here"))
            .help(help)
    }

    #[must_use]
    pub fn label(mut self, message: impl Into<String>) -> Self {
        if let Some(primary) = &mut self.primary {
            primary.message = message.into();
        }
        self
    }

    #[must_use]
    pub fn with(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Where the problem is, unless it has no place in a file.
    pub fn span(&self) -> Option<Span> {
        self.primary.as_ref().map(|l| l.span)
    }
}

/// Diagnostics in the order a reader wants them: those with no place
/// first, then by file and position.
pub fn sort(diags: &mut [Diag]) {
    let key = |d: &Diag| (d.span().map(|s| (s.file, s.start)), d.code);
    diags.sort_by_key(key);
}

/// The candidate closest to `name`, when one is close enough to be a typo:
/// a few edits away (transpositions count as one), or very similar.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, f64, &str)> = None;
    for c in candidates {
        let edits = strsim::damerau_levenshtein(name, c);
        let similarity = strsim::jaro_winkler(name, c);
        let allowed = (name.chars().count().max(c.chars().count()) / 3).max(1);
        if edits > allowed && similarity <= 0.85 {
            continue;
        }
        let better = best.is_none_or(|(e, s, _)| (edits, -similarity) < (e, -s));
        if better {
            best = Some((edits, similarity, c));
        }
    }
    best.map(|(_, _, c)| c)
}

/// "did you mean `install`?", when one of `candidates` is close to `name`.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_name() {
        assert_eq!(
            did_you_mean("instal", ["install", "lint", "test"]).as_deref(),
            Some("did you mean `install`?")
        );
        assert_eq!(did_you_mean("zzz", ["install", "lint"]), None);
    }
}
