//! Writing snapshots: the full page image at a txid, and beside it a small
//! *hot pages* object.
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
use crate::error::{ErrorKind, IoResultExt, Result};
use crate::format::keys::DbKeys;
use crate::format::manifest::{Manifest, SnapshotRef};
use crate::format::segment::{self, SegmentHeader, SegmentKind, SegmentMeta, TxnPages};
use crate::metrics::METRICS;
use crate::types::{DbId, Epoch, Millis, PageNo, TxId};
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A snapshot ready to upload.
pub(crate) struct Encoded {
    pub txid: TxId,
    pub commit: Millis,
    pub snapshot: Bytes,
    pub hot: Bytes,
}

/// B-tree page types whose cells point at other pages (interior index and
/// interior table pages). Other pages (leaves, overflow, freelist) are not
/// hot; a misread type byte costs only a few bytes more in the hot object.
fn is_interior(pgno: u32, page: &[u8]) -> bool {
    let at = if pgno == 1 { 100 } else { 0 };
    matches!(page.get(at), Some(0x02 | 0x05))
}

/// Encode a database file's pages as a snapshot at `txid`, and its hot pages.
pub(crate) fn from_file(
    file: &File,
    page_size: u32,
    db_pages: u32,
    txid: TxId,
    commit: Millis,
    db_id: DbId,
    epoch: Epoch,
) -> Result<Encoded> {
    let mut pages = Vec::with_capacity(db_pages as usize);
    let mut hot = Vec::new();
    for p in 1..=db_pages {
        let mut buf = vec![0u8; page_size as usize];
        file.read_exact_at(&mut buf, PageNo(p).offset(page_size))
            .io_ctx("read page for snapshot")?;
        let buf = Bytes::from(buf);
        if p == 1 || is_interior(p, &buf) {
            hot.push((PageNo(p), buf.clone()));
        }
        pages.push((PageNo(p), buf));
    }
    let meta = |kind| SegmentMeta {
        db_id,
        epoch,
        page_size,
        kind,
    };
    let txn = |pages| TxnPages {
        txid,
        commit,
        db_pages,
        pages,
    };
    Ok(Encoded {
        txid,
        commit,
        snapshot: segment::encode(&meta(SegmentKind::Snapshot), &[txn(pages)])?,
        // A subset of one state's pages: a one-txn object of segment kind.
        hot: segment::encode(&meta(SegmentKind::Segment), &[txn(hot)])?,
    })
}

/// Encode the manifest's latest state as a snapshot (built from the bucket
/// itself, so it can never disagree with the history it replaces).
pub(crate) fn build(store: &Store, m: &Manifest, scratch: &Path) -> Result<Encoded> {
    let plan = Plan {
        txid: m.head,
        snapshot: m.snapshot.clone(),
        segments: m.segments.clone(),
    };
    let tmp = scratch.join("snapshot.tmp");
    let file = restore::scratch_file(&tmp)?;
    let r = restore::materialize(store.as_ref(), &plan, &file, &Options::default())?;
    let result = from_file(
        &file,
        r.page_size,
        r.db_pages,
        m.head,
        m.head_commit,
        m.db_id,
        m.epoch,
    );
    drop(file);
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Upload a snapshot, then its hot pages (best effort: readers go without),
/// and return the manifest's reference to it. Uploading again what a lost
/// response already stored is not an error.
pub(crate) fn upload(store: &dyn ObjectStore, keys: &DbKeys, e: Encoded) -> Result<SnapshotRef> {
    let key = keys.snapshot(e.txid, e.commit);
    let size = e.snapshot.len() as u64;
    let prefix = SegmentHeader::decode(&e.snapshot)?.prefix_len();
    match store.put_if_absent(&key, e.snapshot) {
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::Conflict => {}
        Err(err) => return Err(err.context(format!("upload {key}"))),
    }
    METRICS.snapshots.inc();
    METRICS.bytes_uploaded.inc_by(size);
    let hot_key = keys.hot_pages(e.txid, e.commit);
    let hot_len = e.hot.len() as u64;
    match store.put_if_absent(&hot_key, e.hot) {
        Ok(_) => METRICS.bytes_uploaded.inc_by(hot_len),
        Err(err) if err.kind() == ErrorKind::Conflict => {}
        Err(err) => {
            tracing::warn!(error = %err, key = hot_key, "hot pages not uploaded; cold reads take longer")
        }
    }
    Ok(SnapshotRef {
        txid: e.txid,
        commit: e.commit,
        key,
        size,
        prefix: Some(prefix),
    })
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
