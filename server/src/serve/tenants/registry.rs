//! The registry: which tenants are loaded on this node, loading on first
//! request, LRU and idle eviction with draining.

use super::lifecycle::read_meta;
use super::tenant::{AUX_DB, DATA_DB, Guard, Tenant, open_tenant};
use super::{Config, blocking, check_tenant_id};
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::files::FileStore;
use crate::serve::metrics::{Metrics, Phase, Phases};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use strata_vfs::bucket::Store;
use strata_vfs::format::keys::DbKeys;

pub struct Registry {
    pub cfg: Config,
    pub store: Store,
    /// The tenants' files (`file` fields) and their cache.
    pub files: Arc<FileStore>,
    pub metrics: Arc<Metrics>,
    pub(super) map: Mutex<HashMap<String, Arc<Tenant>>>,
    /// One lock per tenant being loaded (or restored), so that a tenant is
    /// never opened twice while different tenants load in parallel.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(super) domains: Mutex<HashMap<String, String>>,
    start: Instant,
    /// Connections open, every tenant and database (a gauge in /metrics).
    pub connections: Arc<AtomicI64>,
    /// Closes running at once. A close is mostly disk and bucket writes
    /// (the final upload); unbounded, hundreds of them at once after a
    /// burst of loads slowed the loads themselves (the requests waiting).
    closing: tokio::sync::Semaphore,
    /// Notified when an eviction ends.
    evicted: tokio::sync::Notify,
}

/// Closes at once, at most (see `Registry::closing`).
const CLOSES_AT_ONCE: usize = 4;
/// Tenants waiting to be closed before a new load waits (`room_to_load`).
const CLOSE_BACKLOG: usize = 4 * CLOSES_AT_ONCE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Ready,
    Wait,
    Missing,
}

impl Registry {
    pub fn new(cfg: Config, store: Store, metrics: Arc<Metrics>) -> Registry {
        Registry {
            files: Arc::new(FileStore::new(store.clone(), cfg.file_cache)),
            cfg,
            store,
            metrics,
            map: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            domains: Mutex::new(HashMap::new()),
            start: Instant::now(),
            connections: Arc::default(),
            closing: tokio::sync::Semaphore::new(CLOSES_AT_ONCE),
            evicted: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn try_get(&self, id: &str) -> (Lookup, Option<Guard>) {
        let map = self.map.lock();
        match map.get(id) {
            Some(t) if !t.evicting.load(Ordering::Acquire) => {
                t.inflight.fetch_add(1, Ordering::AcqRel);
                t.last_used.store(self.now_ms(), Ordering::Relaxed);
                (Lookup::Ready, Some(Guard::new(t.clone())))
            }
            Some(_) => (Lookup::Wait, None),
            None => (Lookup::Missing, None),
        }
    }

    /// Wait while the tenants being closed are more than the close slots
    /// can take soon: loads must not outrun evictions, or the LRU bound
    /// (and the memory it stands for) would not hold. The wait shows in
    /// the first request's latency.
    async fn room_to_load(&self, deadline: Instant) -> ApiResult<()> {
        loop {
            let closing = self
                .map
                .lock()
                .values()
                .filter(|t| t.evicting.load(Ordering::Acquire))
                .count();
            if closing < CLOSE_BACKLOG {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ApiError::unavailable(
                    "The node is unloading other tenants, retry.",
                ));
            }
            let evicted = self.evicted.notified();
            let _ = tokio::time::timeout(Duration::from_millis(20), evicted).await;
        }
    }

    /// Hold `id`'s load lock: no load of `id` starts while it is held.
    pub(super) async fn load_lock(&self, id: &str) -> LoadGuard<'_> {
        let lock = self
            .loading
            .lock()
            .entry(id.to_string())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        LoadGuard {
            reg: self,
            id: id.to_string(),
            lock,
            _guard: guard,
        }
    }

    pub fn is_loaded(&self, id: &str) -> bool {
        self.map.lock().contains_key(id)
    }

    pub fn loaded_count(&self) -> usize {
        self.map.lock().len()
    }

    /// The tenants loaded and not on their way out.
    pub fn loaded_ids(&self) -> Vec<String> {
        self.map
            .lock()
            .values()
            .filter(|t| !t.evicting.load(Ordering::Acquire))
            .map(|t| t.id.clone())
            .collect()
    }

    /// Shutdown: end every realtime stream of every loaded tenant, and any
    /// opened from now on (they would hold the graceful drain until their
    /// idle timeout).
    pub fn close_realtime(&self) {
        crate::serve::realtime::begin_shutdown();
        for t in self.map.lock().values() {
            t.realtime.close_all();
        }
    }

    /// The tenant, loading it from the bucket if needed.
    pub async fn acquire(self: &Arc<Self>, id: &str) -> ApiResult<Guard> {
        check_tenant_id(id)?;
        let deadline = Instant::now() + self.cfg.drain_timeout;
        loop {
            match self.try_get(id) {
                (Lookup::Ready, Some(g)) => return Ok(g),
                (Lookup::Missing, _) => {
                    let _l = self.load_lock(id).await;
                    match self.try_get(id) {
                        (Lookup::Ready, Some(g)) => return Ok(g),
                        (Lookup::Wait, _) => {}
                        _ => {
                            self.room_to_load(deadline).await?;
                            let files = self.files.tenant(id);
                            let (cfg, store, tid, gauge) = (
                                self.cfg.clone(),
                                self.store.clone(),
                                id.to_string(),
                                self.connections.clone(),
                            );
                            let (t, phases) = blocking(move || {
                                let mut phases = Phases::default();
                                let (meta, _) = read_meta(&store, &tid)?;
                                if meta.deleted.is_some() {
                                    return Err(ApiError::not_found());
                                }
                                phases.mark(Phase::Metadata);
                                Ok((open_tenant(&cfg, &tid, &gauge, files, &mut phases)?, phases))
                            })
                            .await?;
                            self.metrics.phases(&phases);
                            let g = self.insert(t);
                            self.metrics.loads.inc();
                            self.enforce_max(id);
                            return Ok(g);
                        }
                    }
                }
                _ => {}
            }
            // Evicting: wait for the close to finish, then load again.
            if Instant::now() > deadline {
                return Err(ApiError::unavailable(
                    "The tenant is being unloaded, retry.",
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn insert(&self, t: Tenant) -> Guard {
        let t = Arc::new(t);
        t.inflight.fetch_add(1, Ordering::AcqRel);
        t.last_used.store(self.now_ms(), Ordering::Relaxed);
        let mut map = self.map.lock();
        map.insert(t.id.clone(), t.clone());
        self.metrics.loaded.set(map.len() as i64);
        Guard::new(t)
    }

    /// Over `--max-tenants`: evict the least recently used idle tenants.
    fn enforce_max(self: &Arc<Self>, keep: &str) {
        let victims: Vec<String> = {
            let map = self.map.lock();
            // Tenants already on their way out do not count.
            let staying = map
                .values()
                .filter(|t| !t.evicting.load(Ordering::Acquire))
                .count();
            let over = staying.saturating_sub(self.cfg.max_tenants);
            let mut idle: Vec<_> = map
                .values()
                .filter(|t| t.id != keep && !t.evicting.load(Ordering::Acquire))
                .map(|t| (t.last_used.load(Ordering::Relaxed), t.id.clone()))
                .collect();
            idle.sort();
            idle.into_iter().take(over).map(|(_, id)| id).collect()
        };
        for id in victims {
            let reg = self.clone();
            tokio::spawn(async move {
                if let Err(e) = reg.evict(&id).await {
                    tracing::warn!(tenant = %id, error = %e, "LRU eviction failed");
                }
            });
        }
    }

    /// Background upkeep of loaded tenants: request logs that waited long
    /// enough are written, readers unused for `reader_idle` are closed.
    pub async fn maintain(self: &Arc<Self>) {
        let loaded: Vec<Arc<Tenant>> = self.map.lock().values().cloned().collect();
        for t in &loaded {
            if !t.evicting.load(Ordering::Acquire) {
                t.flush_logs_due();
            }
        }
        let idle = self.cfg.reader_idle;
        let closed = blocking(move || {
            let closed = loaded
                .iter()
                .map(|t| t.data.shrink(idle) + t.aux_if_open().map_or(0, |a| a.shrink(idle)))
                .sum::<usize>();
            release_freed_memory();
            Ok(closed)
        })
        .await
        .unwrap_or(0);
        if closed > 0 {
            tracing::debug!(closed, "idle readers closed");
        }
    }

    /// Evict tenants idle for longer than `--idle-ttl`.
    pub async fn sweep_idle(self: &Arc<Self>) {
        let ttl = self.cfg.idle_ttl.as_millis() as u64;
        let now = self.now_ms();
        let idle: Vec<String> = self
            .map
            .lock()
            .values()
            .filter(|t| {
                t.inflight.load(Ordering::Acquire) == 0
                    && now.saturating_sub(t.last_used.load(Ordering::Relaxed)) >= ttl
            })
            .map(|t| t.id.clone())
            .collect();
        for id in idle {
            if let Err(e) = self.evict(&id).await {
                tracing::warn!(tenant = %id, error = %e, "idle eviction failed");
            }
        }
    }

    /// Mark evicting, drain in-flight requests (bounded), flush, close.
    /// `Ok(false)` if the tenant was not loaded.
    pub async fn evict(self: &Arc<Self>, id: &str) -> ApiResult<bool> {
        let t = {
            let map = self.map.lock();
            match map.get(id) {
                Some(t) if !t.evicting.swap(true, Ordering::AcqRel) => t.clone(),
                _ => return Ok(false),
            }
        };
        self.close_marked(t).await.map(|_| true)
    }

    /// Drain and close `t`, already marked evicting by the caller.
    async fn close_marked(self: &Arc<Self>, t: Arc<Tenant>) -> ApiResult<()> {
        let id = t.id.clone();
        let id = id.as_str();
        // Realtime streams hold guards: they end first (the SDK reconnects).
        t.realtime.close_all();
        let mut phases = Phases::default();
        let deadline = Instant::now() + self.cfg.drain_timeout;
        while t.inflight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        phases.mark(Phase::Drain);
        let _slot = self.closing.acquire().await;
        phases.mark(Phase::Queue);
        let closing = t.clone();
        let reg = self.clone();
        // Still marked evicting here, so no load of this tenant can start
        // while its files go.
        let wait = self.cfg.drain_timeout;
        let result = blocking(move || {
            closing.close(wait)?;
            phases.mark(Phase::Close);
            if reg.cfg.drop_local_on_evict {
                reg.drop_local(&closing.id)?;
                phases.mark(Phase::DropLocal);
            }
            Ok(phases)
        })
        .await;
        if let Ok(p) = &result {
            self.metrics.phases(p);
        }
        // Counted before it shows as evicted, so a reader of both agrees.
        self.metrics.evictions.inc();
        {
            let mut map = self.map.lock();
            map.remove(id);
            self.metrics.loaded.set(map.len() as i64);
        }
        self.evicted.notify_waiters();
        tracing::info!(tenant = %id, "evicted");
        result.map(|_| ())
    }

    /// Remove a closed tenant's local directory if the bucket has every
    /// commit of both databases; otherwise keep it (it uploads at the next
    /// open). Blocking.
    fn drop_local(&self, id: &str) -> ApiResult<()> {
        let dir = self.cfg.data_dir.join(id);
        for db in [DATA_DB, AUX_DB] {
            let keys = DbKeys::new(id, db)?;
            let st = strata_vfs::engine::status::local_status(
                &dir.join(db),
                self.store.as_ref(),
                &keys,
            )?;
            if st.unreplicated() > 0 {
                tracing::warn!(tenant = %id, db, unreplicated = st.unreplicated(), "local copy kept: not all of it is in the bucket");
                return Ok(());
            }
        }
        std::fs::remove_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("remove {}: {e}", dir.display())))?;
        tracing::info!(tenant = %id, "local copy dropped");
        Ok(())
    }

    /// This node may have lost any of its leases (a lapse, see
    /// `serve::cluster`): take every tenant out of service now, so that no
    /// request is served from them, and close them in the background (a
    /// close whose lease was taken finds itself fenced and keeps what it
    /// could not upload in the local spool). The next request routes again.
    pub fn drop_all(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        // Marked here, before the node serves again: no request gets them.
        let marked: Vec<Arc<Tenant>> = self
            .map
            .lock()
            .values()
            .filter(|t| !t.evicting.swap(true, Ordering::AcqRel))
            .cloned()
            .collect();
        tracing::warn!(tenants = marked.len(), "dropping every loaded tenant");
        for t in marked {
            let reg = self.clone();
            rt.spawn(async move {
                let id = t.id.clone();
                if let Err(e) = reg.close_marked(t).await {
                    tracing::warn!(tenant = %id, error = %e, "close after a lapse failed");
                }
            });
        }
    }

    /// Evict every tenant (shutdown).
    pub async fn close_all(self: &Arc<Self>) -> usize {
        let ids: Vec<String> = self.map.lock().keys().cloned().collect();
        let mut failed = 0;
        for id in ids {
            if let Err(e) = self.evict(&id).await {
                tracing::error!(tenant = %id, error = %e, "flush at shutdown failed");
                failed += 1;
            }
        }
        failed
    }
}

/// Hand memory that malloc keeps after a burst (freed segment and spool
/// buffers) back to the system. glibc only; a few ms at most.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A held load lock; the last holder removes the tenant's entry.
pub(super) struct LoadGuard<'a> {
    reg: &'a Registry,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.reg.loading.lock();
        // Ours, the map's and the guard's: nobody else waits for it.
        if Arc::strong_count(&self.lock) <= 3 {
            map.remove(&self.id);
        }
    }
}
