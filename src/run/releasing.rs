//! `release` stages: whichever backend runs the other stages, a release
//! talks to the Kubernetes API from here ([`crate::release`]). Its progress
//! goes out as the stage's log lines, so the human view and the JSON events
//! show it live.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::backend::{Backend, BoxFuture, EnvValue, Job, Outcome, Output, Prepared, RunInfo};
use super::events::Stream;
use crate::plan::PlannedAction;
use crate::release::apply::ApiError;
use crate::release::render::{Scope, pin, render, set_images};
use crate::release::store::Source;
use crate::release::{Request, client, release};

/// A backend that runs `release` stages itself and hands every other stage
/// to `inner`.
pub struct WithRelease {
    inner: Arc<dyn Backend>,
    pipeline: String,
    /// What every revision records of where it came from (run, file, who,
    /// dirty); each stage adds its branch and tag.
    source: Source,
    context: Option<String>,
    force_conflicts: bool,
    /// One connection per run, made by the first release stage.
    client: Arc<OnceCell<kube::Client>>,
}

impl WithRelease {
    pub fn new(
        inner: Arc<dyn Backend>,
        pipeline: &str,
        source: Source,
        context: Option<String>,
        force_conflicts: bool,
    ) -> Self {
        Self {
            inner,
            pipeline: pipeline.to_string(),
            source,
            context,
            force_conflicts,
            client: Arc::new(OnceCell::new()),
        }
    }
}

impl Backend for WithRelease {
    fn image_id(&self, image: &str) -> BoxFuture<'static, Option<String>> {
        self.inner.image_id(image)
    }

    fn open<'a>(&'a self, info: &'a RunInfo) -> BoxFuture<'a, Result<(), String>> {
        self.inner.open(info)
    }

    fn supports(&self, action: &PlannedAction) -> Result<(), String> {
        match action {
            PlannedAction::Release(_) => Ok(()),
            other => self.inner.supports(other),
        }
    }

    fn supports_stage(&self, stage: &crate::plan::PlannedStage) -> Result<(), String> {
        match &stage.action {
            PlannedAction::Release(_) => Ok(()),
            _ => self.inner.supports_stage(stage),
        }
    }

    fn ahead(&self) -> usize {
        self.inner.ahead()
    }

    fn discard(&self, prepared: Prepared) -> BoxFuture<'static, ()> {
        self.inner.discard(prepared)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }

    fn resolve_image(&self, reference: &str) -> BoxFuture<'static, Option<String>> {
        self.inner.resolve_image(reference)
    }

    fn prepare(&self, job: &Job) -> Option<Prepared> {
        if job.stage.release().is_some() {
            return None;
        }
        self.inner.prepare(job)
    }

    fn execute(
        &self,
        job: Job,
        prepared: Option<Prepared>,
        output: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Outcome> {
        if job.stage.release().is_none() {
            return self.inner.execute(job, prepared, output, cancel);
        }
        let context = Context {
            pipeline: self.pipeline.clone(),
            source: Source {
                run: Some(job.context.run.clone()),
                ..self.source.clone()
            },
            cluster: self.context.clone(),
            force_conflicts: self.force_conflicts,
            client: Arc::clone(&self.client),
            images: Arc::clone(&self.inner),
        };
        Box::pin(async move {
            tokio::select! {
                o = release_stage(job, &output, &context) => o,
                // The revision stays `pending`; the next release marks it
                // failed and goes on (no lock is left behind).
                () = cancel.cancelled() => Outcome::Cancelled,
            }
        })
    }
}

/// What a release stage needs besides its job.
struct Context {
    pipeline: String,
    source: Source,
    cluster: Option<String>,
    force_conflicts: bool,
    client: Arc<OnceCell<kube::Client>>,
    /// The backend that built and pushed the images, asked for digests.
    images: Arc<dyn Backend>,
}

async fn release_stage(job: Job, output: &Output, context: &Context) -> Outcome {
    let Some(spec) = job.stage.release() else {
        return Outcome::Internal("not a release stage".into());
    };
    let git = &job.context.git;
    // The stage's secrets, for `${secret.X}` in its manifests.
    let secrets: indexmap::IndexMap<String, String> = job
        .env
        .iter()
        .filter(|(_, v)| matches!(v, EnvValue::Secret(_)))
        .map(|(k, v)| (k.clone(), v.value().to_string()))
        .collect();
    let scope = Scope {
        env: job
            .env_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        environment: job.context.environment.clone().unwrap_or_default(),
        git,
        secrets: Some(&secrets),
    };
    let mut objects = match render(spec, &job.context.workspace, &scope) {
        Ok(o) => o,
        Err(e) => return Outcome::stage(e.0),
    };
    // Each image pinned to the digest its registry gave it: the Pods run
    // exactly what was built and recorded, and a rollback brings back the
    // same bytes even if the tag has moved since.
    let mut digests = BTreeMap::new();
    let mut pinned = BTreeMap::new();
    for (container, image) in &spec.images {
        if let Some(digest) = context.images.resolve_image(image).await {
            pinned.insert(container.clone(), pin(image, &digest));
            digests.insert(container.clone(), digest);
        }
    }
    set_images(&mut objects, &pinned);
    let client = match context
        .client
        .get_or_try_init(|| client::connect(context.cluster.as_deref()))
        .await
    {
        Ok(c) => c.clone(),
        Err(e) => return Outcome::infrastructure(e.to_string()),
    };
    let request = Request {
        name: spec.name.clone(),
        namespace: spec.namespace.clone().unwrap_or_else(|| "default".into()),
        objects,
        images: spec
            .images
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        wait: std::time::Duration::from_secs(spec.wait_secs),
        rollback: spec.rollback == crate::model::Rollback::OnFailure,
        prune: spec.prune,
        history: spec.history,
        digests,
        pipeline: context.pipeline.clone(),
        git_sha: git.sha.clone(),
        source: Source {
            branch: git.branch.clone(),
            tag: git.tag.clone(),
            ..context.source.clone()
        },
        force_conflicts: context.force_conflicts,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let forward = {
        let output = output.clone();
        tokio::spawn(async move {
            while let Some(note) = rx.recv().await {
                output.line(Stream::Stdout, &note).await;
            }
        })
    };
    let started = std::time::Instant::now();
    let result = release(&client, &request, &tx).await;
    let took = humantime::format_duration(std::time::Duration::from_millis(
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    ));
    let outcome = match result {
        Ok(done) if done.unchanged => {
            let _ = tx.send(format!(
                "release `{}`: no changes; revision {} is live and healthy (checked in {took})",
                request.name, done.revision
            ));
            Outcome::Exited(0)
        }
        Ok(done) => {
            let _ = tx.send(format!(
                "release `{}`: revision {} deployed and healthy in {took}{}",
                request.name,
                done.revision,
                if done.pruned.is_empty() {
                    String::new()
                } else {
                    format!(", pruned {}", done.pruned.join(", "))
                }
            ));
            Outcome::Exited(0)
        }
        Err(e @ ApiError::Unreachable { .. }) => Outcome::infrastructure(e.to_string()),
        Err(e @ ApiError::Failed { .. }) => {
            let _ = tx.send(format!("verdict after {took}: {e}"));
            Outcome::stage(e.to_string())
        }
    };
    drop(tx);
    let _ = forward.await;
    outcome
}
