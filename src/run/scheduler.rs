//! The scheduler: the one owner of a run's state. It starts each stage the
//! moment its dependencies have succeeded, within the `-j` limit, retries,
//! fails fast (or keeps going), skips what can no longer run, answers
//! Ctrl-C, and runs `finally` stages last. The rules live in
//! `RunState` (`state.rs`); [`run`] is the loop that carries out what it
//! decides. Backends only execute.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backend::{Backend, Job, Outcome, Output};
use super::events::{Event, RunStatus, StageStatus, now};
use super::mask::Masker;
use super::state::{Action, Input, RunState, millis};
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

/// Runs the plan to the end. `cancel` is Ctrl-C: running stages are stopped
/// and the rest skipped, then `finally` stages run.
///
/// This loop only carries out what `RunState` decides, and feeds it what
/// happens: attempts ending, approvals answered, Ctrl-C.
pub async fn run(
    plan: &Plan,
    opts: &RunOptions,
    backend: Arc<dyn Backend>,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
) -> RunSummary {
    let start = Instant::now();
    let masker = Masker::new(opts.secrets.values().cloned());
    let mut machine = RunState::new(plan, opts, &masker);
    // Fail-fast stops the main stages; Ctrl-C too. `finally` stages run
    // whatever happened, so they have a token of their own.
    let stop = cancel.child_token();
    let finally_stop = CancellationToken::new();
    let launcher = Launcher {
        plan,
        opts,
        backend: &backend,
        events: &events,
        masker: &masker,
    };
    let mut running: JoinSet<Outcome> = JoinSet::new();
    // What each task is, so that one that panics still ends its stage.
    let mut attempts: HashMap<tokio::task::Id, (usize, u32, Instant)> = HashMap::new();
    let (answers_tx, mut answers) = mpsc::unbounded_channel::<(usize, bool)>();
    let mut asking = 0usize;
    let mut cancel_seen = false;
    let mut actions = machine.on(Input::Begin);
    let status = loop {
        let mut finish = None;
        for action in actions.drain(..) {
            match action {
                Action::Emit(event) => {
                    let _ = events.send(event).await;
                }
                Action::Start {
                    index,
                    attempt,
                    status,
                } => {
                    let token = if plan.stages[index].finally {
                        &finally_stop
                    } else {
                        &stop
                    };
                    let id = launcher
                        .start(&mut running, index, attempt, token, status)
                        .await;
                    attempts.insert(id, (index, attempt, Instant::now()));
                }
                Action::Prepare { index } => {
                    backend.prepare(&launcher.job(index, 1, RunStatus::Succeeded));
                }
                Action::Ask { index } => {
                    asking += 1;
                    let stage = plan.stages[index].clone();
                    let answers = answers_tx.clone();
                    tokio::spawn(async move {
                        let yes = ask(&stage).await;
                        let _ = answers.send((index, yes));
                    });
                }
                Action::StopRunning => stop.cancel(),
                Action::Finish(status) => finish = Some(status),
            }
        }
        if let Some(status) = finish {
            break status;
        }
        if running.is_empty() && asking == 0 {
            // Nothing in flight, yet the run is not over: a bug in the
            // rules. End it as an internal failure rather than hang.
            break RunStatus::Failed;
        }
        // Ctrl-C first: the attempts it stops end as cancelled, and the
        // run must know why before it hears of them.
        let input = tokio::select! {
            biased;
            () = cancel.cancelled(), if !cancel_seen => {
                cancel_seen = true;
                Input::Cancelled
            }
            Some(joined) = running.join_next_with_id() => {
                let (id, outcome) = match joined {
                    Ok((id, outcome)) => (id, outcome),
                    Err(e) => {
                        let id = e.id();
                        let why = e
                            .try_into_panic()
                            .ok()
                            .and_then(|p| {
                                p.downcast_ref::<&str>()
                                    .map(|s| (*s).to_string())
                                    .or_else(|| p.downcast_ref::<String>().cloned())
                            })
                            .unwrap_or_default();
                        // A task that panicked (or was aborted) still ends its stage.
                        (
                            id,
                            Outcome::Internal(format!(
                                "internal error: the stage's task panicked: {why} (a bug in slipway; please report it)"
                            )),
                        )
                    }
                };
                let Some((index, attempt, started)) = attempts.remove(&id) else {
                    continue;
                };
                Input::Finished {
                    index,
                    attempt,
                    outcome,
                    elapsed: started.elapsed(),
                    begun: started.duration_since(start),
                }
            }
            Some((index, yes)) = answers.recv() => {
                asking = asking.saturating_sub(1);
                Input::Answered { index, yes }
            }
        };
        actions = machine.on(input);
    };
    let duration = start.elapsed();
    let _ = events
        .send(Event::RunFinished {
            status,
            duration_ms: millis(duration),
            time: now(),
        })
        .await;
    RunSummary {
        status,
        stages: machine.into_results(),
        duration,
    }
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
    /// run's, for `finally` stages. Returns the task's id.
    async fn start(
        &self,
        set: &mut JoinSet<Outcome>,
        index: usize,
        attempt: u32,
        cancel: &CancellationToken,
        status: RunStatus,
    ) -> tokio::task::Id {
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
        set.spawn(execution).id()
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

/// Asks on the terminal whether a `manual` stage may go on.
async fn ask(stage: &PlannedStage) -> bool {
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
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::run::backend::BoxFuture;
    use crate::run::state::{Action, Input, RunState};

    /// A backend that plays a script: per stage, each attempt's duration
    /// (on tokio's paused clock) and outcome; `Exited(0)` at once when the
    /// script says nothing. It stops on cancellation, panics for `bug`,
    /// and logs what it was asked, in order.
    #[derive(Default)]
    struct Scripted {
        script: HashMap<&'static str, Vec<(u64, Outcome)>>,
        log: Mutex<Vec<String>>,
        live: AtomicUsize,
        most: AtomicUsize,
    }

    impl Scripted {
        fn with(script: &[(&'static str, &[(u64, Outcome)])]) -> Arc<Self> {
            Arc::new(Self {
                script: script.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
                ..Self::default()
            })
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().map(|l| l.clone()).unwrap_or_default()
        }

        fn note(&self, line: String) {
            if let Ok(mut l) = self.log.lock() {
                l.push(line);
            }
        }
    }

    impl Backend for Arc<Scripted> {
        fn prepare(&self, job: &Job) {
            self.note(format!("prepare {}", job.stage.name));
        }

        fn execute(&self, job: Job, _: Output, cancel: CancellationToken) -> BoxFuture<Outcome> {
            let me = Arc::clone(self);
            Box::pin(async move {
                let name = job.stage.name.clone();
                assert!(name != "bug", "a bug in the backend");
                let (ms, outcome) = me
                    .script
                    .get(name.as_str())
                    .and_then(|s| s.get(job.attempt as usize - 1))
                    .cloned()
                    .unwrap_or((0, Outcome::Exited(0)));
                let status = job
                    .env
                    .get("SLIPWAY_PIPELINE_STATUS")
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                me.note(format!("start {name}#{}{status}", job.attempt));
                let live = me.live.fetch_add(1, Ordering::SeqCst) + 1;
                me.most.fetch_max(live, Ordering::SeqCst);
                let outcome = tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => outcome,
                    () = cancel.cancelled() => Outcome::Cancelled,
                };
                me.live.fetch_sub(1, Ordering::SeqCst);
                me.note(format!("end {name}#{}", job.attempt));
                outcome
            })
        }

        fn name(&self) -> &'static str {
            "scripted"
        }
    }

    fn plan(text: &str) -> Plan {
        let checked = crate::model::check_text(
            Path::new("t.pipeline"),
            &format!("pipeline \"p\"\n\ntemplate t {{\n  image \"x\"\n}}\n\n{text}"),
        );
        let pipeline = checked
            .pipeline
            .unwrap_or_else(|| panic!("{:?}", checked.diagnostics));
        crate::plan::plan(&pipeline, &crate::plan::Options::default()).expect("plans")
    }

    fn options(keep_going: bool, jobs: usize) -> RunOptions {
        RunOptions {
            run: "test".into(),
            jobs,
            keep_going,
            approve: Vec::new(),
            interactive: false,
            workspace: std::env::temp_dir(),
            secrets: IndexMap::new(),
        }
    }

    async fn go(
        plan: &Plan,
        opts: &RunOptions,
        backend: &Arc<Scripted>,
        cancel: CancellationToken,
    ) -> (RunSummary, Vec<Event>) {
        let (tx, mut rx) = mpsc::channel(256);
        let drain = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(e) = rx.recv().await {
                events.push(e);
            }
            events
        });
        let summary = run(plan, opts, Arc::new(Arc::clone(backend)), tx, cancel).await;
        (summary, drain.await.expect("events"))
    }

    fn status_of(summary: &RunSummary, name: &str) -> Result<StageStatus, String> {
        summary
            .stages
            .iter()
            .find(|s| s.name == name)
            .map_or(Err("no such stage".into()), |s| s.status.clone())
    }

    #[tokio::test(start_paused = true)]
    async fn fail_fast_stops_what_runs_and_skips_the_rest_then_finally_runs() {
        let plan = plan(
            "stage a uses t { run \"x\" }\nstage slow uses t { run \"x\" }\n\
             stage after_a after a uses t { run \"x\" }\nfinally notify uses t { run \"x\" }\n",
        );
        let backend = Scripted::with(&[
            ("a", &[(100, Outcome::Exited(1))]),
            ("slow", &[(10_000, Outcome::Exited(0))]),
        ]);
        let (summary, _) = go(
            &plan,
            &options(false, 4),
            &backend,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(status_of(&summary, "a"), Ok(StageStatus::Failed));
        assert_eq!(status_of(&summary, "slow"), Ok(StageStatus::Cancelled));
        assert!(status_of(&summary, "after_a").is_err());
        assert_eq!(status_of(&summary, "notify"), Ok(StageStatus::Succeeded));
        assert_eq!(
            backend.log().last().map(String::as_str),
            Some("end notify#1")
        );
        assert!(
            backend
                .log()
                .contains(&"start notify#1 (failed)".to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keep_going_runs_everything_that_does_not_depend_on_the_failure() {
        let plan = plan(
            "stage a uses t { run \"x\" }\nstage slow uses t { run \"x\" }\n\
             stage after_a after a uses t { run \"x\" }\nstage after_slow after slow uses t { run \"x\" }\n",
        );
        let backend = Scripted::with(&[
            ("a", &[(100, Outcome::Exited(1))]),
            ("slow", &[(1_000, Outcome::Exited(0))]),
        ]);
        let (summary, events) =
            go(&plan, &options(true, 4), &backend, CancellationToken::new()).await;
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(status_of(&summary, "slow"), Ok(StageStatus::Succeeded));
        assert_eq!(
            status_of(&summary, "after_slow"),
            Ok(StageStatus::Succeeded)
        );
        assert_eq!(
            status_of(&summary, "after_a"),
            Err("needs `a`, which failed".into())
        );
        assert!(matches!(events.last(), Some(Event::RunFinished { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retried_stage_runs_again_and_its_dependents_wait_for_the_last_attempt() {
        let plan = plan(
            "stage flaky uses t {\n  retry 2\n  run \"x\"\n}\nstage next after flaky uses t { run \"x\" }\n\
             stage late uses t {\n  timeout 1s\n  run \"x\"\n}\n",
        );
        let backend = Scripted::with(&[
            (
                "flaky",
                &[(10, Outcome::Exited(1)), (10, Outcome::Exited(0))],
            ),
            ("late", &[(10, Outcome::TimedOut)]),
        ]);
        let (summary, events) =
            go(&plan, &options(true, 4), &backend, CancellationToken::new()).await;
        let flaky = &summary.stages[0];
        assert_eq!(
            (flaky.status.clone(), flaky.attempts),
            (Ok(StageStatus::Succeeded), 2)
        );
        let log = backend.log();
        let pos = |l: &str| log.iter().position(|x| x == l).unwrap_or(usize::MAX);
        assert!(pos("end flaky#2") < pos("start next#1"), "{log:?}");
        assert_eq!(status_of(&summary, "late"), Ok(StageStatus::TimedOut));
        assert_eq!(summary.status, RunStatus::Failed);
        let finishes = events
            .iter()
            .filter(|e| matches!(e, Event::StageFinished { stage, .. } if stage == "flaky"))
            .count();
        assert_eq!(finishes, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ctrl_c_stops_the_run_and_finally_still_runs_with_the_cancelled_status() {
        let plan = plan(
            "stage long uses t { run \"x\" }\nstage next after long uses t { run \"x\" }\n\
             finally notify uses t { run \"x\" }\n",
        );
        let backend = Scripted::with(&[("long", &[(60_000, Outcome::Exited(0))])]);
        let cancel = CancellationToken::new();
        let ctrl_c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ctrl_c.cancel();
        });
        let (summary, _) = go(&plan, &options(false, 4), &backend, cancel).await;
        assert_eq!(summary.status, RunStatus::Cancelled);
        assert_eq!(status_of(&summary, "long"), Ok(StageStatus::Cancelled));
        assert!(status_of(&summary, "next").is_err());
        assert!(
            backend
                .log()
                .contains(&"start notify#1 (cancelled)".to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_jobs_limit_holds_and_dependents_are_prepared_while_their_dependencies_run() {
        let plan = plan(
            "stage a uses t { run \"x\" }\nstage b uses t { run \"x\" }\nstage c uses t { run \"x\" }\n\
             stage d after a uses t { run \"x\" }\n",
        );
        let backend = Scripted::with(&[
            ("a", &[(100, Outcome::Exited(0))]),
            ("b", &[(100, Outcome::Exited(0))]),
            ("c", &[(100, Outcome::Exited(0))]),
        ]);
        let (summary, _) = go(
            &plan,
            &options(false, 2),
            &backend,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(summary.status, RunStatus::Succeeded);
        assert_eq!(backend.most.load(Ordering::SeqCst), 2);
        let log = backend.log();
        let pos = |l: &str| log.iter().position(|x| x == l).unwrap_or(usize::MAX);
        assert!(pos("prepare d") < pos("end a#1"), "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn manual_stages_are_approved_in_advance_or_wait_and_hold_their_dependents() {
        let plan = plan(
            "stage build uses t { run \"x\" }\nstage approve after build {\n  manual \"ok?\"\n}\n\
             stage deploy after approve uses t { run \"x\" }\n",
        );
        let backend = Scripted::with(&[]);
        let (waiting, _) = go(
            &plan,
            &options(false, 2),
            &backend,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(
            status_of(&waiting, "approve"),
            Ok(StageStatus::WaitingForApproval)
        );
        assert!(status_of(&waiting, "deploy").is_err());
        let mut opts = options(false, 2);
        opts.approve = vec!["approve".into()];
        let (approved, _) = go(&plan, &opts, &backend, CancellationToken::new()).await;
        assert_eq!(approved.status, RunStatus::Succeeded);
        assert_eq!(status_of(&approved, "deploy"), Ok(StageStatus::Succeeded));
    }

    #[test]
    fn a_question_on_the_terminal_does_not_hold_up_other_stages() {
        let plan = plan(
            "stage approve {\n  manual \"ok?\"\n}\nstage deploy after approve uses t { run \"x\" }\n\
             stage other uses t { run \"x\" }\nstage after_other after other uses t { run \"x\" }\n",
        );
        let mut opts = options(false, 4);
        opts.interactive = true;
        let masker = Masker::new(Vec::<String>::new());
        let mut state = RunState::new(&plan, &opts, &masker);
        let first = state.on(Input::Begin);
        assert!(first.contains(&Action::Ask { index: 0 }), "{first:?}");
        assert!(first.contains(&Action::Start {
            index: 2,
            attempt: 1,
            status: RunStatus::Succeeded
        }));
        // `other` ends while the question waits: its dependent starts.
        let next = state.on(Input::Finished {
            index: 2,
            attempt: 1,
            outcome: Outcome::Exited(0),
            elapsed: Duration::ZERO,
            begun: Duration::ZERO,
        });
        assert!(next.contains(&Action::Start {
            index: 3,
            attempt: 1,
            status: RunStatus::Succeeded
        }));
        let answered = state.on(Input::Answered {
            index: 0,
            yes: true,
        });
        assert!(answered.contains(&Action::Start {
            index: 1,
            attempt: 1,
            status: RunStatus::Succeeded
        }));
        assert!(!answered.iter().any(|a| matches!(a, Action::Finish(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_whose_task_panics_fails_with_an_internal_error_and_its_dependents_are_skipped()
    {
        let plan = plan(
            "stage bug uses t {\n  retry 2\n  run \"x\"\n}\n\
             stage after_bug after bug uses t { run \"x\" }\nstage other uses t { run \"x\" }\n",
        );
        let backend = Scripted::with(&[]);
        let (summary, events) =
            go(&plan, &options(true, 2), &backend, CancellationToken::new()).await;
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
        assert!(status_of(&summary, "after_bug").is_err());
        assert_eq!(status_of(&summary, "other"), Ok(StageStatus::Succeeded));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::StageSkipped { stage, .. } if stage == "after_bug"
        )));
    }
}
