//! Containers made ahead. Starting a container is the engine's slow part
//! (about half a second here), so while the stages a stage waits for still
//! run, its container is created and started behind its gate; when the
//! stage's turn comes, `execute` only opens the gate, and its script begins
//! within milliseconds of its dependencies' end.
//!
//! The scheduler holds each preparation (a [`Pending`] inside a
//! [`Prepared`]) and gives it back to `execute`, or to `discard` when the
//! stage never runs, so nothing made ahead can be forgotten.

use tokio_util::sync::CancellationToken;

use super::container::{self, Created};
use super::engine::image_settled;
use super::{Attempt, Shared};

/// A container being made ahead. `claimed` is cancelled when the stage is
/// executed: a preparation that has not begun by then is dropped, and the
/// stage makes its container itself rather than queue behind others (or
/// behind itself: a preparation waits while executed stages start).
pub(super) struct Pending {
    claimed: CancellationToken,
    task: tokio::task::JoinHandle<Option<Created>>,
}

/// Begins making a `run` stage's container, when its image is already
/// settled (pulls stay in `execute`, where they are reported). Making
/// containers ahead goes a few at a time, and only while no executed stage
/// is getting its own container going: the engine starts what the run
/// waits for first.
pub(super) fn begin(attempt: Attempt, script: String, image: String) -> Pending {
    let claimed = CancellationToken::new();
    let task = {
        let claimed = claimed.clone();
        tokio::spawn(async move {
            let shared = &attempt.shared;
            let turn = async {
                let permit = shared.ahead.clone().acquire_owned().await;
                shared.starting.none().await;
                permit
            };
            let _turn = tokio::select! {
                biased;
                () = claimed.cancelled() => return None,
                permit = turn => permit,
            };
            if !image_settled(&attempt.docker, &image, shared).await {
                return None;
            }
            // A failure here is not the attempt's: `execute` makes the
            // container again and reports what goes wrong then.
            container::start(&attempt, &script, &image).await.ok()
        })
    };
    Pending { claimed, task }
}

impl Pending {
    /// The container, when it was made (or is being made); `None` when the
    /// preparation had not begun, the image was not there yet, or it
    /// failed.
    pub(super) async fn claim(self) -> Option<Created> {
        self.claimed.cancel();
        self.task.await.ok().flatten()
    }

    /// Removes what was made, in the background of `shared`.
    pub(super) async fn discard(self, shared: &Shared, docker: &bollard::Docker) {
        if let Some(created) = self.claim().await {
            shared.remove_later(docker, created.id, created.volume);
        }
    }
}
