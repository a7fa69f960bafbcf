//! Database files, read-only, served page by page from the bucket through
//! the engine's `PageMap` and the process-wide page cache: opening a large
//! database downloads nothing but the indexes; each read fetches only the
//! pages it touches.
//!
//! - **Live** (`/<tenant>/<db>`): the bucket's head, kept in the kernel's
//!   page cache; the inode shows one state to every handle. It moves to a
//!   newer head only while no process holds a POSIX lock on it (SQLite
//!   read-locks around each read transaction), when a lock or an open comes
//!   and `--refresh` has passed; changed pages leave the kernel's cache first.
//! - **Past** (`@txid/<N>/<db>`, `@history/<time>/<db>`): immutable; maps
//!   are cached (a time that is still in the last minute is resolved again
//!   each time, as commits that old may still be arriving).
//!
//! Page 1 is presented as a rollback-journal database whose change counter
//! is the txid (the engine's `PageMap::read_file_at`), so SQLite needs no
//! `-wal`/`-shm`, drops its cache when the state moves and trusts the size.

use crate::ctx::Ctx;
use crate::errno::{FsError, FsResult};
use crate::inodes::At;
use crate::locks::{Conflict, Locks};
use fuser::{FileHandle, FopenFlags, INodeNo, ReplyEmpty, ReplyOpen};
use moka::sync::Cache;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use strata_vfs::engine::pages::PageMap;
use strata_vfs::engine::{Target, restore};
use strata_vfs::format::keys::DbKeys;
use strata_vfs::types::PageNo;
use strata_vfs::{Error, ErrorKind, Millis};

/// An open database file: the live file (whose state is the inode's), or
/// a past restore point.
#[derive(Clone)]
pub enum DbHandle {
    Live(Arc<Live>),
    Past(Arc<PageMap>),
}

impl DbHandle {
    /// The state this handle reads now.
    pub fn map(&self, ctx: &Ctx) -> FsResult<Arc<PageMap>> {
        match self {
            DbHandle::Live(l) => l.map(ctx),
            DbHandle::Past(m) => Ok(m.clone()),
        }
    }
}

/// The live file of one database: its one state, and the POSIX locks on it.
pub struct Live {
    keys: DbKeys,
    state: Mutex<LiveState>,
}

struct LiveState {
    /// The state every handle reads (and the kernel has cached pages of).
    map: Option<Arc<PageMap>>,
    /// When the head was last looked at.
    checked: Option<Instant>,
    locks: Locks,
    /// A move is under way (on its own thread); `waiters` are answered
    /// when it is done.
    moving: bool,
    waiters: Vec<Waiter>,
}

/// A request answered when a move is done.
enum Waiter {
    Lock {
        owner: u64,
        pid: u32,
        start: u64,
        end: u64,
        reply: ReplyEmpty,
    },
    Open {
        fh: FileHandle,
        flags: FopenFlags,
        reply: ReplyOpen,
    },
}

/// (tenant, database).
type DbName = (Arc<str>, Arc<str>);
type PastKey = (Arc<str>, Arc<str>, At);

/// The database files of one mount: live files, and maps of past points.
pub struct DbFiles {
    live: Mutex<HashMap<DbName, Arc<Live>>>,
    past: Cache<PastKey, Arc<PageMap>>,
}

impl Default for DbFiles {
    fn default() -> Self {
        DbFiles {
            live: Mutex::default(),
            past: Cache::builder().max_capacity(256).build(),
        }
    }
}

fn not_there(e: Error) -> FsError {
    FsError::from(e).resolving()
}

/// The live file of `tenant/db`.
pub fn live(ctx: &Ctx, tenant: &Arc<str>, db: &Arc<str>) -> FsResult<Arc<Live>> {
    let keys = DbKeys::new(tenant, db).map_err(not_there)?;
    Ok(ctx
        .db_files
        .live
        .lock()
        .entry((tenant.clone(), db.clone()))
        .or_insert_with(|| {
            Arc::new(Live {
                keys,
                state: Mutex::new(LiveState {
                    map: None,
                    checked: None,
                    locks: Locks::default(),
                    moving: false,
                    waiters: Vec::new(),
                }),
            })
        })
        .clone())
}

impl LiveState {
    /// Whether a move should start now: none under way, no lock held, and
    /// the head not looked at for `--refresh`.
    fn should_move(&self, ctx: &Ctx) -> bool {
        !self.moving
            && self.locks.is_empty()
            && self.checked.is_none_or(|t| t.elapsed() >= ctx.opts.refresh)
    }
}

impl Live {
    /// The state the file shows now (built from the head on first use;
    /// it moves only as described in the module docs).
    pub fn map(&self, ctx: &Ctx) -> FsResult<Arc<PageMap>> {
        let mut st = self.state.lock();
        if let Some(m) = &st.map {
            return Ok(m.clone());
        }
        let m =
            Arc::new(PageMap::build(ctx.store(), &self.keys, Target::Latest).map_err(not_there)?);
        st.map = Some(m.clone());
        st.checked = Some(Instant::now());
        Ok(m)
    }

    /// F_SETLK F_RDLCK by `owner`: granted at once, or, when it is the only
    /// lock and the head may have moved, after a move (see the module docs).
    /// Never blocks the calling FUSE thread: a move runs on its own thread
    /// and answers `reply` itself.
    pub fn read_lock(
        self: &Arc<Self>,
        ctx: &Arc<Ctx>,
        ino: u64,
        (owner, pid, start, end): (u64, u32, u64, u64),
        reply: ReplyEmpty,
    ) {
        let w = Waiter::Lock {
            owner,
            pid,
            start,
            end,
            reply,
        };
        self.wait_or_answer(ctx, ino, w);
    }

    /// An open handle of the live file: answered at once, or after a move if
    /// no lock is held and one is due (for readers that never lock).
    pub fn opened(
        self: &Arc<Self>,
        ctx: &Arc<Ctx>,
        ino: u64,
        fh: FileHandle,
        flags: FopenFlags,
        reply: ReplyOpen,
    ) {
        self.wait_or_answer(ctx, ino, Waiter::Open { fh, flags, reply });
    }

    fn wait_or_answer(self: &Arc<Self>, ctx: &Arc<Ctx>, ino: u64, w: Waiter) {
        let mut st = self.state.lock();
        if st.moving {
            st.waiters.push(w);
            return;
        }
        if st.should_move(ctx) {
            st.moving = true;
            st.waiters.push(w);
            drop(st);
            let (live, c) = (self.clone(), ctx.clone());
            let spawned = std::thread::Builder::new()
                .name("strata-move".into())
                .spawn(move || live.run_move(&c, ino));
            if let Err(e) = spawned {
                tracing::warn!("{}: could not start a move: {e}", self.keys.root());
                self.finish_move();
            }
            return;
        }
        let done = Self::answer(&mut st, w);
        drop(st);
        done();
    }

    /// Apply a waiter to the state (a lock is recorded) and return its reply.
    fn answer(st: &mut LiveState, w: Waiter) -> Box<dyn FnOnce() + Send> {
        match w {
            Waiter::Lock {
                owner,
                pid,
                start,
                end,
                reply,
            } => {
                // Read locks never conflict: only write locks could, and
                // none is ever granted on a live file.
                match st.locks.set(owner, pid, start, end, libc::F_RDLCK) {
                    Ok(()) => Box::new(move || reply.ok()),
                    Err(e) => Box::new(move || reply.error(e)),
                }
            }
            Waiter::Open { fh, flags, reply } => Box::new(move || reply.opened(fh, flags)),
        }
    }

    /// F_SETLK F_UNLCK.
    pub fn unlock(&self, owner: u64, start: u64, end: u64) {
        let _ = self
            .state
            .lock()
            .locks
            .set(owner, 0, start, end, libc::F_UNLCK);
    }

    /// `owner` closed a descriptor of the file: its locks go.
    pub fn drop_owner(&self, owner: u64) {
        self.state.lock().locks.drop_owner(owner);
    }

    /// F_GETLK.
    pub fn conflict(&self, owner: u64, start: u64, end: u64, typ: i32) -> Option<Conflict> {
        self.state.lock().locks.conflict(owner, start, end, typ)
    }

    /// Look at the head; if it moved, switch the state and drop what
    /// changed from the kernel's cache; then answer the waiters. No lock is
    /// held meanwhile (new lock requests wait), so no reader is inside a
    /// transaction: the switch comes before the invalidation, so a read
    /// racing it (from a process that does not lock) is dropped too.
    fn run_move(&self, ctx: &Ctx, ino: u64) {
        let old = self.state.lock().map.clone();
        let fresh = restore::read_manifest(ctx.store(), &self.keys).and_then(|m| match &old {
            Some(o) if o.txid == m.head && o.db_id() == m.db_id => Ok(None),
            Some(o) => {
                PageMap::build_after(ctx.store(), &self.keys, &m, o).map(|p| Some(Arc::new(p)))
            }
            None => PageMap::build_with(ctx.store(), &self.keys, Target::Latest, Some(&m))
                .map(|p| Some(Arc::new(p))),
        });
        match fresh {
            Ok(Some(new)) => {
                self.state.lock().map = Some(new.clone());
                ctx.counters.live_moves.fetch_add(1, Ordering::Relaxed);
                if let Some(old) = old {
                    let plan = invalidation(&old, &new, &new.changed_since(&old));
                    tracing::debug!(
                        from = old.txid.0,
                        to = new.txid.0,
                        ranges = plan.len(),
                        "{}: live file moves",
                        self.keys.root()
                    );
                    invalidate(ctx, ino, &plan);
                }
            }
            Ok(None) => {}
            Err(e) => match &old {
                Some(o) if e.kind() == ErrorKind::Unavailable => tracing::warn!(
                    "{}: serving txid {} (could not check for newer: {e})",
                    self.keys.root(),
                    o.txid
                ),
                _ => tracing::warn!("{}: could not check for newer: {e}", self.keys.root()),
            },
        }
        self.finish_move();
    }

    fn finish_move(&self) {
        let replies: Vec<_> = {
            let mut st = self.state.lock();
            st.checked = Some(Instant::now());
            st.moving = false;
            let ws = std::mem::take(&mut st.waiters);
            ws.into_iter().map(|w| Self::answer(&mut st, w)).collect()
        };
        for r in replies {
            r();
        }
    }
}

/// What to drop from the kernel's cache when the file moves from `old` to
/// `new`, given the pages that differ: (offset, length) ranges, length 0
/// meaning "to the end". Page 1 always (its header shows the txid and the
/// size), runs of changed pages coalesced, the tail if the size changed;
/// the whole file if the page size changed or over a quarter of it did.
fn invalidation(old: &PageMap, new: &PageMap, changed: &[PageNo]) -> Vec<(u64, u64)> {
    plan_ranges(
        (old.page_size, old.db_pages),
        (new.page_size, new.db_pages),
        changed,
    )
}

fn plan_ranges(old: (u32, u32), new: (u32, u32), changed: &[PageNo]) -> Vec<(u64, u64)> {
    let whole = vec![(0, 0)];
    if old.0 != new.0 || new.0 == 0 {
        return whole;
    }
    let ps = new.0 as u64;
    let shared = old.1.min(new.1);
    let most = old.1.max(new.1).max(1);
    if changed.len() as u64 * 4 > most as u64 {
        return whole;
    }
    let mut out = Vec::new();
    let range = |(a, b): (u32, u32)| ((a as u64 - 1) * ps, (b - a + 1) as u64 * ps);
    let mut run = (1u32, 1u32);
    for p in changed.iter().map(|p| p.0).filter(|&p| p <= shared) {
        if p <= run.1 + 1 {
            run.1 = run.1.max(p);
        } else {
            out.push(range(run));
            run = (p, p);
        }
    }
    out.push(range(run));
    if old.1 != new.1 {
        out.push((shared as u64 * ps, 0));
    }
    out
}

/// Drop `ranges` of inode `ino` from the kernel's page cache (and its
/// attributes). Called with no lock held that a FUSE thread needs: the
/// kernel waits for reads in flight on those pages, which the FUSE threads
/// answer meanwhile.
fn invalidate(ctx: &Ctx, ino: u64, ranges: &[(u64, u64)]) {
    let Some(n) = ctx.notifier.get() else {
        return;
    };
    for &(off, len) in ranges {
        ctx.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = n.inval_inode(INodeNo(ino), off as i64, len as i64) {
            tracing::warn!("invalidate inode {ino} at {off}+{len}: {e}; dropping all of it");
            if let Err(e) = n.inval_inode(INodeNo(ino), 0, 0) {
                tracing::error!("invalidate inode {ino}: {e}: readers may see stale pages");
            }
            return;
        }
    }
}

/// Whether a restore point can no longer change: any txid, and times more
/// than a minute ago (a time since may still gain commits being uploaded).
/// Only settled points are cached (here and by the kernel).
pub fn settled(at: At) -> bool {
    match at {
        At::TxId(_) => true,
        At::Time(t) => t.0 + 60_000 < Millis::now().0,
    }
}

/// The map of a past restore point (cached unless the time is recent).
pub fn past(ctx: &Ctx, tenant: &Arc<str>, db: &str, at: At) -> FsResult<Arc<PageMap>> {
    let keys = DbKeys::new(tenant, db).map_err(not_there)?;
    let build = || {
        let target = match at {
            At::TxId(t) => Target::TxId(t),
            At::Time(t) => Target::Time(t),
        };
        PageMap::build(ctx.store(), &keys, target).map(Arc::new)
    };
    if !settled(at) {
        return build().map_err(not_there);
    }
    ctx.db_files
        .past
        .try_get_with((tenant.clone(), db.into(), at), build)
        .map_err(|e: Arc<Error>| not_there(e.clone_error()))
}

/// Fill `buf` from `offset` of `map`'s state (short at the end of the
/// database), page 1 presented as the module docs say.
pub fn read(ctx: &Ctx, map: &PageMap, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
    Ok(map.read_file_at(ctx.store(), offset, buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(v: &[u32]) -> Vec<PageNo> {
        v.iter().map(|&p| PageNo(p)).collect()
    }

    #[test]
    fn invalidation_coalesces_runs_and_always_drops_page_1() {
        let ps = 4096;
        // Two pages next to each other and one apart, same size.
        let got = plan_ranges((4096, 100), (4096, 100), &pages(&[7, 8, 20]));
        assert_eq!(got, vec![(0, ps), (6 * ps, 2 * ps), (19 * ps, ps)]);
        // Page 2 joins page 1's run.
        let got = plan_ranges((4096, 100), (4096, 100), &pages(&[1, 2, 3]));
        assert_eq!(got, vec![(0, 3 * ps)]);
        // Grown by two pages: the tail from the old end.
        let got = plan_ranges((4096, 100), (4096, 102), &pages(&[50, 101, 102]));
        assert_eq!(got, vec![(0, ps), (49 * ps, ps), (100 * ps, 0)]);
        // Shrunk.
        let got = plan_ranges((4096, 100), (4096, 90), &pages(&[91, 92]));
        assert_eq!(got, vec![(0, ps), (90 * ps, 0)]);
        // Over a quarter changed, or a new page size: all of it.
        let many: Vec<u32> = (10..40).collect();
        assert_eq!(
            plan_ranges((4096, 100), (4096, 100), &pages(&many)),
            vec![(0, 0)]
        );
        assert_eq!(plan_ranges((4096, 100), (1024, 400), &[]), vec![(0, 0)]);
        // Nothing changed but the header.
        assert_eq!(plan_ranges((1024, 10), (1024, 10), &[]), vec![(0, 1024)]);
    }
}
