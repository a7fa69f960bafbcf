//! Collection indexes. PocketBase stores each as a `CREATE INDEX` statement;
//! a client's statement is parsed here (never run as given) and the index is
//! created from the parsed parts, so only names of the collection's fields
//! reach SQL.
//!
//! ```text
//! CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON table
//!     ( column [COLLATE NOCASE|BINARY|RTRIM] [ASC|DESC] , ... )
//! ```

use super::filter::quote_ident;
use crate::serve::schema::Collection;

#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub collate: Option<&'static str>,
    pub desc: bool,
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Punct(char),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' | ')' | ',' | ';' => out.push(Tok::Punct(c)),
            '`' | '"' | '[' => {
                let end = if c == '[' { ']' } else { c };
                let mut v = String::new();
                loop {
                    match it.next() {
                        Some(ch) if ch == end => break,
                        Some(ch) => v.push(ch),
                        None => return Err("unterminated quoted name".into()),
                    }
                }
                out.push(Tok::Quoted(v));
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut v = c.to_string();
                while let Some(&d) = it.peek() {
                    if !(d.is_ascii_alphanumeric() || d == '_') {
                        break;
                    }
                    v.push(d);
                    it.next();
                }
                out.push(Tok::Word(v));
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(out)
}

struct P {
    toks: Vec<Tok>,
    pos: usize,
}

impl P {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }
    fn word(&mut self, w: &str) -> Result<(), String> {
        if self.peek_word(w) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {w}"))
        }
    }
    fn punct(&mut self, c: char) -> bool {
        if self.toks.get(self.pos) == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn name(&mut self) -> Result<String, String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w) | Tok::Quoted(w)) => {
                self.pos += 1;
                Ok(w.clone())
            }
            _ => Err("expected a name".into()),
        }
    }
}

fn plain_name(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.to_ascii_lowercase().starts_with("sqlite_")
}

/// Parse a client's index statement for collection `c`.
pub fn parse(sql: &str, c: &Collection) -> Result<Index, String> {
    let mut p = P {
        toks: lex(sql)?,
        pos: 0,
    };
    p.word("CREATE")?;
    let unique = p.peek_word("UNIQUE");
    if unique {
        p.pos += 1;
    }
    p.word("INDEX")?;
    if p.peek_word("IF") {
        p.word("IF")?;
        p.word("NOT")?;
        p.word("EXISTS")?;
    }
    let name = p.name()?;
    if !plain_name(&name) {
        return Err(format!("invalid index name {name:?}"));
    }
    p.word("ON")?;
    let table = p.name()?;
    if table != c.name {
        return Err(format!(
            "the index is on {table:?}, not on this collection ({:?})",
            c.name
        ));
    }
    if !p.punct('(') {
        return Err("expected ( and the indexed columns".into());
    }
    let mut columns = Vec::new();
    loop {
        let col = p.name()?;
        if c.field(&col).is_none() {
            return Err(format!("unknown field {col:?}"));
        }
        let mut collate = None;
        if p.peek_word("COLLATE") {
            p.pos += 1;
            let n = p.name()?.to_ascii_uppercase();
            collate = Some(match n.as_str() {
                "NOCASE" => "NOCASE",
                "BINARY" => "BINARY",
                "RTRIM" => "RTRIM",
                _ => return Err(format!("unknown collation {n:?}")),
            });
        }
        let desc = if p.peek_word("DESC") {
            p.pos += 1;
            true
        } else {
            if p.peek_word("ASC") {
                p.pos += 1;
            }
            false
        };
        columns.push(Column {
            name: col,
            collate,
            desc,
        });
        if p.punct(')') {
            break;
        }
        if !p.punct(',') {
            return Err("expected , or )".into());
        }
    }
    p.punct(';');
    if p.peek_word("WHERE") {
        return Err("partial indexes (WHERE) are not supported yet".into());
    }
    if p.pos != p.toks.len() {
        return Err("unexpected text after the column list".into());
    }
    Ok(Index {
        name,
        unique,
        columns,
    })
}

impl Index {
    /// PocketBase's stored form (backtick-quoted names).
    pub fn to_pocketbase(&self, table: &str) -> String {
        self.statement(table, |n| format!("`{n}`"))
    }
    /// The statement that creates it; names are plain, quoted again anyway.
    pub fn create_sql(&self, table: &str) -> String {
        self.statement(table, quote_ident)
    }
    pub fn drop_sql(&self) -> String {
        format!("DROP INDEX IF EXISTS {}", quote_ident(&self.name))
    }
    fn statement(&self, table: &str, q: impl Fn(&str) -> String) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let mut s = q(&c.name);
                if let Some(k) = c.collate {
                    s.push_str(&format!(" COLLATE {k}"));
                }
                if c.desc {
                    s.push_str(" DESC");
                }
                s
            })
            .collect();
        format!(
            "CREATE {}INDEX {} ON {} ({})",
            if self.unique { "UNIQUE " } else { "" },
            q(&self.name),
            q(table),
            cols.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::schema::{Field, FieldType, Rules};

    fn posts() -> Collection {
        let f = |n: &str| {
            let mut f: Field =
                serde_json::from_value(serde_json::json!({"name": n, "type": "text"})).unwrap();
            f.kind = FieldType::Text;
            f
        };
        Collection::build(
            "posts",
            "base",
            vec![
                f("slug"),
                f("title"),
                Field::autodate("created", true, false),
            ],
            Rules::default(),
        )
    }

    #[test]
    fn parses_pocketbase_statements() {
        let c = posts();
        let i = parse("CREATE UNIQUE INDEX `idx_slug` ON `posts` (`slug`)", &c).unwrap();
        assert!(i.unique);
        assert_eq!(
            i.to_pocketbase("posts"),
            "CREATE UNIQUE INDEX `idx_slug` ON `posts` (`slug`)"
        );
        let i = parse(
            "create index if not exists idx_t on posts (title COLLATE nocase DESC, created);",
            &c,
        )
        .unwrap();
        assert_eq!(
            i.create_sql("posts"),
            r#"CREATE INDEX "idx_t" ON "posts" ("title" COLLATE NOCASE DESC, "created")"#
        );
    }

    #[test]
    fn refuses_anything_else() {
        let c = posts();
        for bad in [
            "CREATE INDEX i ON other (slug)",
            "CREATE INDEX i ON posts (nope)",
            "CREATE INDEX i ON posts (slug) WHERE slug != ''",
            "CREATE INDEX i ON posts (slug); DROP TABLE posts",
            "CREATE INDEX sqlite_x ON posts (slug)",
            "CREATE INDEX `a b` ON posts (slug)",
            "CREATE INDEX i ON posts (slug COLLATE evil)",
            "CREATE INDEX i ON posts (lower(slug))",
            "CREATE TABLE x (a)",
            "CREATE INDEX i ON posts (`slug",
        ] {
            assert!(parse(bad, &c).is_err(), "{bad}");
        }
    }
}
