//! Interpolated text: a string's value with its `${...}` references resolved
//! to what they name, ready for `plan` to fill in.

use serde::Serialize;

use crate::diagnostic::{Code, Diag};
use crate::source::Span;
use crate::syntax::Str;
use crate::syntax::strings::{Piece, value_pieces};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    pub pieces: Vec<TextPiece>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TextPiece {
    Lit(String),
    Ref(VarRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VarRef {
    pub var: Var,
    pub span: Span,
}

/// What a `${...}` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Var {
    /// An env or matrix name.
    Name(String),
    /// `${environment}`: the environment chosen with `--env`.
    Environment,
    Git(GitField),
    /// `${secret.NAME}`: only inside `env` values.
    Secret(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GitField {
    Sha,
    ShortSha,
    Branch,
    Tag,
}

impl GitField {
    pub const ALL: [(&'static str, GitField); 4] = [
        ("sha", GitField::Sha),
        ("short_sha", GitField::ShortSha),
        ("branch", GitField::Branch),
        ("tag", GitField::Tag),
    ];

    pub fn name(self) -> &'static str {
        match self {
            GitField::Sha => "sha",
            GitField::ShortSha => "short_sha",
            GitField::Branch => "branch",
            GitField::Tag => "tag",
        }
    }
}

impl Text {
    pub fn literal(text: impl Into<String>, span: Span) -> Self {
        Self {
            pieces: vec![TextPiece::Lit(text.into())],
            span,
        }
    }

    pub fn refs(&self) -> impl Iterator<Item = &VarRef> {
        self.pieces.iter().filter_map(|p| match p {
            TextPiece::Ref(r) => Some(r),
            TextPiece::Lit(_) => None,
        })
    }

    /// The text when it has no references.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                TextPiece::Lit(t) => out.push_str(t),
                TextPiece::Ref(_) => return None,
            }
        }
        Some(out)
    }

    /// The text as it was written, `${...}` included, for messages.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                TextPiece::Lit(t) => out.push_str(t),
                TextPiece::Ref(r) => {
                    out.push_str("${");
                    out.push_str(&r.var.to_string());
                    out.push('}');
                }
            }
        }
        out
    }

    pub fn from_str(s: &Str, diags: &mut Vec<Diag>) -> Self {
        let pieces = value_pieces(s, diags)
            .into_iter()
            .map(|p| match p {
                Piece::Lit(t) => TextPiece::Lit(t),
                Piece::Var { body, span } => match parse_var(&body, span) {
                    Ok(var) => TextPiece::Ref(VarRef { var, span }),
                    Err(d) => {
                        diags.push(d);
                        TextPiece::Lit(String::new())
                    }
                },
            })
            .collect();
        Text {
            pieces,
            span: s.span,
        }
    }
}

impl std::fmt::Display for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Var::Name(n) => f.write_str(n),
            Var::Environment => f.write_str("environment"),
            Var::Git(g) => write!(f, "git.{}", g.name()),
            Var::Secret(s) => write!(f, "secret.{s}"),
        }
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_var(body: &str, span: Span) -> Result<Var, Diag> {
    let trimmed = body.trim();
    if trimmed == "environment" {
        return Ok(Var::Environment);
    }
    if let Some(field) = trimmed.strip_prefix("git.") {
        return GitField::ALL
            .iter()
            .find(|(n, _)| *n == field)
            .map(|(_, g)| Var::Git(*g))
            .ok_or_else(|| {
                let names = GitField::ALL.map(|(n, _)| n);
                Diag::error(
                    Code::UndefinedVariable,
                    span,
                    format!("unknown git value `git.{field}`"),
                )
                .label("not a git value")
                .help(match crate::diagnostic::closest(field, names) {
                    Some(c) => format!("did you mean `git.{c}`?"),
                    None => "git values are `git.sha`, `git.short_sha`, `git.branch` and `git.tag`"
                        .into(),
                })
            });
    }
    if let Some(name) = trimmed.strip_prefix("secret.") {
        if is_name(name) {
            return Ok(Var::Secret(name.to_string()));
        }
    }
    if is_name(trimmed) {
        return Ok(Var::Name(trimmed.to_string()));
    }
    Err(Diag::error(
        Code::BadString,
        span,
        format!("`${{{body}}}` is not a variable reference"),
    )
    .label("expected a name")
    .help("write `${NAME}` for an env or matrix value, or `${git.sha}`, `${environment}`; to keep a literal `${`, write `\\${` in a \"...\" string"))
}
