//! Bring an existing SQLite database into a bucket: its pages become the
//! snapshot at txid 1 of a new database history.

use super::{restore, snapshot};
use crate::bucket::Store;
use crate::error::{Error, ErrorKind, IoResultExt, Result};
use crate::format::keys::DbKeys;
use crate::format::manifest::{EpochStart, Manifest};
use crate::types::{DbId, Epoch, Millis, TxId};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Page size and page count of a quiescent SQLite file.
pub fn db_geometry(file: &File) -> Result<(u32, u32)> {
    let mut hdr = [0u8; 100];
    file.read_exact_at(&mut hdr, 0)
        .io_ctx("read database header")?;
    if &hdr[0..16] != b"SQLite format 3\0" {
        return Err(Error::invalid("not a SQLite database (bad header)"));
    }
    let page_size = match u16::from_be_bytes([hdr[16], hdr[17]]) {
        1 => 65536,
        n => n as u32,
    };
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(Error::invalid(format!(
            "bad page size {page_size} in database header"
        )));
    }
    let len = file.metadata().io_ctx("stat database")?.len();
    if len % page_size as u64 != 0 {
        return Err(Error::invalid(format!(
            "database size {len} is not a multiple of its page size {page_size}"
        )));
    }
    Ok((page_size, (len / page_size as u64) as u32))
}

/// Import `src` (a consistent, quiescent file: the CLI passes a backup copy)
/// as a new database. Fails with `Conflict` if the bucket already has one.
pub fn import(store: &Store, keys: &DbKeys, src: &Path) -> Result<(DbId, TxId, u64)> {
    import_with(store, keys, src, super::config::DEFAULT_SNAPSHOT_PART)
}

/// [`import`] with snapshot parts of `part_bytes` (`docs/format.md` §2.8).
pub fn import_with(
    store: &Store,
    keys: &DbKeys,
    src: &Path,
    part_bytes: u64,
) -> Result<(DbId, TxId, u64)> {
    let file = File::open(src).io_ctx(format!("open {}", src.display()))?;
    let (page_size, db_pages) = db_geometry(&file)?;
    let manifest_key = keys.manifest();
    match store.get(&manifest_key) {
        Ok(_) => {
            return Err(Error::conflict(format!(
                "{}/{} already holds a database: import into a new name, or restore instead",
                store.describe(),
                keys.root()
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e.context(format!("read {manifest_key}"))),
    }
    let db_id = DbId::random();
    let epoch = Epoch(1);
    let commit = Millis::now();
    let txid = TxId(1);
    let source = snapshot::Source {
        txid,
        commit,
        db_id,
        epoch,
        page_size,
        db_pages,
    };
    let (snap, size) = snapshot::write(store.as_ref(), keys, &file, &source, part_bytes)
        .inspect_err(|_| discard(store, keys, &source))?;
    let mut m = Manifest::new(db_id, page_size);
    m.epoch = epoch;
    m.epochs = vec![EpochStart { epoch, start: txid }];
    m.head = txid;
    m.head_commit = commit;
    m.db_pages = db_pages;
    let ours = snap.key.clone();
    m.snapshot = Some(snap);
    m.writer = Some("import".into());
    m.updated = commit;
    match store.put_if_absent(&manifest_key, m.to_bytes()) {
        Ok(_) => {}
        // Another import created the database first: ours is not history.
        // (Any other error may hide a manifest that landed: keep it all.)
        Err(e) if e.kind() == ErrorKind::Conflict => {
            let theirs = restore::read_manifest(store.as_ref(), keys)
                .ok()
                .and_then(|m| m.snapshot)
                .map(|s| s.key);
            if theirs.is_some_and(|k| k != ours) {
                discard(store, keys, &source);
            }
            return Err(Error::conflict(format!(
                "{}/{} was created by another import meanwhile: import into a new name, or restore instead",
                store.describe(),
                keys.root()
            )));
        }
        Err(e) => return Err(e.context(format!("create {manifest_key}"))),
    }
    Ok((db_id, txid, size))
}

/// Best effort: delete what a failed import wrote (its parts, snapshot and
/// hot objects: keys of its own commit time that no manifest names), so a
/// failed import leaves nothing behind. A crash mid-import still does.
fn discard(store: &Store, keys: &DbKeys, src: &snapshot::Source) {
    let snap = keys.snapshot(src.txid, src.commit);
    let mut doomed = vec![keys.hot_pages(src.txid, src.commit), snap.clone()];
    if let Some(dir) = crate::format::keys::snapshot_parts_dir(&snap, src.epoch) {
        match store.list(&dir) {
            Ok(parts) => doomed.extend(parts.into_iter().map(|o| o.key)),
            Err(e) => tracing::warn!(error = %e, dir, "could not list a failed import's parts"),
        }
    }
    for key in doomed {
        if let Err(e) = store.delete(&key) {
            tracing::warn!(error = %e, key, "could not delete what a failed import wrote");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::fault::{FaultStore, Op};
    use crate::bucket::memory::MemoryStore;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn source(dir: &Path, name: &str, rows: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        rusqlite::Connection::open(&p)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE t(v TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {rows})
                 INSERT INTO t SELECT hex(randomblob(100)) FROM n;"
            ))
            .unwrap();
        p
    }

    #[test]
    fn an_import_that_loses_the_race_for_the_name_takes_its_objects_back() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (
            source(dir.path(), "a.db", 3000),
            source(dir.path(), "b.db", 2000),
        );
        let inner: Store = Arc::new(MemoryStore::new());
        let fault = Arc::new(FaultStore::new(inner.clone()));
        let keys = DbKeys::new("acme", "data.db").unwrap();
        // Just before our manifest lands, another import takes the name.
        let once = AtomicBool::new(false);
        let (winner, k) = (inner.clone(), keys.clone());
        fault.set_hook(Some(Arc::new(move |op, key| {
            if op == Op::PutIfAbsent
                && key.ends_with("manifest.json")
                && !once.swap(true, Ordering::SeqCst)
            {
                std::thread::sleep(std::time::Duration::from_millis(2)); // another commit time
                import_with(&winner, &k, &theirs, 64 << 10).unwrap();
            }
            None
        })));
        let store: Store = fault.clone();
        let err = import_with(&store, &keys, &ours, 64 << 10).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("another import"), "{err}");
        // Only the winner's snapshot, hot pages and parts are left.
        let m = restore::read_manifest(inner.as_ref(), &keys).unwrap();
        let snap = m.snapshot.unwrap().key;
        let left: Vec<String> = inner
            .list(keys.root())
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        let stem = snap
            .rsplit_once('/')
            .unwrap()
            .1
            .strip_suffix(".snap")
            .unwrap();
        assert!(left.len() > 3, "{left:?}");
        for k in &left {
            assert!(
                k.ends_with("manifest.json") || k.contains(stem),
                "left behind: {k}"
            );
        }
    }
}
