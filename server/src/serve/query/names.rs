//! What the names in a filter, rule or sort stand for in one tenant's
//! `data.db`: fields of the record, paths through relation fields
//! (`author.team.name`) and back-relations (`comments_via_post.body`) as
//! correlated subqueries, and `@collection` joins.
//! Every piece of SQL here is made of quoted schema names only.
//!
//! A client's own `filter` and `sort` (not a superuser's, not a rule) are
//! [`Scope::Client`]: they may only reach collections anyone may list
//! (`listRule` `""`), and never an auth record's `email`, so a filter cannot
//! be used to probe what the API would not show.

use super::filter::{Names, Resolved, quote_ident};
use crate::serve::schema::{self, Collection, Field, FieldType};
use rusqlite::Connection;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// PocketBase's limit on relation hops in one path.
const MAX_HOPS: usize = 6;

/// Who wrote the expression being compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An API rule (written by a superuser) or a superuser's filter.
    Trusted,
    /// A filter or sort sent by a guest or an auth record.
    Client,
}

pub struct RecordNames<'a> {
    conn: &'a Connection,
    c: &'a Collection,
    scope: Scope,
    /// Collections looked up so far, by id and by name.
    seen: RefCell<HashMap<String, Option<Collection>>>,
    /// Makes subquery aliases unique within one statement.
    next: Cell<usize>,
}

impl<'a> RecordNames<'a> {
    pub fn new(conn: &'a Connection, c: &'a Collection, scope: Scope) -> RecordNames<'a> {
        RecordNames {
            conn,
            c,
            scope,
            seen: RefCell::default(),
            next: Cell::new(0),
        }
    }

    fn collection(&self, id_or_name: &str) -> Option<Collection> {
        if id_or_name == self.c.id || id_or_name == self.c.name {
            return Some(self.c.clone());
        }
        self.seen
            .borrow_mut()
            .entry(id_or_name.to_string())
            .or_insert_with(|| schema::find_collection(self.conn, id_or_name).ok())
            .clone()
    }

    /// A collection an expression may join (a relation hop, `@collection`).
    fn reachable(&self, id_or_name: &str) -> Option<Collection> {
        self.collection(id_or_name)
            .filter(|c| self.scope == Scope::Trusted || c.rules.list.as_deref() == Some(""))
    }

    /// A field an expression may name.
    fn named<'c>(&self, c: &'c Collection, name: &str) -> Option<&'c Field> {
        c.visible_field(name)
            .filter(|f| self.scope == Scope::Trusted || !(c.is_auth() && f.name == "email"))
    }

    /// `<collection>_via_<field>` from a row of `c`: that collection (one
    /// the expression may join) and its relation field pointing at `c`. A
    /// field of `c` with that name wins.
    fn back_relation(&self, c: &Collection, hop: &str) -> Option<(Collection, Field)> {
        if c.field(hop).is_some() {
            return None;
        }
        let (name, field) = hop.split_once("_via_")?;
        let oc = self.reachable(name)?;
        let f = self
            .named(&oc, field)
            .filter(|f| f.kind == FieldType::Relation && f.collection_id == c.id)?
            .clone();
        Some((oc, f))
    }

    fn alias(&self) -> String {
        let n = self.next.get() + 1;
        self.next.set(n);
        format!("__p{n}")
    }

    /// `path` of a row of `c` whose SQL alias is `root`.
    fn path(&self, c: &Collection, root: &str, path: &str) -> Option<Resolved> {
        let parts: Vec<&str> = path.split('.').collect();
        let (last, hops) = parts.split_last()?;
        if hops.is_empty() {
            return Some(column(self.named(c, last)?, root));
        }
        // A path into a json or geoPoint field: `data.a.b`, `at.lon`.
        if let Some(f) = self
            .named(c, parts[0])
            .filter(|f| matches!(f.kind, FieldType::Json | FieldType::GeoPoint))
        {
            let plain = |p: &&str| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            };
            if !parts[1..].iter().all(plain) {
                return None;
            }
            return Some(Resolved::One(format!(
                "json_extract({root}.{}, '$.{}')",
                quote_ident(&f.name),
                parts[1..].join(".")
            )));
        }
        if hops.len() > MAX_HOPS {
            return None;
        }
        // FROM/JOIN through each relation; the first hop correlates with `root`.
        let (mut from, mut cond, mut many) = (String::new(), String::new(), false);
        let (mut cur_c, mut cur) = (c.clone(), root.to_string());
        for (i, hop) in hops.iter().enumerate() {
            if let Some((oc, back)) = self.back_relation(&cur_c, hop) {
                // `comments_via_post`: the rows of `comments` whose `post`
                // holds this row's id; always many.
                many = true;
                let (a, t) = (self.alias(), quote_ident(&oc.name));
                let col = format!("{a}.{}", quote_ident(&back.name));
                let refers = if back.multiple() {
                    format!(
                        "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({col}) THEN {col} ELSE '[]' END) WHERE value = {cur}.id)"
                    )
                } else {
                    format!("{col} = {cur}.id")
                };
                if i == 0 {
                    from = format!("{t} AS {a}");
                    cond = format!(" WHERE {refers}");
                } else {
                    from = format!("{from} JOIN {t} AS {a} ON {refers}");
                }
                (cur_c, cur) = (oc, a);
                continue;
            }
            let f = self.named(&cur_c, hop)?;
            if f.kind != FieldType::Relation {
                return None;
            }
            let target = self.reachable(&f.collection_id)?;
            let (a, t) = (self.alias(), quote_ident(&target.name));
            let col = format!("{cur}.{}", quote_ident(hop));
            if f.multiple() {
                many = true;
                let je = self.alias();
                let src = format!(
                    "json_each(CASE WHEN json_valid({col}) THEN {col} ELSE '[]' END) AS {je} JOIN {t} AS {a} ON {a}.id = {je}.value"
                );
                from = if i == 0 {
                    src
                } else {
                    format!("{from} JOIN {src}")
                };
            } else if i == 0 {
                from = format!("{t} AS {a}");
                cond = format!(" WHERE {a}.id = {col}");
            } else {
                from = format!("{from} JOIN {t} AS {a} ON {a}.id = {col}");
            }
            (cur_c, cur) = (target, a);
        }
        let f = self.named(&cur_c, last)?;
        let value = match column(f, &cur) {
            Resolved::Many(_) => {
                many = true;
                let je = self.alias();
                let col = format!("{cur}.{}", quote_ident(last));
                from = format!(
                    "{from} JOIN json_each(CASE WHEN json_valid({col}) THEN {col} ELSE '[]' END) AS {je}"
                );
                format!("{je}.value")
            }
            Resolved::One(v) | Resolved::Json(v) => v,
        };
        let sub = format!("SELECT {value} AS v FROM {from}{cond}");
        Some(if many {
            Resolved::Many(sub)
        } else {
            Resolved::One(format!("({sub} LIMIT 1)"))
        })
    }
}

/// A field of the row `root` (an SQL alias or table).
fn column(f: &Field, root: &str) -> Resolved {
    let col = format!("{root}.{}", quote_ident(&f.name));
    if f.multiple() {
        Resolved::Many(format!(
            "SELECT value AS v FROM json_each(CASE WHEN json_valid({col}) THEN {col} ELSE '[]' END)"
        ))
    } else if f.kind == FieldType::Json {
        Resolved::Json(col)
    } else {
        Resolved::One(col)
    }
}

impl Names for RecordNames<'_> {
    fn field(&self, path: &str) -> Option<Resolved> {
        self.path(self.c, &quote_ident(&self.c.name), path)
    }
    fn table(&self, name: &str) -> Option<String> {
        self.reachable(name).map(|c| quote_ident(&c.name))
    }
    fn joined(&self, name: &str, alias: &str, path: &str) -> Option<Resolved> {
        self.path(&self.reachable(name)?, alias, path)
    }
}
