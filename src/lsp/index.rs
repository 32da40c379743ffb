//! The names a pipeline declares and where it refers to them, read from the
//! syntax tree before the checker consumes it: what navigation, hover,
//! completion and symbols need, even when the pipeline has errors.

use super::edit::Region;
use crate::source::{FileId, SourceMap, Span};
use crate::syntax::{Clause, Ident, Item, Setting, StageDecl, StageKind, Value};

/// The kinds of names that can be looked up, renamed and referred to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    Stage,
    Template,
}

impl NameKind {
    pub(crate) fn word(self) -> &'static str {
        match self {
            NameKind::Stage => "stage",
            NameKind::Template => "template",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StageEntry {
    pub(crate) kind: StageKind,
    pub(crate) name: Ident,
    /// The whole declaration.
    pub(crate) span: Span,
    pub(crate) after: Vec<Ident>,
    pub(crate) uses: Option<Ident>,
    /// The `when` condition.
    pub(crate) when: Option<Span>,
    /// The `image` value, as written.
    pub(crate) image: Option<Span>,
    /// `run`, `build`, `release` or `manual`, the first the body has.
    pub(crate) action: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub(crate) struct TemplateEntry {
    pub(crate) name: Ident,
    pub(crate) span: Span,
    pub(crate) image: Option<Span>,
    /// Its `env` and `matrix` names: in scope in the stages that use it.
    pub(crate) locals: Vec<Ident>,
}

/// A declared name with the span of its whole declaration.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub(crate) name: Ident,
    pub(crate) span: Span,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    pub(crate) stages: Vec<StageEntry>,
    pub(crate) templates: Vec<TemplateEntry>,
    pub(crate) environments: Vec<Declared>,
    /// Pipeline-level `env` names, and those of every `environment`.
    pub(crate) env: Vec<Ident>,
    pub(crate) secrets: Vec<Ident>,
}

const ACTIONS: [&str; 4] = ["run", "build", "release", "manual"];

impl Index {
    pub(crate) fn new(items: &[(FileId, Item)]) -> Self {
        let mut index = Index::default();
        for (_, item) in items {
            match item {
                Item::Stage(decl) => index.stages.push(Self::stage_entry(decl)),
                Item::Setting(s) => index.top_setting(s),
            }
        }
        index
    }

    /// What the index knows of one stage declaration.
    pub(crate) fn stage_entry(decl: &StageDecl) -> StageEntry {
        let mut entry = StageEntry {
            kind: decl.kind,
            name: decl.name.clone(),
            span: decl.span,
            after: Vec::new(),
            uses: None,
            when: None,
            image: None,
            action: None,
        };
        for clause in &decl.clauses {
            match clause {
                Clause::After { names, .. } => entry.after.extend(names.iter().cloned()),
                Clause::Uses { template, .. } => {
                    entry.uses.get_or_insert_with(|| template.clone());
                }
                Clause::When { expr, .. } => {
                    entry.when.get_or_insert(expr.span());
                }
            }
        }
        entry.image = image(&decl.body.settings);
        entry.action = decl
            .body
            .settings
            .iter()
            .find_map(|s| ACTIONS.iter().find(|a| **a == s.key.name).copied());
        entry
    }

    /// The index after an edit: the stage entries `stages` (one per stage
    /// declaration, in order) replaced by those of `decls`, the others
    /// moved, and what the top-level settings declare read again from
    /// `settings`. `None` when a stage entry kept touches the region.
    pub(crate) fn edited<'d>(
        mut self,
        region: &Region,
        stages: std::ops::Range<usize>,
        decls: impl Iterator<Item = &'d StageDecl>,
        settings: impl Iterator<Item = &'d Setting>,
    ) -> Option<Index> {
        let fresh: Vec<StageEntry> = decls.map(Self::stage_entry).collect();
        self.stages.splice(stages.clone(), fresh.iter().cloned());
        let moved = stages.start + fresh.len();
        for (i, st) in self.stages.iter_mut().enumerate() {
            if (stages.start..moved).contains(&i) {
                continue;
            }
            let mut ok = region.move_span(&mut st.name.span) && region.move_span(&mut st.span);
            for a in &mut st.after {
                ok &= region.move_span(&mut a.span);
            }
            for s in st
                .uses
                .iter_mut()
                .map(|u| &mut u.span)
                .chain(&mut st.when)
                .chain(&mut st.image)
            {
                ok &= region.move_span(s);
            }
            if !ok {
                return None;
            }
        }
        let mut index = Index {
            stages: self.stages,
            ..Index::default()
        };
        for s in settings {
            index.top_setting(s);
        }
        Some(index)
    }

    fn top_setting(&mut self, s: &Setting) {
        let name = match s.args.first() {
            Some(Value::Word(w)) => Some(w),
            _ => None,
        };
        match (s.key.name.as_str(), name, &s.block) {
            ("template", Some(name), Some(block)) => {
                let mut locals = Vec::new();
                for inner in &block.settings {
                    if matches!(inner.key.name.as_str(), "env" | "matrix") {
                        locals.extend(block_keys(inner));
                    }
                }
                self.templates.push(TemplateEntry {
                    name: name.clone(),
                    span: s.span,
                    image: image(&block.settings),
                    locals,
                });
            }
            ("environment", Some(name), Some(block)) => {
                self.environments.push(Declared {
                    name: name.clone(),
                    span: s.span,
                });
                for inner in &block.settings {
                    if inner.key.name == "env" {
                        self.env.extend(block_keys(inner));
                    }
                }
            }
            ("env", _, _) => self.env.extend(block_keys(s)),
            ("secret", _, _) => self.secrets.extend(s.args.iter().filter_map(|a| match a {
                Value::Word(w) => Some(w.clone()),
                _ => None,
            })),
            _ => {}
        }
    }

    /// Every place a stage or template name is written: declarations first.
    fn occurrences(&self) -> impl Iterator<Item = (NameKind, &Ident, bool)> {
        let stage_defs = self.stages.iter().map(|s| (NameKind::Stage, &s.name, true));
        let template_defs = self
            .templates
            .iter()
            .map(|t| (NameKind::Template, &t.name, true));
        let refs = self.stages.iter().flat_map(|s| {
            s.after
                .iter()
                .map(|a| (NameKind::Stage, a, false))
                .chain(s.uses.iter().map(|u| (NameKind::Template, u, false)))
        });
        stage_defs.chain(template_defs).chain(refs)
    }

    /// The stage or template name at `offset` in `file` (the cursor may be
    /// just after its last character).
    pub(crate) fn name_at(&self, file: FileId, offset: u32) -> Option<(NameKind, &Ident)> {
        self.occurrences()
            .find(|(_, id, _)| {
                id.span.file == file && id.span.start <= offset && offset <= id.span.end
            })
            .map(|(kind, id, _)| (kind, id))
            .filter(|(_, id)| !id.name.is_empty())
    }

    /// Where `name` is declared.
    pub(crate) fn declarations(&self, kind: NameKind, name: &str) -> Vec<Span> {
        self.occurrences()
            .filter(|(k, id, def)| *def && *k == kind && id.name == name)
            .map(|(_, id, _)| id.span)
            .collect()
    }

    /// Every place `name` is written, declarations first when asked for.
    pub(crate) fn references(&self, kind: NameKind, name: &str, declarations: bool) -> Vec<Span> {
        self.occurrences()
            .filter(|(k, id, def)| *k == kind && id.name == name && (declarations || !def))
            .map(|(_, id, _)| id.span)
            .collect()
    }

    pub(crate) fn stage(&self, name: &str) -> Option<&StageEntry> {
        self.stages.iter().find(|s| s.name.name == name)
    }

    pub(crate) fn template(&self, name: &str) -> Option<&TemplateEntry> {
        self.templates.iter().find(|t| t.name.name == name)
    }
}

/// The value of the body's `image` setting.
fn image(settings: &[Setting]) -> Option<Span> {
    settings
        .iter()
        .find(|s| s.key.name == "image")
        .and_then(|s| s.args.first())
        .map(Value::span)
}

/// The keys of an `env { ... }` or `matrix { ... }` block.
fn block_keys(s: &Setting) -> impl Iterator<Item = Ident> + '_ {
    s.block
        .iter()
        .flat_map(|b| b.settings.iter().map(|k| k.key.clone()))
}

/// A value as written, without the quotes of a one-line string.
pub(crate) fn written(sources: &SourceMap, span: Span) -> String {
    let text = sources.slice(span);
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !text.starts_with("\"\"\"") => inner.to_string(),
        _ => text.trim().to_string(),
    }
}
