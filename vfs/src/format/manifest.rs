//! The manifest: the one mutable object per database.
//!
//! JSON, replaced only by a conditional put on its etag. It names the current
//! writer's epoch, the history of epochs (for fencing), the replicated
//! watermark (`head`), the latest snapshot and the segments after it. See
//! `docs/format.md`.

use crate::error::{Error, Result};
use crate::types::{DbId, Epoch, Millis, TxId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The manifest format written by this code (and the only one it reads).
pub const MANIFEST_FORMAT: u32 = 1;

/// Epoch `epoch` owns txids from `start` up to the next epoch's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    pub epoch: Epoch,
    pub start: TxId,
}

/// The latest snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub txid: TxId,
    pub commit: Millis,
    pub key: String,
    pub size: u64,
    /// Bytes of header + index, so one ranged GET reads exactly them
    /// (absent in older manifests and for objects found by LIST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u64>,
}

/// A segment holding txids `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub first: TxId,
    pub last: TxId,
    pub first_commit: Millis,
    pub last_commit: Millis,
    pub epoch: Epoch,
    pub key: String,
    pub size: u64,
    /// As [`SnapshotRef::prefix`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: u32,
    pub db_id: DbId,
    pub page_size: u32,
    /// Epoch of the current (or last) writer.
    pub epoch: Epoch,
    /// Ascending; epoch e owns txids `[start(e), start(next epoch))`.
    pub epochs: Vec<EpochStart>,
    /// Last txid durably in the bucket (the replicated watermark); 0 = none.
    pub head: TxId,
    pub head_commit: Millis,
    /// Database size in pages after `head`.
    pub db_pages: u32,
    /// The latest snapshot.
    pub snapshot: Option<SnapshotRef>,
    /// Segments after the latest snapshot, ascending and contiguous.
    pub segments: Vec<SegmentRef>,
    /// Who holds the database (`host:pid`), informational.
    pub writer: Option<String>,
    /// The writer's lease: no other writer may claim the database before it
    /// expires (renewed by every manifest update, released on close).
    #[serde(default)]
    pub lease: Option<Lease>,
    pub updated: Millis,
}

/// A writer's claim on a database: by time (`expires`), or bound to the
/// heartbeat of the node that took it (`node`, with `expires` 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// `host:pid:nonce` of the holder.
    pub holder: String,
    pub epoch: Epoch,
    pub expires: Millis,
    /// Held while this node's heartbeat (`_strata/nodes/<id>.json`) is
    /// fresh and names this incarnation; no renewal of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<LeaseNode>,
}

/// The node (and its process's incarnation) a lease is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseNode {
    pub id: String,
    pub incarnation: String,
}

impl Manifest {
    /// A new, empty database: no epoch yet (the first writer appends epoch 1
    /// starting at txid 1), nothing replicated.
    pub fn new(db_id: DbId, page_size: u32) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            db_id,
            page_size,
            epoch: Epoch(0),
            epochs: Vec::new(),
            head: TxId::ZERO,
            head_commit: Millis(0),
            db_pages: 0,
            snapshot: None,
            segments: Vec::new(),
            writer: None,
            lease: None,
            updated: Millis::now(),
        }
    }

    /// Pretty JSON.
    pub fn to_bytes(&self) -> Bytes {
        // Serializing these plain structs cannot fail.
        Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    /// Parse; Corrupt on bad JSON or an unknown `format`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let f: Format = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("bad manifest json: {e}")))?;
        if f.format != MANIFEST_FORMAT {
            return Err(Error::corrupt(format!(
                "unsupported manifest format {}",
                f.format
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(format!("bad manifest json: {e}")))
    }

    /// The epoch whose range holds `txid` (the latest epoch's range is open).
    pub fn epoch_owning(&self, txid: TxId) -> Option<Epoch> {
        if txid == TxId::ZERO {
            return None;
        }
        self.epochs
            .iter()
            .rev()
            .find(|e| e.start <= txid)
            .map(|e| e.epoch)
    }

    /// `(start, end)` of an epoch's txid range, `end` exclusive (`None` for
    /// the latest epoch); `None` if the epoch is unknown.
    pub fn epoch_range(&self, epoch: Epoch) -> Option<(TxId, Option<TxId>)> {
        let i = self.epochs.iter().position(|e| e.epoch == epoch)?;
        let start = self.epochs[i].start;
        Some((start, self.epochs.get(i + 1).map(|e| e.start)))
    }

    /// The fencing rule: a segment written under `epoch` holding
    /// `first..=last` is part of history iff `first >= start(epoch)`,
    /// `last < start(next epoch)` (if there is one), and `last <= head`.
    /// Anything else was written by a fenced-off writer or is not yet
    /// committed to the manifest, and is ignored.
    pub fn is_valid_segment(&self, epoch: Epoch, first: TxId, last: TxId) -> bool {
        let Some((start, end)) = self.epoch_range(epoch) else {
            return false;
        };
        first.0 >= 1
            && first <= last
            && first >= start
            && end.is_none_or(|end| last < end)
            && last <= self.head
    }

    /// The fencing rule for snapshots: a snapshot at `txid` written under
    /// `epoch` is part of history iff `start(epoch) - 1 <= txid` (a writer
    /// starts from the head it took over), `txid < start(next epoch)` (if
    /// there is one), and `txid <= head`. The epoch is in the object header.
    pub fn is_valid_snapshot(&self, epoch: Epoch, txid: TxId) -> bool {
        let Some((start, end)) = self.epoch_range(epoch) else {
            return false;
        };
        txid.0 >= 1
            && txid.0 >= start.0.saturating_sub(1)
            && end.is_none_or(|end| txid < end)
            && txid <= self.head
    }

    /// Check the invariants; Corrupt naming the first broken one.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::corrupt(format!("manifest: {msg}")));
        if self.format != MANIFEST_FORMAT {
            return bad(format!("unsupported format {}", self.format));
        }
        if !self.page_size.is_power_of_two() || !(512..=65536).contains(&self.page_size) {
            return bad(format!("bad page size {}", self.page_size));
        }
        for w in self.epochs.windows(2) {
            if w[1].epoch <= w[0].epoch || w[1].start < w[0].start {
                return bad(format!(
                    "epochs not ascending: {} at {} after {} at {}",
                    w[1].epoch, w[1].start, w[0].epoch, w[0].start
                ));
            }
        }
        if let Some(e) = self
            .epochs
            .iter()
            .find(|e| e.start.0 == 0 || e.start.0 > self.head.0.saturating_add(1))
        {
            return bad(format!(
                "epoch {} starts at {}, head is {}",
                e.epoch, e.start, self.head
            ));
        }
        match self.epochs.last() {
            Some(last) if last.epoch != self.epoch => {
                return bad(format!(
                    "epoch {} but the latest epoch is {}",
                    self.epoch, last.epoch
                ));
            }
            None if self.head != TxId::ZERO => {
                return bad(format!("head {} but no epochs", self.head));
            }
            _ => {}
        }
        let base = match &self.snapshot {
            Some(s) if s.txid.0 == 0 || s.txid > self.head => {
                return bad(format!("snapshot at {} but head is {}", s.txid, self.head));
            }
            Some(s) => s.txid,
            None => TxId::ZERO,
        };
        let mut prev = base;
        for s in &self.segments {
            if s.first != prev.next() || s.last < s.first {
                return bad(format!(
                    "segment {}..={} does not follow {prev}",
                    s.first, s.last
                ));
            }
            if !self.is_valid_segment(s.epoch, s.first, s.last) {
                return bad(format!(
                    "segment {}..={} is fenced off for epoch {}",
                    s.first, s.last, s.epoch
                ));
            }
            prev = s.last;
        }
        if prev != self.head {
            return bad(format!("history ends at {prev} but head is {}", self.head));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn seg(first: u64, last: u64, epoch: u64) -> SegmentRef {
        SegmentRef {
            first: TxId(first),
            last: TxId(last),
            first_commit: Millis(1000 + first),
            last_commit: Millis(1000 + last),
            epoch: Epoch(epoch),
            key: format!("segments/{first}-{last}"),
            size: 4096,
            prefix: None,
        }
    }

    /// Epoch 1 wrote 1..=10, epoch 2 took over at 11 and wrote 11..=20, epoch
    /// 3 took over at 21 and wrote 21..=25; snapshot at 5.
    fn sample() -> Manifest {
        let mut m = Manifest::new(DbId([1; 16]), 4096);
        m.epoch = Epoch(3);
        m.epochs = vec![
            EpochStart {
                epoch: Epoch(1),
                start: TxId(1),
            },
            EpochStart {
                epoch: Epoch(2),
                start: TxId(11),
            },
            EpochStart {
                epoch: Epoch(3),
                start: TxId(21),
            },
        ];
        m.head = TxId(25);
        m.head_commit = Millis(1025);
        m.db_pages = 7;
        m.snapshot = Some(SnapshotRef {
            txid: TxId(5),
            commit: Millis(1005),
            key: "snapshots/5".into(),
            size: 9000,
            prefix: Some(4000),
        });
        m.segments = vec![seg(6, 10, 1), seg(11, 20, 2), seg(21, 25, 3)];
        m.writer = Some("host:123".into());
        m
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        m.validate().unwrap();
        let b = m.to_bytes();
        assert_eq!(Manifest::from_bytes(&b).unwrap(), m);
        let json = std::str::from_utf8(&b).unwrap();
        assert!(
            json.contains("\"db_id\": \"01010101010101010101010101010101\""),
            "{json}"
        );
        assert!(json.contains("\"head\": 25"), "{json}");
        let new = Manifest::new(DbId([2; 16]), 512);
        new.validate().unwrap();
        assert_eq!(Manifest::from_bytes(&new.to_bytes()).unwrap(), new);
    }

    #[test]
    fn from_bytes_rejects() {
        for bad in [&b"{"[..], b"[]", b"", b"{\"format\": 1}"] {
            assert_eq!(
                Manifest::from_bytes(bad).unwrap_err().kind(),
                ErrorKind::Corrupt
            );
        }
        let mut m = sample();
        m.format = 2;
        let err = Manifest::from_bytes(&m.to_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(
            err.to_string().contains("unsupported manifest format 2"),
            "{err}"
        );
    }

    #[test]
    fn epoch_owning() {
        let m = sample();
        assert_eq!(m.epoch_owning(TxId(0)), None);
        assert_eq!(m.epoch_owning(TxId(1)), Some(Epoch(1)));
        assert_eq!(m.epoch_owning(TxId(10)), Some(Epoch(1)));
        assert_eq!(m.epoch_owning(TxId(11)), Some(Epoch(2)));
        assert_eq!(m.epoch_owning(TxId(21)), Some(Epoch(3)));
        assert_eq!(m.epoch_owning(TxId(1000)), Some(Epoch(3)));
        assert_eq!(
            Manifest::new(DbId::default(), 4096).epoch_owning(TxId(1)),
            None
        );
        // An epoch that took over and wrote nothing owns an empty range.
        let mut m = sample();
        m.epochs.insert(
            2,
            EpochStart {
                epoch: Epoch(5),
                start: TxId(21),
            },
        );
        m.epochs[3].epoch = Epoch(6);
        assert_eq!(m.epoch_owning(TxId(21)), Some(Epoch(6)));
    }

    #[test]
    fn fencing_rule() {
        let m = sample();
        let v = |e, f, l| m.is_valid_segment(Epoch(e), TxId(f), TxId(l));
        assert!(v(1, 1, 10));
        assert!(v(1, 6, 10));
        assert!(v(2, 11, 20));
        assert!(v(3, 21, 25));
        assert!(v(3, 22, 23));
        // A zombie writer of epoch 1 kept writing after epoch 2 took over.
        assert!(!v(1, 11, 12));
        assert!(!v(1, 9, 11));
        // Epoch 2 cannot claim txids before it started.
        assert!(!v(2, 10, 12));
        // Past the head: uploaded but not yet in the manifest.
        assert!(!v(3, 21, 26));
        assert!(!v(3, 26, 26));
        // Unknown epoch, empty or inverted range.
        assert!(!v(4, 21, 22));
        assert!(!v(3, 23, 22));
        assert!(!v(1, 0, 1));
    }

    #[test]
    fn snapshot_fencing_rule() {
        let m = sample();
        let v = |e, t| m.is_valid_snapshot(Epoch(e), TxId(t));
        assert!(v(1, 1));
        assert!(v(1, 10));
        assert!(!v(1, 11)); // zombie of epoch 1 after epoch 2 took over
        assert!(v(2, 10)); // epoch 2 snapshotting the head it took over
        assert!(v(2, 20));
        assert!(!v(2, 9));
        assert!(!v(2, 21));
        assert!(v(3, 25));
        assert!(!v(3, 26)); // past the head
        assert!(!v(4, 22));
        assert!(!v(1, 0));
    }

    type Breaker = fn(&mut Manifest);

    #[test]
    fn validate_catches_broken_invariants() {
        let broken: Vec<(&str, Breaker)> = vec![
            ("gap", |m| m.segments[1].first = TxId(12)),
            ("overlap", |m| m.segments[1].first = TxId(10)),
            ("head", |m| m.head = TxId(24)),
            ("head beyond", |m| m.head = TxId(26)),
            ("first after snapshot", |m| m.segments[0].first = TxId(7)),
            ("no snapshot", |m| m.snapshot = None),
            ("epoch order", |m| m.epochs.swap(0, 1)),
            ("epoch field", |m| m.epoch = Epoch(2)),
            ("fenced", |m| m.segments[1].epoch = Epoch(1)),
            ("unknown epoch", |m| m.segments[2].epoch = Epoch(9)),
            ("page size", |m| m.page_size = 1000),
            ("format", |m| m.format = 0),
            ("snapshot beyond head", |m| {
                m.segments.clear();
                m.snapshot.as_mut().unwrap().txid = TxId(30);
            }),
        ];
        for (what, f) in broken {
            let mut m = sample();
            f(&mut m);
            let err = m.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}");
        }
        // No segments: head must be the snapshot's txid (or 0 without one).
        let mut m = sample();
        m.segments.clear();
        assert!(m.validate().is_err());
        m.head = TxId(5);
        m.epochs.truncate(1);
        m.epoch = Epoch(1);
        m.validate().unwrap();
        m.snapshot = None;
        assert!(m.validate().is_err());
        // Without a snapshot, segments start at 1.
        let mut m = sample();
        m.snapshot = None;
        m.segments.insert(0, seg(1, 5, 1));
        m.validate().unwrap();
    }
}
