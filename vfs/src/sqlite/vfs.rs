//! The `strata` VFS: SQLite's unix VFS underneath, transaction capture on top.
//!
//! Rollback-journal transactions are captured only while the EXCLUSIVE lock
//! is held on a database file that is not in WAL mode (in WAL mode, writes to
//! the database file are checkpoints of transactions already captured).

use super::base::BaseFile;
use super::busy::{self, WriteGate};
use super::capture::{RollbackCapture, WalCapture, WalWrite};
use super::params::{UriParams, replica_config};
use super::remote::{self, RemoteFile};
use super::{ffi, hook, registry, sqlite_code};
use crate::engine::lazy::LazyFile;
use crate::engine::spool::WalPos;
use crate::engine::{Durability, Replica, Stage};
use crate::error::Error;
use crate::format::wal::WalHeader;
use sqlite_plugin::flags::{AccessFlags, LockLevel, OpenKind, OpenOpts, ShmLockMode};
use sqlite_plugin::vars;
use sqlite_plugin::vfs::{Pragma, PragmaErr, Vfs, VfsHandle, VfsResult};
use std::borrow::Cow;
use std::ffi::{CString, c_char, c_int};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

#[derive(Clone, Copy)]
struct BaseVfs(*mut ffi::sqlite3_vfs);
// SAFETY: a registered sqlite3_vfs is immutable and lives for the process.
unsafe impl Send for BaseVfs {}
unsafe impl Sync for BaseVfs {}

/// The VFS. Holds only the base VFS; per-database state lives in replicas.
pub struct StrataVfs {
    base: BaseVfs,
}

impl StrataVfs {
    #[cfg_attr(not(any(feature = "static", feature = "dynamic")), allow(dead_code))]
    pub(crate) fn new(base: *mut ffi::sqlite3_vfs) -> StrataVfs {
        StrataVfs {
            base: BaseVfs(base),
        }
    }
}

/// An open file.
pub enum Handle {
    /// A real local file, forwarded to the base VFS.
    Local(LocalFile),
    /// A read-only file read from the bucket page by page: a restore point
    /// (`txid=` or `time=`), or a read replica following the head.
    Remote(Box<RemoteFile>),
}

/// A local file and what strata tracks about it.
pub struct LocalFile {
    base: BaseFile,
    readonly: bool,
    kind: Kind,
    /// Keeps a filename we had to copy alive: the base VFS keeps the pointer.
    _name: Option<CString>,
}

enum Kind {
    Main(Box<MainDb>),
    Wal(Box<WalFile>),
    Other,
}

struct MainDb {
    replica: Option<Arc<Replica>>,
    /// Set while an EXCLUSIVE lock is held on a database in rollback-journal mode.
    rollback: Option<RollbackCapture>,
    /// A rollback transaction was spooled at xSync and awaits its commit point.
    held: bool,
    /// Set while the local copy is filled on demand (lazy open).
    lazy: Option<Arc<LazyFile>>,
    /// `PRAGMA wal_autocheckpoint` of a sync-mode connection, which strata's
    /// WAL hook carries out (see `hook.rs`).
    autocheckpoint: i32,
    /// Rollback-journal mode, sync durability: the txid to wait for once the
    /// commit point has passed (at unlock).
    sync_wait: Option<crate::types::TxId>,
    /// Shared by this process's connections to the file (`busy.rs`).
    gate: Arc<WriteGate>,
}

impl MainDb {
    fn sync_mode(&self) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|r| r.config().durability == Durability::Sync)
    }
}

struct WalFile {
    replica: Option<Arc<Replica>>,
    capture: WalCapture,
    db: PathBuf,
}

fn level_code(l: LockLevel) -> c_int {
    match l {
        LockLevel::Unlocked => vars::SQLITE_LOCK_NONE,
        LockLevel::Shared => vars::SQLITE_LOCK_SHARED,
        LockLevel::Reserved => vars::SQLITE_LOCK_RESERVED,
        LockLevel::Pending => vars::SQLITE_LOCK_PENDING,
        LockLevel::Exclusive => vars::SQLITE_LOCK_EXCLUSIVE,
    }
}

fn log_err(what: &str, e: &Error) -> i32 {
    tracing::error!(error = %e, "{what}");
    sqlite_code(e)
}

impl VfsHandle for Handle {
    fn readonly(&self) -> bool {
        match self {
            Handle::Local(h) => h.readonly,
            Handle::Remote(_) => true,
        }
    }
    fn in_memory(&self) -> bool {
        false
    }
}

impl Vfs for StrataVfs {
    type Handle = Handle;

    fn canonical_path<'a>(&self, path: Cow<'a, str>) -> VfsResult<Cow<'a, str>> {
        if path.starts_with('/') {
            return Ok(path);
        }
        let cwd = std::env::current_dir().map_err(|_| vars::SQLITE_CANTOPEN)?;
        Ok(Cow::Owned(
            cwd.join(path.as_ref()).to_string_lossy().into_owned(),
        ))
    }

    fn open(&self, path: Option<&str>, opts: OpenOpts) -> VfsResult<Handle> {
        // SQLite's own filename pointer carries the URI parameters after its
        // NUL; sqlite-plugin hands it through unchanged when it is valid UTF-8.
        let (name_ptr, owned): (*const c_char, Option<CString>) = match path {
            None => (std::ptr::null(), None),
            Some(p) if !p.contains('\u{FFFD}') => (p.as_ptr().cast(), None),
            Some(p) => {
                let mut bytes = p.as_bytes().to_vec();
                bytes.push(0); // no URI parameters follow
                let c = CString::new(bytes).map_err(|_| vars::SQLITE_CANTOPEN)?;
                (c.as_ptr(), Some(c))
            }
        };
        let kind_flag = opts.kind();
        let readonly_open = opts.mode().is_readonly();
        if let (OpenKind::MainDb, Some(p), None) = (&kind_flag, path, &owned) {
            // SAFETY: p points into SQLite's filename buffer (see above).
            let params = unsafe { UriParams::read(p.as_ptr()) };
            if remote::wanted(&params, readonly_open, Path::new(p).exists()) {
                let f = RemoteFile::open(p, &params).map_err(|e| {
                    let _ = log_err(&format!("strata: cannot open {p} from the bucket"), &e);
                    vars::SQLITE_CANTOPEN
                })?;
                return Ok(Handle::Remote(Box::new(f)));
            }
        }
        let kind = match (kind_flag, path) {
            (OpenKind::MainDb, Some(p)) => {
                let replica = if readonly_open {
                    None
                } else {
                    let params = if owned.is_none() {
                        // SAFETY: p points into SQLite's filename buffer (see above).
                        unsafe { UriParams::read(p.as_ptr()) }
                    } else {
                        UriParams::empty()
                    };
                    let cfg = replica_config(p, &params).map_err(|e| {
                        let _ = log_err("strata: cannot open database", &e);
                        vars::SQLITE_CANTOPEN
                    })?;
                    registry::acquire(Path::new(p), cfg).map_err(|e| {
                        let _ = log_err(&format!("strata: cannot open {p}"), &e);
                        vars::SQLITE_CANTOPEN
                    })?
                };
                if replica.is_none() && !readonly_open {
                    tracing::info!(
                        path = p,
                        "another process replicates this database: opening for reading only"
                    );
                }
                // Connections without the replica (read-only) share its
                // on-demand state when this process has it.
                let lazy = replica
                    .as_ref()
                    .or(registry::find(Path::new(p)).as_ref())
                    .and_then(|r| r.lazy().cloned());
                Kind::Main(Box::new(MainDb {
                    replica,
                    rollback: None,
                    held: false,
                    lazy,
                    autocheckpoint: hook::DEFAULT_AUTOCHECKPOINT,
                    sync_wait: None,
                    gate: busy::gate(Path::new(p)),
                }))
            }
            (OpenKind::Wal, Some(p)) => {
                let db = PathBuf::from(p.strip_suffix("-wal").unwrap_or(p));
                Kind::Wal(Box::new(WalFile {
                    replica: registry::find(&db),
                    capture: WalCapture::default(),
                    db,
                }))
            }
            _ => Kind::Other,
        };
        // SAFETY: base is the registered unix VFS; name_ptr is null, SQLite's, or `owned`.
        let (base, out_flags) = unsafe { BaseFile::open(self.base.0, name_ptr, opts.flags()) }?;
        Ok(Handle::Local(LocalFile {
            base,
            readonly: out_flags & vars::SQLITE_OPEN_READONLY != 0,
            kind,
            _name: owned,
        }))
    }

    fn delete(&self, path: &str) -> VfsResult<()> {
        let c = CString::new(path).map_err(|_| vars::SQLITE_IOERR_DELETE)?;
        // SAFETY: the base VFS's xDelete with a valid C string.
        let x = unsafe { (*self.base.0).xDelete }.ok_or(vars::SQLITE_IOERR_DELETE)?;
        let rc = unsafe { x(self.base.0, c.as_ptr(), 0) };
        if rc == vars::SQLITE_OK {
            Ok(())
        } else {
            Err(rc)
        }
    }

    fn access(&self, path: &str, flags: AccessFlags) -> VfsResult<bool> {
        let c = CString::new(path).map_err(|_| vars::SQLITE_IOERR_ACCESS)?;
        let f = match flags {
            AccessFlags::Exists => vars::SQLITE_ACCESS_EXISTS,
            AccessFlags::Read => vars::SQLITE_ACCESS_READ,
            AccessFlags::ReadWrite => vars::SQLITE_ACCESS_READWRITE,
        };
        let x = unsafe { (*self.base.0).xAccess }.ok_or(vars::SQLITE_IOERR_ACCESS)?;
        let mut out: c_int = 0;
        let rc = unsafe { x(self.base.0, c.as_ptr(), f, &mut out) };
        if rc == vars::SQLITE_OK {
            Ok(out != 0)
        } else {
            Err(rc)
        }
    }

    fn file_size(&self, h: &mut Handle) -> VfsResult<usize> {
        let h = match h {
            Handle::Remote(x) => return Ok(x.file_size()),
            Handle::Local(h) => h,
        };
        h.base.file_size()
    }

    fn truncate(&self, h: &mut Handle, size: usize) -> VfsResult<()> {
        let h = match h {
            Handle::Remote(_) => return Err(vars::SQLITE_READONLY),
            Handle::Local(h) => h,
        };
        if let Kind::Wal(w) = &mut h.kind {
            w.capture.reset();
            // Frames are about to go: the spool must hold them first.
            if let Some(r) = &w.replica {
                r.flush_spool()
                    .map_err(|e| log_err("strata: write spool", &e))?;
            }
        }
        h.base.truncate(size)
    }

    fn write(&self, h: &mut Handle, offset: usize, data: &[u8]) -> VfsResult<usize> {
        let h = match h {
            Handle::Remote(_) => return Err(vars::SQLITE_READONLY),
            Handle::Local(h) => h,
        };
        match &mut h.kind {
            Kind::Other => h.base.write(offset, data),
            Kind::Main(m) => {
                if let Some(rb) = &mut m.rollback {
                    if m.replica.is_none() {
                        tracing::error!(
                            "strata: this process is not the writer of this database (another process replicates it)"
                        );
                        return Err(vars::SQLITE_READONLY);
                    }
                    rb.on_write(offset, data).map_err(|e| {
                        tracing::error!("strata: {e}");
                        vars::SQLITE_IOERR_WRITE
                    })?;
                }
                match &m.lazy {
                    Some(lazy) => {
                        lazy.write_through(offset as u64, data.len(), || h.base.write(offset, data))
                    }
                    None => h.base.write(offset, data),
                }
            }
            Kind::Wal(w) => {
                let Some(replica) = w.replica.clone() else {
                    tracing::error!(db = %w.db.display(), "strata: refusing a write: another process replicates this database; open it read-only here");
                    return Err(vars::SQLITE_READONLY);
                };
                if offset != 0 && w.capture.page_size() == 0 {
                    // The WAL header was written before this handle existed.
                    let mut hdr = [0u8; 32];
                    h.base.read(0, &mut hdr)?;
                    let parsed = WalHeader::parse(&hdr).ok_or(vars::SQLITE_IOERR_WRITE)?;
                    w.capture.set_page_size(parsed.page_size);
                }
                match w.capture.on_write(offset, data) {
                    Ok(WalWrite::Pending) => h.base.write(offset, data),
                    Ok(WalWrite::Header) => {
                        // A WAL restart overwrites the frames the spool's
                        // buffer mirrors: write the buffer out first.
                        replica
                            .flush_spool()
                            .map_err(|e| log_err("strata: write spool", &e))?;
                        h.base.write(offset, data)
                    }
                    Ok(WalWrite::Commit(c)) => {
                        let pos = WalPos {
                            salt1: c.salt1,
                            salt2: c.salt2,
                            frame: c.commit_frame,
                        };
                        let base = &mut h.base;
                        let txid = replica
                            .commit(
                                c.db_pages,
                                c.page_size,
                                pos,
                                c.pages,
                                Stage::WalFrame,
                                || {
                                    base.write(offset, data).map(|_| ()).map_err(|rc| {
                                        Error::unavailable(format!(
                                            "write WAL commit frame: SQLite error {rc}"
                                        ))
                                    })
                                },
                            )
                            .map_err(|e| log_err("strata: commit failed", &e))?;
                        if replica.config().durability == Durability::Sync {
                            hook::committed(&replica, txid);
                        }
                        Ok(data.len())
                    }
                    Err(msg) => {
                        tracing::error!(db = %w.db.display(), "strata: {msg}");
                        Err(vars::SQLITE_IOERR_WRITE)
                    }
                }
            }
        }
    }

    fn read(&self, h: &mut Handle, offset: usize, data: &mut [u8]) -> VfsResult<usize> {
        let h = match h {
            Handle::Remote(x) => return x.read(offset, data),
            Handle::Local(h) => h,
        };
        if let Kind::Main(m) = &h.kind
            && let Some(lazy) = &m.lazy
        {
            lazy.ensure(offset as u64, data.len()).map_err(|e| {
                let _ = log_err("strata: fetch pages from the bucket", &e);
                vars::SQLITE_IOERR_READ
            })?;
        }
        h.base.read(offset, data)
    }

    fn lock(&self, h: &mut Handle, level: LockLevel) -> VfsResult<()> {
        let h = match h {
            Handle::Remote(x) => return x.lock(level),
            Handle::Local(h) => h,
        };
        h.base.lock(level_code(level))?;
        if let Kind::Main(m) = &mut h.kind
            && level == LockLevel::Exclusive
            && m.rollback.is_none()
            && !is_wal_db(&mut h.base)?
        {
            m.rollback = Some(RollbackCapture::default());
        }
        Ok(())
    }

    fn unlock(&self, h: &mut Handle, level: LockLevel) -> VfsResult<()> {
        let h = match h {
            Handle::Remote(x) => {
                x.unlock(level);
                return Ok(());
            }
            Handle::Local(h) => h,
        };
        if let Kind::Main(m) = &mut h.kind
            && level < LockLevel::Exclusive
        {
            // The journal is finalized by now: the transaction committed.
            commit_rollback(m, &mut h.base, Stage::JournalDone)?;
            if m.held {
                if let Some(r) = &m.replica {
                    r.release_hold();
                }
                m.held = false;
            }
            m.rollback = None;
        }
        h.base.unlock(level_code(level))?;
        // Rollback-journal mode has no hook after the lock is released: a
        // sync-mode commit waits here, with the database lock already
        // downgraded (SQLite may or may not report an unlock error).
        if let Kind::Main(m) = &mut h.kind
            && let (Some(txid), Some(r)) = (m.sync_wait, &m.replica)
            && level < LockLevel::Exclusive
        {
            m.sync_wait = None;
            r.wait_synced(txid)
                .map_err(|e| log_err("strata: sync-mode commit is not in the bucket", &e))?;
        }
        Ok(())
    }

    fn check_reserved_lock(&self, h: &mut Handle) -> VfsResult<bool> {
        let h = match h {
            Handle::Remote(_) => return Ok(false),
            Handle::Local(h) => h,
        };
        h.base.check_reserved_lock()
    }

    fn sync(&self, h: &mut Handle) -> VfsResult<()> {
        let h = match h {
            Handle::Remote(_) => return Ok(()),
            Handle::Local(h) => h,
        };
        let replica = match &mut h.kind {
            Kind::Main(m) => {
                // Spool a rollback transaction before its commit point, held
                // back from upload until the journal is finalized.
                commit_rollback(m, &mut h.base, Stage::JournalSynced)?;
                m.replica.clone()
            }
            Kind::Wal(w) => w.replica.clone(),
            Kind::Other => None,
        };
        let Some(r) = replica else {
            return h.base.sync();
        };
        // The spool and the file sync side by side: one fsync's latency, not two.
        let base = &mut h.base;
        let (spool, rc) = r.sync_alongside(|| base.sync());
        spool.map_err(|e| log_err("strata: sync spool", &e))?;
        rc
    }

    fn close(&self, h: Handle) -> VfsResult<()> {
        let h = match h {
            Handle::Remote(_) => return Ok(()),
            Handle::Local(h) => h,
        };
        let LocalFile { base, kind, .. } = h;
        let rc = base.close();
        drop(kind); // the last handle of a replica uploads what is left
        rc
    }

    fn pragma(&self, h: &mut Handle, pragma: Pragma<'_>) -> Result<Option<String>, PragmaErr> {
        let h = match h {
            Handle::Remote(x) if pragma.name.starts_with("strata_") => {
                return x
                    .pragma(pragma.name)
                    .map(Some)
                    .map_err(|e| PragmaErr::Fail(sqlite_code(&e), Some(format!("strata: {e}"))));
            }
            Handle::Remote(_) => return Err(PragmaErr::NotFound),
            Handle::Local(h) => h,
        };
        let Kind::Main(m) = &mut h.kind else {
            return Err(PragmaErr::NotFound);
        };
        if m.sync_mode() {
            match pragma.name {
                hook::PRAGMA_SYNC => return Ok(Some("1".into())),
                // Answered here so that SQLite keeps strata's WAL hook.
                "wal_autocheckpoint" | hook::PRAGMA_AUTOCHECKPOINT => {
                    if let Some(arg) = pragma.arg {
                        m.autocheckpoint = arg.trim().parse().map_err(|_| {
                            PragmaErr::Fail(
                                vars::SQLITE_ERROR,
                                Some(format!(
                                    "wal_autocheckpoint takes a number of frames, not `{arg}`"
                                )),
                            )
                        })?;
                    }
                    return Ok(Some(m.autocheckpoint.to_string()));
                }
                _ => {}
            }
        }
        if !pragma.name.starts_with("strata_") {
            return Err(PragmaErr::NotFound);
        }
        // About SQLite's locks, not replication: any connection answers.
        if pragma.name == "strata_write_lock_handoffs" {
            return Ok(Some(m.gate.handoffs().to_string()));
        }
        let Some(r) = &m.replica else {
            return Err(PragmaErr::Fail(vars::SQLITE_ERROR, Some("strata: this connection does not replicate (read-only, or another process is the writer)".into())));
        };
        super::pragmas::run(r, pragma.name, pragma.arg)
            .map(Some)
            .map_err(|e| PragmaErr::Fail(sqlite_code(&e), Some(format!("strata: {e}"))))
    }

    fn sector_size(&self, h: &mut Handle) -> VfsResult<i32> {
        let h = match h {
            Handle::Remote(_) => return Ok(4096),
            Handle::Local(h) => h,
        };
        Ok(h.base.sector_size())
    }

    fn device_characteristics(&self, h: &mut Handle) -> VfsResult<i32> {
        let h = match h {
            Handle::Remote(x) => return Ok(x.device_characteristics()),
            Handle::Local(h) => h,
        };
        Ok(h.base.device_characteristics())
    }

    fn shm_map(
        &self,
        h: &mut Handle,
        region: usize,
        size: usize,
        extend: bool,
    ) -> VfsResult<Option<NonNull<u8>>> {
        let h = match h {
            Handle::Remote(_) => return Err(vars::SQLITE_IOERR_SHMMAP),
            Handle::Local(h) => h,
        };
        Ok(NonNull::new(h.base.shm_map(region, size, extend)?))
    }

    fn shm_lock(
        &self,
        h: &mut Handle,
        offset: u32,
        count: u32,
        mode: ShmLockMode,
    ) -> VfsResult<()> {
        let h = match h {
            Handle::Remote(_) => return Err(vars::SQLITE_IOERR_SHMLOCK),
            Handle::Local(h) => h,
        };
        let flags = match mode {
            ShmLockMode::LockShared => vars::SQLITE_SHM_LOCK | vars::SQLITE_SHM_SHARED,
            ShmLockMode::LockExclusive => vars::SQLITE_SHM_LOCK | vars::SQLITE_SHM_EXCLUSIVE,
            ShmLockMode::UnlockShared => vars::SQLITE_SHM_UNLOCK | vars::SQLITE_SHM_SHARED,
            ShmLockMode::UnlockExclusive => vars::SQLITE_SHM_UNLOCK | vars::SQLITE_SHM_EXCLUSIVE,
        };
        let result = h.base.shm_lock(offset, count, flags);
        if let (Kind::Main(m), busy::WAL_WRITE_LOCK) = (&h.kind, offset) {
            match (mode, result) {
                (ShmLockMode::LockExclusive, Ok(())) => m.gate.taken(),
                (ShmLockMode::LockExclusive, Err(rc)) if rc & 0xff == vars::SQLITE_BUSY => {
                    m.gate.busy()
                }
                (ShmLockMode::UnlockExclusive, Ok(())) => m.gate.released(),
                _ => {}
            }
        }
        result
    }

    fn shm_barrier(&self, h: &mut Handle) {
        let Handle::Local(h) = h else { return };
        h.base.shm_barrier()
    }

    fn shm_unmap(&self, h: &mut Handle, delete: bool) -> VfsResult<()> {
        let h = match h {
            Handle::Remote(_) => return Ok(()),
            Handle::Local(h) => h,
        };
        h.base.shm_unmap(delete)
    }
}

/// Is the database file in WAL mode (header bytes 18 and 19 are 2)?
fn is_wal_db(base: &mut BaseFile) -> VfsResult<bool> {
    let mut hdr = [0u8; 20];
    let n = base.read(0, &mut hdr)?;
    Ok(n == 20 && hdr[18] == 2 && hdr[19] == 2)
}

/// Spool the pages a rollback-journal transaction wrote, if any.
fn commit_rollback(m: &mut MainDb, base: &mut BaseFile, stage: Stage) -> VfsResult<()> {
    let (Some(rb), Some(replica)) = (&mut m.rollback, &m.replica) else {
        return Ok(());
    };
    if rb.pages.is_empty() {
        return Ok(());
    }
    let page_size = rb.page_size;
    let pages = rb.take();
    let db_pages = (base.file_size()? / page_size as usize) as u32;
    let txid = replica
        .commit(db_pages, page_size, WalPos::default(), pages, stage, || {
            Ok(())
        })
        .map_err(|e| log_err("strata: commit failed", &e))?;
    m.held |= stage == Stage::JournalSynced;
    if replica.config().durability == Durability::Sync {
        m.sync_wait = Some(txid);
    }
    Ok(())
}
