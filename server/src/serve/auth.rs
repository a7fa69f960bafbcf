//! Auth records and tokens: bcrypt passwords, HS256 JWTs with `exp`, the
//! `Authorization` header (raw token or `Bearer`), `auth-with-password` and
//! `auth-refresh`. A token is signed with the tenant's secret (in `_params`)
//! plus the record's `tokenKey`, so a token of another tenant, or of a record
//! whose key changed, does not verify here.

use super::TenantReq;
use super::errors::{ApiError, ApiResult};
use super::records::{self, body_json};
use super::schema::{self, Collection};
use super::tenants::{Tenant, on_data};
use axum::extract::{Path, rejection::BytesRejection};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{KeyInit, Mac};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Token lifetimes PocketBase uses by default.
const SUPERUSER_TTL_SECS: u64 = 86_400;
const USER_TTL_SECS: u64 = 604_800;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(key: &str, msg: &str) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(key.as_bytes()).ok()?;
    m.update(msg.as_bytes());
    Some(m)
}

pub fn sign(claims: &Value, key: &str) -> ApiResult<String> {
    let head = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = B64.encode(claims.to_string());
    let msg = format!("{head}.{body}");
    let sig = mac(key, &msg)
        .ok_or_else(|| ApiError::internal("bad signing key"))?
        .finalize()
        .into_bytes();
    Ok(format!("{msg}.{}", B64.encode(sig)))
}

/// The claims of a token, unverified (to find the key that verifies it).
fn peek(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_, body) = (parts.next()?, parts.next()?);
    serde_json::from_slice(&B64.decode(body).ok()?).ok()
}

/// The claims if the signature is valid (HS256 only) and `exp` is in the future.
pub fn verify(token: &str, key: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (head, body, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&B64.decode(head).ok()?).ok()?;
    if header["alg"] != "HS256" {
        return None;
    }
    let sig = B64.decode(sig).ok()?;
    mac(key, &format!("{head}.{body}"))?
        .verify_slice(&sig)
        .ok()?;
    let claims: Value = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
    (claims["exp"].as_u64()? > unix_now()).then_some(claims)
}

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

fn token_key(conn: &Connection, coll: &Collection, id: &str) -> ApiResult<Option<String>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT tokenKey FROM {} WHERE id = ?1",
                super::filter::quote_ident(&coll.name)
            ),
            [id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Resolve the `Authorization` header. An invalid or foreign token makes the
/// caller a guest (as in PocketBase); the rules then decide.
pub fn resolve(t: &Tenant, conn: &Connection, headers: &HeaderMap) -> ApiResult<Option<Auth>> {
    let Some(token) = bearer(headers) else {
        return Ok(None);
    };
    let Some(claims) = peek(token) else {
        return Ok(None);
    };
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
    if verify(token, &format!("{}{key}", t.secret)).is_none() {
        return Ok(None);
    }
    let mut record = records::fetch(conn, &coll, rid)?.ok_or_else(ApiError::not_found)?;
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

fn issue(
    t: &Tenant,
    conn: &Connection,
    coll: &Collection,
    record: Map<String, Value>,
) -> ApiResult<Value> {
    let id = record
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let key = token_key(conn, coll, &id)?.ok_or_else(ApiError::not_found)?;
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
    let token = sign(&claims, &format!("{}{key}", t.secret))?;
    Ok(json!({"token": token, "record": records::public(coll, record, None, true)}))
}

pub async fn auth_with_password(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<std::collections::HashMap<String, String>>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body_json(body)?;
    let identity = body
        .get("identity")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let password = body
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let coll_name = p.get("collection").cloned().unwrap_or_default();
    on_data(req, move |t, conn| {
        let coll = schema::find_collection(conn, &coll_name)?;
        if !coll.is_auth() {
            return Err(ApiError::not_found());
        }
        let failed = || ApiError::bad_request("Failed to authenticate.");
        let row: Option<(String, String)> = conn
            .query_row(
                &format!(
                    "SELECT id, password FROM {} WHERE email = ?1 AND email != ''",
                    super::filter::quote_ident(&coll.name)
                ),
                [&identity],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, hash)) = row else {
            return Err(failed());
        };
        if !bcrypt::verify(&password, &hash).unwrap_or(false) {
            return Err(failed());
        }
        let record = records::fetch(conn, &coll, &id)?.ok_or_else(failed)?;
        issue(t, conn, &coll, record).map(Json)
    })
    .await
}

pub async fn auth_refresh(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let coll_name = p.get("collection").cloned().unwrap_or_default();
    on_data(req, move |t, conn| {
        let coll = schema::find_collection(conn, &coll_name)?;
        let auth = resolve(t, conn, &headers)?
            .filter(|a| a.collection_id == coll.id)
            .ok_or_else(|| {
                ApiError::unauthorized("The request requires valid record authorization token.")
            })?;
        issue(t, conn, &coll, auth.record).map(Json)
    })
    .await
}
