//! Every restore point of a database, read from a LIST of its objects and
//! filtered by the manifest's epochs (objects a fenced writer left behind are
//! not history), and retention, which deletes what no restore point needs.

use super::restore::Plan;
use crate::bucket::ObjectStore;
use crate::error::{Error, Result, ResultExt};
use crate::format::keys::DbKeys;
use crate::format::manifest::{Manifest, SegmentRef, SnapshotRef};
use crate::format::segment::{self, HEADER_LEN};
use crate::types::{Millis, TxId};
use std::time::Duration;

/// The restore points of one database.
#[derive(Debug, Clone)]
pub struct History {
    pub manifest: Manifest,
    /// Snapshots, oldest first.
    pub snapshots: Vec<SnapshotRef>,
    /// The valid, contiguous chain of segments, oldest first.
    pub segments: Vec<SegmentRef>,
}

/// List the bucket and assemble the history (`manifest` saves a GET if known).
pub fn load(store: &dyn ObjectStore, keys: &DbKeys, manifest: Option<Manifest>) -> Result<History> {
    let manifest = match manifest {
        Some(m) => m,
        None => super::restore::read_manifest(store, keys)?,
    };
    let mut snapshots: Vec<SnapshotRef> = Vec::new();
    for o in store.list(&keys.snapshots_prefix()).ctx("list snapshots")? {
        let full = o.key.clone();
        if let Some(k) = keys.parse_snapshot_key(&full)
            && k.txid <= manifest.head
        {
            snapshots.push(SnapshotRef {
                txid: k.txid,
                commit: k.commit,
                key: full,
                size: o.size,
            });
        }
    }
    snapshots.sort_by_key(|s| s.txid);
    let mut candidates: Vec<SegmentRef> = Vec::new();
    for o in store.list(&keys.segments_prefix()).ctx("list segments")? {
        if let Some(k) = keys.parse_segment_key(&o.key)
            && manifest.is_valid_segment(k.epoch, k.first, k.last)
        {
            candidates.push(SegmentRef {
                first: k.first,
                last: k.last,
                first_commit: k.last_commit,
                last_commit: k.last_commit,
                epoch: k.epoch,
                key: o.key.clone(),
                size: o.size,
            });
        }
    }
    candidates.sort_by_key(|s| (s.first, s.last));
    // Keep the contiguous chain that ends at the head.
    let mut segments: Vec<SegmentRef> = Vec::new();
    for s in candidates {
        match segments.last() {
            Some(prev) if s.first != prev.last.next() => {
                // A gap (retention deleted older ones, or a stray object): restart the chain.
                if s.first > prev.last.next() {
                    segments.clear();
                    segments.push(s);
                }
            }
            _ => segments.push(s),
        }
    }
    // first_commit is not in the key: the previous segment's last commit bounds it.
    for i in 1..segments.len() {
        segments[i].first_commit = segments[i - 1].last_commit;
    }
    Ok(History {
        manifest,
        snapshots,
        segments,
    })
}

impl History {
    /// The oldest txid that can still be restored.
    pub fn oldest(&self) -> Option<TxId> {
        let from_snap = self.snapshots.first().map(|s| s.txid);
        let from_segs = self
            .segments
            .first()
            .filter(|s| s.first == TxId(1))
            .map(|_| TxId(1));
        match (from_snap, from_segs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The objects that restore `txid`.
    pub fn plan_for(&self, txid: TxId) -> Result<Plan> {
        let snapshot = self
            .snapshots
            .iter()
            .rev()
            .find(|s| s.txid <= txid)
            .cloned();
        let base = snapshot.as_ref().map_or(TxId::ZERO, |s| s.txid);
        let segments: Vec<SegmentRef> = self
            .segments
            .iter()
            .filter(|s| s.last > base && s.first <= txid)
            .cloned()
            .collect();
        let starts_ok = match segments.first() {
            Some(s) => s.first <= base.next(),
            None => base == txid,
        };
        if !starts_ok || txid > self.manifest.head {
            return Err(Error::not_found(format!(
                "txid {txid} cannot be restored: {}",
                match self.oldest() {
                    Some(o) => format!("the oldest restore point is txid {o} (retention)"),
                    None => "no restore points".into(),
                }
            )));
        }
        Ok(Plan {
            txid,
            snapshot,
            segments,
        })
    }

    /// The last txid committed at or before `t`.
    pub fn txid_at(&self, store: &dyn ObjectStore, t: Millis) -> Result<TxId> {
        if t >= self.manifest.head_commit {
            return Ok(self.manifest.head);
        }
        // The first segment that ends after `t` holds the answer...
        if let Some(i) = self.segments.iter().position(|s| s.last_commit > t) {
            let seg = &self.segments[i];
            let head = store
                .get_range(&seg.key, 0..HEADER_LEN as u64)
                .ctx(format!("read {}", seg.key))?;
            let hdr = segment::SegmentHeader::decode(&head).ctx(&seg.key)?;
            let prefix = store
                .get_range(&seg.key, 0..HEADER_LEN as u64 + hdr.index_len as u64)
                .ctx(format!("read {}", seg.key))?;
            let idx = segment::SegmentIndex::decode(&prefix).ctx(&seg.key)?;
            if let Some(x) = idx.txns.iter().take_while(|x| x.commit <= t).last() {
                return Ok(x.txid);
            }
        }
        // ...or it is the newest restore point that a snapshot or a segment
        // ends at, committed at or before `t`.
        let ends = self
            .snapshots
            .iter()
            .map(|s| (s.txid, s.commit))
            .chain(self.segments.iter().map(|s| (s.last, s.last_commit)));
        match ends.filter(|(_, c)| *c <= t).max_by_key(|(txid, _)| *txid) {
            Some((txid, _)) if self.plan_for(txid).is_ok() => Ok(txid),
            _ => Err(Error::not_found(format!(
                "{} is before the oldest restore point{}",
                t.rfc3339(),
                self.oldest()
                    .map(|o| format!(" (txid {o})"))
                    .unwrap_or_default()
            ))),
        }
    }
}

/// Delete objects no restore point within `retention` needs: keep the newest
/// snapshot older than the window (the base of the oldest restore point) and
/// everything after it. Never touches the manifest's own snapshot/segments.
pub fn apply_retention(
    store: &dyn ObjectStore,
    keys: &DbKeys,
    retention: Duration,
) -> Result<usize> {
    let h = load(store, keys, None)?;
    let cutoff = Millis(Millis::now().0.saturating_sub(retention.as_millis() as u64));
    let Some(base) = h
        .snapshots
        .iter()
        .rev()
        .find(|s| s.commit <= cutoff)
        .cloned()
    else {
        return Ok(0);
    };
    let protected = h
        .manifest
        .snapshot
        .as_ref()
        .map_or(base.txid, |s| s.txid.min(base.txid));
    let mut deleted = 0;
    for s in h.snapshots.iter().filter(|s| s.txid < protected) {
        store.delete(&s.key).ctx("retention")?;
        deleted += 1;
    }
    // Every segment object ending at or before the base, valid or stray.
    for o in store.list(&keys.segments_prefix()).ctx("list segments")? {
        if let Some(k) = keys.parse_segment_key(&o.key)
            && k.last <= protected
            && !h.manifest.segments.iter().any(|s| s.key == o.key)
        {
            store.delete(&o.key).ctx("retention")?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, base = %protected, "retention removed objects older than the window");
    }
    Ok(deleted)
}
