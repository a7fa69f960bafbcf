//! Database files, read-only, served page by page from the bucket through
//! the engine's `PageMap` and the process-wide page cache: opening a large
//! database downloads nothing but the indexes; each read fetches only the
//! pages it touches.
//!
//! - **Live** (`/<tenant>/<db>`): the bucket's head. An open file is pinned
//!   to one restore point, so every read sees one consistent state. It moves
//!   to the newest head when a read covers the file change counter (byte 24),
//!   which SQLite reads when it starts a read transaction, and the head is
//!   re-checked (one GET of the manifest) at most once per `--refresh`. So a
//!   reader's transaction sees the state the bucket had at most `--refresh`
//!   before it started (plus the writer's replication lag).
//! - **Past** (`@txid/<N>/<db>`, `@history/<time>/<db>`): immutable; maps
//!   are cached (a time that is still in the last minute is resolved again
//!   each time, as commits that old may still be arriving).
//!
//! Page 1 is presented as a rollback-journal database (format bytes 18 and
//! 19 read as 1), so SQLite needs no `-wal`/`-shm`: the image already holds
//! every transaction up to the point. The change counter (24) and its
//! version-valid-for copy (92) read as the txid, and the size in pages (28)
//! as the map's, so SQLite drops its cache when the state moves and trusts
//! the size.

use crate::ctx::Ctx;
use crate::errno::{FsError, FsResult};
use crate::inodes::At;
use moka::sync::Cache;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use strata_vfs::engine::pages::PageMap;
use strata_vfs::engine::{Target, restore};
use strata_vfs::format::keys::DbKeys;
use strata_vfs::{Error, ErrorKind, Millis};

/// An open database file: the restore point it reads, and the live file it
/// follows (if any).
pub struct DbHandle {
    pub map: Arc<PageMap>,
    pub live: Option<Arc<Live>>,
}

/// The live file of one database.
pub struct Live {
    keys: DbKeys,
    state: Mutex<LiveState>,
}

struct LiveState {
    map: Option<Arc<PageMap>>,
    checked: Option<Instant>,
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
                }),
            })
        })
        .clone())
}

impl Live {
    /// The newest restore point, checking the bucket's head at most once per
    /// refresh interval. While the bucket is unreachable the last known
    /// state is kept (and logged); without one, the error is returned.
    pub fn current(&self, ctx: &Ctx) -> FsResult<Arc<PageMap>> {
        let mut st = self.state.lock();
        if let (Some(m), Some(t)) = (&st.map, st.checked)
            && t.elapsed() < ctx.opts.refresh
        {
            return Ok(m.clone());
        }
        let fresh = restore::read_manifest(ctx.store(), &self.keys).and_then(|m| match &st.map {
            Some(map) if map.txid == m.head => Ok(map.clone()),
            _ => PageMap::build(ctx.store(), &self.keys, Target::Latest).map(Arc::new),
        });
        match (fresh, st.map.clone()) {
            (Ok(map), _) => {
                st.map = Some(map.clone());
                st.checked = Some(Instant::now());
                Ok(map)
            }
            (Err(e), Some(old)) if e.kind() == ErrorKind::Unavailable => {
                tracing::warn!(
                    "{}: serving txid {} (could not check for newer: {e})",
                    self.keys.root(),
                    old.txid
                );
                st.checked = Some(Instant::now());
                Ok(old)
            }
            (Err(e), _) => Err(not_there(e)),
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

/// Fill `buf` from `offset` of `map`'s state (short at the end of the database).
pub fn read(ctx: &Ctx, map: &PageMap, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
    let n = map.read_at(ctx.store(), offset, buf)?;
    present_header(map, offset, &mut buf[..n]);
    Ok(n)
}

impl DbHandle {
    /// Whether a read of `offset..offset+len` starts a new read transaction
    /// (it covers the change counter): the moment a live file may move on.
    pub fn starts_transaction(offset: u64, len: u32) -> bool {
        offset <= 24 && offset + len as u64 > 24
    }
}

/// Rewrite the page-1 header bytes as described in the module docs.
fn present_header(map: &PageMap, offset: u64, buf: &mut [u8]) {
    let counter = (map.txid.0 as u32).to_be_bytes();
    let pages = map.db_pages.to_be_bytes();
    let patches: [(u64, &[u8]); 5] = [
        (18, &[1]),
        (19, &[1]),
        (24, &counter),
        (28, &pages),
        (92, &counter),
    ];
    for (at, bytes) in patches {
        for (i, b) in bytes.iter().enumerate() {
            let pos = at + i as u64;
            if pos >= offset && pos < offset + buf.len() as u64 {
                buf[(pos - offset) as usize] = *b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_start_is_a_read_over_byte_24() {
        assert!(DbHandle::starts_transaction(24, 16));
        assert!(DbHandle::starts_transaction(0, 4096));
        assert!(!DbHandle::starts_transaction(0, 24));
        assert!(!DbHandle::starts_transaction(4096, 4096));
    }
}
