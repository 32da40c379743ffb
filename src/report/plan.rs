//! A plan for people: waves first, then each stage's details.

use std::fmt::Write as _;

use crate::plan::{Plan, PlannedStage};

pub fn text(plan: &Plan, color: bool) -> String {
    let bold = |s: &str| super::style::paint(super::style::BOLD, s, color);
    let dim = |s: &str| super::style::paint(super::style::DIM, s, color);
    let mut out = String::new();
    let git = &plan.git;
    let _ = writeln!(
        out,
        "{} {}  ·  branch {}  ·  commit {}{}  ·  environment {}",
        bold("pipeline"),
        plan.pipeline,
        git.branch.as_deref().unwrap_or("-"),
        git.short_sha.as_deref().unwrap_or("-"),
        git.tag
            .as_deref()
            .map(|t| format!(" (tag {t})"))
            .unwrap_or_default(),
        plan.environment.as_deref().unwrap_or("-"),
    );
    if let Some(b) = &plan.backend {
        let _ = writeln!(out, "{} {}", bold("backend"), b.name);
        if !b.refused.is_empty() {
            out.push('\n');
            let _ = writeln!(
                out,
                "{}",
                bold("refused by the backend (a run would not start)")
            );
            let width = b.refused.iter().map(|r| r.stage.len()).max().unwrap_or(0);
            for r in &b.refused {
                let _ = writeln!(out, "  {:<width$}  {}", r.stage, r.reason);
            }
        }
    }

    out.push('\n');
    let _ = writeln!(out, "{}", bold("waves"));
    if plan.waves.is_empty() {
        let _ = writeln!(out, "  (nothing to run)");
    }
    for (i, wave) in plan.waves.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}  {}", i + 1, wave.join(", "));
    }
    if !plan.finally.is_empty() {
        let _ = writeln!(out, "  then {} (finally)", plan.finally.join(", "));
    }
    let skipped: Vec<&PlannedStage> = plan.stages.iter().filter(|s| s.skipped).collect();
    if !skipped.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "{}", bold("skipped"));
        let width = skipped.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in skipped {
            let _ = writeln!(
                out,
                "  {:<width$}  {}",
                s.name,
                s.reason.as_deref().unwrap_or("")
            );
        }
    }
    for s in &plan.stages {
        out.push('\n');
        stage(&mut out, s, &bold, &dim);
    }
    out
}

fn stage(
    out: &mut String,
    s: &PlannedStage,
    bold: &dyn Fn(&str) -> String,
    dim: &dyn Fn(&str) -> String,
) {
    let mut tags = Vec::new();
    match s.wave {
        Some(w) => tags.push(format!("wave {w}")),
        None if s.finally => tags.push("finally".into()),
        None => tags.push("skipped".into()),
    }
    tags.push(s.action.kind().to_string());
    if let Some(t) = &s.template {
        tags.push(format!("uses {t}"));
    }
    let _ = writeln!(
        out,
        "{} {}",
        bold(&s.name),
        dim(&format!("({})", tags.join(", ")))
    );
    let mut row = |k: &str, v: &str| {
        let mut lines = v.lines();
        let _ = writeln!(out, "  {k:<11}{}", lines.next().unwrap_or(""));
        for l in lines {
            let _ = writeln!(out, "  {:<11}{l}", "");
        }
    };
    if let Some(r) = &s.reason {
        row("skipped", r);
    }
    if !s.after.is_empty() {
        row("after", &s.after.join(", "));
    }
    if let Some(w) = &s.when {
        row("when", w);
    }
    if let Some(i) = &s.image {
        row("image", i);
    }
    if let Some(r) = s.script() {
        row("run", r);
    }
    if let Some(b) = s.build() {
        row("build", &b.context);
        if let Some(d) = &b.dockerfile {
            row("dockerfile", d);
        }
        if let Some(t) = &b.target {
            row("target", t);
        }
        row("tags", &b.tags.join("\n"));
        for (k, v) in &b.labels {
            row("label", &format!("{k} = {v}"));
        }
        for (k, v) in &b.args {
            row("arg", &format!("{k} = {v}"));
        }
        row("push", if b.push { "yes" } else { "no" });
    }
    if let Some(r) = s.release() {
        row("release", &r.name);
        if let Some(ns) = &r.namespace {
            row("namespace", ns);
        }
        row("manifests", &r.manifests.join("\n"));
        if !r.objects.is_empty() {
            row("objects", &r.objects.join("\n"));
        }
        if let Some(e) = &r.objects_error {
            row("objects", &format!("cannot read the manifests: {e}"));
        }
        for (c, i) in &r.images {
            row("image", &format!("{c} = {i}"));
        }
        row(
            "policy",
            &format!(
                "wait {}s, rollback {}, prune {}, history {}",
                r.wait_secs,
                match r.rollback {
                    crate::model::Rollback::OnFailure => "on-failure",
                    crate::model::Rollback::Never => "never",
                },
                if r.prune { "yes" } else { "no" },
                r.history
            ),
        );
    }
    if let crate::plan::PlannedAction::Manual { question: m } = &s.action {
        row("asks", m);
    }
    if !s.env.is_empty() {
        let width = s.env.keys().map(|k| k.len()).max().unwrap_or(0);
        let lines: Vec<String> = s
            .env
            .iter()
            .map(|(k, v)| format!("{k:<width$} = {v}"))
            .collect();
        row("env", &lines.join("\n"));
    }
    for svc in &s.services {
        let mut desc = format!("{} ({})", svc.name, svc.image);
        for (k, v) in &svc.env {
            let _ = write!(desc, "\n  {k} = {v}");
        }
        if let Some(ready) = &svc.ready {
            let _ = write!(desc, "\n  ready: {ready}");
        }
        row("service", &desc);
    }
    if let Some(r) = &s.resources {
        let parts: Vec<String> = [("cpu", &r.cpu), ("memory", &r.memory)]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
            .collect();
        row("resources", &parts.join(", "));
    }
    if !s.artifacts.is_empty() {
        row("artifacts", &s.artifacts.join("\n"));
    }
    if !s.caches.is_empty() {
        row("caches", &s.caches.join("\n"));
    }
    if !s.inputs.is_empty() {
        let found = match &s.inputs_found {
            Some(crate::plan::InputsFound::Files { count, digest }) => format!(
                "\n{count} file{}, digest {}",
                if *count == 1 { "" } else { "s" },
                digest.get(..16).unwrap_or(digest)
            ),
            Some(crate::plan::InputsFound::Error { error }) => {
                format!("\ncannot read them: {error}")
            }
            None => String::new(),
        };
        row("inputs", &format!("{}{found}", s.inputs.join("\n")));
    }
    if s.retry > 0 {
        row("retry", &s.retry.to_string());
    }
    if let Some(t) = s.timeout_secs {
        row(
            "timeout",
            &humantime::format_duration(std::time::Duration::from_secs(t)).to_string(),
        );
    }
    if s.allow_failure {
        row("failure", "allowed");
    }
}
