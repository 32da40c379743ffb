//! Reading the text without parsing it: where its strings and comments
//! are, and where top-level items start. For what must not depend on a
//! parse: the comments the formatter puts back, the nesting checked before
//! pest runs, the pieces the parallel and incremental parses cut, and the
//! block an editor's cursor is in.

use std::ops::Range;

/// What a piece of the text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Anything outside strings and comments. A piece of code ends after
    /// a newline, so that finding its end never reads far past it.
    Code,
    /// A string with its quotes: `"..."` ends at its closing quote, or
    /// before the end of its line when it has none (a backslash takes the
    /// byte after it, even a newline); `"""..."""` at its closing quotes.
    /// Either ends at the end of the text when it is not closed.
    Str,
    /// `#` to the end of its line, the newline excluded.
    Comment,
}

/// The text in pieces, in order, with no gaps: code, strings and comments.
pub(crate) fn segments(text: &str) -> Segments<'_> {
    Segments { text, pos: 0 }
}

pub(crate) struct Segments<'t> {
    text: &'t str,
    pos: usize,
}

impl Iterator for Segments<'_> {
    type Item = (Segment, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let len = bytes.len();
        if start >= len {
            return None;
        }
        let (kind, end) = match bytes[start] {
            b'#' => (
                Segment::Comment,
                self.text[start..].find('\n').map_or(len, |n| start + n),
            ),
            b'"' if self.text[start..].starts_with("\"\"\"") => (
                Segment::Str,
                self.text[start + 3..]
                    .find("\"\"\"")
                    .map_or(len, |n| start + 3 + n + 3),
            ),
            b'"' => {
                let mut i = start + 1;
                while i < len && !matches!(bytes[i], b'"' | b'\n') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if bytes.get(i) == Some(&b'"') {
                    i += 1;
                }
                (Segment::Str, i.min(len))
            }
            _ => (
                Segment::Code,
                bytes[start..]
                    .iter()
                    .position(|b| matches!(b, b'"' | b'#' | b'\n'))
                    .map_or(len, |n| start + n + usize::from(bytes[start + n] == b'\n')),
            ),
        };
        self.pos = end;
        Some((kind, start..end))
    }
}

/// The start of the first line after `from` that begins, unindented, with
/// a letter: where the next top-level item starts, or the text's end.
pub(crate) fn top_level_line_after(text: &str, from: usize) -> usize {
    let mut pos = from;
    while let Some(i) = text.get(pos..).and_then(|t| t.find('\n')) {
        pos += i + 1;
        if text[pos..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            return pos;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<(Segment, &str)> {
        segments(text).map(|(k, r)| (k, &text[r])).collect()
    }

    #[test]
    fn strings_and_comments_are_found() {
        use Segment::{Code, Comment, Str};
        assert_eq!(
            pieces("a \"#\\\"x\" # c \"\nb \"\"\"\n#\n\"\"\" {"),
            [
                (Code, "a "),
                (Str, "\"#\\\"x\""),
                (Code, " "),
                (Comment, "# c \""),
                (Code, "\n"),
                (Code, "b "),
                (Str, "\"\"\"\n#\n\"\"\""),
                (Code, " {"),
            ]
        );
        // Unclosed: a plain string ends before its line's end, a triple
        // string and a comment at the text's end.
        assert_eq!(
            pieces("x \"ab\n# c"),
            [(Code, "x "), (Str, "\"ab"), (Code, "\n"), (Comment, "# c")]
        );
        assert_eq!(pieces("\"\"\"ab\n"), [(Str, "\"\"\"ab\n")]);
        assert_eq!(pieces("\"a\\"), [(Str, "\"a\\")]);
        assert_eq!(pieces("\"\\é\" é"), [(Str, "\"\\é\""), (Code, " é")]);
        assert_eq!(pieces("a\n\nb"), [(Code, "a\n"), (Code, "\n"), (Code, "b")]);
        assert_eq!(pieces(""), []);
    }

    #[test]
    fn top_level_lines_start_with_a_letter() {
        let text = "a {\n  b\n}\n\n# c\nd\n";
        assert_eq!(top_level_line_after(text, 0), text.find("d\n").unwrap_or(0));
        assert_eq!(top_level_line_after(text, text.len()), text.len());
        assert_eq!(top_level_line_after(text, text.len() + 1), text.len());
    }
}
