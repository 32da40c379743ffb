//! The outline of one file: its stages, templates and environments.

use lsp_types::{DocumentSymbol, Range, SymbolKind};

use super::analysis::Analysis;
use super::position::range;
use crate::source::{FileId, Span};
use crate::syntax::StageKind;

pub(crate) fn document_symbols(a: &Analysis, file: FileId) -> Vec<DocumentSymbol> {
    let source = a.sources.get(file);
    let symbol = |name: &str, detail: Option<String>, kind: SymbolKind, span: Span, at: Span| {
        new_symbol(name, detail, kind, range(source, span), range(source, at))
    };
    let mut out: Vec<(u32, DocumentSymbol)> = Vec::new();
    for s in a
        .index
        .stages
        .iter()
        .filter(|s| s.span.file == file && !s.name.name.is_empty())
    {
        let (kind, detail) = match s.kind {
            StageKind::Stage if s.after.is_empty() => (SymbolKind::FUNCTION, None),
            StageKind::Stage => {
                let after: Vec<&str> = s.after.iter().map(|d| d.name.as_str()).collect();
                (
                    SymbolKind::FUNCTION,
                    Some(format!("after {}", after.join(", "))),
                )
            }
            StageKind::Finally => (SymbolKind::EVENT, Some("finally".into())),
        };
        out.push((
            s.span.start,
            symbol(&s.name.name, detail, kind, s.span, s.name.span),
        ));
    }
    for t in a.index.templates.iter().filter(|t| t.span.file == file) {
        out.push((
            t.span.start,
            symbol(
                &t.name.name,
                Some("template".into()),
                SymbolKind::CLASS,
                t.span,
                t.name.span,
            ),
        ));
    }
    for e in a.index.environments.iter().filter(|e| e.span.file == file) {
        out.push((
            e.span.start,
            symbol(
                &e.name.name,
                Some("environment".into()),
                SymbolKind::NAMESPACE,
                e.span,
                e.name.span,
            ),
        ));
    }
    out.sort_by_key(|(start, _)| *start);
    out.into_iter().map(|(_, s)| s).collect()
}

#[expect(
    deprecated,
    reason = "the protocol's `deprecated` field must still be given"
)]
fn new_symbol(
    name: &str,
    detail: Option<String>,
    kind: SymbolKind,
    range: Range,
    selection_range: Range,
) -> DocumentSymbol {
    DocumentSymbol {
        name: name.to_string(),
        detail,
        kind,
        tags: None,
        deprecated: None,
        range,
        selection_range,
        children: None,
    }
}
