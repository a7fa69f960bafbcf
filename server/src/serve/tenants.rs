//! The tenant registry: which tenants are loaded on this node, loading on
//! first request, LRU/idle eviction with draining, and the tenant lifecycle
//! objects in the bucket.
//!
//! A loaded tenant is two rusqlite connections through the strata VFS
//! (`data.db`, `auxiliary.db`), opened lazily from the bucket: pages arrive
//! on first read, nothing is downloaded up front. Local files live under
//! `<data-dir>/<tenant>/` and are only a cache.
//!
//! Bucket objects (besides the databases):
//! - `tenants/<id>/metadata.json`: `{id, domain, created, deleted, purgeAfter}`;
//! - `_strata/domains/<domain>`: the tenant id, a claim made with a
//!   conditional put so that two tenants cannot take one domain.

use super::errors::{ApiError, ApiResult};
use super::metrics::Metrics;
use super::schema;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use strata_vfs::bucket::Store;
use strata_vfs::engine::restore::{self, Target};
use strata_vfs::format::keys::{DbKeys, validate_tenant};

pub const DATA_DB: &str = "data.db";
pub const AUX_DB: &str = "auxiliary.db";
const DOMAINS_PREFIX: &str = "_strata/domains/";

#[derive(Debug, Clone)]
pub struct Config {
    /// The bucket URL as the VFS URI parameter takes it.
    pub bucket: String,
    pub data_dir: PathBuf,
    pub max_tenants: usize,
    pub idle_ttl: Duration,
    /// How long eviction waits for in-flight requests, and how long a
    /// request waits for an evicting tenant before it gets 503.
    pub drain_timeout: Duration,
    /// Rows kept in `_logs`.
    pub log_cap: u64,
    /// How long a deleted tenant stays restorable.
    pub delete_grace: Duration,
    /// Delete an evicted tenant's local files once all of it is in the bucket.
    pub drop_local_on_evict: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub id: String,
    #[serde(default)]
    pub domain: Option<String>,
    pub created: String,
    /// Set by a soft delete: the tenant is gone from the API at once.
    #[serde(default)]
    pub deleted: Option<String>,
    /// After this time a purge job may remove `tenants/<id>/`.
    #[serde(default, rename = "purgeAfter")]
    pub purge_after: Option<String>,
}

fn meta_key(id: &str) -> String {
    format!("tenants/{id}/metadata.json")
}

/// A domain as it may appear in a Host header: lowercase, no port.
pub fn normalize_host(host: &str) -> Option<String> {
    let h = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let h = h.to_ascii_lowercase();
    let ok = (1..=253).contains(&h.len())
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !h.starts_with('.')
        && !h.contains("..");
    ok.then_some(h)
}

pub fn check_tenant_id(id: &str) -> ApiResult<()> {
    validate_tenant(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub struct Tenant {
    pub id: String,
    pub secret: String,
    data: Mutex<Option<Connection>>,
    aux: Mutex<Option<Connection>>,
    inflight: AtomicUsize,
    evicting: AtomicBool,
    /// Milliseconds since the registry started.
    last_used: AtomicU64,
    logs_written: AtomicU64,
}

impl Tenant {
    /// Run `f` on `data.db` (blocking: call from a blocking thread).
    pub fn with_data<R>(&self, f: impl FnOnce(&mut Connection) -> ApiResult<R>) -> ApiResult<R> {
        let mut g = self.data.lock();
        let conn = g
            .as_mut()
            .ok_or_else(|| ApiError::unavailable("The tenant is being unloaded, retry."))?;
        f(conn)
    }
    pub fn with_aux<R>(&self, f: impl FnOnce(&mut Connection) -> ApiResult<R>) -> ApiResult<R> {
        let mut g = self.aux.lock();
        let conn = g
            .as_mut()
            .ok_or_else(|| ApiError::unavailable("The tenant is being unloaded, retry."))?;
        f(conn)
    }

    /// Append a request log row; keep at most `cap` rows.
    pub fn log_request(&self, data: serde_json::Value, cap: u64) -> ApiResult<()> {
        let n = self.logs_written.fetch_add(1, Ordering::Relaxed);
        self.with_aux(|c| {
            let t = schema::now();
            c.prepare_cached(
                "INSERT INTO _logs (id, level, message, data, created, updated) VALUES (?1, 0, ?2, ?3, ?4, ?4)",
            )?
            .execute(rusqlite::params![schema::new_id(), data["url"].as_str().unwrap_or(""), data.to_string(), t])?;
            // Trimming costs a scan, so only every 100 rows.
            if n.is_multiple_of(100) {
                c.execute(
                    "DELETE FROM _logs WHERE rowid <= (SELECT rowid FROM _logs ORDER BY rowid DESC LIMIT 1 OFFSET ?1)",
                    [cap as i64],
                )?;
            }
            Ok(())
        })
    }

    /// Upload everything committed so far, then close both databases.
    fn close(&self) -> ApiResult<()> {
        let mut result = Ok(());
        for (name, slot) in [(DATA_DB, &self.data), (AUX_DB, &self.aux)] {
            let mut g = slot.lock();
            if let Some(conn) = g.take() {
                if let Err(e) = conn.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))
                {
                    // The commits stay in the local spool and upload on the next open.
                    tracing::warn!(tenant = %self.id, db = name, error = %e, "final flush failed");
                    result = Err(ApiError::from(e));
                }
                drop(conn);
            }
        }
        result
    }
}

/// A request's hold on a loaded tenant: while it exists, eviction waits.
pub struct Guard(Arc<Tenant>);

impl std::ops::Deref for Guard {
    type Target = Tenant;
    fn deref(&self) -> &Tenant {
        &self.0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Run blocking database work for a request on the blocking pool.
pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> ApiResult<R> + Send + 'static,
) -> ApiResult<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// Run a request's work on the tenant's `data.db`, on the blocking pool.
pub async fn on_data<R: Send + 'static>(
    req: Arc<Guard>,
    f: impl FnOnce(&Tenant, &mut Connection) -> ApiResult<R> + Send + 'static,
) -> ApiResult<R> {
    blocking(move || req.with_data(|conn| f(&req, conn))).await
}

pub struct Registry {
    pub cfg: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    map: Mutex<HashMap<String, Arc<Tenant>>>,
    /// Loads are serialized so that one tenant is never opened twice.
    load_lock: tokio::sync::Mutex<()>,
    domains: Mutex<HashMap<String, String>>,
    start: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Ready,
    Wait,
    Missing,
}

impl Registry {
    pub fn new(cfg: Config, store: Store, metrics: Arc<Metrics>) -> Registry {
        Registry {
            cfg,
            store,
            metrics,
            map: Mutex::new(HashMap::new()),
            load_lock: tokio::sync::Mutex::new(()),
            domains: Mutex::new(HashMap::new()),
            start: Instant::now(),
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
                (Lookup::Ready, Some(Guard(t.clone())))
            }
            Some(_) => (Lookup::Wait, None),
            None => (Lookup::Missing, None),
        }
    }

    pub fn is_loaded(&self, id: &str) -> bool {
        self.map.lock().contains_key(id)
    }

    pub fn loaded_count(&self) -> usize {
        self.map.lock().len()
    }

    /// The tenant, loading it from the bucket if needed.
    pub async fn acquire(self: &Arc<Self>, id: &str) -> ApiResult<Guard> {
        check_tenant_id(id)?;
        let deadline = Instant::now() + self.cfg.drain_timeout;
        loop {
            match self.try_get(id) {
                (Lookup::Ready, Some(g)) => return Ok(g),
                (Lookup::Missing, _) => {
                    let _l = self.load_lock.lock().await;
                    match self.try_get(id) {
                        (Lookup::Ready, Some(g)) => return Ok(g),
                        (Lookup::Wait, _) => {}
                        _ => {
                            let (cfg, store, tid) =
                                (self.cfg.clone(), self.store.clone(), id.to_string());
                            let t = blocking(move || open_tenant(&cfg, &store, &tid)).await?;
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
        Guard(t)
    }

    /// Over `--max-tenants`: evict the least recently used idle tenants.
    fn enforce_max(self: &Arc<Self>, keep: &str) {
        let victims: Vec<String> = {
            let map = self.map.lock();
            let over = map.len().saturating_sub(self.cfg.max_tenants);
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
        let deadline = Instant::now() + self.cfg.drain_timeout;
        while t.inflight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let closing = t.clone();
        let reg = self.clone();
        // Still marked evicting here, so no load of this tenant can start
        // while its files go.
        let result = blocking(move || {
            closing.close()?;
            if reg.cfg.drop_local_on_evict {
                reg.drop_local(&closing.id)?;
            }
            Ok(())
        })
        .await;
        {
            let mut map = self.map.lock();
            map.remove(id);
            self.metrics.loaded.set(map.len() as i64);
        }
        self.metrics.evictions.inc();
        tracing::info!(tenant = %id, "evicted");
        result.map(|()| true)
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

    /// The tenant serving `host`, from the domain claims in the bucket.
    pub async fn tenant_for_host(&self, host: &str) -> ApiResult<String> {
        let host = normalize_host(host).ok_or_else(ApiError::not_found)?;
        if let Some(id) = self.domains.lock().get(&host) {
            return Ok(id.clone());
        }
        let store = self.store.clone();
        let key = format!("{DOMAINS_PREFIX}{host}");
        let id = blocking(move || match store.get(&key) {
            Ok(o) => Ok(String::from_utf8_lossy(&o.data).trim().to_string()),
            Err(e) if e.is_not_found() => Err(ApiError::not_found()),
            Err(e) => Err(e.into()),
        })
        .await?;
        self.domains.lock().insert(host, id.clone());
        Ok(id)
    }

    pub fn read_meta(&self, id: &str) -> ApiResult<(Metadata, strata_vfs::bucket::ETag)> {
        read_meta(&self.store, id)
    }

    /// Create a tenant: both databases, the first superuser, the domain
    /// claim and `metadata.json` (last, so a half-made tenant is invisible).
    /// Blocking.
    pub fn create(
        &self,
        id: &str,
        domain: Option<String>,
        email: &str,
        password: &str,
    ) -> ApiResult<Metadata> {
        check_tenant_id(id)?;
        let domain = match domain {
            Some(d) => Some(
                normalize_host(&d)
                    .ok_or_else(|| ApiError::bad_request(format!("bad domain {d:?}")))?,
            ),
            None => None,
        };
        ensure_absent(&self.store, &meta_key(id), || {
            format!("tenant {id} already exists")
        })?;
        if let Some(d) = &domain {
            ensure_absent(&self.store, &format!("{DOMAINS_PREFIX}{d}"), || {
                format!("domain {d} is taken")
            })?;
        }
        let hash = bcrypt::hash(password, bcrypt::DEFAULT_COST)
            .map_err(|e| ApiError::internal(format!("bcrypt: {e}")))?;
        let dir = self.cfg.data_dir.join(id);
        let mut data = open_db(&self.cfg, &dir, id, DATA_DB)?;
        schema::bootstrap_data(&mut data, email, &hash)?;
        let aux = open_db(&self.cfg, &dir, id, AUX_DB)?;
        aux.execute_batch(schema::AUX_SCHEMA)?;
        for c in [&data, &aux] {
            c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
        }
        drop((data, aux));
        if let Some(d) = &domain {
            self.store.put_if_absent(
                &format!("{DOMAINS_PREFIX}{d}"),
                id.as_bytes().to_vec().into(),
            )?;
        }
        let meta = Metadata {
            id: id.into(),
            domain,
            created: schema::now(),
            deleted: None,
            purge_after: None,
        };
        let bytes =
            serde_json::to_vec_pretty(&meta).map_err(|e| ApiError::internal(e.to_string()))?;
        self.store.put_if_absent(&meta_key(id), bytes.into())?;
        Ok(meta)
    }

    /// Soft delete: mark `metadata.json` deleted with a purge time, release
    /// the domain. The data stays in the bucket until the purge time.
    pub async fn delete(self: &Arc<Self>, id: &str) -> ApiResult<Metadata> {
        check_tenant_id(id)?;
        let (store, tid, grace) = (self.store.clone(), id.to_string(), self.cfg.delete_grace);
        let meta = blocking(move || {
            let (mut meta, etag) = read_meta(&store, &tid)?;
            let now = std::time::SystemTime::now();
            meta.deleted = Some(schema::format_time(now));
            meta.purge_after = Some(schema::format_time(now + grace));
            let bytes =
                serde_json::to_vec_pretty(&meta).map_err(|e| ApiError::internal(e.to_string()))?;
            store.put_if_match(&meta_key(&tid), bytes.into(), &etag)?;
            if let Some(d) = &meta.domain {
                store.delete(&format!("{DOMAINS_PREFIX}{d}"))?;
            }
            Ok(meta)
        })
        .await?;
        if let Some(d) = &meta.domain {
            self.domains.lock().remove(d);
        }
        self.evict(id).await?;
        Ok(meta)
    }

    /// Restore a tenant's `data.db` to `target`, non-destructively: the old
    /// state is written back as new transactions on top of the history, so
    /// the answer names the txid to restore to for an undo. The tenant is
    /// evicted first and cannot load until the restore is done.
    pub async fn restore(
        self: &Arc<Self>,
        id: &str,
        target: Target,
    ) -> ApiResult<serde_json::Value> {
        check_tenant_id(id)?;
        self.read_meta(id)?;
        self.evict(id).await?;
        let _no_loads = self.load_lock.lock().await;
        let (cfg, store, tid) = (self.cfg.clone(), self.store.clone(), id.to_string());
        blocking(move || {
            let keys = DbKeys::new(&tid, DATA_DB)?;
            let before = restore::read_manifest(store.as_ref(), &keys)?.head;
            let dir = cfg.data_dir.join(&tid);
            let tmp = scratch(&dir)?;
            let result = (|| {
                let r = restore::restore(&store, &keys, target, &tmp, &Default::default())?;
                let src = Connection::open(&tmp)?;
                let mut dst = open_db(&cfg, &dir, &tid, DATA_DB)?;
                rusqlite::backup::Backup::new(&src, &mut dst)?.run_to_completion(
                    1024,
                    Duration::ZERO,
                    None,
                )?;
                let head: String = dst.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
                Ok(serde_json::json!({
                    "id": tid,
                    "restoredTo": {"txid": r.txid.0, "time": r.commit.rfc3339()},
                    "head": head.parse::<u64>().ok(),
                    "undo": {"txid": before.0},
                }))
            })();
            let _ = std::fs::remove_file(&tmp);
            result
        })
        .await
    }

    /// A new tenant `new` with `id`'s `data.db` at `target` (with a fresh
    /// JWT secret, so `id`'s tokens do not work there) and an empty
    /// `auxiliary.db`. Blocking.
    pub fn fork(&self, id: &str, new: &str, target: Target) -> ApiResult<Metadata> {
        check_tenant_id(id)?;
        check_tenant_id(new)?;
        self.read_meta(id)?;
        self.flush_loaded(id)?;
        ensure_absent(&self.store, &meta_key(new), || {
            format!("tenant {new} already exists")
        })?;
        let dir = self.cfg.data_dir.join(new);
        let tmp = scratch(&dir)?;
        let result = (|| {
            let r = restore::restore(
                &self.store,
                &DbKeys::new(id, DATA_DB)?,
                target,
                &tmp,
                &Default::default(),
            )?;
            let c = Connection::open(&tmp)?;
            c.execute(
                "UPDATE _params SET value = json_set(value, '$.strata.jwtSecret', ?1) WHERE id = 'settings'",
                [schema::new_secret()],
            )?;
            drop(c);
            strata_vfs::engine::import::import(&self.store, &DbKeys::new(new, DATA_DB)?, &tmp)?;
            let aux = open_db(&self.cfg, &dir, new, AUX_DB)?;
            aux.execute_batch(schema::AUX_SCHEMA)?;
            aux.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
            Ok::<_, ApiError>(r)
        })();
        let _ = std::fs::remove_file(&tmp);
        let r = result?;
        let meta = Metadata {
            id: new.into(),
            domain: None,
            created: schema::now(),
            deleted: None,
            purge_after: None,
        };
        let bytes =
            serde_json::to_vec_pretty(&meta).map_err(|e| ApiError::internal(e.to_string()))?;
        self.store.put_if_absent(&meta_key(new), bytes.into())?;
        tracing::info!(tenant = %new, from = %id, txid = r.txid.0, "forked");
        Ok(meta)
    }

    /// A loaded tenant's last commits go to the bucket, which fork and
    /// export read (else they would miss up to a sync interval). Blocking.
    fn flush_loaded(&self, id: &str) -> ApiResult<()> {
        let loaded = self.map.lock().get(id).cloned();
        if let Some(t) = loaded {
            let flush = |c: &mut Connection| {
                Ok(c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?)
            };
            t.with_data(flush)?;
            t.with_aux(flush)?;
        }
        Ok(())
    }

    /// Export both databases at their latest state in the bucket as a zip
    /// to `backups/<id>/backup-<time>.zip` (the seed layout: outside the
    /// tenant's prefix, so a purge keeps it); returns the key and size. Blocking.
    pub fn export(&self, id: &str) -> ApiResult<(String, usize)> {
        self.read_meta(id)?;
        self.flush_loaded(id)?;
        let dir = self.cfg.data_dir.join(id);
        let mut entries = Vec::new();
        for db in [DATA_DB, AUX_DB] {
            let tmp = scratch(&dir)?;
            let r = restore::restore(
                &self.store,
                &DbKeys::new(id, db)?,
                Target::Latest,
                &tmp,
                &Default::default(),
            )
            .map_err(ApiError::from)
            .and_then(|_| {
                std::fs::read(&tmp)
                    .map_err(|e| ApiError::unavailable(format!("read {}: {e}", tmp.display())))
            });
            let _ = std::fs::remove_file(&tmp);
            entries.push((db, r?));
        }
        let zip = super::backup::zip_stored(&entries)
            .ok_or_else(|| ApiError::bad_request("The tenant is too large for a zip32 export."))?;
        let stamp: String = schema::now()
            .chars()
            .filter(char::is_ascii_digit)
            .take(14)
            .collect();
        let key = format!("backups/{id}/backup-{stamp}.zip");
        let size = zip.len();
        self.store.put(&key, zip.into())?;
        Ok((key, size))
    }

    /// Purge what the delete grace period kept: for every deleted tenant
    /// whose `purgeAfter` has passed, every object under `tenants/<id>/`
    /// (`metadata.json` last, so an interrupted purge is found and finished
    /// by the next one) and this node's files. Returns the purged ids.
    /// Blocking.
    pub fn purge_due(&self) -> ApiResult<Vec<String>> {
        // Fixed-width UTC times compare as strings.
        let now = schema::format_time(std::time::SystemTime::now());
        let mut purged = Vec::new();
        for meta in self.list()? {
            let due = meta.deleted.is_some()
                && meta
                    .purge_after
                    .as_deref()
                    .is_some_and(|t| t <= now.as_str());
            if !due || self.map.lock().contains_key(&meta.id) {
                continue;
            }
            let prefix = format!("tenants/{}/", meta.id);
            let last = meta_key(&meta.id);
            for o in self.store.list(&prefix)? {
                if o.key != last {
                    self.store.delete(&o.key)?;
                }
            }
            // Local files before the metadata: once it is gone, nothing
            // would find them again.
            let local = self.cfg.data_dir.join(&meta.id);
            if let Err(e) = std::fs::remove_dir_all(&local)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(tenant = %meta.id, error = %e, "purging: local files remain");
            }
            self.store.delete(&last)?;
            tracing::info!(tenant = %meta.id, "deleted tenant purged after its grace period");
            purged.push(meta.id);
        }
        Ok(purged)
    }

    /// Every tenant's metadata (deleted ones included): one delimiter LIST
    /// per thousand tenants, then their `metadata.json` files fetched 16 at
    /// a time. Blocking.
    pub fn list(&self) -> ApiResult<Vec<Metadata>> {
        const FETCHERS: usize = 16;
        let ids = strata_vfs::engine::catalog::tenants(self.store.as_ref())?;
        let chunk = ids.len().div_ceil(FETCHERS).max(1);
        let parts: Vec<ApiResult<Vec<Metadata>>> = std::thread::scope(|s| {
            let workers: Vec<_> = ids
                .chunks(chunk)
                .map(|ids| {
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for id in ids {
                            match read_meta(&self.store, id) {
                                Ok((m, _)) => out.push(m),
                                // Databases without a tenant (imported by hand),
                                // or a name the server would not accept as an id.
                                Err(e) if e.status().is_client_error() => {}
                                Err(e) => return Err(e),
                            }
                        }
                        Ok(out)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(ApiError::internal("listing tenants failed")))
                })
                .collect()
        });
        let mut out = Vec::new();
        for p in parts {
            out.extend(p?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Replication state of a loaded tenant's databases as its replicas in
    /// this process know it (`PRAGMA strata_status`): no bucket request, so
    /// a list of every tenant can carry it. `None` if it is not loaded or
    /// is being evicted (its close holds the connections while it flushes).
    /// Blocking.
    pub fn live_status(&self, id: &str) -> Option<serde_json::Value> {
        let t = self.map.lock().get(id).cloned()?;
        if t.evicting.load(Ordering::Acquire) {
            return None;
        }
        let mut out = serde_json::Map::new();
        for (db, slot) in [(DATA_DB, &t.data), (AUX_DB, &t.aux)] {
            // A long request holds the connection: say so rather than wait.
            let v = match slot.try_lock_for(Duration::from_millis(50)) {
                Some(g) => match g.as_ref().map(replica_status) {
                    Some(Ok(v)) => v,
                    Some(Err(e)) => serde_json::json!({"error": e.to_string()}),
                    None => serde_json::json!({"error": "unloading"}),
                },
                None => serde_json::json!({"error": "busy"}),
            };
            out.insert(db.into(), v);
        }
        Some(out.into())
    }

    /// Bytes of the tenant's two databases and their WALs on this node's
    /// disk (file lengths: a lazily opened copy is sparse, so this is the
    /// databases' size, not what was downloaded). `None`: no local copy.
    /// Blocking.
    pub fn local_bytes(&self, id: &str) -> Option<u64> {
        let dir = self.cfg.data_dir.join(id);
        let len = |name: &str| std::fs::metadata(dir.join(name)).ok().map(|m| m.len());
        len(DATA_DB)?;
        Some(
            [DATA_DB, AUX_DB]
                .iter()
                .flat_map(|db| [len(db), len(&format!("{db}-wal"))])
                .map(|n| n.unwrap_or(0))
                .sum(),
        )
    }

    /// Replication state of a tenant's databases on this node. Blocking.
    pub fn lag(&self, id: &str) -> ApiResult<serde_json::Value> {
        let mut out = serde_json::Map::new();
        for db in [DATA_DB, AUX_DB] {
            let keys = DbKeys::new(id, db)?;
            let local = self.cfg.data_dir.join(id).join(db);
            let v = match strata_vfs::engine::status::local_status(
                &local,
                self.store.as_ref(),
                &keys,
            ) {
                Ok(s) => serde_json::json!({
                    "unreplicated": s.unreplicated(),
                    "lagMs": s.lag().as_millis() as u64,
                    "bucketHead": s.bucket_head.map(|t| t.0),
                }),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            };
            out.insert(db.into(), v);
        }
        Ok(out.into())
    }
}

/// `PRAGMA strata_status` of an open connection as JSON.
fn replica_status(c: &Connection) -> ApiResult<serde_json::Value> {
    let line: String = c.query_row("PRAGMA strata_status", [], |r| r.get(0))?;
    // `committed=1 replicated=1 lag_ms=0 ...`; the numbers come first.
    let num = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (committed, replicated) = (num("committed"), num("replicated"));
    Ok(serde_json::json!({
        "committed": committed,
        "replicated": replicated,
        "unreplicated": committed.saturating_sub(replicated),
        "lagMs": num("lag_ms"),
    }))
}

/// 409 if `key` exists.
fn ensure_absent(store: &Store, key: &str, msg: impl FnOnce() -> String) -> ApiResult<()> {
    match store.get(key) {
        Ok(_) => Err(ApiError::new(axum::http::StatusCode::CONFLICT, msg())),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn read_meta(store: &Store, id: &str) -> ApiResult<(Metadata, strata_vfs::bucket::ETag)> {
    check_tenant_id(id)?;
    match store.get(&meta_key(id)) {
        Ok(o) => {
            let m: Metadata = serde_json::from_slice(&o.data)
                .map_err(|e| ApiError::internal(format!("{}: {e}", meta_key(id))))?;
            Ok((m, o.etag))
        }
        Err(e) if e.is_not_found() => Err(ApiError::not_found()),
        Err(e) => Err(e.into()),
    }
}

/// A scratch file name under `dir` for a restore.
fn scratch(dir: &Path) -> ApiResult<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiError::unavailable(format!("create {}: {e}", dir.display())))?;
    Ok(dir.join(format!("restore-{}.db", schema::new_id())))
}

fn open_db(cfg: &Config, dir: &Path, tenant: &str, db: &str) -> ApiResult<Connection> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiError::unavailable(format!("create {}: {e}", dir.display())))?;
    let uri = crate::demo::vfs_uri(&dir.join(db), &cfg.bucket, tenant, db);
    let conn = Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    // As PocketBase runs its databases: a commit is not fsynced (the WAL is
    // at checkpoints). A process crash loses nothing; a power cut can lose
    // the last commits not yet in the bucket (with async durability, about
    // one `sync_interval`). With FULL, every create and every request's log
    // row in auxiliary.db paid two fsyncs (WAL and spool).
    conn.pragma_update(None, "synchronous", "normal")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Open a tenant lazily from the bucket (blocking).
fn open_tenant(cfg: &Config, store: &Store, id: &str) -> ApiResult<Tenant> {
    let (meta, _) = read_meta(store, id)?;
    if meta.deleted.is_some() {
        return Err(ApiError::not_found());
    }
    let dir = cfg.data_dir.join(id);
    let data = open_db(cfg, &dir, id, DATA_DB)?;
    let aux = open_db(cfg, &dir, id, AUX_DB)?;
    let secret = schema::jwt_secret(&data)?;
    tracing::info!(tenant = %id, "loaded");
    Ok(Tenant {
        id: id.into(),
        secret,
        data: Mutex::new(Some(data)),
        aux: Mutex::new(Some(aux)),
        inflight: AtomicUsize::new(0),
        evicting: AtomicBool::new(false),
        last_used: AtomicU64::new(0),
        logs_written: AtomicU64::new(0),
    })
}
