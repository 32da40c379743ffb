//! Reading a pipeline file and its `include`s into one list of items.

use std::collections::HashSet;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::diagnostic::{Code, Diag};
use crate::source::{FileId, MAX_FILE_SIZE, SourceFile, SourceMap, Span};
use crate::syntax::{self, Item, Value};

/// A main file and its includes, parsed.
#[derive(Debug)]
pub struct Loaded {
    pub sources: SourceMap,
    /// Top-level items in order, each include's items where it is included.
    /// `include` items themselves are consumed here.
    pub items: Vec<(FileId, Item)>,
    pub diagnostics: Vec<Diag>,
    pub root: FileId,
    /// Stages and templates that failed to parse, by name.
    pub unparsed: HashSet<String>,
}

/// Loads `path` and its includes from disk. Unreadable includes are
/// diagnostics; an unreadable main file is an error.
pub fn load(path: &Path) -> Loaded {
    load_with(path, &mut |p: &Path| read_source(p))
}

/// Reads a source file: a regular file, at most [`MAX_FILE_SIZE`] bytes.
/// Devices and pipes (`include "/dev/zero"`) would never end.
pub fn read_source(path: &Path) -> io::Result<String> {
    use std::io::Read as _;
    // Looked at before opening: opening a FIFO blocks until a writer comes.
    if !std::fs::metadata(path)?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_FILE_SIZE as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > MAX_FILE_SIZE {
        return Err(io::Error::other(format!(
            "file is larger than {} MiB",
            MAX_FILE_SIZE >> 20
        )));
    }
    Ok(text)
}

/// Loads with a custom reader (the language server reads unsaved buffers).
/// When the main file cannot be read it is loaded as empty, with an error.
pub fn load_with(path: &Path, read: &mut dyn FnMut(&Path) -> io::Result<String>) -> Loaded {
    load_parsed_with(path, read, &mut syntax::parse)
}

/// How a file's text becomes its syntax tree: [`syntax::parse`], or a parse
/// that reuses the unchanged items of the last one (the language server's).
pub(crate) type ParseFn<'p> = dyn FnMut(FileId, &str) -> (syntax::Ast, Vec<Diag>) + 'p;

/// [`load_with`], parsing with `parse`.
pub(crate) fn load_parsed_with(
    path: &Path,
    read: &mut dyn FnMut(&Path) -> io::Result<String>,
    parse: &mut ParseFn<'_>,
) -> Loaded {
    let mut loader = Loader {
        sources: SourceMap::default(),
        items: Vec::new(),
        diagnostics: Vec::new(),
        stack: Vec::new(),
        loaded: HashSet::new(),
        unparsed: HashSet::new(),
        read,
        parse,
    };
    let name = display_name(path);
    let text = match (loader.read)(path) {
        Ok(t) => t,
        Err(e) => {
            let root = loader.sources.add(SourceFile::new(
                path.to_path_buf(),
                name.clone(),
                String::new(),
            ));
            loader.diagnostics.push(
                Diag::error(
                    Code::MissingInclude,
                    Span::new(root, 0, 0),
                    format!("cannot read `{name}`: {e}"),
                )
                .help("pass the path of a `.pipeline` file"),
            );
            return loader.finish(root);
        }
    };
    let root = loader.add_file(path, name, text, None);
    loader.finish(root)
}

struct Loader<'r, 'p> {
    sources: SourceMap,
    items: Vec<(FileId, Item)>,
    diagnostics: Vec<Diag>,
    /// Files being loaded, outermost first, with the include that led to
    /// each and the items still to take from it. A stack, not recursion, so
    /// that deep include chains cannot overflow.
    stack: Vec<Frame>,
    /// The identity of every loaded file.
    loaded: HashSet<PathBuf>,
    unparsed: HashSet<String>,
    read: &'r mut dyn FnMut(&Path) -> io::Result<String>,
    parse: &'r mut ParseFn<'p>,
}

struct Frame {
    id: FileId,
    key: PathBuf,
    via: Option<Span>,
    items: std::vec::IntoIter<Item>,
}

impl Loader<'_, '_> {
    fn finish(self, root: FileId) -> Loaded {
        Loaded {
            sources: self.sources,
            items: self.items,
            diagnostics: self.diagnostics,
            root,
            unparsed: self.unparsed,
        }
    }

    /// Adds a file, then takes items depth-first: each include's items go
    /// where the include is.
    fn add_file(&mut self, path: &Path, name: String, text: String, via: Option<Span>) -> FileId {
        let root = self.push_file(path, name, text, via);
        while let Some(frame) = self.stack.last_mut() {
            let id = frame.id;
            match frame.items.next() {
                None => {
                    self.stack.pop();
                }
                Some(item) => match include_target(&item) {
                    Some(target) => self.include(id, target),
                    None => self.items.push((id, item)),
                },
            }
        }
        root
    }

    fn push_file(&mut self, path: &Path, name: String, text: String, via: Option<Span>) -> FileId {
        let key = identity(path);
        let id = self
            .sources
            .add(SourceFile::new(path.to_path_buf(), name, text));
        self.loaded.insert(key.clone());
        let (ast, diags) = (self.parse)(id, &self.sources.get(id).text);
        self.diagnostics.extend(diags);
        self.unparsed.extend(ast.unparsed);
        self.stack.push(Frame {
            id,
            key,
            via,
            items: ast.items.into_iter(),
        });
        id
    }

    fn include(&mut self, from: FileId, target: Result<(String, Span), Span>) {
        let (rel, span) = match target {
            Ok(t) => t,
            Err(span) => {
                self.diagnostics.push(
                    Diag::error(Code::BadValue, span, "`include` takes one file path")
                        .label("expected a string")
                        .help("write `include \"ci/common.pipeline\"`"),
                );
                return;
            }
        };
        let including = self.sources.get(from);
        let dir = including
            .path
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let shown_dir = Path::new(&including.name)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let path = normalize(&dir.join(&rel));
        let name = normalize(&shown_dir.join(&rel)).display().to_string();
        let key = identity(&path);

        if let Some(pos) = self.stack.iter().position(|f| f.key == key) {
            let chain: Vec<String> = self.stack[pos..]
                .iter()
                .map(|f| format!("`{}`", self.sources.get(f.id).name))
                .chain(std::iter::once(format!("`{name}`")))
                .collect();
            let mut d = Diag::error(
                Code::IncludeCycle,
                span,
                if pos + 1 == self.stack.len() {
                    format!("`{name}` includes itself")
                } else {
                    format!("include cycle: {}", chain.join(" → "))
                },
            )
            .label("included again here")
            .help("remove one of these includes");
            for at in self.stack[pos + 1..].iter().filter_map(|f| f.via) {
                d = d.with(at, "included here");
            }
            self.diagnostics.push(d);
            return;
        }
        // Included twice along different paths: its items are already in.
        if self.loaded.contains(&key) {
            return;
        }
        match (self.read)(&path) {
            Ok(text) => {
                self.push_file(&path, name, text, Some(span));
            }
            Err(e) => {
                let why = if e.kind() == io::ErrorKind::NotFound {
                    "no such file".to_string()
                } else {
                    e.to_string()
                };
                self.diagnostics.push(
                    Diag::error(
                        Code::MissingInclude,
                        span,
                        format!("cannot include `{name}`: {why}"),
                    )
                    .label("this file")
                    .help(format!(
                        "include paths are relative to the including file's folder, `{}`",
                        if shown_dir.as_os_str().is_empty() {
                            ".".to_string()
                        } else {
                            shown_dir.display().to_string()
                        }
                    )),
                );
            }
        }
    }
}

/// `Some` for an `include` item: its path, or the span to blame.
fn include_target(item: &Item) -> Option<Result<(String, Span), Span>> {
    let Item::Setting(s) = item else { return None };
    if s.key.name != "include" {
        return None;
    }
    Some(match (s.args.as_slice(), &s.assign, &s.block) {
        ([Value::Str(path)], None, None) if !path.triple => {
            let mut ignored = Vec::new();
            let pieces = crate::syntax::strings::value_pieces(path, &mut ignored);
            match pieces.as_slice() {
                [crate::syntax::strings::Piece::Lit(p)] if ignored.is_empty() => {
                    Ok((p.clone(), path.span))
                }
                _ => Err(path.span),
            }
        }
        _ => Err(s.span),
    })
}

/// The same file, however it was reached.
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| normalize(path))
}

/// Removes `.` and resolves `..` lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The path as the user should see it: relative to the working directory
/// when it is under it.
pub fn display_name(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        return normalize(path).display().to_string();
    };
    match cwd.and_then(|c| abs.strip_prefix(c).ok().map(Path::to_path_buf)) {
        Some(rel) => rel.display().to_string(),
        None => abs.display().to_string(),
    }
}
