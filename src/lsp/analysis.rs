//! One pipeline, checked: its root file and includes loaded (open buffers
//! over the disk), the names indexed, and the diagnostics `slipway check`
//! would print.

use std::path::{Path, PathBuf};

use super::index::Index;
use super::position::same_file;
use crate::diagnostic::Diag;
use crate::source::{FileId, SourceMap};
use crate::syntax::{ParseCache, parse_cached};

pub(crate) struct Analysis {
    pub(crate) root: PathBuf,
    pub(crate) sources: SourceMap,
    pub(crate) index: Index,
    pub(crate) diagnostics: Vec<Diag>,
    /// Whether a file failed to parse: its broken items are missing from
    /// the index, so a rename could not find every name.
    pub(crate) syntax_errors: bool,
    /// Where the `run` scripts are: edits inside them need no new check
    /// ([`super::script_edit`]).
    pub(crate) scripts: Vec<crate::source::Span>,
    /// How long each step took, for `SLIPWAY_LSP_TIMING`.
    pub(crate) phases: Phases,
}

#[derive(Default)]
pub(crate) struct Phases(Vec<(&'static str, std::time::Duration)>);

impl Phases {
    /// An analysis made by moving the last one's results.
    pub(crate) fn quick() -> Self {
        Phases(vec![(
            "script edit, nothing parsed or checked",
            std::time::Duration::ZERO,
        )])
    }

    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        self.0.push((name, start.elapsed()));
        out
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, took)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {:.2}", took.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// The text of an open document at a path, if one is open there.
pub(crate) type Overlay<'a> = dyn Fn(&Path) -> Option<String> + 'a;

impl Analysis {
    /// Loads and checks the pipeline at `root`. Items whose text has not
    /// changed since the last analysis are taken from `cache`, not parsed
    /// again: typing in one stage of a large pipeline parses that stage.
    pub(crate) fn new(root: &Path, overlay: &Overlay<'_>, cache: &mut ParseCache) -> Self {
        let mut phases = Phases::default();
        cache.new_round();
        let loaded = phases.time("load", || {
            crate::model::load_parsed_with(root, &mut reader(overlay), &mut |id, text| {
                parse_cached(id, text, cache)
            })
        });
        let index = phases.time("index", || Index::new(&loaded.items));
        let syntax_errors = loaded
            .diagnostics
            .iter()
            .any(|d| d.code == crate::diagnostic::Code::Syntax);
        let scripts = super::script_edit::run_strings(&loaded.items);
        let mut checked = phases.time("check", || crate::model::check(loaded));
        phases.time("validate", || crate::plan::validate_checked(&mut checked));
        // The checked model is only needed for its diagnostics; freeing it
        // is not the keystroke's business.
        let model = checked.pipeline.take();
        std::thread::spawn(move || drop(model));
        Analysis {
            root: root.to_path_buf(),
            sources: checked.sources,
            index,
            diagnostics: checked.diagnostics,
            syntax_errors,
            scripts,
            phases,
        }
    }

    /// The id of `path` among the loaded files.
    pub(crate) fn file(&self, path: &Path) -> Option<FileId> {
        self.sources.find(path).or_else(|| {
            self.sources
                .files()
                .find(|(_, f)| same_file(&f.path, path))
                .map(|(id, _)| id)
        })
    }
}

/// Reads open buffers first, then the disk.
pub(crate) fn reader<'a>(
    overlay: &'a Overlay<'a>,
) -> impl FnMut(&Path) -> std::io::Result<String> + 'a {
    move |p: &Path| match overlay(p) {
        Some(text) => Ok(text),
        None => crate::model::read_source(p),
    }
}

/// Whether loading `root` reads `path`: whether `root` includes it.
pub(crate) fn includes(root: &Path, path: &Path, overlay: &Overlay<'_>) -> bool {
    let loaded = crate::model::load_with(root, &mut reader(overlay));
    loaded
        .sources
        .files()
        .any(|(_, f)| same_file(&f.path, path))
}
