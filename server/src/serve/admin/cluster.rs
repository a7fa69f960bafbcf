//! The admin API of the cluster: the nodes, moving a tenant, draining this
//! node (`serve::cluster::handoff` does the work).

use crate::serve::App;
use crate::serve::api::body::body_json;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::tenants::check_tenant_id;
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
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

/// `POST /tenants/{id}/move {"to": NODE}`: hand the tenant to node `to`.
/// Sent to a node that does not hold it, the call goes on to the holder.
pub async fn move_tenant(State(app): State<App>, Path(id): Path<String>, req: Request) -> Response {
    match move_here_or_there(app, id, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn move_here_or_there(app: App, id: String, req: Request) -> ApiResult<Response> {
    check_tenant_id(&id)?;
    let c = app.cluster.clone();
    if !app.registry.is_loaded(&id) {
        let holder = {
            let (c, id) = (c.clone(), id.clone());
            crate::serve::tenants::blocking(move || c.holder(&id)).await?
        };
        return match holder {
            Some(h) if h.id != c.id() && !c.forwarder.from_peer(req.headers()) => {
                let req = crate::serve::cluster::forward::buffer(req)
                    .await
                    .map_err(|_| ApiError::bad_request("Failed to read the request body."))?;
                c.forwarder
                    .send(c.id(), &h.advertise, None, req)
                    .await
                    .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, e.to_string()))
            }
            _ => Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!(
                    "Tenant {id} is not loaded on any node: it loads where its next request lands."
                ),
            )),
        };
    }
    let bytes = axum::body::to_bytes(req.into_body(), 64 << 10)
        .await
        .map_err(|e| ApiError::bad_request(format!("Failed to read the request body: {e}")))?;
    let body = body_json(Ok::<_, BytesRejection>(bytes))?;
    let Some(to) = body.get("to").and_then(Value::as_str) else {
        return Err(ApiError::bad_request(
            "Give the target node: {\"to\": \"<node id>\"}.",
        ));
    };
    let Some(peer) = c.serving_peer(to) else {
        return Err(ApiError::bad_request(format!(
            "No live node {to:?} takes tenants (see /_strata/api/nodes)."
        )));
    };
    let pause = c.move_tenant(&app, &id, &peer).await?;
    Ok(
        Json(json!({"id": id, "from": c.id(), "to": peer.id, "pauseMs": pause.as_millis() as u64}))
            .into_response(),
    )
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
