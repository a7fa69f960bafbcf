//! `auth-with-password` and `auth-refresh` of auth collections.

use super::TenantReq;
use super::body::body_json;
use crate::serve::auth::{self, password};
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::query::filter::quote_ident;
use crate::serve::ratelimit::{self, RetryAfter};
use crate::serve::records::output;
use crate::serve::schema;
use axum::extract::{Path, rejection::BytesRejection};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use rusqlite::OptionalExtension;
use serde_json::Value;

pub async fn auth_with_password(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<std::collections::HashMap<String, String>>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body_json(body)?;
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (identity, pass) = (text("identity"), text("password"));
    let coll_name = p.get("collection").cloned().unwrap_or_default();
    // The node's guard on guessing: an identity with too many failed logins
    // waits, known or not (so the 429 tells nothing either).
    let guard = req.auth_guard.map(|(max, window)| {
        let key = format!("{}\0{}", coll_name.to_lowercase(), identity.to_lowercase());
        (key, max, window.as_secs().max(1))
    });
    if let Some((key, ..)) = &guard
        && let Some(RetryAfter(secs)) = req.auth_failures.exhausted(key, ratelimit::now())
    {
        return Err(ApiError::RateLimited(secs));
    }
    // The record, its hash and token key in one read; the hash is checked
    // after, with no connection held.
    let found = req
        .read(move |_, conn| {
            let coll = schema::find_collection(conn, &coll_name)?;
            if !coll.is_auth() {
                return Err(ApiError::not_found());
            }
            let row: Option<(String, String, String)> = conn
                .prepare_cached(&format!(
                    "SELECT id, password, tokenKey FROM {} WHERE email = ?1 AND email != ''",
                    quote_ident(&coll.name)
                ))?
                .query_row([&identity], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let rec = match &row {
                Some((id, _, _)) => output::fetch(conn, &coll, id)?,
                None => None,
            };
            Ok((coll, row, rec))
        })
        .await?;
    let (coll, row, rec) = found;
    let failed = || ApiError::bad_request("Failed to authenticate.");
    let ok = password::verify(pass, row.as_ref().map(|(_, h, _)| h.clone())).await?;
    match (ok, row, rec) {
        (true, Some((_, _, key)), Some(rec)) => auth::issue(&req, &coll, rec, &key).map(Json),
        _ => {
            if let Some((key, max, window)) = &guard {
                let _ = req.auth_failures.take(key, *max, *window, ratelimit::now());
            }
            Err(failed())
        }
    }
}

pub async fn auth_refresh(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let coll_name = p.get("collection").cloned().unwrap_or_default();
    req.read(move |t, conn| {
        let coll = schema::find_collection(conn, &coll_name)?;
        let unauthorized =
            || ApiError::unauthorized("The request requires valid record authorization token.");
        let a = auth::resolve(t, conn, &headers)?
            .filter(|a| a.collection_id == coll.id)
            .ok_or_else(unauthorized)?;
        let key = auth::token_key(conn, &coll, a.id())?.ok_or_else(unauthorized)?;
        auth::issue(t, &coll, a.record, &key).map(Json)
    })
    .await
}
