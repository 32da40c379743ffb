//! The scheduler: the one owner of a run's state. It starts each stage the
//! moment its dependencies have succeeded, within the `-j` limit, retries,
//! fails fast (or keeps going), skips what can no longer run, answers
//! Ctrl-C, and runs `finally` stages last. Backends only execute.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backend::{Backend, Job, Outcome, Output};
use super::events::{Event, RunStatus, StageStatus, now};
use super::mask::Masker;
use crate::plan::{Plan, PlannedStage};

/// What the command line decides about a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's id: in `run_started`, the containers' labels and the
    /// release's record.
    pub run: String,
    /// Stages running at once.
    pub jobs: usize,
    /// After a failure, still run everything that does not depend on it.
    pub keep_going: bool,
    /// `manual` stages approved in advance, by stage or cell name.
    pub approve: Vec<String>,
    /// Whether to ask on the terminal for `manual` stages not approved.
    pub interactive: bool,
    /// The project directory.
    pub workspace: PathBuf,
    /// Secret values by name. Never printed.
    pub secrets: IndexMap<String, String>,
}

/// How one stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageResult {
    pub name: String,
    pub status: Result<StageStatus, String>,
    pub attempts: u32,
    pub duration: Duration,
    /// When the stage started and ended, from the run's start.
    pub span: Option<(Duration, Duration)>,
    /// Why the last attempt failed, secrets masked.
    pub message: Option<String>,
    /// The last attempt failed because a component did not answer, or
    /// slipway itself failed: the run exits 3.
    pub unreachable: bool,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub status: RunStatus,
    /// In plan order; `Err(reason)` for skipped stages.
    pub stages: Vec<StageResult>,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
enum State {
    Pending,
    Running,
    Done(StageStatus),
    /// Skipped; the reason is in the stage's result.
    Skipped,
}

struct Finished {
    index: usize,
    attempt: u32,
    outcome: Outcome,
    started: Instant,
}

/// Runs the plan to the end. `cancel` is Ctrl-C: running stages are stopped
/// and the rest skipped, then `finally` stages run.
pub async fn run(
    plan: &Plan,
    opts: &RunOptions,
    backend: Arc<dyn Backend>,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
) -> RunSummary {
    let start = Instant::now();
    let masker = Masker::new(opts.secrets.values().cloned());
    let index: HashMap<&str, usize> = plan
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = plan
        .stages
        .iter()
        .map(|s| {
            s.after
                .iter()
                .filter_map(|a| index.get(&**a).copied())
                .collect()
        })
        .collect();
    let mut state: Vec<State> = vec![State::Pending; plan.stages.len()];
    let mut results: Vec<StageResult> = plan
        .stages
        .iter()
        .map(|s| StageResult {
            name: s.name.clone(),
            status: Err(String::new()),
            attempts: 0,
            duration: Duration::ZERO,
            span: None,
            message: None,
            unreachable: false,
        })
        .collect();
    let emit = |e: Event| {
        let events = events.clone();
        async move {
            let _ = events.send(e).await;
        }
    };
    emit(Event::RunStarted {
        run: opts.run.clone(),
        pipeline: plan.pipeline.clone(),
        stages: plan.stages.len(),
        time: now(),
    })
    .await;

    for (i, s) in plan.stages.iter().enumerate() {
        if s.skipped {
            let reason = s
                .reason
                .clone()
                .unwrap_or_else(|| "skipped by the plan".into());
            state[i] = State::Skipped;
            results[i].status = Err(reason.clone());
            emit(Event::StageSkipped {
                stage: s.name.clone(),
                reason,
            })
            .await;
        }
    }

    let stop = cancel.child_token();
    let launcher = Launcher {
        plan,
        opts,
        backend: &backend,
        events: &events,
        masker: &masker,
    };
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut failed = false;
    let mut prepared = vec![false; plan.stages.len()];
    loop {
        // Skip what can no longer run, start what can.
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..plan.stages.len() {
                let s = &plan.stages[i];
                if !matches!(state[i], State::Pending) || s.finally {
                    continue;
                }
                let blocked = deps[i].iter().find_map(|&d| match &state[d] {
                    State::Done(st) if !st.lets_dependents_run() => Some(format!(
                        "needs `{}`, which {}",
                        plan.stages[d].name,
                        describe(*st)
                    )),
                    State::Skipped => Some(format!(
                        "needs `{}`, which was skipped",
                        plan.stages[d].name
                    )),
                    _ => None,
                });
                let stopping = (failed && !opts.keep_going) || stop.is_cancelled();
                if let Some(reason) = blocked
                    .or_else(|| stopping.then(|| "not started: the run is stopping".to_string()))
                {
                    state[i] = State::Skipped;
                    results[i].status = Err(reason.clone());
                    emit(Event::StageSkipped {
                        stage: s.name.clone(),
                        reason,
                    })
                    .await;
                    changed = true;
                    continue;
                }
                let ready = deps[i]
                    .iter()
                    .all(|&d| matches!(state[d], State::Done(st) if st.lets_dependents_run()));
                if !ready {
                    continue;
                }
                if s.kind == "manual" {
                    let status = approve(s, opts).await;
                    state[i] = State::Done(status);
                    results[i].status = Ok(status);
                    emit(Event::StageFinished {
                        stage: s.name.clone(),
                        status,
                        attempt: 1,
                        duration_ms: 0,
                        exit_code: None,
                        message: (status == StageStatus::WaitingForApproval).then(|| {
                            format!(
                                "waiting for approval: run again with `--approve {}`",
                                s.name
                            )
                        }),
                        time: now(),
                    })
                    .await;
                    changed = true;
                    continue;
                }
                if running.len() >= opts.jobs.max(1) {
                    continue;
                }
                state[i] = State::Running;
                prepared[i] = true;
                launcher
                    .start(&mut running, i, 1, &stop, RunStatus::Succeeded)
                    .await;
                changed = true;
            }
        }
        // Get the next stages ready while the ones they wait for run: a
        // stage whose dependencies have all started, or are ready
        // themselves, is prepared once; at most `-j` wait prepared.
        if !stop.is_cancelled() {
            let mut waiting = (0..plan.stages.len())
                .filter(|&i| prepared[i] && matches!(state[i], State::Pending))
                .count();
            for i in 0..plan.stages.len() {
                if waiting >= opts.jobs.max(1) {
                    break;
                }
                let s = &plan.stages[i];
                if prepared[i] || s.finally || s.kind == "manual" {
                    continue;
                }
                if !matches!(state[i], State::Pending) {
                    continue;
                }
                let soon = deps[i].iter().all(|&d| match state[d] {
                    State::Running => true,
                    State::Done(st) => st.lets_dependents_run(),
                    State::Pending => prepared[d],
                    State::Skipped => false,
                });
                if soon {
                    prepared[i] = true;
                    waiting += 1;
                    backend.prepare(&launcher.job(i, 1, RunStatus::Succeeded));
                }
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let Ok(done) = joined else { continue };
        let i = done.index;
        let s = &plan.stages[i];
        let elapsed = done.started.elapsed();
        let (mut status, exit_code, message) = classify(&done.outcome, s, &masker);
        let retry = status.fails_pipeline()
            && done.attempt <= s.retry
            && !stop.is_cancelled()
            && !matches!(done.outcome, Outcome::Internal(_));
        if !retry && s.allow_failure && status.fails_pipeline() {
            status = StageStatus::FailedAllowed;
        }
        results[i].message.clone_from(&message);
        results[i].unreachable =
            matches!(done.outcome, Outcome::Unreachable(_) | Outcome::Internal(_));
        emit(Event::StageFinished {
            stage: s.name.clone(),
            status,
            attempt: done.attempt,
            duration_ms: millis(elapsed),
            exit_code,
            message,
            time: now(),
        })
        .await;
        results[i].attempts = done.attempt;
        results[i].duration += elapsed;
        let begun = done.started.duration_since(start);
        results[i].span = Some((results[i].span.map_or(begun, |(b, _)| b), begun + elapsed));
        if retry {
            state[i] = State::Running;
            launcher
                .start(
                    &mut running,
                    i,
                    done.attempt + 1,
                    &stop,
                    RunStatus::Succeeded,
                )
                .await;
            continue;
        }
        state[i] = State::Done(status);
        results[i].status = Ok(status);
        if status.fails_pipeline() || status == StageStatus::Cancelled {
            failed |= status.fails_pipeline();
            if !opts.keep_going {
                stop.cancel();
            }
        }
    }

    let status = if cancel.is_cancelled() {
        RunStatus::Cancelled
    } else if failed
        || results
            .iter()
            .any(|r| matches!(r.status, Ok(st) if st.fails_pipeline()))
    {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };

    // `finally` stages: always, one after another, with the run's status.
    let finally_stop = CancellationToken::new();
    for (i, s) in plan.stages.iter().enumerate() {
        if !s.finally || !matches!(state[i], State::Pending) {
            continue;
        }
        launcher
            .start(&mut running, i, 1, &finally_stop, status)
            .await;
        if let Some(Ok(done)) = running.join_next().await {
            let elapsed = done.started.elapsed();
            let (mut st, code, message) = classify(&done.outcome, s, &masker);
            if s.allow_failure && st.fails_pipeline() {
                st = StageStatus::FailedAllowed;
            }
            emit(Event::StageFinished {
                stage: s.name.clone(),
                status: st,
                attempt: 1,
                duration_ms: millis(elapsed),
                exit_code: code,
                message: message.clone(),
                time: now(),
            })
            .await;
            let begun = done.started.duration_since(start);
            results[i] = StageResult {
                name: s.name.clone(),
                status: Ok(st),
                attempts: 1,
                duration: elapsed,
                span: Some((begun, begun + elapsed)),
                message,
                unreachable: matches!(done.outcome, Outcome::Unreachable(_) | Outcome::Internal(_)),
            };
        }
    }
    let status = if status == RunStatus::Succeeded
        && results
            .iter()
            .any(|r| matches!(r.status, Ok(st) if st.fails_pipeline()))
    {
        RunStatus::Failed
    } else {
        status
    };
    let duration = start.elapsed();
    emit(Event::RunFinished {
        status,
        duration_ms: millis(duration),
        time: now(),
    })
    .await;
    RunSummary {
        status,
        stages: results,
        duration,
    }
}

fn describe(st: StageStatus) -> &'static str {
    match st {
        StageStatus::Failed => "failed",
        StageStatus::TimedOut => "timed out",
        StageStatus::Cancelled => "was cancelled",
        StageStatus::WaitingForApproval => "is waiting for approval",
        StageStatus::Succeeded | StageStatus::FailedAllowed => "ran",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What every attempt of a run is started with.
struct Launcher<'a> {
    plan: &'a Plan,
    opts: &'a RunOptions,
    backend: &'a Arc<dyn Backend>,
    events: &'a mpsc::Sender<Event>,
    masker: &'a Masker,
}

impl Launcher<'_> {
    /// One attempt of stage `index`, as the backend gets it.
    fn job(&self, index: usize, attempt: u32, status: RunStatus) -> Job {
        let stage = &self.plan.stages[index];
        Job {
            stage: stage.clone(),
            attempt,
            env: job_env(stage, self.plan, self.opts, status),
            workspace: self.opts.workspace.clone(),
            timeout: stage.timeout_secs.map(Duration::from_secs),
            secrets: self.opts.secrets.clone(),
            source: self.plan.git.source.clone(),
            inputs: inputs(stage, self.plan),
        }
    }

    /// Announces and starts one attempt of stage `index`; `status` is the
    /// run's, for `finally` stages.
    async fn start(
        &self,
        set: &mut JoinSet<Finished>,
        index: usize,
        attempt: u32,
        cancel: &CancellationToken,
        status: RunStatus,
    ) {
        let stage = &self.plan.stages[index];
        let _ = self
            .events
            .send(Event::StageStarted {
                stage: stage.name.clone(),
                attempt,
                time: now(),
            })
            .await;
        let job = self.job(index, attempt, status);
        let output = Output::new(stage.name.clone(), self.events.clone(), self.masker.clone());
        // Asked for now, before the scheduler prepares other stages: a
        // backend may give the stages it executes precedence.
        let execution = self.backend.execute(job, output, cancel.clone());
        set.spawn(async move {
            let started = Instant::now();
            // A panic fails this stage, not silently the bookkeeping: a
            // dropped task would leave it running forever and the run
            // reported as succeeded.
            let outcome = std::panic::AssertUnwindSafe(execution)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Outcome::Internal(format!(
                        "internal error: the stage's task panicked: {why} (a bug in slipway; please report it)"
                    ))
                });
            Finished {
                index,
                attempt,
                outcome,
                started,
            }
        });
    }
}

/// What an attempt's outcome means, before retries and `allow-failure`:
/// the status, the exit code and why it failed.
fn classify(
    outcome: &Outcome,
    stage: &PlannedStage,
    masker: &Masker,
) -> (StageStatus, Option<i32>, Option<String>) {
    match outcome {
        Outcome::Exited(0) => (StageStatus::Succeeded, Some(0), None),
        Outcome::Exited(c) => (
            StageStatus::Failed,
            Some(*c),
            Some(format!("exited with {c}")),
        ),
        Outcome::TimedOut => (
            StageStatus::TimedOut,
            None,
            stage.timeout_secs.map(|t| {
                format!(
                    "killed after its timeout of {}",
                    humantime::format_duration(Duration::from_secs(t))
                )
            }),
        ),
        Outcome::Cancelled => (StageStatus::Cancelled, None, Some("cancelled".into())),
        Outcome::Error(e) | Outcome::Unreachable(e) | Outcome::Internal(e) => {
            (StageStatus::Failed, None, Some(masker.mask(e)))
        }
    }
}

/// Every stage `stage` comes after, directly or not, that declares
/// artifacts, in plan order.
fn inputs(stage: &PlannedStage, plan: &Plan) -> Vec<(String, Vec<String>)> {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut stack: Vec<&str> = stage.after.iter().map(|a| &**a).collect();
    while let Some(name) = stack.pop() {
        if seen.insert(name) {
            if let Some(s) = plan.stage(name) {
                stack.extend(s.after.iter().map(|a| &**a));
            }
        }
    }
    plan.stages
        .iter()
        .filter(|s| seen.contains(s.name.as_str()) && !s.artifacts.is_empty())
        .map(|s| (s.name.clone(), s.artifacts.clone()))
        .collect()
}

/// The stage's environment as it runs: the plan's env with secrets filled
/// in, and the `SLIPWAY_*` context.
fn job_env(
    stage: &PlannedStage,
    plan: &Plan,
    opts: &RunOptions,
    status: RunStatus,
) -> IndexMap<String, String> {
    let mut env: IndexMap<String, String> = stage
        .env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for name in &stage.secrets {
        if let Some(v) = opts.secrets.get(&**name) {
            env.insert(name.to_string(), v.clone());
        }
    }
    for (name, template) in &stage.secret_env {
        let mut value = template.to_string();
        for (secret, v) in &opts.secrets {
            value = value.replace(&format!("${{secret.{secret}}}"), v);
        }
        env.insert(name.to_string(), value);
    }
    let git = &plan.git;
    let context = [
        ("SLIPWAY_PIPELINE", Some(plan.pipeline.clone())),
        ("SLIPWAY_STAGE", Some(stage.name.clone())),
        ("SLIPWAY_ENVIRONMENT", plan.environment.clone()),
        ("SLIPWAY_GIT_SHA", git.sha.clone()),
        ("SLIPWAY_GIT_SHORT_SHA", git.short_sha.clone()),
        ("SLIPWAY_GIT_BRANCH", git.branch.clone()),
        ("SLIPWAY_GIT_TAG", git.tag.clone()),
    ];
    for (k, v) in context {
        env.insert(k.into(), v.unwrap_or_default());
    }
    if stage.finally {
        env.insert("SLIPWAY_PIPELINE_STATUS".into(), status.as_str().into());
    }
    env
}

/// A `manual` stage: approved in advance, asked on a terminal, or waiting.
async fn approve(stage: &PlannedStage, opts: &RunOptions) -> StageStatus {
    if opts
        .approve
        .iter()
        .any(|a| *a == stage.name || *a == stage.stage)
    {
        return StageStatus::Succeeded;
    }
    if !opts.interactive {
        return StageStatus::WaitingForApproval;
    }
    let prompt = stage
        .manual
        .clone()
        .unwrap_or_else(|| format!("Run `{}`?", stage.name));
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        eprint!("{prompt} [y/N] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map(|_| line)
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        StageStatus::Succeeded
    } else {
        StageStatus::WaitingForApproval
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::run::backend::BoxFuture;

    /// Runs stage `bug`'s task into a panic (standing in for a bug in a
    /// backend); every other stage exits 0 at once.
    struct Buggy;

    impl Backend for Buggy {
        fn execute(&self, job: Job, _: Output, _: CancellationToken) -> BoxFuture<Outcome> {
            Box::pin(async move {
                assert!(job.stage.name != "bug", "a bug in the backend");
                Outcome::Exited(0)
            })
        }

        fn name(&self) -> &'static str {
            "buggy"
        }
    }

    fn plan(text: &str) -> Plan {
        let checked = crate::model::check_text(Path::new("t.pipeline"), text);
        let pipeline = checked.pipeline.expect("checks");
        crate::plan::plan(&pipeline, &crate::plan::Options::default()).expect("plans")
    }

    #[tokio::test]
    async fn a_stage_whose_task_panics_fails_with_an_internal_error_and_its_dependents_are_skipped()
    {
        let plan = plan(
            "pipeline \"p\"\n\nstage bug {\n  image \"x\"\n  run \"true\"\n  retry 2\n}\n\n\
             stage after_bug after bug {\n  image \"x\"\n  run \"true\"\n}\n\n\
             stage other {\n  image \"x\"\n  run \"true\"\n}\n",
        );
        let opts = RunOptions {
            run: "test".into(),
            jobs: 2,
            keep_going: true,
            approve: Vec::new(),
            interactive: false,
            workspace: std::env::temp_dir(),
            secrets: IndexMap::new(),
        };
        let (tx, mut rx) = mpsc::channel(64);
        let drain = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(e) = rx.recv().await {
                events.push(e);
            }
            events
        });
        let summary = run(&plan, &opts, Arc::new(Buggy), tx, CancellationToken::new()).await;
        let events = drain.await.expect("events");
        assert_eq!(summary.status, RunStatus::Failed);
        let bug = &summary.stages[0];
        assert_eq!(bug.status, Ok(StageStatus::Failed));
        assert!(bug.unreachable, "the run must exit 3");
        assert_eq!(bug.attempts, 1, "an internal error is not retried");
        assert!(
            bug.message
                .as_deref()
                .is_some_and(|m| m.contains("internal error") && m.contains("a bug in the backend")),
            "{:?}",
            bug.message
        );
        assert!(summary.stages[1].status.is_err(), "after_bug is skipped");
        assert_eq!(summary.stages[2].status, Ok(StageStatus::Succeeded));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::StageSkipped { stage, .. } if stage == "after_bug"
        )));
    }
}
