//! What a write may store: a submitted body checked against the
//! collection's fields and converted to column values, with PocketBase's
//! validation errors; a broken unique index reported per field.

use crate::serve::auth::password;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::query::{filter, relations};
use crate::serve::schema::{Collection, FieldType};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value, json};

fn invalid(msg: &str) -> Value {
    json!({"code": "validation_invalid_value", "message": msg})
}

/// The password of a body that may be stored as it is (long enough, not
/// longer than bcrypt takes, confirmed), to hash before the write (see
/// [`write_values`]).
pub fn password_to_hash(body: &Map<String, Value>) -> Option<String> {
    let p = body.get("password")?.as_str()?;
    let ok = p.chars().count() >= 8
        && p.len() <= password::MAX_BYTES
        && body.get("passwordConfirm").and_then(Value::as_str) == Some(p);
    ok.then(|| p.to_string())
}

/// Validate and convert submitted values to columns. `create` also checks
/// required fields and fills defaults. `hash` is the bcrypt hash of the
/// body's password, made beforehand (hashing here would hold the writer).
pub fn write_values(
    conn: &Connection,
    c: &Collection,
    body: &Map<String, Value>,
    create: bool,
    hash: Option<&str>,
) -> ApiResult<Vec<(String, SqlValue)>> {
    let mut out = Vec::new();
    let mut errors = Map::new();
    let err = |code: &str, msg: &str| json!({"code": code, "message": msg});
    for f in &c.fields {
        if matches!(f.name.as_str(), "id" | "tokenKey") || f.kind == FieldType::Autodate {
            continue;
        }
        let Some(v) = body.get(&f.name) else {
            if create && f.required && f.kind != FieldType::Password {
                errors.insert(
                    f.name.clone(),
                    err("validation_required", "Cannot be blank."),
                );
            }
            continue;
        };
        let value = match (f.kind, v) {
            (FieldType::Select | FieldType::Relation, v) => match relations::choices(conn, f, v) {
                Ok(value) => value,
                Err(e) => {
                    errors.insert(f.name.clone(), e);
                    continue;
                }
            },
            (FieldType::Text | FieldType::Date, Value::String(s)) => SqlValue::Text(s.clone()),
            (FieldType::Text, Value::Number(n)) => SqlValue::Text(n.to_string()),
            (FieldType::Text | FieldType::Date | FieldType::Email, Value::Null) => {
                SqlValue::Text(String::new())
            }
            (FieldType::Email, Value::String(s))
                if s.is_empty() || (s.contains('@') && !s.contains(char::is_whitespace)) =>
            {
                SqlValue::Text(s.clone())
            }
            (FieldType::Number, Value::Number(n)) => filter::json_to_sql(&Value::Number(n.clone())),
            (FieldType::Number, Value::String(s)) if s.trim().parse::<f64>().is_ok() => {
                filter::json_to_sql(&json!(s.trim().parse::<f64>().unwrap_or(0.0)))
            }
            (FieldType::Number, Value::Null) => SqlValue::Integer(0),
            (FieldType::Bool, Value::Bool(b)) => SqlValue::Integer(*b as i64),
            (FieldType::Bool, Value::String(s))
                if matches!(s.as_str(), "true" | "false" | "1" | "0") =>
            {
                SqlValue::Integer(matches!(s.as_str(), "true" | "1") as i64)
            }
            (FieldType::Bool, Value::Null) => SqlValue::Integer(0),
            (FieldType::Json, Value::Null) => SqlValue::Null,
            (FieldType::Json, v) => SqlValue::Text(v.to_string()),
            (FieldType::Password, Value::String(s))
                if s.chars().count() >= 8 && s.len() <= password::MAX_BYTES =>
            {
                if body.get("passwordConfirm").and_then(Value::as_str) != Some(s.as_str()) {
                    errors.insert(
                        "passwordConfirm".into(),
                        err("validation_values_mismatch", "Values don't match."),
                    );
                    continue;
                }
                let h = hash.ok_or_else(|| ApiError::internal("password not hashed"))?;
                SqlValue::Text(h.to_string())
            }
            (FieldType::Password, Value::String(s)) if s.len() > password::MAX_BYTES => {
                errors.insert(
                    f.name.clone(),
                    err(
                        "validation_length_out_of_range",
                        "Must be no more than 71 characters.",
                    ),
                );
                continue;
            }
            (FieldType::Password, _) => {
                errors.insert(
                    f.name.clone(),
                    err(
                        "validation_length_out_of_range",
                        "Must be at least 8 characters.",
                    ),
                );
                continue;
            }
            _ => {
                errors.insert(f.name.clone(), invalid("Invalid value."));
                continue;
            }
        };
        let blank = match &value {
            SqlValue::Null => true,
            SqlValue::Text(s) => s.is_empty() || (f.multiple() && s == "[]"),
            SqlValue::Integer(i) => *i == 0,
            SqlValue::Real(r) => *r == 0.0,
            SqlValue::Blob(b) => b.is_empty(),
        };
        if f.required && blank {
            errors.insert(
                f.name.clone(),
                err("validation_required", "Cannot be blank."),
            );
            continue;
        }
        out.push((f.name.clone(), value));
    }
    if create && c.is_auth() && !body.contains_key("password") {
        errors.insert(
            "password".into(),
            err("validation_required", "Cannot be blank."),
        );
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(failed(create), Value::Object(errors)));
    }
    Ok(out)
}

pub fn failed(create: bool) -> &'static str {
    if create {
        "Failed to create record."
    } else {
        "Failed to update record."
    }
}

/// A write that broke a unique index: which fields, in PocketBase's shape.
pub fn not_unique(e: rusqlite::Error, create: bool) -> ApiError {
    if e.sqlite_error_code() != Some(rusqlite::ErrorCode::ConstraintViolation) {
        return e.into();
    }
    // SQLite names the columns: "UNIQUE constraint failed: posts.slug, posts.x".
    let msg = e.to_string();
    let cols = msg.split_once("failed: ").map_or("", |(_, c)| c);
    let mut errors = Map::new();
    for col in cols.split(',').filter_map(|c| c.trim().rsplit('.').next()) {
        errors.insert(
            col.to_string(),
            json!({"code": "validation_not_unique", "message": "Value must be unique."}),
        );
    }
    if errors.is_empty() {
        errors.insert(
            "id".into(),
            json!({"code": "validation_not_unique", "message": "Value must be unique."}),
        );
    }
    ApiError::validation(failed(create), Value::Object(errors))
}
