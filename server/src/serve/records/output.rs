//! Records as clients see them: a row read into PocketBase's JSON shape
//! (field types as PocketBase returns them), hidden fields and others'
//! emails taken out, and `fields` picked.

use crate::serve::auth::Auth;
use crate::serve::errors::ApiResult;
use crate::serve::query::filter::quote_ident;
use crate::serve::schema::{Collection, Field, FieldType};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value, json};

/// The columns a record is read with, in field order.
pub fn select_cols(c: &Collection) -> String {
    c.fields
        .iter()
        .map(|f| quote_ident(&f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_value(f: &Field, v: SqlValue) -> Value {
    let kind = f.kind;
    if f.multiple() {
        // A json array of strings; anything else reads as no values.
        return match v {
            SqlValue::Text(t) => {
                serde_json::from_str::<Vec<String>>(&t).map_or(json!([]), |v| json!(v))
            }
            _ => json!([]),
        };
    }
    match (kind, v) {
        (FieldType::Bool, SqlValue::Integer(i)) => Value::Bool(i != 0),
        (FieldType::Bool, SqlValue::Text(t)) => Value::Bool(t == "true" || t == "1"),
        (FieldType::Number, SqlValue::Integer(i)) => json!(i),
        (FieldType::Number, SqlValue::Real(f)) => json!(f),
        (FieldType::Number, SqlValue::Text(t)) => t.parse::<f64>().map_or(json!(0), |f| json!(f)),
        (FieldType::Json, SqlValue::Text(t)) => {
            serde_json::from_str(&t).unwrap_or(Value::String(t))
        }
        (FieldType::GeoPoint, SqlValue::Text(t)) => {
            serde_json::from_str(&t).unwrap_or_else(|_| json!({"lon": 0, "lat": 0}))
        }
        (_, SqlValue::Null) => match kind {
            FieldType::Json => Value::Null,
            FieldType::GeoPoint => json!({"lon": 0, "lat": 0}),
            FieldType::Bool => Value::Bool(false),
            FieldType::Number => json!(0),
            _ => Value::String(String::new()),
        },
        (_, SqlValue::Text(t)) => Value::String(t),
        (_, SqlValue::Integer(i)) => Value::String(i.to_string()),
        (_, SqlValue::Real(f)) => Value::String(f.to_string()),
        (_, SqlValue::Blob(_)) => Value::Null,
    }
}

pub fn row_to_record(c: &Collection, r: &rusqlite::Row) -> rusqlite::Result<Map<String, Value>> {
    let mut m = Map::new();
    m.insert("collectionId".into(), c.id.clone().into());
    m.insert("collectionName".into(), c.name.clone().into());
    for (i, f) in c.fields.iter().enumerate() {
        m.insert(f.name.clone(), read_value(f, r.get::<_, SqlValue>(i)?));
    }
    Ok(m)
}

/// One record with all fields (hidden ones included), or None.
pub fn fetch(conn: &Connection, c: &Collection, id: &str) -> ApiResult<Option<Map<String, Value>>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {} FROM {} WHERE id = ?1",
                select_cols(c),
                quote_ident(&c.name)
            ),
            [id],
            |r| row_to_record(c, r),
        )
        .optional()?)
}

/// What a client may see: no hidden fields; an auth record's email only for
/// itself, superusers, or when `emailVisibility` is on.
pub fn public(
    c: &Collection,
    mut rec: Map<String, Value>,
    who: Option<&Auth>,
    owner: bool,
) -> Value {
    for f in &c.fields {
        if f.hidden {
            rec.remove(&f.name);
        }
    }
    if c.is_auth() {
        let visible = owner
            || rec.get("emailVisibility") == Some(&Value::Bool(true))
            || who.is_some_and(|a| {
                a.is_superuser()
                    || (a.collection_id == c.id
                        && rec.get("id").and_then(Value::as_str) == Some(a.id()))
            });
        if !visible {
            rec.remove("email");
        }
    }
    Value::Object(rec)
}
