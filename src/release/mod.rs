//! The release step (kube): a stage's manifests applied as a numbered
//! revision, waited on until healthy, and rolled back on its own when not;
//! the Helm model (release, revision, history, rollback) without a chart
//! server. Reached only from `run` and the `release` command.
//!
//! ```text
//! render (manifests → objects) ─▶ record revision N `pending` ─▶ apply (SSA)
//!    ─▶ wait healthy ─┬─▶ prune, N `deployed`, N-1 `superseded`
//!                     └─▶ N `failed` ─▶ rollback: re-apply the last deployed
//!                          revision as N+1, wait, N `rolled-back`
//! ```

pub mod apply;
pub mod client;
pub mod health;
pub mod render;
pub mod store;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::mpsc::UnboundedSender;

use apply::{ApiError, Kinds};
use render::Object;
use store::{Item, Revision, Source, Status, Store};

/// Annotations on every object a release applies (on the object's own
/// metadata, never in a pod template): which release, which revision,
/// which commit, and whether the work tree had uncommitted changes.
pub const RELEASE_ANNOTATION: &str = "slipway.dev/release";
pub const REVISION_ANNOTATION: &str = "slipway.dev/revision";
pub const COMMIT_ANNOTATION: &str = "slipway.dev/commit";
pub const DIRTY_ANNOTATION: &str = "slipway.dev/dirty";

/// Everything one release needs besides the cluster.
pub struct Request {
    pub name: String,
    pub namespace: String,
    /// Rendered, with secrets filled in.
    pub objects: Vec<Object>,
    pub images: BTreeMap<String, String>,
    /// Container name → the image's digest (`repo@sha256:...`), where it
    /// could be resolved; `objects` are already pinned to them.
    pub digests: BTreeMap<String, String>,
    pub wait: Duration,
    pub rollback: bool,
    pub prune: bool,
    pub history: u32,
    pub pipeline: String,
    pub git_sha: Option<String>,
    pub source: Source,
    pub force_conflicts: bool,
}

impl Request {
    /// The annotations of revision `version`'s objects.
    fn marks(&self, version: u32) -> Vec<(&'static str, String)> {
        marks(
            &self.name,
            version,
            self.git_sha.as_deref(),
            self.source.dirty,
        )
    }
}

/// The annotations of revision `version` of release `name`'s objects.
pub fn marks(
    name: &str,
    version: u32,
    commit: Option<&str>,
    dirty: Option<bool>,
) -> Vec<(&'static str, String)> {
    let mut marks = vec![
        (RELEASE_ANNOTATION, name.to_string()),
        (REVISION_ANNOTATION, version.to_string()),
    ];
    if let Some(sha) = commit {
        marks.push((COMMIT_ANNOTATION, sha.to_string()));
    }
    if dirty == Some(true) {
        marks.push((DIRTY_ANNOTATION, "true".into()));
    }
    marks
}

/// How a release ended well.
#[derive(Debug)]
pub struct Done {
    pub revision: u32,
    pub pruned: Vec<String>,
    /// Nothing differed from the deployed revision: nothing was applied
    /// and no revision recorded; `revision` is the one still running.
    pub unchanged: bool,
}

/// Releases `req` as a new revision. On failure with rollback, the last
/// deployed revision is running again when this returns, and the error
/// says both what failed and what runs now.
pub async fn release(
    client: &kube::Client,
    req: &Request,
    notes: &UnboundedSender<String>,
) -> Result<Done, ApiError> {
    ensure_namespace(client, &req.namespace, notes).await?;
    let store = Store::new(client.clone(), &req.namespace, &req.name);
    let revisions = settle_interrupted(&store, notes).await?;
    let previous = revisions
        .iter()
        .rev()
        .find(|r| r.status == Status::Deployed)
        .cloned();
    let mut kinds = Kinds::default();
    kinds.declare(&req.objects);
    if let Some(deployed) = &previous {
        if let Some(done) = unchanged(client, &mut kinds, req, deployed, notes).await? {
            return Ok(done);
        }
    }
    let inventory = inventory(client, &mut kinds, &req.objects, &req.namespace).await?;
    let version = revisions.last().map_or(1, |r| r.version + 1);
    let mut objects = req.objects.clone();
    render::annotate(&mut objects, &req.marks(version));
    let mut revision = Revision {
        release: req.name.clone(),
        namespace: req.namespace.clone(),
        version,
        status: Status::Pending,
        time: jiff::Timestamp::now().to_string(),
        pipeline: req.pipeline.clone(),
        git_sha: req.git_sha.clone(),
        images: req.images.clone(),
        digests: req.digests.clone(),
        source: req.source.clone(),
        description: "deploying".into(),
        manifests: render::to_yaml(&objects),
        inventory: inventory.clone(),
        incomplete: None,
    };
    store.create(&revision).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 409 => ApiError::Failed {
            message: format!(
                "revision {version} of `{}` was just created by another release; run again",
                req.name
            ),
            source: Some(kube::Error::Api(s).into()),
        },
        e => ApiError::from_kube("recording the revision", e),
    })?;
    let _ = notes.send(format!(
        "release `{}`: revision {version} in namespace `{}`, {} objects",
        req.name,
        req.namespace,
        req.objects.len()
    ));

    let outcome = apply_and_wait(client, &mut kinds, &objects, req, notes).await;
    match outcome {
        Ok(()) => {
            let pruned = if req.prune {
                let before = previous.as_ref().map_or(&[][..], |p| &p.inventory);
                prune(client, &mut kinds, before, &inventory, notes).await?
            } else {
                Vec::new()
            };
            revision.status = Status::Deployed;
            revision.description = "deployed".into();
            finish(&store, &mut revision, previous, req.history).await?;
            Ok(Done {
                revision: version,
                pruned,
                unchanged: false,
            })
        }
        Err(e @ ApiError::Unreachable { .. }) => Err(e),
        Err(ApiError::Failed {
            message: why,
            source,
        }) => {
            revision.status = Status::Failed;
            revision.description = why.clone();
            store
                .update(&revision)
                .await
                .map_err(|e| ApiError::from_kube("recording the failure", e))?;
            let failed = format!("revision {version} of `{}` failed: {why}", req.name);
            let Some(target) = previous.filter(|_| req.rollback) else {
                return Err(ApiError::Failed {
                    message: format!(
                        "{failed}; not rolled back ({})",
                        if req.rollback {
                            "no earlier revision was deployed"
                        } else {
                            "`rollback never`"
                        }
                    ),
                    source,
                });
            };
            let _ = notes.send(format!(
                "rolling back `{}` to revision {}",
                req.name, target.version
            ));
            match rollback_to(client, &store, &target, &inventory, req, notes).await {
                Ok(now) => {
                    revision.status = Status::RolledBack;
                    revision.description = format!("{why}; rolled back as revision {now}");
                    store
                        .update(&revision)
                        .await
                        .map_err(|e| ApiError::from_kube("recording the rollback", e))?;
                    Err(ApiError::Failed {
                        message: format!(
                            "{failed}; rolled back: revision {now} (the images of revision {}: {}) is running and healthy",
                            target.version,
                            describe_images(&target.images)
                        ),
                        source,
                    })
                }
                // The rollback's error is the one to follow now.
                Err(e) => Err(ApiError::Failed {
                    message: format!(
                        "{failed}; the rollback to revision {} failed too: {e}",
                        target.version
                    ),
                    source: Some(e.into()),
                }),
            }
        }
    }
}

/// Re-applies `target`'s manifests as a new revision, waits for it, and
/// deletes what the failed revision added. Returns the new revision number.
pub async fn rollback_to(
    client: &kube::Client,
    store: &Store,
    target: &Revision,
    failed_inventory: &[Item],
    req: &Request,
    notes: &UnboundedSender<String>,
) -> Result<u32, ApiError> {
    if let Some(why) = &target.incomplete {
        return Err(ApiError::failed(format!(
            "revision {}'s record is incomplete ({why}): it cannot be applied again",
            target.version
        )));
    }
    let mut objects = render::parse(&target.manifests, std::path::Path::new("revision"))
        .map_err(|e| ApiError::failed(format!("revision {}: {}", target.version, e.0)))?;
    let revisions = store
        .list()
        .await
        .map_err(|e| ApiError::from_kube("listing revisions", e))?;
    let version = revisions.last().map_or(1, |r| r.version + 1);
    // The objects say which revision is live; the commit stays the one
    // the target was made from.
    render::annotate(&mut objects, &[(REVISION_ANNOTATION, version.to_string())]);
    let mut revision = Revision {
        version,
        status: Status::Pending,
        time: jiff::Timestamp::now().to_string(),
        description: format!("rollback to {}", target.version),
        manifests: render::to_yaml(&objects),
        ..target.clone()
    };
    store
        .create(&revision)
        .await
        .map_err(|e| ApiError::from_kube("recording the rollback", e))?;
    let mut kinds = Kinds::default();
    kinds.declare(&objects);
    let outcome = apply_and_wait(client, &mut kinds, &objects, req, notes).await;
    match outcome {
        Ok(()) => {
            // What only the failed revision had goes.
            prune(
                client,
                &mut kinds,
                failed_inventory,
                &target.inventory,
                notes,
            )
            .await?;
            revision.status = Status::Deployed;
            let previous = revisions
                .into_iter()
                .rev()
                .find(|r| r.status == Status::Deployed);
            finish(store, &mut revision, previous, req.history).await?;
            Ok(version)
        }
        Err(e) => {
            revision.status = Status::Failed;
            revision.description = e.to_string();
            let _ = store.update(&revision).await;
            Err(e)
        }
    }
}

/// The deployed revision, if applying `req` would change nothing: its
/// objects, annotated as that revision, are what it recorded, and the
/// cluster still holds them as they were applied. It is then only checked
/// for health: no apply, no new revision, no Pod restarted.
async fn unchanged(
    client: &kube::Client,
    kinds: &mut Kinds,
    req: &Request,
    deployed: &Revision,
    notes: &UnboundedSender<String>,
) -> Result<Option<Done>, ApiError> {
    let mut objects = req.objects.clone();
    render::annotate(&mut objects, &req.marks(deployed.version));
    if render::to_yaml(&objects) != deployed.manifests
        || !apply::unchanged(client, kinds, &objects, &req.namespace).await?
    {
        return Ok(None);
    }
    let _ = notes.send(format!(
        "release `{}`: nothing to apply, revision {} is what the cluster runs; checking its health",
        req.name, deployed.version
    ));
    health::wait(client, kinds, &deployed.inventory, req.wait, notes)
        .await
        .map_err(|e| match e {
            ApiError::Failed { .. } => e.map_message(|why| {
                format!(
                    "no changes to revision {} of `{}`, but it is not healthy: {why}",
                    deployed.version, req.name
                )
            }),
            e => e,
        })?;
    Ok(Some(Done {
        revision: deployed.version,
        pruned: Vec::new(),
        unchanged: true,
    }))
}

/// Applies `objects` (not necessarily `req`'s: a rollback's are an earlier
/// revision's) with `req`'s namespace and settings, and waits for them.
/// CustomResourceDefinitions go first (they rank first), and the rest
/// waits until they are established, so that resources of the kinds they
/// declare can be applied in the same release.
async fn apply_and_wait(
    client: &kube::Client,
    kinds: &mut Kinds,
    objects: &[Object],
    req: &Request,
    notes: &UnboundedSender<String>,
) -> Result<(), ApiError> {
    let deadline = Instant::now() + req.wait;
    let mut applied = Vec::new();
    let mut definitions: Vec<String> = Vec::new();
    for object in objects {
        let definition = apply::is_crd(&object.api_version, &object.kind);
        if !definition && !definitions.is_empty() {
            health::established(client, &definitions, deadline, notes).await?;
            definitions.clear();
        }
        if kinds.is_declared(&object.api_version, &object.kind) {
            kinds
                .wait_served(client, &object.api_version, &object.kind, deadline)
                .await?;
        }
        let (_, item) = apply::apply(
            client,
            kinds,
            object,
            &req.namespace,
            req.force_conflicts,
            false,
        )
        .await?;
        let _ = notes.send(format!("applied {}", item.id()));
        if definition {
            definitions.push(object.name.clone());
        }
        applied.push(item);
    }
    if !definitions.is_empty() {
        health::established(client, &definitions, deadline, notes).await?;
    }
    health::wait(
        client,
        kinds,
        &applied,
        deadline.saturating_duration_since(Instant::now()),
        notes,
    )
    .await
}

/// Records the verdict: this revision deployed, the one before superseded,
/// the oldest beyond `history` deleted.
async fn finish(
    store: &Store,
    revision: &mut Revision,
    previous: Option<Revision>,
    history: u32,
) -> Result<(), ApiError> {
    store
        .update(revision)
        .await
        .map_err(|e| ApiError::from_kube("recording the revision", e))?;
    if let Some(mut prev) = previous.filter(|p| p.version != revision.version) {
        prev.status = Status::Superseded;
        store
            .update(&prev)
            .await
            .map_err(|e| ApiError::from_kube("recording the revision", e))?;
    }
    store
        .prune_history(history)
        .await
        .map_err(|e| ApiError::from_kube("pruning history", e))
}

/// Deletes what was applied `before` and is not `now` (only objects slipway
/// still manages). Returns their ids.
async fn prune(
    client: &kube::Client,
    kinds: &mut Kinds,
    before: &[Item],
    now: &[Item],
    notes: &UnboundedSender<String>,
) -> Result<Vec<String>, ApiError> {
    let keep: HashSet<(&str, Option<&str>, &str)> = now
        .iter()
        .map(|i| (i.kind.as_str(), i.namespace.as_deref(), i.name.as_str()))
        .collect();
    // Dependents first: custom resources and workloads before what they
    // use, CustomResourceDefinitions and namespaces last.
    let mut before: Vec<&Item> = before.iter().collect();
    before.sort_by_key(|i| std::cmp::Reverse(render::rank(&i.kind)));
    let mut pruned = Vec::new();
    for item in before {
        if keep.contains(&(
            item.kind.as_str(),
            item.namespace.as_deref(),
            item.name.as_str(),
        )) {
            continue;
        }
        if apply::delete_ours(client, kinds, item).await? {
            let _ = notes.send(format!("pruned {}", item.id()));
            pruned.push(item.id());
        }
    }
    Ok(pruned)
}

/// Marks revisions left `pending` by an interrupted release as failed, so
/// they never block this one. Returns every revision, oldest first.
async fn settle_interrupted(
    store: &Store,
    notes: &UnboundedSender<String>,
) -> Result<Vec<Revision>, ApiError> {
    let mut revisions = store
        .list()
        .await
        .map_err(|e| ApiError::from_kube("listing revisions", e))?;
    for r in revisions.iter_mut().filter(|r| r.status == Status::Pending) {
        r.status = Status::Failed;
        r.description = "interrupted before its verdict".into();
        store
            .update(r)
            .await
            .map_err(|e| ApiError::from_kube("recording the revision", e))?;
        let _ = notes.send(format!(
            "revision {} was interrupted before its verdict: marked failed",
            r.version
        ));
    }
    Ok(revisions)
}

/// What each object will be recorded as, with its namespace as the server
/// scopes it.
async fn inventory(
    client: &kube::Client,
    kinds: &mut Kinds,
    objects: &[Object],
    namespace: &str,
) -> Result<Vec<Item>, ApiError> {
    let mut items = Vec::new();
    for o in objects {
        let scope = kinds.scope(client, &o.api_version, &o.kind).await?;
        items.push(Item {
            api_version: o.api_version.clone(),
            kind: o.kind.clone(),
            namespace: match scope {
                kube::discovery::Scope::Namespaced => {
                    Some(o.namespace.clone().unwrap_or_else(|| namespace.to_string()))
                }
                kube::discovery::Scope::Cluster => None,
            },
            name: o.name.clone(),
        });
    }
    Ok(items)
}

async fn ensure_namespace(
    client: &kube::Client,
    name: &str,
    notes: &UnboundedSender<String>,
) -> Result<(), ApiError> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api
        .get_opt(name)
        .await
        .map_err(|e| ApiError::from_kube(&format!("reading namespace `{name}`"), e))?
        .is_some()
    {
        return Ok(());
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {
            let _ = notes.send(format!("created namespace `{name}`"));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(ApiError::from_kube(
            &format!("creating namespace `{name}`"),
            e,
        )),
    }
}

fn describe_images(images: &BTreeMap<String, String>) -> String {
    if images.is_empty() {
        return "as recorded".into();
    }
    images
        .iter()
        .map(|(c, i)| format!("{c}={i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
