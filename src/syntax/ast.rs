//! The unchecked syntax tree of one file. Bodies are generic settings; what a
//! setting means in each place is decided by `model::check`.

use serde::Serialize;

use crate::source::{FileId, Span};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ast {
    pub file: FileId,
    pub items: Vec<Item>,
    /// Every comment, in source order, for the formatter.
    pub comments: Vec<Comment>,
    /// Names of stages and templates whose declarations failed to parse:
    /// references to them are not reported again as unknown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unparsed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comment {
    /// The text after `#`, as written.
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Item {
    Stage(StageDecl),
    Setting(Setting),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Stage(s) => s.span,
            Item::Setting(s) => s.span,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StageKind {
    /// `stage`: part of the DAG.
    Stage,
    /// `finally`: runs after everything else, whatever happened.
    Finally,
}

impl StageKind {
    pub fn keyword(self) -> &'static str {
        match self {
            StageKind::Stage => "stage",
            StageKind::Finally => "finally",
        }
    }
}

/// `stage NAME [after A, B] [uses T] [when EXPR] { ... }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageDecl {
    pub kind: StageKind,
    pub name: Ident,
    /// In source order; the checker rejects repeats.
    pub clauses: Vec<Clause>,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Clause {
    After { names: Vec<Ident>, span: Span },
    Uses { template: Ident, span: Span },
    When { expr: Expr, span: Span },
}

impl Clause {
    pub fn span(&self) -> Span {
        match self {
            Clause::After { span, .. } | Clause::Uses { span, .. } | Clause::When { span, .. } => {
                *span
            }
        }
    }

    pub fn keyword(&self) -> &'static str {
        match self {
            Clause::After { .. } => "after",
            Clause::Uses { .. } => "uses",
            Clause::When { .. } => "when",
        }
    }
}

/// `key args... [= value] [{ block }]`, one per line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub key: Ident,
    pub args: Vec<Value>,
    pub assign: Option<Value>,
    pub block: Option<Block>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    pub settings: Vec<Setting>,
    /// From `{` to `}`.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Value {
    Str(Str),
    /// An integer, as written.
    Number {
        value: i64,
        span: Span,
    },
    /// Digits and units as written (`1h30m`); units are checked by the model.
    Duration {
        text: String,
        span: Span,
    },
    Bool {
        value: bool,
        span: Span,
    },
    /// A bare word: a name (`service db`), an option (`rollback on-failure`).
    Word(Ident),
    List {
        items: Vec<Value>,
        span: Span,
    },
}

impl Value {
    pub fn span(&self) -> Span {
        match self {
            Value::Str(s) => s.span,
            Value::Word(w) => w.span,
            Value::Number { span, .. }
            | Value::Duration { span, .. }
            | Value::Bool { span, .. }
            | Value::List { span, .. } => *span,
        }
    }

    /// What kind of value this is, in the user's words.
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Number { .. } => "a number",
            Value::Duration { .. } => "a duration",
            Value::Bool { .. } => "a boolean",
            Value::Word(_) => "a word",
            Value::List { .. } => "a list",
        }
    }
}

/// A string literal: `"..."` or `"""..."""`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Str {
    pub parts: Vec<StrPart>,
    /// `"""..."""`: multi-line, raw (no escapes), dedented.
    pub triple: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StrPart {
    /// Literal text, as written.
    Text(String),
    /// `\n`, `\"`, ...: the character after the backslash, as written.
    Escape { ch: char, span: Span },
    /// `${...}`: the text between the braces, as written.
    Interp { body: String, span: Span },
}

/// A `when` condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not {
        expr: Box<Expr>,
        span: Span,
    },
    Group {
        expr: Box<Expr>,
        span: Span,
    },
    Compare {
        lhs: Operand,
        op: CmpOp,
        rhs: Operand,
    },
    Operand(Operand),
    /// A part the grammar accepted but the tree builder did not find: only
    /// a grammar that drifted from the builder makes one. The checker
    /// reports it, so it can never let a `when` guard pass.
    Error {
        span: Span,
    },
}

impl Expr {
    pub fn span(&self) -> Span {
        match self {
            Expr::Error { span } => *span,
            Expr::Or(l, r) | Expr::And(l, r) => l.span().to(r.span()),
            Expr::Not { span, .. } | Expr::Group { span, .. } => *span,
            Expr::Compare { lhs, rhs, .. } => lhs.span().to(rhs.span()),
            Expr::Operand(o) => o.span(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Match,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Match => "=~",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Operand {
    /// `branch`, `env.NAME`, `git.sha`.
    Path {
        path: String,
        span: Span,
    },
    Str(Str),
    Bool {
        value: bool,
        span: Span,
    },
    /// `changed("docs/**")`.
    Call {
        name: Ident,
        args: Vec<Value>,
        span: Span,
    },
}

impl Operand {
    pub fn span(&self) -> Span {
        match self {
            Operand::Str(s) => s.span,
            Operand::Path { span, .. }
            | Operand::Bool { span, .. }
            | Operand::Call { span, .. } => *span,
        }
    }
}
