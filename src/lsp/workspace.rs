//! The open documents and the pipelines they belong to.
//!
//! Every open document belongs to one [`Analysis`]: of the pipeline that
//! includes it (found among the `.pipeline` files in its folder and the
//! folders above), or of its own. Edits mark documents as changed; [`flush`]
//! checks again every pipeline that reads a changed document and says what
//! to publish.
//!
//! [`flush`]: Workspace::flush

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use lsp_types::{Diagnostic, PublishDiagnosticsParams, TextDocumentContentChangeEvent, Url};

use super::analysis::{self, Analysis};
use super::position::{offset, path_of, same_file, uri_of};
use crate::source::{FileId, SourceFile};
use crate::syntax::ParseOptions;

/// How far up from a document's folder to look for the pipeline that
/// includes it, and how many files to try at most.
const ROOT_SEARCH_LEVELS: usize = 4;
const ROOT_SEARCH_FILES: usize = 32;

pub(crate) struct Document {
    pub(crate) uri: Url,
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    pub(crate) version: i32,
}

#[derive(Default)]
pub(crate) struct Workspace {
    docs: Vec<Document>,
    /// The editor's workspace folders: the search for an including
    /// pipeline stops at them.
    pub(crate) folders: Vec<PathBuf>,
    analyses: Vec<Analysis>,
    /// Documents edited, opened or closed since the last flush.
    changed: Vec<PathBuf>,
    /// Files may have changed on disk (a save): check everything again.
    all_changed: bool,
    /// URIs whose last published diagnostics were not empty.
    shown: HashSet<Url>,
    /// Print how long each check takes on standard error.
    timing: bool,
    /// The items of the last parses, for parsing only what an edit changed.
    cache: crate::syntax::ParseCache,
    /// How files are parsed whole (to format them, or to find what includes
    /// what).
    pub(crate) parse: ParseOptions,
}

impl Workspace {
    pub(crate) fn new(timing: bool, parse: ParseOptions) -> Self {
        Self {
            timing,
            parse,
            ..Self::default()
        }
    }

    pub(crate) fn open(&mut self, uri: Url, text: String, version: i32) {
        let path = path_of(&uri);
        self.docs.retain(|d| d.uri != uri);
        self.changed.push(path.clone());
        self.docs.push(Document {
            uri,
            path,
            text,
            version,
        });
    }

    pub(crate) fn change(
        &mut self,
        uri: &Url,
        version: i32,
        changes: Vec<TextDocumentContentChangeEvent>,
    ) {
        let Some(doc) = self.docs.iter_mut().find(|d| d.uri == *uri) else {
            return;
        };
        for change in changes {
            match change.range {
                None => doc.text = change.text,
                // Full sync is what the server asks for; a client that sends
                // ranges anyway is followed.
                Some(r) => {
                    let file = SourceFile::new(PathBuf::new(), String::new(), doc.text.clone());
                    let start = offset(&file, r.start) as usize;
                    let end = (offset(&file, r.end) as usize).max(start);
                    doc.text.replace_range(start..end, &change.text);
                }
            }
        }
        doc.version = version;
        self.changed.push(doc.path.clone());
    }

    pub(crate) fn save(&mut self, uri: &Url, text: Option<String>) {
        if let (Some(doc), Some(text)) = (self.docs.iter_mut().find(|d| d.uri == *uri), text) {
            doc.text = text;
        }
        self.all_changed = true;
    }

    pub(crate) fn close(&mut self, uri: &Url) {
        if let Some(i) = self.docs.iter().position(|d| d.uri == *uri) {
            let doc = self.docs.remove(i);
            self.changed.push(doc.path);
        }
    }

    pub(crate) fn doc(&self, uri: &Url) -> Option<&Document> {
        self.docs.iter().find(|d| d.uri == *uri)
    }

    /// The analysis that holds the document at `uri`, and the document's id
    /// in it. Call [`Self::flush`] first for an answer about the latest text.
    pub(crate) fn analysis(&self, uri: &Url) -> Option<(&Analysis, FileId)> {
        let path = path_of(uri);
        self.analyses
            .iter()
            .find_map(|a| a.file(&path).map(|id| (a, id)))
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.all_changed || !self.changed.is_empty()
    }

    /// Checks again what changed; returns the diagnostics to publish.
    pub(crate) fn flush(&mut self) -> Vec<PublishDiagnosticsParams> {
        if !self.is_dirty() {
            return Vec::new();
        }
        let changed = std::mem::take(&mut self.changed);
        let all = std::mem::take(&mut self.all_changed);
        let docs = &self.docs;
        let overlay = |p: &Path| {
            docs.iter()
                .find(|d| d.path == p)
                .or_else(|| docs.iter().find(|d| same_file(&d.path, p)))
                .map(|d| d.text.clone())
        };
        let mut touched: Vec<PathBuf> = Vec::new();
        let before: Vec<PathBuf> = self.analyses.iter().map(|a| a.root.clone()).collect();

        for a in &mut self.analyses {
            let reads_changed = all
                || a.sources
                    .files()
                    .any(|(_, f)| changed.iter().any(|c| same_file(&f.path, c)));
            if reads_changed {
                if !follow(self.timing, a, &overlay) {
                    let next = timed(self.timing, &a.root.clone(), &overlay, &mut self.cache);
                    // The old analysis is freed off the keystroke's path.
                    let old = std::mem::replace(a, next);
                    std::thread::spawn(move || drop(old));
                }
                touched.push(a.root.clone());
            }
        }
        // Every open document in some pipeline.
        for doc in docs {
            let covered = self.analyses.iter().any(|a| a.file(&doc.path).is_some());
            if covered {
                continue;
            }
            let root = find_root(&doc.path, &self.folders, &overlay, self.parse);
            self.analyses.retain(|a| a.root != root);
            self.analyses
                .push(timed(self.timing, &root, &overlay, &mut self.cache));
            touched.push(root);
        }
        // Pipelines no open document belongs to any more.
        self.analyses
            .retain(|a| docs.iter().any(|d| a.file(&d.path).is_some()));
        let dropped = before
            .iter()
            .any(|r| !self.analyses.iter().any(|a| a.root == *r));
        self.publish(&touched, dropped)
    }

    /// What the editor should show now, for every file of the pipelines
    /// checked again, and empty lists for files no pipeline reads any more.
    fn publish(&mut self, touched: &[PathBuf], dropped: bool) -> Vec<PublishDiagnosticsParams> {
        let mut by_uri: HashMap<Url, Vec<Diagnostic>> = HashMap::new();
        let mut order: Vec<Url> = Vec::new();
        for a in self.analyses.iter().filter(|a| touched.contains(&a.root)) {
            for (id, diags) in super::diagnostics::by_file(&a.diagnostics, &a.sources) {
                let Some(uri) = uri_of(&a.sources.get(id).path) else {
                    continue;
                };
                let entry = by_uri.entry(uri.clone()).or_insert_with(|| {
                    order.push(uri);
                    Vec::new()
                });
                for d in diags {
                    // A file two pipelines include is reported once.
                    if !entry.contains(&d) {
                        entry.push(d);
                    }
                }
            }
        }
        if dropped {
            let still: HashSet<Url> = self
                .analyses
                .iter()
                .flat_map(|a| a.sources.files().filter_map(|(_, f)| uri_of(&f.path)))
                .collect();
            for uri in &self.shown {
                if !still.contains(uri) && !by_uri.contains_key(uri) {
                    by_uri.insert(uri.clone(), Vec::new());
                    order.push(uri.clone());
                }
            }
        }
        let mut out = Vec::new();
        for uri in order {
            let diagnostics = by_uri.remove(&uri).unwrap_or_default();
            if diagnostics.is_empty() {
                self.shown.remove(&uri);
            } else {
                self.shown.insert(uri.clone());
            }
            let version = self.docs.iter().find(|d| d.uri == uri).map(|d| d.version);
            out.push(PublishDiagnosticsParams {
                uri,
                diagnostics,
                version,
            });
        }
        out
    }
}

fn timed(
    timing: bool,
    root: &Path,
    overlay: &analysis::Overlay<'_>,
    cache: &mut crate::syntax::ParseCache,
) -> Analysis {
    let start = Instant::now();
    let a = Analysis::new(root, overlay, cache);
    if timing {
        super::transport::log(&format!(
            "checked `{}` in {:.2} ms {}",
            root.display(),
            start.elapsed().as_secs_f64() * 1000.0,
            a.phases
        ));
    }
    a
}

/// Brings `a` up to date with what its files read now, open buffers over
/// the disk: when one of them changed, by following that edit
/// ([`Analysis::edit`]). `false` when `a` must be loaded and checked again:
/// more than one file changed, one cannot be read, or an include was
/// missing (it may be there now).
fn follow(timing: bool, a: &mut Analysis, overlay: &analysis::Overlay<'_>) -> bool {
    let start = Instant::now();
    let Some(mut changes) = a.changes(overlay) else {
        return false;
    };
    let followed = match changes.pop() {
        None => {
            a.unchanged();
            true
        }
        Some((file, text)) => changes.is_empty() && a.edit(file, text),
    };
    if followed && timing {
        super::transport::log(&format!(
            "checked `{}` in {:.2} ms {}",
            a.root.display(),
            start.elapsed().as_secs_f64() * 1000.0,
            a.phases
        ));
    }
    followed
}

/// The pipeline `path` belongs to: the nearest `.pipeline` file, in its
/// folder or a folder above (not above a workspace folder), that includes
/// it; else `path` itself.
fn find_root(
    path: &Path,
    folders: &[PathBuf],
    overlay: &analysis::Overlay<'_>,
    parse: ParseOptions,
) -> PathBuf {
    if !path.is_absolute() {
        return path.to_path_buf();
    }
    let mut tried = 0;
    let mut dir = path.parent();
    for _ in 0..ROOT_SEARCH_LEVELS {
        let Some(d) = dir else { break };
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pipeline") && p.is_file())
            .filter(|p| !same_file(p, path))
            .collect();
        candidates.sort();
        for c in candidates {
            if tried == ROOT_SEARCH_FILES {
                return path.to_path_buf();
            }
            tried += 1;
            if analysis::includes(&c, path, overlay, parse) {
                return c;
            }
        }
        if folders.iter().any(|f| f == d) {
            break;
        }
        dir = d.parent();
    }
    path.to_path_buf()
}
