//! Materialize any restore point into a file: the latest state, the state
//! right after a txid, or the state at a time.
//!
//! Plan: the newest snapshot at or before the target, then every segment after
//! it in txid order, applying only transactions up to the target. The latest
//! state and any point since the last snapshot come from the manifest alone;
//! older points list the bucket (`history.rs`). Objects are fetched in
//! parallel (large ones as ranged GETs), checked against their checksums, and
//! the result is written to a temporary file that is moved into place only
//! after it was verified.

use super::history;
use crate::bucket::{ObjectStore, Store};
use crate::error::{Error, IoResultExt, Result, ResultExt};
use crate::format::keys::DbKeys;
use crate::format::manifest::{Manifest, SegmentRef, SnapshotRef};
use crate::format::segment::{self, SegmentKind};
use crate::types::{DbId, Millis, PageNo, TxId};
use bytes::{Bytes, BytesMut};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Which state to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Latest,
    /// The state right after this transaction committed.
    TxId(TxId),
    /// The state after the last transaction committed at or before this time.
    Time(Millis),
}

/// Called with (bytes done, bytes total) as objects arrive.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;
/// Checks a restored file before it is moved into place (e.g. `PRAGMA integrity_check`).
pub type VerifyFn = Arc<dyn Fn(&Path) -> Result<()> + Send + Sync>;

#[derive(Clone)]
pub struct Options {
    /// Concurrent GETs.
    pub parallelism: usize,
    /// Objects larger than this are fetched as parallel ranged GETs.
    pub chunk: u64,
    pub progress: Option<ProgressFn>,
    pub verify: Option<VerifyFn>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            parallelism: 8,
            chunk: 8 << 20,
            progress: None,
            verify: None,
        }
    }
}

/// What a restore needs: a base snapshot and the segments after it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The history the objects belong to (a database deleted and created
    /// again under its name has another, whose object keys may repeat).
    pub db_id: DbId,
    pub txid: TxId,
    pub snapshot: Option<SnapshotRef>,
    pub segments: Vec<SegmentRef>,
}

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.size)
            + self.segments.iter().map(|s| s.size).sum::<u64>()
    }
}

/// The result of a restore.
#[derive(Debug, Clone)]
pub struct Restored {
    pub txid: TxId,
    pub commit: Millis,
    pub page_size: u32,
    pub db_pages: u32,
    pub bytes_fetched: u64,
}

impl Restored {
    /// The file now holds the state after `txn`.
    fn reached(&mut self, txn: &segment::TxnEntry, page_size: u32) {
        self.txid = txn.txid;
        self.commit = txn.commit;
        self.db_pages = txn.db_pages;
        self.page_size = page_size;
    }
}

pub fn read_manifest(store: &dyn ObjectStore, keys: &DbKeys) -> Result<Manifest> {
    let key = keys.manifest();
    match store.get(&key) {
        Ok(obj) => Manifest::from_bytes(&obj.data).ctx(&key),
        Err(e) if e.is_not_found() => Err(Error::not_found(format!(
            "no database at {}/{} ({key} is missing)",
            store.describe(),
            keys.root()
        ))),
        Err(e) => Err(e.context(format!("read {key}"))),
    }
}

/// Work out which objects restore `target`.
pub fn plan(store: &dyn ObjectStore, keys: &DbKeys, target: Target) -> Result<Plan> {
    plan_with(store, keys, target, None)
}

/// As [`plan`], with the manifest if the caller just read it.
pub fn plan_with(
    store: &dyn ObjectStore,
    keys: &DbKeys,
    target: Target,
    manifest: Option<&Manifest>,
) -> Result<Plan> {
    let m = match manifest {
        Some(m) => m.clone(),
        None => read_manifest(store, keys)?,
    };
    let snap_txid = m.snapshot.as_ref().map_or(TxId::ZERO, |s| s.txid);
    let from_manifest = |txid: TxId| Plan {
        db_id: m.db_id,
        txid,
        snapshot: m.snapshot.clone(),
        segments: m
            .segments
            .iter()
            .filter(|s| s.first <= txid)
            .cloned()
            .collect(),
    };
    match target {
        Target::Latest => Ok(from_manifest(m.head)),
        Target::TxId(t) if t > m.head => Err(Error::invalid(format!(
            "txid {t} is beyond the last replicated txid {} of {}",
            m.head,
            keys.root()
        ))),
        Target::TxId(t) if t == TxId::ZERO => {
            Err(Error::invalid("txid 0 is before the first transaction"))
        }
        Target::TxId(t)
            if t >= snap_txid
                && (m.snapshot.is_some()
                    || m.segments.first().is_some_and(|s| s.first == TxId(1))) =>
        {
            Ok(from_manifest(t))
        }
        Target::TxId(t) => history::load(store, keys, Some(m))?.plan_for(t),
        Target::Time(ts) => {
            let h = history::load(store, keys, Some(m))?;
            let t = h.txid_at(store, ts)?;
            h.plan_for(t)
        }
    }
}

/// Restore `target` into `out` (replacing it only once the result is complete
/// and verified).
pub fn restore(
    store: &Store,
    keys: &DbKeys,
    target: Target,
    out: &Path,
    opts: &Options,
) -> Result<Restored> {
    let plan = plan(store.as_ref(), keys, target)?;
    let tmp = super::replica::with_suffix(out, &format!(".strata-restore-{}", std::process::id()));
    let result = (|| {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(&tmp)
            .io_ctx(format!("create {}", tmp.display()))?;
        let r = materialize(store.as_ref(), &plan, &file, opts)?;
        file.sync_all().io_ctx("sync restored file")?;
        drop(file);
        if let Some(verify) = &opts.verify {
            let checked = verify(&tmp).ctx(format!("verify restore of txid {}", r.txid));
            // A read-only check of a WAL-mode file leaves an empty -wal/-shm.
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(super::replica::with_suffix(&tmp, suffix));
            }
            checked?;
        }
        std::fs::rename(&tmp, out).io_ctx(format!("move restored file to {}", out.display()))?;
        if let Some(dir) = out.parent() {
            super::spool::sync_dir(dir);
        }
        Ok(r)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Apply a plan to an (empty) file.
pub fn materialize(
    store: &dyn ObjectStore,
    plan: &Plan,
    file: &File,
    opts: &Options,
) -> Result<Restored> {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    // A split snapshot's parts are not in `plan.bytes()`: its index adds them.
    let total = AtomicU64::new(plan.bytes());
    let done = AtomicU64::new(0);
    let tick = |n: u64| {
        let d = done.fetch_add(n, Relaxed) + n;
        if let Some(p) = &opts.progress {
            p(d, total.load(Relaxed))
        }
    };
    let mut state = Restored {
        txid: TxId::ZERO,
        commit: Millis(0),
        page_size: 0,
        db_pages: 0,
        bytes_fetched: 0,
    };
    if let Some(snap) = &plan.snapshot {
        let data = fetch(store, &snap.key, snap.size, opts, &tick)?;
        let header = segment::SegmentHeader::decode(&data).ctx(&snap.key)?;
        if header.kind == SegmentKind::SplitSnapshot {
            total.fetch_add(header.body_len, Relaxed);
            apply_split(store, &snap.key, &data, file, opts, &tick, &mut state)?;
        } else {
            apply(&snap.key, &data, plan.txid, file, &mut state)?;
        }
    }
    // Fetch segments `parallelism` at a time, apply them in order.
    for batch in plan.segments.chunks(opts.parallelism.max(1)) {
        let fetched: Vec<Result<Bytes>> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .map(|seg| {
                    s.spawn(|| {
                        fetch(
                            store,
                            &seg.key,
                            seg.size,
                            &Options {
                                parallelism: 1,
                                ..opts.clone()
                            },
                            &tick,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::corrupt("segment fetch thread panicked")))
                })
                .collect()
        });
        for (seg, data) in batch.iter().zip(fetched) {
            apply(&seg.key, &data?, plan.txid, file, &mut state)?;
        }
    }
    if state.txid != plan.txid {
        return Err(Error::corrupt(format!(
            "restore reached txid {} but txid {} was requested: the bucket is missing history",
            state.txid, plan.txid
        )));
    }
    let len = state.db_pages as u64 * state.page_size as u64;
    file.set_len(len).io_ctx("size restored file")?;
    state.bytes_fetched = done.into_inner();
    Ok(state)
}

/// Fetch a whole object, as parallel ranged GETs when it is large.
pub(crate) fn fetch(
    store: &dyn ObjectStore,
    key: &str,
    size: u64,
    opts: &Options,
    tick: &(dyn Fn(u64) + Sync),
) -> Result<Bytes> {
    if size <= opts.chunk || opts.parallelism <= 1 {
        let obj = store.get(key).ctx(format!("fetch {key}"))?;
        tick(obj.data.len() as u64);
        return Ok(obj.data);
    }
    let ranges: Vec<(u64, u64)> = (0..size)
        .step_by(opts.chunk as usize)
        .map(|a| (a, (a + opts.chunk).min(size)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parts: Vec<Result<Vec<(usize, Bytes)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.parallelism.min(ranges.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut got = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(a, b)) = ranges.get(i) else {
                            return Ok(got);
                        };
                        let part = store
                            .get_range(key, a..b)
                            .ctx(format!("fetch {key} bytes {a}..{b}"))?;
                        tick(part.len() as u64);
                        got.push((i, part));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::corrupt("fetch thread panicked")))
            })
            .collect()
    });
    let mut all: Vec<(usize, Bytes)> = Vec::with_capacity(ranges.len());
    for p in parts {
        all.extend(p?);
    }
    all.sort_by_key(|(i, _)| *i);
    let mut out = BytesMut::with_capacity(size as usize);
    for (_, part) in all {
        out.extend_from_slice(&part);
    }
    if out.len() as u64 != size {
        return Err(Error::corrupt(format!(
            "{key}: expected {size} bytes, got {}",
            out.len()
        )));
    }
    Ok(out.freeze())
}

/// Write a split snapshot (`index` is its index object): parts are fetched
/// in parallel and their pages written as each part arrives, so at most
/// `parallelism` parts are in memory.
fn apply_split(
    store: &dyn ObjectStore,
    key: &str,
    index: &[u8],
    file: &File,
    opts: &Options,
    tick: &(dyn Fn(u64) + Sync),
    st: &mut Restored,
) -> Result<()> {
    let idx = segment::decode_split_index(index).ctx(key)?;
    let txn = *idx
        .txns
        .first()
        .ok_or_else(|| Error::corrupt(format!("{key}: snapshot without a txn")))?;
    let ps = idx.header.page_size;
    // A part's pages are consecutive: write them with one call (around the
    // page cache where possible: parts arrive in any order).
    let direct = super::direct::DirectWriter::for_file(file, ps);
    let write_part = |i: usize, data: &[u8], scratch: &mut super::direct::Scratch| -> Result<()> {
        // (Errors name the part: `for_each_part` adds its key.)
        let (first, pages) = match idx.check_raw_part(i, data)? {
            // The part is its pages' images: checked, written as fetched.
            Some(first) => (first, data),
            None => {
                let out = scratch.get(idx.pages_in_part(i).len() * ps as usize);
                (idx.decode_part_into(i, data, out)?, &*out)
            }
        };
        super::direct::write_pages(file, direct.as_ref(), pages, first.offset(ps))
            .io_ctx("write restored pages")
    };
    super::parts::for_each_part(store, key, &idx, opts.parallelism, tick, true, &write_part)?;
    file.set_len(txn.db_pages as u64 * ps as u64)
        .io_ctx("size restored file")?;
    st.reached(&txn, ps);
    Ok(())
}

/// Apply the transactions of one segment (or snapshot) up to `upto`.
fn apply(key: &str, data: &[u8], upto: TxId, file: &File, st: &mut Restored) -> Result<()> {
    let seg = segment::decode(data).ctx(key)?;
    let idx = &seg.index;
    let ps = idx.header.page_size;
    let mut latest: std::collections::HashMap<PageNo, Vec<u8>> = Default::default();
    for txn in &idx.txns {
        if txn.txid > upto {
            break;
        }
        let snapshot = idx.header.kind.is_snapshot();
        if !snapshot && st.txid != TxId::ZERO && txn.txid != st.txid.next() {
            return Err(Error::corrupt(format!(
                "{key}: txid {} does not follow txid {}",
                txn.txid, st.txid
            )));
        }
        if ps != st.page_size && st.page_size != 0 {
            // A page-size change rewrites the whole file.
            file.set_len(0).io_ctx("reset restored file")?;
        }
        let entries =
            &idx.pages[txn.first_entry as usize..(txn.first_entry + txn.entry_count) as usize];
        for e in entries {
            let start = e.offset as usize;
            let stored = data
                .get(start..start + e.stored_len as usize)
                .ok_or_else(|| {
                    Error::corrupt(format!("{key}: page {} lies outside the object", e.pgno))
                })?;
            // A delta's base is this page's previous image in this segment.
            let mut page = vec![0u8; ps as usize];
            match latest.get(&e.pgno) {
                Some(base) if e.delta => idx.page_into_with_base(e, stored, base, &mut page),
                _ => idx.page_into(e, stored, &mut page),
            }
            .ctx(key)?;
            file.write_all_at(&page, PageNo::offset(e.pgno, ps))
                .io_ctx("write restored page")?;
            latest.insert(e.pgno, page);
        }
        if txn.db_pages < st.db_pages || ps != st.page_size {
            file.set_len(txn.db_pages as u64 * ps as u64)
                .io_ctx("truncate restored file")?;
        }
        st.reached(txn, ps);
    }
    Ok(())
}

/// An empty read-write scratch file (restores, snapshots, hydration).
pub(crate) fn scratch_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .io_ctx(format!("create {}", path.display()))
}
