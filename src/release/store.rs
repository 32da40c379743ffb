//! Revisions, kept in the cluster: one Secret per revision,
//! `slipway.release.v1.<name>.v<N>`, of type `slipway.dev/release`, in the
//! release's namespace. Its labels say the release, the revision and the
//! status, so that listing is one label query; its data holds the record
//! (gzip'd JSON) with the rendered manifests and the inventory.
//!
//! There is no lock. A revision is created with the next free number (a
//! create, so two releases at once cannot both take it), and one that was
//! interrupted before its verdict (`pending`) is marked `failed` by the next
//! release instead of blocking it: the anti-example is Helm's "another
//! operation is in progress" (helm#4558).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

pub const SECRET_TYPE: &str = "slipway.dev/release";
const LABEL_OWNER: &str = "owner";
const LABEL_NAME: &str = "name";
const LABEL_VERSION: &str = "version";
const LABEL_STATUS: &str = "status";

/// Where a revision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Applied, waiting for its verdict (or interrupted while waiting).
    Pending,
    /// Healthy; the one running.
    Deployed,
    /// Was deployed; a newer revision replaced it.
    Superseded,
    /// Not healthy in time (or interrupted), and not rolled back.
    Failed,
    /// Not healthy in time, and undone by a rollback.
    RolledBack,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Deployed => "deployed",
            Status::Superseded => "superseded",
            Status::Failed => "failed",
            Status::RolledBack => "rolled-back",
        }
    }
}

/// One object a revision applied: enough to find it again for prune.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Item {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Item {
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// Where a revision came from, beside its commit (`Revision::git_sha`):
/// which commit is live, who released it, from which run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// Whether the work tree had changes not in the commit; `None` outside
    /// a git work tree.
    pub dirty: Option<bool>,
    /// The run that released it (`slipway run`'s run id).
    pub run: Option<String>,
    /// The pipeline file, relative to the repository's root when in one.
    pub file: Option<String>,
    /// Who and where: the CI job's URL when a CI system ran it, else
    /// `user@host`.
    pub by: Option<String>,
}

/// What a revision records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revision {
    pub release: String,
    pub namespace: String,
    pub version: u32,
    pub status: Status,
    /// RFC 3339.
    pub time: String,
    pub pipeline: String,
    pub git_sha: Option<String>,
    /// Container name → image reference, as the pipeline gave it.
    pub images: BTreeMap<String, String>,
    /// Container name → the image's content digest (`repo@sha256:...`),
    /// resolved after the push; what the manifests were pinned to.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
    #[serde(default)]
    pub source: Source,
    /// What happened, in a line: "deployed", "rollback to 1", ...
    pub description: String,
    /// The rendered manifests, as applied (YAML documents).
    pub manifests: String,
    pub inventory: Vec<Item>,
}

/// Revisions of one release in one namespace.
pub struct Store {
    api: Api<Secret>,
    release: String,
}

pub fn secret_name(release: &str, version: u32) -> String {
    format!("slipway.release.v1.{release}.v{version}")
}

impl Store {
    pub fn new(client: kube::Client, namespace: &str, release: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            release: release.to_string(),
        }
    }

    /// Every revision, oldest first.
    pub async fn list(&self) -> Result<Vec<Revision>, kube::Error> {
        let params = ListParams::default().labels(&format!(
            "{LABEL_OWNER}=slipway,{LABEL_NAME}={}",
            self.release
        ));
        let secrets = self.api.list(&params).await?;
        let mut revisions: Vec<Revision> = secrets
            .items
            .iter()
            .filter(|s| s.type_.as_deref() == Some(SECRET_TYPE))
            .filter_map(decode)
            .collect();
        revisions.sort_by_key(|r| r.version);
        Ok(revisions)
    }

    /// Creates the record of a new revision; fails if the number is taken.
    pub async fn create(&self, revision: &Revision) -> Result<(), kube::Error> {
        self.api
            .create(&PostParams::default(), &encode(revision))
            .await
            .map(|_| ())
    }

    /// Rewrites a revision's record (its status, mostly).
    pub async fn update(&self, revision: &Revision) -> Result<(), kube::Error> {
        let secret = encode(revision);
        let name = secret_name(&revision.release, revision.version);
        self.api
            .patch(
                &name,
                &PatchParams::apply("slipway").force(),
                &Patch::Apply(&secret),
            )
            .await
            .map(|_| ())
    }

    /// Deletes the oldest revisions beyond `keep`, never the deployed one.
    pub async fn prune_history(&self, keep: u32) -> Result<(), kube::Error> {
        let revisions = self.list().await?;
        let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
        let excess = revisions.len().saturating_sub(keep);
        for r in revisions
            .iter()
            .filter(|r| r.status != Status::Deployed)
            .take(excess)
        {
            let name = secret_name(&r.release, r.version);
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn encode(r: &Revision) -> Secret {
    let json = serde_json::to_vec(r).unwrap_or_default();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let zipped = gz
        .write_all(&json)
        .and_then(|()| gz.finish())
        .unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&r.release, r.version)),
            namespace: Some(r.namespace.clone()),
            labels: Some(BTreeMap::from([
                (LABEL_OWNER.to_string(), "slipway".to_string()),
                (LABEL_NAME.to_string(), r.release.clone()),
                (LABEL_VERSION.to_string(), r.version.to_string()),
                (LABEL_STATUS.to_string(), r.status.as_str().to_string()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.to_string()),
        data: Some(BTreeMap::from([(
            "release".to_string(),
            ByteString(zipped),
        )])),
        ..Secret::default()
    }
}

fn decode(secret: &Secret) -> Option<Revision> {
    let zipped = secret.data.as_ref()?.get("release")?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(zipped.0.as_slice())
        .read_to_end(&mut json)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_round_trips_through_its_secret() {
        let r = Revision {
            release: "chat".into(),
            namespace: "chat-staging".into(),
            version: 3,
            status: Status::RolledBack,
            time: "2026-11-22T00:00:00Z".into(),
            pipeline: "chat".into(),
            git_sha: Some("abc".into()),
            images: BTreeMap::from([("chat".into(), "localhost:5000/chat:1".into())]),
            digests: BTreeMap::new(),
            source: Source::default(),
            description: "deployed".into(),
            manifests: "---\nkind: ConfigMap\n".into(),
            inventory: vec![],
        };
        let secret = encode(&r);
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("slipway.release.v1.chat.v3")
        );
        assert_eq!(
            secret
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("status"))
                .map(String::as_str),
            Some("rolled-back")
        );
        let back = decode(&secret).expect("decodes");
        assert_eq!(back.version, 3);
        assert_eq!(back.status, Status::RolledBack);
        assert_eq!(back.manifests, r.manifests);
    }
}
