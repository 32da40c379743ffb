//! Evaluating `when` conditions, with an account of the values they read, so
//! a plan can say why a stage is skipped.

use super::GitContext;
use super::scope::Scope;
use crate::model::{CondExpr, CondOperand, GitField};
use crate::syntax::CmpOp;

pub(crate) struct Env<'a> {
    pub git: &'a GitContext,
    pub environment: &'a str,
    pub changed: Option<&'a [String]>,
    pub scope: &'a Scope<'a>,
}

/// The condition's value, and "branch is `x`"-style notes on what it read.
pub(crate) fn eval(expr: &CondExpr, env: &Env<'_>) -> (bool, Vec<String>) {
    let mut notes = Vec::new();
    let v = eval_expr(expr, env, &mut notes);
    notes.dedup();
    (v, notes)
}

fn eval_expr(e: &CondExpr, env: &Env<'_>, notes: &mut Vec<String>) -> bool {
    match e {
        CondExpr::And(l, r) => eval_expr(l, env, notes) && eval_expr(r, env, notes),
        CondExpr::Or(l, r) => eval_expr(l, env, notes) || eval_expr(r, env, notes),
        CondExpr::Not(x) => !eval_expr(x, env, notes),
        CondExpr::Truthy(o) => match o {
            CondOperand::Changed(globs) => changed(globs, env, notes),
            CondOperand::Bool(b) => *b,
            other => !value(other, env, notes).is_empty(),
        },
        CondExpr::Compare {
            lhs,
            op,
            rhs,
            regex,
        } => {
            let l = value(lhs, env, notes);
            let r = value(rhs, env, notes);
            match op {
                CmpOp::Eq => l == r,
                CmpOp::Ne => l != r,
                CmpOp::Match => match regex {
                    Some(re) => re.is_match(&l),
                    None => regex::Regex::new(&r).is_ok_and(|re| re.is_match(&l)),
                },
            }
        }
    }
}

fn value(o: &CondOperand, env: &Env<'_>, notes: &mut Vec<String>) -> String {
    let (name, v) = match o {
        CondOperand::Branch => (
            "branch".to_string(),
            env.git.branch.clone().unwrap_or_default(),
        ),
        CondOperand::Tag => ("tag".to_string(), env.git.tag.clone().unwrap_or_default()),
        CondOperand::Environment => ("environment".to_string(), env.environment.to_string()),
        CondOperand::Git(f) => {
            let v = match f {
                GitField::Sha => &env.git.sha,
                GitField::ShortSha => &env.git.short_sha,
                GitField::Branch => &env.git.branch,
                GitField::Tag => &env.git.tag,
            };
            (format!("git.{}", f.name()), v.clone().unwrap_or_default())
        }
        CondOperand::Env { name, .. } => {
            let r = env.scope.get(name);
            let shown = r.as_ref().map(|r| r.shown()).unwrap_or_default();
            notes.push(format!("env.{name} is `{shown}`"));
            return r.map(|r| r.value.to_string()).unwrap_or_default();
        }
        CondOperand::Text(t) => return env.scope.interpolate(t, &mut Vec::new()),
        CondOperand::Bool(b) => return b.to_string(),
        CondOperand::Changed(globs) => return changed(globs, env, notes).to_string(),
    };
    notes.push(if v.is_empty() {
        format!("{name} is not set")
    } else {
        format!("{name} is `{v}`")
    });
    v
}

fn changed(
    globs: &[(String, std::sync::Arc<globset::GlobMatcher>)],
    env: &Env<'_>,
    notes: &mut Vec<String>,
) -> bool {
    let Some(paths) = env.changed else {
        notes.push("changed files unknown, so `changed` is true".into());
        return true;
    };
    let hit = paths
        .iter()
        .find(|p| globs.iter().any(|(_, g)| g.is_match(p.as_str())));
    let pattern = globs
        .iter()
        .map(|(p, _)| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match hit {
        Some(p) => notes.push(format!("`{p}` matches {pattern}")),
        None => notes.push(format!("no changed file matches {pattern}")),
    }
    hit.is_some()
}
