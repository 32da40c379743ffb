//! One pipeline, checked: its root file and includes loaded (open buffers
//! over the disk), the names indexed, and the diagnostics `slipway check`
//! would print.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::checker::{Checked, Checker};
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
    /// How long each step took, for `SLIPWAY_LSP_TIMING`.
    pub(crate) phases: Phases,
    /// The check, kept for the next edit.
    checker: Checker,
}

/// The steps of an analysis, each with how long it took, and how much of
/// the pipeline it went through.
#[derive(Default)]
pub(crate) struct Phases {
    steps: Vec<(&'static str, Duration)>,
    note: String,
}

impl Phases {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.steps.push((name, start.elapsed()));
        out
    }

    fn checked(&mut self, c: &Checked, parsed: Option<usize>) {
        self.steps.push(("check", c.check_time));
        self.steps.push(("validate", c.validate_time));
        let parsed = parsed.map_or(String::new(), |n| format!("{n} items parsed, "));
        self.note = format!(
            "{parsed}{} of {} stages checked, {} planned",
            c.checked, c.stages, c.planned
        );
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(")?;
        for (i, (name, took)) in self.steps.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {:.2}", took.as_secs_f64() * 1000.0)?;
        }
        f.write_str(")")?;
        if !self.note.is_empty() {
            write!(f, ": {}", self.note)?;
        }
        Ok(())
    }
}

/// The text of an open document at a path, if one is open there.
pub(crate) type Overlay<'a> = dyn Fn(&Path) -> Option<String> + 'a;

impl Analysis {
    /// Loads and checks the pipeline at `root`. Items whose text has not
    /// changed since the last analysis are taken from `cache`, not parsed
    /// again.
    pub(crate) fn new(root: &Path, overlay: &Overlay<'_>, cache: &mut ParseCache) -> Self {
        let mut phases = Phases::default();
        cache.new_round();
        let loaded = phases.time("load", || {
            crate::model::load_parsed_with(root, &mut reader(overlay), &mut |id, text| {
                parse_cached(id, text, cache)
            })
        });
        let index = phases.time("index", || Index::new(&loaded.items));
        let (mut checker, sources) = Checker::new(loaded);
        let checked = checker.check(&sources);
        phases.checked(&checked, None);
        Analysis {
            root: root.to_path_buf(),
            sources,
            index,
            diagnostics: checked.diagnostics,
            syntax_errors: checker.syntax_errors(),
            phases,
            checker,
        }
    }

    /// Follows an edit of `file`, whose text is now `text`, parsing again
    /// only the pieces it touched and checking again only what depends on
    /// them ([`Checker::edit`]). `false` when the pipeline must be loaded
    /// again instead; the analysis is then not to be used.
    pub(crate) fn edit(&mut self, file: FileId, text: String) -> bool {
        let mut phases = Phases::default();
        let old = &self.sources.get(file).text;
        if *old == text {
            return true;
        }
        let Some(edited) = phases.time("reparse", || self.checker.edit(file, old, &text)) else {
            return false;
        };
        let index = phases.time("index", || {
            let decls = self.checker.decls(edited.stages.start, edited.added);
            std::mem::take(&mut self.index).edited(
                &edited.region,
                edited.stages.clone(),
                decls,
                self.checker.settings(),
            )
        });
        let Some(index) = index else {
            return false;
        };
        self.index = index;
        self.sources.set_text(file, text);
        let checked = self.checker.check(&self.sources);
        phases.checked(&checked, Some(edited.parsed));
        self.diagnostics = checked.diagnostics;
        self.syntax_errors = self.checker.syntax_errors();
        self.phases = phases;
        true
    }

    /// Whether every file but `file` still reads as it did: open buffers
    /// first, then the disk.
    pub(crate) fn others_unchanged(&self, file: FileId, overlay: &Overlay<'_>) -> bool {
        let mut read = reader(overlay);
        self.sources
            .files()
            .filter(|(id, _)| *id != file)
            .all(|(_, f)| read(&f.path).is_ok_and(|text| text == f.text))
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
