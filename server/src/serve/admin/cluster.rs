//! The admin API of the cluster: the nodes, moving a tenant, draining this
//! node (`serve::cluster::handoff` does the work).

use crate::serve::App;
use crate::serve::api::body::body_json;
use crate::serve::cluster::forward;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::tenants::{blocking, check_tenant_id};
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use strata_vfs::Millis;

/// The nodes of the cluster as this node's view has them (refreshed every
/// half node ttl), this one first.
pub async fn nodes(State(app): State<App>) -> Json<Value> {
    let c = &app.cluster;
    let now = Millis::now();
    let view = c.view();
    let mut items: Vec<Value> = view
        .nodes
        .iter()
        .map(|h| {
            let me = h.node == c.id() && h.incarnation == c.node.incarnation();
            json!({
                "id": h.node,
                "advertise": h.advertise,
                "state": if h.alive_at(now) { serde_json::to_value(h.state).unwrap_or_default() } else { json!("dead") },
                "heartbeatAgeMs": if me { c.node.beat_age().as_millis() as u64 } else { h.age(now).as_millis() as u64 },
                "tenants": if me { app.registry.loaded_count() as u64 } else { h.tenants },
                "started": h.started.rfc3339(),
                "self": me,
            })
        })
        .collect();
    items.sort_by_key(|v| !v["self"].as_bool().unwrap_or(false));
    Json(
        json!({"items": items, "node": c.id(), "viewAgeMs": view.read.elapsed().as_millis() as u64}),
    )
}

/// Route layer of the tenant-scoped admin calls (`/tenants/{id}/...`): a
/// tenant held by another live node is handled there (its state, its
/// eviction, its restore are that node's), so any node answers them.
pub async fn at_holder(
    State(app): State<App>,
    Path(p): Path<HashMap<String, String>>,
    req: Request,
    next: Next,
) -> Response {
    let c = app.cluster.clone();
    let Some(id) = p.get("id").cloned() else {
        return next.run(req).await;
    };
    if check_tenant_id(&id).is_err()
        || app.registry.is_loaded(&id)
        || c.forwarder.from_peer(req.headers())
    {
        return next.run(req).await;
    }
    let holder = {
        let c = c.clone();
        crate::serve::tenants::blocking(move || c.holder(&id)).await
    };
    match holder {
        Ok(Some(h)) if h.id != c.id() => {
            let req = match forward::buffer(req).await {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            match c.forwarder.send(&h.advertise, None, req).await {
                Ok(r) => r,
                Err(e) => {
                    ApiError::new(StatusCode::BAD_GATEWAY, format!("{e}; retry.")).into_response()
                }
            }
        }
        Ok(_) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /tenants/{id}/move {"to": NODE}`: hand the tenant, loaded here
/// (`at_holder` brings the call here), to node `to`.
pub async fn move_tenant(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    check_tenant_id(&id)?;
    let c = app.cluster.clone();
    let body = body_json(body)?;
    let Some(to) = body.get("to").and_then(Value::as_str) else {
        return Err(ApiError::bad_request(
            "Give the target node: {\"to\": \"<node id>\"}.",
        ));
    };
    let (lookup, target) = (c.clone(), to.to_string());
    let Some(peer) = blocking(move || lookup.serving_peer(&target)).await? else {
        return Err(ApiError::bad_request(format!(
            "No live node {to:?} takes tenants (see /_strata/api/nodes)."
        )));
    };
    if !app.registry.is_loaded(&id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Tenant {id} is not loaded on any node: it loads where its next request lands."
            ),
        ));
    }
    let pause = c.move_tenant(&app, &id, &peer).await?;
    Ok(Json(
        json!({"id": id, "from": c.id(), "to": peer.id, "pauseMs": pause.as_millis() as u64}),
    ))
}

/// `POST /tenants/{id}/load`: load the tenant here now (a move's target;
/// also a way to warm one up).
pub async fn load(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    check_tenant_id(&id)?;
    let _guard = app.registry.acquire(&id).await?;
    Ok(Json(json!({"id": id, "node": app.cluster.id()})))
}

/// `POST /node/drain`: this node takes no new tenants and hands every
/// loaded one to another node.
pub async fn drain(State(app): State<App>) -> ApiResult<Json<Value>> {
    let c = app.cluster.clone();
    let d = c.drain(&app).await?;
    Ok(Json(
        json!({"node": c.id(), "moved": d.moved, "failed": d.failed}),
    ))
}
