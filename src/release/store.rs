//! Revisions, kept in the cluster: one head Secret per revision,
//! `slipway.release.v1.<name>.v<N>`, of type `slipway.dev/release`, in the
//! release's namespace. Its labels say the release, the revision and the
//! status, so that listing is one label query. Its data holds the small,
//! changing part of the record (status, description, provenance: `head`),
//! and a reference to the body (`body-ref`: number of parts, sha256, size).
//! The body (the rendered manifests and the inventory, gzip'd JSON) never
//! changes: small, it stays in the head (`body`); large, it is split into
//! parts of at most [`PART_BYTES`], each a Secret of type
//! `slipway.dev/release-part` (`...v<N>.p<I>`) owned by the head, so the
//! garbage collector removes them with it. So a record is not capped by one
//! object's size (Helm's 1 MiB, helm#8281), a status change rewrites only
//! the head, and a part missing or corrupt is caught by the digest: the
//! revision is then reported incomplete, never read wrong.
//!
//! There is no lock. A revision is created with the next free number (a
//! create, so two releases at once cannot both take it), and one that was
//! interrupted before its verdict (`pending`) is marked `failed` by the next
//! release instead of blocking it: the anti-example is Helm's "another
//! operation is in progress" (helm#4558).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub const SECRET_TYPE: &str = "slipway.dev/release";
pub const PART_TYPE: &str = "slipway.dev/release-part";
/// The most body bytes in one Secret: well under a Secret's 1 MiB of data
/// and etcd's 1.5 MiB a request, with room for base64 in the request.
pub const PART_BYTES: usize = 700 * 1024;
const LABEL_PART: &str = "part";
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
    /// Set when the stored body could not be read back whole (a part
    /// missing or corrupt): `manifests` and `inventory` are then empty, and
    /// the revision cannot be rolled back to.
    #[serde(skip)]
    pub incomplete: Option<String>,
}

/// The body's place: inline in the head (`parts` 0), or in `parts` Secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BodyRef {
    parts: u32,
    /// Of the gzip'd body.
    sha256: String,
    size: usize,
}

/// What never changes after a revision is created.
#[derive(Serialize, Deserialize)]
struct Body {
    manifests: String,
    inventory: Vec<Item>,
}

/// Revisions of one release in one namespace.
pub struct Store {
    api: Api<Secret>,
    release: String,
}

pub fn secret_name(release: &str, version: u32) -> String {
    format!("slipway.release.v1.{release}.v{version}")
}

pub fn part_name(release: &str, version: u32, part: u32) -> String {
    format!("{}.p{part}", secret_name(release, version))
}

impl Store {
    pub fn new(client: kube::Client, namespace: &str, release: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            release: release.to_string(),
        }
    }

    /// Every revision, oldest first: heads and parts in one list call.
    pub async fn list(&self) -> Result<Vec<Revision>, kube::Error> {
        let params = ListParams::default().labels(&format!(
            "{LABEL_OWNER}=slipway,{LABEL_NAME}={}",
            self.release
        ));
        let secrets = self.api.list(&params).await?;
        let mut parts: HashMap<String, &Secret> = HashMap::new();
        for s in secrets
            .items
            .iter()
            .filter(|s| s.type_.as_deref() == Some(PART_TYPE))
        {
            if let Some(name) = &s.metadata.name {
                parts.insert(name.clone(), s);
            }
        }
        let mut revisions: Vec<Revision> = secrets
            .items
            .iter()
            .filter(|s| s.type_.as_deref() == Some(SECRET_TYPE))
            .filter_map(|s| decode(s, &parts))
            .collect();
        revisions.sort_by_key(|r| r.version);
        Ok(revisions)
    }

    /// Creates the record of a new revision; fails if the number is taken.
    /// The head goes first (the create that claims the number), then the
    /// body's parts, owned by it: a crash in between leaves a `pending`
    /// revision whose record reads as incomplete, which the next release
    /// marks failed and nothing ever rolls back to.
    pub async fn create(&self, revision: &Revision) -> Result<(), kube::Error> {
        let (body, chunks) = encode_body(revision);
        let head = self
            .api
            .create(
                &PostParams::default(),
                &encode_head(revision, &body, &chunks),
            )
            .await?;
        if body.parts == 0 {
            return Ok(());
        }
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Secret".into(),
            name: head.metadata.name.clone().unwrap_or_default(),
            uid: head.metadata.uid.clone().unwrap_or_default(),
            ..OwnerReference::default()
        };
        for (i, chunk) in chunks.into_iter().enumerate() {
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let part = Secret {
                metadata: ObjectMeta {
                    name: Some(part_name(&revision.release, revision.version, index)),
                    namespace: Some(revision.namespace.clone()),
                    labels: Some(BTreeMap::from([
                        (LABEL_OWNER.to_string(), "slipway".to_string()),
                        (LABEL_NAME.to_string(), revision.release.clone()),
                        (LABEL_VERSION.to_string(), revision.version.to_string()),
                        (LABEL_PART.to_string(), index.to_string()),
                    ])),
                    owner_references: Some(vec![owner.clone()]),
                    ..ObjectMeta::default()
                },
                type_: Some(PART_TYPE.to_string()),
                data: Some(BTreeMap::from([("part".to_string(), ByteString(chunk))])),
                ..Secret::default()
            };
            self.api.create(&PostParams::default(), &part).await?;
        }
        Ok(())
    }

    /// Rewrites a revision's head (its status, description, ...); the
    /// body, which never changes, is left as it is.
    pub async fn update(&self, revision: &Revision) -> Result<(), kube::Error> {
        let name = secret_name(&revision.release, revision.version);
        let live = self.api.get(&name).await?;
        let data = live.data.unwrap_or_default();
        let secret = if data.contains_key("release") {
            // Written by an earlier slipway: kept in its one-Secret form.
            encode_whole(revision)
        } else {
            let mut secret = encode_head(
                revision,
                &BodyRef {
                    parts: 0,
                    sha256: String::new(),
                    size: 0,
                },
                &[],
            );
            let kept = secret.data.get_or_insert_with(BTreeMap::new);
            kept.remove("body");
            for key in ["body-ref", "body"] {
                if let Some(v) = data.get(key) {
                    kept.insert(key.to_string(), v.clone());
                }
            }
            secret
        };
        self.api
            .patch(
                &name,
                &PatchParams::apply("slipway").force(),
                &Patch::Apply(&secret),
            )
            .await
            .map(|_| ())
    }

    /// Deletes the oldest revisions beyond `keep`, never the deployed one,
    /// with their parts.
    pub async fn prune_history(&self, keep: u32) -> Result<(), kube::Error> {
        let revisions = self.list().await?;
        let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
        let excess = revisions.len().saturating_sub(keep);
        for r in revisions
            .iter()
            .filter(|r| r.status != Status::Deployed)
            .take(excess)
        {
            let parts = ListParams::default().labels(&format!(
                "{LABEL_OWNER}=slipway,{LABEL_NAME}={},{LABEL_VERSION}={},{LABEL_PART}",
                r.release, r.version
            ));
            let mut names = vec![secret_name(&r.release, r.version)];
            names.extend(
                self.api
                    .list_metadata(&parts)
                    .await?
                    .items
                    .into_iter()
                    .filter_map(|m| m.metadata.name),
            );
            for name in names {
                match self.api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes)
        .and_then(|()| gz.finish())
        .unwrap_or_default()
}

fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The body, gzip'd, and where it goes: inline when it fits one part.
fn encode_body(r: &Revision) -> (BodyRef, Vec<Vec<u8>>) {
    let json = serde_json::to_vec(&Body {
        manifests: r.manifests.clone(),
        inventory: r.inventory.clone(),
    })
    .unwrap_or_default();
    let zipped = gzip(&json);
    let reference = |parts| BodyRef {
        parts,
        sha256: sha256(&zipped),
        size: zipped.len(),
    };
    if zipped.len() <= PART_BYTES {
        return (reference(0), vec![zipped]);
    }
    let chunks: Vec<Vec<u8>> = zipped.chunks(PART_BYTES).map(<[u8]>::to_vec).collect();
    (
        reference(u32::try_from(chunks.len()).unwrap_or(u32::MAX)),
        chunks,
    )
}

fn labels(r: &Revision) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_OWNER.to_string(), "slipway".to_string()),
        (LABEL_NAME.to_string(), r.release.clone()),
        (LABEL_VERSION.to_string(), r.version.to_string()),
        (LABEL_STATUS.to_string(), r.status.as_str().to_string()),
    ])
}

/// The head Secret: the record without its body, the body's reference,
/// and the body itself when it is inline (`chunks` holds it alone).
fn encode_head(r: &Revision, body: &BodyRef, chunks: &[Vec<u8>]) -> Secret {
    let mut head = serde_json::to_value(r).unwrap_or_default();
    if let Some(map) = head.as_object_mut() {
        map.remove("manifests");
        map.remove("inventory");
    }
    let mut data = BTreeMap::from([
        (
            "head".to_string(),
            ByteString(gzip(&serde_json::to_vec(&head).unwrap_or_default())),
        ),
        (
            "body-ref".to_string(),
            ByteString(serde_json::to_vec(body).unwrap_or_default()),
        ),
    ]);
    if let (0, [inline]) = (body.parts, chunks) {
        data.insert("body".to_string(), ByteString(inline.clone()));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&r.release, r.version)),
            namespace: Some(r.namespace.clone()),
            labels: Some(labels(r)),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The one-Secret form of earlier versions: the whole record, gzip'd.
fn encode_whole(r: &Revision) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&r.release, r.version)),
            namespace: Some(r.namespace.clone()),
            labels: Some(labels(r)),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.to_string()),
        data: Some(BTreeMap::from([(
            "release".to_string(),
            ByteString(gzip(&serde_json::to_vec(r).unwrap_or_default())),
        )])),
        ..Secret::default()
    }
}

/// A head and its parts (by name) back into a revision; `None` when the
/// head itself cannot be read (not one of ours).
fn decode(secret: &Secret, parts: &HashMap<String, &Secret>) -> Option<Revision> {
    let data = secret.data.as_ref()?;
    if let Some(whole) = data.get("release") {
        return serde_json::from_slice(&gunzip(&whole.0).ok()?).ok();
    }
    let mut head: serde_json::Value =
        serde_json::from_slice(&gunzip(&data.get("head")?.0).ok()?).ok()?;
    let map = head.as_object_mut()?;
    let version = map.get("version")?.as_u64()?;
    let release = map.get("release")?.as_str()?.to_string();
    let body = data
        .get("body-ref")
        .and_then(|b| serde_json::from_slice::<BodyRef>(&b.0).ok())
        .ok_or_else(|| "no reference to its body".to_string())
        .and_then(|reference| {
            let version = u32::try_from(version).map_err(|e| e.to_string())?;
            read_body(&reference, data.get("body"), |i| {
                parts
                    .get(&part_name(&release, version, i))
                    .and_then(|p| p.data.as_ref()?.get("part"))
            })
        });
    let incomplete = match body {
        Ok(body) => {
            map.insert("manifests".into(), body.manifests.into());
            map.insert(
                "inventory".into(),
                serde_json::to_value(body.inventory).unwrap_or_default(),
            );
            None
        }
        Err(why) => {
            map.insert("manifests".into(), "".into());
            map.insert("inventory".into(), serde_json::Value::Array(Vec::new()));
            Some(why)
        }
    };
    let mut revision: Revision = serde_json::from_value(head).ok()?;
    revision.incomplete = incomplete;
    Some(revision)
}

/// The body, from the head or its parts, checked against its digest.
fn read_body<'a>(
    reference: &BodyRef,
    inline: Option<&ByteString>,
    part: impl Fn(u32) -> Option<&'a ByteString>,
) -> Result<Body, String> {
    let zipped = if reference.parts == 0 {
        inline.ok_or("its body is missing")?.0.clone()
    } else {
        let mut all = Vec::with_capacity(reference.size);
        for i in 1..=reference.parts {
            let chunk =
                part(i).ok_or_else(|| format!("part {i} of {} is missing", reference.parts))?;
            all.extend_from_slice(&chunk.0);
        }
        all
    };
    if zipped.len() != reference.size || sha256(&zipped) != reference.sha256 {
        return Err("its body does not match its digest".into());
    }
    let json = gunzip(&zipped).map_err(|e| format!("its body does not unpack: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("its body does not read: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(manifests: String) -> Revision {
        Revision {
            release: "chat".into(),
            namespace: "chat-staging".into(),
            version: 3,
            status: Status::RolledBack,
            time: "2026-11-22T00:00:00Z".into(),
            pipeline: "chat".into(),
            git_sha: Some("abc".into()),
            images: BTreeMap::from([("chat".into(), "localhost:5000/chat:1".into())]),
            digests: BTreeMap::new(),
            source: Source {
                run: Some("1-2".into()),
                ..Source::default()
            },
            description: "deployed".into(),
            manifests,
            inventory: vec![Item {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("chat-staging".into()),
                name: "c".into(),
            }],
            incomplete: None,
        }
    }

    /// What `create` writes: the head, and the parts by name.
    fn written(r: &Revision) -> (Secret, HashMap<String, Secret>) {
        let (body, chunks) = encode_body(r);
        let head = encode_head(r, &body, &chunks);
        let parts = if body.parts == 0 {
            HashMap::new()
        } else {
            chunks
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let index = u32::try_from(i + 1).expect("small");
                    let secret = Secret {
                        data: Some(BTreeMap::from([("part".to_string(), ByteString(c))])),
                        ..Secret::default()
                    };
                    (part_name(&r.release, r.version, index), secret)
                })
                .collect()
        };
        (head, parts)
    }

    fn read(head: &Secret, parts: &HashMap<String, Secret>) -> Revision {
        let refs: HashMap<String, &Secret> = parts.iter().map(|(k, v)| (k.clone(), v)).collect();
        decode(head, &refs).expect("decodes")
    }

    /// Text that gzip cannot shrink much, as real manifests with keys and
    /// certificates can be.
    fn noise(bytes: usize) -> String {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + u8::try_from(x % 26).unwrap_or(0))
            })
            .collect()
    }

    #[test]
    fn a_small_revision_is_one_secret_and_round_trips() {
        let r = revision("---\nkind: ConfigMap\n".into());
        let (head, parts) = written(&r);
        assert!(parts.is_empty());
        assert_eq!(
            head.metadata.name.as_deref(),
            Some("slipway.release.v1.chat.v3")
        );
        assert_eq!(
            head.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("status"))
                .map(String::as_str),
            Some("rolled-back")
        );
        let back = read(&head, &parts);
        assert_eq!(back.version, 3);
        assert_eq!(back.status, Status::RolledBack);
        assert_eq!(back.manifests, r.manifests);
        assert_eq!(back.inventory, r.inventory);
        assert_eq!(back.source, r.source);
        assert_eq!(back.incomplete, None);
    }

    #[test]
    fn a_large_revision_is_split_into_parts_and_read_back_whole() {
        let r = revision(noise(3 * 1024 * 1024));
        let (head, parts) = written(&r);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        for part in parts.values() {
            let size = part
                .data
                .as_ref()
                .and_then(|d| d.get("part"))
                .map_or(0, |b| b.0.len());
            assert!(size <= PART_BYTES);
        }
        let head_size: usize = head
            .data
            .as_ref()
            .map_or(0, |d| d.values().map(|v| v.0.len()).sum());
        assert!(
            head_size < 4096,
            "the head holds no body: {head_size} bytes"
        );
        let back = read(&head, &parts);
        assert_eq!(back.manifests, r.manifests);
        assert_eq!(back.incomplete, None);
    }

    #[test]
    fn a_missing_or_corrupt_part_makes_the_revision_incomplete_never_wrong() {
        let r = revision(noise(2 * 1024 * 1024));
        let (head, parts) = written(&r);
        let mut missing = parts.clone();
        missing.remove(&part_name("chat", 3, 2));
        let back = read(&head, &missing);
        assert_eq!(back.incomplete.as_deref(), Some("part 2 of 2 is missing"));
        assert!(back.manifests.is_empty() && back.inventory.is_empty());
        assert_eq!(back.status, Status::RolledBack, "the head still reads");

        let mut corrupt = parts;
        if let Some(data) = corrupt
            .get_mut(&part_name("chat", 3, 1))
            .and_then(|p| p.data.as_mut())
        {
            if let Some(bytes) = data.get_mut("part") {
                bytes.0[100] ^= 0xff;
            }
        }
        let back = read(&head, &corrupt);
        assert_eq!(
            back.incomplete.as_deref(),
            Some("its body does not match its digest")
        );
        assert!(back.manifests.is_empty());
    }

    #[test]
    fn a_revision_written_by_an_earlier_slipway_is_still_read() {
        let r = revision("---\nkind: ConfigMap\n".into());
        let old = encode_whole(&r);
        let back = read(&old, &HashMap::new());
        assert_eq!(back.manifests, r.manifests);
        assert_eq!(back.inventory, r.inventory);
        assert_eq!(back.incomplete, None);
    }
}
