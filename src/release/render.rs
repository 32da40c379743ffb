//! Manifests → the objects a revision applies: the `manifests` globs are
//! read in order, `${...}` is filled in from the stage's scope, each YAML
//! document becomes one object, and `image "container" = "ref"` is set on
//! every container of that name. Synchronous and pure but for reading the
//! files, so that `slipway plan` can list what a release would apply.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use crate::image::ImageRef;
use crate::plan::{Plan, PlannedRelease, PlannedStage};

/// One object of a revision, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// `None` for cluster-scoped kinds, or when the manifest does not say
    /// (the release's namespace is used for namespaced kinds).
    pub namespace: Option<String>,
    pub value: Value,
    /// Where it came from: `file` and the document's 1-based number.
    pub origin: (PathBuf, usize),
}

impl Object {
    /// `Kind/name`, or `Kind/namespace/name`, for messages.
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// What `${...}` in a manifest can name: the stage's env (with matrix
/// values), `environment`, `git.*`, and secrets when they are known.
pub struct Scope<'a> {
    pub env: IndexMap<String, String>,
    pub environment: String,
    pub git: &'a crate::plan::GitContext,
    /// Secret values, filled in at run time; `None` keeps `${secret.X}`
    /// placeholders masked as `***` (plan, diff).
    pub secrets: Option<&'a IndexMap<String, String>>,
}

impl<'a> Scope<'a> {
    pub fn of(stage: &PlannedStage, plan: &'a Plan) -> Self {
        Self {
            env: stage
                .env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            environment: plan.environment.clone().unwrap_or_default(),
            git: &plan.git,
            secrets: None,
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        let name = name.trim();
        match name {
            "environment" => return Some(self.environment.clone()),
            "git.sha" => return Some(self.git.sha.clone().unwrap_or_default()),
            "git.short_sha" => return Some(self.git.short_sha.clone().unwrap_or_default()),
            "git.branch" => return Some(self.git.branch.clone().unwrap_or_default()),
            "git.tag" => return Some(self.git.tag.clone().unwrap_or_default()),
            _ => {}
        }
        if let Some(secret) = name.strip_prefix("secret.") {
            return Some(match self.secrets {
                Some(s) => s.get(secret)?.clone(),
                None => "***".into(),
            });
        }
        let value = self.env.get(name)?;
        Some(self.fill_secrets(value))
    }

    /// Env values that carry `${secret.X}` placeholders get the values.
    fn fill_secrets(&self, value: &str) -> String {
        match self.secrets {
            Some(secrets) => {
                crate::plan::fill_secrets(value, |name| secrets.get(name).map(String::as_str))
            }
            None => crate::plan::fill_secrets(value, |_| Some("***")),
        }
    }
}

/// Why manifests could not be rendered, with the file and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// Reads, fills in and splits the release's manifests, in glob order (files
/// sorted within a glob), with the images set.
pub fn render(
    release: &PlannedRelease,
    workspace: &Path,
    scope: &Scope<'_>,
) -> Result<Vec<Object>, RenderError> {
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in &release.manifests {
        let matched = matching(workspace, pattern)?;
        if matched.is_empty() {
            return Err(RenderError(format!(
                "release `{}`: `manifests \"{pattern}\"` matches no file under `{}`",
                release.name,
                workspace.display()
            )));
        }
        for f in matched {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    let mut objects = Vec::new();
    for file in files {
        let text = crate::model::read_source(&file)
            .map_err(|e| RenderError(format!("cannot read `{}`: {e}", file.display())))?;
        let filled = interpolate(&text, scope).map_err(|(line, col, name)| {
            RenderError(format!(
                "{}:{line}:{col}: `${{{name}}}` is not defined in the stage's scope (env, matrix, `environment`, `git.*`)",
                file.display()
            ))
        })?;
        for mut o in parse(&filled, &file)? {
            for (container, image) in &release.images {
                set_image(&mut o.value, container, image);
            }
            default_port_protocols(&mut o.value);
            objects.push(o);
        }
    }
    order(&mut objects);
    Ok(objects)
}

/// Splits YAML documents into objects (empty documents skipped).
pub fn parse(text: &str, file: &Path) -> Result<Vec<Object>, RenderError> {
    let mut objects = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| RenderError(format!("{}: document {}: {e}", file.display(), index + 1)))?;
        if value.is_null() {
            continue;
        }
        objects.push(object(value, file, index + 1)?);
    }
    Ok(objects)
}

fn object(value: Value, file: &Path, doc: usize) -> Result<Object, RenderError> {
    let at = || format!("{}: document {doc}", file.display());
    let field = |v: &Value, path: &[&str]| -> Option<String> {
        let mut cur = v;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_str().map(str::to_string)
    };
    let Some(api_version) = field(&value, &["apiVersion"]) else {
        return Err(RenderError(format!("{}: no `apiVersion`", at())));
    };
    let Some(kind) = field(&value, &["kind"]) else {
        return Err(RenderError(format!("{}: no `kind`", at())));
    };
    let Some(name) = field(&value, &["metadata", "name"]) else {
        return Err(RenderError(format!(
            "{}: `{kind}` has no `metadata.name`",
            at()
        )));
    };
    Ok(Object {
        namespace: field(&value, &["metadata", "namespace"]),
        api_version,
        kind,
        name,
        value,
        origin: (file.to_path_buf(), doc),
    })
}

/// The files a glob matches under `workspace`, sorted.
fn matching(workspace: &Path, pattern: &str) -> Result<Vec<PathBuf>, RenderError> {
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| RenderError(format!("`{pattern}` is not a valid glob: {e}")))?
        .compile_matcher();
    // Walk only below the glob's literal prefix.
    let literal: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| {
            !c.as_os_str()
                .to_string_lossy()
                .contains(['*', '?', '[', '{'])
        })
        .collect();
    let root = workspace.join(&literal);
    if root.is_file() {
        return Ok(vec![root]);
    }
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if path
                .strip_prefix(workspace)
                .is_ok_and(|rel| glob.is_match(rel))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Fills `${name}` from the scope; `$${` is a literal `${`. An unknown name
/// is an error at its line and column.
fn interpolate(text: &str, scope: &Scope<'_>) -> Result<String, (usize, usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        match scope.lookup(name) {
            Some(v) => out.push_str(&v),
            None => {
                let offset = text.len() - rest.len() + at;
                let line = text[..offset].matches('\n').count() + 1;
                let col = offset - text[..offset].rfind('\n').map_or(0, |n| n + 1) + 1;
                return Err((line, col, name.trim().to_string()));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Sets each container's image (container name → reference) on every
/// object, as `release`'s `image` settings do: used again to pin them to
/// the digests resolved after the push.
pub fn set_images<'a>(
    objects: &mut [Object],
    images: impl IntoIterator<Item = (&'a String, &'a String)> + Clone,
) {
    for o in objects {
        for (container, image) in images.clone() {
            set_image(&mut o.value, container, image);
        }
    }
}

/// `repo:tag` and its digest `repo@sha256:...` → `repo:tag@sha256:...`:
/// the digest decides what runs, the tag stays for people to read.
pub fn pin(image: &str, digest: &str) -> String {
    match ImageRef::split(digest).digest() {
        Some(sha) => ImageRef::split(image).with_digest(sha).to_string(),
        None => image.to_string(),
    }
}

/// Sets annotations on each object's own metadata (never in a pod
/// template, so that they start no new Pods).
pub fn annotate(objects: &mut [Object], annotations: &[(&str, String)]) {
    for o in objects {
        let Some(meta) = o.value.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        let entry = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(serde_json::Map::new());
        }
        if let Some(map) = entry.as_object_mut() {
            for (k, v) in annotations {
                map.insert((*k).to_string(), Value::String(v.clone()));
            }
        }
    }
}

/// Sets `image` on every container named `container` in the object's pod
/// spec, wherever the kind keeps it.
fn set_image(value: &mut Value, container: &str, image: &str) {
    let spec_paths: [&[&str]; 4] = [
        &["spec"],
        &["spec", "template", "spec"],
        &["spec", "jobTemplate", "spec", "template", "spec"],
        &["template", "spec"],
    ];
    for path in spec_paths {
        let pointer: String = path.iter().map(|p| format!("/{p}")).collect();
        let Some(spec) = value.pointer_mut(&pointer) else {
            continue;
        };
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(items)) = spec.get_mut(list) {
                for c in items {
                    if c.get("name").and_then(Value::as_str) == Some(container) {
                        c["image"] = Value::String(image.to_string());
                    }
                }
            }
        }
    }
}

/// Writes out `protocol: TCP` where a port leaves it to the server's
/// default. It means the same, and servers before 1.21 reject a
/// server-side apply of a port list without it ("associative list with keys
/// has an element that omits key field \"protocol\"").
fn default_port_protocols(value: &mut Value) {
    let fill = |ports: Option<&mut Value>| {
        if let Some(Value::Array(ports)) = ports {
            for port in ports {
                if let Some(p) = port.as_object_mut() {
                    p.entry("protocol")
                        .or_insert_with(|| Value::String("TCP".into()));
                }
            }
        }
    };
    if value.get("kind").and_then(Value::as_str) == Some("Service") {
        fill(value.pointer_mut("/spec/ports"));
    }
    for spec in [
        "/spec",
        "/spec/template/spec",
        "/spec/jobTemplate/spec/template/spec",
        "/template/spec",
    ] {
        for list in ["containers", "initContainers"] {
            let Some(Value::Array(containers)) = value.pointer_mut(&format!("{spec}/{list}"))
            else {
                continue;
            };
            for c in containers {
                fill(c.get_mut("ports"));
            }
        }
    }
}

/// The apply order's rank of a kind: namespaces and CRDs, then config and
/// RBAC, then services, then workloads, then the rest.
pub fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" | "CustomResourceDefinition" => 0,
        "ConfigMap"
        | "Secret"
        | "ServiceAccount"
        | "Role"
        | "ClusterRole"
        | "RoleBinding"
        | "ClusterRoleBinding"
        | "PersistentVolume"
        | "PersistentVolumeClaim"
        | "LimitRange"
        | "ResourceQuota"
        | "StorageClass"
        | "PriorityClass"
        | "NetworkPolicy" => 1,
        "Service" => 2,
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "CronJob"
        | "Pod"
        | "ReplicationController" => 3,
        _ => 4,
    }
}

/// Sorts into apply order, keeping the files' order within a rank.
pub fn order(objects: &mut [Object]) {
    objects.sort_by_key(|o| rank(&o.kind));
}

/// The manifests with secret values masked, as stored and shown.
pub fn to_yaml(objects: &[Object]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&o.value).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(git: &crate::plan::GitContext) -> Scope<'_> {
        Scope {
            env: IndexMap::from([
                ("REPLICAS".to_string(), "3".to_string()),
                ("TOKEN".to_string(), "${secret.T}".to_string()),
            ]),
            environment: "staging".into(),
            git,
            secrets: None,
        }
    }

    #[test]
    fn fills_in_names_escapes_and_masks_secrets() {
        let git = crate::plan::GitContext::default();
        let s = scope(&git);
        assert_eq!(
            interpolate(
                "r: ${REPLICAS} ns: x-${environment} $${KEEP} t: ${TOKEN}",
                &s
            ),
            Ok("r: 3 ns: x-staging ${KEEP} t: ***".to_string())
        );
        assert_eq!(
            interpolate("a: 1\nb: ${NOPE}\n", &s),
            Err((2, 4, "NOPE".to_string()))
        );
    }

    #[test]
    fn pins_keep_the_tag_and_replace_a_digest() {
        assert_eq!(
            pin(
                "localhost:5000/chat:main-1a2b3c4",
                "localhost:5000/chat@sha256:ab"
            ),
            "localhost:5000/chat:main-1a2b3c4@sha256:ab"
        );
        assert_eq!(
            pin(
                "localhost:5000/chat@sha256:old",
                "localhost:5000/chat@sha256:ab"
            ),
            "localhost:5000/chat@sha256:ab"
        );
        assert_eq!(pin("chat", "nonsense"), "chat");
    }

    #[test]
    fn annotations_go_on_the_object_never_in_its_pod_template() {
        let mut objects = parse(
            "kind: Deployment\napiVersion: apps/v1\nmetadata:\n  name: web\n  annotations:\n    keep: \"1\"\n\
             spec:\n  template:\n    metadata:\n      labels: {app: web}\n    spec: {containers: []}\n---\n\
             kind: ConfigMap\napiVersion: v1\nmetadata: {name: c}\n",
            Path::new("m.yaml"),
        )
        .expect("parses");
        annotate(&mut objects, &[("slipway.dev/revision", "3".into())]);
        let web = &objects[0].value;
        assert_eq!(web["metadata"]["annotations"]["keep"], "1");
        assert_eq!(web["metadata"]["annotations"]["slipway.dev/revision"], "3");
        assert!(
            web["spec"]["template"]["metadata"]
                .get("annotations")
                .is_none()
        );
        assert_eq!(
            objects[1].value["metadata"]["annotations"]["slipway.dev/revision"],
            "3"
        );
    }

    #[test]
    fn sets_images_in_pod_templates_and_orders_kinds() {
        let mut v: Value = serde_json::json!({
            "spec": {"template": {"spec": {
                "containers": [{"name": "chat", "image": "old"}, {"name": "side", "image": "keep"}],
                "initContainers": [{"name": "chat", "image": "old"}]
            }}}
        });
        set_image(&mut v, "chat", "new:1");
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["image"],
            "new:1"
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][1]["image"],
            "keep"
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["initContainers"][0]["image"],
            "new:1"
        );
        assert!(rank("Namespace") < rank("ConfigMap"));
        assert!(rank("ConfigMap") < rank("Service"));
        assert!(rank("Service") < rank("Deployment"));
    }
}
