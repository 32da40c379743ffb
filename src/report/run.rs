//! A run for people and machines: the same event stream as JSON lines, or
//! as stage-prefixed logs and a final table with the critical path.

use super::style;
use std::fmt::Write as _;
use std::time::Duration;

use crate::plan::Plan;
use crate::run::events::{Event, RunStatus, StageStatus, Stream};
use crate::run::{RunSummary, StageResult};

/// One JSON object per line (`docs/events.md`).
pub fn json_line(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

/// Stage-prefixed human output, a line or two per event.
pub struct Human {
    color: bool,
    width: usize,
}

impl Human {
    pub fn new(plan: &Plan, color: bool) -> Self {
        let width = plan
            .stages
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0)
            .min(32);
        Self { color, width }
    }

    fn paint(&self, style: anstyle::Style, s: &str) -> String {
        super::style::paint(style, s, self.color)
    }

    /// The text for an event, empty for events shown only in the summary.
    pub fn event(&self, event: &Event) -> String {
        let w = self.width;
        match event {
            Event::RunStarted {
                pipeline, stages, ..
            } => {
                format!(
                    "{} {pipeline}: {stages} stages\n",
                    self.paint(style::BOLD, "run")
                )
            }
            Event::StageStarted { stage, attempt, .. } => {
                let again = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                format!(
                    "{} {stage:<w$} started{again}\n",
                    self.paint(style::CYAN, "▶")
                )
            }
            Event::Log {
                stage,
                stream,
                line,
            } => {
                let bar = if *stream == Stream::Stderr {
                    self.paint(style::YELLOW, "│")
                } else {
                    self.paint(style::DIM, "│")
                };
                format!("{stage:<w$} {bar} {line}\n")
            }
            Event::StageFinished {
                stage,
                status,
                duration_ms,
                message,
                ..
            } => {
                let took = humantime::format_duration(Duration::from_millis(
                    *duration_ms - duration_ms % 100,
                ));
                let (mark, word) = self.status(*status);
                let why = message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                format!("{mark} {stage:<w$} {word} in {took}{why}\n")
            }
            Event::StageSkipped { stage, reason } => {
                format!(
                    "{} {stage:<w$} skipped: {reason}\n",
                    self.paint(style::DIM, "○")
                )
            }
            Event::RunFinished { .. } => String::new(),
        }
    }

    fn status(&self, status: StageStatus) -> (String, &'static str) {
        match status {
            StageStatus::Succeeded => (self.paint(style::GREEN, "✔"), "succeeded"),
            StageStatus::Cached => (self.paint(style::GREEN, "✔"), "cached"),
            StageStatus::FailedAllowed => (self.paint(style::YELLOW, "!"), "failed (allowed)"),
            StageStatus::Failed => (self.paint(style::RED, "✘"), "failed"),
            StageStatus::TimedOut => (self.paint(style::RED, "✘"), "timed out"),
            StageStatus::Cancelled => (self.paint(style::RED, "✘"), "cancelled"),
            StageStatus::WaitingForApproval => {
                (self.paint(style::YELLOW, "?"), "waits for approval")
            }
        }
    }

    /// The final table: stage, status, attempts, duration; then the
    /// critical path and the run's status.
    pub fn summary(&self, plan: &Plan, summary: &RunSummary) -> String {
        let w = plan
            .stages
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!(
            "\n{:<w$}  {:<18}  {:>8}  {:>9}\n",
            "stage", "status", "attempts", "duration"
        );
        for r in &summary.stages {
            let status = match &r.status {
                Ok(st) => self.status(*st).1.to_string(),
                Err(_) => "skipped".to_string(),
            };
            let took = if r.attempts == 0 {
                "-".to_string()
            } else {
                format!("{:.1}s", r.duration.as_secs_f64())
            };
            let attempts = if r.attempts == 0 {
                "-".to_string()
            } else {
                r.attempts.to_string()
            };
            let _ = writeln!(
                out,
                "{:<w$}  {status:<18}  {attempts:>8}  {took:>9}",
                r.name
            );
        }
        let path = critical_path(plan, &summary.stages);
        if !path.is_empty() {
            let _ = writeln!(out, "\ncritical path: {}", path.join(" → "));
        }
        let word = match summary.status {
            RunStatus::Succeeded => self.paint(style::GREEN, "succeeded"),
            RunStatus::Failed => self.paint(style::RED, "failed"),
            RunStatus::Cancelled => self.paint(style::RED, "cancelled"),
        };
        let _ = writeln!(out, "run {word} in {:.1}s", summary.duration.as_secs_f64());
        out
    }
}

/// The chain of stages that decided the run's length: from the stage that
/// ended last, back through the dependency that ended last before it.
pub fn critical_path(plan: &Plan, results: &[StageResult]) -> Vec<String> {
    // A stage that ran without an attempt (an approved `manual` stage)
    // ends when the last stage it waits for did, so the path goes through it.
    fn end(plan: &Plan, results: &[StageResult], i: usize, depth: usize) -> Option<Duration> {
        let r = results.get(i)?;
        if let Some((_, e)) = r.span {
            return Some(e);
        }
        if r.status.is_err() || depth > plan.stages.len() {
            return None;
        }
        plan.stages[i]
            .after
            .iter()
            .filter_map(|d| plan.stages.iter().position(|s| *s.name == **d))
            .filter_map(|d| end(plan, results, d, depth + 1))
            .max()
            .or(Some(Duration::ZERO))
    }
    let end = |i: usize| end(plan, results, i, 0);
    let Some(mut at) = (0..plan.stages.len())
        .filter(|&i| !plan.stages[i].finally)
        .filter(|&i| end(i).is_some())
        .max_by_key(|&i| end(i))
    else {
        return Vec::new();
    };
    let mut path = vec![plan.stages[at].name.clone()];
    loop {
        let deps = &plan.stages[at].after;
        let prev = deps
            .iter()
            .filter_map(|d| plan.stages.iter().position(|s| *s.name == **d))
            .filter(|&i| end(i).is_some())
            .max_by_key(|&i| end(i));
        match prev {
            Some(p) => {
                path.push(plan.stages[p].name.clone());
                at = p;
            }
            None => break,
        }
    }
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::critical_path;
    use crate::run::{StageResult, StageStatus};

    #[test]
    fn the_critical_path_goes_through_an_approved_manual_stage() {
        let checked = crate::model::check_text(
            Path::new("t.pipeline"),
            "pipeline \"p\"\n\nstage build {\n  image \"x\"\n  run \"x\"\n}\n\
             stage other {\n  image \"x\"\n  run \"x\"\n}\n\
             stage approve after build {\n  manual \"ok?\"\n}\n\
             stage deploy after approve {\n  image \"x\"\n  run \"x\"\n}\n",
        );
        let plan = crate::plan::plan(
            &checked.pipeline.expect("checks"),
            &crate::plan::Options::default(),
        )
        .expect("plans");
        let result = |name: &str, span: Option<(u64, u64)>| StageResult {
            name: name.into(),
            status: Ok(StageStatus::Succeeded),
            attempts: u32::from(span.is_some()),
            duration: Duration::ZERO,
            span: span.map(|(b, e)| (Duration::from_secs(b), Duration::from_secs(e))),
            message: None,
            unreachable: false,
        };
        let results = [
            result("build", Some((0, 5))),
            result("other", Some((0, 7))),
            result("approve", None),
            result("deploy", Some((5, 9))),
        ];
        assert_eq!(
            critical_path(&plan, &results),
            ["build", "approve", "deploy"]
        );
    }
}
