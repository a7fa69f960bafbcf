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
    /// A bare identifier: a field of the collection.
    Field(String),
    /// `@request.auth.<name>`.
    Auth(String),
    /// `@now`, `@todayStart`, `@todayEnd`.
    Macro(String),
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
                _ => {
                    if let Some(f) = id.strip_prefix("@request.auth.") {
                        Operand::Auth(f.to_string())
                    } else if id.starts_with('@') {
                        Operand::Macro(id)
                    } else {
                        Operand::Field(id)
                    }
                }
            },
            Some(t) => return Err(FilterError::Unexpected(format!("{t:?}"), at)),
            None => return Err(FilterError::Unexpected("end of filter".into(), at)),
        })
    }
}

/// What a field is, as far as comparisons care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Scalar,
    /// A json column: the `?` operators look inside arrays.
    Json,
}

/// What the compiler needs from the request: the schema, the caller, the clock.
pub struct Ctx<'a> {
    /// `Some(kind)` if the collection has this field.
    pub field: &'a dyn Fn(&str) -> Option<Kind>,
    /// `@request.auth.<name>` of the caller; `None` for a guest.
    pub auth: Option<&'a serde_json::Map<String, serde_json::Value>>,
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

pub fn compile(e: &Expr, ctx: &Ctx, out: &mut Sql) -> Result<(), FilterError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            out.text.push('(');
            compile(a, ctx, out)?;
            out.text.push_str(if matches!(e, Expr::And(..)) {
                " AND "
            } else {
                " OR "
            });
            compile(b, ctx, out)?;
            out.text.push(')');
        }
        Expr::Cmp {
            left,
            op,
            any,
            right,
        } => {
            let json_left = matches!(left, Operand::Field(f) if (ctx.field)(f) == Some(Kind::Json));
            if *any && json_left {
                // Any element of the array (a scalar counts as a one-element array).
                let Operand::Field(f) = left else {
                    unreachable!("json_left implies a field")
                };
                let col = quote_ident(f);
                out.text.push_str(&format!(
                    "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({col}) AND json_type({col}) = 'array' THEN {col} ELSE json_array({col}) END) AS __je WHERE "
                ));
                cmp(out, ctx, "__je.value", *op, right)?;
                out.text.push(')');
            } else {
                let l = operand_sql(left, ctx, out)?;
                cmp(out, ctx, &l, *op, right)?;
            }
        }
    }
    Ok(())
}

/// `left op right`, where `left` is already SQL (a column or a `?`).
fn cmp(out: &mut Sql, ctx: &Ctx, left: &str, op: Op, right: &Operand) -> Result<(), FilterError> {
    if matches!(op, Op::Like | Op::NotLike) {
        let r = match right {
            // `~ 'abc'` means "contains": wrap in % unless the user placed one.
            Operand::Str(s) if !s.contains('%') => {
                out.params.push(SqlValue::Text(format!("%{s}%")));
                "?".to_string()
            }
            other => operand_sql(other, ctx, out)?,
        };
        let not = if op == Op::NotLike { "NOT " } else { "" };
        out.text.push_str(&format!("({left} {not}LIKE {r})"));
        return Ok(());
    }
    // PocketBase treats null and "" alike for comparisons with null.
    if matches!(right, Operand::Null) && matches!(op, Op::Eq | Op::Neq) {
        let s = if op == Op::Eq {
            format!("({left} IS NULL OR {left} = '')")
        } else {
            format!("({left} IS NOT NULL AND {left} != '')")
        };
        out.text.push_str(&s);
        return Ok(());
    }
    let r = operand_sql(right, ctx, out)?;
    let sym = match op {
        Op::Eq => "IS",
        Op::Neq => "IS NOT",
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        Op::Lte => "<=",
        Op::Like | Op::NotLike => unreachable!("handled above"),
    };
    out.text.push_str(&format!("({left} {sym} {r})"));
    Ok(())
}

fn operand_sql(o: &Operand, ctx: &Ctx, out: &mut Sql) -> Result<String, FilterError> {
    let v = match o {
        Operand::Field(f) => {
            if (ctx.field)(f).is_none() {
                return Err(FilterError::UnknownField(f.clone()));
            }
            return Ok(quote_ident(f));
        }
        Operand::Null => return Ok("NULL".into()),
        Operand::Str(s) => SqlValue::Text(s.clone()),
        Operand::Num(n) => num_value(*n),
        Operand::Bool(b) => SqlValue::Integer(*b as i64),
        Operand::Auth(name) => match ctx.auth.and_then(|a| a.get(name)) {
            Some(v) => json_to_sql(v),
            // A guest's (or an unknown) auth field is "", as in PocketBase.
            None => SqlValue::Text(String::new()),
        },
        Operand::Macro(m) => match m.as_str() {
            "@now" => SqlValue::Text(ctx.now.clone()),
            "@todayStart" => SqlValue::Text(ctx.today_start.clone()),
            "@todayEnd" => SqlValue::Text(ctx.today_end.clone()),
            other => return Err(FilterError::Unsupported(other.to_string())),
        },
    };
    out.params.push(v);
    Ok("?".into())
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

    fn fields(f: &str) -> Option<Kind> {
        match f {
            "id" | "title" | "n" | "done" | "created" => Some(Kind::Scalar),
            "tags" => Some(Kind::Json),
            _ => None,
        }
    }

    fn sql(s: &str) -> Result<Sql, FilterError> {
        let mut auth = serde_json::Map::new();
        auth.insert("id".into(), "u1".into());
        let ctx = Ctx {
            field: &fields,
            auth: Some(&auth),
            now: "NOW".into(),
            today_start: "TS".into(),
            today_end: "TE".into(),
        };
        let mut out = Sql::default();
        compile(&parse(s)?.expect("non-empty"), &ctx, &mut out)?;
        Ok(out)
    }

    #[test]
    fn operators_and_precedence() {
        let s = sql("title = 'a' || n > 2 && (done = true || n <= -1.5)").unwrap();
        assert_eq!(
            s.text,
            "((\"title\" IS ?) OR ((\"n\" > ?) AND ((\"done\" IS ?) OR (\"n\" <= ?))))"
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
    }

    #[test]
    fn like_wraps_and_values_are_parameters() {
        let s = sql(r#"title ~ "x\" OR 1=1 --" && title !~ 'a%'"#).unwrap();
        assert_eq!(s.text, "((\"title\" LIKE ?) AND (\"title\" NOT LIKE ?))");
        assert_eq!(s.params[0], SqlValue::Text("%x\" OR 1=1 --%".into()));
        assert_eq!(s.params[1], SqlValue::Text("a%".into()));
    }

    #[test]
    fn macros_auth_null_and_any_of() {
        let s =
            sql("id = @request.auth.id && created < @now && title != null && tags ?= 'x'").unwrap();
        assert!(s.text.contains("json_each"), "{}", s.text);
        assert!(s.text.contains("IS NOT NULL AND"), "{}", s.text);
        assert_eq!(
            s.params,
            vec![
                SqlValue::Text("u1".into()),
                SqlValue::Text("NOW".into()),
                SqlValue::Text("x".into())
            ]
        );
        // Guests have an empty auth id.
        let ctx = Ctx {
            field: &fields,
            auth: None,
            now: String::new(),
            today_start: String::new(),
            today_end: String::new(),
        };
        let mut out = Sql::default();
        compile(
            &parse("@request.auth.id != ''").unwrap().unwrap(),
            &ctx,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.params,
            vec![SqlValue::Text("".into()), SqlValue::Text("".into())]
        );
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
            sql("@collection.x = 1"),
            Err(FilterError::Unsupported(_))
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
