//! Bring an existing SQLite database into a bucket: its pages become the
//! snapshot at txid 1 of a new database history.

use super::snapshot;
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
    let (snap, size) = snapshot::write(store.as_ref(), keys, &file, &source, part_bytes)?;
    let mut m = Manifest::new(db_id, page_size);
    m.epoch = epoch;
    m.epochs = vec![EpochStart { epoch, start: txid }];
    m.head = txid;
    m.head_commit = commit;
    m.db_pages = db_pages;
    m.snapshot = Some(snap);
    m.writer = Some("import".into());
    m.updated = commit;
    store
        .put_if_absent(&manifest_key, m.to_bytes())
        .map_err(|e| e.context(format!("create {manifest_key}")))?;
    Ok((db_id, txid, size))
}
