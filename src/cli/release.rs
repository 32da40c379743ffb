//! `slipway release status|history|rollback|diff`: looking at and acting
//! on releases outside a run. The kubeconfig comes from the default loading
//! rules (`KUBECONFIG`, `~/.kube/config`), with `--context`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{Global, Selection, exit};
use crate::release::apply::{self, ApiError, Kinds};
use crate::release::render::{Scope, render};
use crate::release::store::{Revision, Status, Store};
use crate::release::{Request, client};

#[derive(Args, Debug)]
pub(crate) struct ReleaseArgs {
    #[command(subcommand)]
    command: ReleaseCommand,

    /// The kubeconfig context (default: the current one).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ReleaseCommand {
    /// The deployed revision of a release, and what it applied.
    Status(Target),
    /// Every kept revision of a release, with its status.
    History(Target),
    /// Re-apply an earlier revision (default: the one deployed before the
    /// current) as a new revision, and wait for it.
    Rollback(RollbackArgs),
    /// Show what a pipeline's release stages would change, as a unified
    /// diff of live against desired (server-side dry run; Secret data masked).
    Diff(DiffArgs),
}

#[derive(Args, Debug)]
struct Target {
    /// The release's name.
    name: String,
    /// The release's namespace.
    #[arg(short = 'n', long, default_value = "default", value_name = "NS")]
    namespace: String,
}

#[derive(Args, Debug)]
struct RollbackArgs {
    #[command(flatten)]
    target: Target,
    /// The revision to go back to.
    revision: Option<u32>,
    /// How long to wait for it to become healthy.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    wait: Duration,
}

#[derive(Args, Debug)]
struct DiffArgs {
    #[command(flatten)]
    selection: Selection,
    /// Send the objects' fields owned by other managers too.
    #[arg(long)]
    force_conflicts: bool,
}

pub(crate) fn run(args: &ReleaseArgs, global: &Global) -> u8 {
    let runtime = match super::runtime(global) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let context = args.context.as_deref();
    let result = runtime.block_on(async {
        match &args.command {
            ReleaseCommand::Status(t) => status(t, context).await,
            ReleaseCommand::History(t) => history(t, context).await,
            ReleaseCommand::Rollback(r) => rollback(r, context).await,
            ReleaseCommand::Diff(d) => diff(d, context, global).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(ApiError::Unreachable(e)) => {
            super::error(global, &e, None);
            exit::INTERNAL
        }
        Err(ApiError::Failed(e)) => {
            super::error(global, &e, None);
            exit::FAILED
        }
    }
}

/// Every revision of the release, oldest first; none is an error.
async fn revisions(t: &Target, context: Option<&str>) -> Result<Vec<Revision>, ApiError> {
    let client = client::connect(context).await?;
    let revisions = Store::new(client, &t.namespace, &t.name)
        .list()
        .await
        .map_err(|e| ApiError::from_kube("listing revisions", e))?;
    if revisions.is_empty() {
        return Err(ApiError::Failed(format!(
            "no release `{}` in namespace `{}`",
            t.name, t.namespace
        )));
    }
    Ok(revisions)
}

async fn status(t: &Target, context: Option<&str>) -> Result<u8, ApiError> {
    let revisions = revisions(t, context).await?;
    let deployed = revisions
        .iter()
        .rev()
        .find(|r| r.status == Status::Deployed);
    println!("release:   {}", t.name);
    println!("namespace: {}", t.namespace);
    match deployed {
        Some(d) => {
            println!("deployed:  revision {} ({})", d.version, d.time);
            for (c, i) in &d.images {
                println!("image:     {c} = {i}");
            }
            if let Some(sha) = &d.git_sha {
                println!("git sha:   {sha}");
            }
            println!("objects:");
            for item in &d.inventory {
                println!("  {}", item.id());
            }
        }
        None => println!("deployed:  none"),
    }
    // The latest attempt, when it is not the one running.
    if let Some(last) = revisions
        .last()
        .filter(|last| deployed.is_none_or(|d| d.version != last.version))
    {
        println!(
            "latest:    revision {} {}: {}",
            last.version,
            last.status.as_str(),
            last.description
        );
    }
    Ok(exit::OK)
}

async fn history(t: &Target, context: Option<&str>) -> Result<u8, ApiError> {
    let revisions = revisions(t, context).await?;
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(["REVISION", "TIME", "STATUS", "IMAGES", "DESCRIPTION"]);
    for r in &revisions {
        table.add_row([
            r.version.to_string(),
            r.time.chars().take(19).collect(),
            r.status.as_str().to_string(),
            r.images
                .iter()
                .map(|(c, i)| format!("{c}={i}"))
                .collect::<Vec<_>>()
                .join(","),
            r.description.clone(),
        ]);
    }
    println!("{}", table.trim_fmt());
    Ok(exit::OK)
}

async fn rollback(r: &RollbackArgs, context: Option<&str>) -> Result<u8, ApiError> {
    let t = &r.target;
    let client = client::connect(context).await?;
    let store = Store::new(client.clone(), &t.namespace, &t.name);
    let revisions = store
        .list()
        .await
        .map_err(|e| ApiError::from_kube("listing revisions", e))?;
    let current = revisions
        .iter()
        .rev()
        .find(|x| x.status == Status::Deployed);
    let target = match r.revision {
        Some(n) => revisions
            .iter()
            .find(|x| x.version == n)
            .ok_or_else(|| ApiError::Failed(format!("release `{}` has no revision {n}", t.name)))?,
        None => revisions
            .iter()
            .rev()
            .find(|x| {
                matches!(x.status, Status::Superseded | Status::Deployed)
                    && current.is_none_or(|c| x.version < c.version)
            })
            .ok_or_else(|| {
                ApiError::Failed(format!(
                    "release `{}` has no earlier deployed revision to go back to",
                    t.name
                ))
            })?,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let printer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            eprintln!("{line}");
        }
    });
    let request = Request {
        name: t.name.clone(),
        namespace: t.namespace.clone(),
        objects: Vec::new(),
        images: target.images.clone(),
        wait: r.wait,
        rollback: false,
        prune: false,
        history: u32::try_from(revisions.len()).unwrap_or(u32::MAX).max(10),
        pipeline: target.pipeline.clone(),
        git_sha: target.git_sha.clone(),
        force_conflicts: false,
    };
    let current_inventory = current.map(|c| c.inventory.clone()).unwrap_or_default();
    let result =
        crate::release::rollback_to(&client, &store, target, &current_inventory, &request, &tx)
            .await;
    drop(tx);
    let _ = printer.await;
    let now = result?;
    println!(
        "release `{}`: revision {} deployed (a rollback to revision {})",
        t.name, now, target.version
    );
    Ok(exit::OK)
}

async fn diff(d: &DiffArgs, context: Option<&str>, global: &Global) -> Result<u8, ApiError> {
    let plan = match super::make_plan(&d.selection, global) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let workspace = d
        .selection
        .workspace()
        .unwrap_or_else(|_| PathBuf::from("."));
    let releases: Vec<_> = plan
        .stages
        .iter()
        .filter(|s| s.release.is_some() && !s.skipped)
        .collect();
    if releases.is_empty() {
        return Err(ApiError::Failed(
            "no release stage in the plan (name one, or check `slipway plan`)".into(),
        ));
    }
    // Secrets from the environment; those it lacks stay masked as `***`.
    let mut secrets: indexmap::IndexMap<String, String> = indexmap::IndexMap::new();
    for stage in &releases {
        let named = stage.secrets.iter().map(|s| s.to_string());
        let referenced = stage.secret_env.values().flat_map(|v| {
            v.split("${secret.")
                .skip(1)
                .filter_map(|rest| rest.split_once('}').map(|(n, _)| n.to_string()))
                .collect::<Vec<_>>()
        });
        for name in named.chain(referenced) {
            let value = std::env::var(&name).unwrap_or_else(|_| "***".into());
            secrets.insert(name, value);
        }
    }
    let client = client::connect(context).await?;
    let mut changed = false;
    for stage in releases {
        let Some(spec) = stage.release.as_deref() else {
            continue;
        };
        let mut scope = Scope::of(stage, &plan);
        scope.secrets = Some(&secrets);
        let objects = render(spec, &workspace, &scope).map_err(|e| ApiError::Failed(e.0))?;
        let namespace = spec.namespace.clone().unwrap_or_else(|| "default".into());
        let mut kinds = Kinds::default();
        for object in &objects {
            let (desired, item) = match apply::apply(
                &client,
                &mut kinds,
                object,
                &namespace,
                d.force_conflicts,
                true,
            )
            .await
            {
                Ok(x) => x,
                // The namespace does not exist yet: all of it is new.
                Err(ApiError::Failed(e)) if e.contains("not found") => {
                    let item = crate::release::store::Item {
                        api_version: object.api_version.clone(),
                        kind: object.kind.clone(),
                        namespace: object.namespace.clone().or(Some(namespace.clone())),
                        name: object.name.clone(),
                    };
                    let text = yaml(&clean(object.value.clone()));
                    changed |= print_diff(&item.id(), "", &text);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let live = apply::get(&client, &mut kinds, &item).await?;
            let before = live
                .map(|l| yaml(&clean(serde_json::to_value(l).unwrap_or_default())))
                .unwrap_or_default();
            let after = yaml(&clean(serde_json::to_value(desired).unwrap_or_default()));
            changed |= print_diff(&item.id(), &before, &after);
        }
    }
    if !changed {
        eprintln!("no changes");
    }
    Ok(if changed { exit::FAILED } else { exit::OK })
}

fn print_diff(id: &str, before: &str, after: &str) -> bool {
    if before == after {
        return false;
    }
    let diff = similar::TextDiff::from_lines(before, after);
    print!(
        "{}",
        diff.unified_diff()
            .context_radius(3)
            .header(&format!("live/{id}"), &format!("desired/{id}"))
    );
    true
}

/// Drops what the server keeps for itself, and masks Secret data.
fn clean(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("deployment.kubernetes.io/revision");
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        if meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(serde_json::Map::is_empty)
        {
            meta.remove("annotations");
        }
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    if v.get("kind").and_then(Value::as_str) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(data) = v.get_mut(field).and_then(Value::as_object_mut) {
                for value in data.values_mut() {
                    *value = Value::String("***".into());
                }
            }
        }
    }
    v
}

fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}
