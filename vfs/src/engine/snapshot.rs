//! Writing snapshots: the full page image at a txid, and beside it a small
//! *hot pages* object.
//!
//! A snapshot is written page by page from a file. A large one is split:
//! its body goes to the bucket in parts of `part_bytes` (uploaded a few at
//! a time while the rest is still being read), then its index object, so
//! memory stays bounded whatever the database's size, and a reader never
//! finds an index whose parts are not all there (§2.8 of `docs/format.md`).
//!
//! The hot object holds page 1 and every interior B-tree page of the
//! snapshot: what any lookup walks through before it reaches a leaf. A cold
//! reader ([`super::pages::PageMap`]) fetches it in the same round trip as the
//! snapshot's index, so a point query on a database nobody has locally costs
//! three sequential reads: the manifest, {index ∥ hot pages}, the leaf.
//! The hot object is an optimization only: it is checked page by page against
//! the snapshot's index (crc), and a reader that finds none goes without.

use super::restore::{self, Options, Plan};
use crate::bucket::{ObjectStore, Store};
use crate::error::{Error, ErrorKind, IoResultExt, Result};
use crate::format::keys::{self, DbKeys};
use crate::format::manifest::{Manifest, SnapshotRef};
use crate::format::segment::{
    self, EncodeOptions, SegmentKind, SegmentMeta, SnapshotWriter, TxnPages, Written,
};
use crate::metrics::METRICS;
use crate::types::{DbId, Epoch, Millis, PageNo, TxId};
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// Parts uploaded at once (and so, with the one being filled, held in memory).
const PART_UPLOADS: usize = 4;

/// B-tree page types whose cells point at other pages (interior index and
/// interior table pages). Other pages (leaves, overflow, freelist) are not
/// hot; a misread type byte costs only a few bytes more in the hot object.
fn is_interior(pgno: u32, page: &[u8]) -> bool {
    let at = if pgno == 1 { 100 } else { 0 };
    matches!(page.get(at), Some(0x02 | 0x05))
}

/// Which state a snapshot holds, and of what.
pub(crate) struct Source {
    pub txid: TxId,
    pub commit: Millis,
    pub db_id: DbId,
    pub epoch: Epoch,
    pub page_size: u32,
    pub db_pages: u32,
}

/// Create-only upload; storing again what a lost response already stored
/// is not an error (every object here is a pure function of its key).
fn put_new(store: &dyn ObjectStore, key: &str, data: Bytes) -> Result<()> {
    let len = data.len() as u64;
    match store.put_if_absent(key, data) {
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::Conflict => return Ok(()),
        Err(err) => return Err(err.context(format!("upload {key}"))),
    }
    METRICS.bytes_uploaded.inc_by(len);
    Ok(())
}

/// Write the pages of `file` to the bucket as the snapshot `src`: parts (if
/// it is large), then the snapshot object, then its hot pages (best effort:
/// readers go without). Returns the manifest's reference to it and the
/// bytes stored (parts included).
pub(crate) fn write(
    store: &dyn ObjectStore,
    keys: &DbKeys,
    file: &File,
    src: &Source,
    part_bytes: u64,
) -> Result<(SnapshotRef, u64)> {
    let key = keys.snapshot(src.txid, src.commit);
    let meta = SegmentMeta {
        db_id: src.db_id,
        epoch: src.epoch,
        page_size: src.page_size,
        kind: SegmentKind::Snapshot,
    };
    let mut w = SnapshotWriter::new(
        &meta,
        src.txid,
        src.commit,
        src.db_pages,
        part_bytes,
        &EncodeOptions::default(),
    )?;
    let mut hot = Vec::new();
    let part_key = |n: u32| {
        keys::snapshot_part(&key, src.epoch, n)
            .ok_or_else(|| Error::invalid(format!("{key}: not a snapshot key")))
    };
    // Read and encode here; upload full parts on PART_UPLOADS threads.
    let (tx, rx) = mpsc::sync_channel::<(u32, Bytes)>(PART_UPLOADS);
    let rx = parking_lot::Mutex::new(rx);
    let failed = AtomicBool::new(false);
    let (written, uploads) = std::thread::scope(|s| {
        let uploaders: Vec<_> = (0..PART_UPLOADS)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut result = Ok(());
                    loop {
                        // (The lock is released at the end of this statement.)
                        let Ok((n, part)) = rx.lock().recv() else {
                            return result;
                        };
                        // After a failure, drain without uploading, so the
                        // reader never blocks on a full channel.
                        if result.is_ok() && !failed.load(Ordering::Relaxed) {
                            result = part_key(n).and_then(|k| put_new(store, &k, part));
                            failed.fetch_or(result.is_err(), Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let mut parts = 0u32;
        let mut send = |part: Bytes| -> Result<()> {
            if failed.load(Ordering::Relaxed) {
                return Err(Error::unavailable("snapshot part uploads stopped"));
            }
            tx.send((parts, part))
                .map_err(|_| Error::unavailable("snapshot part uploads stopped"))?;
            parts += 1;
            Ok(())
        };
        let written = (|| -> Result<Written> {
            let mut buf = vec![0u8; src.page_size as usize];
            for p in 1..=src.db_pages {
                file.read_exact_at(&mut buf, PageNo(p).offset(src.page_size))
                    .io_ctx("read page for snapshot")?;
                if p == 1 || is_interior(p, &buf) {
                    hot.push((PageNo(p), Bytes::copy_from_slice(&buf)));
                }
                if let Some(part) = w.push(&buf)? {
                    send(part)?;
                }
            }
            let written = w.finish()?;
            if let Written::Split {
                last: Some(part), ..
            } = &written
            {
                send(part.clone())?;
            }
            Ok(written)
        })();
        drop(tx);
        let uploads: Result<()> = uploaders.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::corrupt("part upload thread panicked")))
        });
        (written, uploads)
    });
    // An upload error explains a stopped channel better than the send does.
    uploads?;
    let object = match written? {
        Written::Whole(b) => b,
        Written::Split { index, .. } => index,
    };
    let size = object.len() as u64;
    let header = segment::SegmentHeader::decode(&object)?;
    let prefix = header.prefix_len();
    put_new(store, &key, object)?;
    METRICS.snapshots.inc();
    // A subset of one state's pages: a one-txn object of segment kind.
    let hot = segment::encode(
        &SegmentMeta {
            kind: SegmentKind::Segment,
            ..meta
        },
        &[TxnPages {
            txid: src.txid,
            commit: src.commit,
            db_pages: src.db_pages,
            pages: hot,
        }],
    )?;
    let hot_key = keys.hot_pages(src.txid, src.commit);
    if let Err(err) = put_new(store, &hot_key, hot) {
        tracing::warn!(error = %err, key = hot_key, "hot pages not uploaded; cold reads take longer");
    }
    let snapshot = SnapshotRef {
        txid: src.txid,
        commit: src.commit,
        key,
        size,
        prefix: Some(prefix),
    };
    Ok((snapshot, header.object_len()))
}

/// Snapshot the manifest's latest state (built from the bucket itself, so
/// it can never disagree with the history it replaces).
pub(crate) fn write_latest(
    store: &Store,
    keys: &DbKeys,
    m: &Manifest,
    scratch: &Path,
    part_bytes: u64,
) -> Result<SnapshotRef> {
    let plan = Plan {
        db_id: m.db_id,
        txid: m.head,
        snapshot: m.snapshot.clone(),
        segments: m.segments.clone(),
    };
    let tmp = scratch.join("snapshot.tmp");
    let file = restore::scratch_file(&tmp)?;
    let result =
        restore::materialize(store.as_ref(), &plan, &file, &Options::default()).and_then(|r| {
            let src = Source {
                txid: m.head,
                commit: m.head_commit,
                db_id: m.db_id,
                epoch: m.epoch,
                page_size: r.page_size,
                db_pages: r.db_pages,
            };
            write(store.as_ref(), keys, &file, &src, part_bytes).map(|(s, _)| s)
        });
    drop(file);
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interior_pages_are_recognized() {
        let mut p = vec![0u8; 4096];
        for (t, want) in [
            (0x02, true),
            (0x05, true),
            (0x0a, false),
            (0x0d, false),
            (0, false),
        ] {
            p[0] = t;
            assert_eq!(is_interior(2, &p), want, "type {t:#x}");
        }
        // Page 1's B-tree header follows the 100-byte database header.
        p[0] = 0x05;
        p[100] = 0x0d;
        assert!(!is_interior(1, &p));
        p[100] = 0x05;
        assert!(is_interior(1, &p));
    }
}
