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
            // The manifest knows its own snapshot's index length.
            let prefix = manifest
                .snapshot
                .as_ref()
                .filter(|s| s.key == full)
                .and_then(|s| s.prefix);
            snapshots.push(SnapshotRef {
                txid: k.txid,
                commit: k.commit,
                key: full,
                size: o.size,
                prefix,
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
                prefix: manifest
                    .segments
                    .iter()
                    .find(|s| s.key == o.key)
                    .and_then(|s| s.prefix),
            });
        }
    }
    let mut segments = chain(candidates, &manifest);
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

/// The contiguous chain of segments that ends at the head, walked backwards
/// from it: each step takes the segment that ends right before the one
/// after it. Walking forwards would go wrong on a stray: a segment whose
/// upload landed but whose manifest update failed (say, the bucket went away
/// in between) is re-uploaded later as part of a longer batch starting at the
/// same txid, and the short stray must not shadow it. Within one epoch a txid
/// has one content, so among segments with the same end any is correct; the
/// manifest's own entry is preferred, then the longest (fewest objects). The
/// walk stops at a gap (retention deleted what is older).
fn chain(candidates: Vec<SegmentRef>, manifest: &Manifest) -> Vec<SegmentRef> {
    let mut by_last: std::collections::HashMap<TxId, Vec<SegmentRef>> = Default::default();
    for s in candidates {
        by_last.entry(s.last).or_default().push(s);
    }
    let mut out = Vec::new();
    let mut need = manifest.head;
    while need.0 > 0 {
        let Some(mut options) = by_last.remove(&need) else {
            break;
        };
        options.sort_by_key(|s| {
            let listed = manifest.segments.iter().any(|m| m.key == s.key);
            (!listed, s.first)
        });
        let s = options.swap_remove(0);
        need = TxId(s.first.0 - 1);
        out.push(s);
    }
    out.reverse();
    out
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
            db_id: self.manifest.db_id,
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

/// Bytes each snapshot takes in the bucket, parts included, by snapshot key
/// (a split snapshot's own object holds only its index). One LIST.
pub fn snapshot_bytes(
    store: &dyn ObjectStore,
    keys: &DbKeys,
    h: &History,
) -> Result<std::collections::HashMap<String, u64>> {
    let mut bytes: std::collections::HashMap<String, u64> = h
        .snapshots
        .iter()
        .map(|s| (s.key.clone(), s.size))
        .collect();
    let parts = keys.parts_prefix();
    for o in store.list(&parts).ctx("list parts")? {
        let Some(dir) = o.key.rfind('/').map(|i| &o.key[..=i]) else {
            continue;
        };
        if let Some(k) = keys.parse_parts_dir(dir)
            && let Some(b) = bytes.get_mut(&keys.snapshot(k.txid, k.commit))
        {
            *b += o.size;
        }
    }
    Ok(bytes)
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
    // Parts of split snapshots before the base, with or without their
    // snapshot object (an upload that stopped midway leaves parts only):
    // deleted before the snapshot objects, so no index outlives its parts
    // for longer than this loop.
    let parts = keys.parts_prefix();
    for name in store.list_dirs(&parts).ctx("list parts")? {
        let dir = format!("{parts}{name}/");
        if keys
            .parse_parts_dir(&dir)
            .is_some_and(|k| k.txid < protected)
        {
            for o in store.list(&dir).ctx("list parts")? {
                store.delete(&o.key).ctx("retention")?;
                deleted += 1;
            }
        }
    }
    for s in h.snapshots.iter().filter(|s| s.txid < protected) {
        // The hot pages first: never a sidecar without its snapshot.
        match store.delete(&keys.hot_pages(s.txid, s.commit)) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.context("retention")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::EpochStart;
    use crate::types::{DbId, Epoch};

    fn seg(first: u64, last: u64, tag: &str) -> SegmentRef {
        SegmentRef {
            first: TxId(first),
            last: TxId(last),
            first_commit: Millis(first),
            last_commit: Millis(last),
            epoch: Epoch(1),
            key: format!("{first}-{last}{tag}"),
            size: 1,
            prefix: None,
        }
    }

    fn manifest(head: u64, listed: Vec<SegmentRef>) -> Manifest {
        let mut m = Manifest::new(DbId([1; 16]), 4096);
        m.epoch = Epoch(1);
        m.epochs = vec![EpochStart {
            epoch: Epoch(1),
            start: TxId(1),
        }];
        m.head = TxId(head);
        m.segments = listed;
        m
    }

    fn spans(c: &[SegmentRef]) -> Vec<(u64, u64)> {
        c.iter().map(|s| (s.first.0, s.last.0)).collect()
    }

    #[test]
    fn a_short_stray_does_not_shadow_the_real_segment() {
        // 11..=15 landed but its manifest update failed; 11..=30 replaced it.
        let all = [(1, 10), (11, 15), (11, 30), (31, 40)].map(|(f, l)| seg(f, l, ""));
        let c = chain(all.to_vec(), &manifest(40, vec![seg(31, 40, "")]));
        assert_eq!(spans(&c), vec![(1, 10), (11, 30), (31, 40)]);
    }

    #[test]
    fn the_walk_stops_at_a_gap_and_prefers_the_manifest_entry() {
        let all =
            [(1, 5, ""), (8, 9, ""), (10, 12, "a"), (10, 12, "b")].map(|(f, l, t)| seg(f, l, t));
        let c = chain(all.to_vec(), &manifest(12, vec![seg(10, 12, "b")]));
        assert_eq!(spans(&c), vec![(8, 9), (10, 12)]);
        assert_eq!(c[1].key, "10-12b");
        // Nothing ends at the head: no chain.
        assert!(chain(vec![seg(1, 5, "")], &manifest(6, vec![])).is_empty());
    }
}
