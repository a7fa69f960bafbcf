//! Auth records and tokens: who a request's `Authorization` header (raw
//! token or `Bearer`) says the caller is, and the tokens this tenant
//! issues. A token is signed with the tenant's secret (in `_params`) plus
//! the record's `tokenKey`, so a token of another tenant, or of a record
//! whose key changed, does not verify here.
//!
//! - [`token`]: HS256 JWTs;
//! - [`password`]: bcrypt, on a bounded pool of its own, never while a
//!   database connection is held.

pub mod password;
pub mod token;

use super::errors::{ApiError, ApiResult};
use super::records::output;
use super::schema::{self, Collection};
use super::tenants::Tenant;
use axum::http::HeaderMap;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value, json};
use token::{peek, sign, unix_now, verify};

/// Token lifetimes PocketBase uses by default (`authToken.duration` of
/// `_superusers` and of a new auth collection).
const SUPERUSER_TTL_SECS: u64 = 86_400;
const USER_TTL_SECS: u64 = 432_000;

/// The caller, if the request carries a valid token of this tenant.
#[derive(Debug, Clone)]
pub struct Auth {
    pub collection_id: String,
    pub collection_name: String,
    pub record: Map<String, Value>,
}

impl Auth {
    pub fn is_superuser(&self) -> bool {
        self.collection_name == schema::SUPERUSERS
    }
    pub fn id(&self) -> &str {
        self.record.get("id").and_then(Value::as_str).unwrap_or("")
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let t = v.strip_prefix("Bearer ").unwrap_or(v).trim();
    (!t.is_empty()).then_some(t)
}

pub fn token_key(conn: &Connection, coll: &Collection, id: &str) -> ApiResult<Option<String>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT tokenKey FROM {} WHERE id = ?1",
                super::query::filter::quote_ident(&coll.name)
            ),
            [id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Superusers only: 401 for guests, 403 for other auth records.
pub fn require_superuser(t: &Tenant, conn: &Connection, headers: &HeaderMap) -> ApiResult<Auth> {
    match resolve(t, conn, headers)? {
        Some(a) if a.is_superuser() => Ok(a),
        Some(_) => Err(ApiError::forbidden()),
        None => Err(ApiError::unauthorized(
            "The request requires valid record authorization token.",
        )),
    }
}

/// Resolve the `Authorization` header. An invalid or foreign token makes the
/// caller a guest (as in PocketBase); the rules then decide.
pub fn resolve(t: &Tenant, conn: &Connection, headers: &HeaderMap) -> ApiResult<Option<Auth>> {
    let who = match bearer(headers) {
        Some(token) => resolve_token(t, conn, token, Kind::Auth)?,
        None => None,
    };
    if let Some(a) = &who {
        crate::serve::tenants::tenant::note_auth(&a.collection_name);
    }
    Ok(who)
}

/// What a token is for; each kind is signed with its own key, so one can
/// never pass for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Authorization`: the API as the record.
    Auth,
    /// `?token=` of a protected file (three minutes).
    File,
}

impl Kind {
    fn claim(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::File => "file",
        }
    }
    /// The signing key of a record's tokens of this kind.
    fn key(self, t: &Tenant, token_key: &str) -> String {
        match self {
            Kind::Auth => format!("{}{token_key}", t.secret),
            Kind::File => format!("{}{token_key}.file", t.secret),
        }
    }
}

/// How long a file token lasts, as in PocketBase.
pub const FILE_TOKEN_TTL_SECS: u64 = 180;

/// A file token for the caller `who` (`POST /api/files/token`).
pub fn file_token(t: &Tenant, conn: &Connection, who: &Auth) -> ApiResult<String> {
    let coll = schema::find_collection(conn, &who.collection_id)?;
    let key = token_key(conn, &coll, who.id())?.ok_or_else(ApiError::not_found)?;
    let claims = json!({
        "collectionId": who.collection_id,
        "exp": unix_now() + FILE_TOKEN_TTL_SECS,
        "id": who.id(),
        "type": Kind::File.claim(),
    });
    sign(&claims, &Kind::File.key(t, &key))
}

/// The record a token of `kind` stands for, if it is valid for this tenant.
pub fn resolve_token(
    t: &Tenant,
    conn: &Connection,
    token: &str,
    kind: Kind,
) -> ApiResult<Option<Auth>> {
    let Some(claims) = peek(token) else {
        return Ok(None);
    };
    if claims["type"] != kind.claim() {
        return Ok(None);
    }
    let (Some(cid), Some(rid)) = (claims["collectionId"].as_str(), claims["id"].as_str()) else {
        return Ok(None);
    };
    let coll = match schema::find_collection(conn, cid) {
        Ok(c) if c.is_auth() && c.id == cid => c,
        _ => return Ok(None),
    };
    let Some(key) = token_key(conn, &coll, rid)? else {
        return Ok(None);
    };
    if verify(token, &kind.key(t, &key)).is_none() {
        return Ok(None);
    }
    let mut record = output::fetch(conn, &coll, rid)?.ok_or_else(ApiError::not_found)?;
    // `@request.auth.*` must not reach the password hash or the token key.
    for f in coll.fields.iter().filter(|f| f.hidden) {
        record.remove(&f.name);
    }
    Ok(Some(Auth {
        collection_id: coll.id.clone(),
        collection_name: coll.name.clone(),
        record,
    }))
}

/// A token for `record` of `coll` and the answer PocketBase gives with it.
/// `key` is the record's `tokenKey`.
pub fn issue(
    t: &Tenant,
    coll: &Collection,
    record: Map<String, Value>,
    key: &str,
) -> ApiResult<Value> {
    let id = record
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ttl = if coll.name == schema::SUPERUSERS {
        SUPERUSER_TTL_SECS
    } else {
        USER_TTL_SECS
    };
    let claims = json!({
        "id": id,
        "type": "auth",
        "collectionId": coll.id,
        "refreshable": true,
        "exp": unix_now() + ttl,
    });
    let token = sign(&claims, &Kind::Auth.key(t, key))?;
    Ok(json!({"token": token, "record": output::public(coll, record, None, true)}))
}
