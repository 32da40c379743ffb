//! The local backend: `run` scripts as host processes (`sh -e`), with the
//! same semantics as containers: env, cancellation (and so timeouts, which
//! the scheduler holds), streamed logs.
//! Scheduler tests use it, so they need no engine.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::backend::{Backend, BoxFuture, Job, Outcome, Output, Prepared};
use super::events::Stream;
use crate::plan::PlannedAction;

/// How long a stage gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

pub struct LocalBackend;

impl Backend for LocalBackend {
    /// Scripts run on this machine, whatever the image: one id for all.
    fn image_id(&self, _: &str) -> BoxFuture<'static, Option<String>> {
        Box::pin(async { Some("local: this machine".to_string()) })
    }

    fn supports(&self, action: &PlannedAction) -> Result<(), String> {
        supports(action)
    }

    fn execute(
        &self,
        job: Job,
        _: Option<Prepared>,
        output: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Outcome> {
        Box::pin(run(job, output, cancel))
    }
}

/// Whether the local backend can run `action` (see [`Backend::supports`]).
pub fn supports(action: &PlannedAction) -> Result<(), String> {
    match action {
        PlannedAction::Run { .. } => Ok(()),
        other => Err(refusal(other.kind())),
    }
}

/// Why a stage of `kind` is refused here.
pub fn refusal(kind: &str) -> String {
    format!("the local backend runs only `run` stages, not `{kind}` stages")
}

async fn run(job: Job, output: Output, cancel: CancellationToken) -> Outcome {
    let Some(script) = job.stage.script() else {
        return Outcome::stage(format!(
            "the local backend runs only `run` stages; `{}` is a `{}` stage",
            job.stage.name,
            job.stage.action.kind()
        ));
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-e")
        .arg("-c")
        .arg(script)
        .current_dir(&job.context.workspace)
        .envs(job.env_pairs())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout or Ctrl-C ends everything the
        // script started, not just the shell.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::stage(format!("cannot start `sh`: {e}")),
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(pump(s, Stream::Stdout, output.clone())));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(pump(s, Stream::Stderr, output.clone())));

    let outcome = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => Outcome::Exited(s.code().unwrap_or(128 + s.signal_number())),
            Err(e) => Outcome::stage(format!("waiting for the stage failed: {e}")),
        },
        () = cancel.cancelled() => {
            stop(&mut child, pgid).await;
            Outcome::Cancelled
        }
    };
    // The pipes close when the last process of the group exits.
    for pump in [out, err].into_iter().flatten() {
        let _ = pump.await;
    }
    outcome
}

trait SignalNumber {
    fn signal_number(&self) -> i32;
}

impl SignalNumber for std::process::ExitStatus {
    fn signal_number(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt as _;
        self.signal().unwrap_or(0)
    }
}

/// SIGTERM to the group, then SIGKILL after the grace period.
async fn stop(child: &mut tokio::process::Child, pgid: Option<Pid>) {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGTERM);
        if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = child.wait().await;
        }
        // Children that outlived the shell.
        let _ = killpg(pgid, Signal::SIGKILL);
    } else {
        let _ = child.kill().await;
    }
}

/// Streams lines as they come; a line is never held longer than it takes to
/// send it, so a stage printing gigabytes keeps memory flat.
async fn pump(stream: impl AsyncRead + Unpin, kind: Stream, output: Output) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => output.line(kind, &String::from_utf8_lossy(&buf)).await,
        }
    }
}
