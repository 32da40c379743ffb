//! slipway's diagnostics as the protocol's: the same code, message, place
//! and severity as `slipway check`, the help on a line of its own, and the
//! other places a diagnostic points at (the rest of a cycle, the first
//! definition of a duplicate) as related information.

use lsp_types::{
    CodeDescription, Diagnostic, DiagnosticRelatedInformation, DiagnosticSeverity, NumberOrString,
    Url,
};

use super::position::{location, range};
use crate::diagnostic::{Diag, Severity};
use crate::source::{FileId, SourceMap, Span};

/// Where each code is explained.
const DOCS: &str = "https://github.com/slipway-dev/slipway/blob/main/docs/diagnostics.md";

/// `d` as the protocol's, at `span` (its place: the checker's diagnostics
/// all have one).
pub(crate) fn to_lsp(d: &Diag, span: Span, sources: &SourceMap) -> Diagnostic {
    let code = d.code.as_str();
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    let related: Vec<DiagnosticRelatedInformation> = d
        .secondary
        .iter()
        .filter_map(|l| {
            Some(DiagnosticRelatedInformation {
                location: location(sources, l.span)?,
                message: l.message.clone(),
            })
        })
        .collect();
    Diagnostic {
        range: range(sources.get(span.file), span),
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(code.to_string())),
        // GitHub's anchor for the heading `slipway::unknown-stage`.
        code_description: Url::parse(&format!("{DOCS}#{}", code.replace("::", "")))
            .ok()
            .map(|href| CodeDescription { href }),
        source: Some("slipway".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags: None,
        data: None,
    }
}

/// The diagnostics of each loaded file, every file listed (with none, so
/// that an editor clears what it showed before).
pub(crate) fn by_file(diags: &[Diag], sources: &SourceMap) -> Vec<(FileId, Vec<Diagnostic>)> {
    let mut out: Vec<(FileId, Vec<Diagnostic>)> =
        sources.files().map(|(id, _)| (id, Vec::new())).collect();
    for d in diags {
        let Some(span) = d.span() else { continue };
        if let Some((_, list)) = out.iter_mut().find(|(id, _)| *id == span.file) {
            list.push(to_lsp(d, span, sources));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Code;
    use crate::source::SourceFile;

    #[test]
    fn converts_codes_ranges_help_and_related_places() {
        let mut sources = SourceMap::default();
        let text = "stage \u{e9}a after b {\n}\n";
        let id = sources.add(SourceFile::new(
            "/tmp/a.pipeline".into(),
            "a.pipeline".into(),
            text.into(),
        ));
        let d = Diag::error(
            Code::UnknownStage,
            Span::new(id, 16, 17),
            "unknown stage `b`",
        )
        .help("did you mean `a`?")
        .with(Span::new(id, 6, 9), "defined here");
        let l = to_lsp(&d, Span::new(id, 16, 17), &sources);
        assert_eq!(
            l.code,
            Some(NumberOrString::String("slipway::unknown-stage".into()))
        );
        assert_eq!(
            l.code_description.map(|c| c.href.to_string()),
            Some(format!("{DOCS}#slipwayunknown-stage"))
        );
        assert_eq!(l.message, "unknown stage `b`\nhelp: did you mean `a`?");
        // `é` is two bytes, one UTF-16 unit.
        assert_eq!((l.range.start.character, l.range.end.character), (15, 16));
        let related = l.related_information.unwrap_or_default();
        assert_eq!(related.len(), 1);
        assert_eq!(related[0].location.range.start.character, 6);
        assert_eq!(related[0].message, "defined here");
    }
}
