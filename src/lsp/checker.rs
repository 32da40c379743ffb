//! A pipeline's check, kept between edits: its top-level items and syntax
//! errors, and for each stage declaration what checking it found and what
//! planning it found.
//!
//! An edit parses again only the items it touched ([`Region`]), and syntax
//! errors are found as a parse of the whole text finds them: an item's
//! parse reads the text from its start to its end, so parsing resumes at
//! the last item before the change and stops at the first item after it
//! that the last parse started too (or, when an item before the change
//! failed, from that one: a failed parse may have read anything after it).
//!
//! Then a stage is checked again when its declaration was parsed again,
//! when the template it uses was, or when the names declared at the top
//! level changed (env, secrets, templates: [`Declared`]), or, for a stage
//! using an unknown template, the declarations that fail to parse; it is
//! planned again when it was checked again, or when a value of the
//! pipeline's env it looks up changed ([`Globals`]). Whatever else a
//! stage's results point at lies outside the edit and moves with it.
//!
//! Every step is the one `slipway check` takes (`model::Top`,
//! `model::StageUnit::check`, `model::assemble`, `plan::Validation`), in
//! the same order, so the diagnostics are the same, in the same order.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::edit::{Diff, Region};
use crate::diagnostic::{Code, Diag};
use crate::model::{Compiled, Declared, Dep, Loaded, Stage, StageUnit, Top, assemble};
use crate::plan::{Environments, Globals, StageFindings, Validation, cell_order};
use crate::source::{FileId, SourceMap};
use crate::syntax::{Item, Setting, StageDecl, SyntaxError, Value, each_span, parse_from};

pub(crate) struct Checker {
    root: FileId,
    /// Every top-level item, in the order loading gives them (each
    /// include's items where it is included).
    items: Vec<Entry>,
    /// One per stage declaration in `items`, in order; `None` for those
    /// to check (again).
    units: Vec<Option<Unit>>,
    /// What loading found besides syntax errors: include problems.
    loaded: Vec<Diag>,
    /// Each file's syntax errors, in order.
    errors: Vec<Vec<SyntaxError>>,
    /// Where `include` lines start: an include's items are where it is.
    includes: Vec<(FileId, usize)>,
    /// The names of declarations that failed to parse.
    unparsed: HashSet<String>,
    compiled: Compiled,
    /// The order planning visits the stages' cells in, kept while no
    /// stage's name, `after` list or number of cells changes.
    order: Option<CellOrder>,
    /// The names declared at the top level in the last check.
    declared: Option<Declared>,
    /// The templates edited since the last check, by name; whether one
    /// without a name was.
    stale_templates: HashSet<String>,
    stale_all: bool,
    /// Whether the declarations that failed to parse changed since the last
    /// check: a stage using an unknown template depends on them.
    stale_unknown: bool,
    /// What planning could read of the pipeline's env in the last check.
    globals: Option<Globals>,
}

/// A top-level item. Most edits move most stage declarations and few of
/// them are read again, so a stage declaration's spans are moved when it
/// is next read; settings are read on every check, and moved at once.
struct Entry {
    file: FileId,
    item: Item,
    /// How far the item moved since its spans were last moved.
    moved: i64,
}

impl Entry {
    fn is_stage(&self) -> bool {
        matches!(self.item, Item::Stage(_))
    }

    /// Where the item is now.
    fn range(&self) -> (usize, usize) {
        let span = self.item.span();
        let at = |x: u32| usize::try_from(i64::from(x) + self.moved).unwrap_or(0);
        (at(span.start), at(span.end))
    }

    fn settle(&mut self) {
        if self.moved != 0 {
            let by = self.moved;
            let at = |x: &mut u32| *x = u32::try_from(i64::from(*x) + by).unwrap_or(u32::MAX);
            each_span(&mut self.item, &mut |s| {
                at(&mut s.start);
                at(&mut s.end);
            });
            self.moved = 0;
        }
    }

    fn decl(&self) -> Option<&StageDecl> {
        match &self.item {
            Item::Stage(d) => Some(d),
            Item::Setting(_) => None,
        }
    }
}

struct Unit {
    check: StageUnit,
    /// What planning the stage found, once validation has needed it.
    found: Option<StageFindings>,
}

/// The order planning visits the stages' cells in, as (stage, cell)
/// pairs, and the graph it was worked out for.
struct CellOrder {
    graph: Vec<Node>,
    cells: Vec<(usize, usize)>,
}

/// A stage as the plan order sees it: its name, the names it runs after,
/// its number of cells.
struct Node(String, Vec<String>, usize);

/// What [`Checker::edit`] changed: the stage declarations `stages` (their
/// positions among the stage declarations, before the edit) became `added`
/// new ones.
pub(crate) struct Edited {
    /// What changed in the text.
    pub(crate) diff: Diff,
    pub(crate) region: Region,
    pub(crate) stages: std::ops::Range<usize>,
    pub(crate) added: usize,
    /// Items parsed again.
    pub(crate) parsed: usize,
}

/// A check's diagnostics, and how much of the pipeline it went through.
pub(crate) struct Checked {
    pub(crate) diagnostics: Vec<Diag>,
    /// Stages checked (again), and planned, of `stages`.
    pub(crate) checked: usize,
    pub(crate) planned: usize,
    pub(crate) stages: usize,
    /// How long checking took, and validating.
    pub(crate) check_time: Duration,
    pub(crate) validate_time: Duration,
}

/// Stage models this many or more are freed on a thread of their own.
const FREE_APART: usize = 64;

impl Checker {
    /// Takes a pipeline just loaded, with the syntax errors of each file
    /// and where its `include` lines start; its sources are the caller's.
    pub(crate) fn new(
        loaded: Loaded,
        syntax: Vec<(FileId, Vec<SyntaxError>)>,
        includes: Vec<(FileId, usize)>,
    ) -> (Self, SourceMap) {
        let Loaded {
            sources,
            items,
            diagnostics,
            root,
            unparsed,
        } = loaded;
        let mut errors: Vec<Vec<SyntaxError>> = sources.files().map(|_| Vec::new()).collect();
        for (file, list) in syntax {
            if let Some(slot) = errors.get_mut(file.0 as usize) {
                *slot = list;
            }
        }
        // Syntax errors are kept with where their items start.
        let loaded: Vec<Diag> = diagnostics
            .into_iter()
            .filter(|d| d.code != Code::Syntax)
            .collect();
        let items: Vec<Entry> = items
            .into_iter()
            .map(|(file, item)| Entry {
                file,
                item,
                moved: 0,
            })
            .collect();
        let stages = items.iter().filter(|e| e.is_stage()).count();
        let checker = Checker {
            root,
            items,
            units: (0..stages).map(|_| None).collect(),
            loaded,
            errors,
            includes,
            unparsed,
            compiled: Compiled::default(),
            order: None,
            declared: None,
            stale_templates: HashSet::new(),
            stale_all: false,
            stale_unknown: false,
            globals: None,
        };
        (checker, sources)
    }

    /// Whether an include could not be read.
    pub(crate) fn includes_missing(&self) -> bool {
        self.loaded.iter().any(|d| d.code == Code::MissingInclude)
    }

    /// Whether a file has a syntax error.
    pub(crate) fn syntax_errors(&self) -> bool {
        self.errors.iter().any(|e| !e.is_empty())
    }

    /// The top-level settings.
    pub(crate) fn settings(&self) -> impl Iterator<Item = &Setting> {
        self.items.iter().filter_map(|e| match &e.item {
            Item::Setting(s) => Some(s),
            Item::Stage(_) => None,
        })
    }

    /// The stage declarations `from..from + n` (when just parsed, so in
    /// place).
    pub(crate) fn decls(&self, from: usize, n: usize) -> impl Iterator<Item = &StageDecl> {
        self.items.iter().filter_map(Entry::decl).skip(from).take(n)
    }

    /// What `slipway check` reports for the pipeline, `sources` being its
    /// files: the stages not checked yet are checked, and planned when
    /// validation needs it.
    pub(crate) fn check(&mut self, sources: &SourceMap) -> Checked {
        let start = Instant::now();
        let mut diags = self.loaded.clone();
        diags.extend(self.errors.iter().flatten().map(|e| e.diag.clone()));
        let mut top = Top::new(sources, self.root, &self.unparsed);
        for e in &self.items {
            if let Item::Setting(s) = &e.item {
                top.setting(e.file, s, &mut diags);
            }
        }
        // A stage's check depends on the names declared at the top level
        // and on its template.
        let declared = top.declared();
        let all = std::mem::take(&mut self.stale_all) || self.declared.as_ref() != Some(&declared);
        let stale = std::mem::take(&mut self.stale_templates);
        let unknown = std::mem::take(&mut self.stale_unknown);
        for slot in &mut self.units {
            let template = slot
                .as_ref()
                .and_then(|u| u.check.head.as_ref())
                .and_then(|h| h.template.as_ref());
            let uses_stale =
                template.is_some_and(|t| stale.contains(t) || (unknown && !top.has_template(t)));
            if all || uses_stale {
                *slot = None;
            }
        }
        self.declared = Some(declared);
        // Planning a stage depends on the values of the pipeline's env it
        // looks up.
        let shell = top.shell();
        let environments = Environments::new(&shell);
        let validation = Validation::new(&shell, &environments);
        let globals = validation.globals();
        let changed = self.globals.as_ref().and_then(|g| g.changed(&globals));
        for unit in self.units.iter_mut().flatten() {
            let stale = unit.found.as_ref().is_some_and(|f| {
                changed
                    .as_ref()
                    .is_none_or(|c| f.asked.iter().any(|n| c.contains(n)))
            });
            if stale {
                unit.found = None;
            }
        }
        self.globals = Some(globals);

        let at: Vec<usize> = (0..self.items.len())
            .filter(|&i| self.items[i].is_stage())
            .collect();
        let mut checked = 0;
        for (slot, &i) in self.units.iter_mut().zip(&at) {
            if slot.is_some() {
                continue;
            }
            self.items[i].settle();
            if let Some(decl) = self.items[i].decl() {
                checked += 1;
                *slot = Some(Unit {
                    check: StageUnit::check(&top, &mut self.compiled, decl),
                    found: None,
                });
            }
        }
        let mut units: Vec<&mut Unit> = self.units.iter_mut().flatten().collect();
        let placed = {
            let checks: Vec<&StageUnit> = units.iter().map(|u| &u.check).collect();
            assemble(&top, &checks, &mut diags)
        };
        crate::diagnostic::sort(&mut diags);
        diags.dedup();
        let check_time = start.elapsed();

        let start = Instant::now();
        let mut planned = 0;
        if !diags.iter().any(Diag::is_error) {
            let order: Vec<usize> = placed
                .stages
                .iter()
                .chain(&placed.finally)
                .copied()
                .collect();
            // The stages planned in an earlier round are checked again to be
            // planned now: their declarations must be in place.
            for &u in &order {
                if units[u].found.is_none() && units[u].check.stage.is_none() {
                    self.items[at[u]].settle();
                }
            }
            let decl = |u: usize| self.items[at[u]].decl();
            let mut v = Validating {
                top: &top,
                validation: &validation,
                units: &mut units,
                order: &order,
                compiled: &mut self.compiled,
                cells: &mut self.order,
            };
            let found = v.run(decl, &mut planned);
            if !found.is_empty() {
                diags.extend(found);
                crate::diagnostic::sort(&mut diags);
            }
        }
        // Only the diagnostics are kept.
        let models: Vec<Stage> = units
            .iter_mut()
            .filter_map(|u| u.check.stage.take())
            .collect();
        if models.len() >= FREE_APART {
            std::thread::spawn(move || drop(models));
        }
        Checked {
            diagnostics: diags,
            checked,
            planned,
            stages: at.len(),
            check_time,
            validate_time: start.elapsed(),
        }
    }

    /// Follows an edit of `file`, whose text went from `old` to `new`: the
    /// items it touched are parsed again ([`parse_from`]) and their stages,
    /// and those of templates they declare, will be checked again. `None`
    /// when the pipeline must be loaded again, and nothing was changed:
    /// when the edit touches an `include` line, when an include is missing
    /// (it may have appeared), or when nothing changed.
    pub(crate) fn edit(&mut self, file: FileId, old: &str, new: &str) -> Option<Edited> {
        if self.includes_missing() {
            return None;
        }
        let diff = Diff::of(old, new)?;
        let errors = self.errors.get(file.0 as usize)?;
        // Where the old parse was at the start of an item, in order.
        let mut tops: Vec<usize> = self
            .items
            .iter()
            .filter(|e| e.file == file)
            .map(|e| e.range().0)
            .chain(errors.iter().map(|e| e.at))
            .collect();
        tops.sort_unstable();
        // An item's parse reads the text from its start to its end: parse
        // again from the last item that starts before the change, or from
        // the first item that failed before it, whose parse may have read
        // anything after it; up to the first item after the change that the
        // old parse started too, from where both parses read the same text.
        let mut start = tops
            .iter()
            .rev()
            .find(|&&t| t < diff.start)
            .copied()
            .unwrap_or(0);
        if let Some(first) = errors.first() {
            start = start.min(first.at);
        }
        let old_at = |q: usize| q - diff.new_end + diff.old_end;
        let ((fresh, fresh_errors), stopped) = parse_from(file, new, start, &mut |q| {
            q >= diff.new_end && tops.binary_search(&old_at(q)).is_ok()
        });
        let region = Region {
            file,
            start,
            old_end: old_at(stopped),
            new_end: stopped,
        };
        let replaced = start..region.old_end;
        if old[replaced.clone()].contains("include") || new[start..stopped].contains("include") {
            return None;
        }
        // The old items parsed again: one run of `items`, since no include
        // is among them.
        let inside = |e: &Entry| e.file == file && replaced.contains(&e.range().0);
        let straddles = |e: &Entry| {
            let (s, end) = e.range();
            e.file == file && s < start && end > start
        };
        let count = self.items.iter().filter(|e| inside(e)).count();
        let at = match self.items.iter().position(inside) {
            Some(at) => at,
            None if fresh.is_empty() => self.items.len(),
            None => self.anchor(file, start, region.old_end)?,
        };
        if !self.items[at..at + count].iter().all(inside)
            || self.items.iter().any(straddles)
            || !self.loaded.iter().all(|d| region.fits(d))
        {
            return None;
        }

        // The edit is taken from here on.
        let old_items = &self.items[at..at + count];
        let first = self.items[..at].iter().filter(|e| e.is_stage()).count();
        let removed = old_items.iter().filter(|e| e.is_stage()).count();
        let added = fresh.iter().filter(|i| matches!(i, Item::Stage(_))).count();
        for item in old_items.iter().map(|e| &e.item).chain(&fresh) {
            match template_name(item) {
                Some(Some(name)) => {
                    self.stale_templates.insert(name.to_string());
                }
                Some(None) => self.stale_all = true,
                None => {}
            }
        }
        let parsed = fresh.len();
        let by =
            i64::try_from(region.new_end).unwrap_or(0) - i64::try_from(region.old_end).unwrap_or(0);
        for e in &mut self.items {
            if e.file == file && e.range().0 >= region.old_end {
                e.moved += by;
                if !e.is_stage() {
                    e.settle();
                }
            }
        }
        self.items.splice(
            at..at + count,
            fresh.into_iter().map(|item| Entry {
                file,
                item,
                moved: 0,
            }),
        );
        self.units
            .splice(first..first + removed, (0..added).map(|_| None));
        if let Some(errors) = self.errors.get_mut(file.0 as usize) {
            let (mut kept, mut after) = (Vec::new(), Vec::new());
            for mut e in std::mem::take(errors) {
                if e.at < region.start {
                    kept.push(e);
                } else if e.at >= region.old_end {
                    e.at = e.at - region.old_end + region.new_end;
                    region.move_diag(&mut e.diag);
                    after.push(e);
                }
            }
            kept.extend(fresh_errors);
            kept.append(&mut after);
            *errors = kept;
        }
        for (f, at) in &mut self.includes {
            if *f == file && *at >= region.old_end {
                *at = *at - region.old_end + region.new_end;
            }
        }
        for d in &mut self.loaded {
            region.move_diag(d);
        }
        for slot in &mut self.units {
            if slot.as_mut().is_some_and(|u| !u.moved(&region)) {
                *slot = None;
            }
        }
        let unparsed: HashSet<String> = self
            .errors
            .iter()
            .flatten()
            .filter_map(|e| e.name.clone())
            .collect();
        if unparsed != self.unparsed {
            self.unparsed = unparsed;
            self.stale_unknown = true;
        }
        Some(Edited {
            diff,
            region,
            stages: first..first + removed,
            added,
            parsed,
        })
    }

    /// Where in `items` the items parsed from `start..end` of `file` go,
    /// when no old item was there: before the file's next item, or after
    /// its last one before, whichever no include line separates from the
    /// place (an include's items are where the include is).
    fn anchor(&self, file: FileId, start: usize, end: usize) -> Option<usize> {
        let before = self
            .items
            .iter()
            .rposition(|e| e.file == file && e.range().0 < start);
        let next = self
            .items
            .iter()
            .position(|e| e.file == file && e.range().0 >= end);
        let starts = |i: Option<usize>| i.map(|i| self.items[i].range().0);
        let (from, to) = (starts(before), starts(next));
        let includes = || {
            self.includes
                .iter()
                .filter(move |(f, _)| *f == file)
                .map(|(_, at)| *at)
        };
        let include_before = includes().any(|i| from.is_none_or(|f| i > f) && i < start);
        let include_after = includes().any(|i| i >= end && to.is_none_or(|t| i < t));
        match (before, next) {
            (_, Some(next)) if !include_after => Some(next),
            (Some(before), _) if !include_before => Some(before + 1),
            _ => None,
        }
    }
}

/// `Some` for a `template` item: with the name it declares, if it does.
fn template_name(item: &Item) -> Option<Option<&str>> {
    match item {
        Item::Setting(s) if s.key.name == "template" => Some(match s.args.first() {
            Some(Value::Word(w)) => Some(w.name.as_str()),
            _ => None,
        }),
        _ => None,
    }
}

impl Unit {
    /// Moves every place the unit points at; `false` when one touches the
    /// region, and then the unit must be checked again.
    fn moved(&mut self, region: &Region) -> bool {
        let check = &mut self.check;
        let mut ok = check
            .own
            .iter_mut()
            .chain(&mut check.refs)
            .all(|d| region.move_diag(d));
        if let Some(head) = &mut check.head {
            ok &= region.move_span(&mut head.span);
            ok &= head.after.iter_mut().all(|d| region.move_span(&mut d.span));
        }
        if let Some(found) = &mut self.found {
            ok &= found
                .found
                .iter_mut()
                .flatten()
                .flatten()
                .all(|d| region.move_diag(d));
        }
        ok
    }
}

/// Validation, stage by stage as `plan::validate` plans them: each
/// stage's findings are kept until it or the settings change.
struct Validating<'a, 'u> {
    top: &'a Top<'a>,
    validation: &'a Validation<'a>,
    units: &'a mut [&'u mut Unit],
    /// The placed units: the stages, then the `finally` ones.
    order: &'a [usize],
    compiled: &'a mut Compiled,
    cells: &'a mut Option<CellOrder>,
}

impl Validating<'_, '_> {
    /// What validation finds; `planned` counts the stages planned now.
    fn run<'d>(
        &mut self,
        decl: impl Fn(usize) -> Option<&'d StageDecl>,
        planned: &mut usize,
    ) -> Vec<Diag> {
        let validation = self.validation;
        for &u in self.order {
            let unit = &mut self.units[u];
            if unit.found.is_some() {
                continue;
            }
            // A stage checked in an earlier round is checked again to be
            // planned: its model is not kept.
            let stage = unit.check.stage.take().or_else(|| {
                decl(u).and_then(|d| StageUnit::check(self.top, self.compiled, d).stage)
            });
            if let Some(stage) = stage {
                *planned += 1;
                unit.found = Some(validation.stage(&stage));
                unit.check.stage = Some(stage);
            }
        }
        let none = StageFindings::default();
        let units = &*self.units;
        let order = self.order;
        let found = |k: usize| units[order[k]].found.as_ref().unwrap_or(&none);
        // Placed stages all have a head.
        let graph: Vec<(&str, &[Dep], usize)> = order
            .iter()
            .enumerate()
            .map(|(k, &u)| match &units[u].check.head {
                Some(head) => (head.name.as_str(), head.after.as_slice(), found(k).cells),
                None => ("", &[][..], 0),
            })
            .collect();
        let same = self.cells.as_ref().is_some_and(|kept| {
            kept.graph.len() == graph.len()
                && kept
                    .graph
                    .iter()
                    .zip(&graph)
                    .all(|(n, (name, after, cells))| {
                        n.0 == *name
                            && n.2 == *cells
                            && n.1.len() == after.len()
                            && n.1.iter().zip(after.iter()).all(|(a, d)| *a == d.name)
                    })
        });
        if !same {
            let nodes = graph
                .iter()
                .map(|(name, after, cells)| {
                    let after = after.iter().map(|d| d.name.clone()).collect();
                    Node((*name).to_string(), after, *cells)
                })
                .collect();
            *self.cells = Some(CellOrder {
                graph: nodes,
                cells: cell_order(&graph),
            });
        }
        let cells = self.cells.as_ref().map_or(&[][..], |o| o.cells.as_slice());
        validation.collect(cells, found)
    }
}
