//! Completion by context, read from the text around the cursor (the line
//! being typed rarely parses): inside `${`, the names in scope; in a stage
//! header, stage names after `after` or `,`, template names after `uses`,
//! the clause keywords; at the start of a line, the settings allowed in the
//! block the cursor is in.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use lsp_types::{CompletionItem, CompletionItemKind, CompletionTextEdit, Range, TextEdit};
use regex::Regex;

use super::analysis::Analysis;
use super::index::written;
use super::position::position;
use crate::model::{Context, GitField, Inside, inside};
use crate::source::{FileId, SourceFile};
use crate::syntax::{Segment, StageKind, segments, top_level_line_after};

/// `NAME =` at the start of a line or after `{`: an `env` or `matrix` key.
static ASSIGNED: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?m)(?:^|\{)[ \t]*([A-Za-z_][A-Za-z0-9_-]*)[ \t]*=(?:[^=~]|$)").ok()
});

const CLAUSES: [&str; 3] = ["after", "uses", "when"];
const CONDITION_WORDS: [&str; 4] = ["branch", "tag", "environment", "changed"];

pub(crate) fn complete(
    a: &Analysis,
    file: FileId,
    offset: u32,
    trigger: Option<&str>,
) -> Vec<CompletionItem> {
    let source = a.sources.get(file);
    let text = source.text.as_str();
    let at = (offset as usize).min(text.len());
    if !text.is_char_boundary(at) {
        return Vec::new();
    }
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..at];
    let word_len: usize = before
        .chars()
        .rev()
        .take_while(|c| is_ident_char(*c))
        .map(char::len_utf8)
        .sum();
    let prefix = &before[..before.len() - word_len];

    if let Some(i) = before.rfind("${").filter(|i| !before[*i..].contains('}')) {
        let inside = &before[i + 2..];
        let start = line_start + i + 2 + (inside.len() - inside.trim_start().len());
        return interpolation(a, source, start, at, prefix);
    }
    let start = item_start(text, at);
    let header = &text[start..at - word_len];
    let keyword = header.split_whitespace().next().unwrap_or("");
    if matches!(keyword, "stage" | "finally") && !header.contains('{') {
        return header_items(a, header);
    }
    if prefix.trim().is_empty() {
        // Typing indentation is no reason to show a list.
        if trigger == Some(" ") {
            return Vec::new();
        }
        return block_context(text, line_start)
            .map(|ctx| {
                ctx.keys()
                    .map(|k| item(k, CompletionItemKind::KEYWORD, None))
                    .collect()
            })
            .unwrap_or_default();
    }
    Vec::new()
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn item(label: &str, kind: CompletionItemKind, detail: Option<String>) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail,
        ..CompletionItem::default()
    }
}

/// The start of the top-level item around `at`: the last line at or before
/// it that begins, unindented, with a letter.
fn item_start(text: &str, at: usize) -> usize {
    let mut line = text[..at].rfind('\n').map_or(0, |i| i + 1);
    loop {
        if text[line..].starts_with(|c: char| c.is_ascii_alphabetic()) || line == 0 {
            return line;
        }
        line = text[..line - 1].rfind('\n').map_or(0, |i| i + 1);
    }
}

/// The end of the top-level item that starts at `start`.
fn item_end(text: &str, start: usize) -> usize {
    top_level_line_after(text, start)
}

/// In a stage header: what may come where the cursor is.
fn header_items(a: &Analysis, header: &str) -> Vec<CompletionItem> {
    let spaced = header.replace(',', " , ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    // Still typing the stage's name, or right after it with no space.
    if tokens.len() < 2 || !header.ends_with([' ', '\t', ',', '\n']) {
        return Vec::new();
    }
    let name = tokens[1];
    let clause = tokens.iter().rev().find(|t| CLAUSES.contains(t)).copied();
    let last = tokens.last().copied().unwrap_or("");
    match (clause, last) {
        (_, "uses") => a
            .index
            .templates
            .iter()
            .map(|t| {
                let detail = t
                    .image
                    .map(|i| format!("template · image {}", written(&a.sources, i)));
                item(&t.name.name, CompletionItemKind::CLASS, detail)
            })
            .collect(),
        (Some("after"), "after" | ",") => {
            let listed: Vec<&str> = tokens
                .iter()
                .rev()
                .take_while(|t| **t != "after")
                .copied()
                .collect();
            let mut seen = Vec::new();
            a.index
                .stages
                .iter()
                .filter(|s| s.kind == StageKind::Stage && s.name.name != name)
                .filter(|s| !listed.contains(&s.name.name.as_str()))
                .filter(|s| {
                    let new = !seen.contains(&&s.name.name);
                    seen.push(&s.name.name);
                    new
                })
                .map(|s| {
                    let detail = s.image.map_or_else(
                        || "stage".to_string(),
                        |i| format!("stage · image {}", written(&a.sources, i)),
                    );
                    item(&s.name.name, CompletionItemKind::FUNCTION, Some(detail))
                })
                .collect()
        }
        (Some("when"), _) => {
            let mut out: Vec<CompletionItem> = CONDITION_WORDS
                .iter()
                .map(|w| item(w, CompletionItemKind::KEYWORD, None))
                .collect();
            let mut names: Vec<&str> = a.index.env.iter().map(|i| i.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            out.extend(
                names
                    .into_iter()
                    .map(|n| item(&format!("env.{n}"), CompletionItemKind::VARIABLE, None)),
            );
            out
        }
        _ => {
            let used: Vec<&str> = tokens
                .iter()
                .filter(|t| CLAUSES.contains(t))
                .copied()
                .collect();
            CLAUSES
                .iter()
                .filter(|c| !used.contains(c))
                .map(|c| item(c, CompletionItemKind::KEYWORD, None))
                .collect()
        }
    }
}

/// Inside `${`: env and matrix names in scope, `environment`, the `git.`
/// values, and secrets on an `env` line. Each item replaces what is typed
/// after `${`, dots included (which editors do not count as part of a word).
fn interpolation(
    a: &Analysis,
    source: &SourceFile,
    start: usize,
    at: usize,
    prefix: &str,
) -> Vec<CompletionItem> {
    let text = source.text.as_str();
    let range = Range {
        start: position(source, u32::try_from(start).unwrap_or(u32::MAX)),
        end: position(source, u32::try_from(at).unwrap_or(u32::MAX)),
    };
    // Name → what it is; sorted, one each.
    let mut names: BTreeMap<String, (CompletionItemKind, String)> = BTreeMap::new();
    for id in &a.index.env {
        names.insert(
            id.name.clone(),
            (CompletionItemKind::VARIABLE, "env".into()),
        );
    }
    let item = item_start(text, at);
    let end = item_end(text, item);
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let body = &text[item..end];
    let header = body.split('{').next().unwrap_or("");
    let mut words = header.split_whitespace();
    if let Some(template) = words
        .by_ref()
        .skip_while(|w| *w != "uses")
        .nth(1)
        .and_then(|t| a.index.template(t))
    {
        for id in &template.locals {
            names.insert(
                id.name.clone(),
                (
                    CompletionItemKind::VARIABLE,
                    format!("from template `{}`", template.name.name),
                ),
            );
        }
    }
    if let Some(re) = ASSIGNED.as_ref() {
        // Not the line being typed: `IMAGE = "${IMAGE}"` is a cycle.
        for part in [
            &text[item..line_start.max(item)],
            &text[line_end.min(end)..end],
        ] {
            for c in re.captures_iter(part) {
                if let Some(m) = c.get(1) {
                    names.insert(
                        m.as_str().to_string(),
                        (CompletionItemKind::VARIABLE, "local".into()),
                    );
                }
            }
        }
    }
    names.insert(
        "environment".into(),
        (
            CompletionItemKind::CONSTANT,
            "the `--env` environment".into(),
        ),
    );
    for (field, _) in GitField::ALL {
        names.insert(
            format!("git.{field}"),
            (CompletionItemKind::CONSTANT, "git".into()),
        );
    }
    let assignment = ASSIGNED.as_ref().is_some_and(|re| re.is_match(prefix));
    if assignment {
        for s in &a.index.secrets {
            names.insert(
                format!("secret.{}", s.name),
                (CompletionItemKind::CONSTANT, "secret".into()),
            );
        }
    }
    names
        .into_iter()
        .map(|(name, (kind, detail))| CompletionItem {
            label: name.clone(),
            kind: Some(kind),
            detail: Some(detail),
            filter_text: Some(name.clone()),
            text_edit: Some(CompletionTextEdit::Edit(TextEdit {
                range,
                new_text: name,
            })),
            ..CompletionItem::default()
        })
        .collect()
}

/// The block a line at `line_start` is in, from the brackets before it
/// (strings and comments skipped): `None` inside `env` or `matrix`, where
/// lines start with names of one's own.
fn block_context(text: &str, line_start: usize) -> Option<Context> {
    let bytes = text.as_bytes();
    let first_word = |from: usize| -> &str {
        let rest = text[from..].trim_start_matches([' ', '\t']);
        let len = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
        &rest[..len]
    };
    let mut stack: Vec<&str> = Vec::new();
    let mut item_word = first_word(0);
    let mut line_word = item_word;
    let end = line_start.min(bytes.len());
    for (kind, range) in segments(text) {
        if range.start >= end {
            break;
        }
        if kind != Segment::Code {
            continue;
        }
        for i in range.start..range.end.min(end) {
            match bytes[i] {
                b'\n' => {
                    line_word = first_word(i + 1);
                    if stack.is_empty()
                        && text[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic())
                    {
                        item_word = line_word;
                    }
                }
                b'{' => stack.push(if stack.is_empty() {
                    item_word
                } else {
                    line_word
                }),
                b'}' => {
                    stack.pop();
                }
                _ => {}
            }
        }
    }
    match stack.last() {
        None => Some(Context::Top),
        Some(word) => match inside(word) {
            Inside::Settings(ctx) => Some(ctx),
            Inside::Names | Inside::Nothing => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_decides_the_keywords() {
        let text = "stage a after b {\n  build \".\" {\n    tag \"x{\"\n    \n  }\n  \n}\n";
        let at = |needle: &str| text.find(needle).map(|i| i + needle.len()).unwrap_or(0);
        assert_eq!(block_context(text, 0), Some(Context::Top));
        assert_eq!(
            block_context(text, at("tag \"x{\"\n")),
            Some(Context::Build)
        );
        assert_eq!(block_context(text, at("  }\n")), Some(Context::Stage));
        assert_eq!(block_context(text, text.len()), Some(Context::Top));
        let env = "env {\n  A = \"1\"\n";
        assert_eq!(block_context(env, env.len()), None);
    }

    #[test]
    fn items_start_at_unindented_lines() {
        let text = "stage a {\n  run \"x\"\n}\nstage b {\n  run \"y\"\n}\n";
        let inside_b = text.find("\"y\"").unwrap_or(0);
        assert_eq!(
            item_start(text, inside_b),
            text.find("stage b").unwrap_or(0)
        );
        assert_eq!(item_end(text, 0), text.find("}\nstage b").unwrap_or(0) + 2);
    }
}
