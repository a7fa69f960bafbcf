//! The platform admin API under `/_strata/api/`, for the operator rather
//! than a tenant's users. Every request needs `Authorization: Bearer
//! $STRATA_ADMIN_TOKEN`; without a configured token the API is closed.
//!
//! The list stays as cheap as listing the tenants' metadata: per tenant it
//! adds only this node's view (file sizes, and the in-process replication
//! state of loaded tenants). What needs the bucket per tenant (the lag
//! against the bucket's head, the restore points) is in `show` and
//! `history`, fetched for one tenant on demand.

pub mod client;
pub mod cluster;
pub mod dashboard;

use super::App;
use super::api::body::body_json;
use super::errors::{ApiError, ApiResult};
use super::tenants::{DATA_DB, Metadata, blocking, check_tenant_id};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;
use strata_vfs::engine::history;
use strata_vfs::engine::restore::Target;
use strata_vfs::format::keys::DbKeys;
use strata_vfs::{Millis, TxId};

pub fn router(app: App) -> Router<App> {
    Router::new()
        .route("/nodes", get(cluster::nodes))
        .route("/node/drain", post(cluster::drain))
        .route("/tenants/{id}/load", post(cluster::load))
        .route("/tenants", get(list).post(create))
        .merge(
            // One tenant's calls: handled by the node that holds it.
            Router::new()
                .route("/tenants/{id}", get(show).delete(delete))
                .route("/tenants/{id}/evict", post(evict))
                .route("/tenants/{id}/history", get(history))
                .route("/tenants/{id}/restore", post(restore))
                .route("/tenants/{id}/fork", post(fork))
                .route("/tenants/{id}/export", post(export))
                .route("/tenants/{id}/move", post(cluster::move_tenant))
                .route_layer(axum::middleware::from_fn_with_state(
                    app.clone(),
                    cluster::at_holder,
                )),
        )
        .route_layer(axum::middleware::from_fn_with_state(app, require_admin))
}

/// Equal-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn require_admin(State(app): State<App>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    // Another node of the cluster (a move's load call) shows the key.
    if app.cluster.forwarder.from_peer(req.headers()) {
        return next.run(req).await;
    }
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
        // The node serving it, as this node knows without a bucket read:
        // itself, or where it last forwarded the tenant's requests.
        "node": app.cluster.known_holder(&m.id, app.registry.is_loaded(&m.id)),
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

/// `describe` plus `localBytes` on this node and `replication`. Blocking.
fn describe_local(app: &App, m: &Metadata, replication: Value) -> Value {
    let mut v = describe(app, m);
    v["localBytes"] = json!(app.registry.local_bytes(&m.id));
    v["replication"] = replication;
    v
}

async fn list(State(app): State<App>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let all = app.registry.list()?;
        // Counted before the items: eviction only removes, so a tenant
        // evicted meanwhile shows as evicted in the items as well.
        let loaded = app.registry.loaded_count();
        // Loaded tenants' replication as their replicas here know it.
        let items: Vec<Value> = all
            .iter()
            .map(|m| {
                let live = app.registry.live_status(&m.id).unwrap_or(Value::Null);
                describe_local(&app, m, live)
            })
            .collect();
        Ok(Json(json!({"items": items, "loaded": loaded})))
    })
    .await
}

async fn show(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    check_tenant_id(&id)?;
    blocking(move || {
        let (meta, _) = app.registry.read_meta(&id)?;
        // Against the bucket's head, and also for a tenant not loaded here.
        let lag = app.registry.lag(&id)?;
        let mut v = describe_local(&app, &meta, lag);
        v["holder"] = json!(app.cluster.holder(&id)?.map(|p| p.id));
        Ok(Json(v))
    })
    .await
}

/// Most restore points one `history` answer lists.
const MAX_POINTS: usize = 500;

/// The newest restore points of a tenant's `data.db` (the database that
/// `restore` restores), newest first: each snapshot and each segment end,
/// where the commit time is known; `more` says whether older ones were left
/// out. Any txid from `oldest` to the head can be restored, listed or not.
/// `?limit=N` (default 20, at most 500).
async fn history(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    check_tenant_id(&id)?;
    let limit = match q.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_POINTS).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1 to {MAX_POINTS}.")))?,
    };
    let reg = app.registry.clone();
    blocking(move || {
        reg.read_meta(&id)?;
        let h = history::load(reg.store.as_ref(), &DbKeys::new(&id, DATA_DB)?, None)?;
        let mut points: Vec<_> = h
            .snapshots
            .iter()
            .map(|s| (s.txid, s.commit, "snapshot"))
            .chain(
                h.segments
                    .iter()
                    .map(|s| (s.last, s.last_commit, "segment")),
            )
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.0));
        points.dedup_by_key(|p| p.0);
        // Checked lazily: one check walks the segment list.
        let mut points: Vec<_> = points
            .into_iter()
            .filter(|(txid, ..)| h.plan_for(*txid).is_ok())
            .take(limit + 1)
            .collect();
        let more = points.len() > limit;
        points.truncate(limit);
        let m = &h.manifest;
        Ok(Json(json!({
            "id": id,
            "db": DATA_DB,
            "head": {"txid": m.head.0, "time": m.head_commit.rfc3339()},
            "oldest": h.oldest().map(|t| t.0),
            "bytes": u64::from(m.db_pages) * u64::from(m.page_size),
            "more": more,
            "points": points.iter().map(|(txid, t, kind)| json!({
                "txid": txid.0, "time": t.rfc3339(), "kind": kind,
            })).collect::<Vec<_>>(),
        })))
    })
    .await
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

/// `{txid}` or `{time}` (RFC 3339) from a body; neither = the latest state
/// if `latest` may be meant (a fork), else a 400 (a restore: "restore to
/// now" would be a mistake).
fn target(body: &serde_json::Map<String, Value>, latest: bool) -> ApiResult<Target> {
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
        (None, None) if latest => Ok(Target::Latest),
        (None, None) => Err(ApiError::validation(
            "A restore needs a txid or a time.",
            json!({"txid": {"code": "validation_required", "message": "Set txid or time."}}),
        )),
    }
}

async fn restore(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let target = target(&body_json(body)?, false)?;
    Ok(Json(app.registry.restore(&id, target).await?))
}

async fn fork(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body_json(body)?;
    let target = target(&body, true)?;
    let new = body
        .get("newId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    app.registry.flush_loaded(&id).await?;
    let reg = app.registry.clone();
    let meta = blocking(move || reg.fork(&id, &new, target)).await?;
    Ok((StatusCode::CREATED, Json(describe(&app, &meta))).into_response())
}

async fn export(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    check_tenant_id(&id)?;
    app.registry.flush_loaded(&id).await?;
    let reg = app.registry.clone();
    let (key, size) = blocking(move || reg.export(&id)).await?;
    Ok(Json(json!({"key": key, "size": size})))
}
