//! Pods made ahead. Getting a Pod going is the slow part of a stage here
//! (scheduling, the sandbox, the workspace, two containers started and
//! seen by the kubelet: seconds), so while the stages a stage waits for
//! still run, its Pod is made and its script waits at its gate; when the
//! stage's turn comes, `execute` only opens the gate.
//!
//! The scheduler holds each preparation (a [`Pending`] inside a
//! `Prepared`) and gives it back to `execute`, or to `discard` when the
//! stage never runs. A run's `close` deletes every Pod of the run by its
//! label too, so a Pod whose making was cut short cannot stay behind.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::pod::{self, Ready};
use crate::run::backend::Job;

/// A Pod being made ahead.
pub(super) struct Pending {
    name: String,
    /// Cancelled when the stage's turn comes: a making that has not begun
    /// is dropped (the stage makes its Pod itself), one that has is
    /// awaited.
    claimed: CancellationToken,
    task: tokio::task::JoinHandle<Option<Ready>>,
}

/// Begins making `job`'s Pod. A failure here is not the attempt's: the Pod
/// is deleted, and `execute` makes it again and reports what goes wrong
/// then.
pub(super) fn begin(inner: &Arc<Inner>, job: Job) -> Pending {
    let mut ready = pod::named(&job);
    let name = ready.name.clone();
    let inner = Arc::clone(inner);
    let claimed = CancellationToken::new();
    let claim = claimed.clone();
    let task = tokio::spawn(async move {
        // The Pods the run waits for first. A stage whose turn comes before
        // its Pod was begun makes it itself.
        tokio::select! {
            biased;
            () = claim.cancelled() => return None,
            () = inner.starting.none() => {}
        }
        let pods: Api<Pod> = Api::namespaced(inner.client.clone(), &inner.namespace);
        match pod::make(&inner, &pods, &job, &mut ready, None).await {
            Ok(()) => Some(ready),
            Err(e) => {
                pod::mark(&ready.name, &format!("not made ahead: {e:?}"));
                pod::delete(&pods, &ready.name).await;
                None
            }
        }
    });
    Pending {
        name,
        claimed,
        task,
    }
}

impl Pending {
    /// The Pod at its gate, once it is; `Ok(None)` when it could not be
    /// made. `Err` when `cancel` came first: what was made is deleted.
    pub(super) async fn claim(
        mut self,
        inner: &Inner,
        cancel: &CancellationToken,
    ) -> Result<Option<Ready>, ()> {
        self.claimed.cancel();
        tokio::select! {
            r = &mut self.task => Ok(r.ok().flatten()),
            () = cancel.cancelled() => {
                self.discard(inner).await;
                Err(())
            }
        }
    }

    /// Stops the making and deletes what was made.
    pub(super) async fn discard(self, inner: &Inner) {
        self.task.abort();
        let _ = self.task.await;
        let pods: Api<Pod> = Api::namespaced(inner.client.clone(), &inner.namespace);
        pod::delete(&pods, &self.name).await;
    }
}
