//! The stage graph as Graphviz dot, a Mermaid flowchart, or text. Skipped
//! stages are dashed and grey, `finally` stages rounded.

use std::fmt::Write as _;

use crate::plan::Plan;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Text,
}

pub fn render(plan: &Plan, format: GraphFormat) -> String {
    match format {
        GraphFormat::Dot => dot(plan),
        GraphFormat::Mermaid => mermaid(plan),
        GraphFormat::Text => text(plan),
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot(plan: &Plan) -> String {
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n",
        quote(&plan.pipeline)
    );
    for s in &plan.stages {
        let mut attrs = Vec::new();
        if s.skipped {
            attrs.push("style=dashed, color=gray50, fontcolor=gray50".to_string());
            if let Some(r) = &s.reason {
                attrs.push(format!("tooltip={}", quote(&format!("skipped: {r}"))));
            }
        } else if s.finally {
            attrs.push("style=rounded".into());
        }
        if attrs.is_empty() {
            let _ = writeln!(out, "  {};", quote(&s.name));
        } else {
            let _ = writeln!(out, "  {} [{}];", quote(&s.name), attrs.join(", "));
        }
    }
    for s in &plan.stages {
        for d in &s.after {
            let style = if s.skipped {
                " [style=dashed, color=gray50]"
            } else {
                ""
            };
            let _ = writeln!(out, "  {} -> {}{style};", quote(d), quote(&s.name));
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid(plan: &Plan) -> String {
    let id = |name: &str| {
        plan.stages
            .iter()
            .position(|s| s.name == name)
            .map_or_else(|| "x".into(), |i| format!("s{i}"))
    };
    let mut out = String::from("flowchart LR\n");
    for (i, s) in plan.stages.iter().enumerate() {
        let label = s.name.replace('"', "#quot;");
        if s.finally {
            let _ = writeln!(out, "  s{i}([\"{label}\"])");
        } else {
            let _ = writeln!(out, "  s{i}[\"{label}\"]");
        }
    }
    for s in &plan.stages {
        for d in &s.after {
            let arrow = if s.skipped { "-.->" } else { "-->" };
            let _ = writeln!(out, "  {} {arrow} {}", id(d), id(&s.name));
        }
    }
    let skipped: Vec<String> = plan
        .stages
        .iter()
        .enumerate()
        .filter(|(_, s)| s.skipped)
        .map(|(i, _)| format!("s{i}"))
        .collect();
    if !skipped.is_empty() {
        out.push_str("  classDef skipped stroke-dasharray: 5 5,color:#888,stroke:#888\n");
        let _ = writeln!(out, "  class {} skipped", skipped.join(","));
    }
    out
}

fn text(plan: &Plan) -> String {
    let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    let mut row = |tag: &str, s: &crate::plan::PlannedStage| {
        let after = if s.after.is_empty() {
            String::new()
        } else {
            format!("  ← {}", s.after.join(", "))
        };
        let why = s
            .reason
            .as_deref()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default();
        let line = format!("{tag:<9}{:<width$}{after}{why}", s.name);
        let _ = writeln!(out, "{}", line.trim_end());
    };
    for (i, wave) in plan.waves.iter().enumerate() {
        for (j, name) in wave.iter().enumerate() {
            if let Some(s) = plan.stage(name) {
                row(
                    &if j == 0 {
                        format!("wave {}", i + 1)
                    } else {
                        String::new()
                    },
                    s,
                );
            }
        }
    }
    for s in plan.stages.iter().filter(|s| s.skipped) {
        row("skipped", s);
    }
    for s in plan.stages.iter().filter(|s| s.finally && !s.skipped) {
        row("finally", s);
    }
    out
}
