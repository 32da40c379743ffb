//! Which commit is live: a release in a git work tree records its commit,
//! branch, dirtiness, run, pipeline file, who ran it and its image's
//! digest; the objects carry annotations naming release, revision and
//! commit (never in a pod template); the image is pinned to the digest the
//! registry gave it; and a re-release of the same thing changes nothing.
//! Against the real cluster and the local registry.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::release::{Run, cluster, drop_namespace, good_image, kube, slipway, unique};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The test image pushed to the local registry under a name of this test
/// process's own; returns the reference and the digest the engine noted.
fn pushed_image() -> (String, String) {
    let docker = |args: &[&str]| {
        let out = Command::new("/usr/bin/docker")
            .args(args)
            .output()
            .expect("docker runs");
        assert!(
            out.status.success(),
            "docker {args:?} (is the registry up? scripts/dev-env.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let reference = format!("localhost:5000/{}:v1", unique("slipway-trace"));
    docker(&["tag", good_image(), &reference]);
    docker(&["push", &reference]);
    let digests = docker(&[
        "image",
        "inspect",
        "--format",
        "{{range .RepoDigests}}{{println .}}{{end}}",
        &reference,
    ]);
    let repository = reference.rsplit_once(':').map_or("", |(r, _)| r);
    let digest = digests
        .lines()
        .find(|d| d.starts_with(&format!("{repository}@sha256:")))
        .unwrap_or_else(|| panic!("no digest of {repository} in {digests}"))
        .to_string();
    (reference, digest)
}

fn project(dir: &Path, ns: &str, image: &str) {
    std::fs::create_dir_all(dir.join("k8s")).expect("mkdir");
    std::fs::write(
        dir.join("k8s/web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  \
         selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    \
         spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n        - name: web\n          image: placeholder\n          \
         imagePullPolicy: IfNotPresent\n          readinessProbe:\n            httpGet:\n              path: /healthz\n              port: 8080\n            \
         periodSeconds: 1\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  colour: blue\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("p.pipeline"),
        format!(
            "pipeline \"trace\"\n\nenv {{\n  IMAGE = \"{image}\"\n}}\n\nstage deploy {{\n  release web {{\n    \
             namespace \"{ns}\"\n    manifests \"k8s/*.yaml\"\n    image \"web\" = \"${{IMAGE}}\"\n    wait 2m\n  }}\n}}\n"
        ),
    )
    .expect("write");
    std::fs::write(dir.join("README.md"), "web\n").expect("write");
}

fn status(dir: &Path, kc: &Path, ns: &str) -> Value {
    let out = slipway(
        dir,
        kc,
        &["release", "status", "web", "-n", ns, "--output", "json"],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout).expect("status is JSON")
}

/// The Deployment's own annotations, its pod template, its generation, the
/// uids of its pods and the image its container runs.
fn live(kc: &Path, ns: &str) -> (Value, Value, i64, Vec<String>, String) {
    let ns = ns.to_string();
    kube(kc, async move |client| {
        let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
            kube::Api::namespaced(client.clone(), &ns);
        let d = deployments.get("web").await.expect("deployment");
        let value = serde_json::to_value(&d).expect("json");
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, &ns);
        let mut uids: Vec<String> = pods
            .list(&kube::api::ListParams::default().labels("app=web"))
            .await
            .expect("pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.uid)
            .collect();
        uids.sort();
        (
            value["metadata"]["annotations"].clone(),
            value["spec"]["template"].clone(),
            d.metadata.generation.unwrap_or_default(),
            uids,
            value["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    })
}

/// The example of `release status --output json` in docs/release.md.
fn documented_status() -> Value {
    let doc = std::fs::read_to_string(crate::support::root().join("docs/release.md"))
        .expect("docs/release.md");
    let section = doc
        .split("## Status and history as JSON")
        .nth(1)
        .expect("the JSON section");
    let block = section
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a json block");
    serde_json::from_str(block).expect("the documented example is JSON")
}

fn run_id(run: &Run) -> String {
    run.events
        .iter()
        .find(|e| e["event"] == "run_started")
        .and_then(|e| e["run"].as_str())
        .unwrap_or_else(|| panic!("no run id in {}", run.stdout))
        .to_string()
}

#[test]
fn a_revision_says_which_commit_is_live_and_an_unchanged_rerelease_changes_nothing() {
    let Some(kc) = cluster() else { return };
    let (image, digest) = pushed_image();
    let ns = unique("trace");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    project(p, &ns, &image);
    git(p, &["init", "-q", "-b", "main"]);
    git(p, &["add", "."]);
    git(p, &["commit", "-q", "-m", "first"]);
    let first_sha = git(p, &["rev-parse", "HEAD"]);

    // A clean work tree.
    let first = slipway(p, &kc, &["run", "--output", "json"]);
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    let shown = status(p, &kc, &ns);
    let deployed = &shown["deployed"];
    assert_eq!(deployed["revision"], 1);
    assert_eq!(deployed["commit"], first_sha.as_str());
    assert_eq!(deployed["branch"], "main");
    assert_eq!(deployed["dirty"], false);
    assert_eq!(deployed["run"], run_id(&first).as_str());
    assert_eq!(deployed["file"], "p.pipeline");
    assert!(
        deployed["by"].as_str().is_some_and(|b| b.contains('@')),
        "{deployed}"
    );
    // The fields are those docs/release.md promises, no more, no fewer.
    let documented = documented_status();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&shown), keys(&documented));
    assert_eq!(keys(deployed), keys(&documented["deployed"]));
    assert_eq!(
        keys(&deployed["images"][0]),
        keys(&documented["deployed"]["images"][0])
    );
    assert_eq!(deployed["images"][0]["container"], "web");
    assert_eq!(deployed["images"][0]["image"], image.as_str());
    assert_eq!(deployed["images"][0]["digest"], digest.as_str());
    let (annotations, template, generation, pods, running) = live(&kc, &ns);
    assert_eq!(annotations["slipway.dev/release"], "web");
    assert_eq!(annotations["slipway.dev/revision"], "1");
    assert_eq!(annotations["slipway.dev/commit"], first_sha.as_str());
    assert!(annotations.get("slipway.dev/dirty").is_none());
    assert!(
        template["metadata"]["annotations"]
            .as_object()
            .is_none_or(|t| t.keys().all(|k| !k.starts_with("slipway.dev/"))),
        "{template}"
    );
    // Pinned: the tag for people, the digest for what runs.
    let sha = digest.split_once('@').map_or("", |(_, d)| d);
    assert_eq!(running, format!("{image}@{sha}"));
    assert_eq!(pods.len(), 1);

    // The same again: nothing applied, no revision, no Pod restarted.
    let again = slipway(p, &kc, &["run", "--output", "json"]);
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    let logs = again.logs();
    assert!(logs.contains("no changes; revision 1"), "{logs}");
    assert!(!logs.contains("applied "), "{logs}");
    let after = live(&kc, &ns);
    assert_eq!((after.2, &after.3), (generation, &pods));
    assert_eq!(status(p, &kc, &ns)["latest"]["revision"], 1);

    // A dirty work tree: a new revision that says so, on the objects too;
    // only metadata changed, so no Pod is replaced.
    std::fs::write(p.join("README.md"), "web, edited\n").expect("write");
    let dirty = slipway(p, &kc, &["run", "--output", "json"]);
    assert_eq!(dirty.code, Some(0), "{}\n{}", dirty.stdout, dirty.stderr);
    let shown = status(p, &kc, &ns);
    assert_eq!(shown["deployed"]["revision"], 2);
    assert_eq!(shown["deployed"]["dirty"], true);
    assert_eq!(shown["deployed"]["commit"], first_sha.as_str());
    // (A Deployment's generation counts annotation changes too, since its
    // controller copies them to the ReplicaSet; the template is what
    // makes Pods.)
    let (annotations, template_now, _, pods_now, _) = live(&kc, &ns);
    assert_eq!(annotations["slipway.dev/dirty"], "true");
    assert_eq!(annotations["slipway.dev/revision"], "2");
    assert_eq!((&template_now, &pods_now), (&template, &pods));

    // Committed: clean again, with the new commit.
    git(p, &["commit", "-q", "-am", "second"]);
    let second_sha = git(p, &["rev-parse", "HEAD"]);
    let committed = slipway(p, &kc, &["run", "--output", "json"]);
    assert_eq!(
        committed.code,
        Some(0),
        "{}\n{}",
        committed.stdout,
        committed.stderr
    );
    let history = slipway(
        p,
        &kc,
        &["release", "history", "web", "-n", &ns, "--output", "json"],
    );
    let history: Value = serde_json::from_str(&history.stdout).expect("json");
    let rows: Vec<(u64, String, String, bool)> = history["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default().to_string(),
                r["commit"].as_str().unwrap_or_default().to_string(),
                r["dirty"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, "superseded".into(), first_sha.clone(), false),
            (2, "superseded".into(), first_sha.clone(), true),
            (3, "deployed".into(), second_sha.clone(), false),
        ]
    );
    let human = slipway(p, &kc, &["release", "history", "web", "-n", &ns]);
    assert!(
        human.stdout.contains(&format!("{}-dirty", &first_sha[..7])),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains(&run_id(&committed)),
        "{}",
        human.stdout
    );

    // Back to revision 1 by hand: a new revision with revision 1's commit,
    // and objects that say so.
    let back = slipway(p, &kc, &["release", "rollback", "web", "1", "-n", &ns]);
    assert_eq!(back.code, Some(0), "{}\n{}", back.stdout, back.stderr);
    assert!(
        back.stdout
            .contains("revision 4 deployed (a rollback to revision 1)"),
        "{}",
        back.stdout
    );
    let shown = status(p, &kc, &ns);
    assert_eq!(shown["deployed"]["revision"], 4);
    assert_eq!(shown["deployed"]["commit"], first_sha.as_str());
    assert_eq!(shown["deployed"]["description"], "rollback to 1");
    let (annotations, ..) = live(&kc, &ns);
    assert_eq!(annotations["slipway.dev/revision"], "4");
    assert_eq!(annotations["slipway.dev/commit"], first_sha.as_str());
    drop_namespace(&kc, &ns);
    // The engine keeps no tag of this test's (the registry keeps the image).
    let _ = Command::new("/usr/bin/docker")
        .args(["rmi", &image])
        .output();
}
