//! Hover on a stage or template name: what it is, in Markdown.

use std::fmt::Write as _;

use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind};

use super::analysis::Analysis;
use super::index::{NameKind, written};
use super::position::range;
use crate::source::FileId;
use crate::syntax::StageKind;

pub(crate) fn hover(a: &Analysis, file: FileId, offset: u32) -> Option<Hover> {
    let (kind, id) = a.index.name_at(file, offset)?;
    let text = match kind {
        NameKind::Stage => stage(a, &id.name)?,
        NameKind::Template => template(a, &id.name)?,
    };
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: text,
        }),
        range: Some(range(a.sources.get(file), id.span)),
    })
}

/// A value in backticks, safe for Markdown whatever it holds.
fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

fn stage(a: &Analysis, name: &str) -> Option<String> {
    let s = a.index.stage(name)?;
    let keyword = match s.kind {
        StageKind::Stage => "stage",
        StageKind::Finally => "finally",
    };
    let mut out = format!("**{keyword}** {}\n", code(name));
    let template = s.uses.as_ref().map(|u| &u.name);
    let image = match (s.image, template.and_then(|t| a.index.template(t))) {
        (Some(i), _) => Some(code(&written(&a.sources, i))),
        (None, Some(t)) => t.image.map(|i| {
            format!(
                "{} (from template {})",
                code(&written(&a.sources, i)),
                code(&t.name.name)
            )
        }),
        (None, None) => None,
    };
    let _ = write!(out, "\n- image: {}", image.as_deref().unwrap_or("none"));
    let after = if s.after.is_empty() {
        "none".to_string()
    } else {
        s.after
            .iter()
            .map(|d| code(&d.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(out, "\n- after: {after}");
    if let Some(when) = s.when {
        let cond = a
            .sources
            .slice(when)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let _ = write!(out, "\n- when: {}", code(&cond));
    }
    if let Some(t) = template {
        let _ = write!(out, "\n- uses: template {}", code(t));
    }
    if let Some(action) = s.action {
        let _ = write!(out, "\n- does: {}", code(action));
    }
    let _ = write!(
        out,
        "\n\ndefined at {}",
        code(&a.sources.location(s.name.span))
    );
    Some(out)
}

fn template(a: &Analysis, name: &str) -> Option<String> {
    let t = a.index.template(name)?;
    let mut out = format!("**template** {}\n", code(name));
    if let Some(i) = t.image {
        let _ = write!(out, "\n- image: {}", code(&written(&a.sources, i)));
    }
    let users: Vec<String> = a
        .index
        .stages
        .iter()
        .filter(|s| s.uses.as_ref().is_some_and(|u| u.name == name))
        .map(|s| code(&s.name.name))
        .collect();
    let _ = write!(
        out,
        "\n- used by: {}",
        if users.is_empty() {
            "no stage".to_string()
        } else {
            users.join(", ")
        }
    );
    let _ = write!(
        out,
        "\n\ndefined at {}",
        code(&a.sources.location(t.name.span))
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::code;

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(code("a"), "`a`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`a"), "`` `a ``");
    }
}
