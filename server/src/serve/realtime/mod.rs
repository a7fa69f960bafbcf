//! Realtime: PocketBase's `/api/realtime` (server-sent events).
//!
//! - [`sse`]: `GET /api/realtime` (the event stream, `PB_CONNECT` first)
//!   and `POST /api/realtime` (set a client's subscriptions, bind its auth);
//! - [`topics`]: subscription strings (`coll/*`, `coll/ID`, `?options=`)
//!   and their limits;
//! - [`deliver`]: a record change turned into each subscriber's message:
//!   its list or view rule checked with its auth, the record serialized
//!   with its `expand`/`fields`.
//!
//! Each loaded tenant has one [`Hub`] (in [`Tenant`]): its connected
//! clients, by client id. The hub is the one seam between record writes and
//! subscribers: writers hand it a [`Change`] ([`Hub::publish`]), streams
//! come and go through [`Hub::connect`]. A cluster delivers across nodes by
//! replacing it.
//!
//! Per client: its id, bound auth token, subscriptions and a bounded
//! channel; no task of its own (the response body's stream reads the
//! channel). A client whose channel is full is dropped (the SDK
//! reconnects): a slow reader never blocks a writer.
//!
//! Loading: a stream holds its request's [`Guard`], so a tenant with
//! connected clients is never idle-evicted. Any other eviction (LRU,
//! delete) first calls [`Hub::close_all`]: every stream ends, the guards
//! go, the drain finishes, and the SDK reconnects (loading the tenant
//! again).

pub mod deliver;
pub mod sse;
pub mod topics;

use crate::serve::tenants::Guard;
use parking_lot::Mutex;
use prometheus::IntGauge;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::sync::mpsc;
use topics::Subscription;

pub use deliver::{Action, Change, prepare};

/// Messages waiting for one client at most; more and it is dropped.
pub const CLIENT_QUEUE: usize = 64;

/// Connected realtime clients, every tenant of this node (registered in
/// [`crate::serve::metrics::Metrics`]).
pub static CLIENTS: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new("realtime_clients", "realtime (SSE) clients connected").expect("static")
});

/// Set once the node shuts down: streams opened after it end at once.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// The node is shutting down: no stream may outlive the graceful drain
/// (which would otherwise wait for every idle client's timeout). Then call
/// [`Hub::close_all`] on every loaded tenant.
pub fn begin_shutdown() {
    SHUTTING_DOWN.store(true, Ordering::Release);
}

/// One SSE message: `event:<name>` and `data:<data>`.
#[derive(Debug, Clone)]
pub struct Message {
    pub name: String,
    pub data: String,
}

/// A connected client as the hub keeps it.
pub struct Client {
    pub id: String,
    /// Taken when the client leaves the hub: the stream then ends.
    tx: Mutex<Option<mpsc::Sender<Message>>>,
    pub state: Mutex<ClientState>,
}

#[derive(Default)]
pub struct ClientState {
    /// The `Authorization` header bound at the last subscribe, and the
    /// auth record it resolved to (`collectionId/id`), if any.
    pub token: Option<String>,
    pub auth_key: Option<String>,
    pub subs: Vec<Subscription>,
}

#[derive(Default)]
pub struct Hub {
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

/// A stream's registration: leaves the hub when the stream goes.
pub struct Connection {
    pub client: Arc<Client>,
    pub rx: mpsc::Receiver<Message>,
    guard: Arc<Guard>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.guard.realtime.remove(&self.client.id);
    }
}

impl Hub {
    /// Register a new client; the stream holds `guard` (the tenant stays
    /// loaded while it is connected).
    pub fn connect(guard: Arc<Guard>) -> Connection {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let client = Arc::new(Client {
            id: new_client_id(),
            tx: Mutex::new(Some(tx)),
            state: Mutex::default(),
        });
        {
            // Checked under the lock `close_all` takes: a client is either
            // in the hub when it closes, or never gets in.
            let mut clients = guard.realtime.clients.lock();
            if SHUTTING_DOWN.load(Ordering::Acquire) {
                client.tx.lock().take();
            } else {
                clients.insert(client.id.clone(), client.clone());
                CLIENTS.inc();
            }
        }
        tracing::debug!(tenant = %guard.id, client = %client.id, "realtime client connected");
        Connection { client, rx, guard }
    }

    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.clients.lock().get(id).cloned()
    }

    fn remove(&self, id: &str) {
        let gone = self.clients.lock().remove(id);
        if let Some(c) = gone {
            c.tx.lock().take();
            CLIENTS.dec();
        }
    }

    /// Clients now, for [`deliver`] (a snapshot: the lock is not held
    /// while rules run).
    pub fn clients(&self) -> Vec<Arc<Client>> {
        self.clients.lock().values().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.lock().is_empty()
    }

    /// Send a committed change to its subscribers. Never waits: a client
    /// whose queue is full is disconnected.
    pub fn publish(&self, change: Change) {
        for (client, msg) in change.messages {
            let sent = match &*client.tx.lock() {
                Some(tx) => tx.try_send(msg).is_ok(),
                None => true,
            };
            if !sent {
                tracing::info!(client = %client.id, "realtime client too slow, disconnected");
                self.remove(&client.id);
            }
        }
    }

    /// Disconnect every client (the tenant is being evicted): their
    /// streams end and the SDK reconnects.
    pub fn close_all(&self) {
        let gone: Vec<_> = self.clients.lock().drain().collect();
        for (_, c) in &gone {
            c.tx.lock().take();
        }
        CLIENTS.sub(gone.len() as i64);
    }
}

/// A client id as PocketBase makes them: 40 characters of `[a-zA-Z0-9]`.
fn new_client_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
