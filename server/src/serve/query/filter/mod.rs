//! PocketBase's filter syntax: a parser to an AST (`parse.rs`), and a
//! compiler from the AST to SQL with bound parameters (`sql.rs`). User values never become SQL text: a
//! literal is always a `?` parameter, and a field name is only emitted after
//! it was found in the collection's schema (and it is quoted as well).
//!
//! ```text
//! expr    := and ("||" and)*
//! and     := primary ("&&" primary)*
//! primary := "(" expr ")" | operand op operand
//! op      := = != > >= < <= ~ !~   and the any-of forms ?= ?!= ?> ?>= ?< ?<= ?~ ?!~
//! operand := 'str' | "str" | number | true | false | null | field | @request.auth.x | @now ...
//! ```

mod parse;
#[cfg(test)]
mod proptests;
mod sql;
#[cfg(test)]
mod tests;

pub use parse::parse;
pub use sql::{Ctx, Names, Resolved, Sql, compile, join_alias, json_to_sql, quote_ident};

/// PocketBase rejects longer filters; so do we.
pub const MAX_LEN: usize = 3500;
/// Maximum parenthesis nesting.
pub const MAX_DEPTH: usize = 10;
/// Maximum number of comparisons in one expression.
pub const MAX_TERMS: usize = 200;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("filter longer than {MAX_LEN} characters")]
    TooLong,
    #[error("filter nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("filter has more than {MAX_TERMS} comparisons")]
    TooManyTerms,
    #[error("unexpected {0} at position {1}")]
    Unexpected(String, usize),
    #[error("unterminated string starting at position {0}")]
    Unterminated(usize),
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("unsupported identifier `{0}`")]
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    NotLike,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    /// A field of the record, or a path through relations (`author.name`).
    Field(String, Option<Modifier>),
    /// `@request.<path>`: `auth.id`, `body.title`, `query.x`, `headers.x`,
    /// `method`, `context` (`data.` is the older name of `body.`).
    Request(String, Option<Modifier>),
    /// `@collection.<name>[:alias].<path>`: a row of another collection.
    Collection {
        name: String,
        alias: String,
        path: String,
        modifier: Option<Modifier>,
    },
    /// `@now`, `@todayStart`, `@todayEnd`, and the others of
    /// `query/macros.rs`.
    Macro(String),
}

/// The `:modifier` suffixes PocketBase allows on names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    /// `@request.body.x:isset`: whether the client sent `x`.
    IsSet,
    /// `@request.body.x:changed`: the client sent `x` and it differs from
    /// the record's `x` (PocketBase: `@request.body.x:isset = true &&
    /// @request.body.x != x`).
    Changed,
    /// Number of items of a multi-valued field or a submitted array.
    Length,
    /// Lower-cased value.
    Lower,
    /// Every item of a multi-valued field must pass (what the plain
    /// operators already mean on one; `?=` and the others: any item).
    Each,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp {
        left: Operand,
        op: Op,
        /// The `?` forms: true if any element of a json array matches.
        any: bool,
        right: Operand,
    },
}
