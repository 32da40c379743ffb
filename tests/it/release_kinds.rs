//! Releases of kinds beyond the built-in workloads, against the real
//! cluster: a CustomResourceDefinition and resources of its kind in one
//! release (the definition applied and established first), a custom
//! resource pruned, and health read from a custom resource's conditions.

use std::path::Path;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use crate::release::{Run, cluster, drop_namespace, kube, slipway, unique};

/// A namespaced kind `Widget` in a group of this test process's own, so
/// that runs of the suite never share a definition.
fn definition(group: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\n\
         spec:\n  group: {group}\n  scope: Namespaced\n  names:\n    kind: Widget\n    plural: widgets\n    singular: widget\n    listKind: WidgetList\n\
         \x20 versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          x-kubernetes-preserve-unknown-fields: true\n"
    )
}

/// Widgets; `status` (a field like any other: the definition has no status
/// subresource) lets the manifest say what a controller would.
fn widget(group: &str, name: &str, status: &str) -> String {
    format!(
        "---\napiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  size: 3\n{status}"
    )
}

fn project(dir: &Path, ns: &str, group: &str, widgets: &[(&str, &str)], wait: &str) {
    let k8s = dir.join("k8s");
    let _ = std::fs::remove_dir_all(&k8s);
    std::fs::create_dir_all(&k8s).expect("mkdir");
    // The widgets' file sorts before the definition's: the order of kinds,
    // not of files, must put the definition first.
    std::fs::write(k8s.join("b-crd.yaml"), definition(group)).expect("write");
    let widgets: String = widgets
        .iter()
        .map(|(name, status)| widget(group, name, status))
        .collect();
    std::fs::write(k8s.join("a-widgets.yaml"), widgets).expect("write");
    std::fs::write(
        dir.join("p.pipeline"),
        format!(
            "pipeline \"kinds\"\n\nstage deploy {{\n  release widgets {{\n    namespace \"{ns}\"\n    \
             manifests \"k8s/*.yaml\"\n    wait {wait}\n    prune true\n  }}\n}}\n"
        ),
    )
    .expect("write");
}

fn widget_names(kc: &Path, ns: &str, group: &str) -> Vec<String> {
    let (ns, group) = (ns.to_string(), group.to_string());
    kube(kc, async move |client| {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Widget"));
        let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(client, &ns, &ar);
        let mut names: Vec<String> = api
            .list(&Default::default())
            .await
            .expect("list widgets")
            .items
            .into_iter()
            .filter_map(|w| w.metadata.name)
            .collect();
        names.sort();
        names
    })
}

fn drop_definition(kc: &Path, group: &str) {
    let name = format!("widgets.{group}");
    kube(kc, async move |client| {
        let api: kube::Api<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        > = kube::Api::all(client);
        let _ = api.delete(&name, &Default::default()).await;
    });
}

fn run(dir: &Path, kc: &Path) -> Run {
    slipway(dir, kc, &["run", "--output", "json"])
}

#[test]
fn a_definition_and_its_resources_in_one_release_then_one_pruned_then_one_not_ready() {
    let Some(kc) = cluster() else { return };
    let ns = unique("kinds");
    let group = format!("{ns}.slipway.test");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();

    // What it would do, before the kind exists: everything new.
    project(p, &ns, &group, &[("a", ""), ("b", "")], "1m");
    let diff = slipway(p, &kc, &["release", "diff"]);
    assert_eq!(diff.code, Some(1), "{}\n{}", diff.stdout, diff.stderr);
    assert!(
        diff.stdout.contains("+++ desired/Widget/a"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout.contains(&format!(
            "+++ desired/CustomResourceDefinition/widgets.{group}"
        )),
        "{}",
        diff.stdout
    );

    // One release: the definition, established, then its widgets.
    let first = run(p, &kc);
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    let logs = first.logs();
    let established = logs
        .find(&format!(
            "CustomResourceDefinition/widgets.{group}: established"
        ))
        .unwrap_or_else(|| panic!("the definition was not waited for:\n{logs}"));
    let widget_applied = logs
        .find(&format!("applied Widget/{ns}/a"))
        .unwrap_or_else(|| panic!("widget a was not applied:\n{logs}"));
    assert!(established < widget_applied, "{logs}");
    assert_eq!(widget_names(&kc, &ns, &group), ["a", "b"]);
    let same = slipway(p, &kc, &["release", "diff"]);
    assert_eq!(same.code, Some(0), "{}\n{}", same.stdout, same.stderr);

    // A widget dropped from the manifests is pruned, the other kept.
    project(p, &ns, &group, &[("a", "")], "1m");
    let second = run(p, &kc);
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    assert!(
        second.logs().contains(&format!("pruned Widget/{ns}/b")),
        "{}",
        second.logs()
    );
    assert_eq!(widget_names(&kc, &ns, &group), ["a"]);

    // A widget whose `Ready` condition is false is not healthy: the
    // release waits for it, fails, and goes back to revision 2.
    project(
        p,
        &ns,
        &group,
        &[(
            "a",
            "status:\n  conditions:\n    - type: Ready\n      status: \"False\"\n      reason: Warming\n      message: still warming up\n",
        )],
        "4s",
    );
    let third = run(p, &kc);
    assert_eq!(third.code, Some(1), "{}\n{}", third.stdout, third.stderr);
    let message = third.finished()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(&format!(
            "Widget/{ns}/a (not ready: Warming: still warming up)"
        )),
        "{message}"
    );
    assert!(message.contains("rolled back: revision 4"), "{message}");
    let history = slipway(
        p,
        &kc,
        &[
            "release", "history", "widgets", "-n", &ns, "--output", "json",
        ],
    );
    let history: serde_json::Value = serde_json::from_str(&history.stdout).expect("json");
    let statuses: Vec<&str> = history["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        ["superseded", "superseded", "rolled-back", "deployed"]
    );

    drop_namespace(&kc, &ns);
    drop_definition(&kc, &group);
}
