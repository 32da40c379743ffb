//! Byte offsets and spans ↔ the protocol's positions (0-based lines,
//! UTF-16 columns), and paths ↔ URIs.

use std::path::{Path, PathBuf};

use lsp_types::{Position, Range, Url};

use crate::source::{SourceFile, SourceMap, Span};

pub(crate) fn position(file: &SourceFile, offset: u32) -> Position {
    let (line, character) = file.line_utf16(offset);
    Position { line, character }
}

pub(crate) fn range(file: &SourceFile, span: Span) -> Range {
    let start = span.start.min(span.end);
    Range {
        start: position(file, start),
        end: position(file, span.end.max(start)),
    }
}

/// The byte offset of a position, clamped into the text.
pub(crate) fn offset(file: &SourceFile, pos: Position) -> u32 {
    file.offset_utf16(pos.line, pos.character)
}

/// The range of a whole text, for edits that replace it.
pub(crate) fn whole(text: &str) -> Range {
    let line = u32::try_from(text.matches('\n').count()).unwrap_or(u32::MAX);
    let last = text.rsplit('\n').next().unwrap_or("");
    let character = u32::try_from(last.encode_utf16().count()).unwrap_or(u32::MAX);
    Range {
        start: Position::new(0, 0),
        end: Position::new(line, character),
    }
}

/// The path a document is loaded from. A URI that is not a file (an
/// unsaved `untitled:` buffer) keeps its text as its path: it is read from
/// the buffer, and its includes cannot be found.
pub(crate) fn path_of(uri: &Url) -> PathBuf {
    if uri.scheme() == "file" {
        if let Ok(p) = uri.to_file_path() {
            return p;
        }
    }
    PathBuf::from(uri.as_str())
}

/// The inverse of [`path_of`].
pub(crate) fn uri_of(path: &Path) -> Option<Url> {
    if path.is_absolute() {
        Url::from_file_path(path).ok()
    } else {
        Url::parse(path.to_str()?).ok()
    }
}

/// Whether two paths name the same file: equal, or equal once symbolic
/// links are resolved.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
}

/// A location in a loaded file, when the file has a URI.
pub(crate) fn location(sources: &SourceMap, span: Span) -> Option<lsp_types::Location> {
    let file = sources.get(span.file);
    Some(lsp_types::Location {
        uri: uri_of(&file.path)?,
        range: range(file, span),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_ends_after_the_last_character_in_utf16() {
        assert_eq!(whole("a\nb\u{1f600}").end, Position::new(1, 3));
        assert_eq!(whole("a\n").end, Position::new(1, 0));
        assert_eq!(whole("").end, Position::new(0, 0));
    }

    #[test]
    fn paths_and_uris_round_trip() {
        let uri = Url::parse("file:///tmp/a%20b/x.pipeline").expect("uri");
        let path = path_of(&uri);
        assert_eq!(path, PathBuf::from("/tmp/a b/x.pipeline"));
        assert_eq!(uri_of(&path), Some(uri));
        let untitled = Url::parse("untitled:Untitled-1").expect("uri");
        assert_eq!(uri_of(&path_of(&untitled)), Some(untitled));
    }
}
