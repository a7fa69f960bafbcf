//! Replication and reading history back.
//!
//! - [`config`]: what a replica needs to know (bucket, names, intervals).
//! - [`spool`]: the local, durable queue of committed transactions.
//! - [`replica`]: the writer side: reconcile at open, `commit`, status.
//! - `uploader`: the background thread: spool → segments → manifest,
//!   snapshots and retention.
//! - `snapshot`: stream snapshots to the bucket (large ones split into
//!   parts), with their hot pages (page 1 and interior B-tree pages) for
//!   three-read cold opens.
//! - `parts`: read objects by offset whatever their layout (ranged reads
//!   across a split snapshot's parts; whole parts in parallel).
//! - [`restore`]: materialize any restore point into a file.
//! - [`pages`]: read single pages (or runs, or byte ranges) of any restore
//!   point with ranged GETs, through a shared moka page cache.
//! - [`lazy`]: a local copy filled on demand (lazy open) and `hydrate`.
//! - [`follow`]: a read replica: the head of a live database written on
//!   another node, moved forward as its commits arrive.
//! - [`node`]: this process's heartbeat as a cluster node, and other
//!   nodes' (leases bound to a node's liveness).
//! - [`history`]: list restore points.
//! - [`catalog`]: the tenants of a bucket and the databases of a tenant.
//! - [`import`]: bring an existing SQLite file into a bucket.
//! - [`verify`]: check every object's checksums and a restore's integrity.
//! - [`status`]: a node's view of a replica from its files (`strata status`).

pub mod catalog;
pub mod config;
mod direct;
pub mod follow;
pub mod history;
pub mod import;
pub mod lazy;
pub mod node;
pub mod pages;
mod parts;
pub mod replica;
pub mod restore;
mod snapshot;
pub mod spool;
pub mod status;
mod uploader;
pub mod verify;

pub use config::{Durability, ReplicaConfig};
pub use replica::{Replica, Stage, Status};
pub use restore::Target;

use crate::error::{Error, IoResultExt, Result};
use crate::types::{DbId, TxId};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a node remembers about its replica between opens (`<db>-strata/state.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LocalState {
    pub db_id: DbId,
    pub page_size: u32,
    /// The bucket's head txid when last seen by this node.
    pub head: TxId,
    /// Where the newest uploaded transaction sits in the WAL (frame 0:
    /// unknown, or a rollback-journal transaction). Recovery rebuilds the
    /// transactions after it from the WAL when the spool has none.
    #[serde(default)]
    pub wal: spool::WalPos,
}

impl LocalState {
    pub fn load(dir: &Path) -> Result<Option<LocalState>> {
        let p = dir.join("state.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::corrupt(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", p.display()), e)),
        }
    }

    /// Atomic replace (temp file + rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = dir.join("state.json");
        let tmp = dir.join("state.json.tmp");
        let body = serde_json::to_vec_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        std::fs::write(&tmp, body).io_ctx(format!("write {}", tmp.display()))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .io_ctx("sync state")?;
        std::fs::rename(&tmp, &p).io_ctx(format!("rename {}", p.display()))?;
        spool::sync_dir(dir);
        Ok(())
    }
}
