//! What an edit changed in a file, and where the places after it went.
//!
//! The editor sends the whole text on every change; what changed is what
//! lies between the longest common start and the longest common end of the
//! old text and the new ([`Diff`]). The checker parses again from the item
//! before that place until parsing is back in step with the old parse: the
//! [`Region`] it parsed again. Whatever lies before the region stays where
//! it is; whatever lies after it moves by the edit's length.

use crate::diagnostic::Diag;
use crate::source::{FileId, Span};

/// Bytes `start..old_end` of the old text became `start..new_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Diff {
    pub(crate) start: usize,
    pub(crate) old_end: usize,
    pub(crate) new_end: usize,
}

impl Diff {
    /// What changed from `old` to `new`; `None` when nothing did.
    pub(crate) fn of(old: &str, new: &str) -> Option<Diff> {
        let (a, b) = (old.as_bytes(), new.as_bytes());
        let prefix = common_prefix(a, b);
        if prefix == a.len() && prefix == b.len() {
            return None;
        }
        let suffix = common_suffix(&a[prefix..], &b[prefix..]);
        Some(Diff {
            start: prefix,
            old_end: a.len() - suffix,
            new_end: b.len() - suffix,
        })
    }
}

/// Bytes `start..old_end` of `file` were parsed again as `start..new_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) file: FileId,
    pub(crate) start: usize,
    pub(crate) old_end: usize,
    pub(crate) new_end: usize,
}

impl Region {
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
        d.primary
            .iter()
            .chain(&d.secondary)
            .all(|l| self.moved(l.span).is_some())
    }

    /// Moves every place `d` points at; `false` when one touches the region.
    pub(crate) fn move_diag(&self, d: &mut Diag) -> bool {
        d.primary.iter_mut().all(|l| self.move_span(&mut l.span))
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

    #[test]
    fn a_diff_is_what_lies_between_the_common_ends() {
        let old = "stage a {\n  run \"x\"\n}\n";
        assert_eq!(Diff::of(old, old), None);
        let diff = |new: &str| Diff::of(old, new).map(|d| (d.start, d.old_end, d.new_end));
        assert_eq!(diff(&old.replace("\"x\"", "\"xyz\"")), Some((18, 18, 20)));
        assert_eq!(diff(&old.replace("x", "")), Some((17, 18, 17)));
        // Where repeated text gives a choice, the first place that explains
        // the change.
        assert_eq!(diff(&old.replace("\n}", "\n\n}")), Some((20, 20, 21)));
        assert_eq!(diff(""), Some((0, old.len(), 0)));
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
