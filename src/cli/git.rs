//! The git context, from the `git` command: what CI systems and developers
//! already have, and the same answers they see.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::plan::GitContext;

pub(crate) struct Repo {
    dir: PathBuf,
}

impl Repo {
    /// The repository containing `dir`, if any (and if git is installed).
    pub(crate) fn at(dir: &Path) -> Option<Repo> {
        let repo = Repo {
            dir: dir.to_path_buf(),
        };
        (repo.git(&["rev-parse", "--is-inside-work-tree"])?.trim() == "true").then_some(repo)
    }

    fn git(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn line(&self, args: &[&str]) -> Option<String> {
        self.git(args)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Whether tracked files differ from the commit (as `git describe
    /// --dirty` says; untracked files do not count).
    pub(crate) fn dirty(&self) -> Option<bool> {
        self.git(&["status", "--porcelain", "--untracked-files=no"])
            .map(|s| !s.trim().is_empty())
    }

    /// `path` relative to the repository's root.
    pub(crate) fn relative(&self, path: &Path) -> Option<String> {
        let root = PathBuf::from(self.line(&["rev-parse", "--show-toplevel"])?);
        let root = root.canonicalize().unwrap_or(root);
        let path = path.canonicalize().ok()?;
        Some(path.strip_prefix(root).ok()?.to_string_lossy().into_owned())
    }

    pub(crate) fn has_revision(&self, rev: &str) -> bool {
        self.git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])
        .is_some()
    }

    pub(crate) fn context(&self) -> GitContext {
        let sha = self.line(&["rev-parse", "HEAD"]);
        let short_sha = self.line(&["rev-parse", "--short=7", "HEAD"]);
        // A detached HEAD (CI checkouts) has no branch: CI systems say which.
        let branch = self
            .line(&["symbolic-ref", "--short", "-q", "HEAD"])
            .or_else(ci_branch);
        let tag = self.line(&["describe", "--tags", "--exact-match", "HEAD"]);
        let source = self.line(&["remote", "get-url", "origin"]);
        GitContext {
            sha,
            short_sha,
            branch,
            tag,
            source,
        }
    }

    /// Paths changed since `base` (default: by the last commit), plus
    /// uncommitted and untracked ones, relative to the pipeline's folder (so
    /// `changed("docs/**")` means that folder's `docs`). `None` when git
    /// cannot say.
    pub(crate) fn changed(&self, base: Option<&str>) -> Option<Vec<String>> {
        let range = match base {
            Some(b) => format!("{b}...HEAD"),
            None => "HEAD~1..HEAD".into(),
        };
        let committed = self.git(&["diff", "--name-only", "--relative", "--no-renames", &range]);
        let committed = match (committed, base) {
            (Some(c), _) => c,
            // A first commit has no parent: everything in it changed. A
            // shallow clone's missing parent says nothing, though.
            (None, None)
                if self
                    .line(&["rev-parse", "--is-shallow-repository"])
                    .as_deref()
                    == Some("false") =>
            {
                self.git(&["ls-tree", "-r", "--name-only", "HEAD"])?
            }
            (None, _) => return None,
        };
        let modified = self
            .git(&["diff", "--name-only", "--relative", "--no-renames", "HEAD"])
            .unwrap_or_default();
        let untracked = self
            .git(&["ls-files", "--others", "--exclude-standard"])
            .unwrap_or_default();
        let mut paths: Vec<String> = [committed, modified, untracked]
            .iter()
            .flat_map(|s| s.lines())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        paths.sort();
        paths.dedup();
        Some(paths)
    }
}

/// The context CI systems give in their environment, for builds outside a
/// git checkout (an exported tarball, a container without `.git`).
pub(crate) fn ci_context() -> GitContext {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
    };
    let sha = var(&["GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT"]);
    let github_tag = (var(&["GITHUB_REF_TYPE"]).as_deref() == Some("tag"))
        .then(|| var(&["GITHUB_REF_NAME"]))
        .flatten();
    let tag = var(&["CI_COMMIT_TAG"]).or(github_tag);
    GitContext {
        short_sha: sha.as_ref().map(|s| s.chars().take(7).collect()),
        sha,
        branch: if tag.is_some() { None } else { ci_branch() },
        tag,
        source: var(&["CI_PROJECT_URL"]).or_else(|| {
            Some(format!(
                "{}/{}",
                var(&["GITHUB_SERVER_URL"])?,
                var(&["GITHUB_REPOSITORY"])?
            ))
        }),
    }
}

fn ci_branch() -> Option<String> {
    [
        "GITHUB_HEAD_REF",
        "GITHUB_REF_NAME",
        "CI_COMMIT_BRANCH",
        "CI_COMMIT_REF_NAME",
        "BRANCH_NAME",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Who runs slipway, for a release's record: the CI job's URL from the
/// variables CI systems set, else `user@host`.
pub(crate) fn who() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|s| !s.is_empty());
    let github = || {
        Some(format!(
            "{}/{}/actions/runs/{}",
            var("GITHUB_SERVER_URL")?,
            var("GITHUB_REPOSITORY")?,
            var("GITHUB_RUN_ID")?
        ))
    };
    let azure = || {
        Some(format!(
            "{}{}/_build/results?buildId={}",
            var("SYSTEM_COLLECTIONURI")?,
            var("SYSTEM_TEAMPROJECT")?,
            var("BUILD_BUILDID")?
        ))
    };
    let job = var("CI_JOB_URL") // GitLab
        .or_else(github)
        .or_else(|| var("BUILDKITE_BUILD_URL"))
        .or_else(|| var("CIRCLE_BUILD_URL"))
        .or_else(|| var("TRAVIS_JOB_WEB_URL"))
        .or_else(|| var("DRONE_BUILD_LINK"))
        .or_else(azure)
        .or_else(|| var("BUILD_URL")); // Jenkins, and others after it
    if job.is_some() {
        return job;
    }
    let user = var("USER").or_else(|| var("LOGNAME")).or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
    })?;
    let host = nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    Some(format!("{user}@{host}"))
}
