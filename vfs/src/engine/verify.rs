//! Check a database's objects end to end: every segment and snapshot against
//! its checksums, the manifest against its invariants, and a restore of the
//! latest state against SQLite's own integrity check (supplied by the caller).

use super::restore::{self, Options, Target};
use crate::bucket::ObjectStore;
use crate::bucket::Store;
use crate::error::{Error, Result, ResultExt};
use crate::format::keys::DbKeys;
use crate::format::segment::{self, SegmentKind};

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub objects: usize,
    pub bytes: u64,
    /// One line per bad object: `key: what is wrong`.
    pub problems: Vec<String>,
    pub restored_txid: Option<crate::TxId>,
}

/// Verify everything under the database's prefix. Problems are collected,
/// not fatal, so one report names every bad object.
pub fn verify(
    store: &Store,
    keys: &DbKeys,
    scratch: &std::path::Path,
    opts: &Options,
) -> Result<Report> {
    let mut report = Report::default();
    let manifest = restore::read_manifest(store.as_ref(), keys)?;
    if let Err(e) = manifest.validate() {
        report.problems.push(format!("{}: {e}", keys.manifest()));
    }
    let parts = keys.parts_prefix();
    for o in store.list(keys.root()).ctx("list objects")? {
        if o.key == keys.manifest() || o.key.ends_with("lease.json") {
            continue;
        }
        report.objects += 1;
        report.bytes += o.size;
        let data = match store.get(&o.key) {
            Ok(obj) => obj.data,
            Err(e) => {
                report.problems.push(format!("{}: {e}", o.key));
                continue;
            }
        };
        // Parts are checked through their snapshot's part table.
        if o.key.starts_with(&parts) {
            continue;
        }
        if let Err(e) = check_object(store.as_ref(), &o.key, data) {
            report.problems.push(format!("{}: {e}", o.key));
        }
    }
    let out = scratch.join(format!("verify-{}.db", std::process::id()));
    match restore::restore(store, keys, Target::Latest, &out, opts) {
        Ok(r) => report.restored_txid = Some(r.txid),
        Err(e) => report
            .problems
            .push(format!("restore of the latest state: {e}")),
    }
    let _ = std::fs::remove_file(&out);
    if report.problems.is_empty() {
        Ok(report)
    } else {
        Err(Error::corrupt(report.problems.join("\n")))
    }
}

/// Decode a whole object and check every checksum; a split snapshot's parts
/// are fetched and checked against its part table.
fn check_object(store: &dyn ObjectStore, key: &str, data: bytes::Bytes) -> Result<()> {
    let header = segment::SegmentHeader::decode(&data)?;
    if header.kind != SegmentKind::SplitSnapshot {
        return segment::decode_bytes(data)?.verify();
    }
    let idx = segment::decode_split_index(&data)?;
    let ps = idx.header.page_size as usize;
    super::parts::for_each_part(store, key, &idx, 4, &|_| {}, false, &|i, part, scratch| {
        let out = scratch.get(idx.pages_in_part(i).len() * ps);
        idx.decode_part_into(i, part, out).map(|_| ())
    })
}
