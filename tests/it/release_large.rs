//! A release of about 5 MB of manifests, against the real cluster: more
//! than one Secret can hold, so its record is split into parts. It is
//! applied, recorded, diffed, re-released without changes, and rolled back
//! to from a broken revision.

use std::path::Path;
use std::time::Instant;

use crate::release::{broken_image, cluster, drop_namespace, good_image, kube, slipway, unique};

/// About 850 KB of text that gzip cannot shrink much: `seed` makes each
/// ConfigMap's different.
fn noise(seed: u64, bytes: usize) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + u8::try_from(x % 26).unwrap_or(0))
        })
        .collect()
}

const MAPS: u64 = 6;
const MAP_BYTES: usize = 850_000;

fn project(dir: &Path, ns: &str, image: &str, changed: Option<u64>) {
    let k8s = dir.join("k8s");
    std::fs::create_dir_all(&k8s).expect("mkdir");
    for i in 0..MAPS {
        let seed = if changed == Some(i) { i + 100 } else { i };
        std::fs::write(
            k8s.join(format!("data-{i}.yaml")),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: data-{i}\ndata:\n  blob: {}\n",
                noise(seed, MAP_BYTES)
            ),
        )
        .expect("write");
    }
    std::fs::write(
        k8s.join("web.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  \
             selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    \
             spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n        - name: web\n          image: {image}\n          \
             imagePullPolicy: Never\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("p.pipeline"),
        format!(
            "pipeline \"large\"\n\nstage deploy {{\n  release large {{\n    namespace \"{ns}\"\n    \
             manifests \"k8s/*.yaml\"\n    wait 2m\n  }}\n}}\n"
        ),
    )
    .expect("write");
}

/// The revision Secrets in the namespace: (heads, parts).
fn secrets(kc: &Path, ns: &str) -> (usize, usize) {
    let ns = ns.to_string();
    kube(kc, async move |client| {
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &ns);
        let all = api
            .list(&kube::api::ListParams::default().labels("owner=slipway,name=large"))
            .await
            .expect("secrets");
        let count = |t: &str| {
            all.items
                .iter()
                .filter(|s| s.type_.as_deref() == Some(t))
                .count()
        };
        (
            count("slipway.dev/release"),
            count("slipway.dev/release-part"),
        )
    })
}

fn blob(kc: &Path, ns: &str, i: u64) -> String {
    let ns = ns.to_string();
    kube(kc, async move |client| {
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client, &ns);
        api.get(&format!("data-{i}"))
            .await
            .expect("configmap")
            .data
            .and_then(|d| d.get("blob").cloned())
            .unwrap_or_default()
    })
}

#[test]
fn a_5_mb_release_is_applied_recorded_diffed_and_rolled_back() {
    let Some(kc) = cluster() else { return };
    let (good, broken) = (good_image(), broken_image());
    let ns = unique("large");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    project(p, &ns, good, None);

    // Applied and recorded: one head and its parts.
    let started = Instant::now();
    let first = slipway(p, &kc, &["run", "--output", "json"]);
    eprintln!("5 MB release, healthy: {:?}", started.elapsed());
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    let (heads, parts) = secrets(&kc, &ns);
    assert_eq!(heads, 1);
    assert!(parts >= 2, "{parts} parts for about 5 MB");
    eprintln!("5 MB release: recorded as 1 head and {parts} parts");
    let status = slipway(
        p,
        &kc,
        &["release", "status", "large", "-n", &ns, "--output", "json"],
    );
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(status["deployed"]["revision"], 1);
    assert_eq!(status["deployed"]["incomplete"], serde_json::Value::Null);
    assert_eq!(
        status["deployed"]["objects"].as_array().map(Vec::len),
        Some(usize::try_from(MAPS).expect("small") + 1)
    );

    // Diffed: nothing, then one ConfigMap changed.
    let same = slipway(p, &kc, &["release", "diff"]);
    assert_eq!(same.code, Some(0), "{}\n{}", same.stdout, same.stderr);
    // Re-released unchanged: nothing applied, no revision.
    let started = Instant::now();
    let again = slipway(p, &kc, &["run", "--output", "json"]);
    eprintln!("5 MB release, unchanged: {:?}", started.elapsed());
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    assert!(
        again.logs().contains("no changes; revision 1"),
        "{}",
        again.logs()
    );
    project(p, &ns, good, Some(2));
    let diff = slipway(p, &kc, &["release", "diff"]);
    assert_eq!(diff.code, Some(1), "{}", diff.stderr);
    assert!(
        diff.stdout
            .contains(&format!("+++ desired/ConfigMap/{ns}/data-2")),
        "the diff names the changed ConfigMap"
    );
    assert!(!diff.stdout.contains("data-3"), "and no other");

    // Rolled back: a broken revision (with a changed ConfigMap) is undone
    // from revision 1's recorded 5 MB.
    project(p, &ns, broken, Some(2));
    let started = Instant::now();
    let second = slipway(p, &kc, &["run", "--output", "json"]);
    eprintln!(
        "5 MB release, broken and rolled back: {:?}",
        started.elapsed()
    );
    assert_eq!(second.code, Some(1), "{}\n{}", second.stdout, second.stderr);
    let message = second.finished()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("rolled back: revision 3"), "{message}");
    assert_eq!(blob(&kc, &ns, 2), noise(2, MAP_BYTES));
    let (heads, _) = secrets(&kc, &ns);
    assert_eq!(heads, 3);
    drop_namespace(&kc, &ns);
}
