//! What a write may store: a submitted body checked against the
//! collection's fields and converted to column values, with PocketBase's
//! validation errors; a broken unique index reported per field.

use crate::serve::auth::password;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::files::upload::FileWrite;
use crate::serve::query::{filter, relations};
use crate::serve::schema::{Collection, Field, FieldType};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// One field's validation error, as PocketBase's `data` holds it.
pub(super) fn err(code: &str, msg: &str) -> Value {
    json!({"code": code, "message": msg})
}

fn invalid(msg: &str) -> Value {
    err("validation_invalid_value", msg)
}

/// A password's shortest and longest length in characters, PocketBase's
/// defaults for a password field (its `max` of 0 means 71).
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 71;

/// Why a password cannot be stored in field `f`, as PocketBase reports it:
/// more bytes than bcrypt takes (it would cut the rest silently), fewer or
/// more characters than the field's `min` and `max` (8 and 71 unset), or
/// no match for its `pattern`. `None` if it may be stored.
fn password_error(p: &str, f: &crate::serve::schema::Field) -> Option<Value> {
    let bound = |v: &Option<Value>| v.as_ref().and_then(Value::as_u64).filter(|n| *n > 0);
    let min = bound(&f.min).map_or(PASSWORD_MIN_CHARS, |n| n as usize);
    let max = bound(&f.max).map_or(PASSWORD_MAX_CHARS, |n| n as usize);
    let chars = p.chars().count();
    if p.len() > password::MAX_BYTES {
        Some(invalid("Invalid value."))
    } else if chars < min {
        Some(err(
            "validation_min_text_constraint",
            &format!("Must be at least {min} character(s)."),
        ))
    } else if chars > max {
        Some(err(
            "validation_max_text_constraint",
            &format!("Must be less than {max} character(s)."),
        ))
    } else if !f.pattern.is_empty() && !regex::Regex::new(&f.pattern).is_ok_and(|re| re.is_match(p))
    {
        Some(err("validation_invalid_format", "Invalid value format."))
    } else {
        None
    }
}

/// The password of a body to hash before the write (see [`write_values`]):
/// confirmed, and within what bcrypt takes. The field's own limits are
/// checked by the write, which refuses the record if they fail.
pub fn password_to_hash(body: &Map<String, Value>) -> Option<String> {
    let p = body.get("password")?.as_str()?;
    let ok = !p.is_empty()
        && p.len() <= password::MAX_BYTES
        && body.get("passwordConfirm").and_then(Value::as_str) == Some(p);
    ok.then(|| p.to_string())
}

/// An email address as PocketBase's `is.EmailFormat` (govalidator's
/// pattern) has it: a dot-atom local part (letters, digits,
/// ``!#$%&'*+-/=?^_`{|}~`` and non-ASCII), `@`, and a domain of letters,
/// digits, non-ASCII and `-._~` that starts with a letter or digit, ends
/// with a letter, and has a dot between a letter or digit and a letter;
/// one trailing dot allowed. Quoted local parts are refused.
pub fn is_email(s: &str) -> bool {
    let wide = |c: char| matches!(c, '\u{A0}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFEF}');
    let atom = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || wide(c);
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if local.is_empty()
        || local
            .split('.')
            .any(|p| p.is_empty() || !p.chars().all(atom))
    {
        return false;
    }
    // The pattern's `(label\.)+tld` with dots allowed inside labels comes
    // down to: one dot with a label's end before it and a tld's start after.
    let end = |c: char| c.is_ascii_alphanumeric() || wide(c);
    let tld = |c: char| c.is_ascii_alphabetic() || wide(c);
    let inner = |c: char| end(c) || "-._~".contains(c);
    let domain_ok = |d: &str| {
        let c: Vec<char> = d.chars().collect();
        c.len() >= 3
            && c.iter().all(|&x| inner(x))
            && end(c[0])
            && tld(c[c.len() - 1])
            && c.windows(3).any(|w| end(w[0]) && w[1] == '.' && tld(w[2]))
    };
    domain_ok(domain) || domain.strip_suffix('.').is_some_and(domain_ok)
}

/// What one record write submits.
pub struct Write<'a> {
    pub body: &'a Map<String, Value>,
    /// A create (required fields checked, defaults filled) or an update.
    pub create: bool,
    /// The bcrypt hash of the body's password, made beforehand (hashing
    /// here would hold the writer).
    pub hash: Option<&'a str>,
    /// The body's uploads, already in the bucket.
    pub files: &'a FileWrite,
    /// The record as stored, for an update.
    pub current: Option<&'a Map<String, Value>>,
}

/// A write's columns, and the files that leave the record with it (to
/// delete once it commits).
#[derive(Debug, Default)]
pub struct Written {
    pub cols: Vec<(String, SqlValue)>,
    pub removed_files: Vec<String>,
}

/// The body with PocketBase's modifiers applied to number, select and
/// relation fields: `f+` adds to a number (cast as PocketBase casts it) or
/// appends values, `+f` prepends them, `f-` subtracts or removes them; each
/// on the value the body sets, or else the record's current one. A single
/// select or relation takes the appended value, and loses a removed one.
/// File modifiers are the uploads' business ([`FileWrite`]).
fn with_modifiers<'b>(
    c: &Collection,
    body: &'b Map<String, Value>,
    current: Option<&Map<String, Value>>,
) -> Cow<'b, Map<String, Value>> {
    // Most bodies have no modifier: no copy, no lookups per field.
    if !body
        .keys()
        .any(|k| k.starts_with('+') || k.ends_with('+') || k.ends_with('-'))
    {
        return Cow::Borrowed(body);
    }
    let mut out = body.clone();
    for f in &c.fields {
        let (plus, pre, minus) = (
            body.get(&format!("{}+", f.name)),
            body.get(&format!("+{}", f.name)),
            body.get(&format!("{}-", f.name)),
        );
        if plus.is_none() && pre.is_none() && minus.is_none() {
            continue;
        }
        let base = body
            .get(&f.name)
            .or_else(|| current.and_then(|r| r.get(&f.name)))
            .cloned()
            .unwrap_or(Value::Null);
        let value = match f.kind {
            FieldType::Number => {
                let n = |v: Option<&Value>| v.map_or(0.0, cast_number);
                json!(cast_number(&base) + n(plus) - n(minus))
            }
            FieldType::Select | FieldType::Relation => {
                let list = |v: Option<&Value>| -> Vec<Value> {
                    match v {
                        None | Some(Value::Null) => vec![],
                        Some(Value::String(s)) if s.is_empty() => vec![],
                        Some(Value::Array(a)) => a.clone(),
                        Some(other) => vec![other.clone()],
                    }
                };
                let gone = list(minus);
                let mut values = list(pre);
                if f.multiple() {
                    values.extend(list(Some(&base)));
                    values.extend(list(plus));
                } else {
                    // One value: the last one added, or the one it had.
                    let added: Vec<Value> = list(pre).into_iter().chain(list(plus)).collect();
                    values = match added.last() {
                        Some(v) => vec![v.clone()],
                        None => list(Some(&base)),
                    };
                }
                let as_text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
                let gone: Vec<String> = gone.iter().map(as_text).collect();
                values.retain(|v| !gone.contains(&as_text(v)));
                if f.multiple() {
                    Value::Array(values)
                } else {
                    values.pop().unwrap_or(json!(""))
                }
            }
            _ => continue,
        };
        out.insert(f.name.clone(), value);
    }
    Cow::Owned(out)
}

/// A value as a number, as PocketBase casts it: numbers as they are,
/// numeric text parsed, `true` 1, anything else 0.
fn cast_number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// Validate and convert submitted values to columns.
pub fn write_values(conn: &Connection, c: &Collection, w: &Write<'_>) -> ApiResult<Written> {
    let body: &Map<String, Value> = &with_modifiers(c, w.body, w.current);
    let create = w.create;
    let mut out = Vec::new();
    let mut removed_files = Vec::new();
    let mut errors = Map::new();
    for f in &c.fields {
        if matches!(f.name.as_str(), "id" | "tokenKey") || f.kind == FieldType::Autodate {
            continue;
        }
        if f.kind == FieldType::File {
            if !w.files.touches(f, body) {
                if create && f.required {
                    errors.insert(
                        f.name.clone(),
                        err("validation_required", "Cannot be blank."),
                    );
                }
                continue;
            }
            let current = crate::serve::schema::strings_of(w.current.and_then(|r| r.get(&f.name)));
            match w.files.resolve(f, body, &current) {
                Ok((names, _)) if f.required && names.is_empty() => {
                    errors.insert(
                        f.name.clone(),
                        err("validation_required", "Cannot be blank."),
                    );
                }
                Ok((names, removed)) => {
                    removed_files.extend(removed);
                    let value = if f.multiple() {
                        Value::from(names).to_string()
                    } else {
                        names.into_iter().next().unwrap_or_default()
                    };
                    out.push((f.name.clone(), SqlValue::Text(value)));
                }
                Err(e) => {
                    errors.insert(f.name.clone(), e);
                }
            }
            continue;
        }
        // A text field with an autogenerate pattern, left empty on create,
        // gets a random match (then checked like any value).
        let generated = if create
            && f.kind == FieldType::Text
            && !f.autogenerate_pattern.is_empty()
            && body
                .get(&f.name)
                .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
        {
            Some(Value::String(generate(&f.autogenerate_pattern)?))
        } else {
            None
        };
        let Some(v) = generated.as_ref().or_else(|| body.get(&f.name)) else {
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
            (FieldType::Text | FieldType::Url | FieldType::Editor, Value::String(s)) => {
                SqlValue::Text(s.clone())
            }
            // PocketBase's stored form; anything that is no date is "".
            (FieldType::Date, Value::String(s)) => {
                SqlValue::Text(super::dates::normalize(s).unwrap_or_default())
            }
            (FieldType::Text | FieldType::Editor, Value::Number(n)) => {
                SqlValue::Text(n.to_string())
            }
            (
                FieldType::Text
                | FieldType::Date
                | FieldType::Email
                | FieldType::Url
                | FieldType::Editor,
                Value::Null,
            ) => SqlValue::Text(String::new()),
            (FieldType::Email, Value::String(s)) if s.is_empty() || is_email(s) => {
                SqlValue::Text(s.clone())
            }
            (FieldType::Email, _) => {
                errors.insert(
                    f.name.clone(),
                    err("validation_is_email", "Must be a valid email address."),
                );
                continue;
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
            (FieldType::GeoPoint, v) => match geo_point(v, f.required) {
                Ok(text) => SqlValue::Text(text),
                Err(e) => {
                    errors.insert(f.name.clone(), e);
                    continue;
                }
            },
            (FieldType::Json, Value::Null) => SqlValue::Null,
            (FieldType::Json, v) => SqlValue::Text(v.to_string()),
            (FieldType::Password, Value::String(s)) if s.is_empty() => {
                errors.insert(
                    f.name.clone(),
                    err("validation_required", "Cannot be blank."),
                );
                continue;
            }
            (FieldType::Password, Value::String(s)) => {
                if let Some(e) = password_error(s, f) {
                    errors.insert(f.name.clone(), e);
                    continue;
                }
                if body.get("passwordConfirm").and_then(Value::as_str) != Some(s.as_str()) {
                    errors.insert(
                        "passwordConfirm".into(),
                        err("validation_values_mismatch", "Values don't match."),
                    );
                    continue;
                }
                let h = w
                    .hash
                    .ok_or_else(|| ApiError::internal("password not hashed"))?;
                SqlValue::Text(h.to_string())
            }
            (FieldType::Password, _) => {
                errors.insert(f.name.clone(), invalid("Invalid value."));
                continue;
            }
            _ => {
                errors.insert(f.name.clone(), invalid("Invalid value."));
                continue;
            }
        };
        if let Some(e) = bounds_error(f, &value) {
            errors.insert(f.name.clone(), e);
            continue;
        }
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
    Ok(Written {
        cols: out,
        removed_files,
    })
}

/// The most characters of a text field with no `max`, as in PocketBase.
pub const TEXT_MAX_CHARS: f64 = 5000.0;

/// A number as PocketBase writes it in messages and params: whole numbers
/// without a fraction.
fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn num_text(v: f64) -> String {
    num(v).to_string()
}

/// The default `maxSize` of an editor field (5 MiB) and of a JSON field
/// (1 MiB), as PocketBase has them.
pub const EDITOR_MAX_BYTES: u64 = 5 << 20;
pub const JSON_MAX_BYTES: u64 = 1 << 20;

/// A URL as PocketBase's validator takes it: no spaces, and with its
/// scheme, or `http://` put before it, a URL with a host (that has a dot,
/// without a scheme).
/// The URL's host, lower-cased, if it is one.
pub fn url_host(s: &str) -> Option<String> {
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return None;
    }
    let scheme = s.contains("://");
    let parsed = if scheme {
        url::Url::parse(s)
    } else {
        url::Url::parse(&format!("http://{s}"))
    };
    let host = parsed.ok()?.host_str()?.to_ascii_lowercase();
    (!host.is_empty() && (scheme || host.contains('.'))).then_some(host)
}

/// A `maxSize` error if `s` is longer than `max` bytes (0: `default`).
fn size_limit(s: &str, max: u64, default: u64, what: &str, code: &str) -> Option<Value> {
    let max = if max == 0 { default } else { max };
    (s.len() as u64 > max).then(|| {
        json!({"code": code,
            "message": format!("The maximum allowed {what} size is {max} bytes."),
            "params": {"maxSize": max}})
    })
}

/// Whether `domain` passes `onlyDomains` and `exceptDomains` (exact
/// names, as PocketBase compares them).
fn domain_allowed(f: &Field, domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    (f.only_domains.is_empty() || f.only_domains.contains(&domain))
        && !f.except_domains.contains(&domain)
}

/// Why a value breaks its field's options (text `min`/`max`/`pattern`,
/// number `min`/`max`/`onlyInt`, date `min`/`max`, url and email domains,
/// editor and JSON `maxSize`), in PocketBase's words. Empty text and zero
/// are not checked (`required` is).
fn bounds_error(f: &Field, value: &SqlValue) -> Option<Value> {
    match (f.kind, value) {
        (FieldType::Url, SqlValue::Text(s)) if !s.is_empty() => {
            let Some(host) = url_host(s) else {
                return Some(err("validation_invalid_url", "Must be a valid url."));
            };
            (!domain_allowed(f, &host)).then(|| {
                err(
                    "validation_url_domain_not_allowed",
                    "Url domain is not allowed.",
                )
            })
        }
        (FieldType::Email, SqlValue::Text(s)) if !s.is_empty() => {
            let domain = s.rsplit_once('@').map_or("", |(_, d)| d);
            (!domain_allowed(f, domain)).then(|| {
                err(
                    "validation_email_domain_not_allowed",
                    "Email domain is not allowed.",
                )
            })
        }
        (FieldType::Editor, SqlValue::Text(s)) => size_limit(
            s,
            f.max_size,
            EDITOR_MAX_BYTES,
            "content",
            "validation_content_size_limit",
        ),
        (FieldType::Json, SqlValue::Text(s)) => size_limit(
            s,
            f.max_size,
            JSON_MAX_BYTES,
            "JSON",
            "validation_json_size_limit",
        ),
        (FieldType::Date, SqlValue::Text(s)) if !s.is_empty() => {
            let bound = |b: &Option<Value>| b.as_ref().and_then(Value::as_str).map(str::to_string);
            if let Some(min) = bound(&f.min).filter(|m| s < m) {
                let (go, rfc) = super::dates::go_forms(&min);
                return Some(json!({"code": "validation_min_greater_equal_than_required",
                    "message": format!("Must be no less than {go}."),
                    "params": {"threshold": rfc}}));
            }
            if let Some(max) = bound(&f.max).filter(|m| s > m) {
                let (go, rfc) = super::dates::go_forms(&max);
                return Some(json!({"code": "validation_max_less_equal_than_required",
                    "message": format!("Must be no greater than {go}."),
                    "params": {"threshold": rfc}}));
            }
            None
        }
        (FieldType::Text, SqlValue::Text(s)) if !s.is_empty() => {
            let n = s.chars().count() as f64;
            let max = f.max_num().unwrap_or(TEXT_MAX_CHARS);
            if let Some(min) = f.min_num().filter(|m| n < *m) {
                return Some(json!({"code": "validation_min_text_constraint",
                    "message": format!("Must be at least {} character(s).", num_text(min)),
                    "params": {"min": num(min)}}));
            }
            if n > max {
                return Some(json!({"code": "validation_max_text_constraint",
                    "message": format!("Must be no more than {} character(s).", num_text(max)),
                    "params": {"max": num(max)}}));
            }
            let matches = || regex::Regex::new(&f.pattern).is_ok_and(|r| r.is_match(s));
            if !f.pattern.is_empty() && !matches() {
                return Some(err("validation_invalid_format", "Invalid value format."));
            }
            None
        }
        (FieldType::Number, SqlValue::Integer(_) | SqlValue::Real(_)) => {
            let v = match value {
                SqlValue::Integer(i) => *i as f64,
                SqlValue::Real(r) => *r,
                _ => 0.0,
            };
            if v == 0.0 {
                return None;
            }
            if f.only_int && v.fract() != 0.0 {
                return Some(err(
                    "validation_only_int_constraint",
                    "Decimal numbers are not allowed.",
                ));
            }
            if let Some(min) = f.min_num().filter(|m| v < *m) {
                return Some(json!({"code": "validation_min_number_constraint",
                    "message": format!("Must be greater or equal than {}.", num_text(min)),
                    "params": {"min": num(min)}}));
            }
            if let Some(max) = f.max_num().filter(|m| v > *m) {
                return Some(json!({"code": "validation_max_number_constraint",
                    "message": format!("Must be less or equal than {}.", num_text(max)),
                    "params": {"max": num(max)}}));
            }
            None
        }
        _ => None,
    }
}

/// A geoPoint value as PocketBase stores it: `{"lon", "lat"}` numbers of an
/// object (a missing or non-numeric one is 0; anything but an object is
/// (0, 0)), each within its range; (0, 0) is blank.
fn geo_point(v: &Value, required: bool) -> Result<String, Value> {
    let coord = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let (lon, lat) = if v.is_object() {
        (coord("lon"), coord("lat"))
    } else {
        (0.0, 0.0)
    };
    if !(-180.0..=180.0).contains(&lon) {
        return Err(err(
            "validation_invalid_longitude",
            "Longitude must be between -180 and 180 degrees.",
        ));
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(err(
            "validation_invalid_latitude",
            "Latitude must be between -90 and 90 degrees.",
        ));
    }
    if required && lon == 0.0 && lat == 0.0 {
        return Err(err("validation_required", "Cannot be blank."));
    }
    // Whole numbers as integers, as Go's JSON writes a float64.
    let num = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 9.0e15 {
            json!(x as i64)
        } else {
            json!(x)
        }
    };
    Ok(json!({"lon": num(lon), "lat": num(lat)}).to_string())
}

/// The generator of a text field's `autogeneratePattern` (empty: none).
/// Repeats without a bound (`*`, `+`) stop at 100.
pub fn generator(pattern: &str) -> Result<Option<rand_regex::Regex>, String> {
    if pattern.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(pattern).map_err(|e| e.to_string())?;
    rand_regex::Regex::compile(pattern, 100)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A random match of `pattern` (checked by [`generator`] when the field
/// was saved).
fn generate(pattern: &str) -> ApiResult<String> {
    use rand::Rng;
    let g = rand_regex::Regex::compile(pattern, 100).map_err(|e| {
        ApiError::bad_request(format!("The field's autogenerate pattern is invalid: {e}."))
    })?;
    Ok(rand::rng().sample::<String, _>(&g))
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
