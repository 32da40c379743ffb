//! `build` stages under the kubernetes backend: they build on the Docker
//! engine slipway can reach (as with `--backend docker`) and push, and
//! later stages' Pods pull what they pushed from the registry. A build
//! that does not push would leave its image on this machine, where no Pod
//! can use it: the run refuses it before it starts. Building inside the
//! cluster (a builder Pod, BuildKit or kaniko) is not done here: it needs a
//! privileged or rootless builder image the cluster may not allow, and a
//! registry the cluster can push to.

use std::collections::HashSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::plan::{PlannedAction, PlannedStage};
use crate::run::backend::{Backend, BoxFuture, Job, Outcome, Output, Prepared, RunInfo};

/// Runs `build` stages on `builder` (the Docker backend) and every other
/// stage on `pods` (the kubernetes backend).
pub struct WithBuilds {
    pods: Arc<dyn Backend>,
    builder: Arc<dyn Backend>,
    /// The tags the run's builds push: a stage in one of these images is
    /// not made ahead (its image is not pushed yet).
    built: HashSet<String>,
}

impl WithBuilds {
    pub fn new(pods: Arc<dyn Backend>, builder: Arc<dyn Backend>, stages: &[PlannedStage]) -> Self {
        let built = stages
            .iter()
            .filter_map(PlannedStage::build)
            .flat_map(|b| b.tags.iter().cloned())
            .collect();
        Self {
            pods,
            builder,
            built,
        }
    }
}

impl Backend for WithBuilds {
    fn image_id(&self, image: &str) -> BoxFuture<'static, Option<String>> {
        self.pods.image_id(image)
    }

    fn open<'a>(&'a self, info: &'a RunInfo) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.builder.open(info).await?;
            self.pods.open(info).await
        })
    }

    fn supports(&self, action: &PlannedAction) -> Result<(), String> {
        match action {
            PlannedAction::Build(_) => super::supports(action),
            other => self.pods.supports(other),
        }
    }

    fn supports_stage(&self, stage: &PlannedStage) -> Result<(), String> {
        match &stage.action {
            PlannedAction::Build(_) => super::supports(&stage.action),
            _ => self.pods.supports_stage(stage),
        }
    }

    fn ahead(&self) -> usize {
        self.pods.ahead()
    }

    fn prepare(&self, job: &Job) -> Option<Prepared> {
        let built = job
            .stage
            .image
            .as_ref()
            .is_some_and(|i| self.built.contains(i));
        if job.stage.build().is_some() || built {
            return None;
        }
        self.pods.prepare(job)
    }

    fn execute(
        &self,
        job: Job,
        prepared: Option<Prepared>,
        output: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Outcome> {
        if job.stage.build().is_some() {
            self.builder.execute(job, prepared, output, cancel)
        } else {
            self.pods.execute(job, prepared, output, cancel)
        }
    }

    fn discard(&self, prepared: Prepared) -> BoxFuture<'static, ()> {
        self.pods.discard(prepared)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.pods.close().await;
            self.builder.close().await;
        })
    }

    /// The digest the registry gave a pushed image, as the engine that
    /// pushed it knows it.
    fn resolve_image(&self, reference: &str) -> BoxFuture<'static, Option<String>> {
        self.builder.resolve_image(reference)
    }
}
