//! `when` conditions, checked: names known, regexes and globs compiled.

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
    Changed(Vec<(String, GlobMatcher)>),
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

pub(super) fn check(expr: &Expr, text: &str, diags: &mut Vec<Diag>) -> Cond {
    Cond {
        expr: check_expr(expr, diags),
        text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        span: expr.span(),
    }
}

fn check_expr(expr: &Expr, diags: &mut Vec<Diag>) -> CondExpr {
    match expr {
        Expr::Or(l, r) => CondExpr::Or(
            Box::new(check_expr(l, diags)),
            Box::new(check_expr(r, diags)),
        ),
        Expr::And(l, r) => CondExpr::And(
            Box::new(check_expr(l, diags)),
            Box::new(check_expr(r, diags)),
        ),
        Expr::Not { expr, .. } => CondExpr::Not(Box::new(check_expr(expr, diags))),
        Expr::Group { expr, .. } => check_expr(expr, diags),
        Expr::Compare { lhs, op, rhs } => {
            let l = operand(lhs, diags);
            let r = operand(rhs, diags);
            let mut regex = None;
            if *op == CmpOp::Match {
                match &r {
                    CondOperand::Text(t) => {
                        if let Some(pattern) = t.as_literal() {
                            match Regex::new(&pattern) {
                                Ok(re) => regex = Some(re),
                                Err(e) => diags.push(
                                    Diag::error(Code::BadRegex, rhs.span(), "invalid regular expression")
                                        .label(first_line(&e.to_string()))
                                        .help("the right side of `=~` is a regular expression (Rust `regex` syntax)"),
                                ),
                            }
                        }
                    }
                    _ => diags.push(
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
                    diags.push(
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
        Expr::Operand(o) => CondExpr::Truthy(operand(o, diags)),
    }
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_string()
}

fn operand(o: &Operand, diags: &mut Vec<Diag>) -> CondOperand {
    match o {
        Operand::Bool { value, .. } => CondOperand::Bool(*value),
        Operand::Str(s) => CondOperand::Text(Text::from_str(s, diags)),
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
                diags.push(
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
                diags.push(
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
                diags.push(
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
                    diags.push(
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
                let text = Text::from_str(s, diags);
                let Some(pattern) = text.as_literal() else {
                    diags.push(
                        Diag::error(Code::BadGlob, s.span, "`changed` globs cannot use `${...}`")
                            .label("interpolated"),
                    );
                    continue;
                };
                match Glob::new(&pattern) {
                    Ok(g) => globs.push((pattern, g.compile_matcher())),
                    Err(e) => diags.push(
                        Diag::error(Code::BadGlob, s.span, format!("invalid glob `{pattern}`"))
                            .label(e.kind().to_string())
                            .help("globs use `*`, `**`, `?`, `[abc]` and `{a,b}`"),
                    ),
                }
            }
            CondOperand::Changed(globs)
        }
    }
}
