//! pest → [`Ast`]. The only place that sees pest's types.

use pest::Parser as _;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;

use super::ast::*;
use super::scan::{Segment, segments, top_level_line_after};
use crate::diagnostic::{Code, Diag};
use crate::source::{FileId, Span};

#[derive(pest_derive::Parser)]
#[grammar = "grammar/pipeline.pest"]
pub(crate) struct PestParser;

/// Deepest nesting of `(`, `[` and `{` a file may have; deeper input is
/// rejected before pest sees it, so nothing recurses without bound.
const MAX_NESTING: usize = 64;

/// Most `&&`, `||` and `!` one item may have: a condition's tree is as deep
/// as it is long, and dropping, checking or serialising it recurses.
const MAX_OPERATORS: usize = 256;

/// Files at least this large are parsed on several threads.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// Most threads one parse uses.
const MAX_THREADS: usize = 8;

/// How to parse: the choices the caller makes (the command line reads them
/// from its environment; the syntax layer reads nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// How many threads parse a file of 256 KiB or more (at most 8); 0 or 1
    /// parse on the calling thread.
    pub threads: usize,
}

impl Default for ParseOptions {
    /// One thread per core.
    fn default() -> Self {
        ParseOptions {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// Parses one file. Always returns a tree: items that fail to parse are left
/// out and reported, and parsing resumes at the next top-level line.
pub fn parse(file: FileId, text: &str) -> (Ast, Vec<Diag>) {
    parse_with(file, text, ParseOptions::default())
}

/// [`parse`], with `options`.
pub fn parse_with(file: FileId, text: &str, options: ParseOptions) -> (Ast, Vec<Diag>) {
    let (items, errors) = parse_parallel(file, text, options.threads.min(MAX_THREADS))
        .unwrap_or_else(|| parse_range(file, text, 0));
    let (diags, unparsed) = SyntaxError::split(errors);
    let mut comments = Vec::new();
    scan_comments(file, text, &mut comments);
    (
        Ast {
            file,
            items,
            comments,
            unparsed,
        },
        diags,
    )
}

/// Large files: split at top-level lines into one chunk per thread and
/// parse the chunks at once. `None` when the file is small, or when any
/// chunk has an error: a split inside an item always leaves that item
/// unfinished at the chunk's end, so clean chunks parse exactly as the whole
/// file does, and errors are reported by one sequential parse.
fn parse_parallel(file: FileId, text: &str, threads: usize) -> Option<Parsed> {
    if text.len() < PARALLEL_MIN_BYTES || threads < 2 {
        return None;
    }
    let mut bounds = vec![0];
    for i in 1..threads {
        let target = text.len() * i / threads;
        let split = top_level_line_after(text, target.max(*bounds.last()?));
        if split < text.len() && split > *bounds.last()? {
            bounds.push(split);
        }
    }
    bounds.push(text.len());
    if bounds.len() < 3 {
        return None;
    }
    let chunks: Vec<Parsed> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (start, end) = (w[0], w[1]);
                scope.spawn(move || parse_range(file, &text[..end], start))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok())
            .collect::<Option<Vec<_>>>()
    })?;
    if chunks.iter().any(|(_, errors)| !errors.is_empty()) {
        return None;
    }
    Some((
        chunks.into_iter().flat_map(|(items, _)| items).collect(),
        Vec::new(),
    ))
}

/// A syntax error, with where the item it is in starts. The item is left
/// out, and parsing goes on at the next top-level line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    /// Where the item starts: where parsing was when it failed.
    pub(crate) at: usize,
    pub(crate) diag: Diag,
    /// What the item declares, when it is a stage or a template: references
    /// to it are not reported as well.
    pub(crate) name: Option<String>,
}

impl SyntaxError {
    /// The diagnostics, and the names of the declarations that failed.
    pub(crate) fn split(errors: Vec<SyntaxError>) -> (Vec<Diag>, Vec<String>) {
        let mut diags = Vec::with_capacity(errors.len());
        let mut names = Vec::new();
        for e in errors {
            diags.push(e.diag);
            names.extend(e.name);
        }
        (diags, names)
    }
}

/// Items and syntax errors.
pub(super) type Parsed = (Vec<Item>, Vec<SyntaxError>);

/// Parses the items of `text` from `start` to its end.
pub(super) fn parse_range(file: FileId, text: &str, start: usize) -> Parsed {
    parse_from(file, text, start, &mut |_| false).0
}

/// Parses the items of `text` from `start`, which is where an item starts
/// or the text's start, as parsing the whole text finds them from there:
/// each item's parse reads only the text from its start on. Stops before
/// the item at a place `stop` accepts; returns what it found, and where it
/// stopped (the text's end when it did not).
pub(crate) fn parse_from(
    file: FileId,
    text: &str,
    start: usize,
    stop: &mut dyn FnMut(usize) -> bool,
) -> (Parsed, usize) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut pos = start;
    loop {
        pos = skip_trivia(text, pos);
        if pos >= text.len() {
            break;
        }
        if stop(pos) {
            return ((items, errors), pos);
        }
        let rest = &text[pos..];
        if let Some(offset) = too_deep(rest) {
            errors.push(SyntaxError {
                at: pos,
                diag: Diag::error(
                    Code::Syntax,
                    Span::new(file, pos + offset, pos + offset + 1),
                    "too deeply nested",
                )
                .label(format!("more than {MAX_NESTING} levels of brackets"))
                .help("split the condition or list into smaller parts"),
                name: None,
            });
            pos = top_level_line_after(text, pos);
            continue;
        }
        match PestParser::parse(Rule::line_item, rest) {
            Ok(mut pairs) => {
                let Some(line) = pairs.next() else { break };
                let consumed = line.as_span().end();
                let mut b = Builder {
                    file,
                    base: pos,
                    operators: 0,
                    too_many: None,
                };
                for pair in line.into_inner() {
                    if pair.as_rule() == Rule::item {
                        let item = b.item(pair);
                        match b.too_many {
                            None => items.push(item),
                            Some(at) => errors.push(SyntaxError {
                                at: pos,
                                diag: Diag::error(Code::Syntax, at, "condition too long")
                                    .label(format!(
                                        "more than {MAX_OPERATORS} `&&`, `||` and `!` operators"
                                    ))
                                    .help("split the condition, or the stage, into smaller parts"),
                                name: None,
                            }),
                        }
                    }
                }
                // `line_item` always consumes at least one character.
                pos += consumed.max(1);
            }
            Err(err) => {
                errors.push(SyntaxError {
                    at: pos,
                    diag: syntax_error(file, pos, rest, &err),
                    name: declared_name(rest),
                });
                pos = top_level_line_after(text, pos);
            }
        }
    }
    ((items, errors), text.len())
}

/// `NAME` of a `stage NAME`, `finally NAME` or `template NAME` line.
fn declared_name(item: &str) -> Option<String> {
    let mut words = item.split_whitespace();
    let keyword = words.next()?;
    if !matches!(keyword, "stage" | "finally" | "template") {
        return None;
    }
    let name: String = words
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Skips blank space, newlines and comments between items, and a byte order
/// mark at the start of the file (Windows editors write one).
fn skip_trivia(text: &str, mut pos: usize) -> usize {
    if pos == 0 && text.starts_with('\u{feff}') {
        pos = '\u{feff}'.len_utf8();
    }
    let bytes = text.as_bytes();
    while pos < bytes.len() {
        match bytes[pos] {
            b' ' | b'\t' | b'\r' | b'\n' => pos += 1,
            b'#' => pos = text[pos..].find('\n').map_or(text.len(), |i| pos + i),
            _ => break,
        }
    }
    pos
}

/// Every comment in the text: a `#` outside strings, to the end of its line.
/// The grammar treats comments as silent trivia; the formatter needs them.
pub(super) fn scan_comments(file: FileId, text: &str, out: &mut Vec<Comment>) {
    for (kind, range) in segments(text) {
        if kind == Segment::Comment {
            let end = if text[..range.end].ends_with('\r') {
                range.end - 1
            } else {
                range.end
            };
            out.push(Comment {
                text: text[range.start + 1..end].to_string(),
                span: Span::new(file, range.start, end),
            });
        }
    }
}

/// Where the item at the start of `text` nests brackets deeper than
/// [`MAX_NESTING`], strings and comments aside. Checked before pest runs,
/// since pest recurses once per level.
fn too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    for (kind, range) in segments(text) {
        if kind != Segment::Code {
            continue;
        }
        for i in range {
            match bytes[i] {
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Some(i);
                    }
                }
                // At top level, a line starting with a letter is the next item.
                b'\n' if depth == 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) => {
                    return None;
                }
                b')' | b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    // Back at top level at the start of a line: the item is over.
                    if depth == 0 && i > 0 && bytes[i - 1] == b'\n' {
                        return None;
                    }
                }
                _ => {}
            }
        }
    }
    None
}

fn syntax_error(file: FileId, base: usize, rest: &str, err: &pest::error::Error<Rule>) -> Diag {
    let at = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = describe_found(&rest[at.min(rest.len())..]);
    let expected = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => expected_words(positives),
        ErrorVariant::CustomError { message } => vec![message.clone()],
    };
    let message = if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {}, but found {found}", join_or(&expected))
    };
    let width = rest[at.min(rest.len())..]
        .chars()
        .next()
        .filter(|c| *c != '\n')
        .map_or(0, char::len_utf8);
    let span = Span::new(file, base + at, base + at + width);
    let mut diag = Diag::error(Code::Syntax, span, message).label(format!("unexpected {found}"));
    if let Some(help) = syntax_help(&rest[at.min(rest.len())..], &expected) {
        diag = diag.help(help);
    }
    diag
}

/// Hints for the mistakes people make most.
fn syntax_help(found: &str, expected: &[String]) -> Option<String> {
    let word: String = found
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if found.starts_with('\'') {
        return Some("strings use double quotes: \"...\"".into());
    }
    if found.starts_with(':') {
        return Some(
            "settings are written `key value`, or `KEY = value` inside `env` and `matrix`".into(),
        );
    }
    if expected.iter().any(|e| e.contains("`{`")) && word.is_empty() && found.starts_with('\n') {
        return Some("a stage's body is a block: `stage NAME { ... }`".into());
    }
    // Only a "..." string takes escapes; a """...""" string ends only at
    // its closing quotes.
    let in_string = expected.iter().any(|e| e == "text");
    let in_plain_string = in_string && expected.iter().any(|e| e == "an escape");
    if in_plain_string && (found.is_empty() || found.starts_with(['\n', '\r'])) {
        return Some(
            "a \"...\" string ends on its line: close it, or use \"\"\"...\"\"\" for several lines"
                .into(),
        );
    }
    if in_string && found.is_empty() {
        return Some("a \"\"\"...\"\"\" string is missing its closing \"\"\"".into());
    }
    if found.starts_with('"') && expected.iter().any(|e| e == "a name") {
        return Some("names are written without quotes: `stage build`".into());
    }
    if found.is_empty() {
        return Some("a `{` or a string may be missing its closing `}` or `\"`".into());
    }
    if found.starts_with('"') || expected.iter().any(|e| e == "end of line") {
        return Some("each setting goes on its own line".into());
    }
    None
}

/// The token at the error, in the user's words.
fn describe_found(rest: &str) -> String {
    let Some(c) = rest.chars().next() else {
        return "end of file".into();
    };
    if c == '\n' || c == '\r' {
        return "end of line".into();
    }
    if invisible(c) {
        return format!("`{}`", c.escape_unicode());
    }
    if c.is_alphanumeric() || c == '_' {
        let word: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        return format!("`{word}`");
    }
    format!("`{c}`")
}

/// Characters a message would show as nothing, or as something else:
/// controls, blanks other than a space (U+2028 breaks the line), zero-width
/// characters and combining marks (which join the quote before them).
fn invisible(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
        || matches!(c, '\u{0300}'..='\u{036f}')
}

/// Rule names as the user would say them (pest's `renamed_rules`, by hand so
/// that duplicates collapse).
fn expected_words(rules: &[Rule]) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for rule in rules {
        let word = match rule {
            Rule::item | Rule::line_item | Rule::file => "a stage or a setting",
            Rule::stage_decl | Rule::stage_keyword => "`stage`",
            Rule::setting | Rule::key => "a setting",
            Rule::block => "`{`",
            Rule::assign => "`=`",
            Rule::name => "a name",
            Rule::word => "a value",
            Rule::string | Rule::plain_string | Rule::triple_string => "a string",
            Rule::list => "a list",
            Rule::number => "a number",
            Rule::duration => "a duration",
            Rule::boolean => "`true` or `false`",
            Rule::kw_after | Rule::after_clause => "`after`",
            Rule::kw_uses | Rule::uses_clause => "`uses`",
            Rule::kw_when | Rule::when_clause => "`when`",
            Rule::expr
            | Rule::or_expr
            | Rule::and_expr
            | Rule::unary
            | Rule::group
            | Rule::comparison
            | Rule::call
            | Rule::path => "a condition",
            Rule::not_op => "`!`",
            Rule::cmp_op => "`==`, `!=` or `=~`",
            Rule::interp | Rule::interp_raw => "`${`",
            Rule::interp_body | Rule::interp_raw_body => "a variable name",
            Rule::escape => "an escape",
            Rule::plain_text | Rule::triple_text => "text",
            Rule::EOI => "end of file",
            Rule::nl => "end of line",
            _ => continue,
        };
        if !words.iter().any(|w| w == word) {
            words.push(word.to_string());
        }
    }
    words
}

fn join_or(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

struct Builder {
    file: FileId,
    base: usize,
    /// `&&`, `||` and `!` seen in this item: a condition's tree is as deep as
    /// it is long, so past [`MAX_OPERATORS`] no tree is built.
    operators: usize,
    too_many: Option<Span>,
}

impl Builder {
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, self.base + s.start(), self.base + s.end())
    }

    /// Children of a pair, collected.
    fn children<'i>(&mut self, pair: Pair<'i, Rule>) -> Vec<Pair<'i, Rule>> {
        pair.into_inner().collect()
    }

    fn item(&mut self, pair: Pair<'_, Rule>) -> Item {
        let mut inner = self.children(pair);
        let first = inner.remove(0);
        match first.as_rule() {
            Rule::stage_decl => Item::Stage(self.stage(first)),
            _ => Item::Setting(self.setting(first)),
        }
    }

    /// Adds `n` operators to the item's count; false once over the limit.
    fn count_operators(&mut self, n: usize, at: Span) -> bool {
        self.operators += n;
        if self.operators > MAX_OPERATORS {
            self.too_many.get_or_insert(at);
            return false;
        }
        true
    }

    fn ident(&self, pair: &Pair<'_, Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(pair),
        }
    }

    fn stage(&mut self, pair: Pair<'_, Rule>) -> StageDecl {
        let mut kind = StageKind::Stage;
        let mut name = None;
        let mut clauses = Vec::new();
        let mut body = None;
        let mut span = self.span(&pair);
        for p in self.children(pair) {
            match p.as_rule() {
                Rule::stage_keyword if p.as_str().starts_with("finally") => {
                    kind = StageKind::Finally
                }
                Rule::name => name = Some(self.ident(&p)),
                Rule::after_clause => {
                    let span = self.span(&p);
                    let names = self
                        .children(p)
                        .iter()
                        .filter(|c| c.as_rule() == Rule::name)
                        .map(|c| self.ident(c))
                        .collect();
                    clauses.push(Clause::After { names, span });
                }
                Rule::uses_clause => {
                    let span = self.span(&p);
                    let children = self.children(p);
                    if let Some(t) = children.iter().find(|c| c.as_rule() == Rule::name) {
                        clauses.push(Clause::Uses {
                            template: self.ident(t),
                            span,
                        });
                    }
                }
                Rule::when_clause => {
                    let span = self.span(&p);
                    let children = self.children(p);
                    if let Some(e) = children.into_iter().find(|c| c.as_rule() == Rule::expr) {
                        clauses.push(Clause::When {
                            expr: self.expr(e),
                            span,
                        });
                    }
                }
                Rule::block => {
                    let b = self.block(p);
                    span = span.to(b.span);
                    body = Some(b);
                }
                _ => {}
            }
        }
        let name = name.unwrap_or_else(|| Ident {
            name: String::new(),
            span,
        });
        clauses.shrink_to_fit();
        StageDecl {
            kind,
            name,
            clauses,
            body: body.unwrap_or(Block {
                settings: Vec::new(),
                span,
            }),
            span,
        }
    }

    fn block(&mut self, pair: Pair<'_, Rule>) -> Block {
        let span = self.span(&pair);
        let mut settings: Vec<Setting> = self
            .children(pair)
            .into_iter()
            .filter(|p| p.as_rule() == Rule::setting)
            .map(|p| self.setting(p))
            .collect();
        settings.shrink_to_fit();
        Block { settings, span }
    }

    fn setting(&mut self, pair: Pair<'_, Rule>) -> Setting {
        let mut key = None;
        let mut args = Vec::new();
        let mut assign = None;
        let mut block = None;
        for p in self.children(pair) {
            match p.as_rule() {
                Rule::key => key = Some(self.ident(&p)),
                Rule::assign => {
                    let inner = self.children(p);
                    assign = inner.into_iter().next().map(|v| self.value(v));
                }
                Rule::block => block = Some(self.block(p)),
                _ => args.push(self.value(p)),
            }
        }
        let key = key.unwrap_or_default();
        // Most settings have one argument: keep the Ast as small as the file.
        args.shrink_to_fit();
        // The span ends at the last part, not at trailing comments.
        let mut span = key.span;
        if let Some(a) = args.last() {
            span = span.to(a.span());
        }
        if let Some(a) = &assign {
            span = span.to(a.span());
        }
        if let Some(b) = &block {
            span = span.to(b.span);
        }
        Setting {
            key,
            args,
            assign,
            block,
            span,
        }
    }

    fn value(&mut self, pair: Pair<'_, Rule>) -> Value {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::string => Value::Str(self.string(pair)),
            Rule::number => match pair.as_str().parse() {
                Ok(value) => Value::Number { value, span },
                // Out of range for i64: keep the text, the checker reports it.
                Err(_) => Value::Duration {
                    text: pair.as_str().to_string(),
                    span,
                },
            },
            Rule::duration => Value::Duration {
                text: pair.as_str().to_string(),
                span,
            },
            Rule::boolean => Value::Bool {
                value: pair.as_str() == "true",
                span,
            },
            Rule::list => {
                let items = self
                    .children(pair)
                    .into_iter()
                    .map(|p| self.value(p))
                    .collect();
                Value::List { items, span }
            }
            _ => Value::Word(self.ident(&pair)),
        }
    }

    fn string(&mut self, pair: Pair<'_, Rule>) -> Str {
        let span = self.span(&pair);
        let Some(inner) = pair.into_inner().next() else {
            return Str {
                parts: Vec::new(),
                triple: false,
                span,
            };
        };
        let triple = inner.as_rule() == Rule::triple_string;
        let mut parts = Vec::new();
        for p in inner.into_inner() {
            let pspan = self.span(&p);
            match p.as_rule() {
                Rule::plain_text | Rule::triple_text => {
                    parts.push(StrPart::Text(p.as_str().to_string()))
                }
                Rule::escape => parts.push(StrPart::Escape {
                    ch: p.as_str().chars().nth(1).unwrap_or('\\'),
                    span: pspan,
                }),
                Rule::interp | Rule::interp_raw => {
                    let body = p.into_inner().next().map_or("", |b| b.as_str()).to_string();
                    parts.push(StrPart::Interp { body, span: pspan });
                }
                _ => {}
            }
        }
        parts.shrink_to_fit();
        Str {
            parts,
            triple,
            span,
        }
    }

    /// A condition. A part the grammar promises but the tree does not hold
    /// becomes [`Expr::Error`], which the checker reports: it is never
    /// taken for `true`.
    fn expr(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let whole = self.span(&pair);
        let missing = Expr::Error { span: whole };
        match pair.as_rule() {
            Rule::expr => {
                let inner = self.children(pair);
                inner.into_iter().next().map_or(missing, |p| self.expr(p))
            }
            Rule::or_expr | Rule::and_expr => {
                let is_or = pair.as_rule() == Rule::or_expr;
                let children = self.children(pair);
                if !self.count_operators(children.len().saturating_sub(1), whole) {
                    return missing;
                }
                let mut operands = children.into_iter().map(|p| self.expr(p));
                let first = operands.next().unwrap_or(missing);
                operands.fold(first, |lhs, rhs| {
                    if is_or {
                        Expr::Or(Box::new(lhs), Box::new(rhs))
                    } else {
                        Expr::And(Box::new(lhs), Box::new(rhs))
                    }
                })
            }
            Rule::unary => {
                let children = self.children(pair);
                let nots: Vec<Span> = children
                    .iter()
                    .filter(|p| p.as_rule() == Rule::not_op)
                    .map(|p| self.span(p))
                    .collect();
                if !self.count_operators(nots.len(), whole) {
                    return missing;
                }
                let mut expr = children
                    .into_iter()
                    .find(|p| p.as_rule() != Rule::not_op)
                    .map_or(missing, |p| self.expr(p));
                for not in nots.into_iter().rev() {
                    let span = not.to(expr.span());
                    expr = Expr::Not {
                        expr: Box::new(expr),
                        span,
                    };
                }
                expr
            }
            Rule::group => {
                let inner = self.children(pair);
                let expr = inner.into_iter().next().map_or(missing, |p| self.expr(p));
                Expr::Group {
                    expr: Box::new(expr),
                    span: whole,
                }
            }
            Rule::comparison => {
                let mut inner = self.children(pair).into_iter();
                let lhs = inner.next().map(|p| self.operand(p));
                let op = inner.next();
                let rhs = inner.next().map(|p| self.operand(p));
                match (lhs, op, rhs) {
                    (Some(lhs), Some(op), Some(rhs)) => Expr::Compare {
                        lhs,
                        op: match op.as_str() {
                            "==" => CmpOp::Eq,
                            "!=" => CmpOp::Ne,
                            _ => CmpOp::Match,
                        },
                        rhs,
                    },
                    // A lone operand is a comparison without its operator.
                    (Some(lhs), None, None) => Expr::Operand(lhs),
                    _ => missing,
                }
            }
            _ => Expr::Operand(self.operand(pair)),
        }
    }

    fn operand(&mut self, pair: Pair<'_, Rule>) -> Operand {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::string => Operand::Str(self.string(pair)),
            Rule::boolean => Operand::Bool {
                value: pair.as_str() == "true",
                span,
            },
            Rule::call => {
                let mut inner = self.children(pair).into_iter();
                let name = inner.next().map(|p| self.ident(&p)).unwrap_or_default();
                let args = inner.map(|p| self.value(p)).collect();
                Operand::Call { name, args, span }
            }
            _ => Operand::Path {
                path: pair.as_str().to_string(),
                span,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nesting check reads one item, as pest does: a string left open
    /// at the end of its line ends there, and the next item is checked as
    /// itself (it was read as part of the first, which was then reported
    /// as too deep instead of unclosed).
    #[test]
    fn an_unclosed_string_ends_its_item_for_the_nesting_check() {
        let deep = "[".repeat(MAX_NESTING + 6);
        let text = format!("pipeline \"abc\nenv {{\n  A = {deep}\n}}\n");
        let (_, diags) = parse(FileId(0), &text);
        let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "expected text, an escape or `${`, but found end of line",
                "too deeply nested"
            ]
        );
    }

    /// A file large enough to be parsed on several threads parses as it
    /// does on one, with errors too.
    #[test]
    fn threads_change_nothing() {
        let stage = |i: usize| {
            format!(
                "# stage {i}\nstage s{i} after s{} when branch == \"main\" {{\n  image \"x\"\n  run \"\"\"\n    echo {i}\n  \"\"\"\n}}\n\n",
                i.saturating_sub(1)
            )
        };
        let text: String = (0..3000).map(stage).collect();
        assert!(text.len() >= PARALLEL_MIN_BYTES);
        let broken = text.replacen("image \"x\"", "image \"x", 1);
        for text in [text, broken] {
            let one = parse_with(FileId(1), &text, ParseOptions { threads: 1 });
            assert_eq!(
                parse_with(FileId(1), &text, ParseOptions { threads: 4 }),
                one
            );
        }
    }
}
