//! `build` stages on the Docker engine: the context sent as a tar (honouring
//! `.dockerignore`), the image labelled with OCI labels from the git
//! context, tagged, and pushed when asked.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt as _;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use tokio_util::sync::CancellationToken;

use super::Attempt;
use super::engine::failure;
use crate::image::ImageRef;
use crate::plan::PlannedBuild;
use crate::run::backend::{Outcome, Output};
use crate::run::events::Stream;

/// Never sent to the engine, `.dockerignore` or not.
const ALWAYS_IGNORED: [&str; 2] = [".git", ".slipway"];

pub(super) async fn build(
    attempt: &Attempt,
    build: &PlannedBuild,
    output: &Output,
    cancel: &CancellationToken,
) -> Outcome {
    let docker = &attempt.docker;
    let run = &attempt.job.context;
    let context = run.workspace.join(&build.context);
    let tar = match context_tar(&context) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::stage(format!(
                "cannot read the build context `{}`: {e}",
                context.display()
            ));
        }
    };
    let Some(first) = build.tags.first() else {
        return Outcome::stage("a build needs a tag");
    };
    let mut labels: HashMap<String, String> = HashMap::new();
    let oci = [
        (
            "org.opencontainers.image.revision",
            run.git.sha.clone().unwrap_or_default(),
        ),
        // The commit's time, not the build's: the same commit builds the
        // same image, so a re-run has nothing new to push or release.
        (
            "org.opencontainers.image.created",
            run.git.time.clone().unwrap_or_else(crate::run::events::now),
        ),
        ("org.opencontainers.image.title", run.pipeline.clone()),
        (
            "org.opencontainers.image.source",
            run.git.source.clone().unwrap_or_default(),
        ),
    ];
    for (k, v) in oci {
        if !v.is_empty() {
            labels.insert(k.to_string(), v);
        }
    }
    // The pipeline's own labels win over the defaults.
    labels.extend(build.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let args: HashMap<String, String> = build
        .args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut options = BuildImageOptionsBuilder::default()
        .dockerfile(build.dockerfile.as_deref().unwrap_or("Dockerfile"))
        .t(first)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .buildargs(&args);
    if let Some(target) = &build.target {
        options = options.target(target);
    }
    let mut stream =
        docker.build_image(options.build(), None, Some(bollard::body_full(tar.into())));
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            () = cancel.cancelled() => return Outcome::Cancelled,
        };
        let Some(item) = next else { break };
        match item {
            Ok(info) => {
                if let Some(text) = info.stream {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        output.line(Stream::Stdout, line).await;
                    }
                }
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Outcome::stage(format!("the build failed: {err}"));
                }
            }
            Err(e) => return Outcome::Failed(failure("the build failed", &e)),
        }
    }
    for extra in &build.tags[1..] {
        // A tag is a name for the image just built, never a digest.
        if ImageRef::split(extra).digest().is_some() {
            return Outcome::stage(format!("cannot tag `{extra}`: a tag cannot have a digest"));
        }
        let (repo, tag) = split_tag(extra);
        let options = TagImageOptionsBuilder::default()
            .repo(&repo)
            .tag(&tag)
            .build();
        if let Err(e) = docker.tag_image(first, Some(options)).await {
            return Outcome::Failed(failure(format_args!("cannot tag `{extra}`"), &e));
        }
    }
    if build.push {
        for reference in &build.tags {
            output
                .line(Stream::Stdout, &format!("pushing {reference}"))
                .await;
            let (repo, tag) = split_tag(reference);
            let options = PushImageOptionsBuilder::default().tag(&tag).build();
            let mut push = docker.push_image(&repo, Some(options), None);
            while let Some(item) = push.next().await {
                if let Err(e) = item {
                    return Outcome::Failed(failure(format_args!("cannot push `{reference}`"), &e));
                }
            }
        }
    }
    Outcome::Exited(0)
}

/// The digest the image's registry gave `reference` (`repository@sha256:...`),
/// from the engine's record of its pushes and pulls; `None` when the engine
/// does not have the image or never exchanged it with that repository.
pub(super) async fn repo_digest(docker: &Docker, reference: &str) -> Option<String> {
    let image = ImageRef::parse(reference).ok()?;
    if let Some(digest) = image.digest() {
        return Some(format!("{}@{digest}", image.repository()));
    }
    let inspected = docker.inspect_image(reference).await.ok()?;
    let repository = familiar(&image.repository());
    inspected
        .repo_digests?
        .into_iter()
        .find(|d| ImageRef::parse(d).is_ok_and(|d| familiar(&d.repository()) == repository))
}

/// A repository as the engine shows it: Docker Hub's prefixes left out.
fn familiar(repository: &str) -> String {
    ImageRef::split(repository).familiar().to_string()
}

/// `registry:5000/team/app:tag` → (`registry:5000/team/app`, `tag`).
fn split_tag(reference: &str) -> (String, String) {
    let image = ImageRef::split(reference);
    let tag = image.tag().unwrap_or("latest").to_string();
    (image.repository(), tag)
}

/// The build context as a tar, without what `.dockerignore` excludes.
fn context_tar(dir: &Path) -> std::io::Result<Vec<u8>> {
    let ignore = DockerIgnore::read(dir);
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let rel_str = rel.to_string_lossy();
            if ALWAYS_IGNORED.iter().any(|i| rel_str == *i) {
                continue;
            }
            if entry.file_type()?.is_dir() {
                // An excluded folder may still hold a re-included file.
                if !ignore.excludes(rel) || ignore.reincludes {
                    stack.push(path);
                }
            } else if !ignore.excludes(rel) {
                crate::run::tarball::append(&mut tar, &path, rel)?;
            }
        }
    }
    tar.into_inner()
}

/// `.dockerignore`, as the engine reads it: patterns relative to the
/// context's root (`*` does not cross `/`, `**` does), each also matching
/// everything below it, `!` re-including; the last pattern that matches a
/// path decides.
struct DockerIgnore {
    set: GlobSet,
    /// For each glob of `set`: whether its pattern is a `!` re-include.
    negated: Vec<bool>,
    reincludes: bool,
}

impl DockerIgnore {
    fn read(dir: &Path) -> Self {
        let text = std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default();
        Self::parse(&text)
    }

    fn parse(text: &str) -> Self {
        let mut set = GlobSetBuilder::new();
        let mut negated = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (negate, line) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = line
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/');
            if pattern.is_empty() {
                continue;
            }
            for p in [pattern.to_string(), format!("{pattern}/**")] {
                if let Ok(g) = GlobBuilder::new(&p).literal_separator(true).build() {
                    set.add(g);
                    negated.push(negate);
                }
            }
        }
        Self {
            set: set.build().unwrap_or_else(|_| GlobSet::empty()),
            reincludes: negated.iter().any(|n| *n),
            negated,
        }
    }

    fn excludes(&self, rel: &Path) -> bool {
        self.set
            .matches(rel)
            .into_iter()
            .max()
            .is_some_and(|last| !self.negated[last])
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{DockerIgnore, context_tar, familiar, split_tag};

    #[test]
    fn dockerignore_re_includes_and_the_last_matching_pattern_decides() {
        let ignore = DockerIgnore::parse(
            "# logs\n*.log\n!keep.log\nbuild/\n!build/keep.txt\n**/*.tmp\n./secret.txt\n",
        );
        let excluded = |p: &str| ignore.excludes(Path::new(p));
        assert!(excluded("a.log"));
        assert!(!excluded("keep.log"));
        assert!(!excluded("src/a.log"), "`*` does not cross `/`");
        assert!(excluded("build/out.bin"));
        assert!(!excluded("build/keep.txt"));
        assert!(excluded("src/deep/x.tmp"));
        assert!(excluded("secret.txt"));
        assert!(!excluded("src/main.rs"));
    }

    #[test]
    fn the_context_keeps_re_included_files_inside_excluded_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::create_dir_all(p.join("build")).expect("mkdir");
        std::fs::create_dir_all(p.join(".git")).expect("mkdir");
        for f in [
            "Dockerfile",
            "a.log",
            "keep.log",
            "build/out.bin",
            "build/keep.txt",
            ".git/HEAD",
        ] {
            std::fs::write(p.join(f), "x").expect("write");
        }
        std::fs::write(
            p.join(".dockerignore"),
            "*.log\n!keep.log\nbuild\n!build/keep.txt\n",
        )
        .expect("write");
        let tar = context_tar(p).expect("tar");
        let mut names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".dockerignore", "Dockerfile", "build/keep.txt", "keep.log"]
        );
    }

    #[test]
    fn repositories_compare_as_the_engine_shows_them() {
        assert_eq!(
            split_tag("localhost:5000/chat:main-1a2b3c4").0,
            "localhost:5000/chat"
        );
        assert_eq!(split_tag("localhost:5000/chat").0, "localhost:5000/chat");
        assert_eq!(familiar("docker.io/library/node"), "node");
        assert_eq!(familiar("docker.io/team/app"), "team/app");
        assert_eq!(familiar("localhost:5000/chat"), "localhost:5000/chat");
    }
}
