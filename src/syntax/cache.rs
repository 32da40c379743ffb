//! Parsing a file again after a small edit, for the language server: each
//! top-level item whose text has not changed is taken from the last parse,
//! its spans moved to where it is now, instead of being parsed again.
//!
//! A file is cut before every line that begins, unindented, with a letter,
//! as the parallel parse cuts it, and for the same reason the result is the
//! same as [`parse`]'s: a cut inside an item leaves that item unfinished, a
//! syntax error, and any syntax error sends the whole file to [`parse`], so
//! errors are found and reported exactly as always.

use std::collections::HashMap;

use super::ast::*;
use super::parser::{parse, parse_range, scan_comments, top_level_line_after};
use crate::diagnostic::Diag;
use crate::source::{FileId, Span};

/// Items by the text they were parsed from, with spans from the start of
/// that text in file 0. Only the pieces of the latest parses are kept.
#[derive(Debug, Default)]
pub(crate) struct ParseCache {
    current: HashMap<String, Vec<Item>>,
    previous: HashMap<String, Vec<Item>>,
}

impl ParseCache {
    /// Starts a new round: what the next parses do not use is then dropped.
    pub(crate) fn new_round(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    fn items(&mut self, chunk: &str) -> Option<&Vec<Item>> {
        if !self.current.contains_key(chunk) {
            let (key, items) = self.previous.remove_entry(chunk)?;
            self.current.insert(key, items);
        }
        self.current.get(chunk)
    }
}

/// [`parse`], reusing the items of unchanged pieces from `cache`.
pub(crate) fn parse_cached(file: FileId, text: &str, cache: &mut ParseCache) -> (Ast, Vec<Diag>) {
    let mut bounds = vec![0];
    loop {
        let last = bounds.last().copied().unwrap_or(0);
        let next = top_level_line_after(text, last);
        if next >= text.len() || next <= last {
            break;
        }
        bounds.push(next);
    }
    bounds.push(text.len());
    let mut items = Vec::new();
    for w in bounds.windows(2) {
        let (start, end) = (w[0], w[1]);
        let chunk = &text[start..end];
        let base = u32::try_from(start).unwrap_or(u32::MAX);
        if let Some(found) = cache.items(chunk) {
            items.extend(found.iter().cloned().map(|mut item| {
                shift_item(&mut item, file, base);
                item
            }));
            continue;
        }
        let (parsed, diags, _) = parse_range(FileId(0), chunk, 0);
        if !diags.is_empty() {
            return parse(file, text);
        }
        items.extend(parsed.iter().cloned().map(|mut item| {
            shift_item(&mut item, file, base);
            item
        }));
        cache.current.insert(chunk.to_string(), parsed);
    }
    let mut comments = Vec::new();
    scan_comments(file, text, &mut comments);
    (
        Ast {
            file,
            items,
            comments,
            unparsed: Vec::new(),
        },
        Vec::new(),
    )
}

fn shift(span: &mut Span, file: FileId, by: u32) {
    span.file = file;
    span.start = span.start.saturating_add(by);
    span.end = span.end.saturating_add(by);
}

fn shift_item(item: &mut Item, file: FileId, by: u32) {
    match item {
        Item::Stage(s) => {
            shift(&mut s.span, file, by);
            shift(&mut s.name.span, file, by);
            for c in &mut s.clauses {
                match c {
                    Clause::After { names, span } => {
                        shift(span, file, by);
                        for n in names {
                            shift(&mut n.span, file, by);
                        }
                    }
                    Clause::Uses { template, span } => {
                        shift(span, file, by);
                        shift(&mut template.span, file, by);
                    }
                    Clause::When { expr, span } => {
                        shift(span, file, by);
                        shift_expr(expr, file, by);
                    }
                }
            }
            shift_block(&mut s.body, file, by);
        }
        Item::Setting(s) => shift_setting(s, file, by),
    }
}

fn shift_block(b: &mut Block, file: FileId, by: u32) {
    shift(&mut b.span, file, by);
    for s in &mut b.settings {
        shift_setting(s, file, by);
    }
}

fn shift_setting(s: &mut Setting, file: FileId, by: u32) {
    shift(&mut s.span, file, by);
    shift(&mut s.key.span, file, by);
    for v in s.args.iter_mut().chain(s.assign.iter_mut()) {
        shift_value(v, file, by);
    }
    if let Some(b) = &mut s.block {
        shift_block(b, file, by);
    }
}

fn shift_value(v: &mut Value, file: FileId, by: u32) {
    match v {
        Value::Str(s) => shift_str(s, file, by),
        Value::Word(w) => shift(&mut w.span, file, by),
        Value::Number { span, .. } | Value::Duration { span, .. } | Value::Bool { span, .. } => {
            shift(span, file, by);
        }
        Value::List { items, span } => {
            shift(span, file, by);
            for i in items {
                shift_value(i, file, by);
            }
        }
    }
}

fn shift_str(s: &mut Str, file: FileId, by: u32) {
    shift(&mut s.span, file, by);
    for p in &mut s.parts {
        match p {
            StrPart::Text(_) => {}
            StrPart::Escape { span, .. } | StrPart::Interp { span, .. } => shift(span, file, by),
        }
    }
}

fn shift_expr(e: &mut Expr, file: FileId, by: u32) {
    match e {
        Expr::Or(l, r) | Expr::And(l, r) => {
            shift_expr(l, file, by);
            shift_expr(r, file, by);
        }
        Expr::Not { expr, span } | Expr::Group { expr, span } => {
            shift(span, file, by);
            shift_expr(expr, file, by);
        }
        Expr::Compare { lhs, rhs, .. } => {
            shift_operand(lhs, file, by);
            shift_operand(rhs, file, by);
        }
        Expr::Operand(o) => shift_operand(o, file, by),
    }
}

fn shift_operand(o: &mut Operand, file: FileId, by: u32) {
    match o {
        Operand::Path { span, .. } | Operand::Bool { span, .. } => shift(span, file, by),
        Operand::Str(s) => shift_str(s, file, by),
        Operand::Call { name, args, span } => {
            shift(span, file, by);
            shift(&mut name.span, file, by);
            for a in args {
                shift_value(a, file, by);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\u{feff}pipeline \"p\"\n# a comment\nenv {\n  A = \"${git.sha}\\n\"\n}\n\ntemplate t {\n  image \"x\"\n  matrix { N = [\"1\", \"2\"] }\n}\n\nstage a uses t when (branch == \"main\" || !changed(\"docs/**\")) && env.A =~ \"x\" {\n  run \"\"\"\n    echo ${N}\n  \"\"\"\n  timeout 10m\n  retry 2\n  allow-failure\n}\n\nstage b after a,\n  a {\n  build \".\" {\n    push true\n    label \"k\" = \"v\"\n  }\n}\n";

    #[test]
    fn a_cached_parse_is_the_parse() {
        let mut cache = ParseCache::default();
        let file = FileId(3);
        assert_eq!(parse_cached(file, TEXT, &mut cache), parse(file, TEXT));
        // Edits before, inside and after items; the unchanged ones come
        // from the cache at their new places.
        let edits = [
            TEXT.replace("pipeline \"p\"", "pipeline \"pp\"\n\nsecret S"),
            TEXT.replace("retry 2", "retry 3\n  cache \"c\""),
            format!("{TEXT}\nfinally f {{\n  image \"x\"\n  run \"y\"\n}}\n"),
            TEXT.replace("stage b after a,", "stage b after a, zz,"),
        ];
        for text in &edits {
            cache.new_round();
            assert_eq!(
                parse_cached(file, text, &mut cache),
                parse(file, text),
                "{text}"
            );
            assert!(cache.previous.len() + cache.current.len() > 0);
        }
        // Errors are reported as a whole parse reports them.
        let broken = TEXT.replace("retry 2", "retry 2 {");
        cache.new_round();
        let (ast, diags) = parse_cached(file, &broken, &mut cache);
        assert!(!diags.is_empty());
        assert_eq!((ast, diags), parse(file, &broken));
    }
}
