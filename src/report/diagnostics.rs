//! Rendering [`Diag`]s: for people (miette, with `file:line:col` and the
//! source underlined), one line each (`concise`), JSON, and CI annotations
//! (GitHub workflow commands, GitLab code quality).
//!
//! A diagnostic with no place in a file (the command line's, the cluster's)
//! goes through the same formats, without the place: `error[CODE]: MESSAGE`
//! and an indented `help:` line for people, a JSON object with no `file`,
//! an annotation with no `file=`, a GitLab entry at `.`, line 1.

use std::fmt::Write as _;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use serde::Serialize;

use super::style;
use crate::diagnostic::{Diag, Severity};
use crate::source::{FileId, SourceMap, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum DiagFormat {
    /// Source excerpts with the problem underlined.
    #[default]
    Human,
    /// One line per diagnostic: `file:line:col: severity[code]: message`.
    Concise,
    /// One JSON object per line.
    Json,
    /// GitHub Actions workflow commands (`::error file=...::`).
    Github,
    /// A GitLab code quality report (a JSON array).
    Gitlab,
}

impl DiagFormat {
    /// The default for this environment: annotations inside CI systems that
    /// show them.
    pub fn detect() -> Self {
        if std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true") {
            DiagFormat::Github
        } else {
            DiagFormat::Human
        }
    }
}

/// Renders diagnostics to a string in `format`; `color` only affects
/// `human` (and `concise` for a diagnostic with no place).
pub fn render(diags: &[Diag], sources: &SourceMap, format: DiagFormat, color: bool) -> String {
    match format {
        DiagFormat::Human => human(diags, sources, color),
        DiagFormat::Concise => diags
            .iter()
            .map(|d| match d.span() {
                Some(span) => concise(d, span, sources) + "\n",
                None => placeless(d, color),
            })
            .collect(),
        DiagFormat::Json => diags
            .iter()
            .map(|d| {
                let line = match d.span() {
                    Some(span) => serde_json::to_string(&JsonDiag::new(d, span, sources)),
                    None => serde_json::to_string(&JsonPlaceless::new(d)),
                };
                line.unwrap_or_default() + "\n"
            })
            .collect(),
        DiagFormat::Github => diags.iter().map(|d| github(d, sources) + "\n").collect(),
        DiagFormat::Gitlab => gitlab(diags, sources),
    }
}

/// `file:line:col: error[slipway::unknown-stage]: unknown stage `x``
fn concise(d: &Diag, span: Span, sources: &SourceMap) -> String {
    let mut s = format!(
        "{}: {}[{}]: {}",
        sources.location(span),
        severity_word(d.severity),
        d.code,
        d.message
    );
    if let Some(help) = &d.help {
        let _ = write!(s, " ({help})");
    }
    s
}

/// A diagnostic with no place, for people: `error[slipway::usage]: MESSAGE`,
/// then `  help: HELP`.
fn placeless(d: &Diag, color: bool) -> String {
    let style = match d.severity {
        Severity::Error => style::ERROR,
        Severity::Warning => style::WARNING,
    };
    let mut s = format!(
        "{}[{}]: {}\n",
        style::paint(style, severity_word(d.severity), color),
        d.code,
        d.message
    );
    if let Some(help) = &d.help {
        let _ = writeln!(s, "  help: {help}");
    }
    s
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Past this column (in characters), a diagnostic is not drawn with its
/// source, since miette cannot lay it out (a tab may count four columns).
const MAX_RENDERED_COLUMN: usize = 10_000;

fn human(diags: &[Diag], sources: &SourceMap, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false)
        .with_context_lines(1);
    let named: Vec<NamedSource<Arc<str>>> = sources
        .files()
        .map(|(_, f)| NamedSource::new(f.name.clone(), Arc::from(f.text.as_str())))
        .collect();
    let mut out = String::new();
    for d in diags {
        let Some(span) = d.span() else {
            out.push_str(&placeless(d, color));
            continue;
        };
        // miette pads with `{:width$}`, which panics past column 65,535 (a
        // tab counts four); such places are shown one line each instead.
        let too_wide = d.primary.iter().chain(&d.secondary).any(|l| {
            let file = sources.get(l.span.file);
            let (_, start) = file.line_col(l.span.start);
            let (_, end) = file.line_col(l.span.end);
            start.max(end) > MAX_RENDERED_COLUMN
        });
        if too_wide {
            out.push_str(&concise(d, span, sources));
            out.push('\n');
            continue;
        }
        let r = Rendered::new(d, span, &named);
        if handler.render_report(&mut out, &r).is_err() {
            out.push_str(&concise(d, span, sources));
            out.push('\n');
        }
    }
    out
}

/// A diagnostic as miette sees it: labels in the primary file, and one
/// related report per other file it points into.
struct Rendered<'a> {
    message: String,
    code: Option<&'static str>,
    severity: miette::Severity,
    help: Option<String>,
    source: &'a NamedSource<Arc<str>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Rendered<'a>>,
}

impl<'a> Rendered<'a> {
    /// `d`, whose place is `span`.
    fn new(d: &Diag, span: Span, named: &'a [NamedSource<Arc<str>>]) -> Self {
        let file = span.file;
        let label = d.primary.as_ref().map_or("", |l| l.message.as_str());
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            non_empty(label),
            (span.start as usize, span.len()),
        )];
        let mut related: Vec<Rendered<'a>> = Vec::new();
        for l in &d.secondary {
            let span = (l.span.start as usize, l.span.len());
            if l.span.file == file {
                labels.push(LabeledSpan::new_with_span(non_empty(&l.message), span));
            } else if let Some(r) = related
                .iter_mut()
                .find(|r| std::ptr::eq(r.source, &named[l.span.file.0 as usize]))
            {
                r.labels
                    .push(LabeledSpan::new_with_span(non_empty(&l.message), span));
            } else {
                related.push(Rendered {
                    message: format!("see also `{}`", named[l.span.file.0 as usize].name()),
                    code: None,
                    severity: miette::Severity::Advice,
                    help: None,
                    source: &named[l.span.file.0 as usize],
                    labels: vec![LabeledSpan::new_with_span(non_empty(&l.message), span)],
                    related: Vec::new(),
                });
            }
        }
        Rendered {
            message: d.message.clone(),
            code: Some(d.code.as_str()),
            severity: match d.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            },
            help: d.help.clone(),
            source: &named[file_index(file)],
            labels,
            related,
        }
    }
}

fn file_index(f: FileId) -> usize {
    f.0 as usize
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl std::fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.code.map(|c| Box::new(c) as Box<dyn std::fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }

    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(
            self.related.iter().map(|r| r as &dyn miette::Diagnostic),
        ))
    }
}

/// The JSON form of a diagnostic: a documented contract (`docs/cli.md`).
#[derive(Serialize)]
pub struct JsonDiag<'a> {
    pub code: &'static str,
    pub severity: Severity,
    pub message: &'a str,
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub label: &'a str,
    pub help: Option<&'a str>,
    pub related: Vec<JsonLabel<'a>>,
}

#[derive(Serialize)]
pub struct JsonLabel<'a> {
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub message: &'a str,
}

impl<'a> JsonDiag<'a> {
    /// `d`, whose place is `span`.
    pub fn new(d: &'a Diag, span: Span, sources: &'a SourceMap) -> Self {
        let file = sources.get(span.file);
        let (line, column) = file.line_col(span.start);
        let (end_line, end_column) = file.line_col(span.end);
        JsonDiag {
            code: d.code.as_str(),
            severity: d.severity,
            message: &d.message,
            file: &file.name,
            line,
            column,
            end_line,
            end_column,
            label: d.primary.as_ref().map_or("", |l| l.message.as_str()),
            help: d.help.as_deref(),
            related: d
                .secondary
                .iter()
                .map(|l| {
                    let f = sources.get(l.span.file);
                    let (line, column) = f.line_col(l.span.start);
                    JsonLabel {
                        file: &f.name,
                        line,
                        column,
                        message: &l.message,
                    }
                })
                .collect(),
        }
    }
}

/// The JSON form of a diagnostic with no place: only these fields
/// (`docs/cli.md`, "Problems with the command line").
#[derive(Serialize)]
pub struct JsonPlaceless<'a> {
    pub code: &'static str,
    pub severity: Severity,
    pub message: &'a str,
    pub help: Option<&'a str>,
}

impl<'a> JsonPlaceless<'a> {
    pub fn new(d: &'a Diag) -> Self {
        JsonPlaceless {
            code: d.code.as_str(),
            severity: d.severity,
            message: &d.message,
            help: d.help.as_deref(),
        }
    }
}

/// `::error file=a.pipeline,line=3,col=5,endLine=3,endColumn=9,title=slipway::x::message`,
/// or `::error title=slipway::x::message` with no place.
fn github(d: &Diag, sources: &SourceMap) -> String {
    let mut message = d.message.clone();
    if let Some(h) = &d.help {
        let _ = write!(message, "\n{h}");
    }
    let Some(span) = d.span() else {
        return format!(
            "::{} title={}::{}",
            severity_word(d.severity),
            escape_property(d.code.as_str()),
            escape_data(&message)
        );
    };
    let j = JsonDiag::new(d, span, sources);
    format!(
        "::{} file={},line={},col={},endLine={},endColumn={},title={}::{}",
        severity_word(d.severity),
        escape_property(j.file),
        j.line,
        j.column,
        j.end_line,
        j.end_column,
        escape_property(d.code.as_str()),
        escape_data(&message)
    )
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// GitLab's code quality report format.
fn gitlab(diags: &[Diag], sources: &SourceMap) -> String {
    #[derive(Serialize)]
    struct Entry<'a> {
        description: &'a str,
        check_name: &'static str,
        fingerprint: String,
        severity: &'static str,
        location: Location<'a>,
    }
    #[derive(Serialize)]
    struct Location<'a> {
        path: &'a str,
        lines: Lines,
    }
    #[derive(Serialize)]
    struct Lines {
        begin: usize,
    }
    let entries: Vec<Entry<'_>> = diags
        .iter()
        .map(|d| {
            // With no place, the report's root and its first line, so that
            // the report stays valid.
            let (path, line) = match d.span() {
                Some(span) => {
                    let file = sources.get(span.file);
                    (file.name.as_str(), file.line_col(span.start).0)
                }
                None => (".", 1),
            };
            Entry {
                description: &d.message,
                check_name: d.code.as_str(),
                fingerprint: fingerprint(&format!("{}:{path}:{line}:{}", d.code, d.message)),
                severity: match d.severity {
                    Severity::Error => "major",
                    Severity::Warning => "minor",
                },
                location: Location {
                    path,
                    lines: Lines { begin: line },
                },
            }
        })
        .collect();
    serde_json::to_string_pretty(&entries).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// A stable 64-bit FNV-1a hash, hex: stable across runs and versions, unlike
/// `std`'s hasher.
fn fingerprint(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> Diag {
        Diag::usage("unknown stage `deploi`").help("did you mean `deploy`?")
    }

    fn rendered(format: DiagFormat, color: bool) -> String {
        render(&[usage()], &SourceMap::default(), format, color)
    }

    #[test]
    fn a_diagnostic_with_no_place_is_rendered_without_one() {
        let people =
            "error[slipway::usage]: unknown stage `deploi`\n  help: did you mean `deploy`?\n";
        assert_eq!(rendered(DiagFormat::Human, false), people);
        assert_eq!(rendered(DiagFormat::Concise, false), people);
        assert_eq!(
            rendered(DiagFormat::Human, true),
            format!(
                "{}{}",
                style::paint(style::ERROR, "error", true),
                &people[5..]
            )
        );
        assert_eq!(
            rendered(DiagFormat::Json, false),
            "{\"code\":\"slipway::usage\",\"severity\":\"error\",\"message\":\"unknown stage `deploi`\",\"help\":\"did you mean `deploy`?\"}\n"
        );
        assert_eq!(
            rendered(DiagFormat::Github, false),
            "::error title=slipway%3A%3Ausage::unknown stage `deploi`%0Adid you mean `deploy`?\n"
        );
        let gitlab: serde_json::Value =
            serde_json::from_str(&rendered(DiagFormat::Gitlab, false)).expect("one JSON array");
        assert_eq!(gitlab[0]["check_name"], "slipway::usage");
        assert_eq!(gitlab[0]["location"]["path"], ".");
        assert_eq!(gitlab[0]["location"]["lines"]["begin"], 1);
    }

    #[test]
    fn no_help_is_null_in_json_and_absent_elsewhere() {
        let d = [Diag::usage("cannot write the plan: disk full")];
        let sources = SourceMap::default();
        assert_eq!(
            render(&d, &sources, DiagFormat::Human, false),
            "error[slipway::usage]: cannot write the plan: disk full\n"
        );
        assert_eq!(
            render(&d, &sources, DiagFormat::Json, false),
            "{\"code\":\"slipway::usage\",\"severity\":\"error\",\"message\":\"cannot write the plan: disk full\",\"help\":null}\n"
        );
    }
}
