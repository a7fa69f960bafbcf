//! Where a tenant's request is served, and getting it there.
//!
//! [`dispatch`] runs before a tenant request's handler: it either hands the
//! request back with the tenant loaded here ([`Dispatch::Serve`]), or
//! answers it by forwarding ([`Dispatch::Done`]). The decision
//! ([`Cluster::route`]):
//! 1. loaded here, or forwarded here by a node (one hop at most): here;
//! 2. seen held by a live node: there (the location cache, else the
//!    `data.db` manifest's lease and that node's heartbeat);
//! 3. held by nobody (no lease, or its node's heartbeat is stale or
//!    stopped): the node that placement picks among the live ones.
//!
//! A holder that cannot be reached (it just died, its heartbeat is not
//! stale yet) makes the request wait, re-reading the lease, until its
//! heartbeat goes stale and the tenant is placed again (bounded by
//! `--drain-timeout`); the client sees latency, not an error.

use super::forward::{self, CLIENT_IP, FORWARD_KEY, FORWARDED_BY, ForwardError, NOT_HERE};
use super::{Cluster, Peer, placement};
use crate::serve::App;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::tenants::{DATA_DB, Guard, blocking};
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_vfs::format::keys::DbKeys;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Here,
    There(Peer),
}

pub enum Dispatch {
    /// Serve it here: the tenant is loaded.
    Serve(Request, Guard),
    /// Answered (forwarded, or refused).
    Done(Response),
}

/// How often a request waiting for a dead holder's heartbeat to go stale
/// looks again.
const RECHECK: Duration = Duration::from_millis(100);
/// How often a request waiting for a handoff (pinned here, or a node
/// answered 421) looks again: the new holder claims within milliseconds.
const HANDOFF_RECHECK: Duration = Duration::from_millis(10);

/// 421 Misdirected Request with [`NOT_HERE`]: the tenant is not served by
/// this node; the node that forwarded the request routes it again.
fn not_here() -> Response {
    let mut r = ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "The tenant is not served by this node, retry.",
    )
    .into_response();
    r.headers_mut()
        .insert(NOT_HERE, axum::http::HeaderValue::from_static("1"));
    r
}

impl Cluster {
    /// Where `tenant` is served now. `fresh`: read the lease and heartbeat
    /// from the bucket, not from the caches.
    pub async fn route(self: &Arc<Self>, app: &App, tenant: &str, fresh: bool) -> ApiResult<Route> {
        if app.registry.is_loaded(tenant) {
            return Ok(Route::Here);
        }
        if !fresh && let Some(p) = self.locations.get(tenant) {
            return Ok(if p.id == self.id() {
                Route::Here
            } else {
                Route::There(p)
            });
        }
        let candidates = self.candidates();
        if candidates.len() == 1 && !fresh {
            // Alone: nothing to look up.
            return Ok(Route::Here);
        }
        let c = self.clone();
        let id = tenant.to_string();
        let holder = blocking(move || c.holder(&id)).await?;
        let route = match holder {
            Some(p) if p.id == self.id() => Route::Here,
            Some(p) => {
                self.locations.insert(tenant.to_string(), p.clone());
                Route::There(p)
            }
            None => {
                let pick = placement::pick(tenant, candidates.iter().map(|p| p.id.as_str()))
                    .and_then(|id| candidates.iter().find(|p| p.id == id))
                    .cloned()
                    .unwrap_or_else(|| self.me());
                if pick.id == self.id() {
                    Route::Here
                } else {
                    Route::There(pick)
                }
            }
        };
        Ok(route)
    }

    /// The live node holding `tenant`'s `data.db` lease, if any. Blocking.
    pub fn holder(&self, tenant: &str) -> ApiResult<Option<Peer>> {
        let keys = DbKeys::new(tenant, DATA_DB)?;
        let m = match strata_vfs::engine::restore::read_manifest(self.store.as_ref(), &keys) {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(n) = m.lease.and_then(|l| l.node) else {
            return Ok(None);
        };
        if self.node.is(&n) {
            return Ok(Some(self.me()));
        }
        match self.live_in_view(&n.id, &n.incarnation) {
            Some(p) => Ok(Some(p)),
            None => self.live_in_bucket(&n.id, &n.incarnation),
        }
    }
}

/// Route a tenant request: serve it here (loading the tenant) or forward
/// it. Without a cluster peer in sight this is the registry's `acquire`.
pub async fn dispatch(app: &App, tenant: &str, mut req: Request) -> Dispatch {
    let cluster = app.cluster.clone();
    if let Err(e) = cluster.check() {
        return Dispatch::Done(e.into_response());
    }
    let from_peer = cluster.forwarder.from_peer(req.headers());
    if from_peer {
        // The client's address, as the first node saw it, for rate limits
        // and logs.
        let ip = req
            .headers()
            .get(&CLIENT_IP)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<IpAddr>().ok());
        if let Some(ip) = ip {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip, 0)));
        }
    }
    // Never seen by handlers, and never believed from a client.
    for h in [&FORWARDED_BY, &CLIENT_IP, &FORWARD_KEY] {
        req.headers_mut().remove(h);
    }
    let deadline = Instant::now() + app.registry.cfg.drain_timeout;
    let mut fresh = false;
    let mut req = Some(req);
    loop {
        // Being handed from here to another node: wait for the handoff to
        // end (the target cannot claim before it), then go there; a
        // forwarded request goes back to its sender, which routes again.
        if cluster.pins.lock().contains(tenant) {
            if !wait_unpinned(&cluster, tenant, deadline).await {
                return Dispatch::Done(
                    ApiError::unavailable("The tenant is being moved between nodes, retry.")
                        .into_response(),
                );
            }
            if from_peer {
                return Dispatch::Done(not_here());
            }
        }
        let route = if from_peer {
            Route::Here
        } else {
            match cluster.route(app, tenant, fresh).await {
                Ok(r) => r,
                Err(e) => return Dispatch::Done(e.into_response()),
            }
        };
        let Some(r) = req.take() else {
            return Dispatch::Done(
                ApiError::unavailable("The request was lost in a retry, retry.").into_response(),
            );
        };
        match route {
            Route::Here => match app.registry.acquire(tenant).await {
                Ok(g) => return Dispatch::Serve(r, g),
                // Another node claimed it first: the node that forwarded
                // this routes again; one that did not goes there.
                Err(ApiError::Held(_)) if from_peer => return Dispatch::Done(not_here()),
                Err(ApiError::Held(why)) if Instant::now() < deadline => {
                    tracing::debug!(tenant, %why, "held elsewhere; routing again");
                    cluster.forget(tenant);
                    fresh = true;
                    req = Some(r);
                    tokio::time::sleep(RECHECK).await;
                }
                Err(e) => return Dispatch::Done(e.into_response()),
            },
            Route::There(peer) => match forward_to(app, &cluster, tenant, &peer, r).await {
                Step::Done(resp) => return Dispatch::Done(resp),
                Step::Again(back, wait) if Instant::now() < deadline => {
                    cluster.forget(tenant);
                    fresh = true;
                    req = Some(back);
                    tokio::time::sleep(wait).await;
                }
                Step::Again(..) => {
                    cluster.forget(tenant);
                    return Dispatch::Done(
                        ApiError::unavailable(
                            "The node holding this tenant did not answer in time, retry.",
                        )
                        .into_response(),
                    );
                }
            },
        }
    }
}

/// Wait (bounded by `deadline`) until `tenant` is no longer pinned here;
/// false if it still is.
async fn wait_unpinned(cluster: &Cluster, tenant: &str, deadline: Instant) -> bool {
    while cluster.pins.lock().contains(tenant) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(HANDOFF_RECHECK).await;
    }
    true
}

/// What one forward came to.
enum Step {
    Done(Response),
    /// Not served there (yet): send the request again after the wait.
    Again(Request, Duration),
}

/// Send `r` to `peer`, giving up when the view shows it stale.
async fn forward_to(app: &App, cluster: &Cluster, tenant: &str, peer: &Peer, r: Request) -> Step {
    let client = r
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let r = match forward::buffer(r).await {
        Ok(r) => r,
        Err(resp) => return Step::Done(resp),
    };
    app.metrics.forwarded.inc();
    let sent = cluster.forwarder.send(&peer.advertise, client, r);
    tokio::pin!(sent);
    // A holder that took the request and then went stale (paused, dead)
    // never answers: stop waiting once the view says so.
    let answer = loop {
        tokio::select! {
            a = &mut sent => break Some(a),
            _ = tokio::time::sleep(RECHECK) => {
                if cluster.seen_dead(&peer.id) {
                    break None;
                }
            }
        }
    };
    let Some(answer) = answer else {
        cluster.forget(tenant);
        tracing::warn!(tenant, node = %peer.id, "the holder went stale while a forwarded request waited");
        return Step::Done(
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "The node holding this tenant stopped answering, retry.",
            )
            .into_response(),
        );
    };
    match answer {
        Ok(resp) => Step::Done(resp),
        // A handoff under way: the new holder claims within milliseconds.
        Err(ForwardError::NotThere {
            retry: Some(back), ..
        }) => Step::Again(*back, HANDOFF_RECHECK),
        Err(ForwardError::Unreachable {
            peer: at,
            reason,
            retry: Some(back),
        }) => {
            tracing::info!(tenant, node = %peer.id, %at, %reason, "holder unreachable; waiting for its heartbeat to go stale");
            Step::Again(*back, RECHECK)
        }
        Err(e) => {
            cluster.forget(tenant);
            Step::Done(
                ApiError::new(StatusCode::BAD_GATEWAY, format!("{e}; retry.")).into_response(),
            )
        }
    }
}
