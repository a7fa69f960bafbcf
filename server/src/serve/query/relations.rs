//! Select and relation fields: what a write may store in them, `expand`
//! on reads, and what a delete does to the records that point at the
//! deleted one (cascade, clear, or refuse), as PocketBase does.

use super::filter::quote_ident;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::realtime::{self, Action, Change};
use crate::serve::schema::{self, Collection, Field, FieldType};
use crate::serve::tenants::Tenant;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

/// PocketBase's limit on nested `expand` levels.
const MAX_EXPAND_DEPTH: usize = 6;
/// Ids per `IN (...)` query, well under SQLite's parameter limit.
const CHUNK: usize = 500;

fn err(code: &str, msg: impl Into<String>) -> Value {
    json!({"code": code, "message": msg.into()})
}

/// The column value for a select or relation field, or the validation error.
/// A single field takes a string; a multiple one an array (or one string).
pub fn choices(conn: &Connection, f: &Field, v: &Value) -> Result<SqlValue, Value> {
    // Scalars count as their text, as PocketBase casts them.
    let text = |x: &Value| match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let mut list: Vec<String> = match v {
        Value::Null => vec![],
        Value::String(s) if s.is_empty() => vec![],
        Value::Array(a) => a
            .iter()
            .map(text)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| err("validation_invalid_value", "Must be a list of strings."))?
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        other => {
            vec![text(other).ok_or_else(|| err("validation_invalid_value", "Invalid value."))?]
        }
    };
    let mut seen = HashSet::new();
    list.retain(|x| seen.insert(x.clone()));
    let max = f.max_select.max(1) as usize;
    if list.len() > max {
        return Err(json!({
            "code": "validation_too_many_values",
            "message": format!("Select no more than {max}."),
            "params": {"maxSelect": max},
        }));
    }
    match f.kind {
        FieldType::Select => {
            if let Some(bad) = list.iter().find(|x| !f.values.contains(x)) {
                return Err(json!({
                    "code": "validation_invalid_value",
                    "message": format!("Invalid value {bad}."),
                    "params": {"value": bad},
                }));
            }
        }
        FieldType::Relation if !list.is_empty() => {
            let target = schema::find_collection(conn, &f.collection_id).map_err(|_| {
                err(
                    "validation_missing_rel_records",
                    "The related collection no longer exists.",
                )
            })?;
            let found: i64 = conn
                .query_row(
                    &format!(
                        "SELECT COUNT(*) FROM {} WHERE id IN ({})",
                        quote_ident(&target.name),
                        vec!["?"; list.len()].join(", ")
                    ),
                    rusqlite::params_from_iter(list.iter()),
                    |r| r.get(0),
                )
                .map_err(|e| err("validation_invalid_value", e.to_string()))?;
            if found as usize != list.len() {
                return Err(err(
                    "validation_missing_rel_records",
                    "Failed to find all relation records with the provided ids.",
                ));
            }
        }
        _ => {}
    }
    Ok(SqlValue::Text(if f.multiple() {
        json!(list).to_string()
    } else {
        list.pop().unwrap_or_default()
    }))
}

/// The ids a record's relation field holds.
fn ids_of(rec: &Map<String, Value>, field: &str) -> Vec<String> {
    schema::strings_of(rec.get(field))
}

#[derive(Default)]
struct Tree(BTreeMap<String, Tree>);

/// Fetches the records of a collection with the given ids that the caller
/// may view.
pub type Fetch<'a> =
    dyn Fn(&Connection, &Collection, &[String]) -> ApiResult<Vec<Map<String, Value>>> + 'a;
/// Turns a fetched record into what the caller may see.
pub type Show<'a> = dyn Fn(&Collection, Map<String, Value>) -> Value + 'a;

/// Fill `expand` in each record for `spec` (`author,comments.user`).
/// Names that are not relation fields are ignored, as PocketBase does.
pub fn expand(
    conn: &Connection,
    c: &Collection,
    recs: &mut [Map<String, Value>],
    spec: &str,
    fetch: &Fetch,
    show: &Show,
) -> ApiResult<()> {
    let mut tree = Tree::default();
    for path in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut node = &mut tree;
        for part in path.split('.').take(MAX_EXPAND_DEPTH) {
            node = node.0.entry(part.to_string()).or_default();
        }
    }
    expand_tree(conn, c, recs, &tree, fetch, show)
}

fn expand_tree(
    conn: &Connection,
    c: &Collection,
    recs: &mut [Map<String, Value>],
    tree: &Tree,
    fetch: &Fetch,
    show: &Show,
) -> ApiResult<()> {
    for (name, sub) in &tree.0 {
        if let Some((coll, field)) = name.split_once("_via_") {
            expand_back(conn, c, recs, name, (coll, field), sub, fetch, show)?;
            continue;
        }
        let Some(f) = c
            .visible_field(name)
            .filter(|f| f.kind == FieldType::Relation)
        else {
            continue;
        };
        let Ok(target) = schema::find_collection(conn, &f.collection_id) else {
            continue;
        };
        let mut ids: Vec<String> = recs.iter().flat_map(|r| ids_of(r, name)).collect();
        ids.sort();
        ids.dedup();
        let mut found = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            found.extend(fetch(conn, &target, chunk)?);
        }
        expand_tree(conn, &target, &mut found, sub, fetch, show)?;
        let by_id: HashMap<String, Value> = found
            .into_iter()
            .map(|r| {
                let id = r
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                (id, show(&target, r))
            })
            .collect();
        for rec in recs.iter_mut() {
            let mut related: Vec<Value> = ids_of(rec, name)
                .iter()
                .filter_map(|id| by_id.get(id).cloned())
                .collect();
            // A relation field asked for makes `expand` at least `{}`; one
            // with nothing the caller may see gets no key in it, as
            // PocketBase does.
            let slot = rec
                .entry("expand")
                .or_insert_with(|| Value::Object(Map::new()));
            let value = match (f.multiple(), related.is_empty()) {
                (_, true) => continue,
                (true, false) => Value::Array(related),
                (false, false) => related.swap_remove(0),
            };
            if let Value::Object(m) = slot {
                m.insert(name.clone(), value);
            }
        }
    }
    Ok(())
}

/// Fill `expand.<name>` of each record of `c` with the records of
/// collection `via.0` whose relation field `via.1` points at it
/// (`comments_via_post`), oldest first, as many as the caller may view: a
/// list whatever the field's size, or one record if the field has a unique
/// index of its own, as PocketBase gives it. A name that is no such
/// back-relation is ignored.
#[allow(clippy::too_many_arguments)]
fn expand_back(
    conn: &Connection,
    c: &Collection,
    recs: &mut [Map<String, Value>],
    name: &str,
    via: (&str, &str),
    sub: &Tree,
    fetch: &Fetch,
    show: &Show,
) -> ApiResult<()> {
    let Ok(oc) = schema::find_collection(conn, via.0) else {
        return Ok(());
    };
    let Some(f) = oc
        .visible_field(via.1)
        .filter(|f| f.kind == FieldType::Relation && f.collection_id == c.id)
        .cloned()
    else {
        return Ok(());
    };
    let parents: Vec<String> = recs
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect();
    // The referring records, in insertion order; then only those the caller
    // may view, each with its own expands.
    let col = quote_ident(&f.name);
    let mut children: Vec<String> = Vec::new();
    for chunk in parents.chunks(CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let cond = if f.multiple() {
            format!(
                "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({col}) THEN {col} ELSE '[]' END) WHERE value IN ({marks}))"
            )
        } else {
            format!("{col} IN ({marks})")
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT id FROM {} WHERE {cond} ORDER BY _rowid_ LIMIT {BACK_LIMIT}",
            quote_ident(&oc.name)
        ))?;
        let ids = stmt.query_map(rusqlite::params_from_iter(chunk.iter()), |r| r.get(0))?;
        children.extend(ids.collect::<rusqlite::Result<Vec<String>>>()?);
    }
    let mut found = Vec::new();
    for chunk in children.chunks(CHUNK) {
        found.extend(fetch(conn, &oc, chunk)?);
    }
    expand_tree(conn, &oc, &mut found, sub, fetch, show)?;
    let rank: HashMap<&str, usize> = children
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    found.sort_by_key(|r| {
        rank.get(r.get("id").and_then(Value::as_str).unwrap_or(""))
            .copied()
            .unwrap_or(usize::MAX)
    });
    // A field with a unique index of its own gives one record, not a list.
    let single = oc.indexes.iter().any(|s| {
        super::indexes::parse(s, &oc)
            .is_ok_and(|ix| ix.unique && ix.columns.len() == 1 && ix.columns[0].name == f.name)
    });
    for rec in recs.iter_mut() {
        let id = rec
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut related: Vec<Value> = found
            .iter()
            .filter(|child| ids_of(child, &f.name).contains(&id))
            .map(|child| show(&oc, child.clone()))
            .collect();
        let slot = rec
            .entry("expand")
            .or_insert_with(|| Value::Object(Map::new()));
        if !related.is_empty()
            && let Value::Object(m) = slot
        {
            let value = if single {
                related.swap_remove(0)
            } else {
                Value::Array(related)
            };
            m.insert(name.to_string(), value);
        }
    }
    Ok(())
}

/// The most records one back-relation expands, as PocketBase caps it.
const BACK_LIMIT: usize = 1000;

/// Relation fields of any collection that point at `c`.
pub fn referencing(conn: &Connection, c: &Collection) -> ApiResult<Vec<(Collection, Field)>> {
    let mut out = Vec::new();
    for oc in schema::all_collections(conn)? {
        for f in &oc.fields {
            if f.kind == FieldType::Relation && f.collection_id == c.id {
                out.push((oc.clone(), f.clone()));
            }
        }
    }
    Ok(out)
}

/// SQL: the rows of `oc` whose field `f` holds the id bound to `?`.
fn refers(f: &Field) -> String {
    let col = quote_ident(&f.name);
    if f.multiple() {
        format!(
            "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({col}) THEN {col} ELSE '[]' END) WHERE value = ?1)"
        )
    } else {
        format!("{col} = ?1")
    }
}

/// Delete record `id` of `c` inside the caller's transaction, with what
/// points at it: `cascadeDelete` fields delete their records (recursively),
/// optional fields drop the id, and a required field that would be left
/// empty refuses the whole delete (400). The realtime messages of every
/// record deleted (as it was) and every record whose field was cleared (as
/// it is now) come back, to publish once the transaction commits, with the
/// (collection id, record id) of each deleted record that may have files.
pub fn delete_with_references(
    t: &Tenant,
    conn: &Connection,
    c: &Collection,
    id: &str,
) -> ApiResult<(Change, Vec<(String, String)>)> {
    let mut change = Change::default();
    let mut with_files = Vec::new();
    let mut work = vec![(c.clone(), id.to_string())];
    let mut done: HashSet<(String, String)> = HashSet::new();
    while let Some((coll, rid)) = work.pop() {
        if !done.insert((coll.id.clone(), rid.clone())) {
            continue;
        }
        change.extend(realtime::prepare(t, conn, &coll, Action::Delete, &rid));
        for (oc, f) in referencing(conn, &coll)? {
            let table = quote_ident(&oc.name);
            let cond = refers(&f);
            let mut stmt = conn.prepare(&format!("SELECT id FROM {table} WHERE {cond}"))?;
            let refs: Vec<String> = stmt
                .query_map([&rid], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if refs.is_empty() {
                continue;
            }
            if f.cascade_delete {
                work.extend(refs.into_iter().map(|r| (oc.clone(), r)));
                continue;
            }
            let col = quote_ident(&f.name);
            if f.required {
                let left_empty: i64 = conn.query_row(
                    &format!(
                        "SELECT COUNT(*) FROM {table} WHERE {cond} AND ({} <= 1)",
                        if f.multiple() {
                            format!("json_array_length({col})")
                        } else {
                            "1".into()
                        }
                    ),
                    [&rid],
                    |r| r.get(0),
                )?;
                if left_empty > 0 {
                    return Err(ApiError::bad_request(format!(
                        "The record cannot be deleted: it is the only value of the required relation field `{}.{}` in {left_empty} record(s). Delete or change those first.",
                        oc.name, f.name
                    )));
                }
            }
            let clear = if f.multiple() {
                format!("(SELECT json_group_array(value) FROM json_each({col}) WHERE value != ?1)")
            } else {
                "''".into()
            };
            conn.execute(
                &format!("UPDATE {table} SET {col} = {clear} WHERE {cond}"),
                [&rid],
            )?;
            for r in &refs {
                change.extend(realtime::prepare(t, conn, &oc, Action::Update, r));
            }
        }
        conn.execute(
            &format!("DELETE FROM {} WHERE id = ?1", quote_ident(&coll.name)),
            [&rid],
        )?;
        if coll.fields.iter().any(|f| f.kind == FieldType::File) {
            with_files.push((coll.id.clone(), rid));
        }
    }
    Ok((change, with_files))
}
