//! Many nodes on one bucket. The bucket's conditional writes are the only
//! coordination: no consensus of our own, no gossip.
//!
//! - Membership: this node's heartbeat (`strata_vfs::engine::node`), and
//!   the [`View`] of every node's, refreshed every `--node-ttl / 2` (a GET
//!   per known node; a LIST one time in ten, for nodes that joined).
//! - Ownership: a tenant belongs to the node whose lease is on its
//!   `data.db` (bound to that node's heartbeat). A node claims the lease when
//!   it loads the tenant and releases it when it evicts it.
//! - [`route`]: where a request of a tenant is served: here if this node
//!   holds (or just loaded) it, at the holder if another live node holds it,
//!   else at the node that [`placement`] picks among the live ones.
//! - [`forward`]: one hop to that node, streamed both ways.
//! - [`handoff`]: planned moves of a tenant, and drains of a node.
//!
//! Fencing stays the engine's: a node that lost a lease cannot add history
//! (its manifest put fails). A node that notices it went without a beat for
//! longer than its ttl (paused, cut off) drops every tenant it had loaded
//! before it serves again (`on_lapse`), so it never serves stale reads of a
//! tenant that moved.

pub mod forward;
pub mod handoff;
pub mod placement;
pub mod route;

use crate::serve::errors::{ApiError, ApiResult};
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_vfs::bucket::Store;
use strata_vfs::engine::node::{self, Node, NodeConfig};
use strata_vfs::format::node::{Heartbeat, NodeState};
use strata_vfs::types::Millis;

pub use route::Route;

/// A view refresh LISTs the heartbeats one time in this many (the others
/// GET the known ones).
const LIST_EVERY: u64 = 10;

/// The cluster's shared key: `_strata/cluster.json`, made by the first node.
const CLUSTER_KEY: &str = "_strata/cluster.json";

pub struct Cluster {
    pub node: Arc<Node>,
    store: Store,
    view: RwLock<View>,
    /// Tenant → the node last seen holding it (saves the manifest GET of
    /// each forwarded request; dropped when a forward finds it wrong).
    locations: moka::sync::Cache<String, Peer>,
    pub forwarder: forward::Forwarder,
    /// Tenants being handed to another node (`handoff.rs`): routed there.
    pins: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// After a lapse, refuse every request until then: requests that
    /// queued while the node was paused were given up by whoever sent them
    /// (and may have been sent elsewhere since).
    quarantine: parking_lot::Mutex<Option<Instant>>,
    refreshes: std::sync::atomic::AtomicU64,
}

/// A node as a forward target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub advertise: String,
}

/// Every node's heartbeat as last read.
#[derive(Debug, Clone)]
pub struct View {
    pub nodes: Vec<Heartbeat>,
    pub read: Instant,
}

impl Cluster {
    /// Join the cluster in `store` as `cfg.id`. Blocking.
    pub fn join(store: Store, cfg: NodeConfig) -> strata_vfs::Result<Arc<Cluster>> {
        let key = cluster_key(&store)?;
        let forwarder = forward::Forwarder::new(&key, &cfg.id);
        let node = Node::start(store.clone(), cfg)?;
        let nodes = node::list(&store).unwrap_or_default();
        Ok(Arc::new(Cluster {
            node,
            store,
            view: RwLock::new(View {
                nodes,
                read: Instant::now(),
            }),
            locations: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            forwarder,
            quarantine: parking_lot::Mutex::new(None),
            pins: Default::default(),
            refreshes: Default::default(),
        }))
    }

    pub fn id(&self) -> &str {
        self.node.id()
    }

    /// Re-read the heartbeats: a GET per known node, and every
    /// [`LIST_EVERY`]th time a LIST to find nodes that joined (LIST costs
    /// as much as a PUT on S3, a GET a twelfth of it). Blocking.
    pub fn refresh(&self) -> strata_vfs::Result<()> {
        let n = self
            .refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let known: Vec<String> = self
            .view
            .read()
            .nodes
            .iter()
            .map(|h| h.node.clone())
            .collect();
        let nodes = if n.is_multiple_of(LIST_EVERY) || known.is_empty() {
            node::list(&self.store)?
        } else {
            let mut out = Vec::with_capacity(known.len());
            for id in &known {
                if let Some(h) = node::read(&self.store, id)? {
                    out.push(h);
                }
            }
            out
        };
        *self.view.write() = View {
            nodes,
            read: Instant::now(),
        };
        Ok(())
    }

    pub fn view(&self) -> View {
        self.view.read().clone()
    }

    /// The nodes alive now that take tenants, this one always among them
    /// (while it may serve).
    fn candidates(&self) -> Vec<Peer> {
        let now = Millis::now();
        let mut out: Vec<Peer> = self
            .view
            .read()
            .nodes
            .iter()
            .filter(|h| h.state == NodeState::Serving && h.alive_at(now) && h.node != self.id())
            .map(|h| Peer {
                id: h.node.clone(),
                advertise: h.advertise.clone(),
            })
            .collect();
        out.push(self.me());
        out
    }

    pub fn me(&self) -> Peer {
        Peer {
            id: self.id().to_string(),
            advertise: self.node.config().advertise.clone(),
        }
    }

    /// The live node `id` as the view has it, incarnation checked.
    fn live_in_view(&self, id: &str, incarnation: &str) -> Option<Peer> {
        let now = Millis::now();
        self.view
            .read()
            .nodes
            .iter()
            .find(|h| h.node == id && h.incarnation == incarnation && h.alive_at(now))
            .map(|h| Peer {
                id: h.node.clone(),
                advertise: h.advertise.clone(),
            })
    }

    /// The node `id`, read from the bucket now, if it is alive as
    /// `incarnation`. Blocking.
    fn live_in_bucket(&self, id: &str, incarnation: &str) -> ApiResult<Option<Peer>> {
        Ok(node::read(&self.store, id)?
            .filter(|h| h.incarnation == incarnation && h.alive_at(Millis::now()))
            .map(|h| Peer {
                id: h.node,
                advertise: h.advertise,
            }))
    }

    /// Who holds `tenant` as far as this node knows without asking the
    /// bucket: itself if loaded here, else where it last forwarded it.
    pub fn known_holder(&self, tenant: &str, loaded_here: bool) -> Option<String> {
        if loaded_here {
            return Some(self.id().to_string());
        }
        self.locations.get(tenant).map(|p| p.id)
    }

    /// Forget where `tenant` was seen.
    pub fn forget(&self, tenant: &str) {
        self.locations.invalidate(tenant);
    }

    /// May this node serve now (see `Node::check`)? A 503 the client
    /// retries otherwise.
    pub fn check(&self) -> ApiResult<()> {
        if self
            .quarantine
            .lock()
            .is_some_and(|until| Instant::now() < until)
        {
            return Err(ApiError::unavailable(
                "This node is recovering from a pause and hands its tenants over, retry.",
            ));
        }
        self.node
            .check()
            .map_err(|e| ApiError::unavailable(format!("This node is not serving: {e}")))
    }

    /// A lapse: refuse requests for one ttl (see `quarantine`).
    pub fn lapsed(&self) {
        *self.quarantine.lock() = Some(Instant::now() + self.node.config().ttl);
    }

    /// Has node `id` gone stale, as a view read within its ttl shows? An
    /// old view (the bucket unreachable), or one without the node (it joined
    /// since), says nothing.
    pub fn seen_dead(&self, id: &str) -> bool {
        let v = self.view.read();
        if v.read.elapsed() >= self.node.config().ttl {
            return false;
        }
        let now = Millis::now();
        v.nodes
            .iter()
            .find(|h| h.node == id)
            .is_some_and(|h| !h.alive_at(now))
    }
}

/// The cluster's key, made once with a create-only put. Blocking.
fn cluster_key(store: &Store) -> strata_vfs::Result<String> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct ClusterFile {
        format: u32,
        key: String,
    }
    let read = |store: &Store| -> strata_vfs::Result<Option<String>> {
        match store.get(CLUSTER_KEY) {
            Ok(obj) => serde_json::from_slice::<ClusterFile>(&obj.data)
                .map(|c| Some(c.key))
                .map_err(|e| strata_vfs::Error::corrupt(format!("{CLUSTER_KEY}: {e}"))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    };
    if let Some(k) = read(store)? {
        return Ok(k);
    }
    let file = ClusterFile {
        format: 1,
        key: crate::serve::schema::new_secret(),
    };
    let body = serde_json::to_vec_pretty(&file).unwrap_or_default();
    match store.put_if_absent(CLUSTER_KEY, body.into()) {
        Ok(_) => Ok(file.key),
        Err(e) if e.kind() == strata_vfs::ErrorKind::Conflict => read(store)?
            .ok_or_else(|| strata_vfs::Error::corrupt(format!("{CLUSTER_KEY} vanished"))),
        Err(e) => Err(e),
    }
}

/// This machine's host name, as a node id may spell it.
fn hostname() -> String {
    let name: String = node::this_host()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(50)
        .collect();
    if name.is_empty() || !name.as_bytes()[0].is_ascii_alphanumeric() {
        "node".into()
    } else {
        name
    }
}

/// `<hostname>-<port>`: unique per listening process on a machine.
pub fn default_node_id(addr: std::net::SocketAddr) -> String {
    format!("{}-{}", hostname(), addr.port())
}

/// The listen address, or the host name for a wildcard one.
pub fn default_advertise(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://{}:{}", hostname(), addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// Keep the view of the other nodes fresh (every half ttl) and report the
/// node's state in its beat and in `/metrics`. Runs until aborted.
pub async fn watch(app: crate::serve::App) {
    let c = app.cluster.clone();
    let every = (c.node.config().ttl / 2).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        c.node.set_tenants(app.registry.loaded_count() as u64);
        let refresh = c.clone();
        match crate::serve::tenants::blocking(move || Ok(refresh.refresh()?)).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "could not read the other nodes' heartbeats"),
        }
        let now = Millis::now();
        let live = c.view().nodes.iter().filter(|h| h.alive_at(now)).count();
        app.metrics.nodes_live.set(live.max(1) as i64);
        app.metrics
            .heartbeat_age
            .set(c.node.beat_age().as_secs_f64());
        app.metrics.lapses.set(c.node.counters().0 as i64);
    }
}
