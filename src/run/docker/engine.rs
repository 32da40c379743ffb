//! Talking to the engine: what its errors mean for a stage, and getting
//! images onto it.

use bollard::Docker;
use futures_util::StreamExt as _;

use super::{Pull, Shared};
use crate::run::backend::{Failure, FailureKind, Output};
use crate::run::events::Stream;

/// Whether an engine error says the engine is gone (the socket closed, the
/// connection refused or timed out): the run exits 3 for it, as it does
/// when the engine does not answer at the start. Anything the engine
/// answered is the stage's own.
pub(super) fn kind(e: &bollard::errors::Error) -> FailureKind {
    use bollard::errors::Error as E;
    match e {
        E::IOError { .. }
        | E::HyperResponseError { .. }
        | E::HyperLegacyError { .. }
        | E::HttpClientError { .. }
        | E::RequestTimeoutError
        | E::SocketNotFoundError(_) => FailureKind::Infrastructure,
        _ => FailureKind::Stage,
    }
}

/// `what: e`, failed as `e` says.
pub(super) fn failure(what: impl std::fmt::Display, e: &bollard::errors::Error) -> Failure {
    Failure {
        kind: kind(e),
        message: format!("{what}: {e}"),
    }
}

/// A failure of the stage's own, with this message.
pub(super) fn stage(message: impl Into<String>) -> Failure {
    Failure {
        kind: FailureKind::Stage,
        message: message.into(),
    }
}

/// The engine does not answer at all when a run begins (exit 3); the
/// engine's error is kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Unreachable {
    message: String,
    #[source]
    source: bollard::errors::Error,
}

impl From<bollard::errors::Error> for Unreachable {
    fn from(source: bollard::errors::Error) -> Self {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        Unreachable {
            message: format!(
                "the Docker engine does not answer at {host} ({source}); start it (`sudo systemctl start docker`, or `dockerd &`), or point DOCKER_HOST at a running engine"
            ),
            source,
        }
    }
}

/// Makes sure the engine has `image`, pulling it as `--pull` says; each
/// image is settled once per run.
pub(super) async fn ensure_image(
    docker: &Docker,
    image: &str,
    shared: &Shared,
    output: &Output,
) -> Result<(), Failure> {
    if image_settled(docker, image, shared).await {
        return Ok(());
    }
    // Not on the engine, or `--pull always`.
    if shared.pull == Pull::Never {
        return Err(Failure {
            kind: FailureKind::ImagePull,
            message: format!(
                "image `{image}` is not on this engine, and `--pull never` forbids pulling it; build it first (`docker build -t {image} ...`)"
            ),
        });
    }
    output
        .line(Stream::Stdout, &format!("pulling {image}"))
        .await;
    // By its tag or digest, `latest` when it names neither, as `docker pull`
    // does: given a bare name, the engine pulls every tag.
    let reference = crate::image::ImageRef::split(image);
    let options = bollard::query_parameters::CreateImageOptionsBuilder::default()
        .from_image(&reference.repository())
        .tag(reference.digest().or(reference.tag()).unwrap_or("latest"))
        .build();
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            let kind = match kind(&e) {
                FailureKind::Infrastructure => FailureKind::Infrastructure,
                _ => FailureKind::ImagePull,
            };
            return Err(Failure {
                kind,
                message: format!(
                    "image `{image}` could not be pulled ({e}); build it first (`docker build -t {image} ...`), or push it to a registry this engine can reach"
                ),
            });
        }
    }
    shared.images().insert(image.to_string());
    Ok(())
}

/// Whether `image` can be used without a pull: known this run, or on the
/// engine when `--pull` does not ask for a fresh copy.
pub(super) async fn image_settled(docker: &Docker, image: &str, shared: &Shared) -> bool {
    if shared.images().contains(image) {
        return true;
    }
    if shared.pull == Pull::Always || docker.inspect_image(image).await.is_err() {
        return false;
    }
    shared.images().insert(image.to_string());
    true
}
