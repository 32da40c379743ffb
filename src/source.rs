//! Source files and spans. Every Ast node and every diagnostic points into a
//! [`SourceMap`] through a [`Span`], so a diagnostic can name `file:line:col`
//! even when it comes from an included file.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub struct FileId(pub u32);

/// A byte range in one file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Self {
            file,
            start: to_u32(start),
            end: to_u32(end),
        }
    }

    /// The smallest span covering both.
    #[must_use]
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

fn to_u32(n: usize) -> u32 {
    // Files are capped at `MAX_FILE_SIZE` when they are loaded, so offsets fit.
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}..{}", self.start, self.end))
    }
}

/// Largest file slipway reads (offsets are `u32`).
pub const MAX_FILE_SIZE: usize = 256 * 1024 * 1024;

/// One loaded file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as it is opened on disk.
    pub path: PathBuf,
    /// Path as it is shown to the user (relative to where slipway runs, when possible).
    pub name: String,
    pub text: String,
    line_starts: Vec<u32>,
}

impl SourceFile {
    pub fn new(path: PathBuf, name: String, text: String) -> Self {
        // `match_indices` finds line breaks a word at a time.
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| to_u32(i + 1)))
            .collect();
        Self {
            path,
            name,
            text,
            line_starts,
        }
    }

    /// The file with its text replaced by `text`, in which bytes
    /// `start..old_end` became `start..new_end`: only the line breaks in
    /// between are looked for again.
    fn edited(mut self, text: String, start: usize, old_end: usize, new_end: usize) -> Self {
        let (start_u, old_u) = (to_u32(start), to_u32(old_end));
        // A line starts after a line break: up to `start` and after
        // `old_end`, those breaks did not change.
        let before = self.line_starts.partition_point(|&s| s <= start_u);
        let after = self.line_starts.partition_point(|&s| s <= old_u);
        let moved: Vec<u32> = self.line_starts[after..]
            .iter()
            .map(|&s| to_u32(s as usize - old_end + new_end))
            .collect();
        self.line_starts.truncate(before);
        self.line_starts.extend(
            text[start..new_end]
                .match_indices('\n')
                .map(|(i, _)| to_u32(start + i + 1)),
        );
        self.line_starts.extend(moved);
        self.text = text;
        self
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line] as usize;
        let end = (offset as usize).min(self.text.len());
        let col = self.text.get(start..end).map_or(0, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// 0-based line and UTF-16 column, as the language server protocol counts.
    pub fn line_utf16(&self, offset: u32) -> (u32, u32) {
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line] as usize;
        let end = (offset as usize).min(self.text.len());
        let col = self
            .text
            .get(start..end)
            .map_or(0, |s| s.encode_utf16().count());
        (to_u32(line), to_u32(col))
    }

    /// The byte offset of a 0-based line and UTF-16 column, the inverse of
    /// [`Self::line_utf16`]. Editors send any position: past the end of a
    /// line it is the line's end, past the last line the end of the text,
    /// inside a character (half a surrogate pair) that character's start.
    pub fn offset_utf16(&self, line: u32, col: u32) -> u32 {
        let Some(&start) = self.line_starts.get(line as usize) else {
            return to_u32(self.text.len());
        };
        let rest = self.text.get(start as usize..).unwrap_or("");
        let line_text = rest.split_inclusive('\n').next().unwrap_or("");
        let line_text = line_text.strip_suffix('\n').unwrap_or(line_text);
        let line_text = line_text.strip_suffix('\r').unwrap_or(line_text);
        let mut units = 0u32;
        for (i, c) in line_text.char_indices() {
            let next = units + to_u32(c.len_utf16());
            if next > col {
                return start + to_u32(i);
            }
            units = next;
        }
        start + to_u32(line_text.len())
    }

    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or("")
    }
}

/// Every file that one pipeline is made of: the main file first, then its includes.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId(to_u32(self.files.len() - 1))
    }

    /// Replaces `id`'s text with `text`, in which bytes `start..old_end`
    /// of the old text became `start..new_end` (the language server
    /// follows edits).
    pub(crate) fn edit(
        &mut self,
        id: FileId,
        text: String,
        start: usize,
        old_end: usize,
        new_end: usize,
    ) {
        if let Some(f) = self.files.get_mut(id.0 as usize) {
            let empty = SourceFile::new(PathBuf::new(), String::new(), String::new());
            let old = std::mem::replace(f, empty);
            *f = old.edited(text, start, old_end, new_end);
        }
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn find(&self, path: &Path) -> Option<FileId> {
        self.files
            .iter()
            .position(|f| f.path == path)
            .map(|i| FileId(to_u32(i)))
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(to_u32(i)), f))
    }

    pub fn slice(&self, span: Span) -> &str {
        self.get(span.file).slice(span)
    }

    /// `file:line:col` of a span's start.
    pub fn location(&self, span: Span) -> String {
        let file = self.get(span.file);
        let (line, col) = file.line_col(span.start);
        format!("{}:{line}:{col}", file.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let f = SourceFile::new("a".into(), "a".into(), "ab\n\u{e9}x\n".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(2), (1, 3));
        assert_eq!(f.line_col(3), (2, 1));
        // `é` is two bytes but one column.
        assert_eq!(f.line_col(5), (2, 2));
        assert_eq!(f.line_utf16(5), (1, 1));
    }

    #[test]
    fn an_edited_file_has_the_lines_of_its_new_text() {
        let old = "ab\ncd\nef\ngh\n";
        for (start, old_end, insert) in [(4, 7, "X\nY\nZ"), (0, 0, "\n"), (3, 3, ""), (2, 3, "")] {
            let mut new = old.to_string();
            new.replace_range(start..old_end, insert);
            let f = SourceFile::new("a".into(), "a".into(), old.into());
            let edited = f.edited(new.clone(), start, old_end, start + insert.len());
            let fresh = SourceFile::new("a".into(), "a".into(), new.clone());
            assert_eq!(edited.line_starts, fresh.line_starts, "{new:?}");
            assert_eq!(edited.text, new);
        }
    }

    #[test]
    fn utf16_positions_round_trip_and_clamp() {
        // `😀` is four bytes and two UTF-16 units.
        let f = SourceFile::new("a".into(), "a".into(), "a\u{1f600}b\r\nxy".into());
        assert_eq!(f.line_utf16(5), (0, 3));
        assert_eq!(f.offset_utf16(0, 3), 5);
        // Half a surrogate pair: the character's start.
        assert_eq!(f.offset_utf16(0, 2), 1);
        // Past the end of a line: before its `\r\n`.
        assert_eq!(f.offset_utf16(0, 99), 6);
        assert_eq!(f.offset_utf16(1, 1), 9);
        // Past the last line: the end.
        assert_eq!(f.offset_utf16(7, 0), 10);
    }
}
