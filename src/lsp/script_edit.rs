//! The common keystroke in a pipeline: typing inside a `run` script. The
//! checker never reads a script's text (slipway does not interpolate
//! scripts; the shell does), and no name, setting or structure can change
//! inside a string, so such an edit changes neither what `slipway check`
//! reports nor what the index knows, only where: everything after the edit
//! moves by its length. Recognising it makes a keystroke in a 1,000-stage
//! file cost a text comparison instead of a parse and a check.
//!
//! The test is strict; anything else takes the full way:
//! - one open document changed, in one place, and its pipeline had no
//!   syntax error;
//! - the old and the new text of that place lie strictly inside the same
//!   `run` string, and neither has (nor touches) a quote, backslash, `$`,
//!   brace, `#` or line break: nothing that could end the string, start an
//!   interpolation, an escape or a comment, or change a triple-quoted
//!   script's indentation;
//! - no diagnostic or indexed name overlaps the place (spans that contain
//!   it, like the stage's, grow with it).

use crate::diagnostic::Diag;
use crate::source::{FileId, Span};
use crate::syntax::{Block, Item, Setting, Value};

use super::analysis::Analysis;

/// One edit of one file: bytes `start..old_end` became `start..new_end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Edit {
    pub(crate) file: FileId,
    pub(crate) start: usize,
    pub(crate) old_end: usize,
    pub(crate) new_end: usize,
}

impl Edit {
    /// Where `span` is after the edit: unchanged before it, moved after
    /// it, grown when it contains it; `None` when it overlaps it otherwise.
    pub(crate) fn shift(&self, span: Span) -> Option<Span> {
        if span.file != self.file {
            return Some(span);
        }
        let (start, end) = (span.start as usize, span.end as usize);
        let delta = |x: usize| -> Option<u32> {
            u32::try_from(x + self.new_end)
                .ok()?
                .checked_sub(u32::try_from(self.old_end).ok()?)
        };
        if end <= self.start {
            return Some(span);
        }
        if start >= self.old_end && start > self.start {
            return Some(Span {
                file: span.file,
                start: delta(start)?,
                end: delta(end)?,
            });
        }
        if start < self.start && end > self.old_end {
            return Some(Span {
                file: span.file,
                start: span.start,
                end: delta(end)?,
            });
        }
        None
    }
}

/// The analysis of `previous`'s pipeline after `file`'s text became
/// `text`, when that is an edit inside one `run` script; `None` otherwise.
pub(crate) fn quick(previous: &Analysis, file: FileId, text: &str) -> Option<Analysis> {
    if previous.syntax_errors {
        return None;
    }
    let old_text = previous.sources.get(file).text.as_str();
    let (old_bytes, new_bytes) = (old_text.as_bytes(), text.as_bytes());
    let prefix = old_bytes
        .iter()
        .zip(new_bytes)
        .take_while(|(a, b)| a == b)
        .count();
    let room = old_bytes.len().min(new_bytes.len()) - prefix;
    let suffix = old_bytes
        .iter()
        .rev()
        .zip(new_bytes.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    let edit = Edit {
        file,
        start: prefix,
        old_end: old_bytes.len() - suffix,
        new_end: new_bytes.len() - suffix,
    };
    if edit.old_end == edit.start && edit.new_end == edit.start {
        return None;
    }
    let harmless = |b: &[u8]| {
        !b.iter()
            .any(|c| matches!(c, b'"' | b'\\' | b'$' | b'{' | b'}' | b'#' | b'\n' | b'\r'))
    };
    if !harmless(&old_bytes[edit.start..edit.old_end])
        || !harmless(&new_bytes[edit.start..edit.new_end])
    {
        return None;
    }
    // Nor may the edit join its neighbours into `${` or an escape.
    let special = |b: Option<&u8>| matches!(b, Some(b'$' | b'{' | b'}' | b'\\'));
    if edit
        .start
        .checked_sub(1)
        .is_some_and(|i| special(old_bytes.get(i)))
        || special(old_bytes.get(edit.old_end))
    {
        return None;
    }
    // Strictly between the quotes of one script.
    let inside = previous.scripts.iter().any(|s| {
        s.file == file && (s.start as usize) < edit.start && edit.old_end < s.end as usize
    });
    if !inside {
        return None;
    }
    let mut diagnostics: Vec<Diag> = Vec::with_capacity(previous.diagnostics.len());
    for d in &previous.diagnostics {
        let mut d = d.clone();
        d.primary.span = edit.shift(d.primary.span)?;
        for label in &mut d.secondary {
            label.span = edit.shift(label.span)?;
        }
        diagnostics.push(d);
    }
    let index = previous.index.shifted(&edit)?;
    let scripts = previous
        .scripts
        .iter()
        .map(|s| edit.shift(*s))
        .collect::<Option<Vec<_>>>()?;
    Some(Analysis {
        root: previous.root.clone(),
        sources: previous.sources.with_text(file, text.to_string()),
        index,
        diagnostics,
        syntax_errors: false,
        scripts,
        phases: super::analysis::Phases::quick(),
    })
}

/// The spans of every `run` string in the items, at any depth.
pub(crate) fn run_strings(items: &[(FileId, Item)]) -> Vec<Span> {
    fn block(b: &Block, out: &mut Vec<Span>) {
        for s in &b.settings {
            setting(s, out);
        }
    }
    fn setting(s: &Setting, out: &mut Vec<Span>) {
        if s.key.name == "run" {
            for v in s.args.iter().chain(s.assign.iter()) {
                match v {
                    Value::Str(text) => out.push(text.span),
                    Value::List { items, .. } => {
                        out.extend(items.iter().filter_map(|i| match i {
                            Value::Str(t) => Some(t.span),
                            _ => None,
                        }));
                    }
                    _ => {}
                }
            }
        }
        if let Some(b) = &s.block {
            block(b, out);
        }
    }
    let mut out = Vec::new();
    for (_, item) in items {
        match item {
            Item::Stage(stage) => block(&stage.body, &mut out),
            Item::Setting(s) => setting(s, &mut out),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u32, end: u32) -> Span {
        Span {
            file: FileId(0),
            start,
            end,
        }
    }

    #[test]
    fn spans_move_grow_or_refuse() {
        // `abcdef`: `cd` (2..4) became `cXYd`... as 2..4 → 2..6.
        let edit = Edit {
            file: FileId(0),
            start: 2,
            old_end: 4,
            new_end: 6,
        };
        assert_eq!(edit.shift(span(0, 2)), Some(span(0, 2)));
        assert_eq!(edit.shift(span(4, 5)), Some(span(6, 7)));
        assert_eq!(edit.shift(span(1, 5)), Some(span(1, 7)));
        assert_eq!(edit.shift(span(3, 5)), None);
        assert_eq!(edit.shift(span(1, 3)), None);
        let other = Span {
            file: FileId(1),
            start: 3,
            end: 4,
        };
        assert_eq!(edit.shift(other), Some(other));
    }
}
