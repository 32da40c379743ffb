//! Parsing a file again after a small edit, for the language server: each
//! top-level item whose text has not changed is taken from the last parse,
//! its spans moved to where it is now, instead of being parsed again.
//!
//! A file is cut before every line that begins, unindented, with a letter,
//! as the parallel parse cuts it, and for the same reason the result is the
//! same as [`parse`](super::parse)'s: a cut inside an item leaves that item
//! unfinished, a syntax error, and any syntax error sends the whole file to
//! one parse, so errors are found and reported exactly as always.

use std::collections::HashMap;

use super::ast::*;
use super::parser::{SyntaxError, parse_range, scan_comments};
use super::scan::top_level_line_after;
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

/// Where the pieces of `text[start..end]` start, and `end`: `start`, then
/// every top-level line after it and before `end`.
fn bounds(text: &str, start: usize, end: usize) -> Vec<usize> {
    let mut bounds = vec![start];
    loop {
        let last = bounds.last().copied().unwrap_or(start);
        let next = top_level_line_after(text, last);
        if next >= end || next <= last {
            break;
        }
        bounds.push(next);
    }
    bounds.push(end);
    bounds
}

/// [`parse`](super::parse), reusing the items of unchanged pieces from
/// `cache`; the syntax errors with where their items start.
pub(crate) fn parse_cached(
    file: FileId,
    text: &str,
    cache: &mut ParseCache,
) -> (Ast, Vec<SyntaxError>) {
    let mut items = Vec::new();
    for w in bounds(text, 0, text.len()).windows(2) {
        let (start, end) = (w[0], w[1]);
        let chunk = &text[start..end];
        let base = u32::try_from(start).unwrap_or(u32::MAX);
        if let Some(found) = cache.items(chunk) {
            items.extend(found.iter().cloned().map(|item| placed(item, file, base)));
            continue;
        }
        let (parsed, errors) = parse_range(FileId(0), chunk, 0);
        if !errors.is_empty() {
            // What `parse` does with errors: one parse of the whole text.
            let (items, errors) = parse_range(file, text, 0);
            return (ast(file, text, items, &errors), errors);
        }
        items.extend(parsed.iter().cloned().map(|item| placed(item, file, base)));
        cache.current.insert(chunk.to_string(), parsed);
    }
    (ast(file, text, items, &[]), Vec::new())
}

fn ast(file: FileId, text: &str, items: Vec<Item>, errors: &[SyntaxError]) -> Ast {
    let mut comments = Vec::new();
    scan_comments(file, text, &mut comments);
    Ast {
        file,
        items,
        comments,
        unparsed: errors.iter().filter_map(|e| e.name.clone()).collect(),
    }
}

/// Calls `f` on every span of `item`.
pub(crate) fn each_span(item: &mut Item, f: &mut impl FnMut(&mut Span)) {
    match item {
        Item::Stage(s) => {
            f(&mut s.span);
            f(&mut s.name.span);
            for c in &mut s.clauses {
                match c {
                    Clause::After { names, span } => {
                        f(span);
                        for n in names {
                            f(&mut n.span);
                        }
                    }
                    Clause::Uses { template, span } => {
                        f(span);
                        f(&mut template.span);
                    }
                    Clause::When { expr, span } => {
                        f(span);
                        expr_spans(expr, f);
                    }
                }
            }
            block_spans(&mut s.body, f);
        }
        Item::Setting(s) => setting_spans(s, f),
    }
}

fn block_spans(b: &mut Block, f: &mut impl FnMut(&mut Span)) {
    f(&mut b.span);
    for s in &mut b.settings {
        setting_spans(s, f);
    }
}

fn setting_spans(s: &mut Setting, f: &mut impl FnMut(&mut Span)) {
    f(&mut s.span);
    f(&mut s.key.span);
    for v in s.args.iter_mut().chain(s.assign.iter_mut()) {
        value_spans(v, f);
    }
    if let Some(b) = &mut s.block {
        block_spans(b, f);
    }
}

fn value_spans(v: &mut Value, f: &mut impl FnMut(&mut Span)) {
    match v {
        Value::Str(s) => str_spans(s, f),
        Value::Word(w) => f(&mut w.span),
        Value::Number { span, .. } | Value::Duration { span, .. } | Value::Bool { span, .. } => {
            f(span);
        }
        Value::List { items, span } => {
            f(span);
            for i in items {
                value_spans(i, f);
            }
        }
    }
}

fn str_spans(s: &mut Str, f: &mut impl FnMut(&mut Span)) {
    f(&mut s.span);
    for p in &mut s.parts {
        match p {
            StrPart::Text(_) => {}
            StrPart::Escape { span, .. } | StrPart::Interp { span, .. } => f(span),
        }
    }
}

fn expr_spans(e: &mut Expr, f: &mut impl FnMut(&mut Span)) {
    match e {
        Expr::Or(l, r) | Expr::And(l, r) => {
            expr_spans(l, f);
            expr_spans(r, f);
        }
        Expr::Not { expr, span } | Expr::Group { expr, span } => {
            f(span);
            expr_spans(expr, f);
        }
        Expr::Compare { lhs, rhs, .. } => {
            operand_spans(lhs, f);
            operand_spans(rhs, f);
        }
        Expr::Operand(o) => operand_spans(o, f),
        Expr::Error { span } => f(span),
    }
}

fn operand_spans(o: &mut Operand, f: &mut impl FnMut(&mut Span)) {
    match o {
        Operand::Path { span, .. } | Operand::Bool { span, .. } => f(span),
        Operand::Str(s) => str_spans(s, f),
        Operand::Call { name, args, span } => {
            f(span);
            f(&mut name.span);
            for a in args {
                value_spans(a, f);
            }
        }
    }
}

/// `item`, parsed in file 0 from offset 0, moved to `base` in `file`.
fn placed(mut item: Item, file: FileId, base: u32) -> Item {
    each_span(&mut item, &mut |span| {
        span.file = file;
        span.start = span.start.saturating_add(base);
        span.end = span.end.saturating_add(base);
    });
    item
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::*;
    use crate::diagnostic::Diag;

    const TEXT: &str = "\u{feff}pipeline \"p\"\n# a comment\nenv {\n  A = \"${git.sha}\\n\"\n}\n\ntemplate t {\n  image \"x\"\n  matrix { N = [\"1\", \"2\"] }\n}\n\nstage a uses t when (branch == \"main\" || !changed(\"docs/**\")) && env.A =~ \"x\" {\n  run \"\"\"\n    echo ${N}\n  \"\"\"\n  timeout 10m\n  retry 2\n  allow-failure\n}\n\nstage b after a,\n  a {\n  build \".\" {\n    push true\n    label \"k\" = \"v\"\n  }\n}\n";

    /// [`parse_cached`] as [`parse`] answers.
    fn cached(file: FileId, text: &str, cache: &mut ParseCache) -> (Ast, Vec<Diag>) {
        let (ast, errors) = parse_cached(file, text, cache);
        (ast, SyntaxError::split(errors).0)
    }

    #[test]
    fn a_cached_parse_is_the_parse() {
        let mut cache = ParseCache::default();
        let file = FileId(3);
        assert_eq!(cached(file, TEXT, &mut cache), parse(file, TEXT));
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
            assert_eq!(cached(file, text, &mut cache), parse(file, text), "{text}");
            assert!(cache.previous.len() + cache.current.len() > 0);
        }
        // Errors are reported as a whole parse reports them.
        let broken = TEXT.replace("retry 2", "retry 2 {");
        cache.new_round();
        let (ast, diags) = cached(file, &broken, &mut cache);
        assert!(!diags.is_empty());
        assert_eq!((ast, diags), parse(file, &broken));
    }
}
