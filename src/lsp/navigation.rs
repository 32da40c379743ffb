//! Go to definition, find references and rename, for stage and template
//! names, across the files a pipeline includes; definition also follows an
//! `include` path to its file.

use std::collections::HashMap;
use std::path::Path;

use lsp_types::{Location, Range, TextEdit, Url, WorkspaceEdit};

use super::analysis::Analysis;
use super::index::NameKind;
use super::position::{location, range, uri_of};
use crate::source::FileId;

/// Words a stage header gives a meaning to: a stage or template of that
/// name would read ambiguously.
const RESERVED: [&str; 7] = ["stage", "finally", "after", "uses", "when", "true", "false"];

pub(crate) fn definition(a: &Analysis, file: FileId, offset: u32) -> Vec<Location> {
    if let Some((kind, id)) = a.index.name_at(file, offset) {
        return a
            .index
            .declarations(kind, &id.name)
            .into_iter()
            .filter_map(|s| location(&a.sources, s))
            .collect();
    }
    included_file(a, file, offset).into_iter().collect()
}

pub(crate) fn references(
    a: &Analysis,
    file: FileId,
    offset: u32,
    declarations: bool,
) -> Vec<Location> {
    let Some((kind, id)) = a.index.name_at(file, offset) else {
        return Vec::new();
    };
    a.index
        .references(kind, &id.name, declarations)
        .into_iter()
        .filter_map(|s| location(&a.sources, s))
        .collect()
}

/// The range of the name a rename at `offset` would change, or why there is
/// none.
pub(crate) fn prepare_rename(a: &Analysis, file: FileId, offset: u32) -> Result<Range, String> {
    if a.syntax_errors {
        return Err(
            "fix the syntax errors first: names in lines that do not parse would not be renamed"
                .into(),
        );
    }
    let (_, id) = a
        .index
        .name_at(file, offset)
        .ok_or("only the names of stages and templates can be renamed")?;
    Ok(range(a.sources.get(file), id.span))
}

pub(crate) fn rename(
    a: &Analysis,
    file: FileId,
    offset: u32,
    new_name: &str,
) -> Result<WorkspaceEdit, String> {
    prepare_rename(a, file, offset)?;
    let (kind, id) = a
        .index
        .name_at(file, offset)
        .ok_or("only the names of stages and templates can be renamed")?;
    let what = kind.word();
    if !is_name(new_name) {
        return Err(format!(
            "`{new_name}` is not a {what} name: use letters, digits, `_` and `-`, starting with a letter or `_`"
        ));
    }
    if RESERVED.contains(&new_name) {
        return Err(format!(
            "`{new_name}` is a keyword; choose another {what} name"
        ));
    }
    let taken = match kind {
        NameKind::Stage => a.index.stage(new_name).is_some(),
        NameKind::Template => a.index.template(new_name).is_some(),
    };
    if taken && new_name != id.name {
        return Err(format!("a {what} named `{new_name}` already exists"));
    }
    let mut changes: HashMap<Url, Vec<TextEdit>> = HashMap::new();
    for span in a.index.references(kind, &id.name, true) {
        let Some(loc) = location(&a.sources, span) else {
            continue;
        };
        changes.entry(loc.uri).or_default().push(TextEdit {
            range: loc.range,
            new_text: new_name.to_string(),
        });
    }
    Ok(WorkspaceEdit {
        changes: Some(changes),
        ..WorkspaceEdit::default()
    })
}

/// The grammar's `ident`.
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// On the path of an `include "..."` line: the start of that file.
fn included_file(a: &Analysis, file: FileId, offset: u32) -> Option<Location> {
    let source = a.sources.get(file);
    let text = source.text.as_str();
    let at = (offset as usize).min(text.len());
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text.get(at..)?.find('\n').map_or(text.len(), |i| at + i);
    let line = &text[start..end];
    let rest = line.trim_start().strip_prefix("include")?;
    let open = line.len() - rest.len() + rest.find('"')?;
    let close = open + 1 + line[open + 1..].find('"')?;
    if !(open..=close + 1).contains(&(at - start)) {
        return None;
    }
    let target = source
        .path
        .parent()?
        .join(Path::new(&line[open + 1..close]));
    let target = std::fs::canonicalize(target).ok()?;
    target.is_file().then_some(())?;
    Some(Location {
        uri: uri_of(&target)?,
        range: Range::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::is_name;

    #[test]
    fn names_follow_the_grammar() {
        assert!(is_name("deploy-prod_2"));
        assert!(is_name("_x"));
        assert!(!is_name("2x"));
        assert!(!is_name("a b"));
        assert!(!is_name(""));
        assert!(!is_name("é"));
    }
}
