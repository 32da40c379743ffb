//! The stage cache (see DESIGN.md): a stage's key from the plan and what
//! only the backend knows, and stores that keep results by key. So far:
//! the files a stage's `inputs` match, hashed through an index like git's
//! (`index`), the key made of a stage's parts (`key`), and the local store
//! whose entries are checked blob by blob when read (`store`).

pub mod index;
pub mod key;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::run::backend::{BoxFuture, Job, Outcome, Output};
use crate::run::events::{Event, Stream};

/// A run's stage cache: where results are kept, whether they are read
/// (`--no-cache` only writes), the inputs index, and the keys of the
/// stages decided so far (a stage's key holds those of the stages it comes
/// after).
#[derive(Debug)]
pub struct StageCache {
    store: store::LocalStore,
    read: bool,
    workspace: PathBuf,
    index: Arc<Mutex<index::Index>>,
    keys: Mutex<HashMap<String, key::Key>>,
    /// With `--resume`: the stages that succeeded in the run resumed, by
    /// name, with their keys then.
    resumed: HashMap<String, String>,
    /// Results being written.
    pending: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The most output a stage's kept result holds (bytes).
const RECORDED: usize = 4 << 20;

impl StageCache {
    pub fn new(store: store::LocalStore, read: bool, workspace: PathBuf) -> Self {
        let index = index::Index::open(&workspace.join(".slipway/index"));
        Self {
            store,
            read,
            workspace,
            index: Arc::new(Mutex::new(index)),
            keys: Mutex::new(HashMap::new()),
            resumed: HashMap::new(),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Resumes a run: its stages that succeeded, whose keys are unchanged,
    /// are served from the cache whether or not they declare `inputs`.
    #[must_use]
    pub fn resuming(mut self, succeeded: HashMap<String, String>) -> Self {
        self.resumed = succeeded;
        self
    }

    /// The key a stage of this run had, when it had one.
    pub fn key_of(&self, stage: &str) -> Option<String> {
        self.keys.lock().ok()?.get(stage).map(key::Key::hex)
    }

    /// Whether a stage gets a key and its success is kept: every `run`
    /// stage but `finally` ones.
    pub fn keyed(stage: &crate::plan::PlannedStage) -> bool {
        !stage.finally && matches!(stage.action, crate::plan::PlannedAction::Run { .. })
    }

    /// Whether this run may serve the stage from the cache: it is
    /// cacheable and results are read, or it is resumed.
    pub fn serves(&self, stage: &crate::plan::PlannedStage) -> bool {
        Self::keyed(stage)
            && ((self.read && Self::cacheable(stage)) || self.resumed.contains_key(&stage.name))
    }

    /// Waits for the results still being written.
    pub async fn flush(&self) {
        let pending = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for writing in pending {
            let _ = writing.await;
        }
    }

    /// Keeps the inputs index for the next run.
    pub fn save(&self) {
        if let Ok(mut index) = self.index.lock() {
            let _ = index.save(&self.workspace.join(".slipway/index"));
        }
    }

    /// Whether the stage may be served from the cache: it declares
    /// `inputs`, runs a script, and always-running kinds aside (`release`,
    /// `manual`, a `build` that pushes, `finally`: `check` warns).
    pub fn cacheable(stage: &crate::plan::PlannedStage) -> bool {
        !stage.inputs.is_empty()
            && !stage.finally
            && matches!(stage.action, crate::plan::PlannedAction::Run { .. })
    }

    /// The stage's key, once the image's id is known: `None` (run it,
    /// keep nothing) when a part cannot be had, said on the stage's
    /// standard error.
    async fn key(&self, job: &Job, image_id: Option<String>, output: &Output) -> Option<key::Key> {
        let stage = &job.stage;
        let Some(image) = image_id else {
            if self.serves(stage) {
                output
                    .line(
                        Stream::Stderr,
                        "slipway: not cached: the image's id is unknown to this backend",
                    )
                    .await;
            }
            return None;
        };
        let script = stage.script().unwrap_or_default().to_string();
        let globs = stage.inputs.clone();
        let digest = {
            let (workspace, index) = (self.workspace.clone(), Arc::clone(&self.index));
            // One digest at a time: each reads and adds to the one index.
            let found = tokio::task::spawn_blocking(move || {
                let mut index = index.lock().map_err(|_| index::DigestError::Poisoned)?;
                index::digest(&workspace, &globs, &mut index)
            })
            .await
            .ok()?;
            match found {
                Ok((digest, _)) => digest,
                Err(e) => {
                    output
                        .line(
                            Stream::Stderr,
                            &format!("slipway: not cached: its inputs: {e}"),
                        )
                        .await;
                    return None;
                }
            }
        };
        let after: Vec<(String, key::Key)> = {
            let keys = self.keys.lock().ok()?;
            let mut after = Vec::new();
            for dep in &stage.after {
                // A stage it comes after that was not cached: its result
                // (its artifacts, the files it left) is unknown here.
                after.push((dep.to_string(), *keys.get(&**dep)?));
            }
            after
        };
        Some(key::key(&key::Parts {
            image: &image,
            script: &script,
            env: &job.env,
            matrix: &stage.matrix,
            artifacts: &stage.artifacts,
            inputs: digest,
            after: &after,
        }))
    }
}

/// Runs `execute` through the cache: its key first; on a hit the recorded
/// output is shown, the artifacts restored, and the attempt ends as
/// `Outcome::Cached` without running; on a miss it runs, its output is
/// kept as it goes, and a success is stored.
pub fn through(
    cache: Arc<StageCache>,
    job: Job,
    image_id: BoxFuture<'static, Option<String>>,
    output: Output,
    execute: impl FnOnce(Output) -> BoxFuture<'static, Outcome> + Send + 'static,
    not_run: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static,
) -> BoxFuture<'static, Outcome> {
    Box::pin(async move {
        let name = job.stage.name.clone();
        let Some(key) = cache.key(&job, image_id.await, &output).await else {
            return execute(output).await;
        };
        let served = (cache.read && StageCache::cacheable(&job.stage))
            || cache.resumed.get(&name).is_some_and(|k| *k == key.hex());
        if served {
            match cache.store.get(&key) {
                store::Lookup::Hit {
                    recorded,
                    artifacts,
                } => {
                    if restore(&job, &artifacts).is_some() {
                        output
                            .line(
                                Stream::Stderr,
                                &format!(
                                    "slipway: cached ({}), its output as recorded:",
                                    &key.hex()[..12]
                                ),
                            )
                            .await;
                        for (stream, line) in &recorded.log {
                            let stream = if stream == "stderr" {
                                Stream::Stderr
                            } else {
                                Stream::Stdout
                            };
                            output.line(stream, line).await;
                        }
                        if let Ok(mut keys) = cache.keys.lock() {
                            keys.insert(name, key);
                        }
                        // What the backend got ready ahead is undone.
                        not_run().await;
                        return Outcome::Cached;
                    }
                }
                store::Lookup::Miss => {}
                store::Lookup::Bad(why) => {
                    output
                        .line(
                            Stream::Stderr,
                            &format!("slipway: warning: cache entry not used: {why}"),
                        )
                        .await;
                }
            }
        }
        // A miss: run it, keeping its lines as they go by.
        let (tx, mut rx) = mpsc::channel::<Event>(1024);
        let (teed, events) = output.redirected(tx);
        let forward = tokio::spawn(async move {
            // Kept up to RECORDED bytes: a stage that prints more is not
            // stored (its output is not held in memory).
            let mut log = Some(Vec::new());
            let mut bytes = 0usize;
            while let Some(event) = rx.recv().await {
                if let (Event::Log { stream, line, .. }, Some(kept)) = (&event, log.as_mut()) {
                    bytes += line.len() + 1;
                    if bytes > RECORDED {
                        log = None;
                    } else {
                        let s = if *stream == Stream::Stderr {
                            "stderr"
                        } else {
                            "stdout"
                        };
                        kept.push((s.to_string(), line.clone()));
                    }
                }
                let _ = events.send(event).await;
            }
            log
        });
        let started = std::time::Instant::now();
        let outcome = execute(teed).await;
        let log = forward.await.ok().flatten();
        if let (true, None) = (matches!(outcome, Outcome::Exited(0)), &log) {
            if StageCache::cacheable(&job.stage) {
                output
                    .line(
                        Stream::Stderr,
                        &format!(
                            "slipway: warning: the result was not cached: it printed more than {} MiB",
                            RECORDED >> 20
                        ),
                    )
                    .await;
            }
        }
        if let (true, Some(log)) = (matches!(outcome, Outcome::Exited(0)), log) {
            let artifacts: Vec<(String, PathBuf)> = job
                .outputs
                .iter()
                .map(|k| (k.path.clone(), job.context.artifacts.file(k)))
                .collect();
            let recorded = store::Recorded {
                exit_code: 0,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                log,
            };
            // A backend that keeps no artifacts (the local one: the
            // stage wrote them in the project) leaves nothing to keep.
            if artifacts.iter().all(|(_, f)| f.is_file()) {
                if let Ok(mut keys) = cache.keys.lock() {
                    keys.insert(name.clone(), key);
                }
                // Written beside the run, off the path of the stages
                // after it; the run waits for it before it exits (`flush`).
                let (store, said) = (cache.store.clone(), StageCache::cacheable(&job.stage));
                let writing = tokio::task::spawn_blocking(move || {
                    if let Err(e) = store.put(&key, &recorded, &artifacts) {
                        if said {
                            eprintln!("slipway: warning: `{name}`: the result was not cached: {e}");
                        }
                    }
                });
                if let Ok(mut pending) = cache.pending.lock() {
                    pending.push(writing);
                }
            } else if StageCache::cacheable(&job.stage) {
                // Said only where the author asked for caching.
                output
                    .line(
                        Stream::Stderr,
                        "slipway: warning: the result was not cached: its artifacts are not in the run's store",
                    )
                    .await;
            }
        }
        outcome
    })
}

/// Puts a cached entry's artifact tars into the run's store, by declared
/// path; `None` when one is missing (then the stage runs).
fn restore(job: &Job, artifacts: &[(String, PathBuf)]) -> Option<()> {
    for k in &job.outputs {
        let (_, file) = artifacts.iter().find(|(p, _)| *p == k.path)?;
        let tar = std::fs::read(file).ok()?;
        job.context.artifacts.put(k, &tar).ok()?;
    }
    Some(())
}
