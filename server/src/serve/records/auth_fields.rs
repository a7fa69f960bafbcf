//! PocketBase's checks of an auth record's own fields, made before the
//! field-by-field validation of [`super::values`] (and reported alone when
//! they fail, as PocketBase's record form does):
//!
//! - `verified` may change only with manage access (a superuser, or a
//!   caller the collection's `manageRule` lets at the stored record; never
//!   at sign-up);
//! - `email` may change on update only with manage access;
//! - a password needs `passwordConfirm`, and on update without manage
//!   access the right `oldPassword`;
//! - a new password or email rotates `tokenKey`, so earlier tokens fail.

use super::values::{err, failed};
use crate::serve::auth::password;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::query::filter::quote_ident;
use crate::serve::query::rules::{Caller, find_allowed};
use crate::serve::schema::Collection;
use axum::http::StatusCode;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};

/// A body value as PocketBase's form reads it into a string.
fn text(body: &Map<String, Value>, key: &str) -> String {
    match body.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// A body value as a bool (Go's `cast.ToBool`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"),
        _ => false,
    }
}

/// The body's `oldPassword`, checked against the stored hash before the
/// write (bcrypt runs with no connection held). `hash` is the hash it was
/// checked against: if the record's hash changed since, it counts as wrong.
#[derive(Debug, Clone)]
pub struct OldPassword {
    pub hash: String,
    pub matches: bool,
}

/// The non-empty `oldPassword` of a body, if any.
pub fn old_password(body: &Map<String, Value>) -> Option<String> {
    Some(text(body, "oldPassword")).filter(|s| !s.is_empty())
}

/// The stored password hash of record `id` of auth collection `c`.
pub fn stored_hash(conn: &Connection, c: &Collection, id: &str) -> ApiResult<Option<String>> {
    if !c.is_auth() {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            &format!(
                "SELECT password FROM {} WHERE id = ?1",
                quote_ident(&c.name)
            ),
            [id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Whether the caller has manage access to the stored record `id`: a
/// superuser, or an authenticated caller the `manageRule` lets at it. An
/// absent or empty `manageRule` means superusers only (as in PocketBase).
fn manages(conn: &Connection, c: &Collection, call: &Caller, id: &str) -> ApiResult<bool> {
    let Some(who) = &call.who else {
        return Ok(false);
    };
    if who.is_superuser() {
        return Ok(true);
    }
    if c.rules
        .manage
        .as_deref()
        .is_none_or(|r| r.trim().is_empty())
    {
        return Ok(false);
    }
    match find_allowed(conn, c, &c.rules.manage, call, id) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.status(), StatusCode::NOT_FOUND | StatusCode::FORBIDDEN) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The record as it is before the write.
struct Stored {
    email: String,
    verified: bool,
    hash: String,
}

/// The form checks, with `stored` the record before an update (`None` on
/// create, where only a superuser has manage access).
fn check(
    body: &Map<String, Value>,
    stored: Option<&Stored>,
    manage: bool,
    old: Option<&OldPassword>,
) -> ApiResult<()> {
    let create = stored.is_none();
    let mut errors = Map::new();
    let mismatch = || err("validation_values_mismatch", "Values don't match.");
    let required = || err("validation_required", "Cannot be blank.");
    if let (Some(s), false, true) = (stored, manage, body.contains_key("email"))
        && text(body, "email") != s.email
    {
        errors.insert("email".into(), mismatch());
    }
    if let (false, Some(v)) = (manage, body.get("verified"))
        && truthy(v) != stored.is_some_and(|s| s.verified)
    {
        errors.insert("verified".into(), mismatch());
    }
    let (password, confirm, old_text) = (
        text(body, "password"),
        text(body, "passwordConfirm"),
        text(body, "oldPassword"),
    );
    if password.is_empty() && (create || !confirm.is_empty() || !old_text.is_empty()) {
        errors.insert("password".into(), required());
    }
    if confirm.is_empty() && (create || !password.is_empty() || !old_text.is_empty()) {
        errors.insert("passwordConfirm".into(), required());
    } else if confirm != password {
        errors.insert("passwordConfirm".into(), mismatch());
    }
    if let (Some(s), false) = (stored, manage)
        && (!password.is_empty() || !confirm.is_empty())
    {
        if old_text.is_empty() {
            errors.insert("oldPassword".into(), required());
        } else if !old.is_some_and(|o| o.matches && o.hash == s.hash) {
            errors.insert(
                "oldPassword".into(),
                err(
                    "validation_invalid_old_password",
                    "Missing or invalid old password.",
                ),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(failed(create), Value::Object(errors)))
    }
}

/// The checks of a sign-up (or a create by anyone else) in auth collection `c`.
pub fn check_create(c: &Collection, call: &Caller, body: &Map<String, Value>) -> ApiResult<()> {
    if !c.is_auth() {
        return Ok(());
    }
    let manage = call.who.as_ref().is_some_and(|a| a.is_superuser());
    // PocketBase stores anyone else's new record on trial (for the create
    // rule) before any validation, and a password bcrypt refuses fails
    // that trial with no field named.
    if !manage && text(body, "password").len() > password::MAX_BYTES {
        return Err(ApiError::bad_request(failed(true)));
    }
    check(body, None, manage, None)
}

/// The checks of an update of record `id` of auth collection `c`, inside
/// the write (the stored record cannot change meanwhile). `true` if the
/// update must rotate the record's `tokenKey` (a new password or email).
pub fn check_update(
    conn: &Connection,
    c: &Collection,
    call: &Caller,
    id: &str,
    body: &Map<String, Value>,
    old: Option<&OldPassword>,
) -> ApiResult<bool> {
    if !c.is_auth() {
        return Ok(false);
    }
    let stored = conn
        .query_row(
            &format!(
                "SELECT email, verified, password FROM {} WHERE id = ?1",
                quote_ident(&c.name)
            ),
            [id],
            |r| {
                Ok(Stored {
                    email: r.get(0)?,
                    verified: r.get(1)?,
                    hash: r.get(2)?,
                })
            },
        )
        .optional()?
        .ok_or_else(ApiError::not_found)?;
    let manage = manages(conn, c, call, id)?;
    check(body, Some(&stored), manage, old)?;
    let new_email = body.contains_key("email") && text(body, "email") != stored.email;
    Ok(new_email || !text(body, "password").is_empty())
}
