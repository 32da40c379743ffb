//! `slipway run [FILE] [STAGE...] [selection flags] [-j N] [--keep-going]
//! [--backend local] [--output human|json] [--approve STAGE...]
//! [--secrets-file FILE]`

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use indexmap::IndexMap;
use tokio_util::sync::CancellationToken;

use super::{Global, Selection};
use crate::error::Error;
use crate::report::run::{Human, json_line};
use crate::run::backend::Backend;
use crate::run::{Event, Question, RunOptions, RunStatus};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendKind {
    /// Each stage in a container on the Docker engine, in its image.
    Docker,
    /// Run scripts as host processes (`sh -e`); images are not used.
    Local,
    /// Each stage as a Pod in a Kubernetes cluster (`--namespace`,
    /// `--context`).
    Kubernetes,
}

impl BackendKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Local => "local",
            BackendKind::Kubernetes => "kubernetes",
        }
    }

    /// What this backend would refuse in `stage` of the model, for
    /// `slipway check --backend`: where, why, and the way out. (A run
    /// refuses the planned stage: see [`Self::refusal`].)
    pub(crate) fn refuses(
        self,
        stage: &crate::model::Stage,
    ) -> Option<(crate::source::Span, String, Option<&'static str>)> {
        let crate::model::Action::Build(build) = &stage.action else {
            return None;
        };
        match self {
            BackendKind::Docker => None,
            BackendKind::Local => Some((build.span, crate::run::local::refusal("build"), None)),
            BackendKind::Kubernetes => (!build.push).then(|| {
                (
                    build.span,
                    crate::run::kubernetes::BUILD_WITHOUT_PUSH.to_string(),
                    Some(crate::run::kubernetes::BUILD_WITHOUT_PUSH_HELP),
                )
            }),
        }
    }

    /// Why this backend would refuse `stage` before a run starts (a
    /// `release` stage runs from slipway on any backend).
    pub(crate) fn refusal(self, stage: &crate::plan::PlannedStage) -> Option<String> {
        if matches!(stage.action, crate::plan::PlannedAction::Release(_)) {
            return None;
        }
        match self {
            BackendKind::Docker => crate::run::docker::supports(&stage.action),
            BackendKind::Local => crate::run::local::supports(&stage.action),
            BackendKind::Kubernetes => crate::run::kubernetes::supports_stage(stage),
        }
        .err()
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    /// Stage-prefixed logs and a final table.
    Human,
    /// One JSON event per line (docs/events.md).
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    selection: Selection,

    /// Stages running at once (default: the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,

    /// After a failure, still run every stage that does not depend on it.
    #[arg(long)]
    keep_going: bool,

    /// Run every stage, even those the stage cache holds a result for
    /// (results are still kept for the next run).
    #[arg(long)]
    no_cache: bool,

    /// Go on from an earlier run (the last one of this pipeline here, or
    /// RUN, as `slipway runs` lists them): its stages that succeeded and
    /// whose keys are unchanged are not run again, inputs or not.
    #[arg(long, value_name = "RUN", num_args = 0..=1, default_missing_value = "")]
    resume: Option<String>,

    /// Where stages run.
    #[arg(long, value_enum, env = "SLIPWAY_BACKEND", default_value_t = BackendKind::Docker)]
    backend: BackendKind,

    /// The namespace stages run in (kubernetes backend; created when
    /// missing). Default: the kubeconfig context's.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,

    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    output: OutputFormat,

    /// Approve a `manual` stage in advance (a stage or matrix cell name).
    #[arg(long, value_name = "STAGE", value_delimiter = ',')]
    approve: Vec<String>,

    /// A file of `NAME=VALUE` lines with secret values; the environment is
    /// used for secrets it does not name.
    #[arg(long, value_name = "FILE")]
    secrets_file: Option<PathBuf>,

    /// When to pull images (docker backend).
    #[arg(long, value_enum, default_value_t = crate::run::docker::Pull::Missing)]
    pull: crate::run::docker::Pull,

    /// How containers see the project (docker backend): `isolated` gives
    /// each its own copy-on-write view, so stages at once cannot clash and
    /// the project is not written; `shared` mounts the project read-write.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::run::docker::WorkspaceMode::Isolated)]
    workspace: crate::run::docker::WorkspaceMode,

    /// The kubeconfig context for `release` stages and the kubernetes
    /// backend (default: the current one).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,

    /// Let `release` stages take over fields another field manager owns.
    #[arg(long)]
    force_conflicts: bool,

    /// Also write a JUnit XML report, one test case per stage.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

pub(crate) fn run(args: &RunArgs, global: &Global) -> Result<(), Error> {
    let plan = super::make_plan(&args.selection, global)?;
    let workspace = args.selection.workspace()?;
    let secrets = secrets(&plan, args.secrets_file.as_deref())?;
    let source = source(&args.selection);
    // `manual` questions come to the printer below, so that the live view
    // is taken off the terminal while one is asked; the run goes on
    // meanwhile, and what it prints waits for the answer.
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let (questions, mut asked) = tokio::sync::mpsc::channel::<Question>(8);
    let opts = RunOptions {
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        keep_going: args.keep_going,
        approve: args.approve.clone(),
        questions: interactive.then_some(questions),
        cache: stage_cache(args, &plan, &workspace)?,
        workspace,
        secrets,
    };
    let runtime = super::runtime()?;
    let human = Human::new(&plan, global.color);
    let format = args.output;
    let summary = runtime.block_on(async {
        let backend: Arc<dyn Backend> = match args.backend {
            BackendKind::Local => Arc::new(crate::run::local::LocalBackend),
            BackendKind::Docker => Arc::new(
                crate::run::docker::DockerBackend::connect(args.pull, args.workspace).await?,
            ),
            BackendKind::Kubernetes => {
                let pods: Arc<dyn Backend> = Arc::new(
                    crate::run::kubernetes::KubernetesBackend::connect(
                        args.context.as_deref(),
                        args.namespace.as_deref(),
                        args.pull,
                    )
                    .await?,
                );
                // Builds go to this machine's engine, only when there are
                // some to run.
                if plan.stages.iter().any(|s| !s.skipped && s.build().is_some()) {
                    let builder = crate::run::docker::DockerBackend::connect(args.pull, args.workspace)
                        .await?;
                    Arc::new(crate::run::kubernetes::WithBuilds::new(
                        pods,
                        Arc::new(builder),
                        &plan.stages,
                    ))
                } else {
                    pods
                }
            }
        };
        let backend: Arc<dyn Backend> = Arc::new(crate::run::releasing::WithRelease::new(
            backend,
            &plan.pipeline,
            source,
            args.context.clone(),
            args.force_conflicts,
        ));
        let cancel = CancellationToken::new();
        tokio::spawn(on_signals(cancel.clone()));
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        // On a terminal, human output gets a live view of running stages.
        let mut live = (format == OutputFormat::Human
            && std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal())
        .then(crate::report::live::Live::new);
        let printer = tokio::spawn(async move {
            let mut out = std::io::stdout();
            let mut held: Vec<(Event, String)> = Vec::new();
            let mut answering: Option<tokio::task::JoinHandle<()>> = None;
            loop {
                tokio::select! {
                    event = rx.recv() => {
                        let Some(event) = event else { break };
                        let text = match format {
                            OutputFormat::Json => json_line(&event) + "\n",
                            OutputFormat::Human => human.event(&event),
                        };
                        if answering.is_some() {
                            held.push((event, text));
                            continue;
                        }
                        show(&mut live, &mut out, &event, &text);
                    }
                    Some(question) = asked.recv(), if answering.is_none() => {
                        if let Some(live) = &mut live {
                            live.pause();
                        }
                        answering = Some(tokio::task::spawn_blocking(move || ask(question)));
                    }
                    _ = async { answering.as_mut().expect("guarded").await }, if answering.is_some() => {
                        answering = None;
                        if let Some(live) = &mut live {
                            live.resume();
                        }
                        for (event, text) in held.drain(..) {
                            show(&mut live, &mut out, &event, &text);
                        }
                    }
                }
            }
            for (event, text) in held.drain(..) {
                show(&mut live, &mut out, &event, &text);
            }
            human
        });
        let summary = crate::run::run(&plan, &opts, backend, tx, cancel).await;
        if let Some(cache) = &opts.cache {
            cache.flush().await;
        }
        let human = printer.await.ok();
        let summary = summary.map_err(Error::Run)?;
        Ok::<_, Error>((summary, human))
    });
    // A question still on the terminal (the run was stopped while it
    // waited) is not waited for.
    runtime.shutdown_background();
    if let Some(cache) = &opts.cache {
        cache.save();
    }
    let (summary, human) = summary?;
    if format == OutputFormat::Human {
        if let Some(h) = human {
            let _ = std::io::stdout().write_all(h.summary(&plan, &summary).as_bytes());
        }
    }
    if let Some(path) = &args.junit {
        let what = format!("the JUnit report `{}`", path.display());
        let xml = crate::report::junit::junit(&plan, &summary)
            .map_err(|e| Error::Internal(format!("cannot write {what}: {e}")))?;
        std::fs::write(path, xml).map_err(|source| Error::Io {
            action: format!("write {what}"),
            source,
        })?;
    }
    match summary.status {
        RunStatus::Succeeded => Ok(()),
        // A stage failed because the cluster did not answer: infrastructure.
        RunStatus::Failed if summary.stages.iter().any(|s| s.unreachable) => {
            Err(Error::Unavailable)
        }
        RunStatus::Failed => Err(Error::Failed),
        RunStatus::Cancelled => Err(Error::Cancelled),
    }
}

/// The run's stage cache. Every `run` stage gets a key and its success is
/// kept, so that a later `--resume` can go on from this run; stages that
/// declare `inputs` are also served from it.
fn stage_cache(
    args: &RunArgs,
    plan: &crate::plan::Plan,
    workspace: &std::path::Path,
) -> Result<Option<Arc<crate::cache::StageCache>>, Error> {
    let resumed = match &args.resume {
        None => None,
        Some(run) => {
            let run = (!run.is_empty()).then_some(run.as_str());
            let record =
                crate::run::record::find(workspace, &plan.pipeline, run).ok_or_else(|| {
                    Error::usage(
                        match run {
                            Some(id) => format!("no run `{id}` recorded here to resume"),
                            None => format!(
                                "no earlier run of pipeline `{}` here to resume",
                                plan.pipeline
                            ),
                        },
                        "`slipway runs` lists the runs recorded in .slipway/runs/",
                    )
                })?;
            Some(
                record
                    .stages
                    .into_iter()
                    .filter(|s| matches!(s.status.as_str(), "succeeded" | "cached"))
                    .filter_map(|s| Some((s.name, s.key?)))
                    .collect(),
            )
        }
    };
    let root = crate::cache::store::LocalStore::default_root()
        .unwrap_or_else(|| workspace.join(".slipway/stage-cache"));
    let cache = crate::cache::StageCache::new(
        crate::cache::store::LocalStore::new(root),
        !args.no_cache,
        workspace.to_path_buf(),
    );
    Ok(Some(Arc::new(match resumed {
        Some(succeeded) => cache.resuming(succeeded),
        None => cache,
    })))
}

/// Prints one event: above the live view, or straight to standard output
/// (flushed each time; a closed pipe stops printing, not the run).
fn show(
    live: &mut Option<crate::report::live::Live>,
    out: &mut std::io::Stdout,
    event: &Event,
    text: &str,
) {
    match live {
        Some(live) => live.show(event, text),
        None => {
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
    }
}

/// Asks on the terminal whether a `manual` stage may go on.
fn ask(question: Question) {
    use std::io::Write as _;
    eprint!("{} [y/N] ", question.prompt);
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let answer = std::io::stdin()
        .read_line(&mut line)
        .map(|_| line)
        .unwrap_or_default();
    let _ = question
        .answer
        .send(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"));
}

/// What a release records of where it comes from, but for what each
/// stage's git context says (commit, branch, tag).
fn source(selection: &super::Selection) -> crate::release::store::Source {
    let (file, _) = selection.file_and_targets();
    let file = super::find_pipeline(file.as_deref()).ok();
    let dir = file
        .as_deref()
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let repo = super::git::Repo::at(dir);
    crate::release::store::Source {
        branch: None,
        tag: None,
        dirty: repo.as_ref().and_then(super::git::Repo::dirty),
        run: None,
        file: file.map(|f| {
            repo.as_ref()
                .and_then(|r| r.relative(&f))
                .unwrap_or_else(|| f.display().to_string())
        }),
        by: super::git::who(),
    }
}

/// Ctrl-C or SIGTERM: stop the run (once; the scheduler cleans up).
async fn on_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();
}

/// Every secret the plan's stages need, from `--secrets-file` or the
/// environment. A missing one stops the run before anything starts.
fn secrets(
    plan: &crate::plan::Plan,
    file: Option<&Path>,
) -> Result<IndexMap<String, String>, Error> {
    let mut from_file: IndexMap<String, String> = IndexMap::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            help: Some("pass a file of NAME=VALUE lines"),
            source,
        })?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if let Some((k, v)) = line.split_once('=') {
                from_file.insert(k.trim().to_string(), v.to_string());
            }
        }
    }
    let mut out = IndexMap::new();
    for name in plan
        .stages
        .iter()
        .filter(|s| !s.skipped)
        .flat_map(|s| s.secrets.iter())
    {
        if out.contains_key(&**name) {
            continue;
        }
        let value = from_file
            .get(&**name)
            .cloned()
            .or_else(|| std::env::var(&**name).ok());
        match value {
            Some(v) => {
                out.insert(name.to_string(), v);
            }
            None => {
                return Err(Error::usage(
                    format!("secret `{name}` is not set"),
                    format!(
                        "export {name}=... or add `{name}=...` to a file given with --secrets-file"
                    ),
                ));
            }
        }
    }
    Ok(out)
}
