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
use crate::syntax::{Item, ParseCache, ParseOptions, parse_cached};

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
        let parsed = parsed.map_or(String::new(), |n| {
            format!("{n} item{} parsed again, ", if n == 1 { "" } else { "s" })
        });
        self.note = format!(
            "{parsed}{} of {} stages checked, {} planned",
            c.checked, c.stages, c.planned
        );
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.steps.is_empty() {
            f.write_str("(")?;
            for (i, (name, took)) in self.steps.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}{name} {:.2}", took.as_secs_f64() * 1000.0)?;
            }
            f.write_str("): ")?;
        }
        f.write_str(&self.note)
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
        let mut syntax = Vec::new();
        let mut includes = Vec::new();
        let loaded = phases.time("load", || {
            crate::model::load_parsed_with(root, &mut reader(overlay), &mut |id, text| {
                let (ast, errors) = parse_cached(id, text, cache);
                includes.extend(ast.items.iter().filter_map(|item| match item {
                    Item::Setting(s) if s.key.name == "include" => {
                        Some((id, s.span.start as usize))
                    }
                    _ => None,
                }));
                let diags = errors.iter().map(|e| e.diag.clone()).collect();
                syntax.push((id, errors));
                (ast, diags)
            })
        });
        let index = phases.time("index", || Index::new(&loaded.items));
        let (mut checker, sources) = Checker::new(loaded, syntax, includes);
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
        let diff = edited.diff;
        self.sources
            .edit(file, text, diff.start, diff.old_end, diff.new_end);
        let checked = self.checker.check(&self.sources);
        phases.checked(&checked, Some(edited.parsed));
        self.diagnostics = checked.diagnostics;
        self.syntax_errors = self.checker.syntax_errors();
        self.phases = phases;
        true
    }

    /// The files whose text changed since the analysis, with their text
    /// now (open buffers first, then the disk); `None` when one cannot be
    /// read, or when an include was missing: it may be there now.
    pub(crate) fn changes(&self, overlay: &Overlay<'_>) -> Option<Vec<(FileId, String)>> {
        if self.checker.includes_missing() {
            return None;
        }
        let mut read = reader(overlay);
        let mut changes = Vec::new();
        for (id, f) in self.sources.files() {
            let text = read(&f.path).ok()?;
            if text != f.text {
                changes.push((id, text));
            }
        }
        Some(changes)
    }

    /// Marks the analysis as checked again with nothing changed.
    pub(crate) fn unchanged(&mut self) {
        self.phases = Phases {
            steps: Vec::new(),
            note: "nothing changed".into(),
        };
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
pub(crate) fn includes(
    root: &Path,
    path: &Path,
    overlay: &Overlay<'_>,
    parse: ParseOptions,
) -> bool {
    let loaded = crate::model::load_parsed_with(root, &mut reader(overlay), &mut |id, text| {
        crate::syntax::parse_with(id, text, parse)
    });
    loaded
        .sources
        .files()
        .any(|(_, f)| same_file(&f.path, path))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A pipeline with a bit of everything an edit can touch: an include,
    /// secrets, env, environments, templates, a matrix, conditions,
    /// scripts on several lines (one with an unindented line), a `finally`
    /// stage and comments.
    const BASE: &str = "pipeline \"p\"\n\ninclude \"inc.pipeline\"\n\nsecret TOKEN\n\n\
        env {\n  A = \"a\"\n  B = \"${A}-b\"\n}\n\n\
        environment prod {\n  env {\n    K = \"${secret.TOKEN}\"\n  }\n}\n\n\
        # templates\ntemplate t {\n  image \"img:${A}\"\n  env { T = \"t\" }\n}\n\n\
        stage a uses t {\n  env {\n    X = \"${B}\"\n  }\n  run \"make\"\n}\n\n\
        stage b after a uses t when branch == \"main\" {\n  matrix {\n    N = [\"1\", \"2\"]\n  }\n  run \"\"\"\n    echo ${N}\nmore\n  \"\"\"\n}\n\n\
        stage c after a, b {\n  image \"x-${A}\"\n  artifact \"out/\"\n  run \"c\"\n}\n\n\
        finally f {\n  image \"i\"\n  run \"f\"\n}\n";

    const INCLUDED: &str = "template u {\n  image \"u\"\n}\n\nstage i uses u {\n  run \"i\"\n}\n";

    /// What edits insert: pieces of syntax that make and break things.
    const PIECES: &[&str] = &[
        "",
        "x",
        " ",
        "\n",
        "{",
        "}",
        "\"",
        "\"\"\"",
        "#",
        "${A}",
        "${NOPE}",
        "${secret.TOKEN}",
        ", b",
        "after c ",
        "uses t ",
        "uses nope ",
        "stage n {\n  image \"n\"\n  run \"n\"\n}\n",
        "stage a {\n  run \"dup\"\n}\n",
        "template t {\n  image \"t2\"\n}\n",
        "env {\n  A = \"a2\"\n}\n",
        "  matrix { A = [\"m\"] }\n",
        "secret S\n",
        "include \"inc.pipeline\"\n",
        "=",
        "[",
        "1",
        "${K}",
        "${X}",
        "${B}${B}",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// After every edit, an analysis followed edit by edit has the
        /// diagnostics, index and sources of one made afresh, and those
        /// are the diagnostics `slipway check` reports. Half the edits are
        /// undone next, so that texts that check, and plan, come often.
        #[test]
        fn a_followed_edit_is_a_fresh_analysis(
            edits in prop::collection::vec(
                (0.0..1.0f64, 0usize..12, 0..PIECES.len(), any::<bool>()),
                1..10,
            )
        ) {
            let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let root = dir.path().join("main.pipeline");
            std::fs::write(dir.path().join("inc.pipeline"), INCLUDED)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut text = BASE.to_string();
            let mut cache = ParseCache::default();
            let open = |text: &str| {
                let text = text.to_string();
                let root = root.clone();
                move |p: &Path| (p == root).then(|| text.clone())
            };
            let mut followed = Analysis::new(&root, &open(&text), &mut cache);
            let mut texts = Vec::new();
            for (at, remove, piece, undo) in edits {
                let start = ((text.len() as f64) * at) as usize;
                let end = (start + remove).min(text.len());
                let mut edited = text.clone();
                edited.replace_range(start..end, PIECES[piece]);
                texts.push(edited);
                if undo {
                    texts.push(text.clone());
                }
                text = texts.last().cloned().unwrap_or_default();
            }
            for text in texts {
                let file = followed.file(&root).ok_or_else(|| TestCaseError::fail("no root"))?;
                if !followed.edit(file, text.clone()) {
                    followed = Analysis::new(&root, &open(&text), &mut cache);
                }
                let fresh = Analysis::new(&root, &open(&text), &mut ParseCache::default());
                prop_assert_eq!(&followed.diagnostics, &fresh.diagnostics, "{}", text);
                prop_assert_eq!(
                    format!("{:?}", followed.index),
                    format!("{:?}", fresh.index),
                    "{}",
                    text
                );
                prop_assert_eq!(followed.syntax_errors, fresh.syntax_errors);
                // The same text and lines.
                prop_assert_eq!(
                    format!("{:?}", followed.sources),
                    format!("{:?}", fresh.sources)
                );
                let mut checked = crate::model::check_text(&root, &text);
                crate::plan::validate_checked(&mut checked);
                prop_assert_eq!(&fresh.diagnostics, &checked.diagnostics, "{}", text);
            }
        }
    }
}
