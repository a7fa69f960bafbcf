//! Collections CRUD for superusers: `/api/collections[/{idOrName}]`.
//! Base and auth collections with text, number, bool, json, date, email,
//! select and relation fields; indexes; the five API rules. PATCH adds
//! fields and changes rules and indexes; renaming or removing fields is not
//! supported yet.

use super::TenantReq;
use super::body::body_json;
use crate::serve::auth::require_superuser;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::files::thumbs;
use crate::serve::query::rules::check_rule;
use crate::serve::query::{filter, indexes, relations};
use crate::serve::schema::{self, Collection, Field, FieldType, Rules};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rusqlite::Connection;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Names no field may have, as PocketBase's list has them: the record's
/// own keys in its JSON, and SQLite's name for the row's key that a column
/// cannot shadow (`rowid` and `oid` can be columns, as in PocketBase; the
/// queries use `_rowid_`). Compared ignoring case, as SQLite's column names.
const NOT_FIELDS: &[&str] = &["expand", "collectionId", "collectionName", "_rowid_"];

/// Names the system's fields have in any collection (strata keeps them for
/// base collections too, since the record code treats them by name).
/// `created` and `updated` are ordinary names: a collection has autodate
/// fields only where they are declared, under any name.
const SYSTEM_FIELDS: &[&str] = &[
    "id",
    "password",
    "passwordConfirm",
    "tokenKey",
    "email",
    "emailVisibility",
    "verified",
];

/// PocketBase's answer for a field name that is taken or invalid; `i` is
/// the field's place in the collection's list (`id` is 0).
fn bad_field_name(i: usize, name: &str) -> ApiError {
    let error = if NOT_FIELDS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        json!({"code": "validation_not_in_invalid", "message": "Must not be in list."})
    } else if name.len() > 100 {
        json!({"code": "validation_length_too_long", "message": "The length must be no more than 100."})
    } else if !valid_name(name) {
        json!({"code": "validation_match_invalid", "message": "Must be in a valid format."})
    } else {
        json!({
            "code": "validation_duplicated_field_name",
            "message": format!("Duplicated or invalid field name {name}."),
            "params": {"fieldName": name},
        })
    };
    ApiError::validation(
        "Failed to create or update the collection.",
        json!({"fields": {i.to_string(): {"name": error}}}),
    )
}

/// Why `name` cannot be a new collection: taken by a collection in any
/// case, or by any of SQLite's objects (tables, indexes, `sqlite_*`).
fn collection_name_taken(conn: &Connection, name: &str) -> ApiResult<Option<ApiError>> {
    let err = |code: &str, msg: &str| {
        ApiError::validation(
            "Failed to create collection.",
            json!({"name": {"code": code, "message": msg}}),
        )
    };
    if name.len() >= 7 && name[..7].eq_ignore_ascii_case("sqlite_") {
        return Ok(Some(err(
            "validation_collection_name_invalid",
            "The name shouldn't match with an existing internal table.",
        )));
    }
    let collection: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM _collections WHERE name = ?1 COLLATE NOCASE)",
        [name],
        |r| r.get(0),
    )?;
    if collection {
        return Ok(Some(err(
            "validation_collection_name_exists",
            "Collection name must be unique (case insensitive).",
        )));
    }
    let object: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE)",
        [name],
        |r| r.get(0),
    )?;
    Ok(object.then(|| {
        err(
            "validation_collection_name_invalid",
            "The name shouldn't match with an existing internal table.",
        )
    }))
}

fn valid_name(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
}

/// PocketBase's error for `option` of the field at `place` in the list
/// (`fields.<place>.<option>`).
fn option_err(place: usize, option: &str, err: Value) -> ApiError {
    ApiError::validation(
        "Failed to create or update the collection.",
        json!({"fields": {place.to_string(): {option: err}}}),
    )
}

/// A regular expression option that does not compile, as PocketBase says it.
fn bad_regex(place: usize, option: &str, e: impl std::fmt::Display) -> ApiError {
    option_err(
        place,
        option,
        json!({"code": "validation_invalid_regex", "message": format!("Error parsing regexp: {e}.")}),
    )
}

fn field_err(name: &str, msg: impl Into<String>) -> ApiError {
    ApiError::validation(
        "Failed to create or update the collection.",
        json!({name: {"code": "validation_invalid_value", "message": msg.into()}}),
    )
}

/// What a body's `fields` list (the whole list, as PocketBase takes it)
/// does to a collection's fields: adds some, gives others new options (and
/// maybe a new name: a field is known by its `id`), and removes the user
/// fields it leaves out.
#[derive(Default)]
struct FieldChanges {
    added: Vec<Field>,
    changed: Vec<Field>,
    /// (old name, new name).
    renamed: Vec<(String, String)>,
    removed: Vec<Field>,
}

fn parse_fields(
    conn: &Connection,
    v: Option<&Value>,
    existing: &[Field],
) -> ApiResult<FieldChanges> {
    let Some(v) = v else {
        return Ok(FieldChanges::default());
    };
    let arr = v
        .as_array()
        .ok_or_else(|| field_err("fields", "Must be an array."))?;
    let mut out: Vec<Field> = Vec::new();
    let mut changed: Vec<Field> = Vec::new();
    let mut renamed: Vec<(String, String)> = Vec::new();
    let mut kept: Vec<&str> = Vec::new();
    // Place in the collection's list as PocketBase numbers it (after `id`).
    let base = usize::from(!arr.iter().any(|f| f["name"] == "id"));
    for (i, f) in arr.iter().enumerate() {
        let name = f["name"].as_str().unwrap_or("");
        // Fields already in the collection (PocketBase clients send the whole
        // list back on update), by id, else by name: system fields stay as
        // they are; a user field takes the options sent with its type, and
        // the name sent.
        let by_id = f["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .and_then(|id| existing.iter().find(|e| e.id == id));
        let old = by_id.or_else(|| existing.iter().find(|e| e.name == name));
        if let Some(o) = old {
            kept.push(o.name.as_str());
        }
        // The password field is a system field whose options (`min`,
        // `max`, `pattern`) may change, as in PocketBase.
        if let Some(o) = old.filter(|o| o.system && o.kind == FieldType::Password)
            && f.get("type").is_some()
        {
            changed.push(password_options(o, f, i + base)?);
            continue;
        }
        if old.is_some_and(|o| o.system || f.get("type").is_none()) {
            continue;
        }
        let rename = old.is_some_and(|o| o.name != name);
        let clashes = |n: &str| {
            existing
                .iter()
                .filter(|e| old.is_none_or(|o| o.id != e.id))
                .any(|e| e.name.eq_ignore_ascii_case(n))
                || out
                    .iter()
                    .chain(&changed)
                    .any(|o| o.name.eq_ignore_ascii_case(n))
        };
        if (old.is_none() || rename)
            && (!valid_name(name)
                || NOT_FIELDS
                    .iter()
                    .chain(SYSTEM_FIELDS)
                    .any(|r| r.eq_ignore_ascii_case(name))
                || clashes(name))
        {
            return Err(bad_field_name(i + base, name));
        }
        let kind = match f["type"].as_str().unwrap_or("") {
            "text" => FieldType::Text,
            "number" => FieldType::Number,
            "bool" => FieldType::Bool,
            "json" => FieldType::Json,
            "date" => FieldType::Date,
            "email" => FieldType::Email,
            "select" => FieldType::Select,
            "relation" => FieldType::Relation,
            "file" => FieldType::File,
            "url" => FieldType::Url,
            "editor" => FieldType::Editor,
            "geoPoint" => FieldType::GeoPoint,
            "autodate" => FieldType::Autodate,
            other => {
                return Err(field_err(
                    "fields",
                    format!(
                        "Field type {other:?} is not supported yet (text, number, bool, json, date, email, url, editor, autodate, geoPoint, select, relation, file)."
                    ),
                ));
            }
        };
        let max_select = f["maxSelect"].as_u64().unwrap_or(1).clamp(1, 10_000) as u32;
        let mut field = Field {
            id: format!("f{}", &schema::new_id()[..9]),
            required: f["required"].as_bool().unwrap_or(false),
            system: false,
            hidden: f["hidden"].as_bool().unwrap_or(false),
            ..Field::new(name, kind)
        };
        match kind {
            FieldType::Select => {
                let values: Option<Vec<String>> = f["values"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                });
                field.values = values
                    .filter(|v| !v.is_empty() && v.iter().all(|s| !s.is_empty()))
                    .ok_or_else(|| {
                        field_err(
                            "fields",
                            format!("Select field {name:?} needs a list of values."),
                        )
                    })?;
                field.max_select = max_select;
            }
            FieldType::Relation => {
                let target = f["collectionId"].as_str().unwrap_or("");
                // The target must exist (a relation to itself is added on create).
                field.collection_id = schema::find_collection(conn, target)
                    .map(|c| c.id)
                    .map_err(|_| {
                        field_err(
                            "fields",
                            format!("Relation field {name:?}: unknown collection {target:?}."),
                        )
                    })?;
                field.max_select = max_select;
                field.cascade_delete = f["cascadeDelete"].as_bool().unwrap_or(false);
            }
            FieldType::File => file_options(&mut field, f, i + base)?,
            FieldType::Autodate => {
                let (on_create, on_update) = (
                    f["onCreate"].as_bool().unwrap_or(false),
                    f["onUpdate"].as_bool().unwrap_or(false),
                );
                if !on_create && !on_update {
                    let need = json!({"code": "validation_required",
                        "message": "Either onCreate or onUpdate must be enabled."});
                    return Err(ApiError::validation(
                        "Failed to create or update the collection.",
                        json!({"fields": {(i + base).to_string(): {"onCreate": need, "onUpdate": need}}}),
                    ));
                }
                field.on_create = Some(on_create);
                field.on_update = Some(on_update);
            }
            FieldType::Text
            | FieldType::Number
            | FieldType::Date
            | FieldType::Url
            | FieldType::Email
            | FieldType::Editor
            | FieldType::Json => value_options(&mut field, f, i + base)?,
            _ => {}
        }
        match old {
            Some(old) => {
                if old.kind != field.kind || old.multiple() != field.multiple() {
                    return Err(field_err(
                        "fields",
                        format!(
                            "Field {name:?}: changing its type, or between one and several values, is not supported yet."
                        ),
                    ));
                }
                field.id = old.id.clone();
                if rename {
                    renamed.push((old.name.clone(), field.name.clone()));
                }
                changed.push(field);
            }
            None => out.push(field),
        }
    }
    let removed = existing
        .iter()
        .filter(|e| !e.system && !kept.contains(&e.name.as_str()))
        .cloned()
        .collect();
    Ok(FieldChanges {
        added: out,
        changed,
        renamed,
        removed,
    })
}

/// PocketBase's answer to a field option of the wrong JSON type.
fn malformed() -> ApiError {
    ApiError::bad_request("Failed to load the submitted data due to invalid formatting.")
}

/// A field option that is a list of strings (absent or null: empty).
fn string_list(f: &Value, key: &str) -> ApiResult<Vec<String>> {
    match &f[key] {
        Value::Null => Ok(vec![]),
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(malformed),
        _ => Err(malformed()),
    }
}

/// A `file` field's options: `maxSelect` (0 or 1: one file), `maxSize`
/// (0: 5 MiB), `mimeTypes`, `thumbs` (PocketBase's sizes) and `protected`,
/// with PocketBase's errors under `fields.<index>.<option>`.
fn file_options(field: &mut Field, f: &Value, index: usize) -> ApiResult<()> {
    let option_err = |option: &str, err: Value| option_err(index, option, err);
    let count = |option: &str| -> ApiResult<u64> {
        match &f[option] {
            Value::Null => Ok(0),
            Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or(0)),
            Value::Number(_) => Err(option_err(
                option,
                json!({"code": "validation_min_greater_equal_than_required", "message": "Must be no less than 0.", "params": {"threshold": 0}}),
            )),
            _ => Err(malformed()),
        }
    };
    field.max_select = count("maxSelect")?.min(10_000) as u32;
    field.max_size = count("maxSize")?;
    field.mime_types = string_list(f, "mimeTypes")?;
    field.thumbs = string_list(f, "thumbs")?;
    let mut bad = Map::new();
    for (i, t) in field.thumbs.iter().enumerate() {
        let zero = ["0x0", "0x0t", "0x0b", "0x0f"].contains(&t.as_str());
        if zero {
            bad.insert(
                i.to_string(),
                json!({"code": "validation_not_in_invalid", "message": "Must not be in list."}),
            );
        } else if thumbs::Thumb::parse(t).is_none() {
            bad.insert(
                i.to_string(),
                json!({"code": "validation_match_invalid", "message": "Must be in a valid format."}),
            );
        }
    }
    if !bad.is_empty() {
        return Err(option_err("thumbs", Value::Object(bad)));
    }
    field.protected = f["protected"].as_bool().unwrap_or(false);
    Ok(())
}

/// The password field `old` with the options of `f`: `min` and `max`
/// characters (0 or unset: 8 and 71) and a `pattern`.
fn password_options(old: &Field, f: &Value, place: usize) -> ApiResult<Field> {
    let mut field = old.clone();
    let bound = |k: &str| -> ApiResult<Option<Value>> {
        match &f[k] {
            Value::Null => Ok(None),
            Value::Number(n) if n.as_u64().is_some() => {
                Ok(n.as_u64().filter(|n| *n > 0).map(Value::from))
            }
            _ => Err(malformed()),
        }
    };
    field.min = bound("min")?;
    field.max = bound("max")?;
    field.pattern = f["pattern"].as_str().unwrap_or("").to_string();
    if !field.pattern.is_empty()
        && let Err(e) = regex::Regex::new(&field.pattern)
    {
        return Err(bad_regex(place, "pattern", e));
    }
    Ok(field)
}

/// A text or number field's `min`, `max` (numbers or null), a text
/// field's `pattern` (it must compile) and `autogeneratePattern`, and a
/// number field's `onlyInt`; `place` is the field's place in the list.
fn value_options(field: &mut Field, f: &Value, place: usize) -> ApiResult<()> {
    match field.kind {
        FieldType::Text | FieldType::Number => {
            let bound = |k: &str| -> ApiResult<Option<f64>> {
                match &f[k] {
                    Value::Null => Ok(None),
                    Value::Number(n) => Ok(n.as_f64()),
                    _ => Err(malformed()),
                }
            };
            let (mut min, mut max) = (bound("min")?, bound("max")?);
            if field.kind == FieldType::Text {
                // 0 is "unset" for a text field, as PocketBase shows it.
                min = min.filter(|m| *m > 0.0);
                max = max.filter(|m| *m > 0.0);
                field.pattern = f["pattern"].as_str().unwrap_or("").to_string();
                field.autogenerate_pattern =
                    f["autogeneratePattern"].as_str().unwrap_or("").to_string();
                if let Err(e) =
                    crate::serve::records::values::generator(&field.autogenerate_pattern)
                {
                    return Err(bad_regex(place, "autogeneratePattern", e));
                }
                if !field.pattern.is_empty() && regex::Regex::new(&field.pattern).is_err() {
                    return Err(field_err(
                        "fields",
                        format!(
                            "Field {:?}: the pattern is no valid regular expression.",
                            field.name
                        ),
                    ));
                }
            } else {
                field.only_int = f["onlyInt"].as_bool().unwrap_or(false);
            }
            field.min = min.map(Value::from);
            field.max = max.map(Value::from);
        }
        FieldType::Date => {
            let bound = |k: &str| -> ApiResult<Option<Value>> {
                match &f[k] {
                    Value::Null => Ok(None),
                    Value::String(s) if s.is_empty() => Ok(None),
                    Value::String(s) => crate::serve::records::dates::normalize(s)
                        .map(|d| Some(Value::String(d)))
                        .ok_or_else(|| {
                            field_err("fields", format!("Field {:?}: {k} is no date.", field.name))
                        }),
                    _ => Err(malformed()),
                }
            };
            field.min = bound("min")?;
            field.max = bound("max")?;
        }
        FieldType::Url | FieldType::Email => {
            let lower = |v: Vec<String>| v.iter().map(|d| d.to_ascii_lowercase()).collect();
            field.only_domains = lower(string_list(f, "onlyDomains")?);
            field.except_domains = lower(string_list(f, "exceptDomains")?);
        }
        FieldType::Editor | FieldType::Json => {
            field.max_size = f["maxSize"].as_u64().unwrap_or(0);
        }
        _ => {}
    }
    Ok(())
}

/// The indexes a body asks for (`None`: the key is absent, keep them).
fn parse_indexes(
    body: &Map<String, Value>,
    c: &Collection,
) -> ApiResult<Option<Vec<indexes::Index>>> {
    let Some(v) = body.get("indexes") else {
        return Ok(None);
    };
    let arr = v
        .as_array()
        .ok_or_else(|| field_err("indexes", "Must be an array of CREATE INDEX statements."))?;
    let mut out: Vec<indexes::Index> = Vec::new();
    for (i, s) in arr.iter().enumerate() {
        let s = s
            .as_str()
            .ok_or_else(|| field_err("indexes", "Must be an array of CREATE INDEX statements."))?;
        let ix =
            indexes::parse(s, c).map_err(|e| field_err("indexes", format!("Index {i}: {e}.")))?;
        if out.iter().any(|o| o.name == ix.name) {
            return Err(field_err(
                "indexes",
                format!("Duplicate index name {:?}.", ix.name),
            ));
        }
        out.push(ix);
    }
    Ok(Some(out))
}

/// Make the table's indexes those of `want`: drop the ones that went away
/// or changed, create the new ones, and record them on `c`.
fn apply_indexes(
    conn: &Connection,
    c: &mut Collection,
    want: Vec<indexes::Index>,
) -> ApiResult<()> {
    let have: Vec<indexes::Index> = c
        .indexes
        .iter()
        .filter_map(|s| indexes::parse(s, c).ok())
        .collect();
    for old in have.iter().filter(|o| !want.contains(o)) {
        conn.execute_batch(&old.drop_sql())?;
    }
    for new in want.iter().filter(|n| !have.contains(n)) {
        conn.execute_batch(&new.create_sql(&c.name)).map_err(|e| {
            field_err(
                "indexes",
                format!("Index {:?} could not be created: {e}.", new.name),
            )
        })?;
    }
    c.indexes = want.iter().map(|i| i.to_pocketbase(&c.name)).collect();
    Ok(())
}

/// Rename and drop the columns of renamed and removed fields, and take the
/// new options of changed ones. As in PocketBase, the indexes must still
/// name fields that exist: with no `indexes` in the body (`new_indexes`),
/// an index on a renamed or removed field is a 400; with them, the old
/// indexes on such fields go and the body's are made afterwards (`save`).
fn migrate(
    conn: &Connection,
    c: &mut Collection,
    changes: &FieldChanges,
    new_indexes: bool,
) -> ApiResult<()> {
    let table = filter::quote_ident(&c.name);
    let have: Vec<indexes::Index> = c
        .indexes
        .iter()
        .filter_map(|s| indexes::parse(s, c).ok())
        .collect();
    let gone: Vec<&str> = changes
        .renamed
        .iter()
        .map(|(old, _)| old.as_str())
        .chain(changes.removed.iter().map(|f| f.name.as_str()))
        .collect();
    let touches = |ix: &indexes::Index| {
        ix.columns
            .iter()
            .any(|col| gone.contains(&col.name.as_str()))
    };
    let mut bad = Map::new();
    for (i, ix) in have.iter().enumerate() {
        if !touches(ix) {
            continue;
        }
        if new_indexes {
            conn.execute_batch(&ix.drop_sql())?;
        } else {
            bad.insert(
                i.to_string(),
                json!({"code": "validation_invalid_index_expression", "message": "Invalid index expression: it names a field that is renamed or removed."}),
            );
        }
    }
    if !bad.is_empty() {
        return Err(ApiError::validation(
            "Failed to update collection.",
            json!({"indexes": bad}),
        ));
    }
    for (old, new) in &changes.renamed {
        conn.execute_batch(&format!(
            "ALTER TABLE {table} RENAME COLUMN {} TO {}",
            filter::quote_ident(old),
            filter::quote_ident(new)
        ))?;
    }
    for f in &changes.removed {
        conn.execute_batch(&format!(
            "ALTER TABLE {table} DROP COLUMN {}",
            filter::quote_ident(&f.name)
        ))?;
    }
    for new in &changes.changed {
        if let Some(f) = c.fields.iter_mut().find(|f| f.id == new.id) {
            *f = new.clone();
        }
    }
    c.fields
        .retain(|f| !changes.removed.iter().any(|r| r.id == f.id));
    if new_indexes {
        c.indexes = have
            .iter()
            .filter(|ix| !touches(ix))
            .map(|i| i.to_pocketbase(&c.name))
            .collect();
    }
    Ok(())
}

/// Rules from a body: absent keys keep `current`, `null` means superusers only.
fn parse_rules(body: &Map<String, Value>, current: Rules) -> ApiResult<Rules> {
    let get = |key: &str, cur: Option<String>| -> ApiResult<Option<String>> {
        match body.get(key) {
            None => Ok(cur),
            Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(field_err(key, "Must be a string or null.")),
        }
    };
    Ok(Rules {
        list: get("listRule", current.list)?,
        view: get("viewRule", current.view)?,
        create: get("createRule", current.create)?,
        update: get("updateRule", current.update)?,
        delete: get("deleteRule", current.delete)?,
        manage: get("manageRule", current.manage)?,
    })
}

/// A rule must parse and name only fields of the collection (and of the
/// collections its relations and `@collection` reach).
fn check_rules(conn: &Connection, c: &Collection) -> ApiResult<()> {
    for (key, rule) in [
        ("listRule", &c.rules.list),
        ("viewRule", &c.rules.view),
        ("createRule", &c.rules.create),
        ("updateRule", &c.rules.update),
        ("deleteRule", &c.rules.delete),
        ("manageRule", &c.rules.manage),
    ] {
        if let Some(r) = rule {
            check_rule(conn, c, r).map_err(|e| field_err(key, e.to_string()))?;
        }
    }
    Ok(())
}

/// The end of a create or update: rules checked, indexes made as the body
/// asks, the collection's row written.
fn save(conn: &Connection, body: &Map<String, Value>, mut c: Collection) -> ApiResult<Json<Value>> {
    check_rules(conn, &c)?;
    if let Some(want) = parse_indexes(body, &c)? {
        apply_indexes(conn, &mut c, want)?;
    }
    c.update_meta(conn)?;
    Ok(Json(c.to_json()))
}

pub async fn list(
    Extension(req): Extension<TenantReq>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    req.read(move |t, conn| {
        require_superuser(t, conn, &headers)?;
        let all = schema::all_collections(conn)?;
        let per_page = q
            .get("perPage")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(30)
            .clamp(1, 1000);
        let page = q
            .get("page")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let total = all.len();
        let items: Vec<Value> = all
            .iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .map(Collection::to_json)
            .collect();
        Ok(Json(json!({
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": total.div_ceil(per_page),
            "items": items,
        })))
    })
    .await
}

pub async fn view(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let name = p.get("collection").cloned().unwrap_or_default();
    req.read(move |t, conn| {
        require_superuser(t, conn, &headers)?;
        Ok(Json(schema::find_collection(conn, &name)?.to_json()))
    })
    .await
}

pub async fn create(
    Extension(req): Extension<TenantReq>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body_json(body)?;
    req.write(move |t, conn| {
        require_superuser(t, conn, &headers)?;
        let name = body.get("name").and_then(Value::as_str).unwrap_or("");
        if !valid_name(name) || name.starts_with('_') {
            return Err(field_err(
                "name",
                "Must be letters, digits and '_', not starting with '_'.",
            ));
        }
        let kind = body.get("type").and_then(Value::as_str).unwrap_or("base");
        if !matches!(kind, "base" | "auth") {
            return Err(field_err(
                "type",
                "Only base and auth collections are supported yet.",
            ));
        }
        let tx = conn;
        if let Some(e) = collection_name_taken(tx, name)? {
            return Err(e);
        }
        // The collection exists (empty) first, so a relation may point at it.
        let mut c = Collection::build(name, kind, vec![], parse_rules(&body, Rules::default())?);
        c.insert_meta(tx)?;
        let changes = parse_fields(tx, body.get("fields"), &c.fields)?;
        // New options of the system fields (the password's) apply at once.
        for new in changes.changed {
            if let Some(f) = c.fields.iter_mut().find(|f| f.id == new.id) {
                *f = new;
            }
        }
        c.fields.extend(changes.added);
        c.create_table(tx)?;
        save(tx, &body, c)
    })
    .await
    .map(|(r, _)| r)
}

pub async fn update(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let name = p.get("collection").cloned().unwrap_or_default();
    let body = body_json(body)?;
    req.write(move |t, conn| {
        require_superuser(t, conn, &headers)?;
        let mut c = schema::find_collection(conn, &name)?;
        if body
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != c.name)
        {
            return Err(field_err(
                "name",
                "Renaming collections is not supported yet.",
            ));
        }
        c.rules = parse_rules(&body, c.rules.clone())?;
        let tx = conn;
        let changes = parse_fields(tx, body.get("fields"), &c.fields)?;
        migrate(tx, &mut c, &changes, body.contains_key("indexes"))?;
        let added = changes.added;
        for f in &added {
            tx.execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN {}",
                filter::quote_ident(&c.name),
                f.column()
            ))?;
        }
        // Keep created/updated last, as PocketBase lists them.
        let tail: Vec<Field> = c
            .fields
            .iter()
            .filter(|f| f.kind == FieldType::Autodate)
            .cloned()
            .collect();
        c.fields.retain(|f| f.kind != FieldType::Autodate);
        c.fields.extend(added);
        c.fields.extend(tail);
        c.updated = schema::now();
        save(tx, &body, c)
    })
    .await
    .map(|(r, _)| r)
}

pub async fn delete(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let name = p.get("collection").cloned().unwrap_or_default();
    req.write(move |t, conn| {
        require_superuser(t, conn, &headers)?;
        let c = schema::find_collection(conn, &name)?;
        if c.system {
            return Err(ApiError::bad_request(
                "System collections cannot be deleted.",
            ));
        }
        if let Some((oc, f)) = relations::referencing(conn, &c)?
            .into_iter()
            .find(|(oc, _)| oc.id != c.id)
        {
            return Err(ApiError::bad_request(format!(
                "The collection is referenced by the relation field `{}.{}`; remove that field's collection first.",
                oc.name, f.name
            )));
        }
        let tx = conn;
        tx.execute_batch(&format!("DROP TABLE {}", filter::quote_ident(&c.name)))?;
        tx.execute("DELETE FROM _collections WHERE id = ?1", [&c.id])?;
        Ok(c.id)
    })
    .await
    .map(|(id, _)| {
        // Its files go with it, once the drop has committed.
        req.files.delete_collection_later(&id);
        StatusCode::NO_CONTENT.into_response()
    })
}
