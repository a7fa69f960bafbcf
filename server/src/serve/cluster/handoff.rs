//! Planned moves and drains: a tenant handed from this node to another
//! with no failed request.
//!
//! [`Cluster::move_tenant`] (the admin API's `move`, and every tenant of a
//! drain):
//! 1. pin the tenant to the target: from now on requests for it that reach
//!    this node wait (`route.rs`, bounded by `--drain-timeout`) instead of
//!    being served; forwarded ones then go back to their sender (421), the
//!    others on to the target;
//! 2. evict it here: in-flight requests finish, the last commits upload,
//!    the lease is released;
//! 3. ask the target to load it (`POST /_strata/api/tenants/<id>/load`
//!    with the cluster key): it claims the lease and opens lazily;
//! 4. unpin: the location cache says the target.
//!
//! [`Cluster::drain`] marks the node `draining` in its heartbeat (no node
//! places new tenants on it) and moves every loaded tenant to the node that
//! placement picks among the others. SIGTERM on a node with live peers
//! drains before it stops.

use super::{Cluster, Peer, placement};
use crate::serve::App;
use crate::serve::errors::{ApiError, ApiResult};
use axum::http::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_vfs::format::node::NodeState;

/// Moves of one drain running at once.
const MOVES_AT_ONCE: usize = 4;

/// What a drain did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Drained {
    pub moved: Vec<Moved>,
    pub failed: Vec<(String, String)>,
}

#[derive(Debug, serde::Serialize)]
pub struct Moved {
    pub tenant: String,
    pub to: String,
    #[serde(rename = "pauseMs")]
    pub pause_ms: u64,
}

impl Cluster {
    /// The live node `id` that takes tenants: as the view has it, else as
    /// its heartbeat in the bucket says now (the view is up to ttl/2 old,
    /// so on a slow bucket it can show a live node's beat as stale).
    /// Blocking when it reads.
    pub fn serving_peer(&self, id: &str) -> ApiResult<Option<Peer>> {
        if let Some(p) = self.candidates().into_iter().find(|p| p.id == id) {
            return Ok(Some(p));
        }
        if id == self.id() {
            return Ok(None);
        }
        Ok(strata_vfs::engine::node::read(&self.store, id)?
            .filter(|h| h.state == NodeState::Serving && h.alive_at(strata_vfs::Millis::now()))
            .map(|h| Peer {
                id: h.node,
                advertise: h.advertise,
            }))
    }

    /// Hand `tenant`, loaded here, to `to` (see the module). Returns the
    /// pause: how long its requests waited.
    pub async fn move_tenant(
        self: &Arc<Self>,
        app: &App,
        tenant: &str,
        to: &Peer,
    ) -> ApiResult<Duration> {
        if to.id == self.id() {
            return Err(ApiError::bad_request("The tenant is already on this node."));
        }
        if !app.registry.is_loaded(tenant) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Tenant {tenant} is not loaded on node {}.", self.id()),
            ));
        }
        let start = Instant::now();
        self.pins.lock().insert(tenant.to_string());
        let result = async {
            app.registry.evict(tenant).await?;
            self.forwarder
                .admin_post(
                    &to.advertise,
                    &format!("/_strata/api/tenants/{tenant}/load"),
                )
                .await
        }
        .await;
        self.pins.lock().remove(tenant);
        match result {
            Ok(()) => {
                self.locations.insert(tenant.to_string(), to.clone());
                let pause = start.elapsed();
                tracing::info!(tenant, to = %to.id, pause_ms = pause.as_millis() as u64, "tenant moved");
                Ok(pause)
            }
            Err(e) => {
                self.forget(tenant);
                tracing::warn!(tenant, to = %to.id, error = %e, "move failed; the tenant loads where its next request lands");
                Err(e)
            }
        }
    }

    /// Take no new tenants and move every loaded one to another node.
    pub async fn drain(self: &Arc<Self>, app: &App) -> ApiResult<Drained> {
        // The targets from the heartbeats as they are now (see `serving_peer`).
        let c = self.clone();
        if let Err(e) = crate::serve::tenants::blocking(move || Ok(c.refresh()?)).await {
            tracing::warn!(error = %e, "could not read the peers' heartbeats; using the last view");
        }
        let others: Vec<Peer> = self
            .candidates()
            .into_iter()
            .filter(|p| p.id != self.id())
            .collect();
        if others.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "No other live node to hand the tenants to.",
            ));
        }
        self.set_state(NodeState::Draining).await?;
        let ids = app.registry.loaded_ids();
        let slots = Arc::new(tokio::sync::Semaphore::new(MOVES_AT_ONCE));
        let mut tasks = Vec::new();
        for id in ids {
            let Some(to) = placement::pick(&id, others.iter().map(|p| p.id.as_str()))
                .and_then(|n| others.iter().find(|p| p.id == n))
                .cloned()
            else {
                continue;
            };
            let (c, app, slots) = (self.clone(), app.clone(), slots.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire_owned().await;
                let r = c.move_tenant(&app, &id, &to).await;
                (id, to.id, r)
            }));
        }
        let mut out = Drained::default();
        for t in tasks {
            match t.await {
                Ok((tenant, to, Ok(pause))) => out.moved.push(Moved {
                    tenant,
                    to,
                    pause_ms: pause.as_millis() as u64,
                }),
                Ok((tenant, _, Err(e))) => out.failed.push((tenant, e.to_string())),
                Err(e) => out.failed.push(("?".into(), e.to_string())),
            }
        }
        Ok(out)
    }

    /// Say `state` in a beat now. Blocking work off the runtime.
    async fn set_state(self: &Arc<Self>, state: NodeState) -> ApiResult<()> {
        let node = self.node.clone();
        crate::serve::tenants::blocking(move || Ok(node.set_state(state)?)).await
    }
}
