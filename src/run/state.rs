//! Everything a run decides, without doing any of it: [`RunState::on`]
//! takes what happened (a stage's attempt ended, an approval was answered,
//! Ctrl-C) and returns what to do (start, prepare, ask, stop, emit, finish).
//! The scheduler's loop only carries the actions out and waits for the next
//! input; this is nextest's dispatcher/handler split, and it lets the rules
//! (fail-fast, keep-going, retries, skips, `finally`, approvals, preparing
//! ahead) be tested without a backend or a clock.

use std::collections::HashMap;
use std::time::Duration;

use super::backend::Outcome;
use super::events::{Event, RunStatus, StageStatus, now};
use super::mask::Masker;
use super::scheduler::{RunOptions, StageResult};
use crate::plan::{Plan, PlannedStage};

/// What happened.
#[derive(Debug)]
pub(crate) enum Input {
    /// The run begins.
    Begin,
    /// An attempt ended: `elapsed` is how long it ran, `begun` when it
    /// began, from the run's start.
    Finished {
        index: usize,
        attempt: u32,
        outcome: Outcome,
        elapsed: Duration,
        begun: Duration,
    },
    /// Somebody answered a `manual` stage's question.
    Answered { index: usize, yes: bool },
    /// Ctrl-C or SIGTERM.
    Cancelled,
}

/// What to do.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    Emit(Event),
    /// Start an attempt; `status` is the run's so far, for `finally`.
    Start {
        index: usize,
        attempt: u32,
        status: RunStatus,
    },
    /// Get a stage ready while what it waits for still runs.
    Prepare {
        index: usize,
    },
    /// Undo a stage's preparation: it will not run.
    Discard {
        index: usize,
    },
    /// Ask on the terminal whether a `manual` stage may go on.
    Ask {
        index: usize,
    },
    /// Stop the running stages (fail-fast): they end as cancelled.
    StopRunning,
    /// Nothing more will happen: the run ended with this status.
    Finish(RunStatus),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    /// A `manual` stage whose question is being asked.
    Asking,
    Running,
    Done(StageStatus),
    /// Skipped; the reason is in the stage's result.
    Skipped,
}

/// A run's state: the one place its rules live.
pub(crate) struct RunState<'a> {
    plan: &'a Plan,
    opts: &'a RunOptions,
    run: &'a str,
    masker: &'a Masker,
    deps: Vec<Vec<usize>>,
    state: Vec<State>,
    prepared: Vec<bool>,
    /// How many prepared attempts may wait at once: the backend's policy,
    /// within `-j`.
    ahead: usize,
    results: Vec<StageResult>,
    /// Attempts in flight.
    running: usize,
    /// A stage failed the pipeline.
    failed: bool,
    /// Start nothing new: fail-fast, or Ctrl-C.
    stopping: bool,
    cancelled: bool,
    /// Once the main stages are over: the run's status, given to `finally`.
    finally: Option<RunStatus>,
    finished: bool,
}

impl<'a> RunState<'a> {
    pub(crate) fn new(
        plan: &'a Plan,
        opts: &'a RunOptions,
        run: &'a str,
        masker: &'a Masker,
        ahead: usize,
    ) -> Self {
        let index: HashMap<&str, usize> = plan
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let deps = plan
            .stages
            .iter()
            .map(|s| {
                s.after
                    .iter()
                    .filter_map(|a| index.get(&**a).copied())
                    .collect()
            })
            .collect();
        let results = plan
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
        Self {
            plan,
            opts,
            run,
            masker,
            deps,
            state: vec![State::Pending; plan.stages.len()],
            prepared: vec![false; plan.stages.len()],
            ahead: ahead.min(opts.jobs.max(1)),
            results,
            running: 0,
            failed: false,
            stopping: false,
            cancelled: false,
            finally: None,
            finished: false,
        }
    }

    /// Every stage's result, in plan order.
    pub(crate) fn into_results(self) -> Vec<StageResult> {
        self.results
    }

    /// What to do now that `input` happened.
    pub(crate) fn on(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        match input {
            Input::Begin => self.begin(&mut out),
            Input::Finished {
                index,
                attempt,
                outcome,
                elapsed,
                begun,
            } => self.attempt_ended(index, attempt, &outcome, elapsed, begun, &mut out),
            Input::Answered { index, yes } => {
                if self.state[index] == State::Asking {
                    let status = if yes {
                        StageStatus::Succeeded
                    } else {
                        StageStatus::WaitingForApproval
                    };
                    self.approval(index, status, &mut out);
                }
            }
            Input::Cancelled => {
                self.cancelled = true;
                self.stopping = true;
                // A question nobody answered before Ctrl-C is a no.
                for i in 0..self.state.len() {
                    if self.state[i] == State::Asking {
                        self.approval(i, StageStatus::WaitingForApproval, &mut out);
                    }
                }
            }
        }
        self.advance(&mut out);
        out
    }

    fn begin(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Emit(Event::RunStarted {
            run: self.run.to_string(),
            pipeline: self.plan.pipeline.clone(),
            stages: self.plan.stages.len(),
            time: now(),
        }));
        for (i, s) in self.plan.stages.iter().enumerate() {
            if s.skipped {
                let reason = s
                    .reason
                    .clone()
                    .unwrap_or_else(|| "skipped by the plan".into());
                self.skip(i, reason, out);
            }
        }
    }

    fn skip(&mut self, i: usize, reason: String, out: &mut Vec<Action>) {
        if self.prepared[i] {
            out.push(Action::Discard { index: i });
        }
        self.state[i] = State::Skipped;
        self.results[i].status = Err(reason.clone());
        out.push(Action::Emit(Event::StageSkipped {
            stage: self.plan.stages[i].name.clone(),
            reason,
        }));
    }

    fn approval(&mut self, i: usize, status: StageStatus, out: &mut Vec<Action>) {
        let s = &self.plan.stages[i];
        self.state[i] = State::Done(status);
        self.results[i].status = Ok(status);
        out.push(Action::Emit(Event::StageFinished {
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
        }));
    }

    fn attempt_ended(
        &mut self,
        i: usize,
        attempt: u32,
        outcome: &Outcome,
        elapsed: Duration,
        begun: Duration,
        out: &mut Vec<Action>,
    ) {
        self.running = self.running.saturating_sub(1);
        let s = &self.plan.stages[i];
        let (mut status, exit_code, message) = classify(outcome, s, self.masker);
        let retry = !s.finally
            && status.fails_pipeline()
            && attempt <= s.retry
            && !self.stopping
            && !matches!(outcome, Outcome::Internal(_));
        if !retry && s.allow_failure && status.fails_pipeline() {
            status = StageStatus::FailedAllowed;
        }
        let r = &mut self.results[i];
        r.message.clone_from(&message);
        r.unreachable = outcome.exits_3();
        r.attempts = attempt;
        r.duration += elapsed;
        r.span = Some((r.span.map_or(begun, |(b, _)| b), begun + elapsed));
        out.push(Action::Emit(Event::StageFinished {
            stage: s.name.clone(),
            status,
            attempt,
            duration_ms: millis(elapsed),
            exit_code,
            message,
            time: now(),
        }));
        if retry {
            self.running += 1;
            out.push(Action::Start {
                index: i,
                attempt: attempt + 1,
                status: RunStatus::Succeeded,
            });
            return;
        }
        self.state[i] = State::Done(status);
        self.results[i].status = Ok(status);
        if s.finally {
            return;
        }
        if status.fails_pipeline() || status == StageStatus::Cancelled {
            self.failed |= status.fails_pipeline();
            if !self.opts.keep_going && !self.stopping {
                self.stopping = true;
                out.push(Action::StopRunning);
            }
        }
    }

    /// Skips what can no longer run, starts (or asks for) what can, gets
    /// the next stages ready; once the main stages are over, runs the
    /// `finally` stages one by one, then finishes.
    fn advance(&mut self, out: &mut Vec<Action>) {
        if self.finally.is_none() {
            self.schedule(out);
            if !self.stopping {
                self.prepare_ahead(out);
            }
            let busy = self.running > 0 || self.state.contains(&State::Asking);
            if busy {
                return;
            }
            self.finally = Some(self.main_status());
        }
        if self.running > 0 {
            return;
        }
        let status = self.finally.unwrap_or(RunStatus::Succeeded);
        let next = (0..self.plan.stages.len())
            .find(|&i| self.plan.stages[i].finally && self.state[i] == State::Pending);
        match next {
            Some(i) => {
                self.state[i] = State::Running;
                self.running += 1;
                out.push(Action::Start {
                    index: i,
                    attempt: 1,
                    status,
                });
            }
            None => {
                let failed = self
                    .results
                    .iter()
                    .any(|r| matches!(r.status, Ok(st) if st.fails_pipeline()));
                let status = if status == RunStatus::Succeeded && failed {
                    RunStatus::Failed
                } else {
                    status
                };
                self.finished = true;
                out.push(Action::Finish(status));
            }
        }
    }

    /// The run's status once its main stages are over.
    fn main_status(&self) -> RunStatus {
        if self.cancelled {
            RunStatus::Cancelled
        } else if self.failed
            || self
                .results
                .iter()
                .any(|r| matches!(r.status, Ok(st) if st.fails_pipeline()))
        {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        }
    }

    fn schedule(&mut self, out: &mut Vec<Action>) {
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..self.plan.stages.len() {
                let s = &self.plan.stages[i];
                if self.state[i] != State::Pending || s.finally {
                    continue;
                }
                let blocked = self.deps[i].iter().find_map(|&d| match self.state[d] {
                    State::Done(st) if !st.lets_dependents_run() => Some(format!(
                        "needs `{}`, which {}",
                        self.plan.stages[d].name,
                        describe(st)
                    )),
                    State::Skipped => Some(format!(
                        "needs `{}`, which was skipped",
                        self.plan.stages[d].name
                    )),
                    _ => None,
                });
                if let Some(reason) = blocked.or_else(|| {
                    self.stopping
                        .then(|| "not started: the run is stopping".to_string())
                }) {
                    self.skip(i, reason, out);
                    changed = true;
                    continue;
                }
                let ready = self.deps[i]
                    .iter()
                    .all(|&d| matches!(self.state[d], State::Done(st) if st.lets_dependents_run()));
                if !ready {
                    continue;
                }
                if s.is_manual() {
                    if approved(s, self.opts) {
                        self.approval(i, StageStatus::Succeeded, out);
                    } else if self.opts.questions.is_some() {
                        self.state[i] = State::Asking;
                        out.push(Action::Ask { index: i });
                    } else {
                        self.approval(i, StageStatus::WaitingForApproval, out);
                    }
                    changed = true;
                    continue;
                }
                if self.running >= self.opts.jobs.max(1) {
                    continue;
                }
                self.state[i] = State::Running;
                self.prepared[i] = true;
                self.running += 1;
                out.push(Action::Start {
                    index: i,
                    attempt: 1,
                    status: RunStatus::Succeeded,
                });
                changed = true;
            }
        }
    }

    /// A stage whose dependencies are all running, done well, or prepared
    /// themselves is prepared once; at most as many wait prepared as the
    /// backend's policy allows, and never more than `-j`.
    fn prepare_ahead(&mut self, out: &mut Vec<Action>) {
        let mut waiting = (0..self.plan.stages.len())
            .filter(|&i| self.prepared[i] && self.state[i] == State::Pending)
            .count();
        for i in 0..self.plan.stages.len() {
            if waiting >= self.ahead {
                break;
            }
            let s = &self.plan.stages[i];
            if self.prepared[i] || s.finally || s.is_manual() {
                continue;
            }
            if self.state[i] != State::Pending {
                continue;
            }
            let soon = self.deps[i].iter().all(|&d| match self.state[d] {
                State::Running => true,
                State::Done(st) => st.lets_dependents_run(),
                State::Pending => self.prepared[d],
                State::Asking | State::Skipped => false,
            });
            if soon {
                self.prepared[i] = true;
                waiting += 1;
                out.push(Action::Prepare { index: i });
            }
        }
    }
}

/// Whether a `manual` stage was approved in advance (`--approve`).
fn approved(stage: &PlannedStage, opts: &RunOptions) -> bool {
    opts.approve
        .iter()
        .any(|a| *a == stage.name || *a == stage.stage)
}

fn describe(st: StageStatus) -> &'static str {
    match st {
        StageStatus::Failed => "failed",
        StageStatus::TimedOut => "timed out",
        StageStatus::Cancelled => "was cancelled",
        StageStatus::WaitingForApproval => "is waiting for approval",
        StageStatus::Succeeded | StageStatus::FailedAllowed | StageStatus::Cached => "ran",
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
        Outcome::Cached => (StageStatus::Cached, Some(0), None),
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
        Outcome::Failed(f) => (StageStatus::Failed, None, Some(masker.mask(&f.message))),
        Outcome::Internal(e) => (StageStatus::Failed, None, Some(masker.mask(e))),
    }
}
