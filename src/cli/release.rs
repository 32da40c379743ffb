//! `slipway release status|history|rollback|diff`: looking at and acting
//! on releases outside a run. The kubeconfig comes from the default loading
//! rules (`KUBECONFIG`, `~/.kube/config`), with `--context`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{Global, Selection};
use crate::error::Error;
use crate::release::apply::{self, ApiError, Kinds};
use crate::release::render::{self, Scope, render};
use crate::release::store::{Item, Revision, Status, Store};
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
    /// The deployed revision of a release: its commit, images with
    /// digests, run, and what it applied.
    Status(Report),
    /// Every kept revision of a release, with its status, commit and run.
    History(Report),
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
struct Report {
    #[command(flatten)]
    target: Target,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    output: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// For people: aligned lines, a table.
    Human,
    /// One JSON document (docs/release.md#status-and-history-as-json).
    Json,
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

pub(crate) fn run(args: &ReleaseArgs, global: &Global) -> Result<(), Error> {
    let runtime = super::runtime()?;
    let context = args.context.as_deref();
    runtime.block_on(async {
        match &args.command {
            ReleaseCommand::Status(r) => status(r, context).await,
            ReleaseCommand::History(r) => history(r, context).await,
            ReleaseCommand::Rollback(r) => rollback(r, context).await,
            ReleaseCommand::Diff(d) => diff(d, context, global).await,
        }
    })
}

/// Every revision of the release, oldest first; none is an error.
async fn revisions(t: &Target, context: Option<&str>) -> Result<Vec<Revision>, ApiError> {
    let client = client::connect(context).await?;
    let revisions = Store::new(client, &t.namespace, &t.name)
        .list()
        .await
        .map_err(|e| ApiError::from_kube("listing revisions", e))?;
    if revisions.is_empty() {
        return Err(ApiError::failed(format!(
            "no release `{}` in namespace `{}`",
            t.name, t.namespace
        )));
    }
    Ok(revisions)
}

/// A revision as `status` and `history` report it: the JSON contract
/// (docs/release.md), apart from how revisions are stored.
#[derive(serde::Serialize)]
struct Shown<'a> {
    revision: u32,
    status: &'static str,
    time: &'a str,
    description: &'a str,
    commit: Option<&'a str>,
    branch: Option<&'a str>,
    tag: Option<&'a str>,
    dirty: Option<bool>,
    run: Option<&'a str>,
    pipeline: &'a str,
    file: Option<&'a str>,
    by: Option<&'a str>,
    images: Vec<ShownImage<'a>>,
    objects: Vec<String>,
    /// Why the stored record could not be read back whole, if it could not.
    incomplete: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct ShownImage<'a> {
    container: &'a str,
    image: &'a str,
    digest: Option<&'a str>,
}

impl<'a> Shown<'a> {
    fn of(r: &'a Revision) -> Self {
        Self {
            revision: r.version,
            status: r.status.as_str(),
            time: &r.time,
            description: &r.description,
            commit: r.git_sha.as_deref(),
            branch: r.source.branch.as_deref(),
            tag: r.source.tag.as_deref(),
            dirty: r.source.dirty,
            run: r.source.run.as_deref(),
            pipeline: &r.pipeline,
            file: r.source.file.as_deref(),
            by: r.source.by.as_deref(),
            images: r
                .images
                .iter()
                .map(|(container, image)| ShownImage {
                    container,
                    image,
                    digest: r.digests.get(container).map(String::as_str),
                })
                .collect(),
            objects: r.inventory.iter().map(Item::id).collect(),
            incomplete: r.incomplete.as_deref(),
        }
    }
}

/// The commit as a person reads it: short, marked when the tree was dirty.
fn short_commit(r: &Revision) -> String {
    let Some(sha) = &r.git_sha else {
        return "-".into();
    };
    let short: String = sha.chars().take(7).collect();
    if r.source.dirty == Some(true) {
        format!("{short}-dirty")
    } else {
        short
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    super::write_stdout(&(text + "\n"))
}

async fn status(report: &Report, context: Option<&str>) -> Result<(), Error> {
    let t = &report.target;
    let revisions = revisions(t, context).await?;
    let deployed = revisions
        .iter()
        .rev()
        .find(|r| r.status == Status::Deployed);
    let latest = revisions.last();
    if report.output == Format::Json {
        return print_json(&serde_json::json!({
            "release": t.name,
            "namespace": t.namespace,
            "deployed": deployed.map(Shown::of),
            "latest": latest.map(Shown::of),
        }));
    }
    let mut out = format!("release:   {}\nnamespace: {}\n", t.name, t.namespace);
    match deployed {
        Some(d) => {
            out += &format!("deployed:  revision {} ({})\n", d.version, d.time);
            if let Some(sha) = &d.git_sha {
                let mut line = format!("commit:    {sha}");
                if d.source.dirty == Some(true) {
                    line += " (work tree dirty)";
                }
                if let Some(b) = &d.source.branch {
                    line += &format!(", branch {b}");
                }
                if let Some(tag) = &d.source.tag {
                    line += &format!(", tag {tag}");
                }
                out += &(line + "\n");
            }
            for (c, i) in &d.images {
                out += &format!("image:     {c} = {i}\n");
                if let Some(digest) = d.digests.get(c) {
                    out += &format!("           {digest}\n");
                }
            }
            if let Some(run) = &d.source.run {
                out += &format!(
                    "run:       {run}{}{}\n",
                    d.source
                        .file
                        .as_ref()
                        .map(|f| format!(" of {f}"))
                        .unwrap_or_default(),
                    d.source
                        .by
                        .as_ref()
                        .map(|b| format!(", by {b}"))
                        .unwrap_or_default()
                );
            }
            out += "objects:\n";
            for item in &d.inventory {
                out += &format!("  {}\n", item.id());
            }
        }
        None => out += "deployed:  none\n",
    }
    // The latest attempt, when it is not the one running.
    if let Some(last) = latest.filter(|last| deployed.is_none_or(|d| d.version != last.version)) {
        out += &format!(
            "latest:    revision {} {}: {}\n",
            last.version,
            last.status.as_str(),
            last.description
        );
    }
    super::write_stdout(&out)
}

async fn history(report: &Report, context: Option<&str>) -> Result<(), Error> {
    let t = &report.target;
    let revisions = revisions(t, context).await?;
    if report.output == Format::Json {
        return print_json(&serde_json::json!({
            "release": t.name,
            "namespace": t.namespace,
            "revisions": revisions.iter().map(Shown::of).collect::<Vec<_>>(),
        }));
    }
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header([
        "REVISION",
        "TIME",
        "STATUS",
        "COMMIT",
        "RUN",
        "IMAGES",
        "DESCRIPTION",
    ]);
    for r in &revisions {
        table.add_row([
            r.version.to_string(),
            r.time.chars().take(19).collect(),
            r.status.as_str().to_string(),
            short_commit(r),
            r.source.run.clone().unwrap_or_else(|| "-".into()),
            r.images
                .iter()
                .map(|(c, i)| format!("{c}={i}"))
                .collect::<Vec<_>>()
                .join(","),
            match &r.incomplete {
                Some(why) => format!("{} (record incomplete: {why})", r.description),
                None => r.description.clone(),
            },
        ]);
    }
    super::write_stdout(&format!("{}\n", table.trim_fmt()))
}

async fn rollback(r: &RollbackArgs, context: Option<&str>) -> Result<(), Error> {
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
            .ok_or_else(|| ApiError::failed(format!("release `{}` has no revision {n}", t.name)))?,
        None => revisions
            .iter()
            .rev()
            .find(|x| {
                matches!(x.status, Status::Superseded | Status::Deployed)
                    && current.is_none_or(|c| x.version < c.version)
            })
            .ok_or_else(|| {
                ApiError::failed(format!(
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
        digests: target.digests.clone(),
        wait: r.wait,
        rollback: false,
        prune: false,
        history: u32::try_from(revisions.len()).unwrap_or(u32::MAX).max(10),
        pipeline: target.pipeline.clone(),
        git_sha: target.git_sha.clone(),
        source: target.source.clone(),
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
    Ok(())
}

async fn diff(d: &DiffArgs, context: Option<&str>, global: &Global) -> Result<(), Error> {
    let plan = super::make_plan(&d.selection, global)?;
    let workspace = d
        .selection
        .workspace()
        .unwrap_or_else(|_| PathBuf::from("."));
    let releases: Vec<_> = plan
        .stages
        .iter()
        .filter(|s| s.release().is_some() && !s.skipped)
        .collect();
    if releases.is_empty() {
        return Err(ApiError::failed(
            "no release stage in the plan (name one, or check `slipway plan`)",
        )
        .into());
    }
    // Secrets from the environment; those it lacks stay masked as `***`.
    let mut secrets: indexmap::IndexMap<String, String> = indexmap::IndexMap::new();
    for stage in &releases {
        let named = stage.secrets.iter().map(|s| s.to_string());
        let referenced = stage.secret_env.values().flat_map(|v| {
            crate::plan::secret_names(v)
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
        for name in named.chain(referenced) {
            let value = std::env::var(&name).unwrap_or_else(|_| "***".into());
            secrets.insert(name, value);
        }
    }
    let client = client::connect(context).await?;
    let dirty = super::git::Repo::at(&workspace).and_then(|r| r.dirty());
    let mut changed = false;
    for stage in releases {
        let Some(spec) = stage.release() else {
            continue;
        };
        let mut scope = Scope::of(stage, &plan);
        scope.secrets = Some(&secrets);
        let mut objects = render(spec, &workspace, &scope).map_err(|e| ApiError::failed(e.0))?;
        let namespace = spec.namespace.clone().unwrap_or_else(|| "default".into());
        // As a run would apply them: images pinned to the digests the engine
        // knows, and annotated as the deployed revision (a new revision's
        // number alone is no change worth showing).
        let mut pinned = std::collections::BTreeMap::new();
        for (container, image) in &spec.images {
            if let Some(digest) = crate::run::docker::image_digest(image).await {
                pinned.insert(container.clone(), render::pin(image, &digest));
            }
        }
        render::set_images(&mut objects, &pinned);
        let deployed = Store::new(client.clone(), &namespace, &spec.name)
            .list()
            .await
            .map_err(|e| ApiError::from_kube("listing revisions", e))?
            .into_iter()
            .rev()
            .find(|r| r.status == Status::Deployed)
            .map_or(1, |r| r.version);
        render::annotate(
            &mut objects,
            &crate::release::marks(&spec.name, deployed, plan.git.sha.as_deref(), dirty),
        );
        let mut kinds = Kinds::default();
        kinds.declare(&objects);
        for object in &objects {
            // A kind a definition of this release declares, not served
            // yet: its resources are all new.
            let unserved = kinds.is_declared(&object.api_version, &object.kind)
                && kinds
                    .resolve(&client, &object.api_version, &object.kind)
                    .await
                    .is_err();
            if unserved {
                let text = yaml(&apply::clean(object.value.clone(), true));
                changed |= print_diff(&object.id(), "", &text);
                continue;
            }
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
                Err(ApiError::Failed { message, .. }) if message.contains("not found") => {
                    let item = crate::release::store::Item {
                        api_version: object.api_version.clone(),
                        kind: object.kind.clone(),
                        namespace: object.namespace.clone().or(Some(namespace.clone())),
                        name: object.name.clone(),
                    };
                    let text = yaml(&apply::clean(object.value.clone(), true));
                    changed |= print_diff(&item.id(), "", &text);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let live = apply::get(&client, &mut kinds, &item).await?;
            let before = live
                .map(|l| {
                    yaml(&apply::clean(
                        serde_json::to_value(l).unwrap_or_default(),
                        true,
                    ))
                })
                .unwrap_or_default();
            let after = yaml(&apply::clean(
                serde_json::to_value(desired).unwrap_or_default(),
                true,
            ));
            changed |= print_diff(&item.id(), &before, &after);
        }
    }
    if !changed {
        eprintln!("no changes");
    }
    if changed { Err(Error::Failed) } else { Ok(()) }
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

fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}
