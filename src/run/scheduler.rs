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

use super::artifacts::{ArtifactKey, ArtifactStore};
use super::backend::{Backend, Env, EnvValue, Job, Outcome, Output, Prepared, RunContext, RunInfo};
use super::events::{Event, RunStatus, StageStatus, now};
use super::mask::Masker;
use super::state::{Action, Input, RunState, millis};
use crate::plan::{Plan, PlannedStage};

/// What the command line decides about a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stages running at once.
    pub jobs: usize,
    /// After a failure, still run everything that does not depend on it.
    pub keep_going: bool,
    /// `manual` stages approved in advance, by stage or cell name.
    pub approve: Vec<String>,
    /// Where to ask about `manual` stages not approved in advance (the
    /// CLI, on a terminal); without it they wait for approval.
    pub questions: Option<mpsc::Sender<Question>>,
    /// The project directory.
    pub workspace: PathBuf,
    /// Secret values by name. Never printed.
    pub secrets: IndexMap<String, String>,
    /// The stage cache, for stages that declare `inputs`.
    pub cache: Option<Arc<crate::cache::StageCache>>,
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

/// A `manual` stage's question, for whoever asks people.
#[derive(Debug)]
pub struct Question {
    pub stage: String,
    pub prompt: String,
    /// Yes or no; dropping it unanswered is a no.
    pub answer: tokio::sync::oneshot::Sender<bool>,
}

/// Why a run could not begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// A stage asks for what the backend cannot do: refused before
    /// anything ran (exit 2).
    Unsupported(String),
    /// The backend could not open the run (exit 3).
    Open(String),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Unsupported(_) => 2,
            RunError::Open(_) => 3,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Unsupported(m) | RunError::Open(m) => f.write_str(m),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run's id.
    pub run: String,
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
///
/// Every stage that will run is first checked against the backend: one it
/// cannot run refuses the whole run before anything starts. The run's id
/// is minted here; the backend is opened with it before the first stage
/// and closed after the last, once every preparation that did not run is
/// discarded. A backend that cannot open (the engine refuses the run's
/// network) is an error before anything ran.
pub async fn run(
    plan: &Plan,
    opts: &RunOptions,
    backend: Arc<dyn Backend>,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
) -> Result<RunSummary, RunError> {
    for stage in plan.stages.iter().filter(|s| !s.skipped && !s.is_manual()) {
        backend
            .supports_stage(stage)
            .map_err(|why| RunError::Unsupported(format!("cannot run `{}`: {why}", stage.name)))?;
    }
    let start = Instant::now();
    let info = RunInfo {
        run: format!(
            "{}-{}",
            jiff::Timestamp::now().as_millisecond(),
            std::process::id()
        ),
        pipeline: plan.pipeline.clone(),
    };
    backend.open(&info).await.map_err(RunError::Open)?;
    let record = super::record::Record::begin(&opts.workspace, &info.run, &plan.pipeline);
    let context = Arc::new(RunContext {
        run: info.run.clone(),
        pipeline: plan.pipeline.clone(),
        environment: plan.environment.clone(),
        git: plan.git.clone(),
        workspace: opts.workspace.clone(),
        artifacts: ArtifactStore::for_run(&opts.workspace, &info.run),
    });
    let masker = Masker::new(opts.secrets.values().cloned());
    let ahead = backend.ahead();
    let mut machine = RunState::new(plan, opts, &info.run, &masker, ahead);
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
        context: &context,
    };
    // Attempts the backend got ready ahead, by stage, until they start.
    let mut prepared: HashMap<usize, Prepared> = HashMap::new();
    let mut discards: JoinSet<()> = JoinSet::new();
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
                    let ready = prepared.remove(&index);
                    let id = launcher
                        .start(&mut running, index, attempt, token, status, ready)
                        .await;
                    attempts.insert(id, (index, attempt, Instant::now()));
                }
                Action::Prepare { index } => {
                    // A stage the cache may serve is not got ready: a hit
                    // would throw away a container or Pod made for nothing.
                    let served = opts
                        .cache
                        .as_ref()
                        .is_some_and(|c| c.serves(&plan.stages[index]));
                    if !served {
                        let job = launcher.job(index, 1, RunStatus::Succeeded);
                        if let Some(handle) = backend.prepare(&job) {
                            prepared.insert(index, handle);
                        }
                    }
                }
                Action::Discard { index } => {
                    if let Some(handle) = prepared.remove(&index) {
                        discards.spawn(backend.discard(handle));
                    }
                }
                Action::Ask { index } => {
                    asking += 1;
                    let stage = &plan.stages[index];
                    let (answer, answered) = tokio::sync::oneshot::channel();
                    let question = Question {
                        stage: stage.name.clone(),
                        prompt: match &stage.action {
                            crate::plan::PlannedAction::Manual { question } => question.clone(),
                            _ => format!("Run `{}`?", stage.name),
                        },
                        answer,
                    };
                    if let Some(questions) = &opts.questions {
                        let _ = questions.send(question).await;
                    }
                    let answers = answers_tx.clone();
                    tokio::spawn(async move {
                        let yes = answered.await.unwrap_or(false);
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
    // Preparations whose stages never ran (skipped, stopped) are undone
    // before the backend closes.
    for (_, handle) in prepared.drain() {
        discards.spawn(backend.discard(handle));
    }
    while discards.join_next().await.is_some() {}
    let duration = start.elapsed();
    let _ = events
        .send(Event::RunFinished {
            status,
            duration_ms: millis(duration),
            time: now(),
        })
        .await;
    backend.close().await;
    let summary = RunSummary {
        run: info.run.clone(),
        status,
        stages: machine.into_results(),
        duration,
    };
    record.finish(&opts.workspace, &summary, |stage| {
        opts.cache.as_ref().and_then(|c| c.key_of(stage))
    });
    Ok(summary)
}

/// What every attempt of a run is started with.
struct Launcher<'a> {
    plan: &'a Plan,
    opts: &'a RunOptions,
    backend: &'a Arc<dyn Backend>,
    events: &'a mpsc::Sender<Event>,
    masker: &'a Masker,
    context: &'a Arc<RunContext>,
}

impl Launcher<'_> {
    /// One attempt of stage `index`, as the backend gets it.
    fn job(&self, index: usize, attempt: u32, status: RunStatus) -> Job {
        let stage = &self.plan.stages[index];
        let secrets = &self.opts.secrets;
        Job {
            stage: stage.clone(),
            attempt,
            env: job_env(stage, self.plan, secrets, status),
            service_env: stage
                .services
                .iter()
                .map(|svc| with_secrets(&svc.env, &svc.secret_env, secrets))
                .collect(),
            context: Arc::clone(self.context),
            inputs: inputs(stage, self.plan),
            outputs: keys(&stage.name, &stage.artifacts),
        }
    }

    /// Announces and starts one attempt of stage `index`; `status` is the
    /// run's, for `finally` stages. The attempt's deadline is held here: at
    /// its `timeout` the attempt is cancelled, and ends as timed out.
    /// Returns the task's id.
    async fn start(
        &self,
        set: &mut JoinSet<Outcome>,
        index: usize,
        attempt: u32,
        cancel: &CancellationToken,
        status: RunStatus,
        prepared: Option<Prepared>,
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
        let stop = cancel.child_token();
        let execution = match &self.opts.cache {
            Some(cache) if attempt == 1 && crate::cache::StageCache::keyed(stage) => {
                let image_id = self
                    .backend
                    .image_id(stage.image.as_deref().unwrap_or_default());
                let (backend, again) = (Arc::clone(self.backend), Arc::clone(self.backend));
                let (run_job, running) = (job.clone(), stop.clone());
                let ready = std::sync::Arc::new(std::sync::Mutex::new(prepared));
                let undo = std::sync::Arc::clone(&ready);
                crate::cache::through(
                    Arc::clone(cache),
                    job,
                    image_id,
                    output,
                    move |output| {
                        let prepared = ready.lock().ok().and_then(|mut p| p.take());
                        backend.execute(run_job, prepared, output, running)
                    },
                    move || {
                        let prepared = undo.lock().ok().and_then(|mut p| p.take());
                        match prepared {
                            Some(p) => again.discard(p),
                            None => Box::pin(async {}),
                        }
                    },
                )
            }
            _ => self.backend.execute(job, prepared, output, stop.clone()),
        };
        let timeout = stage.timeout_secs.map(Duration::from_secs);
        set.spawn(with_deadline(execution, timeout, stop)).id()
    }
}

/// Runs an attempt to its end, or to its deadline: then it is stopped
/// like a cancelled one, waited for (so that it cleans up), and reported
/// as timed out.
async fn with_deadline(
    execution: super::backend::BoxFuture<'static, Outcome>,
    timeout: Option<Duration>,
    stop: CancellationToken,
) -> Outcome {
    let Some(limit) = timeout else {
        return execution.await;
    };
    let mut execution = execution;
    tokio::select! {
        outcome = &mut execution => outcome,
        () = tokio::time::sleep(limit) => {
            stop.cancel();
            match execution.await {
                Outcome::Cancelled => Outcome::TimedOut,
                // It ended by itself as the deadline came.
                other => other,
            }
        }
    }
}

/// The store keys of a stage's declared artifacts.
fn keys(stage: &str, paths: &[String]) -> Vec<ArtifactKey> {
    paths
        .iter()
        .enumerate()
        .map(|(index, path)| ArtifactKey {
            stage: stage.to_string(),
            index,
            path: path.clone(),
        })
        .collect()
}

/// Every artifact of the stages `stage` comes after, directly or not, in
/// plan order.
fn inputs(stage: &PlannedStage, plan: &Plan) -> Vec<ArtifactKey> {
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
        .filter(|s| seen.contains(s.name.as_str()))
        .flat_map(|s| keys(&s.name, &s.artifacts))
        .collect()
}

/// An env with its `${secret.NAME}` values filled in, those marked secret.
fn with_secrets(
    env: &IndexMap<crate::plan::Shared, crate::plan::Shared>,
    secret_env: &IndexMap<crate::plan::Shared, crate::plan::Shared>,
    secrets: &IndexMap<String, String>,
) -> Env {
    env.iter()
        .map(|(k, v)| match secret_env.get(k) {
            Some(template) => (
                k.to_string(),
                EnvValue::Secret(crate::plan::fill_secrets(template, |name| {
                    secrets.get(name).map(String::as_str)
                })),
            ),
            None => (k.to_string(), EnvValue::Plain(v.to_string())),
        })
        .collect()
}

/// The stage's environment as it runs: the plan's env with secrets filled
/// in, and the `SLIPWAY_*` context.
fn job_env(
    stage: &PlannedStage,
    plan: &Plan,
    secrets: &IndexMap<String, String>,
    status: RunStatus,
) -> Env {
    let mut env = with_secrets(&stage.env, &stage.secret_env, secrets);
    for name in &stage.secrets {
        if let Some(v) = secrets.get(&**name) {
            env.insert(name.to_string(), EnvValue::Secret(v.clone()));
        }
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
        env.insert(k.into(), EnvValue::Plain(v.unwrap_or_default()));
    }
    if stage.finally {
        env.insert(
            "SLIPWAY_PIPELINE_STATUS".into(),
            EnvValue::Plain(status.as_str().into()),
        );
    }
    env
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
        /// Its ahead policy.
        ahead: usize,
    }

    impl Scripted {
        fn with(script: &[(&'static str, &[(u64, Outcome)])]) -> Arc<Self> {
            Arc::new(Self {
                script: script.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
                ahead: usize::MAX,
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
        fn open<'a>(&'a self, info: &'a RunInfo) -> BoxFuture<'a, Result<(), String>> {
            self.note(format!("open {}", info.run));
            Box::pin(async { Ok(()) })
        }

        fn close(&self) -> BoxFuture<'_, ()> {
            self.note("close".into());
            Box::pin(async {})
        }

        fn supports(&self, action: &crate::plan::PlannedAction) -> Result<(), String> {
            match action {
                crate::plan::PlannedAction::Run { .. } => Ok(()),
                other => Err(format!("no `{}` stages here", other.kind())),
            }
        }

        fn ahead(&self) -> usize {
            self.ahead
        }

        fn prepare(&self, job: &Job) -> Option<Prepared> {
            self.note(format!("prepare {}", job.stage.name));
            Some(Prepared::new(job.stage.name.clone()))
        }

        fn discard(&self, prepared: Prepared) -> BoxFuture<'static, ()> {
            let name = prepared.into_inner::<String>().unwrap_or_default();
            self.note(format!("discard {name}"));
            Box::pin(async {})
        }

        fn execute(
            &self,
            job: Job,
            prepared: Option<Prepared>,
            _: Output,
            cancel: CancellationToken,
        ) -> BoxFuture<'static, Outcome> {
            let me = Arc::clone(self);
            if let Some(p) = prepared {
                let name = p.into_inner::<String>().unwrap_or_default();
                me.note(format!("claim {name}"));
            }
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
                    .map(|s| format!(" ({})", s.value()))
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
            jobs,
            keep_going,
            approve: Vec::new(),
            questions: None,
            workspace: std::env::temp_dir(),
            secrets: IndexMap::new(),
            cache: None,
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
        let summary = run(plan, opts, Arc::new(Arc::clone(backend)), tx, cancel)
            .await
            .expect("opens");
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
        let log = backend.log();
        assert_eq!(
            log.iter().rev().nth(1).map(String::as_str),
            Some("end notify#1"),
            "{log:?}"
        );
        assert!(
            backend
                .log()
                .contains(&"start notify#1 (failed)".to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_backend_is_opened_with_the_run_id_before_any_stage_and_closed_after_all() {
        let plan = plan("stage a uses t { run \"x\" }\nfinally notify uses t { run \"x\" }\n");
        let backend = Scripted::with(&[]);
        let (_, events) = go(
            &plan,
            &options(false, 2),
            &backend,
            CancellationToken::new(),
        )
        .await;
        let Some(Event::RunStarted { run, .. }) = events.first() else {
            panic!("{events:?}");
        };
        let log = backend.log();
        assert_eq!(log.first(), Some(&format!("open {run}")));
        assert_eq!(log.last().map(String::as_str), Some("close"));
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
            // The scheduler holds the deadline: at 1s it stops the attempt.
            ("late", &[(60_000, Outcome::Exited(0))]),
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
        let (questions, _asked) = mpsc::channel(1);
        opts.questions = Some(questions);
        let masker = Masker::new(Vec::<String>::new());
        let mut state = RunState::new(&plan, &opts, "test", &masker, usize::MAX);
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

    #[tokio::test(start_paused = true)]
    async fn a_stage_the_backend_cannot_run_is_refused_before_anything_runs() {
        let plan = plan("stage a uses t { run \"x\" }\nstage img {\n  build \".\"\n}\n");
        let backend = Scripted::with(&[]);
        let (tx, _rx) = mpsc::channel(64);
        let refused = run(
            &plan,
            &options(false, 2),
            Arc::new(Arc::clone(&backend)),
            tx,
            CancellationToken::new(),
        )
        .await
        .expect_err("refused");
        assert_eq!(
            refused,
            RunError::Unsupported("cannot run `img`: no `build` stages here".into())
        );
        assert_eq!(refused.exit_code(), 2);
        assert!(backend.log().is_empty(), "{:?}", backend.log());
    }

    #[tokio::test(start_paused = true)]
    async fn prepared_attempts_are_claimed_by_their_stage_or_discarded_before_close() {
        let plan = plan(
            "stage a uses t { run \"x\" }\nstage b after a uses t { run \"x\" }\n\
             stage fails uses t { run \"x\" }\nstage never after fails uses t { run \"x\" }\n",
        );
        let backend = Scripted::with(&[
            ("a", &[(100, Outcome::Exited(0))]),
            ("fails", &[(500, Outcome::Exited(1))]),
        ]);
        let (summary, _) = go(&plan, &options(true, 4), &backend, CancellationToken::new()).await;
        assert_eq!(status_of(&summary, "b"), Ok(StageStatus::Succeeded));
        let log = backend.log();
        let pos = |l: &str| log.iter().position(|x| x == l).unwrap_or(usize::MAX);
        assert!(pos("prepare b") < pos("claim b"), "{log:?}");
        assert!(pos("claim b") < pos("start b#1"), "{log:?}");
        // `never` was prepared, then skipped: its preparation is undone
        // before the backend closes.
        assert!(pos("prepare never") < pos("discard never"), "{log:?}");
        assert!(pos("discard never") < pos("close"), "{log:?}");
        assert_eq!(log.iter().filter(|l| l.starts_with("discard")).count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_prepares_nothing_ahead_is_asked_for_nothing() {
        let plan = plan("stage a uses t { run \"x\" }\nstage b after a uses t { run \"x\" }\n");
        let backend = Arc::new(Scripted {
            ahead: 0,
            ..Scripted::default()
        });
        let (summary, _) = go(
            &plan,
            &options(false, 4),
            &backend,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(summary.status, RunStatus::Succeeded);
        assert!(
            !backend.log().iter().any(|l| l.starts_with("prepare")),
            "{:?}",
            backend.log()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_cancels_the_attempt_and_it_ends_timed_out_after_stopping() {
        let plan = plan("stage late uses t {\n  retry 1\n  timeout 2s\n  run \"x\"\n}\n");
        let backend = Scripted::with(&[(
            "late",
            &[(60_000, Outcome::Exited(0)), (10, Outcome::Exited(0))],
        )]);
        let (summary, events) = go(
            &plan,
            &options(false, 2),
            &backend,
            CancellationToken::new(),
        )
        .await;
        // The first attempt was stopped (its task saw the cancellation and
        // ended), then retried.
        let log = backend.log();
        assert!(log.contains(&"end late#1".to_string()), "{log:?}");
        assert_eq!(status_of(&summary, "late"), Ok(StageStatus::Succeeded));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::StageFinished { stage, status: StageStatus::TimedOut, attempt: 1, .. } if stage == "late"
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn questions_go_to_the_asker_and_ctrl_c_while_one_waits_ends_the_run() {
        let plan = plan(
            "stage approve {\n  manual \"Ship it?\"\n}\nstage deploy after approve uses t { run \"x\" }\n",
        );
        let backend = Scripted::with(&[]);
        let mut opts = options(false, 2);
        let (questions, mut asked) = mpsc::channel(4);
        opts.questions = Some(questions);
        // First run: the asker says yes.
        let answering = tokio::spawn(async move {
            let q: Question = asked.recv().await.expect("a question");
            assert_eq!(
                (q.stage.as_str(), q.prompt.as_str()),
                ("approve", "Ship it?")
            );
            let _ = q.answer.send(true);
            asked
        });
        let (yes, _) = go(&plan, &opts, &backend, CancellationToken::new()).await;
        assert_eq!(status_of(&yes, "deploy"), Ok(StageStatus::Succeeded));
        // Second run: nobody answers, and Ctrl-C comes.
        let mut asked = answering.await.expect("asker");
        let cancel = CancellationToken::new();
        let ctrl_c = cancel.clone();
        let waiting = tokio::spawn(async move {
            let q = asked.recv().await.expect("a question");
            ctrl_c.cancel();
            // Held unanswered until the run is over.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(q);
        });
        let (stopped, _) = go(&plan, &opts, &backend, cancel).await;
        assert_eq!(stopped.status, RunStatus::Cancelled);
        assert_eq!(
            status_of(&stopped, "approve"),
            Ok(StageStatus::WaitingForApproval)
        );
        assert!(status_of(&stopped, "deploy").is_err());
        waiting.abort();
    }
}
