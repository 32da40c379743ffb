//! Where an edit changed a file, in whole top-level pieces, and where the
//! places after it went.
//!
//! The editor sends the whole text on every change; what changed is what
//! lies between the longest common start and the longest common end of the
//! old text and the new. That place is widened to whole pieces, cut as the
//! incremental parse cuts a file ([`crate::syntax::parse_cached`]): from the
//! last top-level line before it to the first after it. Those two lines are
//! top-level lines in the new text too, since the edit touched neither them
//! nor the line breaks before them, so the pieces outside the region are
//! the same pieces, with the same syntax, moved by the edit's length.

use crate::diagnostic::Diag;
use crate::source::{FileId, Span};
use crate::syntax::{piece_after, piece_before};

/// Bytes `start..old_end` of `file` became `start..new_end`: whole pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) file: FileId,
    pub(crate) start: usize,
    pub(crate) old_end: usize,
    pub(crate) new_end: usize,
}

impl Region {
    /// The pieces that changed when `file`'s text went from `old` to `new`;
    /// `None` when it did not change.
    pub(crate) fn of(file: FileId, old: &str, new: &str) -> Option<Region> {
        let (a, b) = (old.as_bytes(), new.as_bytes());
        let prefix = common_prefix(a, b);
        if prefix == a.len() && prefix == b.len() {
            return None;
        }
        let room = a.len().min(b.len()) - prefix;
        let suffix = common_suffix(&a[prefix..], &b[prefix..]).min(room);
        let start = piece_before(old, prefix);
        let old_end = piece_after(old, a.len() - suffix);
        Some(Region {
            file,
            start,
            old_end,
            new_end: old_end + b.len() - a.len(),
        })
    }

    /// Where `span` is after the edit: the same before the region, moved
    /// by the edit's length after it; `None` when it touches the region.
    pub(crate) fn moved(&self, span: Span) -> Option<Span> {
        let (start, end) = (span.start as usize, span.end as usize);
        if span.file != self.file || end <= self.start {
            return Some(span);
        }
        if start < self.old_end {
            return None;
        }
        let by = |x: usize| u32::try_from(x - self.old_end + self.new_end).ok();
        Some(Span {
            file: span.file,
            start: by(start)?,
            end: by(end)?,
        })
    }

    /// Moves `span`; `false` when it touches the region (then it is left).
    pub(crate) fn move_span(&self, span: &mut Span) -> bool {
        match self.moved(*span) {
            Some(moved) => {
                *span = moved;
                true
            }
            None => false,
        }
    }

    /// Whether every place `d` points at is outside the region.
    pub(crate) fn fits(&self, d: &Diag) -> bool {
        std::iter::once(&d.primary)
            .chain(&d.secondary)
            .all(|l| self.moved(l.span).is_some())
    }

    /// Moves every place `d` points at; `false` when one touches the region.
    pub(crate) fn move_diag(&self, d: &mut Diag) -> bool {
        self.move_span(&mut d.primary.span)
            && d.secondary.iter_mut().all(|l| self.move_span(&mut l.span))
    }
}

/// How many bytes `a` and `b` have in common at their start.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 128;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// How many bytes `a` and `b` have in common at their end.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 128;
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut i = 0;
    while i + BLOCK <= n && a[n - i - BLOCK..n - i] == b[n - i - BLOCK..n - i] {
        i += BLOCK;
    }
    while i < n && a[n - i - 1] == b[n - i - 1] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str =
        "pipeline \"p\"\n\nstage a {\n  run \"x\"\n}\n\nstage b after a {\n  run \"y\"\n}\n";

    fn region(new: &str) -> Option<(usize, usize, usize)> {
        Region::of(FileId(0), OLD, new).map(|r| (r.start, r.old_end, r.new_end))
    }

    #[test]
    fn an_edit_is_widened_to_whole_pieces() {
        let a = OLD.find("stage a").unwrap_or(0);
        let b = OLD.find("stage b").unwrap_or(0);
        assert_eq!(region(OLD), None);
        // Inside `stage a`: that piece.
        let new = OLD.replace("\"x\"", "\"xyz\"");
        assert_eq!(region(&new), Some((a, b, b + 2)));
        // At the start of `stage b`'s line: the line may stop being a
        // top-level one, so the piece before is in too.
        let new = OLD.replace("stage b", " stage b");
        assert_eq!(region(&new), Some((a, OLD.len(), OLD.len() + 1)));
        // At the very start.
        let new = format!("# hi\n{OLD}");
        assert_eq!(region(&new), Some((0, a, a + 5)));
        // Where the change goes is the first place that explains it: here
        // a line break before `stage b`, which may end its line.
        let new = OLD.replace("\n\nstage b", "\n\n\nstage b");
        assert_eq!(region(&new), Some((a, OLD.len(), OLD.len() + 1)));
    }

    #[test]
    fn spans_before_stay_after_move_inside_refuse() {
        let r = Region {
            file: FileId(0),
            start: 10,
            old_end: 20,
            new_end: 25,
        };
        let span = |start, end| Span::new(FileId(0), start, end);
        assert_eq!(r.moved(span(2, 10)), Some(span(2, 10)));
        assert_eq!(r.moved(span(20, 22)), Some(span(25, 27)));
        assert_eq!(r.moved(span(9, 11)), None);
        assert_eq!(r.moved(span(19, 30)), None);
        let other = Span::new(FileId(1), 12, 14);
        assert_eq!(r.moved(other), Some(other));
    }

    #[test]
    fn common_ends_are_found_across_blocks() {
        let a = "x".repeat(1000) + "abc" + &"y".repeat(300);
        let b = "x".repeat(1000) + "aXbc" + &"y".repeat(300);
        assert_eq!(common_prefix(a.as_bytes(), b.as_bytes()), 1001);
        assert_eq!(common_suffix(a.as_bytes(), b.as_bytes()), 302);
    }
}
