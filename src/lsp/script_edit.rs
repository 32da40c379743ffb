//! The common keystroke in a pipeline: typing inside a `run` script. The
//! checker never reads a script's text (slipway does not interpolate
//! scripts; the shell does), so such an edit cannot change what `slipway
//! check` reports, only where: diagnostics after the edit move by its
//! length. Recognising it keeps a 1,000-stage file's re-check to the
//! (incremental) parse.
//!
//! The test is strict; anything else takes the full check:
//! - the same files, and only one file's text changed, in one place;
//! - the old and the new text of that place are inside the same `run`
//!   string, and neither has (nor touches) a quote, backslash, `$`, brace,
//!   `#` or line break: nothing that could end the string, start an
//!   interpolation, an escape or a comment, or change a triple-quoted
//!   script's indentation;
//! - no diagnostic touches the place, and the new text parsed cleanly.

use crate::diagnostic::Diag;
use crate::model::Loaded;
use crate::source::{FileId, Span};
use crate::syntax::{Block, Item, Setting, Value};

use super::analysis::Analysis;

/// `previous`'s diagnostics, moved for the edit, when the only change
/// between `previous` and `loaded` is inside one `run` script.
pub(crate) fn carry(previous: &Analysis, loaded: &Loaded) -> Option<Vec<Diag>> {
    if previous.syntax_errors || !loaded.diagnostics.is_empty() || !loaded.unparsed.is_empty() {
        return None;
    }
    let old: Vec<_> = previous.sources.files().collect();
    let new: Vec<_> = loaded.sources.files().collect();
    if old.len() != new.len() {
        return None;
    }
    let mut edit = None;
    for ((old_id, o), (new_id, n)) in old.iter().zip(&new) {
        if old_id != new_id || o.path != n.path {
            return None;
        }
        if o.text == n.text {
            continue;
        }
        if edit.is_some() {
            return None;
        }
        edit = Some((*new_id, o.text.as_str(), n.text.as_str()));
    }
    let (file, old_text, new_text) = edit?;
    let (old_bytes, new_bytes) = (old_text.as_bytes(), new_text.as_bytes());
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
    let (old_end, new_end) = (old_bytes.len() - suffix, new_bytes.len() - suffix);
    let harmless = |b: &[u8]| {
        !b.iter()
            .any(|c| matches!(c, b'"' | b'\\' | b'$' | b'{' | b'}' | b'#' | b'\n' | b'\r'))
    };
    if !harmless(&old_bytes[prefix..old_end]) || !harmless(&new_bytes[prefix..new_end]) {
        return None;
    }
    // Nor may the edit join its neighbours into `${` or an escape.
    let special = |b: Option<&u8>| matches!(b, Some(b'$' | b'{' | b'}' | b'\\'));
    if prefix
        .checked_sub(1)
        .is_some_and(|i| special(old_bytes.get(i)))
        || special(old_bytes.get(old_end))
        || special(new_bytes.get(new_end))
    {
        return None;
    }
    // Inside the same script, before and after (spans are the new text's,
    // and the edit lies strictly between the quotes).
    let scripts = run_strings(loaded, file);
    let inside = scripts.iter().any(|s| {
        let (start, end) = (s.start as usize, s.end as usize);
        start < prefix && new_end < end
    });
    if !inside {
        return None;
    }
    let delta = i64::try_from(new_end).ok()? - i64::try_from(old_end).ok()?;
    let shift = |span: Span| -> Option<Span> {
        if span.file != file {
            return Some(span);
        }
        let (start, end) = (span.start as usize, span.end as usize);
        if end < prefix {
            return Some(span);
        }
        if start > old_end {
            let moved = |x: u32| u32::try_from(i64::from(x) + delta).ok();
            return Some(Span {
                file: span.file,
                start: moved(span.start)?,
                end: moved(span.end)?,
            });
        }
        None
    };
    let mut out = Vec::with_capacity(previous.diagnostics.len());
    for d in &previous.diagnostics {
        let mut d = d.clone();
        d.primary.span = shift(d.primary.span)?;
        for label in &mut d.secondary {
            label.span = shift(label.span)?;
        }
        out.push(d);
    }
    Some(out)
}

/// The spans of every `run` string in `file`'s items, at any depth.
fn run_strings(loaded: &Loaded, file: FileId) -> Vec<Span> {
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
    for (id, item) in &loaded.items {
        if *id != file {
            continue;
        }
        match item {
            Item::Stage(stage) => block(&stage.body, &mut out),
            Item::Setting(s) => setting(s, &mut out),
        }
    }
    out
}
