//! The bucket key layout.
//!
//! ```text
//! tenants/<tenant>/db/<db>/manifest.json
//! tenants/<tenant>/db/<db>/segments/<first:020>-<last:020>-e<epoch:010>-<last_commit_ms:013>.seg
//! tenants/<tenant>/db/<db>/snapshots/<txid:020>-<commit_ms:013>.snap
//! tenants/<tenant>/db/<db>/parts/<txid:020>-<commit_ms:013>-e<epoch:010>/<n:06>.part
//! tenants/<tenant>/hooks/..., tenants/<tenant>/storage/..., tenants/<tenant>/metadata.json
//! ```
//!
//! Numbers are zero-padded decimals so that lexical order (what LIST returns)
//! is numeric order. Tenant and database names are validated so that no key
//! can escape its prefix. See `docs/format.md`.

use crate::error::{Error, Result};
use crate::types::{Epoch, Millis, TxId};

/// Top-level prefix of all tenants.
pub const TENANTS_PREFIX: &str = "tenants/";

const SEG_EXT: &str = ".seg";
const SNAP_EXT: &str = ".snap";
const HOT_EXT: &str = ".hot";
const PART_EXT: &str = ".part";

/// The key of part `n` of the split snapshot stored at `snapshot_key`,
/// written under `epoch` (from its header). Parts live under `parts/`, one
/// folder per snapshot and writer, so a LIST of `snapshots/` stays short
/// and two writers' snapshots at one txid never share a part key.
pub fn snapshot_part(snapshot_key: &str, epoch: Epoch, n: u32) -> Option<String> {
    Some(format!(
        "{}{n:06}{PART_EXT}",
        snapshot_parts_dir(snapshot_key, epoch)?
    ))
}

/// The folder (ending in `/`) of the parts of the split snapshot stored at
/// `snapshot_key`, written under `epoch`.
pub fn snapshot_parts_dir(snapshot_key: &str, epoch: Epoch) -> Option<String> {
    let (root, name) = snapshot_key.rsplit_once("/snapshots/")?;
    let stem = name.strip_suffix(SNAP_EXT)?;
    Some(format!("{root}/parts/{stem}-e{:010}/", epoch.0))
}

/// Check a tenant name: 1..=63 characters of `[a-z0-9_-]`, starting with a
/// letter or digit.
pub fn validate_tenant(tenant: &str) -> Result<()> {
    let ok = (1..=63).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && tenant
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "bad tenant name {tenant:?}: must be 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
        )))
    }
}

/// Check a database name: 1..=64 characters of `[A-Za-z0-9._-]`, not
/// starting with '.' (e.g. `data.db`, `auxiliary.db`).
pub fn validate_db_name(db: &str) -> Result<()> {
    let ok = (1..=64).contains(&db.len())
        && db
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !db.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "bad database name {db:?}: must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'"
        )))
    }
}

/// `tenants/<tenant>/`: everything a tenant owns.
pub fn tenant_prefix(tenant: &str) -> Result<String> {
    validate_tenant(tenant)?;
    Ok(format!("{TENANTS_PREFIX}{tenant}/"))
}

/// `tenants/<tenant>/db/`: list it with delimiter `/` to find the databases.
pub fn dbs_prefix(tenant: &str) -> Result<String> {
    Ok(format!("{}db/", tenant_prefix(tenant)?))
}

/// A segment key's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentKey {
    pub first: TxId,
    pub last: TxId,
    pub epoch: Epoch,
    pub last_commit: Millis,
}

/// A snapshot key's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotKey {
    pub txid: TxId,
    pub commit: Millis,
}

/// The keys of one database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbKeys {
    tenant: String,
    db: String,
    root: String,
}

impl DbKeys {
    pub fn new(tenant: &str, db: &str) -> Result<DbKeys> {
        validate_tenant(tenant)?;
        validate_db_name(db)?;
        Ok(DbKeys {
            tenant: tenant.to_owned(),
            db: db.to_owned(),
            root: format!("{TENANTS_PREFIX}{tenant}/db/{db}/"),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn db(&self) -> &str {
        &self.db
    }

    /// `tenants/<tenant>/`.
    pub fn tenant_prefix(&self) -> String {
        format!("{TENANTS_PREFIX}{}/", self.tenant)
    }

    /// `tenants/<tenant>/db/<db>/`: every object of this database.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `tenants/<tenant>/db/<db>/manifest.json`.
    pub fn manifest(&self) -> String {
        format!("{}manifest.json", self.root)
    }

    /// `tenants/<tenant>/db/<db>/segments/`.
    pub fn segments_prefix(&self) -> String {
        format!("{}segments/", self.root)
    }

    /// `tenants/<tenant>/db/<db>/snapshots/`.
    pub fn snapshots_prefix(&self) -> String {
        format!("{}snapshots/", self.root)
    }

    /// `.../segments/<first:020>-<last:020>-e<epoch:010>-<last_commit_ms:013>.seg`.
    pub fn segment(&self, first: TxId, last: TxId, epoch: Epoch, last_commit: Millis) -> String {
        format!(
            "{}{}",
            self.segments_prefix(),
            segment_name(SegmentKey {
                first,
                last,
                epoch,
                last_commit
            })
        )
    }

    /// `tenant/db`, for logs and metric labels.
    pub fn label(&self) -> String {
        format!("{}/{}", self.tenant(), self.db())
    }

    /// `.../snapshots/<txid:020>-<commit_ms:013>.snap`.
    pub fn snapshot(&self, txid: TxId, commit: Millis) -> String {
        format!(
            "{}{}",
            self.snapshots_prefix(),
            snapshot_name(SnapshotKey { txid, commit })
        )
    }

    /// `tenants/<tenant>/db/<db>/parts/`: the bodies of split snapshots.
    pub fn parts_prefix(&self) -> String {
        format!("{}parts/", self.root)
    }

    /// The snapshot a folder under [`parts_prefix`](Self::parts_prefix)
    /// (`parts/<txid>-<commit_ms>-e<epoch>/`) belongs to.
    pub fn parse_parts_dir(&self, dir: &str) -> Option<SnapshotKey> {
        let name = dir
            .strip_prefix(self.root.as_str())?
            .strip_prefix("parts/")?
            .strip_suffix('/')?;
        let (snap, epoch) = name.rsplit_once("-e")?;
        let (txid, commit) = snap.split_once('-')?;
        let k = SnapshotKey {
            txid: TxId(digits(txid)?),
            commit: Millis(digits(commit)?),
        };
        let epoch = Epoch(digits(epoch)?);
        let canonical = snapshot_parts_dir(&self.snapshot(k.txid, k.commit), epoch)?;
        (canonical == dir).then_some(k)
    }

    /// `.../snapshots/<txid:020>-<commit_ms:013>.hot`: page 1 and the
    /// interior B-tree pages of that snapshot (see `engine/snapshot.rs`).
    pub fn hot_pages(&self, txid: TxId, commit: Millis) -> String {
        let snap = self.snapshot(txid, commit);
        format!("{}{HOT_EXT}", snap.strip_suffix(SNAP_EXT).unwrap_or(&snap))
    }

    /// Parse a full segment key of this database; `None` for anything else.
    pub fn parse_segment_key(&self, key: &str) -> Option<SegmentKey> {
        let name = key
            .strip_prefix(self.root.as_str())?
            .strip_prefix("segments/")?;
        let fields = name.strip_suffix(SEG_EXT)?;
        let mut it = fields.split('-');
        let first = digits(it.next()?)?;
        let last = digits(it.next()?)?;
        let epoch = digits(it.next()?.strip_prefix('e')?)?;
        let last_commit = digits(it.next()?)?;
        if it.next().is_some() || first == 0 || first > last {
            return None;
        }
        let k = SegmentKey {
            first: TxId(first),
            last: TxId(last),
            epoch: Epoch(epoch),
            last_commit: Millis(last_commit),
        };
        // Only the canonical spelling (padding included) is ours.
        (segment_name(k) == name).then_some(k)
    }

    /// Parse a full snapshot key of this database; `None` for anything else.
    pub fn parse_snapshot_key(&self, key: &str) -> Option<SnapshotKey> {
        let name = key
            .strip_prefix(self.root.as_str())?
            .strip_prefix("snapshots/")?;
        let fields = name.strip_suffix(SNAP_EXT)?;
        let (txid, commit) = fields.split_once('-')?;
        let k = SnapshotKey {
            txid: TxId(digits(txid)?),
            commit: Millis(digits(commit)?),
        };
        (k.txid.0 != 0 && snapshot_name(k) == name).then_some(k)
    }
}

fn segment_name(k: SegmentKey) -> String {
    format!(
        "{:020}-{:020}-e{:010}-{:013}{SEG_EXT}",
        k.first.0, k.last.0, k.epoch.0, k.last_commit.0
    )
}

fn snapshot_name(k: SnapshotKey) -> String {
    format!("{:020}-{:013}{SNAP_EXT}", k.txid.0, k.commit.0)
}

/// A non-empty run of ASCII digits as a u64.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn layout() {
        let k = DbKeys::new("tenant_001", "data.db").unwrap();
        assert_eq!(k.tenant_prefix(), "tenants/tenant_001/");
        assert_eq!(k.root(), "tenants/tenant_001/db/data.db/");
        assert_eq!(k.manifest(), "tenants/tenant_001/db/data.db/manifest.json");
        assert_eq!(
            k.segments_prefix(),
            "tenants/tenant_001/db/data.db/segments/"
        );
        assert_eq!(
            k.snapshots_prefix(),
            "tenants/tenant_001/db/data.db/snapshots/"
        );
        assert_eq!(
            k.segment(TxId(1), TxId(42), Epoch(3), Millis(1_700_000_000_123)),
            "tenants/tenant_001/db/data.db/segments/00000000000000000001-00000000000000000042-e0000000003-1700000000123.seg"
        );
        assert_eq!(
            k.snapshot(TxId(42), Millis(1_700_000_000_123)),
            "tenants/tenant_001/db/data.db/snapshots/00000000000000000042-1700000000123.snap"
        );
        assert_eq!(tenant_prefix("acme").unwrap(), "tenants/acme/");
        assert_eq!(dbs_prefix("acme").unwrap(), "tenants/acme/db/");
        assert_eq!(k.tenant(), "tenant_001");
        assert_eq!(k.db(), "data.db");
    }

    #[test]
    fn split_snapshot_parts() {
        let k = DbKeys::new("acme", "data.db").unwrap();
        let snap = k.snapshot(TxId(42), Millis(1_700_000_000_123));
        let part = snapshot_part(&snap, Epoch(3), 7).unwrap();
        assert_eq!(
            part,
            "tenants/acme/db/data.db/parts/00000000000000000042-1700000000123-e0000000003/000007.part"
        );
        let dir = &part[..part.rfind('/').unwrap() + 1];
        assert_eq!(snapshot_parts_dir(&snap, Epoch(3)).as_deref(), Some(dir));
        assert_eq!(
            k.parse_parts_dir(dir),
            Some(SnapshotKey {
                txid: TxId(42),
                commit: Millis(1_700_000_000_123)
            })
        );
        assert!(part.starts_with(&k.parts_prefix()));
        for bad in [
            "tenants/acme/db/data.db/parts/42-1700000000123-e3/",
            "tenants/acme/db/data.db/parts/00000000000000000042-1700000000123/",
            "tenants/acme/db/other.db/parts/00000000000000000042-1700000000123-e0000000003/",
        ] {
            assert_eq!(k.parse_parts_dir(bad), None, "{bad}");
        }
        assert_eq!(
            snapshot_part("tenants/acme/db/data.db/segments/x.seg", Epoch(1), 0),
            None
        );
    }

    #[test]
    fn parse_roundtrip() {
        let k = DbKeys::new("acme", "auxiliary.db").unwrap();
        for (first, last, epoch, commit) in [
            (1, 1, 0, 0),
            (5, 900, 12, 1_700_000_000_000),
            (u64::MAX - 1, u64::MAX, u64::MAX, u64::MAX),
        ] {
            let sk = SegmentKey {
                first: TxId(first),
                last: TxId(last),
                epoch: Epoch(epoch),
                last_commit: Millis(commit),
            };
            let key = k.segment(sk.first, sk.last, sk.epoch, sk.last_commit);
            assert_eq!(k.parse_segment_key(&key), Some(sk), "{key}");
            assert_eq!(k.parse_snapshot_key(&key), None);
            let snap = SnapshotKey {
                txid: TxId(last),
                commit: Millis(commit),
            };
            let key = k.snapshot(snap.txid, snap.commit);
            assert_eq!(k.parse_snapshot_key(&key), Some(snap), "{key}");
            assert_eq!(k.parse_segment_key(&key), None);
        }
    }

    #[test]
    fn lexical_order_is_numeric() {
        let k = DbKeys::new("acme", "data.db").unwrap();
        let mut keys: Vec<String> = [(10u64, 19u64), (1, 9), (100, 200), (20, 99)]
            .iter()
            .map(|&(f, l)| k.segment(TxId(f), TxId(l), Epoch(1), Millis(5)))
            .collect();
        keys.sort();
        let firsts: Vec<u64> = keys
            .iter()
            .map(|s| k.parse_segment_key(s).unwrap().first.0)
            .collect();
        assert_eq!(firsts, [1, 10, 20, 100]);
    }

    #[test]
    fn parse_rejects_foreign_keys() {
        let k = DbKeys::new("acme", "data.db").unwrap();
        let other = DbKeys::new("acme", "data.db2").unwrap();
        let good = k.segment(TxId(1), TxId(2), Epoch(1), Millis(3));
        assert!(other.parse_segment_key(&good).is_none());
        let seg = "tenants/acme/db/data.db/segments/";
        for bad in [
            "".to_string(),
            k.manifest(),
            good.replace(".seg", ".tmp"),
            good.replace("-e", "-x"),
            good.replace("segments/", "snapshots/"),
            format!("{seg}1-2-e1-3.seg"),
            format!("{seg}00000000000000000002-00000000000000000001-e0000000001-0000000000003.seg"),
            format!("{seg}00000000000000000000-00000000000000000001-e0000000001-0000000000003.seg"),
            format!("{seg}+0000000000000000001-00000000000000000002-e0000000001-0000000000003.seg"),
            format!(
                "{seg}00000000000000000001-00000000000000000002-e0000000001-0000000000003-x.seg"
            ),
            format!(
                "{seg}sub/00000000000000000001-00000000000000000002-e0000000001-0000000000003.seg"
            ),
            format!("x{good}"),
        ] {
            assert!(k.parse_segment_key(&bad).is_none(), "{bad}");
        }
        let snaps = "tenants/acme/db/data.db/snapshots/";
        for bad in [
            format!("{snaps}00000000000000000000-0000000000003.snap"),
            format!("{snaps}00000000000000000001-3.snap"),
            format!("{snaps}00000000000000000001.snap"),
            format!("{snaps}00000000000000000001-0000000000003-0000000000003.snap"),
        ] {
            assert!(k.parse_snapshot_key(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tenant_names() {
        for good in ["a", "0", "tenant_abc123", "acme-corp", &"x".repeat(63)] {
            validate_tenant(good).unwrap();
        }
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "-x",
            "_x",
            "Acme",
            "a b",
            "a.b",
            "é",
            &"x".repeat(64),
            "a\0",
        ] {
            let err = validate_tenant(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{bad:?}");
            assert!(err.to_string().contains("1 to 63 characters"), "{err}");
            assert!(DbKeys::new(bad, "data.db").is_err());
            assert!(tenant_prefix(bad).is_err());
        }
    }

    #[test]
    fn db_names() {
        for good in [
            "data.db",
            "auxiliary.db",
            "A-b_c.9",
            "x..y",
            &"d".repeat(64),
        ] {
            validate_db_name(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "a b",
            &"d".repeat(65),
            "ü.db",
        ] {
            let err = validate_db_name(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{bad:?}");
            assert!(DbKeys::new("acme", bad).is_err());
        }
    }
}
