//! PocketBase's filter syntax: a parser to an AST, and a compiler from the
//! AST to SQL with bound parameters. User values never become SQL text: a
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

use rusqlite::types::Value as SqlValue;

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

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Num(f64),
    Ident(String),
    Op(Op, bool),
    And,
    Or,
    LParen,
    RParen,
}

fn lex(s: &str) -> Result<Vec<(Tok, usize)>, FilterError> {
    let b: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = |j: usize| b.get(j).copied();
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '&' if two(i + 1) == Some('&') => {
                i += 2;
                Tok::And
            }
            '|' if two(i + 1) == Some('|') => {
                i += 2;
                Tok::Or
            }
            '\'' | '"' => {
                let quote = c;
                i += 1;
                let mut v = String::new();
                loop {
                    match b.get(i) {
                        None => return Err(FilterError::Unterminated(start)),
                        Some('\\') if b.get(i + 1).is_some() => {
                            v.push(b[i + 1]);
                            i += 2;
                        }
                        Some(&ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(v)
            }
            '=' | '!' | '>' | '<' | '~' | '?' => {
                let any = c == '?';
                if any {
                    i += 1;
                }
                let (op, len) = match (b.get(i).copied(), b.get(i + 1).copied()) {
                    (Some('='), _) => (Op::Eq, 1),
                    (Some('!'), Some('=')) => (Op::Neq, 2),
                    (Some('!'), Some('~')) => (Op::NotLike, 2),
                    (Some('>'), Some('=')) => (Op::Gte, 2),
                    (Some('>'), _) => (Op::Gt, 1),
                    (Some('<'), Some('=')) => (Op::Lte, 2),
                    (Some('<'), _) => (Op::Lt, 1),
                    (Some('~'), _) => (Op::Like, 1),
                    _ => return Err(FilterError::Unexpected(format!("`{c}`"), start)),
                };
                i += len;
                Tok::Op(op, any)
            }
            c if c.is_ascii_digit()
                || (c == '-' && two(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                i += 1;
                while b.get(i).is_some_and(|d| d.is_ascii_digit() || *d == '.') {
                    i += 1;
                }
                let text: String = b[start..i].iter().collect();
                let n = text
                    .parse::<f64>()
                    .map_err(|_| FilterError::Unexpected(format!("number `{text}`"), start))?;
                Tok::Num(n)
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '@' => {
                i += 1;
                while b.get(i).is_some_and(|d| {
                    d.is_ascii_alphanumeric() || matches!(d, '_' | '.' | '@' | ':')
                }) {
                    i += 1;
                }
                Tok::Ident(b[start..i].iter().collect())
            }
            other => return Err(FilterError::Unexpected(format!("`{other}`"), start)),
        };
        out.push((tok, start));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
    terms: usize,
    end: usize,
}

/// Parse a filter expression. Empty input is `Ok(None)` (no condition).
pub fn parse(s: &str) -> Result<Option<Expr>, FilterError> {
    if s.len() > MAX_LEN {
        return Err(FilterError::TooLong);
    }
    let toks = lex(s)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        terms: 0,
        end: s.len(),
    };
    let e = p.expr()?;
    if let Some((t, at)) = p.toks.get(p.pos) {
        return Err(FilterError::Unexpected(format!("{t:?}"), *at));
    }
    Ok(Some(e))
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, a)| *a)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }
    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.primary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.primary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn primary(&mut self) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(FilterError::TooDeep);
            }
            let e = self.expr()?;
            let at = self.at();
            if self.next() != Some(Tok::RParen) {
                return Err(FilterError::Unexpected(
                    "end of group (missing `)`)".into(),
                    at,
                ));
            }
            self.depth -= 1;
            return Ok(e);
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(FilterError::TooManyTerms);
        }
        let left = self.operand()?;
        let at = self.at();
        let Some(Tok::Op(op, any)) = self.next() else {
            return Err(FilterError::Unexpected(
                "token, expected an operator".into(),
                at,
            ));
        };
        let right = self.operand()?;
        Ok(Expr::Cmp {
            left,
            op,
            any,
            right,
        })
    }
    fn operand(&mut self) -> Result<Operand, FilterError> {
        let at = self.at();
        Ok(match self.next() {
            Some(Tok::Str(s)) => Operand::Str(s),
            Some(Tok::Num(n)) => Operand::Num(n),
            Some(Tok::Ident(id)) => match id.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "null" => Operand::Null,
                _ => name_operand(&id)?,
            },
            Some(t) => return Err(FilterError::Unexpected(format!("{t:?}"), at)),
            None => return Err(FilterError::Unexpected("end of filter".into(), at)),
        })
    }
}

/// `name:modifier` split; a name without a colon has no modifier.
fn split_modifier(id: &str) -> Result<(&str, Option<Modifier>), FilterError> {
    let Some((name, m)) = id.split_once(':') else {
        return Ok((id, None));
    };
    let m = match m {
        "isset" => Modifier::IsSet,
        "changed" => Modifier::Changed,
        "length" => Modifier::Length,
        "lower" => Modifier::Lower,
        "each" => Modifier::Each,
        _ => return Err(FilterError::Unsupported(id.to_string())),
    };
    Ok((name, Some(m)))
}

/// The modifiers that only `@request.body.*` takes.
fn body_only(m: Option<Modifier>) -> bool {
    matches!(m, Some(Modifier::IsSet | Modifier::Changed))
}

/// An identifier: a field path, `@request.*`, `@collection.*` or a macro,
/// with an optional `:modifier`.
fn name_operand(id: &str) -> Result<Operand, FilterError> {
    let unsupported = || FilterError::Unsupported(id.to_string());
    let bad_path = |p: &str| p.is_empty() || p.split('.').any(str::is_empty);
    if let Some(rest) = id.strip_prefix("@collection.") {
        // `@collection.name[:alias].path[:modifier]`
        let (coll, path) = rest.split_once('.').ok_or_else(unsupported)?;
        let (path, modifier) = split_modifier(path)?;
        let (name, alias) = coll.split_once(':').unwrap_or((coll, coll));
        let ident =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident(name) || !ident(alias) || bad_path(path) || body_only(modifier) {
            return Err(unsupported());
        }
        return Ok(Operand::Collection {
            name: name.into(),
            alias: alias.into(),
            path: path.into(),
            modifier,
        });
    }
    let (name, modifier) = split_modifier(id)?;
    if let Some(rest) = name.strip_prefix("@request.") {
        let rest = match rest.strip_prefix("data.") {
            Some(field) => format!("body.{field}"),
            None => rest.to_string(),
        };
        let known = ["auth.", "body.", "query.", "headers."]
            .iter()
            .any(|p| rest.starts_with(p))
            || matches!(rest.as_str(), "method" | "context");
        if !known || bad_path(&rest) {
            return Err(unsupported());
        }
        if body_only(modifier) && !rest.starts_with("body.") {
            return Err(unsupported());
        }
        return Ok(Operand::Request(rest, modifier));
    }
    if name.starts_with('@') {
        return match (name, modifier) {
            ("@now" | "@todayStart" | "@todayEnd", None) => Ok(Operand::Macro(name.into())),
            (m, None) if super::macros::NAMES.contains(&m) => Ok(Operand::Macro(name.into())),
            _ => Err(unsupported()),
        };
    }
    if bad_path(name) || body_only(modifier) {
        return Err(FilterError::UnknownField(id.to_string()));
    }
    Ok(Operand::Field(name.into(), modifier))
}

/// What a name stands for in SQL. The text is made only of quoted schema
/// names, never of user input, and binds no parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// One value per record.
    One(String),
    /// A json field: the `?` operators look inside its array.
    Json(String),
    /// Several values (a multiple select or relation field, or a path
    /// through one): a subquery whose rows have one column, `v`.
    Many(String),
}

/// The schema, as the compiler sees it.
pub trait Names {
    /// A field of the filtered record, or a path through relation fields.
    fn field(&self, path: &str) -> Option<Resolved>;
    /// The quoted table of the collection called `name`, if there is one.
    fn table(&self, name: &str) -> Option<String>;
    /// A field path of collection `name` joined under the SQL alias `alias`.
    fn joined(&self, name: &str, alias: &str, path: &str) -> Option<Resolved>;
}

/// What the compiler needs from the request: the schema, the caller, the clock.
pub struct Ctx<'a> {
    pub names: &'a dyn Names,
    /// `@request.*`: `{auth, body, query, headers, method, context}`, with
    /// `auth` null for a guest.
    pub request: &'a serde_json::Value,
    /// `@now` as PocketBase's date string.
    pub now: String,
    pub today_start: String,
    pub today_end: String,
}

/// SQL text with `?` placeholders, and the values to bind, in order.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

impl Sql {
    fn param(v: SqlValue) -> Sql {
        Sql {
            text: "?".into(),
            params: vec![v],
        }
    }
    fn raw(text: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            params: vec![],
        }
    }
}

/// The SQL alias an `@collection.<name>[:alias]` join gets. Aliases are
/// case-sensitive in a filter but SQLite's names are not, so the alias is
/// spelled in hex: `u` and `U` stay two joins (a fuzzer found the 500).
pub fn join_alias(alias: &str) -> String {
    let hex: String = alias.bytes().map(|b| format!("{b:02x}")).collect();
    quote_ident(&format!("__col_{hex}"))
}

/// Compile `e` into `out`. `@collection` references become one LEFT JOIN
/// per alias around the whole expression, so every term that names the same
/// alias talks about the same row (PocketBase's semantics).
pub fn compile(e: &Expr, ctx: &Ctx, out: &mut Sql) -> Result<(), FilterError> {
    let mut joins: Vec<(&str, &str)> = Vec::new();
    collect_joins(e, &mut joins)?;
    if joins.is_empty() {
        return expr_sql(e, ctx, out);
    }
    out.text.push_str("EXISTS (SELECT 1 FROM (SELECT 1)");
    for (name, alias) in &joins {
        let table = ctx
            .names
            .table(name)
            .ok_or_else(|| FilterError::UnknownField(format!("@collection.{name}")))?;
        out.text
            .push_str(&format!(" LEFT JOIN {table} AS {} ON 1", join_alias(alias)));
    }
    out.text.push_str(" WHERE ");
    expr_sql(e, ctx, out)?;
    out.text.push(')');
    Ok(())
}

fn collect_joins<'e>(e: &'e Expr, out: &mut Vec<(&'e str, &'e str)>) -> Result<(), FilterError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            collect_joins(a, out)?;
            collect_joins(b, out)
        }
        Expr::Cmp { left, right, .. } => {
            for o in [left, right] {
                if let Operand::Collection { name, alias, .. } = o {
                    match out.iter().find(|(_, a)| a == alias) {
                        Some((n, _)) if n != name => {
                            return Err(FilterError::Unsupported(format!(
                                "alias `{alias}` used for two collections"
                            )));
                        }
                        Some(_) => {}
                        None => out.push((name, alias)),
                    }
                }
            }
            Ok(())
        }
    }
}

fn expr_sql(e: &Expr, ctx: &Ctx, out: &mut Sql) -> Result<(), FilterError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            out.text.push('(');
            expr_sql(a, ctx, out)?;
            out.text.push_str(if matches!(e, Expr::And(..)) {
                " AND "
            } else {
                " OR "
            });
            expr_sql(b, ctx, out)?;
            out.text.push(')');
        }
        Expr::Cmp {
            left,
            op,
            any,
            right,
        } => {
            let like = matches!(op, Op::Like | Op::NotLike);
            let mut l = side(left, ctx, false)?;
            let mut r = side(right, ctx, like)?;
            let mut op = *op;
            // A multi-valued name on the right: compare from its side.
            if matches!(l, Side::One(_)) && !matches!(r, Side::One(_)) {
                op = op.mirrored().ok_or_else(|| {
                    FilterError::Unsupported("`~` with a multi-valued field on the right".into())
                })?;
                std::mem::swap(&mut l, &mut r);
            }
            let Side::One(r) = r else {
                return Err(FilterError::Unsupported(
                    "a comparison of two multi-valued names".into(),
                ));
            };
            let null = matches!(right, Operand::Null) || matches!(left, Operand::Null);
            match l {
                Side::One(l) => {
                    out.text.push_str(&cmp(&l.text, op, &r.text, null));
                    out.params.extend(l.params);
                    out.params.extend(r.params);
                }
                Side::Json(col) if *any => {
                    // Any element (a scalar counts as a one-element array).
                    out.text.push_str(&format!(
                        "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({col}) AND json_type({col}) = 'array' THEN {col} WHEN json_valid({col}) THEN json_array(json_extract({col}, '$')) ELSE json_array({col}) END) AS __je WHERE {})",
                        cmp("__je.value", op, &r.text, null)
                    ));
                    out.params.extend(r.params);
                }
                Side::Json(col) => {
                    out.text.push_str(&cmp(&col, op, &r.text, null));
                    out.params.extend(r.params);
                }
                Side::Many(sub) => {
                    // No values count as one null, so `tags = null` holds
                    // for a record without tags.
                    let set = format!(
                        "SELECT v FROM ({sub}) UNION ALL SELECT NULL WHERE NOT EXISTS ({sub})"
                    );
                    let c = cmp("__m.v", op, &r.text, null);
                    out.text.push_str(&if *any {
                        format!("EXISTS (SELECT 1 FROM ({set}) AS __m WHERE {c})")
                    } else {
                        format!(
                            "NOT EXISTS (SELECT 1 FROM ({set}) AS __m WHERE NOT COALESCE({c}, 0))"
                        )
                    });
                    out.params.extend(r.params);
                }
            }
        }
    }
    Ok(())
}

impl Op {
    /// The operator with its sides swapped (`a < b` is `b > a`).
    fn mirrored(self) -> Option<Op> {
        Some(match self {
            Op::Eq | Op::Neq => self,
            Op::Gt => Op::Lt,
            Op::Gte => Op::Lte,
            Op::Lt => Op::Gt,
            Op::Lte => Op::Gte,
            Op::Like | Op::NotLike => return None,
        })
    }
}

/// `left op right` for two single values. `right` appears once, so a
/// parameter in it binds once.
fn cmp(left: &str, op: Op, right: &str, null: bool) -> String {
    // PocketBase treats null and "" alike in comparisons with null.
    if null && matches!(op, Op::Eq | Op::Neq) {
        let (l, r) = if right == "NULL" {
            (left, "''")
        } else {
            (right, "''")
        };
        let sym = if op == Op::Eq { "=" } else { "!=" };
        return format!("(COALESCE({l}, '') {sym} {r})");
    }
    let sym = match op {
        Op::Eq => "IS",
        Op::Neq => "IS NOT",
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        Op::Lte => "<=",
        Op::Like => "LIKE",
        Op::NotLike => "NOT LIKE",
    };
    format!("({left} {sym} {right})")
}

/// One side of a comparison.
enum Side {
    One(Sql),
    Json(String),
    Many(String),
}

fn side(o: &Operand, ctx: &Ctx, like: bool) -> Result<Side, FilterError> {
    let text = |s: &str| {
        // `~ 'abc'` means "contains": wrap in % unless the user placed one.
        if like && !s.contains('%') {
            SqlValue::Text(format!("%{s}%"))
        } else {
            SqlValue::Text(s.to_string())
        }
    };
    let v = match o {
        Operand::Field(path, m) => {
            let r = ctx
                .names
                .field(path)
                .ok_or_else(|| FilterError::UnknownField(path.clone()))?;
            return modify(r, *m, path);
        }
        Operand::Collection {
            name,
            alias,
            path,
            modifier,
        } => {
            let r = ctx
                .names
                .joined(name, &join_alias(alias), path)
                .ok_or_else(|| FilterError::UnknownField(format!("@collection.{name}.{path}")))?;
            return modify(r, *modifier, path);
        }
        Operand::Null => return Ok(Side::One(Sql::raw("NULL"))),
        Operand::Str(s) => text(s),
        Operand::Num(n) => num_value(*n),
        Operand::Bool(b) => SqlValue::Integer(*b as i64),
        Operand::Request(path, Some(Modifier::Changed)) => return changed(path, ctx),
        Operand::Request(path, m) => {
            let found = path.split('.').try_fold(ctx.request, |v, key| v.get(key));
            match (m, found) {
                (Some(Modifier::IsSet), f) => SqlValue::Integer(f.is_some() as i64),
                (Some(Modifier::Length), f) => {
                    SqlValue::Integer(f.and_then(|v| v.as_array()).map_or(0, Vec::len) as i64)
                }
                (Some(Modifier::Lower), Some(serde_json::Value::String(s))) => {
                    text(&s.to_lowercase())
                }
                (_, Some(serde_json::Value::String(s))) => text(s),
                (_, Some(v)) if !v.is_null() => json_to_sql(v),
                // A guest's, or a missing, value is "", as in PocketBase.
                (_, _) => SqlValue::Text(String::new()),
            }
        }
        Operand::Macro(m) => match m.as_str() {
            "@now" => SqlValue::Text(ctx.now.clone()),
            "@todayStart" => SqlValue::Text(ctx.today_start.clone()),
            "@todayEnd" => SqlValue::Text(ctx.today_end.clone()),
            other => super::macros::value(other, &ctx.now)
                .ok_or_else(|| FilterError::Unsupported(other.to_string()))?,
        },
    };
    Ok(Side::One(Sql::param(v)))
}

/// `@request.body.x:changed`, as PocketBase rewrites it:
/// `@request.body.x:isset = true && @request.body.x != x`. 1 or 0.
fn changed(path: &str, ctx: &Ctx) -> Result<Side, FilterError> {
    let field = path.strip_prefix("body.").unwrap_or(path);
    let Some(sent) = path.split('.').try_fold(ctx.request, |v, key| v.get(key)) else {
        return Ok(Side::One(Sql::param(SqlValue::Integer(0))));
    };
    let column = match ctx.names.field(field) {
        Some(Resolved::One(c)) => c,
        Some(_) => {
            return Err(FilterError::Unsupported(format!(
                "@request.{path}:changed on a multi-valued or JSON field"
            )));
        }
        None => return Err(FilterError::UnknownField(field.to_string())),
    };
    let value = match sent {
        serde_json::Value::Null => SqlValue::Text(String::new()),
        v => json_to_sql(v),
    };
    let differs = cmp("?", Op::Neq, &column, false);
    Ok(Side::One(Sql {
        text: format!("(CASE WHEN {differs} THEN 1 ELSE 0 END)"),
        params: vec![value],
    }))
}

/// Apply a `:modifier` to a resolved name.
fn modify(r: Resolved, m: Option<Modifier>, path: &str) -> Result<Side, FilterError> {
    let bad = || FilterError::Unsupported(format!("modifier on `{path}`"));
    Ok(match (r, m) {
        (Resolved::One(s), None | Some(Modifier::Each)) => Side::One(Sql::raw(s)),
        (Resolved::Json(s), None) => Side::Json(s),
        (Resolved::Many(s), None | Some(Modifier::Each)) => Side::Many(s),
        (Resolved::One(s), Some(Modifier::Lower)) => Side::One(Sql::raw(format!("LOWER({s})"))),
        (Resolved::Many(s), Some(Modifier::Lower)) => {
            Side::Many(format!("SELECT LOWER(v) AS v FROM ({s})"))
        }
        (Resolved::Many(s), Some(Modifier::Length)) => {
            Side::One(Sql::raw(format!("(SELECT COUNT(*) FROM ({s}))")))
        }
        (Resolved::Json(s), Some(Modifier::Length)) => Side::One(Sql::raw(format!(
            "(CASE WHEN json_valid({s}) AND json_type({s}) = 'array' THEN json_array_length({s}) ELSE 0 END)"
        ))),
        _ => return Err(bad()),
    })
}

fn num_value(n: f64) -> SqlValue {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        SqlValue::Integer(n as i64)
    } else {
        SqlValue::Real(n)
    }
}

pub fn json_to_sql(v: &serde_json::Value) -> SqlValue {
    match v {
        serde_json::Value::Null => SqlValue::Null,
        serde_json::Value::Bool(b) => SqlValue::Integer(*b as i64),
        serde_json::Value::Number(n) => n.as_f64().map_or(SqlValue::Null, num_value),
        serde_json::Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// A schema-checked name as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use serde_json::json;

    /// A `posts` table with a json field, a multiple field and a relation
    /// to `users`, and a `members` table for `@collection`.
    struct Schema;
    impl Names for Schema {
        fn field(&self, path: &str) -> Option<Resolved> {
            let col = |c: &str| format!("\"posts\".\"{c}\"");
            Some(match path {
                "id" | "title" | "n" | "done" | "created" | "team" | "author" => {
                    Resolved::One(col(path))
                }
                "tags" => Resolved::Json(col(path)),
                "cats" => {
                    Resolved::Many(format!("SELECT value AS v FROM json_each({})", col("cats")))
                }
                "author.name" => Resolved::One(format!(
                    "(SELECT a1.\"name\" FROM \"users\" AS a1 WHERE a1.id = {})",
                    col("author")
                )),
                _ => return None,
            })
        }
        fn table(&self, name: &str) -> Option<String> {
            (name == "members").then(|| "\"members\"".into())
        }
        fn joined(&self, name: &str, alias: &str, path: &str) -> Option<Resolved> {
            (name == "members" && matches!(path, "user" | "team"))
                .then(|| Resolved::One(format!("{alias}.\"{path}\"")))
        }
    }

    fn request(auth: serde_json::Value) -> serde_json::Value {
        json!({"auth": auth, "body": {"title": "T", "tags": ["a", "b"]},
               "query": {"q": "x"}, "headers": {}, "method": "GET", "context": "default"})
    }

    fn sql_with(s: &str, req: &serde_json::Value) -> Result<Sql, FilterError> {
        let ctx = Ctx {
            names: &Schema,
            request: req,
            now: "NOW".into(),
            today_start: "TS".into(),
            today_end: "TE".into(),
        };
        let mut out = Sql::default();
        compile(&parse(s)?.expect("non-empty"), &ctx, &mut out)?;
        Ok(out)
    }

    fn sql(s: &str) -> Result<Sql, FilterError> {
        sql_with(s, &request(json!({"id": "u1"})))
    }

    /// Ids of the posts `filter` selects, run for real in SQLite.
    fn run(filter: &str, auth: serde_json::Value) -> Vec<String> {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            r#"CREATE TABLE posts (id, title, n, done, created, team, tags, cats, author);
               CREATE TABLE users (id, name);
               CREATE TABLE members (user, team);
               INSERT INTO users VALUES ('u1', 'Ann'), ('u2', 'Bob');
               INSERT INTO members VALUES ('u1', 't1'), ('u2', 't2');
               INSERT INTO posts VALUES
                 ('p1', 'alpha', 1, 1, '2024', 't1', '["x","y"]', '["a","b"]', 'u1'),
                 ('p2', 'beta',  2, 0, '2025', 't2', '"x"',       '["a"]',     'u2'),
                 ('p3', '',      3, 0, '2026', 't1', NULL,        '[]',        '');"#,
        )
        .unwrap();
        let w = sql_with(filter, &request(auth)).unwrap();
        let mut stmt = db
            .prepare(&format!(
                "SELECT id FROM posts WHERE {} ORDER BY id",
                w.text
            ))
            .unwrap();
        stmt.query_map(rusqlite::params_from_iter(w.params.iter()), |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn operators_and_precedence() {
        let s = sql("title = 'a' || n > 2 && (done = true || n <= -1.5)").unwrap();
        assert_eq!(
            s.text,
            r#"(("posts"."title" IS ?) OR (("posts"."n" > ?) AND (("posts"."done" IS ?) OR ("posts"."n" <= ?))))"#
        );
        assert_eq!(
            s.params,
            vec![
                SqlValue::Text("a".into()),
                SqlValue::Integer(2),
                SqlValue::Integer(1),
                SqlValue::Real(-1.5)
            ]
        );
        assert_eq!(run("title = 'alpha' || n > 2", json!(null)), ["p1", "p3"]);
    }

    #[test]
    fn like_wraps_and_values_are_parameters() {
        let s = sql(r#"title ~ "x\" OR 1=1 --" && title !~ 'a%'"#).unwrap();
        assert_eq!(
            s.text,
            r#"(("posts"."title" LIKE ?) AND ("posts"."title" NOT LIKE ?))"#
        );
        assert_eq!(s.params[0], SqlValue::Text("%x\" OR 1=1 --%".into()));
        assert_eq!(s.params[1], SqlValue::Text("a%".into()));
        assert_eq!(run("title ~ 'et'", json!(null)), ["p2"]);
    }

    #[test]
    fn null_compares_like_empty_and_binds_once() {
        assert_eq!(run("title = null", json!(null)), ["p3"]);
        assert_eq!(run("title != null", json!(null)), ["p1", "p2"]);
        // A parameter on the left of a null comparison binds exactly once.
        assert_eq!(run("@request.auth.id = null", json!(null)).len(), 3);
        assert!(run("@request.auth.id = null", json!({"id": "u1"})).is_empty());
    }

    #[test]
    fn request_body_query_and_modifiers() {
        let req = request(json!({"id": "u1"}));
        let s = sql_with(
            "@request.body.title = 'T' && @request.body.tags:length = 2 && @request.body.nope:isset = false && @request.query.q = 'x' && @request.method = 'GET'",
            &req,
        )
        .unwrap();
        assert!(!s.text.contains("body"), "{}", s.text);
        assert_eq!(
            run("@request.data.title:isset = true && n = 1", json!(null)),
            ["p1"]
        );
        assert_eq!(
            run("@request.body.title:lower = 't' && n = 2", json!(null)),
            ["p2"]
        );
        assert_eq!(
            run("@request.body.nope:isset = true", json!(null)),
            Vec::<String>::new()
        );
        assert!(matches!(
            sql("@request.query.q:isset = true"),
            Err(FilterError::Unsupported(_))
        ));
        assert!(matches!(
            sql("title:nope = 1"),
            Err(FilterError::Unsupported(_))
        ));
        // `:each` on one value is that value, as in PocketBase.
        assert!(sql("title:each = 1").is_ok());
    }

    #[test]
    fn auth_and_relation_paths() {
        assert_eq!(
            run("author = @request.auth.id", json!({"id": "u2"})),
            ["p2"]
        );
        assert_eq!(run("author.name = 'Ann'", json!(null)), ["p1"]);
        // Guests have an empty auth id.
        assert_eq!(
            run("@request.auth.id != ''", json!(null)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn any_of_and_all_of() {
        // A json field: `?=` looks inside arrays; a scalar is a one-element array.
        assert_eq!(run("tags ?= 'x'", json!(null)), ["p1", "p2"]);
        // A multiple field: `?=` is any, `=` is every; no values act as null.
        assert_eq!(run("cats ?= 'b'", json!(null)), ["p1"]);
        assert_eq!(run("cats = 'a'", json!(null)), ["p2"]);
        assert_eq!(run("cats = null", json!(null)), ["p3"]);
        assert_eq!(run("cats:length >= 1", json!(null)), ["p1", "p2"]);
        // The multi-valued name may stand on the right.
        assert_eq!(run("'b' ?= cats", json!(null)), ["p1"]);
        assert!(matches!(
            sql("'b' ~ cats"),
            Err(FilterError::Unsupported(_))
        ));
    }

    #[test]
    fn collection_joins_share_one_row_per_alias() {
        // u1 is a member of t1 only: same row for both terms.
        let rule = "@collection.members.user = @request.auth.id && @collection.members.team = team";
        assert_eq!(run(rule, json!({"id": "u1"})), ["p1", "p3"]);
        assert_eq!(run(rule, json!({"id": "u2"})), ["p2"]);
        assert!(run(rule, json!(null)).is_empty());
        // Two aliases are two independent rows.
        let two = "@collection.members:a.user = 'u1' && @collection.members:b.team = team";
        assert_eq!(run(two, json!(null)), ["p1", "p2", "p3"]);
        assert!(matches!(
            sql("@collection.nope.user = 1"),
            Err(FilterError::UnknownField(_))
        ));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            sql("nope = 1").unwrap_err(),
            FilterError::UnknownField("nope".into())
        );
        assert!(matches!(
            sql("title = 'a"),
            Err(FilterError::Unterminated(8))
        ));
        assert!(matches!(sql("title 'a'"), Err(FilterError::Unexpected(..))));
        assert!(matches!(
            sql("(title = 'a'"),
            Err(FilterError::Unexpected(..))
        ));
        assert!(matches!(
            sql("title = 'a')"),
            Err(FilterError::Unexpected(..))
        ));
        assert!(matches!(
            sql("title = 'a'; DROP TABLE x"),
            Err(FilterError::Unexpected(..))
        ));
        assert!(matches!(
            sql("\"x\" = title.name"),
            Err(FilterError::UnknownField(_))
        ));
        assert!(matches!(
            sql("@request.secret = 1"),
            Err(FilterError::Unsupported(_))
        ));
        assert!(matches!(
            sql("title.. = 1"),
            Err(FilterError::UnknownField(_))
        ));
        assert_eq!(parse("  ").unwrap(), None);
    }

    #[test]
    fn limits() {
        let deep = format!("{}n = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(sql(&deep).is_ok());
        let deeper = format!(
            "{}n = 1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(sql(&deeper).unwrap_err(), FilterError::TooDeep);
        let long = format!("title = '{}'", "a".repeat(MAX_LEN));
        assert_eq!(parse(&long).unwrap_err(), FilterError::TooLong);
        let many = vec!["n = 1"; MAX_TERMS + 1].join(" || ");
        assert_eq!(parse(&many).unwrap_err(), FilterError::TooManyTerms);
    }
}
