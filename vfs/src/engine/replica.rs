//! A `Replica` is one local database file replicated to the bucket: the
//! writer's side of the engine. The VFS calls [`Replica::commit`] for every
//! committed transaction; a background thread (`uploader.rs`) ships the spool.
//!
//! Opening reconciles two things, in this order: the spool against the WAL
//! (drop a transaction SQLite never committed) and the local copy against
//! the bucket (the bucket is the truth: a stale copy is replaced). The writer
//! epoch (a conditional put on the manifest, which fences any previous
//! writer) is claimed at the first commit, so a process that only reads
//! never waits for it (`ensure_claimed`).

use super::config::{Durability, ReplicaConfig};
use super::lazy::LazyFile;
use super::spool::{Spool, SpoolTxn, WalPos};
use super::{LocalState, restore, uploader};
use crate::bucket::ETag;
use crate::error::{Error, ErrorKind, IoResultExt, Result};
use crate::format::keys::DbKeys;
use crate::format::manifest::Manifest;
use crate::format::wal;
use crate::metrics::METRICS;
use crate::types::{DbId, Millis, PageNo, TxId};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the outside world can see of a replica (status, pragmas, metrics).
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub db_id: Option<DbId>,
    /// Last txid committed locally.
    pub committed: TxId,
    /// Last txid the bucket's manifest names (the replicated watermark).
    pub replicated: TxId,
    /// Commit time of the oldest transaction not yet replicated, if any.
    pub oldest_pending: Option<Millis>,
    pub spool_bytes: u64,
    /// The last upload error, if the bucket is failing right now.
    pub last_error: Option<String>,
    /// Set once another writer took over: this replica accepts no more commits.
    pub fenced: Option<String>,
}

impl Status {
    /// Replication lag: how long the oldest unreplicated commit has waited.
    pub fn lag(&self) -> Duration {
        self.oldest_pending
            .map(|t| Duration::from_millis(Millis::now().0.saturating_sub(t.0)))
            .unwrap_or_default()
    }
}

/// Shared between the committing threads and the uploader.
pub(crate) struct Core {
    /// Who this writer is in leases (`host:pid:nonce`).
    pub me: String,
    pub cfg: ReplicaConfig,
    pub keys: DbKeys,
    pub dir: PathBuf,
    pub writer: Mutex<Writer>,
    pub progress: Mutex<Progress>,
    pub progress_cv: Condvar,
    /// The writer epoch: claimed at the first write, not at open.
    pub claim: Mutex<Claim>,
}

/// Where the claim of the writer epoch stands. A replica that only reads
/// never claims: it makes no bucket request after its open. The first
/// commit claims (one conditional put) before its commit frame is written,
/// so a write refused by another writer's lease never happened; the
/// uploader takes the claimed manifest over (or claims itself, if the
/// bucket was down at that commit).
#[derive(Default)]
pub(crate) struct Claim {
    /// The epoch is claimed, or its claim is left to the uploader.
    pub done: bool,
    /// The manifest read at open: the claim needs no second GET.
    pub seen: Option<(Manifest, ETag)>,
    /// Claimed by a committing thread, for the uploader to take.
    pub handoff: Option<(Manifest, ETag)>,
}

pub(crate) struct Writer {
    pub spool: Spool,
    /// The newest spooled transaction may not be uploaded yet (see `commit`).
    pub held: bool,
    pub next: TxId,
    pub db_id: DbId,
    pub page_size: u32,
}

#[derive(Default)]
pub(crate) struct Progress {
    pub replicated: TxId,
    pub committed: TxId,
    /// Commit times of spooled, unreplicated transactions (first txid, time),
    /// one entry per commit; trimmed as uploads land.
    pub pending: std::collections::VecDeque<(TxId, Millis)>,
    pub spool_bytes: u64,
    pub last_error: Option<String>,
    /// The last attempt to ship spooled transactions failed: sync-mode
    /// commits are refused (retryably) until one succeeds.
    pub bucket_down: bool,
    pub fenced: Option<String>,
    pub wake: bool,
    /// The spool buffer wants writing out (by the uploader thread).
    pub flush: bool,
    pub shutdown: bool,
}

/// Where a captured transaction stands relative to SQLite's commit point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// WAL mode: the commit frame is about to be written (`publish` writes
    /// it); refusing now means the transaction never happened.
    WalFrame,
    /// Rollback-journal mode, at the last sync before the journal is
    /// finalized: refusable, and held from upload until the commit point.
    JournalSynced,
    /// Rollback-journal mode, journal already finalized: it happened, so it
    /// is taken even over the spool bound.
    JournalDone,
}

/// A replicated database, open for writing in this process.
pub struct Replica {
    core: Arc<Core>,
    uploader: Mutex<Option<JoinHandle<()>>>,
    /// Set while the local copy is being filled on demand.
    lazy: Option<Arc<LazyFile>>,
    _lock: File,
}

impl Replica {
    /// Open `path` as the local writer of `cfg`'s database. Returns `Ok(None)`
    /// if another process already replicates this file (open it read-only).
    pub fn open(path: &Path, cfg: ReplicaConfig) -> Result<Option<Replica>> {
        let keys = DbKeys::new(&cfg.tenant, &cfg.db)?;
        let dir = sidecar_dir(path);
        fs::create_dir_all(&dir).io_ctx(format!("create {}", dir.display()))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .io_ctx(format!("open {}", lock_path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(Error::io(format!("lock {}", lock_path.display()), err));
        }

        let mut spool = Spool::open(&dir.join("spool"))?;
        drop_uncommitted(path, &mut spool)?;
        let mut state = LocalState::load(&dir)?;
        let loaded = state.clone();
        let rebuilt = rebuild_from_wal(path, &mut spool, state.as_ref())?;
        if rebuilt > 0 {
            tracing::info!(
                rebuilt,
                "rebuilt spooled transactions lost at a crash from the WAL"
            );
        }
        // The WAL position survives unless the local copy is replaced below.
        let mut wal_pos = state.as_ref().map(|s| s.wal).unwrap_or_default();
        let mut lazy = Lazy::Known(None);

        let manifest = match cfg.store.get(&keys.manifest()) {
            Ok(obj) => Some((
                Manifest::from_bytes(&obj.data).map_err(|e| e.context(keys.manifest()))?,
                obj.etag,
            )),
            Err(e) if e.is_not_found() => None,
            Err(e) if e.kind() == ErrorKind::Unavailable && state.is_some() && path.exists() => {
                let state = state.unwrap_or_default();
                // An incomplete (lazily opened) copy serves the pages it has.
                let lazy = LazyFile::reopen_offline(
                    path,
                    &dir,
                    &cfg.store,
                    &keys,
                    state.head,
                    state.page_size,
                )?;
                tracing::warn!(error = %e, partial = lazy.is_some(), "bucket unreachable at open: writing locally, replicating when it returns");
                let lazy = Lazy::Known(lazy);
                return Self::start(keys, cfg, path, dir, lock, spool, state, None, lazy);
            }
            Err(e) => return Err(e.context(format!("open {}", keys.manifest()))),
        };
        let local_exists = fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
        let local_last = spool
            .last_txid()
            .unwrap_or_default()
            .max(state.as_ref().map_or(TxId::ZERO, |s| s.head));

        match (&manifest, &state) {
            (None, None) if local_exists => {
                return Err(Error::invalid(format!(
                    "{} exists but was never replicated: bring it in with `strata import {} {} {}/{}` first",
                    path.display(),
                    path.display(),
                    cfg.store.describe(),
                    cfg.tenant,
                    cfg.db
                )));
            }
            // Created here but killed before the first claim reached the bucket.
            (None, Some(s)) if s.head == TxId::ZERO => {}
            (None, Some(s)) => {
                return Err(Error::conflict(format!(
                    "{} has no manifest, but this node replicated database {} there before: wrong bucket? \
                     To start a new history, delete {} and {}",
                    cfg.store.describe(),
                    s.db_id,
                    path.display(),
                    dir.display()
                )));
            }
            (Some((m, _)), Some(s)) if m.db_id != s.db_id => {
                return Err(Error::conflict(format!(
                    "{} is a replica of database {}, but the bucket holds database {} at {}: move the local files away",
                    path.display(),
                    s.db_id,
                    m.db_id,
                    keys.root()
                )));
            }
            (Some((m, _)), Some(s))
                if m.head > local_last || !local_exists && m.head > TxId::ZERO =>
            {
                if local_last > s.head {
                    return Err(Error::conflict(format!(
                        "split brain: the bucket moved to txid {} while {} holds unreplicated txids {}..={}; \
                         keep a copy of {} and restore from the bucket",
                        m.head,
                        path.display(),
                        s.head.next(),
                        local_last,
                        path.display()
                    )));
                }
                tracing::info!(local = %local_last, bucket = %m.head, "local copy is stale: replacing it from the bucket");
                spool.clear()?;
                lazy = replace_from_bucket(path, &dir, &cfg, &keys, m)?;
                wal_pos = Default::default();
            }
            (Some((m, _)), Some(s)) if m.head < s.head => {
                return Err(Error::conflict(format!(
                    "the bucket's head txid {} is behind txid {} this node already replicated: was the bucket rolled back?",
                    m.head, s.head
                )));
            }
            (Some((m, _)), None) => {
                if local_exists {
                    return Err(Error::conflict(format!(
                        "{} exists locally but is not a replica of {} (database {}): move it away to open the bucket's copy",
                        path.display(),
                        keys.root(),
                        m.db_id
                    )));
                }
                spool.clear()?;
                if m.head > TxId::ZERO {
                    lazy = replace_from_bucket(path, &dir, &cfg, &keys, m)?;
                }
                wal_pos = Default::default();
            }
            _ => {}
        }

        if lazy.is_none() && manifest.is_some() {
            lazy = Lazy::Known(LazyFile::reopen(path, &dir, &cfg.store, &keys)?);
        }
        let state = match (&manifest, state.take()) {
            (Some((m, _)), _) => LocalState {
                db_id: m.db_id,
                page_size: m.page_size,
                head: m.head,
                wal: wal_pos,
            },
            (None, Some(s)) => s,
            (None, None) => LocalState {
                db_id: DbId::random(),
                page_size: 0,
                head: TxId::ZERO,
                wal: Default::default(),
            },
        };
        // Unchanged (a reopen with nothing new): no write, no fsync.
        if loaded.as_ref() != Some(&state) {
            state.save(&dir)?;
        }
        Self::start(keys, cfg, path, dir, lock, spool, state, manifest, lazy)
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        keys: DbKeys,
        cfg: ReplicaConfig,
        path: &Path,
        dir: PathBuf,
        lock: File,
        spool: Spool,
        state: LocalState,
        manifest: Option<(Manifest, ETag)>,
        lazy: Lazy,
    ) -> Result<Option<Replica>> {
        let last = spool.last_txid().unwrap_or_default().max(state.head);
        let pending = spool
            .read_all()?
            .into_iter()
            .filter(|t| t.txid > state.head)
            .map(|t| (t.txid, t.commit))
            .collect();
        let spool_bytes = spool.pending_bytes();
        let core = Arc::new(Core {
            cfg,
            keys,
            dir,
            writer: Mutex::new(Writer {
                spool,
                held: false,
                next: last.next(),
                db_id: state.db_id,
                page_size: state.page_size,
            }),
            progress: Mutex::new(Progress {
                replicated: state.head,
                committed: last,
                pending,
                spool_bytes,
                ..Default::default()
            }),
            progress_cv: Condvar::new(),
            me: uploader::writer_name(path),
            claim: Mutex::new(Claim::default()),
        });
        // The lease is claimed at the first write (`ensure_claimed`), not
        // here: a replica that only reads makes no bucket request. A lazy
        // copy's page map is being built meanwhile; wait for it.
        core.claim.lock().seen = manifest;
        let lazy = lazy.wait()?;
        let c = core.clone();
        let handle = std::thread::Builder::new()
            .name(format!("strata-upload-{}", core.cfg.db))
            .spawn(move || uploader::run(c))
            .map_err(|e| Error::unavailable(format!("start uploader thread: {e}")))?;
        Ok(Some(Replica {
            core,
            uploader: Mutex::new(Some(handle)),
            lazy: lazy.map(Arc::new),
            _lock: lock,
        }))
    }

    /// Record one committed transaction, then run `publish` (the write that
    /// makes it committed for SQLite) under the same lock, so the uploader can
    /// never ship a transaction whose commit failed. If `publish` fails the
    /// record is removed again. `stage` says whether the transaction can
    /// still be refused (spool full, sync mode with the bucket down) and
    /// whether it is held from upload until [`Replica::release_hold`].
    pub fn commit(
        &self,
        db_pages: u32,
        page_size: u32,
        wal: WalPos,
        pages: Vec<(PageNo, Bytes)>,
        stage: Stage,
        publish: impl FnOnce() -> Result<()>,
    ) -> Result<TxId> {
        let core = &self.core;
        let hold = stage == Stage::JournalSynced;
        let refusable = stage != Stage::JournalDone;
        self.ensure_claimed(refusable)?;
        {
            let p = core.progress.lock();
            if let Some(f) = &p.fenced {
                return Err(Error::conflict(f.clone()));
            }
            if refusable && core.cfg.durability == Durability::Sync && p.bucket_down {
                let why = p.last_error.as_deref().unwrap_or_default();
                return Err(Error::not_applied(format!(
                    "sync mode: {} is unreachable ({why}); the transaction was not committed: retry it when the bucket is back",
                    core.cfg.store.describe()
                )));
            }
        }
        let txid = {
            let mut w = core.writer.lock();
            let pending = w.spool.pending_bytes();
            if refusable && pending > core.cfg.max_spool {
                return Err(Error::full(format!(
                    "local spool is full ({pending} bytes not yet in {}): commits resume when the bucket is reachable",
                    core.cfg.store.describe()
                )));
            }
            let txn = SpoolTxn {
                txid: w.next,
                commit: Millis::now(),
                db_pages,
                page_size,
                wal,
                pages,
            };
            let before = w.spool.buffered();
            w.spool.append(&txn)?;
            if let Err(e) = publish() {
                w.spool.pop_buffered(&txn, before);
                return Err(e);
            }
            w.next = txn.txid.next();
            w.page_size = page_size;
            w.held |= hold;
            let bytes = w.spool.pending_bytes();
            let early = w.spool.active_bytes() >= core.cfg.upload_threshold;
            let flush = w.spool.buffered() >= super::spool::BACKGROUND_AT;
            let mut p = core.progress.lock();
            p.committed = txn.txid;
            p.pending.push_back((txn.txid, txn.commit));
            p.spool_bytes = bytes;
            // Wake the uploader once per crossing, not on every commit.
            if early && !p.wake {
                p.wake = true;
                core.progress_cv.notify_all();
            }
            if flush && !p.flush {
                p.flush = true;
                core.progress_cv.notify_all();
            }
            txn.txid
        };
        METRICS.commits.inc();
        Ok(txid)
    }

    /// Claim the writer epoch before the first commit (see [`Claim`]).
    /// Another writer's valid lease refuses the commit (`Conflict`, so
    /// SQLITE_READONLY); an unreachable bucket lets an async commit go on
    /// (the uploader claims when it answers) and refuses a sync one
    /// (`NotApplied`). A commit past its commit point (`!refusable`) always
    /// goes on: the uploader's claim then fences or succeeds.
    fn ensure_claimed(&self, refusable: bool) -> Result<()> {
        let core = &self.core;
        let mut c = core.claim.lock();
        if c.done {
            return Ok(());
        }
        let seen = c.seen.take();
        match uploader::claim(core, seen) {
            Ok(m) => {
                c.handoff = Some(m);
                c.done = true;
                Ok(())
            }
            Err(e) if !refusable => {
                tracing::warn!(error = %e, "writer epoch not claimed at a commit that cannot be refused; the uploader retries");
                c.done = true;
                Ok(())
            }
            Err(e)
                if e.kind() == ErrorKind::Unavailable
                    && core.cfg.durability != Durability::Sync =>
            {
                tracing::warn!(error = %e, "bucket unreachable at the first write: writing locally, claiming when it returns");
                c.done = true;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => Err(Error::not_applied(format!(
                "sync mode: cannot claim the database in {} ({e}); the transaction was not committed: retry it when the bucket is back",
                core.cfg.store.describe()
            ))),
            Err(e) => Err(e),
        }
    }

    /// Claim the writer epoch now rather than at the first commit (a
    /// server that must own a database before it serves it): `Conflict`
    /// while another writer holds it, `Unavailable` without the bucket.
    pub fn claim(&self) -> Result<()> {
        let core = &self.core;
        let mut c = core.claim.lock();
        if c.done {
            return Ok(());
        }
        let seen = c.seen.take();
        let m = uploader::claim(core, seen)?;
        c.handoff = Some(m);
        c.done = true;
        Ok(())
    }

    /// A held (rollback-journal) transaction reached its commit point.
    pub fn release_hold(&self) {
        self.core.writer.lock().held = false;
    }

    /// Write the spool's buffer out: the WAL is about to restart or shrink.
    pub fn flush_spool(&self) -> Result<()> {
        self.core.writer.lock().spool.flush()
    }

    /// Make the spool as durable as the database (SQLite is syncing).
    pub fn sync(&self) -> Result<()> {
        self.core.writer.lock().spool.sync()
    }

    /// Make the spool as durable as the database while `other` (SQLite's own
    /// fsync of the WAL or database) runs: both fsyncs overlap. If power fails
    /// between them, recovery reconciles either order (`drop_uncommitted`,
    /// `rebuild_from_wal`).
    pub fn sync_alongside<T: Send>(&self, other: impl FnOnce() -> T + Send) -> (Result<()>, T) {
        let file = match self.core.writer.lock().spool.flushed_handle() {
            Ok(f) => f,
            Err(e) => return (Err(e), other()),
        };
        std::thread::scope(|s| {
            let h = s.spawn(|| file.sync_data().io_ctx("sync spool"));
            let t = other();
            let r = h
                .join()
                .unwrap_or_else(|_| Err(Error::unavailable("spool sync thread panicked")));
            (r, t)
        })
    }

    /// Sync mode: block until `txid` (committed, lock released) is in the
    /// bucket. Many committers wait at once and their transactions share one
    /// upload (group commit). Fails at `sync_timeout`, or as soon as an
    /// upload attempt fails: the transaction stays committed locally and
    /// spooled, and is uploaded when the bucket is back.
    pub fn wait_synced(&self, txid: TxId) -> Result<()> {
        self.wait(txid, self.core.cfg.sync_timeout, true)
    }

    /// Block until `txid` is in the bucket, or fail after `timeout`.
    pub fn wait_replicated(&self, txid: TxId, timeout: Duration) -> Result<()> {
        self.wait(txid, timeout, false)
    }

    fn wait(&self, txid: TxId, timeout: Duration, fail_fast: bool) -> Result<()> {
        let core = &self.core;
        let deadline = Instant::now() + timeout;
        let mut p = core.progress.lock();
        p.wake = true;
        core.progress_cv.notify_all();
        while p.replicated < txid {
            if let Some(f) = &p.fenced {
                return Err(Error::conflict(f.clone()));
            }
            if fail_fast && p.bucket_down {
                let why = p.last_error.clone().unwrap_or_default();
                return Err(Error::unavailable(format!(
                    "txid {txid} is committed locally but could not be uploaded to {} ({why}); it stays spooled and will be uploaded when the bucket is back",
                    core.cfg.store.describe()
                )));
            }
            if core.progress_cv.wait_until(&mut p, deadline).timed_out() {
                let why = p
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "upload is slow".into());
                return Err(Error::unavailable(format!(
                    "txid {txid} is committed locally but not yet in {} after {timeout:?} ({why}); it stays spooled and will be uploaded",
                    core.cfg.store.describe()
                )));
            }
        }
        Ok(())
    }

    /// Upload everything committed so far and wait for it.
    pub fn flush(&self, timeout: Duration) -> Result<TxId> {
        let committed = self.core.progress.lock().committed;
        self.wait_replicated(committed, timeout)?;
        Ok(committed)
    }

    pub fn status(&self) -> Status {
        // Lock order everywhere: writer before progress.
        let db_id = self.core.writer.lock().db_id;
        let p = self.core.progress.lock();
        Status {
            db_id: Some(db_id),
            committed: p.committed,
            replicated: p.replicated,
            oldest_pending: p.pending.front().map(|(_, t)| *t),
            spool_bytes: p.spool_bytes,
            last_error: p.last_error.clone(),
            fenced: p.fenced.clone(),
        }
    }

    /// The on-demand state of the local copy, if it is not complete.
    pub fn lazy(&self) -> Option<&Arc<LazyFile>> {
        self.lazy.as_ref()
    }

    /// Fetch every page this node does not have yet; returns how many.
    pub fn hydrate(&self, progress: Option<super::restore::ProgressFn>) -> Result<u64> {
        match &self.lazy {
            Some(l) => l.hydrate(progress),
            None => Ok(0),
        }
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.core.cfg
    }

    pub fn keys(&self) -> &DbKeys {
        &self.core.keys
    }
}

impl Drop for Replica {
    /// Closing uploads what is spooled (bounded by `sync_timeout`); whatever
    /// cannot be uploaded stays in the spool for the next open.
    fn drop(&mut self) {
        {
            let mut p = self.core.progress.lock();
            p.shutdown = true;
            self.core.progress_cv.notify_all();
        }
        if let Some(h) = self.uploader.lock().take() {
            let _ = h.join();
        }
    }
}

/// `<db>-strata/`: the spool, local state and writer lock of one database.
pub fn sidecar_dir(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-strata");
    PathBuf::from(s)
}

/// Append the committed WAL transactions the spool lost at a crash (its
/// in-memory buffer). They are the ones after the newest spooled WAL position;
/// a WAL restarted since that position holds only newer ones, because the
/// buffer is written before every restart.
fn rebuild_from_wal(db: &Path, spool: &mut Spool, state: Option<&LocalState>) -> Result<usize> {
    let wal_path = with_suffix(db, "-wal");
    let bytes = match fs::read(&wal_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("read {}", wal_path.display()), e)),
    };
    let Some((header, txns)) = wal::committed_txns(&bytes) else {
        return Ok(0);
    };
    let known = spool
        .last_wal()
        .or_else(|| state.map(|s| s.wal).filter(|w| w.frame != 0));
    let after = match known {
        Some(p) if (p.salt1, p.salt2) == (header.salt1, header.salt2) => p.frame,
        _ => 0,
    };
    // Their real commit times were in the lost buffer: the WAL's mtime is the
    // closest upper bound we have.
    let commit = fs::metadata(&wal_path)
        .and_then(|m| m.modified())
        .map(Millis::from_system_time)
        .unwrap_or_else(|_| Millis::now());
    let mut next = spool
        .last_txid()
        .unwrap_or_default()
        .max(state.map_or(TxId::ZERO, |s| s.head))
        .next();
    let mut n = 0;
    for t in txns.into_iter().filter(|t| t.commit_frame > after) {
        let pages = t
            .pages
            .into_iter()
            .map(|(pgno, r)| (PageNo(pgno), Bytes::copy_from_slice(&bytes[r])))
            .collect();
        let wal = WalPos {
            salt1: header.salt1,
            salt2: header.salt2,
            frame: t.commit_frame,
        };
        spool.append(&SpoolTxn {
            txid: next,
            commit,
            db_pages: t.db_pages,
            page_size: header.page_size,
            wal,
            pages,
        })?;
        next = next.next();
        n += 1;
    }
    spool.sync()?;
    Ok(n)
}

/// Drop spooled transactions that SQLite never committed: a crash can land
/// between the spool append and the commit frame's write (see spool.rs).
fn drop_uncommitted(db: &Path, spool: &mut Spool) -> Result<()> {
    let Some(last) = spool.read_all()?.pop() else {
        return Ok(());
    };
    let committed = if last.wal.frame == 0 {
        // Rollback-journal transaction: uncommitted iff a hot journal remains.
        !hot_journal(db)
    } else {
        let wal_path = with_suffix(db, "-wal");
        match fs::read(&wal_path) {
            Ok(bytes) => match wal::scan(&bytes) {
                Some(s) if (s.header.salt1, s.header.salt2) == (last.wal.salt1, last.wal.salt2) => {
                    last.wal.frame <= s.last_commit_frame
                }
                // Another WAL generation: ours was checkpointed before the restart.
                Some(_) => true,
                None => true,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(Error::io(format!("read {}", wal_path.display()), e)),
        }
    };
    if !committed {
        tracing::info!(txid = %last.txid, "dropping a spooled transaction that SQLite never committed");
        spool.truncate_after(TxId(last.txid.0 - 1))?;
    }
    Ok(())
}

fn hot_journal(db: &Path) -> bool {
    const MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
    let mut head = [0u8; 8];
    match File::open(with_suffix(db, "-journal")) {
        Ok(f) => {
            use std::os::unix::fs::FileExt;
            f.read_exact_at(&mut head, 0).is_ok() && head == MAGIC
        }
        Err(_) => false,
    }
}

pub(crate) fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Replace the local files with the bucket's latest state: lazily (a sparse
/// file filled on demand) unless `lazy=0`, else by a full restore.
fn replace_from_bucket(
    path: &Path,
    dir: &Path,
    cfg: &ReplicaConfig,
    keys: &DbKeys,
    manifest: &Manifest,
) -> Result<Lazy> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let p = with_suffix(path, suffix);
        if let Err(e) = fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::io(format!("remove {}", p.display()), e));
        }
    }
    if cfg.lazy {
        // The page map's GETs run beside the rest of the open (`start`).
        let (path, dir, store, keys, m) = (
            path.to_path_buf(),
            dir.to_path_buf(),
            cfg.store.clone(),
            keys.clone(),
            manifest.clone(),
        );
        return Ok(Lazy::Building(std::thread::spawn(move || {
            LazyFile::create(&path, &dir, &store, &keys, Some(&m)).map(Some)
        })));
    }
    let _ = fs::remove_file(dir.join("lazy.bitmap"));
    restore::restore(
        &cfg.store,
        keys,
        restore::Target::Latest,
        path,
        &restore::Options::default(),
    )?;
    Ok(Lazy::Known(None))
}

/// A local copy's lazy state: known, or being built on another thread (its
/// page map is read from the bucket) while the open goes on.
enum Lazy {
    Known(Option<LazyFile>),
    Building(std::thread::JoinHandle<Result<Option<LazyFile>>>),
}

impl Lazy {
    fn is_none(&self) -> bool {
        matches!(self, Lazy::Known(None))
    }

    fn wait(self) -> Result<Option<LazyFile>> {
        match self {
            Lazy::Known(l) => Ok(l),
            Lazy::Building(h) => h
                .join()
                .unwrap_or_else(|_| Err(Error::corrupt("lazy open thread panicked"))),
        }
    }
}
