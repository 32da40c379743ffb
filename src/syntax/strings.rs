//! What a string literal means: escapes applied, triple-quoted strings
//! dedented, and `${...}` references split out with their spans.

use super::ast::{Str, StrPart};
use crate::diagnostic::{Code, Diag};
use crate::source::Span;

/// A piece of a string's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    /// `${body}`, with the span of the whole `${...}`.
    Var {
        body: String,
        span: Span,
    },
}

/// The string's value with `${...}` kept as written: what `run` scripts get,
/// since the shell expands them, not slipway.
pub fn raw_value(s: &Str, diags: &mut Vec<Diag>) -> String {
    let mut out = String::new();
    for p in value_pieces(s, diags) {
        match p {
            Piece::Lit(t) => out.push_str(&t),
            Piece::Var { body, .. } => {
                out.push_str("${");
                out.push_str(&body);
                out.push('}');
            }
        }
    }
    out
}

/// The string's value as literal text and references, in order, adjacent
/// literals merged.
pub fn value_pieces(s: &Str, diags: &mut Vec<Diag>) -> Vec<Piece> {
    if s.triple {
        return triple_pieces(s);
    }
    let mut pieces: Vec<Piece> = Vec::new();
    let push_lit = |pieces: &mut Vec<Piece>, text: &str| match pieces.last_mut() {
        Some(Piece::Lit(t)) => t.push_str(text),
        _ => pieces.push(Piece::Lit(text.to_string())),
    };
    for part in &s.parts {
        match part {
            StrPart::Text(t) => push_lit(&mut pieces, t),
            StrPart::Escape { ch, span } => match unescape(*ch) {
                Some(c) => push_lit(&mut pieces, c.encode_utf8(&mut [0; 4])),
                None => diags.push(
                    Diag::error(Code::BadString, *span, format!("unknown escape `\\{ch}`"))
                        .label("not an escape")
                        .help(r#"escapes are \" \\ \n \t and \$; write \\ for a backslash"#),
                ),
            },
            StrPart::Interp { body, span } => pieces.push(Piece::Var {
                body: body.clone(),
                span: *span,
            }),
        }
    }
    pieces
}

fn unescape(ch: char) -> Option<char> {
    Some(match ch {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        '"' => '"',
        '\\' => '\\',
        '$' => '$',
        _ => return None,
    })
}

/// `"""` strings: raw text, first newline dropped, common indentation removed.
fn triple_pieces(s: &Str) -> Vec<Piece> {
    let mut raw = String::new();
    let mut spans = Vec::new();
    for part in &s.parts {
        match part {
            StrPart::Text(t) => raw.push_str(t),
            StrPart::Escape { ch, .. } => {
                raw.push('\\');
                raw.push(*ch);
            }
            StrPart::Interp { body, span } => {
                raw.push_str("${");
                raw.push_str(body);
                raw.push('}');
                spans.push(*span);
            }
        }
    }
    let text = dedent(&raw);
    // Dedenting only removes leading blanks, so the k-th `${` is still the
    // k-th reference.
    let mut pieces = Vec::new();
    let mut rest = text.as_str();
    let mut spans = spans.into_iter();
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        if start > 0 {
            pieces.push(Piece::Lit(rest[..start].to_string()));
        }
        pieces.push(Piece::Var {
            body: rest[start + 2..start + len].to_string(),
            span: spans.next().unwrap_or(s.span),
        });
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Lit(rest.to_string()));
    }
    pieces
}

/// Drops a newline right after the opening quotes and the blank line before
/// the closing ones, and removes the indentation all lines share.
pub fn dedent(raw: &str) -> String {
    let body = raw
        .strip_prefix("\r\n")
        .or_else(|| raw.strip_prefix('\n'))
        .unwrap_or(raw);
    let mut lines: Vec<&str> = body.split('\n').collect();
    let mut trailing_newline = false;
    if lines.len() > 1 && lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
        trailing_newline = true;
    }
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    let mut out = String::with_capacity(body.len());
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        out.push_str(line.get(indent..).unwrap_or(line));
    }
    if trailing_newline {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedent_removes_shared_indentation_and_the_quote_lines() {
        assert_eq!(
            dedent("\n    npm run setup\n      npm test\n  "),
            "npm run setup\n  npm test\n"
        );
        assert_eq!(dedent("one line"), "one line");
        assert_eq!(dedent("\n  a\n\n  b\n"), "a\n\nb\n");
    }
}
