//! A loaded tenant: its two databases as connection pools ([`pool::Db`]),
//! its JWT secret and settings, its rate-limit windows, the request log rows
//! waiting to be written, and what the registry needs to evict it (requests
//! in flight, last use).

use super::Config;
use super::pool::{Commit, Db, Opener};
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::files::TenantFiles;
use crate::serve::metrics::{Phase, Phases};
use crate::serve::ratelimit::Limiter;
use crate::serve::realtime::Hub;
use crate::serve::settings::{self, Settings};
use parking_lot::Mutex;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const DATA_DB: &str = "data.db";
pub const AUX_DB: &str = "auxiliary.db";

/// Request log rows are written to `auxiliary.db` in batches of this many,
/// or when the oldest has waited [`LOG_FLUSH_EVERY`] (as PocketBase batches
/// its logs): one transaction per batch instead of one per request.
pub const LOG_BATCH: usize = 200;
pub const LOG_FLUSH_EVERY: Duration = Duration::from_secs(2);

/// One request log row, as `_logs` stores it.
pub struct LogRow {
    pub id: String,
    /// PocketBase's levels: 0 info, 8 error (a request answered >= 400).
    pub level: i64,
    pub created: String,
    pub message: String,
    pub data: String,
}

pub struct Tenant {
    pub id: String,
    pub secret: String,
    pub data: Arc<Db>,
    /// Realtime clients connected to this tenant (see `serve::realtime`).
    pub realtime: Hub,
    /// The files of its `file` fields, in the bucket.
    pub files: TenantFiles,
    /// Read at load; replaced whole by a settings PATCH.
    settings: parking_lot::RwLock<Arc<Settings>>,
    /// The windows of the tenant's `rateLimits` rules (emptied when the
    /// rules change, as PocketBase resets them).
    pub limits: Limiter,
    /// Failed logins per identity, for the node's `--auth-failures` guard.
    pub auth_failures: Limiter,
    pub auth_guard: Option<(i64, Duration)>,
    /// `auxiliary.db`, opened on the first log write rather than at load:
    /// a load on the request path opens `data.db` alone.
    aux: Mutex<Option<Arc<Db>>>,
    aux_opener: Opener,
    logs: Mutex<LogBuffer>,
    log_cap: u64,
    gauge: Arc<AtomicI64>,
    pub(super) inflight: AtomicUsize,
    pub(super) evicting: AtomicBool,
    /// Milliseconds since the registry started.
    pub(super) last_used: AtomicU64,
}

#[derive(Default)]
struct LogBuffer {
    rows: Vec<LogRow>,
    since: Option<Instant>,
    /// A flush job is queued or running.
    flushing: bool,
}

impl Tenant {
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().clone()
    }

    /// After a committed settings change: the new settings, and fresh
    /// rate-limit windows if the rules changed.
    pub fn set_settings(&self, s: Settings) {
        let old = std::mem::replace(&mut *self.settings.write(), Arc::new(s));
        if old.rate_limits != self.settings().rate_limits {
            self.limits.clear();
        }
    }

    /// Run `f` on a reader of `data.db`.
    pub async fn read<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Tenant, &Connection) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<R> {
        let t = self.clone();
        self.data.read(move |c| f(&t, c)).await
    }

    /// Run `f` in a write transaction of `data.db` (see [`Db::write`]).
    pub async fn write<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Tenant, &Connection) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<(R, Commit)> {
        let t = self.clone();
        self.data.write(move |c| f(&t, c)).await
    }

    /// Queue a request log row; a full batch is written at once (in the
    /// background), a partial one by [`Tenant::flush_logs_due`].
    /// Queue a request log row, as the settings' `logs` allow
    /// (`maxDays` 0 keeps none, `minLevel` drops lower levels).
    pub fn log(self: &Arc<Self>, row: LogRow) {
        let logs = &self.settings().logs;
        if logs.max_days == 0 || row.level < logs.min_level {
            return;
        }
        let full = {
            let mut b = self.logs.lock();
            b.rows.push(row);
            b.since.get_or_insert_with(Instant::now);
            b.rows.len() >= LOG_BATCH && !b.flushing
        };
        if full {
            self.spawn_log_flush();
        }
    }

    /// Write the waiting log rows if the oldest has waited long enough.
    pub fn flush_logs_due(self: &Arc<Self>) {
        let due = {
            let b = self.logs.lock();
            !b.flushing && b.since.is_some_and(|t| t.elapsed() >= LOG_FLUSH_EVERY)
        };
        if due {
            self.spawn_log_flush();
        }
    }

    fn spawn_log_flush(self: &Arc<Self>) {
        let t = self.clone();
        tokio::spawn(async move {
            if let Err(e) = t.flush_logs().await {
                tracing::warn!(tenant = %t.id, error = %e, "request log write failed");
            }
        });
    }

    /// Write every waiting log row in one transaction, keeping at most
    /// `log_cap` rows in `_logs`.
    pub async fn flush_logs(self: &Arc<Self>) -> ApiResult<()> {
        let rows = {
            let mut b = self.logs.lock();
            if b.rows.is_empty() || b.flushing {
                return Ok(());
            }
            b.flushing = true;
            b.since = None;
            std::mem::take(&mut b.rows)
        };
        let cap = self.log_cap as i64;
        let max_days = self.settings().logs.max_days;
        let r = async {
            let t = self.clone();
            let aux = super::blocking(move || t.aux_db()).await?;
            aux.write(move |c| write_logs(c, &rows, cap, max_days))
                .await
                .map(drop)
        }
        .await;
        self.logs.lock().flushing = false;
        r
    }

    /// `auxiliary.db`, opening it if this is its first use. Blocking.
    fn aux_db(&self) -> ApiResult<Arc<Db>> {
        let mut slot = self.aux.lock();
        if let Some(db) = &*slot {
            return Ok(db.clone());
        }
        // Writes come from the log flush only: one reader is plenty.
        let db = Db::open(AUX_DB, self.aux_opener.clone(), 1, self.gauge.clone())?;
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Run `f` on a reader of `auxiliary.db` (opened if need be), after the
    /// log rows waiting in memory are written, so they are seen.
    pub async fn read_logs<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<R> {
        self.flush_logs().await?;
        let t = self.clone();
        let aux = super::blocking(move || t.aux_db()).await?;
        aux.read(f).await
    }

    /// `auxiliary.db` if it is open (nothing is opened for asking).
    pub fn aux_if_open(&self) -> Option<Arc<Db>> {
        self.aux.lock().clone()
    }

    /// Write the logs, then upload everything committed and close every
    /// connection of both databases. Blocking (called off the runtime,
    /// with the tenant marked evicting and its requests drained).
    pub(super) fn close(&self, wait: Duration) -> ApiResult<()> {
        // A background flush in progress finishes first.
        let deadline = Instant::now() + wait;
        while self.logs.lock().flushing && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let rows = std::mem::take(&mut self.logs.lock().rows);
        if !rows.is_empty() {
            let cap = self.log_cap as i64;
            let max_days = self.settings().logs.max_days;
            let written = self.aux_db().map_or_else(
                |e| Some(Err(e)),
                |aux| {
                    aux.with_idle_writer(|c| {
                        c.execute_batch("BEGIN")?;
                        let r = write_logs(c, &rows, cap, max_days);
                        c.execute_batch(if r.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
                        r
                    })
                },
            );
            match written {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    tracing::warn!(tenant = %self.id, error = %e, "request logs lost at close")
                }
                None => {
                    tracing::warn!(tenant = %self.id, "request logs lost at close: auxiliary.db busy")
                }
            }
        }
        let data = self.data.close(wait);
        let aux = match self.aux.lock().take() {
            Some(aux) => aux.close(wait),
            None => Ok(()),
        };
        data.and(aux)
    }

    /// Connections open now, both databases.
    pub fn open_connections(&self) -> usize {
        self.data.open_connections() + self.aux_if_open().map_or(0, |a| a.open_connections())
    }
}

/// Insert `rows`, then drop what is past the node's row cap or older than
/// the settings' `maxDays`.
fn write_logs(c: &Connection, rows: &[LogRow], cap: i64, max_days: i64) -> ApiResult<()> {
    let mut ins = c.prepare_cached(
        "INSERT INTO _logs (id, level, message, data, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?;
    for r in rows {
        ins.execute(rusqlite::params![
            r.id, r.level, r.message, r.data, r.created
        ])?;
    }
    if max_days > 0 {
        let oldest = std::time::SystemTime::now()
            .checked_sub(Duration::from_secs(
                max_days.unsigned_abs().saturating_mul(86_400),
            ))
            .map(crate::serve::schema::format_time);
        if let Some(oldest) = oldest {
            c.prepare_cached("DELETE FROM _logs WHERE created < ?1")?
                .execute([oldest])?;
        }
    }
    // Rowids grow by one per row, so the oldest are those below max - cap.
    c.prepare_cached("DELETE FROM _logs WHERE rowid <= (SELECT max(rowid) FROM _logs) - ?1")?
        .execute([cap])?;
    Ok(())
}

/// A request's hold on a loaded tenant: while it exists, eviction waits.
pub struct Guard(pub(super) Arc<Tenant>, AuthSlot);

/// The auth collection of a request's caller, once a handler verified its
/// token (`serve::auth::resolve`), for the request log's `data.auth`.
pub type AuthSlot = Arc<Mutex<Option<String>>>;

thread_local! {
    /// The slot of the request whose database job runs on this thread.
    static CURRENT: std::cell::RefCell<Option<AuthSlot>> = const { std::cell::RefCell::new(None) };
}

/// Note the caller's auth collection for the request whose job runs on
/// this thread (nothing outside a request's job).
pub fn note_auth(collection: &str) {
    CURRENT.with(|c| {
        if let Some(slot) = &*c.borrow() {
            *slot.lock() = Some(collection.to_string());
        }
    });
}

/// Run `f` with `slot` as this thread's current request slot.
fn in_request<R>(slot: &AuthSlot, f: impl FnOnce() -> R) -> R {
    CURRENT.with(|c| *c.borrow_mut() = Some(slot.clone()));
    let r = f();
    CURRENT.with(|c| c.borrow_mut().take());
    r
}

impl Guard {
    pub(super) fn new(t: Arc<Tenant>) -> Guard {
        Guard(t, AuthSlot::default())
    }

    /// [`Tenant::read`] for this request: a caller the job verifies is
    /// noted for its log entry.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Tenant, &Connection) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<R> {
        let slot = self.1.clone();
        self.0.read(move |t, c| in_request(&slot, || f(t, c))).await
    }

    /// [`Tenant::write`] for this request (see [`Guard::read`]).
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Tenant, &Connection) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<(R, Commit)> {
        let slot = self.1.clone();
        self.0
            .write(move |t, c| in_request(&slot, || f(t, c)))
            .await
    }

    /// The auth collection of the caller, if a job of this request
    /// verified one ("" for a guest, as PocketBase logs it).
    pub fn auth_collection(&self) -> String {
        self.1.lock().clone().unwrap_or_default()
    }
}

impl std::ops::Deref for Guard {
    type Target = Arc<Tenant>;
    fn deref(&self) -> &Arc<Tenant> {
        &self.0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The URI that opens `db` of `tenant` through the strata VFS.
pub fn opener(cfg: &Config, dir: &Path, tenant: &str, db: &str) -> Opener {
    let uri = crate::demo::vfs_uri(&dir.join(db), &cfg.bucket, tenant, db);
    Opener {
        uri: format!("{uri}&node={}", cfg.node),
        busy_timeout: Duration::from_secs(5),
    }
}

/// One connection of its own to `db` of `tenant`, outside any pool (tenant
/// creation, restore): the tenant must not be loaded. Blocking.
pub fn open_db(cfg: &Config, dir: &Path, tenant: &str, db: &str) -> ApiResult<Connection> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiError::unavailable(format!("create {}: {e}", dir.display())))?;
    opener(cfg, dir, tenant, db).open_standalone()
}

/// Open a tenant lazily from the bucket: `data.db`'s writer (readers and
/// `auxiliary.db` open on demand). Blocking.
pub fn open_tenant(
    cfg: &Config,
    id: &str,
    gauge: &Arc<AtomicI64>,
    files: TenantFiles,
    phases: &mut Phases,
) -> ApiResult<Tenant> {
    let dir = cfg.data_dir.join(id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::unavailable(format!("create {}: {e}", dir.display())))?;
    let data = Db::open(
        DATA_DB,
        opener(cfg, &dir, id, DATA_DB),
        cfg.max_readers,
        gauge.clone(),
    )?;
    phases.mark(Phase::OpenData);
    // The node that loads a tenant owns it, reads included: claim data.db's
    // lease now (no request if this node already holds it), or leave the
    // tenant to the node that does.
    data.with_idle_writer(|c| c.query_row("PRAGMA strata_claim", [], |r| r.get::<_, String>(0)))
        .unwrap_or_else(|| Err(rusqlite::Error::InvalidQuery))
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ReadOnly) => ApiError::Held(e.to_string()),
            _ => ApiError::from(e),
        })?;
    phases.mark(Phase::Claim);
    let (secret, settings) = data
        .with_idle_writer(settings::load)
        .unwrap_or_else(|| Err(ApiError::internal("data.db busy at load")))?;
    phases.mark(Phase::Schema);
    tracing::info!(tenant = %id, "loaded");
    Ok(Tenant {
        id: id.into(),
        secret,
        data,
        realtime: Hub::default(),
        files,
        settings: parking_lot::RwLock::new(Arc::new(settings)),
        limits: Limiter::default(),
        auth_failures: Limiter::default(),
        auth_guard: cfg.auth_failures,
        aux: Mutex::new(None),
        aux_opener: opener(cfg, &dir, id, AUX_DB),
        logs: Mutex::default(),
        log_cap: cfg.log_cap,
        gauge: gauge.clone(),
        inflight: AtomicUsize::new(0),
        evicting: AtomicBool::new(false),
        last_used: AtomicU64::new(0),
    })
}
