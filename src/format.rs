//! The canonical layout of a `.pipeline` file, for `slipway fmt`.
//!
//! Formatting works on the Ast plus the source text, in four steps:
//!
//! 1. `Renderer` prints the Ast as lines of code only. Each line remembers
//!    the byte range of the source tokens it holds and whether it starts or
//!    ends a setting, because comments and blank lines are found by offset.
//! 2. `place_comments` puts every comment back by its offset: as a trailing
//!    comment when it sat on the same source line as the end of a code line,
//!    otherwise on a line of its own before the next code line. A comment
//!    caught inside code that is now joined onto one line (a stage header
//!    written over several lines, `=` followed by a newline) goes on its own
//!    line just before that line, so no comment is dropped or reordered.
//! 3. `mark_blank_lines` keeps one blank line wherever the source had at
//!    least one between two settings (or comments between settings).
//! 4. `align_runs` lines up `=` signs, single values and trailing comments
//!    gofmt-style, then `render` writes the text.
//!
//! The Ast must come from a file that parsed without errors: items that
//! failed to parse are not in it, and would be lost.

use crate::source::Span;
use crate::syntax::{
    Ast, Block, Clause, Comment, Expr, Item, Operand, Setting, StageDecl, Str, StrPart, Value,
};

/// A block written on one line stays on one line only up to this width.
const MAX_WIDTH: usize = 100;
const INDENT: &str = "  ";

/// Formats a file that parsed without errors. `source` is the text `ast` was
/// parsed from: comments and blank lines are found in it by offset.
#[must_use]
pub fn format(ast: &Ast, source: &str) -> String {
    let mut renderer = Renderer {
        source,
        comments: &ast.comments,
        lines: Vec::new(),
    };
    renderer.items(&ast.items);
    let mut lines = place_comments(renderer.lines, &ast.comments, source);
    mark_blank_lines(&mut lines, source);
    align_runs(&mut lines);
    render(&lines)
}

/// The Ast as JSON without spans, for checking that formatting changed
/// nothing but layout: stage clauses are put in the formatter's order (their
/// order means nothing) and comment texts lose trailing blanks (the formatter
/// trims them).
pub fn normalized_ast(ast: &Ast) -> serde_json::Value {
    let mut ast = ast.clone();
    for item in &mut ast.items {
        if let Item::Stage(stage) = item {
            stage.clauses.sort_by_key(clause_rank);
        }
    }
    for comment in &mut ast.comments {
        comment.text = comment.text.trim_end().to_string();
    }
    let mut value = serde_json::to_value(&ast).unwrap_or_default();
    remove_spans(&mut value);
    value
}

fn remove_spans(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|key, _| key != "span");
            map.values_mut().for_each(remove_spans);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(remove_spans),
        _ => {}
    }
}

// ---------------------------------------------------------------- lines

/// What a line that begins with a closing bracket closes: comments just
/// before it belong one level deeper, and blank lines only exist in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Block,
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlignKind {
    /// `KEY = value`: the `=` signs line up.
    Equals,
    /// `key value`: the values line up.
    Arg,
}

/// A setting printed on a single line, which may line up with its neighbours.
#[derive(Debug, Clone, Copy)]
struct Single {
    align: Option<AlignKind>,
    /// Bytes of the key at the start of the line, where padding goes.
    key_len: usize,
}

/// One output line: code, or an own-line comment.
#[derive(Debug, Default)]
struct Line {
    indent: usize,
    /// Without indentation; holds newlines only inside `"""` strings.
    text: String,
    /// Byte range in the source used to find comments and blank lines around
    /// the line: from its first token's start to its last token's end.
    start: usize,
    end: usize,
    /// A blank line may separate this line from the previous one (it starts a
    /// setting, or is a comment between settings).
    blank_ok_before: bool,
    /// A blank line may separate this line from the next one.
    blank_ok_after: bool,
    closes: Option<Close>,
    single: Option<Single>,
    blank_before: bool,
    /// Spaces after the key, to line up a run.
    pad: usize,
    /// `#` and its text.
    trailing: Option<String>,
    /// Spaces before the trailing comment.
    trailing_gap: usize,
}

impl Line {
    /// Columns taken by a single line, padding included, comment excluded.
    fn width(&self) -> usize {
        self.indent * INDENT.len() + self.pad + self.text.chars().count()
    }
}

// ---------------------------------------------------------------- step 1: code

struct Renderer<'a> {
    source: &'a str,
    /// Sorted by offset, as the parser leaves them.
    comments: &'a [Comment],
    lines: Vec<Line>,
}

impl Renderer<'_> {
    fn items(&mut self, items: &[Item]) {
        for item in items {
            match item {
                Item::Stage(stage) => self.stage(stage),
                Item::Setting(setting) => self.setting(setting, 0),
            }
        }
    }

    fn stage(&mut self, stage: &StageDecl) {
        let first = self.lines.len();
        self.open(0, stage.span.range().start, None);
        let header_end = stage
            .clauses
            .iter()
            .map(|c| c.span().range().end)
            .fold(stage.name.span.range().end, usize::max);
        self.push(&stage_header(stage, self.source), header_end);
        self.push(" ", 0);
        self.block(&stage.body, 0);
        self.mark_setting(first, None);
    }

    fn setting(&mut self, setting: &Setting, indent: usize) {
        let first = self.lines.len();
        self.open(indent, setting.key.span.range().start, None);
        self.push(&setting.key.name, setting.key.span.range().end);
        for arg in &setting.args {
            self.push(" ", 0);
            self.value(arg, indent);
        }
        if let Some(value) = &setting.assign {
            self.push(" = ", 0);
            self.value(value, indent);
        }
        if let Some(block) = &setting.block {
            self.push(" ", 0);
            self.block(block, indent);
        }
        let single = Single {
            align: align_kind(setting),
            key_len: setting.key.name.len(),
        };
        self.mark_setting(first, Some(single));
    }

    /// Marks lines `first..` as one setting; `single` applies if it fit on one line.
    fn mark_setting(&mut self, first: usize, single: Option<Single>) {
        let one_line = self.lines.len() == first + 1;
        if let Some(line) = self.lines.get_mut(first) {
            line.blank_ok_before = true;
            if one_line && !line.text.contains('\n') {
                line.single = single.or(Some(Single {
                    align: None,
                    key_len: 0,
                }));
            }
        }
        if let Some(line) = self.lines.last_mut() {
            line.blank_ok_after = true;
        }
    }

    fn value(&mut self, value: &Value, indent: usize) {
        match value {
            Value::List { items, span } if self.spans_lines(*span) => {
                self.long_list(items, *span, indent);
            }
            _ => self.push(&inline_value(value), value.span().range().end),
        }
    }

    /// A list written over several lines: one item per line, trailing commas.
    fn long_list(&mut self, items: &[Value], span: Span, indent: usize) {
        let range = span.range();
        if items.is_empty() && !self.has_comment_in(span) {
            self.push("[]", range.end);
            return;
        }
        self.push("[", range.start + 1);
        for item in items {
            self.open(indent + 1, item.span().range().start, None);
            self.value(item, indent + 1);
            self.push(",", 0);
        }
        self.open(indent, range.end.saturating_sub(1), Some(Close::List));
        self.push("]", range.end);
    }

    fn block(&mut self, block: &Block, indent: usize) {
        let range = block.span.range();
        if block.settings.is_empty() && !self.has_comment_in(block.span) {
            self.push("{}", range.end);
            return;
        }
        // No newline between the braces also means no comment inside.
        if !self.spans_lines(block.span) {
            if let Some(text) = inline_block(block) {
                if self.width() + text.chars().count() <= MAX_WIDTH {
                    self.push(&text, range.end);
                    return;
                }
            }
        }
        self.push("{", range.start + 1);
        for setting in &block.settings {
            self.setting(setting, indent + 1);
        }
        self.open(indent, range.end.saturating_sub(1), Some(Close::Block));
        self.push("}", range.end);
    }

    fn open(&mut self, indent: usize, start: usize, closes: Option<Close>) {
        self.lines.push(Line {
            indent,
            start,
            end: start,
            closes,
            ..Line::default()
        });
    }

    /// Appends to the current line; `end` is the source offset reached, or 0
    /// for text that has no source of its own, such as spaces.
    fn push(&mut self, text: &str, end: usize) {
        if let Some(line) = self.lines.last_mut() {
            line.text.push_str(text);
            line.end = line.end.max(end);
        }
    }

    /// Columns used so far on the current output line.
    fn width(&self) -> usize {
        self.lines
            .last()
            .map_or(0, |line| match line.text.rsplit_once('\n') {
                Some((_, tail)) => tail.chars().count(),
                None => line.indent * INDENT.len() + line.text.chars().count(),
            })
    }

    fn spans_lines(&self, span: Span) -> bool {
        self.source.get(span.range()).is_some_and(has_newline)
    }

    fn has_comment_in(&self, span: Span) -> bool {
        let range = span.range();
        let i = self
            .comments
            .partition_point(|c| (c.span.start as usize) < range.start);
        self.comments
            .get(i)
            .is_some_and(|c| (c.span.start as usize) < range.end)
    }
}

/// Which neighbours a setting lines up with, if any.
fn align_kind(setting: &Setting) -> Option<AlignKind> {
    if setting.block.is_some() {
        return None;
    }
    match (setting.args.len(), &setting.assign) {
        (0, Some(_)) => Some(AlignKind::Equals),
        (1, None) => Some(AlignKind::Arg),
        _ => None,
    }
}

/// `stage NAME after a, b uses t when EXPR`, clauses in canonical order.
fn stage_header(stage: &StageDecl, source: &str) -> String {
    let mut clauses: Vec<&Clause> = stage.clauses.iter().collect();
    // Stable, so repeated clauses (an error the checker reports) keep their order.
    clauses.sort_by_key(|c| clause_rank(c));
    let mut out = format!("{} {}", stage.kind.keyword(), stage.name.name);
    for clause in clauses {
        out.push(' ');
        out.push_str(clause.keyword());
        out.push(' ');
        match clause {
            Clause::After { names, .. } => {
                let names: Vec<&str> = names.iter().map(|n| n.name.as_str()).collect();
                out.push_str(&names.join(", "));
            }
            Clause::Uses { template, .. } => out.push_str(&template.name),
            Clause::When { expr, .. } => write_expr(&mut out, expr, source),
        }
    }
    out
}

fn clause_rank(clause: &Clause) -> u8 {
    match clause {
        Clause::After { .. } => 0,
        Clause::Uses { .. } => 1,
        Clause::When { .. } => 2,
    }
}

/// `{ setting }` on one line, or `None` if it cannot be (the grammar allows
/// only one setting before a `}` on the same line, so this is a safeguard).
fn inline_block(block: &Block) -> Option<String> {
    match block.settings.as_slice() {
        [] => Some("{}".to_string()),
        [setting] => Some(format!("{{ {} }}", inline_setting(setting)?)),
        _ => None,
    }
}

fn inline_setting(setting: &Setting) -> Option<String> {
    let mut out = setting.key.name.clone();
    for arg in &setting.args {
        out.push(' ');
        out.push_str(&inline_value(arg));
    }
    if let Some(value) = &setting.assign {
        out.push_str(" = ");
        out.push_str(&inline_value(value));
    }
    if let Some(block) = &setting.block {
        out.push(' ');
        out.push_str(&inline_block(block)?);
    }
    Some(out)
}

fn inline_value(value: &Value) -> String {
    match value {
        Value::Str(s) => str_text(s),
        Value::Number { value, .. } => value.to_string(),
        Value::Duration { text, .. } => text.clone(),
        Value::Bool { value, .. } => value.to_string(),
        Value::Word(word) => word.name.clone(),
        Value::List { items, .. } => {
            let items: Vec<String> = items.iter().map(inline_value).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A string as written: its parts hold the raw source text. `"""` strings
/// come out byte for byte, never re-indented: their value is their raw
/// content dedented, so moving their lines could change it.
fn str_text(s: &Str) -> String {
    let quote = if s.triple { "\"\"\"" } else { "\"" };
    let mut out = String::from(quote);
    for part in &s.parts {
        match part {
            StrPart::Text(text) => out.push_str(text),
            StrPart::Escape { ch, .. } => {
                out.push('\\');
                out.push(*ch);
            }
            StrPart::Interp { body, .. } => {
                out.push_str("${");
                out.push_str(body);
                out.push('}');
            }
        }
    }
    out.push_str(quote);
    out
}

/// A condition; `source` is its file's text, for the parts the parser
/// could not build (written as they were).
fn write_expr(out: &mut String, expr: &Expr, source: &str) {
    match expr {
        Expr::Or(..) => write_chain(out, expr, " || ", source),
        Expr::And(..) => write_chain(out, expr, " && ", source),
        Expr::Not { .. } => {
            // A loop, since `!!!…` nests as deep as it is long.
            let mut inner = expr;
            while let Expr::Not { expr, .. } = inner {
                out.push('!');
                inner = expr;
            }
            write_expr(out, inner, source);
        }
        Expr::Group { expr, .. } => {
            out.push('(');
            write_expr(out, expr, source);
            out.push(')');
        }
        Expr::Compare { lhs, op, rhs } => {
            write_operand(out, lhs);
            out.push(' ');
            out.push_str(op.as_str());
            out.push(' ');
            write_operand(out, rhs);
        }
        Expr::Operand(operand) => write_operand(out, operand),
        Expr::Error { span } => {
            out.push_str(
                source
                    .get(span.start as usize..span.end as usize)
                    .unwrap_or(""),
            );
        }
    }
}

/// The operands of `a || b` or `a && b`, and the operator as printed.
fn binary(expr: &Expr) -> Option<(&Expr, &Expr, &'static str)> {
    match expr {
        Expr::Or(l, r) => Some((l, r, " || ")),
        Expr::And(l, r) => Some((l, r, " && ")),
        _ => None,
    }
}

/// `a || b || c`. The parser nests a chain to the left, one level per
/// operator, so walk down it in a loop rather than recursing that deep.
fn write_chain(out: &mut String, expr: &Expr, op: &str, source: &str) {
    let mut rights = Vec::new();
    let mut left = expr;
    while let Some((l, r, _)) = binary(left).filter(|&(_, _, o)| o == op) {
        rights.push(r);
        left = l;
    }
    write_expr(out, left, source);
    for right in rights.iter().rev() {
        out.push_str(op);
        write_expr(out, right, source);
    }
}

fn write_operand(out: &mut String, operand: &Operand) {
    match operand {
        Operand::Path { path, .. } => out.push_str(path),
        Operand::Str(s) => out.push_str(&str_text(s)),
        Operand::Bool { value, .. } => out.push_str(if *value { "true" } else { "false" }),
        Operand::Call { name, args, .. } => {
            let args: Vec<String> = args.iter().map(inline_value).collect();
            out.push_str(&name.name);
            out.push('(');
            out.push_str(&args.join(", "));
            out.push(')');
        }
    }
}

// ---------------------------------------------------------------- step 2: comments

/// Merges the comments into the code lines, in source order.
fn place_comments(code: Vec<Line>, comments: &[Comment], source: &str) -> Vec<Line> {
    let starts: Vec<usize> = code.iter().map(|line| line.start).collect();
    let mut pending = comments.iter().peekable();
    let mut out = Vec::with_capacity(code.len() + comments.len());
    for (i, mut line) in code.into_iter().enumerate() {
        // Before the line, or inside it (hoisted above it).
        while let Some(comment) = pending.next_if(|c| (c.span.start as usize) < line.end) {
            out.push(own_line_comment(comment, &line));
        }
        let next_start = starts.get(i + 1).copied().unwrap_or(usize::MAX);
        let trailing = pending.next_if(|c| {
            let at = c.span.start as usize;
            at < next_start
                && source
                    .get(line.end..at)
                    .is_some_and(|gap| !has_newline(gap))
        });
        if let Some(comment) = trailing {
            line.trailing = Some(comment_text(comment));
            line.trailing_gap = 1;
        }
        out.push(line);
    }
    for comment in pending {
        out.push(Line {
            text: comment_text(comment),
            start: comment.span.range().start,
            end: comment.span.range().end,
            blank_ok_before: true,
            blank_ok_after: true,
            ..Line::default()
        });
    }
    out
}

/// A comment on its own line just before `next`.
fn own_line_comment(comment: &Comment, next: &Line) -> Line {
    let range = comment.span.range();
    // Comments after the last setting of a block stay inside it.
    let indent = next.indent + usize::from(next.closes.is_some());
    let between_settings = match next.closes {
        Some(Close::Block) => true,
        Some(Close::List) => false,
        None => next.blank_ok_before,
    };
    let hoisted = range.start >= next.start;
    Line {
        indent,
        text: comment_text(comment),
        // A comment taken out of `next` stands where `next` starts, so blank
        // lines are looked for before `next`, never between the two.
        start: if hoisted { next.start } else { range.start },
        end: if hoisted { next.start } else { range.end },
        blank_ok_before: between_settings,
        blank_ok_after: between_settings && !hoisted,
        ..Line::default()
    }
}

/// `\r` alone also ends a line in the grammar.
fn has_newline(text: &str) -> bool {
    text.contains(['\n', '\r'])
}

fn comment_text(comment: &Comment) -> String {
    format!("#{}", comment.text.trim_end())
}

// ---------------------------------------------------------------- steps 3 and 4

fn mark_blank_lines(lines: &mut [Line], source: &str) {
    for i in 1..lines.len() {
        let (prev, next) = (&lines[i - 1], &lines[i]);
        let gap = source.get(prev.end..next.start).unwrap_or("");
        lines[i].blank_before = prev.blank_ok_after && next.blank_ok_before && has_blank_line(gap);
    }
}

/// Whether the source between two lines holds an empty line. The gap's first
/// piece is the rest of the earlier line (maybe a trailing comment) and its
/// last is the indentation of the later one; a `\` alone on a line is blank
/// too, since continuations are only whitespace.
fn has_blank_line(gap: &str) -> bool {
    let pieces: Vec<&str> = gap.split('\n').collect();
    let inner = pieces.get(1..pieces.len().saturating_sub(1)).unwrap_or(&[]);
    inner.iter().any(|piece| {
        piece
            .trim_matches(|c: char| c.is_whitespace() || c == '\\')
            .is_empty()
    })
}

/// Runs are consecutive single-line settings of one block with no blank line
/// or own-line comment between them.
fn align_runs(lines: &mut [Line]) {
    let mut i = 0;
    while i < lines.len() {
        let len = run_len(&lines[i..]);
        if len == 0 {
            i += 1;
        } else {
            align_run(&mut lines[i..i + len]);
            i += len;
        }
    }
}

fn run_len(lines: &[Line]) -> usize {
    let Some(first) = lines.first().filter(|line| line.single.is_some()) else {
        return 0;
    };
    let rest = lines.get(1..).unwrap_or(&[]);
    1 + rest
        .iter()
        .take_while(|l| l.single.is_some() && !l.blank_before && l.indent == first.indent)
        .count()
}

fn align_run(run: &mut [Line]) {
    for kind in [AlignKind::Equals, AlignKind::Arg] {
        let key_len = |line: &Line| {
            line.single
                .filter(|s| s.align == Some(kind))
                .map(|s| s.key_len)
        };
        let Some(widest) = run.iter().filter_map(key_len).max() else {
            continue;
        };
        for line in run.iter_mut() {
            if let Some(len) = key_len(line) {
                line.pad = widest - len;
            }
        }
    }
    // Trailing comments on consecutive lines share a column; a comment alone
    // keeps its single space.
    let mut i = 0;
    while i < run.len() {
        let group = run[i..].iter().take_while(|l| l.trailing.is_some()).count();
        if group == 0 {
            i += 1;
            continue;
        }
        let lines = &mut run[i..i + group];
        let column = lines.iter().map(Line::width).max().unwrap_or(0) + 1;
        for line in lines.iter_mut() {
            line.trailing_gap = column - line.width();
        }
        i += group;
    }
}

fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for line in lines {
        if line.blank_before {
            out.push('\n');
        }
        out.push_str(&INDENT.repeat(line.indent));
        let split = line
            .single
            .and_then(|s| line.text.split_at_checked(s.key_len));
        match split {
            Some((key, rest)) if line.pad > 0 => {
                out.push_str(key);
                out.push_str(&" ".repeat(line.pad));
                out.push_str(rest);
            }
            _ => out.push_str(&line.text),
        }
        if let Some(comment) = &line.trailing {
            out.push_str(&" ".repeat(line.trailing_gap));
            out.push_str(comment);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileId;
    use crate::syntax::parse;

    /// Formats `source` and checks what must hold for any input: the result
    /// parses to the same Ast (spans aside), formats to itself, and follows
    /// the layout rules.
    fn fmt(source: &str) -> String {
        let (ast, diags) = parse(FileId(0), source);
        assert!(diags.is_empty(), "input does not parse: {diags:#?}");
        let once = format(&ast, source);
        let (again, diags) = parse(FileId(0), &once);
        assert!(
            diags.is_empty(),
            "output does not parse: {diags:#?}\n{once}"
        );
        assert_eq!(
            normalized_ast(&ast),
            normalized_ast(&again),
            "Ast changed:\n{once}"
        );
        assert_eq!(format(&again, &once), once, "not idempotent");
        assert_layout(&once);
        once
    }

    /// The layout rules, for inputs without trailing blanks inside `"""`.
    fn assert_layout(text: &str) {
        if text.is_empty() {
            return;
        }
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{text}");
        assert!(!text.starts_with('\n'), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines {
            assert_eq!(*line, line.trim_end(), "trailing blanks:\n{text}");
        }
        for pair in lines.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            assert!(
                !(prev.is_empty() && next.is_empty()),
                "two blank lines:\n{text}"
            );
            assert!(
                !(prev.ends_with('{') && next.is_empty()),
                "blank after `{{`:\n{text}"
            );
            assert!(
                !(prev.is_empty() && next.trim_start().starts_with('}')),
                "blank before `}}`:\n{text}"
            );
        }
    }

    #[test]
    fn chat_example() {
        let out = fmt(include_str!("../examples/chat/chat.pipeline"));
        insta::assert_snapshot!("chat", out);
    }

    /// Every `.pipeline` file under `examples/` that parses.
    #[test]
    fn every_example_is_stable() {
        let mut dirs = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")];
        let mut seen = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("examples are readable") {
                let path = entry.expect("examples are readable").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "pipeline") {
                    let text = std::fs::read_to_string(&path).expect("examples are text");
                    if parse(FileId(0), &text).1.is_empty() {
                        fmt(&text);
                        seen += 1;
                    }
                }
            }
        }
        assert!(seen >= 3, "only {seen} examples found");
    }

    #[test]
    fn messy_input_becomes_canonical() {
        let messy = r#"
   # leading comment, indented
pipeline   "demo"      # the name



env {

  A = "1"
    LONG_NAME="2"   # trailing
  B    =    ["x","y" ,"z"]

}
stage   build   when branch=="main"   uses   rust   after  fetch ,lint {
  image    "rust:1"
  timeout 10m   # long builds
  retry 007 # flaky
  offset -3
  run """
    cargo build
  """
  cache [
     "target",   # build dir
     "~/.cargo"
  ]
  # end of build
}
finally   cleanup{run "true"}
# end of file
"#;
        insta::assert_snapshot!("messy", fmt(messy));
    }

    #[test]
    fn comments_are_kept_everywhere() {
        let src = r#"# file header

# second header paragraph
pipeline "c" # name

env { # after open brace
  # first in block
  A = "1" # a
  BB = "2" # bb


  # own line between
  CCC = "3"
  # last in block
} # after close brace

stage s   # after stage name
  after a,   # after a comma
        b
  # between clauses
  when x == "y" &&   # inside the expression
       !changed("docs/**")
{ # after the body's brace
  run "x"
  service db {
    image "postgres" # nested trailing
    # nested last
  }
  # after nested block
}

stage empty {
  # only a comment
}

stage empty2 { # only trailing
}

env { A = "1" } # after a one-line block
env { A = "1"   # inside a block written on one line
}

list [ # after open bracket
  "a", # a
  # own line in list

  "b"
  # before close bracket
]
image "x" = # after the equals sign
  "y"
# end 1

# end 2
"#;
        let out = fmt(src);
        insta::assert_snapshot!("comments", out);
        let (ast, _) = parse(FileId(0), src);
        let (again, _) = parse(FileId(0), &out);
        let texts = |a: &Ast| {
            a.comments
                .iter()
                .map(|c| c.text.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&ast), texts(&again));
    }

    #[test]
    fn runs_align_keys_values_and_comments() {
        let src = r#"build {
  dockerfile "Dockerfile" # d
  target "release"
  tag "x" # t1
  push true # p
  label "a" = "b"
  wait 5m
  # a comment ends the run
  retry 2 # r
  x = 1 # x
  LONGER = 2
  ab = 3

  after_blank = 1
  y 1
  nested {
    z 1
  }
  k = 1
}
"#;
        insta::assert_snapshot!("runs", fmt(src));
    }

    #[test]
    fn blocks_stay_on_one_line_only_when_written_so_and_short() {
        let src = r#"environment staging { env { REPLICAS = "1" } }
environment production-with-a-long-name { env { SOME_VERY_LONG_VARIABLE_NAME = "a value that goes past the limit" } }
environment split {
  env { REPLICAS = "1" } }
empty {}
empty {
}
stage one { run "x" }
stage two after one
{ run "y" }
"#;
        let out = fmt(src);
        assert_eq!(
            out,
            r#"environment staging { env { REPLICAS = "1" } }
environment production-with-a-long-name {
  env { SOME_VERY_LONG_VARIABLE_NAME = "a value that goes past the limit" }
}
environment split {
  env { REPLICAS = "1" }
}
empty {}
empty {}
stage one { run "x" }
stage two after one { run "y" }
"#
        );
    }

    #[test]
    fn lists_keep_their_shape() {
        let src = r#"a ["x",  "y"]
b [
  "x", "y"]
c [
]
d []
e [["x"], [
  "y"
]]
"#;
        assert_eq!(
            fmt(src),
            r#"a ["x", "y"]
b [
  "x",
  "y",
]
c []
d []
e [
  ["x"],
  [
    "y",
  ],
]
"#
        );
    }

    #[test]
    fn strings_are_written_as_they_were() {
        let src = r#"stage t {
    run """
      echo one
	echo two  ${x}
    """
  script = """no newline"""
  files ["""
a""", "b"]
  note "esc \" \\ \n \$ ${x} $y"
}
"#;
        let out = fmt(src);
        assert!(
            out.contains("run \"\"\"\n      echo one\n\techo two  ${x}\n    \"\"\"\n"),
            "{out}"
        );
        assert!(out.contains(r#"  note "esc \" \\ \n \$ ${x} $y""#), "{out}");
        assert!(
            out.contains("  files [\n    \"\"\"\na\"\"\",\n    \"b\",\n  ]\n"),
            "{out}"
        );
    }

    /// A part of a condition the parser could not build is written as it
    /// was, never dropped.
    #[test]
    fn unbuilt_conditions_are_written_as_they_were() {
        let src = "stage a when branch ==  \"main\" || tag {}\n";
        let (mut ast, _) = parse(FileId(0), src);
        let Some(Item::Stage(stage)) = ast.items.first_mut() else {
            panic!("no stage");
        };
        let Some(Clause::When { expr, .. }) = stage.clauses.first_mut() else {
            panic!("no condition");
        };
        let Expr::Or(left, _) = expr else {
            panic!("not `||`: {expr:?}");
        };
        **left = Expr::Error { span: left.span() };
        assert_eq!(
            format(&ast, src),
            "stage a when branch ==  \"main\" || tag {}\n"
        );
    }

    #[test]
    fn stage_headers_are_canonical() {
        let src = r#"stage a when x uses t after b, c {}
stage b   when (branch == "main" || tag =~ "^v")&&!( env.SKIP=="1" )||!!x {}
stage c when a uses t after b when c after d {}
finally f after a {}
stage d after x,
  y, z \
  uses t {}
"#;
        assert_eq!(
            fmt(src),
            r#"stage a after b, c uses t when x {}
stage b when (branch == "main" || tag =~ "^v") && !(env.SKIP == "1") || !!x {}
stage c after b after d uses t when a when c {}
finally f after a {}
stage d after x, y, z uses t {}
"#
        );
    }

    #[test]
    fn calls_in_conditions() {
        let src = "stage a when changed( \"a\",[\"b\" ,\n \"c\"] ) && f() {}\n";
        assert_eq!(
            fmt(src),
            "stage a when changed(\"a\", [\"b\", \"c\"]) && f() {}\n"
        );
    }

    #[test]
    fn continuations_are_joined() {
        let src = "stage a \\\n  after b {\n  run \\\n    \"x\" \\\n    = \"y\"\n}\n";
        assert_eq!(fmt(src), "stage a after b {\n  run \"x\" = \"y\"\n}\n");
    }

    #[test]
    fn crlf_formats_like_lf() {
        let lf = "# c\r\nenv {\n  A = \"1\" # a\n\n  BB = \"2\"\n}\n\nstage s {\n  run \"x\"\n}\n";
        let lf = lf.replace('\r', "");
        assert_eq!(fmt(&lf.replace('\n', "\r\n")), fmt(&lf));
    }

    #[test]
    fn empty_and_comment_only_files() {
        assert_eq!(fmt(""), "");
        assert_eq!(fmt("\n\n"), "");
        assert_eq!(fmt("  # one   \n\n\n# two\n"), "# one\n\n# two\n");
    }

    /// The chat example with a comment, blank line or continuation added at
    /// the end of each line in turn, wherever that still parses to the same
    /// items (not inside a `"""` string).
    #[test]
    fn chat_example_with_extra_trivia_on_every_line() {
        let text = include_str!("../examples/chat/chat.pipeline");
        let items = |t: &str| normalized_ast(&parse(FileId(0), t).0)["items"].clone();
        let original = items(text);
        let mut checked = 0;
        for (at, _) in text.match_indices('\n') {
            for extra in [" # trailing", "\n# own", "\n\n  # indented\n", " \\"] {
                let mut t = text.to_string();
                t.insert_str(at, extra);
                if parse(FileId(0), &t).1.is_empty() && items(&t) == original {
                    fmt(&t);
                    checked += 1;
                }
            }
        }
        assert!(checked > 200, "only {checked} variants checked");
    }

    #[test]
    fn long_condition_chains_do_not_recurse_per_operator() {
        // The longest chain the parser accepts (it rejects longer ones).
        const N: usize = 250;
        let terms: Vec<String> = (0..N).map(|i| format!("x{i}")).collect();
        let src = format!("stage a when {} {{}}\n", terms.join(" || "));
        let (ast, diags) = parse(FileId(0), &src);
        assert!(diags.is_empty());
        let out = format(&ast, &src);
        assert_eq!(out, src);
        let too_long = format!(
            "stage a when {} {{}}\n",
            (0..5_000)
                .map(|i| format!("x{i}"))
                .collect::<Vec<_>>()
                .join(" || ")
        );
        let (_, diags) = parse(FileId(0), &too_long);
        assert_eq!(diags.len(), 1, "{diags:?}");
    }
}
