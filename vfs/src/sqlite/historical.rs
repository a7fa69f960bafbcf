//! A database file at a point in time, read-only, straight from the bucket:
//! `file:data.db?vfs=strata&bucket=…&tenant=acme&txid=42` (or `time=RFC3339`).
//! Nothing is restored: opening reads the manifest and the indexes of the
//! objects that point needs; each page is one ranged GET, then cached in the
//! process's page cache (`engine::pages`).
//!
//! The file is presented in rollback-journal mode (page 1's format bytes 18
//! and 19 read as 1), so SQLite needs no `-wal` or `-shm` for it: the image
//! already holds every transaction up to the point.

use super::params::{UriParams, shared_store};
use crate::bucket::Store;
use crate::engine::Target;
use crate::engine::pages::PageMap;
use crate::error::{Error, Result};
use crate::format::keys::DbKeys;
use crate::types::{Millis, TxId};
use sqlite_plugin::vars;
use sqlite_plugin::vfs::VfsResult;

pub struct HistoricalFile {
    map: PageMap,
    store: Store,
}

impl HistoricalFile {
    pub fn open(path: &str, params: &UriParams) -> Result<HistoricalFile> {
        let target = match (params.uri("txid"), params.uri("time")) {
            (Some(t), None) => {
                Target::TxId(TxId(t.parse().map_err(|_| {
                    Error::invalid(format!("txid must be a number, not `{t}`"))
                })?))
            }
            (None, Some(t)) => {
                let when = humantime::parse_rfc3339_weak(t).map_err(|e| {
                    Error::invalid(format!(
                        "bad time `{t}` ({e}): use RFC 3339, e.g. 2026-11-25T10:00:00Z"
                    ))
                })?;
                Target::Time(Millis::from_system_time(when))
            }
            _ => return Err(Error::invalid("give either txid= or time=, not both")),
        };
        let bucket = params
            .get("bucket")
            .ok_or_else(|| Error::invalid(format!("{path}: no bucket (add bucket=…)")))?;
        let tenant = params
            .get("tenant")
            .ok_or_else(|| Error::invalid(format!("{path}: no tenant (add tenant=…)")))?;
        let db = match params.get("db") {
            Some(d) => d,
            None => std::path::Path::new(path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let store = shared_store(&bucket)?;
        let keys = DbKeys::new(&tenant, &db)?;
        let map = PageMap::build(store.as_ref(), &keys, target)?;
        tracing::info!(txid = %map.txid, pages = map.db_pages, "opened {}/{} at a point in time", tenant, db);
        Ok(HistoricalFile { map, store })
    }

    pub fn file_size(&self) -> usize {
        self.map.size() as usize
    }

    pub fn read(&mut self, offset: usize, buf: &mut [u8]) -> VfsResult<usize> {
        let n = self
            .map
            .read_at(self.store.as_ref(), offset as u64, buf)
            .map_err(|e| {
                tracing::error!(error = %e, "strata: read at {offset}");
                match e.kind() {
                    crate::ErrorKind::Corrupt => vars::SQLITE_CORRUPT,
                    _ => vars::SQLITE_IOERR_READ,
                }
            })?;
        // Format bytes 18 and 19 of page 1 (1 = rollback journal, 2 = WAL).
        for b in [18usize, 19] {
            if (offset..offset + n).contains(&b) {
                buf[b - offset] = 1;
            }
        }
        Ok(n)
    }
}
