//! Formatting a document with `slipway fmt`'s formatter: one edit that
//! replaces the whole text, or none when it is formatted already. A document
//! with syntax errors is left alone, as `slipway fmt` leaves the file.

use lsp_types::TextEdit;

use super::position::whole;
use crate::source::FileId;
use crate::syntax::ParseOptions;

/// `None` when the text does not parse.
pub(crate) fn format(text: &str, parse: ParseOptions) -> Option<Vec<TextEdit>> {
    let (ast, diags) = crate::syntax::parse_with(FileId(0), text, parse);
    if !diags.is_empty() {
        return None;
    }
    let formatted = crate::format::format(&ast, text);
    if formatted == text {
        return Some(Vec::new());
    }
    Some(vec![TextEdit {
        range: whole(text),
        new_text: formatted,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_documents_and_leaves_broken_ones() {
        let format = |text: &str| format(text, ParseOptions::default());
        let edits = format("stage a   {\nrun \"x\"\n}\n").unwrap_or_default();
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].new_text, "stage a {\n  run \"x\"\n}\n");
        assert_eq!(format("stage a {\n  run \"x\"\n}\n"), Some(Vec::new()));
        assert_eq!(format("stage {"), None);
    }
}
