//! The platform admin API under `/_strata/api/`, for the operator rather
//! than a tenant's users. Every request needs `Authorization: Bearer
//! $STRATA_ADMIN_TOKEN`; without a configured token the API is closed.

use super::App;
use super::errors::{ApiError, ApiResult};
use super::records::body_json;
use super::tenants::{Metadata, blocking, check_tenant_id};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use strata_vfs::engine::restore::Target;
use strata_vfs::{Millis, TxId};

pub fn router(app: App) -> Router<App> {
    Router::new()
        .route("/tenants", get(list).post(create))
        .route("/tenants/{id}", get(show).delete(delete))
        .route("/tenants/{id}/evict", post(evict))
        .route("/tenants/{id}/restore", post(restore))
        .route("/tenants/{id}/fork", post(fork))
        .route("/tenants/{id}/export", post(export))
        .route_layer(axum::middleware::from_fn_with_state(app, require_admin))
}

/// Equal-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_admin(State(app): State<App>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    match (&app.admin_token, given) {
        (Some(want), Some(got)) if same(want.as_bytes(), got.as_bytes()) => next.run(req).await,
        (None, _) => ApiError::unauthorized(
            "The admin API is disabled: set STRATA_ADMIN_TOKEN on the server.",
        )
        .into_response(),
        _ => ApiError::unauthorized(
            "A valid admin token is required (Authorization: Bearer $STRATA_ADMIN_TOKEN).",
        )
        .into_response(),
    }
}

fn describe(app: &App, m: &Metadata) -> Value {
    json!({
        "id": m.id,
        "domain": m.domain,
        "created": m.created,
        "deleted": m.deleted,
        "purgeAfter": m.purge_after,
        "state": if app.registry.is_loaded(&m.id) { "loaded" } else { "evicted" },
    })
}

async fn create(
    State(app): State<App>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body_json(body)?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    check_tenant_id(&id)?;
    let domain = body
        .get("domain")
        .and_then(Value::as_str)
        .map(str::to_string);
    let su = body.get("superuser").cloned().unwrap_or(Value::Null);
    let (Some(email), Some(password)) = (su["email"].as_str(), su["password"].as_str()) else {
        return Err(ApiError::bad_request(
            "superuser {email, password} is required.",
        ));
    };
    if !email.contains('@') || password.chars().count() < 8 {
        return Err(ApiError::bad_request(
            "superuser needs a valid email and a password of at least 8 characters.",
        ));
    }
    let (email, password) = (email.to_string(), password.to_string());
    let reg = app.registry.clone();
    let meta = blocking(move || reg.create(&id, domain, &email, &password)).await?;
    tracing::info!(tenant = %meta.id, "created");
    Ok((StatusCode::CREATED, Json(describe(&app, &meta))).into_response())
}

async fn list(State(app): State<App>) -> ApiResult<Json<Value>> {
    let reg = app.registry.clone();
    let all = blocking(move || reg.list()).await?;
    let items: Vec<Value> = all.iter().map(|m| describe(&app, m)).collect();
    Ok(Json(
        json!({"items": items, "loaded": app.registry.loaded_count()}),
    ))
}

async fn show(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    check_tenant_id(&id)?;
    let reg = app.registry.clone();
    let (meta, lag) = blocking(move || {
        let (meta, _) = reg.read_meta(&id)?;
        let lag = reg.lag(&id)?;
        Ok((meta, lag))
    })
    .await?;
    let mut v = describe(&app, &meta);
    v["replication"] = lag;
    Ok(Json(v))
}

async fn evict(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    check_tenant_id(&id)?;
    let evicted = app.registry.evict(&id).await?;
    Ok(Json(json!({"id": id, "evicted": evicted})))
}

async fn delete(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let meta = app.registry.delete(&id).await?;
    Ok(Json(describe(&app, &meta)))
}

/// `{txid}` or `{time}` (RFC 3339) from a body; neither = the latest state.
fn target(body: &serde_json::Map<String, Value>) -> ApiResult<Target> {
    let get = |k: &str| body.get(k).filter(|v| !v.is_null());
    match (get("txid"), get("time")) {
        (Some(t), _) => t
            .as_u64()
            .map(|t| Target::TxId(TxId(t)))
            .ok_or_else(|| ApiError::bad_request("txid must be a positive integer.")),
        (None, Some(Value::String(t))) => humantime::parse_rfc3339_weak(t)
            .map(|t| Target::Time(Millis::from_system_time(t)))
            .map_err(|_| {
                ApiError::bad_request("time must be RFC 3339, e.g. 2026-11-25T10:00:00Z.")
            }),
        (None, Some(_)) => Err(ApiError::bad_request("time must be a string.")),
        (None, None) => Ok(Target::Latest),
    }
}

async fn restore(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let target = target(&body_json(body)?)?;
    Ok(Json(app.registry.restore(&id, target).await?))
}

async fn fork(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body_json(body)?;
    let target = target(&body)?;
    let new = body
        .get("newId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let reg = app.registry.clone();
    let meta = blocking(move || reg.fork(&id, &new, target)).await?;
    Ok((StatusCode::CREATED, Json(describe(&app, &meta))).into_response())
}

async fn export(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    check_tenant_id(&id)?;
    let reg = app.registry.clone();
    let (key, size) = blocking(move || reg.export(&id)).await?;
    Ok(Json(json!({"key": key, "size": size})))
}
