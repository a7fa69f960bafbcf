//! Filter text to the AST: the lexer and a recursive-descent parser, with
//! the limits on length, depth and terms.

use super::*;

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
            (m, None) if crate::serve::query::macros::NAMES.contains(&m) => {
                Ok(Operand::Macro(name.into()))
            }
            _ => Err(unsupported()),
        };
    }
    if bad_path(name) || body_only(modifier) {
        return Err(FilterError::UnknownField(id.to_string()));
    }
    Ok(Operand::Field(name.into(), modifier))
}
