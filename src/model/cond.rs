//! `when` conditions, checked: names known, regexes and globs compiled.

use std::collections::HashMap;
use std::sync::Arc;

use globset::{Glob, GlobMatcher};
use regex::Regex;
use serde::Serialize;

use super::text::{GitField, Text};
use crate::diagnostic::{Code, Diag, closest};
use crate::source::Span;
use crate::syntax::{CmpOp, Expr, Operand, Value};

/// A checked `when` condition.
#[derive(Debug, Clone)]
pub struct Cond {
    pub expr: CondExpr,
    /// As written, for plans and messages.
    pub text: String,
    pub span: Span,
}

impl Serialize for Cond {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[derive(Debug, Clone)]
pub enum CondExpr {
    And(Box<CondExpr>, Box<CondExpr>),
    Or(Box<CondExpr>, Box<CondExpr>),
    Not(Box<CondExpr>),
    Compare {
        lhs: CondOperand,
        op: CmpOp,
        rhs: CondOperand,
        /// For `=~` with a literal pattern, compiled once here.
        regex: Option<Regex>,
    },
    Truthy(CondOperand),
}

#[derive(Debug, Clone)]
pub enum CondOperand {
    Branch,
    Tag,
    Environment,
    Git(GitField),
    /// `env.NAME`
    Env {
        name: String,
        span: Span,
    },
    Text(Text),
    Bool(bool),
    /// `changed("glob", ...)`: true when any changed path matches any glob.
    Changed(Vec<(String, Arc<GlobMatcher>)>),
}

const PATHS: [&str; 8] = [
    "branch",
    "tag",
    "environment",
    "env.NAME",
    "git.sha",
    "git.short_sha",
    "git.branch",
    "git.tag",
];

/// Globs and regexes compiled once per pipeline: the same pattern is often
/// written on many stages, and compiling one costs as much as checking a
/// hundred stages.
#[derive(Default)]
pub(crate) struct Compiled {
    globs: HashMap<String, Result<Arc<GlobMatcher>, String>>,
    regexes: HashMap<String, Result<Regex, String>>,
}

impl Compiled {
    fn glob(&mut self, pattern: &str) -> Result<Arc<GlobMatcher>, String> {
        self.globs
            .entry(pattern.to_string())
            .or_insert_with(|| {
                Glob::new(pattern)
                    .map(|g| Arc::new(g.compile_matcher()))
                    .map_err(|e| e.kind().to_string())
            })
            .clone()
    }

    fn regex(&mut self, pattern: &str) -> Result<Regex, String> {
        self.regexes
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).map_err(|e| first_line(&e.to_string())))
            .clone()
    }
}

pub(super) fn check(
    expr: &Expr,
    text: &str,
    compiled: &mut Compiled,
    diags: &mut Vec<Diag>,
) -> Cond {
    let mut c = Checker { compiled, diags };
    Cond {
        expr: c.expr(expr),
        text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        span: expr.span(),
    }
}

struct Checker<'a> {
    compiled: &'a mut Compiled,
    diags: &'a mut Vec<Diag>,
}

impl Checker<'_> {
    fn expr(&mut self, expr: &Expr) -> CondExpr {
        match expr {
            Expr::Or(l, r) => CondExpr::Or(Box::new(self.expr(l)), Box::new(self.expr(r))),
            Expr::And(l, r) => CondExpr::And(Box::new(self.expr(l)), Box::new(self.expr(r))),
            Expr::Not { expr, .. } => CondExpr::Not(Box::new(self.expr(expr))),
            Expr::Group { expr, .. } => self.expr(expr),
            Expr::Compare { lhs, op, rhs } => {
                let l = self.operand(lhs);
                let r = self.operand(rhs);
                let mut regex = None;
                if *op == CmpOp::Match {
                    match &r {
                        CondOperand::Text(t) => {
                            if let Some(pattern) = t.as_literal() {
                                match self.compiled.regex(&pattern) {
                                Ok(re) => regex = Some(re),
                                Err(e) => self.diags.push(
                                    Diag::error(Code::BadRegex, rhs.span(), "invalid regular expression")
                                        .label(e)
                                        .help("the right side of `=~` is a regular expression (Rust `regex` syntax)"),
                                ),
                            }
                            }
                        }
                        _ => self.diags.push(
                            Diag::error(
                                Code::BadExpression,
                                rhs.span(),
                                "`=~` needs a string pattern on its right",
                            )
                            .label("not a string")
                            .help(r#"write `branch =~ "^release/"`"#),
                        ),
                    }
                }
                for (side, o) in [(lhs, &l), (rhs, &r)] {
                    if matches!(o, CondOperand::Changed(_)) {
                        self.diags.push(
                            Diag::error(
                                Code::BadExpression,
                                side.span(),
                                "`changed(...)` is true or false; it cannot be compared",
                            )
                            .label("a condition, not a value")
                            .help(r#"use it alone: `changed("src/**")` or `!changed("docs/**")`"#),
                        );
                    }
                }
                CondExpr::Compare {
                    lhs: l,
                    op: *op,
                    rhs: r,
                    regex,
                }
            }
            Expr::Operand(o) => CondExpr::Truthy(self.operand(o)),
            Expr::Error { span } => {
                self.diags.push(
                    Diag::error(Code::Syntax, *span, "this condition could not be read")
                        .label("incomplete condition")
                        .help("this is a bug in slipway: please report it with this condition"),
                );
                // Never true, should a pipeline with errors ever be planned.
                CondExpr::Truthy(CondOperand::Bool(false))
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_string()
}

impl Checker<'_> {
    fn operand(&mut self, o: &Operand) -> CondOperand {
        match o {
            Operand::Bool { value, .. } => CondOperand::Bool(*value),
            Operand::Str(s) => CondOperand::Text(Text::from_str(s, self.diags)),
            Operand::Path { path, span } => match path.as_str() {
                "branch" => CondOperand::Branch,
                "tag" => CondOperand::Tag,
                "environment" => CondOperand::Environment,
                p => {
                    if let Some(name) = p.strip_prefix("env.") {
                        if !name.contains('.') {
                            return CondOperand::Env {
                                name: name.to_string(),
                                span: *span,
                            };
                        }
                    }
                    if let Some(field) = p.strip_prefix("git.") {
                        if let Some((_, g)) = GitField::ALL.iter().find(|(n, _)| *n == field) {
                            return CondOperand::Git(*g);
                        }
                    }
                    let help = match closest(p, PATHS) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!(
                            "conditions can use {}, strings and `changed(\"glob\")`",
                            PATHS.map(|p| format!("`{p}`")).join(", ")
                        ),
                    };
                    self.diags.push(
                        Diag::error(
                            Code::BadExpression,
                            *span,
                            format!("unknown name `{p}` in condition"),
                        )
                        .label("unknown name")
                        .help(help),
                    );
                    CondOperand::Bool(false)
                }
            },
            Operand::Call { name, args, span } => {
                if name.name != "changed" {
                    self.diags.push(
                        Diag::error(
                            Code::BadExpression,
                            name.span,
                            format!("unknown function `{}`", name.name),
                        )
                        .label("unknown function")
                        .help(r#"the only function is `changed("glob", ...)`"#),
                    );
                    return CondOperand::Bool(false);
                }
                if args.is_empty() {
                    self.diags.push(
                        Diag::error(
                            Code::BadExpression,
                            *span,
                            "`changed` needs at least one glob",
                        )
                        .label("no glob")
                        .help(r#"write `changed("src/**")`"#),
                    );
                }
                let mut globs = Vec::new();
                for a in args {
                    let Value::Str(s) = a else {
                        self.diags.push(
                            Diag::error(
                                Code::BadExpression,
                                a.span(),
                                "`changed` takes glob strings",
                            )
                            .label(format!("found {}", a.describe()))
                            .help(r#"write `changed("docs/**")`"#),
                        );
                        continue;
                    };
                    let text = Text::from_str(s, self.diags);
                    let Some(pattern) = text.as_literal() else {
                        self.diags.push(
                            Diag::error(
                                Code::BadGlob,
                                s.span,
                                "`changed` globs cannot use `${...}`",
                            )
                            .label("interpolated"),
                        );
                        continue;
                    };
                    match self.compiled.glob(&pattern) {
                        Ok(g) => globs.push((pattern, g)),
                        Err(e) => self.diags.push(
                            Diag::error(Code::BadGlob, s.span, format!("invalid glob `{pattern}`"))
                                .label(e)
                                .help("globs use `*`, `**`, `?`, `[abc]` and `{a,b}`"),
                        ),
                    }
                }
                CondOperand::Changed(globs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileId;

    /// A part the parser could not build is an error, and false: it never
    /// lets a guard pass, alone or beside other conditions.
    #[test]
    fn an_unbuilt_part_is_reported_and_never_true() {
        let hole = Span::new(FileId(0), 20, 25);
        let main = Expr::Compare {
            lhs: Operand::Path {
                path: "branch".into(),
                span: Span::new(FileId(0), 0, 6),
            },
            op: CmpOp::Ne,
            rhs: Operand::Bool {
                value: true,
                span: Span::new(FileId(0), 10, 14),
            },
        };
        for expr in [
            Expr::Error { span: hole },
            Expr::Or(
                Box::new(Expr::Error { span: hole }),
                Box::new(Expr::Operand(Operand::Bool {
                    value: false,
                    span: Span::new(FileId(0), 30, 35),
                })),
            ),
            Expr::And(Box::new(main), Box::new(Expr::Error { span: hole })),
        ] {
            let mut diags = Vec::new();
            let cond = check(&expr, "", &mut Compiled::default(), &mut diags);
            assert_eq!(diags.len(), 1, "{diags:?}");
            assert!(diags[0].is_error() && diags[0].code == Code::Syntax);
            assert_eq!(diags[0].span(), Some(hole));
            assert!(!never_true_parts(&cond.expr).is_empty());
        }
    }

    /// The `false` leaves of a condition that stand for unbuilt parts.
    fn never_true_parts(e: &CondExpr) -> Vec<&CondExpr> {
        match e {
            CondExpr::And(l, r) | CondExpr::Or(l, r) => {
                let mut out = never_true_parts(l);
                out.extend(never_true_parts(r));
                out
            }
            CondExpr::Not(x) => never_true_parts(x),
            CondExpr::Truthy(CondOperand::Bool(false)) => vec![e],
            _ => Vec::new(),
        }
    }
}
