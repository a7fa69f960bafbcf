//! A tenant's PocketBase API, under `/t/<tenant>/` or the tenant's own
//! domain: the routes, and the middleware that finds the tenant (here, or
//! at the node of the cluster that holds it: `serve::cluster`), holds it
//! loaded for the request, and records the request (metrics, `_logs`).
//!
//! - [`records`]: records CRUD;
//! - [`collections`]: collections CRUD (superusers);
//! - [`auth`]: `auth-with-password`, `auth-refresh`;
//! - [`settings`]: `/api/settings` (superusers);
//! - [`batch`]: `/api/batch`, record writes in one transaction;
//! - [`logs`]: `/api/logs` and its stats, over `auxiliary.db` (superusers);
//! - [`files`]: `/api/files/...`, the files of `file` fields, and file tokens;
//! - [`body`]: request bodies (JSON, multipart);
//! - `/api/realtime`: the handlers live in [`super::realtime`].
//!
//! Handlers parse the request here, then run their SQL as one job on the
//! tenant's connections (`Tenant::read`, `Tenant::write`).

pub mod auth;
pub mod batch;
pub mod body;
pub mod collections;
pub mod files;
pub mod limits;
pub mod logs;
pub mod records;
pub mod settings;

use super::App;
use super::cluster::route::{Dispatch, dispatch};
use super::realtime;
use super::schema;
use super::tenants::{Guard, LogRow, check_tenant_id};
use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What a tenant request handler gets: a hold on the loaded tenant.
pub type TenantReq = Arc<Guard>;

/// The tenant API's routes, each reached with a tenant in the request.
fn routes() -> Router<App> {
    Router::new()
        .route("/api/health", get(health))
        .route(
            "/api/realtime",
            get(realtime::sse::connect).post(realtime::sse::subscribe),
        )
        .route("/api/batch", post(batch::run))
        .route("/api/files/token", post(files::token))
        .route(
            "/api/files/{collection}/{record}/{filename}",
            get(files::serve),
        )
        .route("/api/logs", get(logs::list))
        .route("/api/logs/stats", get(logs::stats))
        .route("/api/logs/{id}", get(logs::view))
        .route("/api/settings", get(settings::view).patch(settings::update))
        .route(
            "/api/collections",
            get(collections::list).post(collections::create),
        )
        .route(
            "/api/collections/{collection}",
            get(collections::view)
                .patch(collections::update)
                .delete(collections::delete),
        )
        .route(
            "/api/collections/{collection}/auth-with-password",
            post(auth::auth_with_password),
        )
        .route(
            "/api/collections/{collection}/auth-refresh",
            post(auth::auth_refresh),
        )
        .route(
            "/api/collections/{collection}/records",
            get(records::list).post(records::create),
        )
        .route(
            "/api/collections/{collection}/records/{id}",
            get(records::view)
                .patch(records::update)
                .delete(records::delete),
        )
}

/// The API by path (`/t/<tenant>/api/...`) and by host (a tenant's domain).
pub fn by_path(app: &App) -> Router<App> {
    routes().route_layer(from_fn_with_state(app.clone(), tenant_by_path))
}

pub fn by_host(app: &App) -> Router<App> {
    routes().route_layer(from_fn_with_state(app.clone(), tenant_by_host))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"code": 200, "message": "API is healthy.", "data": {}}))
}

async fn tenant_by_path(
    State(app): State<App>,
    Path(p): Path<HashMap<String, String>>,
    req: Request,
    next: Next,
) -> Response {
    let id = p.get("tenant").cloned().unwrap_or_default();
    serve_tenant(app, id, req, next).await
}

async fn tenant_by_host(State(app): State<App>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    match app.registry.tenant_for_host(&host).await {
        Ok(id) => serve_tenant(app, id, req, next).await,
        Err(e) => e.into_response(),
    }
}

/// Load the tenant, run the handler with a hold on it, then record the
/// request in metrics and in the tenant's `_logs` (written in batches).
async fn serve_tenant(app: App, id: String, req: Request, next: Next) -> Response {
    let start = Instant::now();
    if let Err(e) = check_tenant_id(&id) {
        return e.into_response();
    }
    // Here (loaded), or answered by the node that holds the tenant.
    let (mut req, guard): (Request, TenantReq) = match dispatch(&app, &id, req).await {
        Dispatch::Serve(req, g) => (req, Arc::new(g)),
        Dispatch::Done(r) => {
            app.metrics
                .observe(r.status().as_u16(), start.elapsed().as_secs_f64());
            return r;
        }
    };
    let (method, url) = (req.method().to_string(), req.uri().to_string());
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().copied();
    let (referer, user_agent, remote_ip, user_ip) = {
        let h = req.headers();
        let text = |name: header::HeaderName| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let settings = guard.settings();
        let (remote, user) = if settings.logs.log_ip {
            let peer = peer.map(|p| p.0);
            let remote = peer.map(|p| p.ip().to_string()).unwrap_or_default();
            (remote, limits::client_ip(&settings.trusted_proxy, h, peer))
        } else {
            (String::new(), String::new())
        };
        (
            text(header::REFERER),
            text(header::USER_AGENT),
            remote,
            user,
        )
    };
    let limited = limits::check(&guard, req.method(), req.uri().path(), req.headers(), peer).await;
    req.extensions_mut().insert(guard.clone());
    let resp = match limited {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    let status = resp.status().as_u16();
    let secs = start.elapsed().as_secs_f64();
    app.metrics.observe(status, secs);
    // PocketBase's request log entry; `auth` is the collection of the
    // caller that a handler's job verified ("" for a guest).
    let data = json!({
        "type": "request", "method": method, "url": url, "status": status,
        "execTime": secs * 1000.0, "auth": guard.auth_collection(), "referer": referer,
        "userAgent": user_agent, "remoteIP": remote_ip, "userIP": user_ip,
    });
    guard.log(LogRow {
        id: schema::new_id(),
        level: if status >= 400 { 8 } else { 0 },
        created: schema::now(),
        message: format!("{method} {url}"),
        data: data.to_string(),
    });
    resp
}
