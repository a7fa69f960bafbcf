//! Read-only database files served straight from the bucket, page by page
//! (one ranged GET each, then the process's page cache, `engine::pages`);
//! nothing is restored and no local file is needed:
//!
//! - **A point in time**: `file:data.db?vfs=strata&bucket=…&tenant=acme&txid=42`
//!   (or `time=RFC3339`). Immutable.
//! - **A read replica**: `replica=1`, or a read-only open (`mode=ro`,
//!   `SQLITE_OPEN_READONLY`) of a database with no local file, as on a node
//!   that is not the writer. It follows the head: each read transaction
//!   (SQLite's SHARED lock) takes the newest state that the follower has
//!   (`engine::follow`, looked at once per `refresh=`, 1 s), and keeps it to
//!   the transaction's end. `PRAGMA strata_status` / `strata_staleness_ms`
//!   say how current it is.
//!
//! Page 1 is presented as a rollback-journal database whose change counter
//! is the txid (`PageMap::read_file_at`): SQLite needs no `-wal` or `-shm`,
//! and at each SHARED lock it sees whether the state moved and drops its
//! page cache if it did. A point in time tells SQLite it is immutable (no
//! locks, no change checks); a replica does not.

use super::params::{UriParams, location, shared_store};
use super::registry;
use crate::bucket::Store;
use crate::engine::Target;
use crate::engine::config::parse_duration;
use crate::engine::follow::Follower;
use crate::engine::pages::PageMap;
use crate::error::{Error, Result};
use crate::format::keys::DbKeys;
use crate::types::{Millis, TxId};
use sqlite_plugin::flags::LockLevel;
use sqlite_plugin::vars;
use sqlite_plugin::vfs::VfsResult;
use std::sync::Arc;
use std::time::Duration;

/// How often a replica looks for newer commits unless `refresh=` says.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(1);

pub struct RemoteFile {
    /// The state reads see now (a replica: the one its transaction took).
    map: Arc<PageMap>,
    store: Store,
    /// Set for a replica.
    follow: Option<Arc<Follower>>,
    /// A replica holds a SHARED lock (is inside a read transaction).
    reading: bool,
}

/// Does this open of a main database go to the bucket (and which kind)?
pub fn wanted(params: &UriParams, readonly: bool, local_exists: bool) -> bool {
    let flag = |k| {
        params
            .uri(k)
            .is_some_and(|v| !matches!(v, "0" | "false" | "off" | "no"))
    };
    params.uri("txid").is_some()
        || params.uri("time").is_some()
        || flag("replica")
        || (readonly && !local_exists && params.get("bucket").is_some())
}

impl RemoteFile {
    pub fn open(path: &str, params: &UriParams) -> Result<RemoteFile> {
        let target = match (params.uri("txid"), params.uri("time")) {
            (None, None) => None,
            (Some(t), None) => {
                Some(Target::TxId(TxId(t.parse().map_err(|_| {
                    Error::invalid(format!("txid must be a number, not `{t}`"))
                })?)))
            }
            (None, Some(t)) => {
                let when = humantime::parse_rfc3339_weak(t).map_err(|e| {
                    Error::invalid(format!(
                        "bad time `{t}` ({e}): use RFC 3339, e.g. 2026-11-25T10:00:00Z"
                    ))
                })?;
                Some(Target::Time(Millis::from_system_time(when)))
            }
            _ => return Err(Error::invalid("give either txid= or time=, not both")),
        };
        let (bucket, tenant, db) = location(path, params)?;
        let store = shared_store(&bucket)?;
        let keys = DbKeys::new(&tenant, &db)?;
        match target {
            Some(target) => {
                let map = PageMap::build(store.as_ref(), &keys, target)?;
                tracing::info!(txid = %map.txid, pages = map.db_pages, "opened {tenant}/{db} at a point in time");
                Ok(RemoteFile {
                    map: Arc::new(map),
                    store,
                    follow: None,
                    reading: false,
                })
            }
            None => {
                let refresh = match params.get("refresh") {
                    Some(v) => parse_duration(&v)?,
                    None => DEFAULT_REFRESH,
                };
                let follow = registry::follower(&bucket, store.clone(), keys, refresh)?;
                Ok(RemoteFile {
                    map: follow.head(),
                    store,
                    follow: Some(follow),
                    reading: false,
                })
            }
        }
    }

    pub fn file_size(&self) -> usize {
        self.map.size() as usize
    }

    pub fn read(&mut self, offset: usize, buf: &mut [u8]) -> VfsResult<usize> {
        self.map
            .read_file_at(self.store.as_ref(), offset as u64, buf)
            .map_err(|e| {
                tracing::error!(error = %e, "strata: read at {offset}");
                match e.kind() {
                    crate::ErrorKind::Corrupt => vars::SQLITE_CORRUPT,
                    _ => vars::SQLITE_IOERR_READ,
                }
            })
    }

    /// A replica's read transaction starts at its first SHARED lock: it
    /// takes the follower's newest state for the transaction's length.
    pub fn lock(&mut self, level: LockLevel) -> VfsResult<()> {
        if level > LockLevel::Shared {
            return Err(vars::SQLITE_READONLY);
        }
        if let Some(f) = &self.follow
            && level == LockLevel::Shared
            && !self.reading
        {
            self.map = f.head();
            self.reading = true;
        }
        Ok(())
    }

    pub fn unlock(&mut self, level: LockLevel) {
        if level == LockLevel::Unlocked {
            self.reading = false;
        }
    }

    pub fn device_characteristics(&self) -> i32 {
        if self.follow.is_some() {
            0
        } else {
            vars::SQLITE_IOCAP_IMMUTABLE
        }
    }

    /// `PRAGMA strata_*` of a remote file.
    pub fn pragma(&self, name: &str) -> Result<String> {
        let st = self.follow.as_ref().map(|f| f.status());
        Ok(match (name, st) {
            ("strata_txid", _) => self.map.txid.to_string(),
            ("strata_status", None) => format!("txid={} replica=no", self.map.txid),
            ("strata_status", Some(st)) => format!(
                "txid={} replica=yes head_commit={} staleness_ms={} moves={} error={}",
                self.map.txid,
                st.head_commit.rfc3339(),
                st.staleness.as_millis(),
                st.moves,
                st.error.as_deref().unwrap_or("none"),
            ),
            ("strata_staleness_ms", Some(st)) => st.staleness.as_millis().to_string(),
            ("strata_staleness_ms", None) => "0".to_string(),
            (other, _) => {
                return Err(Error::invalid(format!(
                    "{other} does not apply to a read-only file from the bucket; it has strata_status, strata_txid, strata_staleness_ms"
                )));
            }
        })
    }
}
