//! How one database replicates: where to, how often, how durable.

use crate::bucket::Store;
use crate::error::{Error, Result};
use std::time::Duration;

/// When a commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the local WAL and spool have it; the bucket gets it within the
    /// sync interval.
    #[default]
    Async,
    /// Only once its segment is in the bucket.
    Sync,
}

impl std::str::FromStr for Durability {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "async" => Ok(Durability::Async),
            "sync" => Ok(Durability::Sync),
            _ => Err(Error::invalid(format!(
                "durability must be `async` or `sync`, not `{s}`"
            ))),
        }
    }
}

/// Bytes per part of a split snapshot, unless configured.
pub const DEFAULT_SNAPSHOT_PART: u64 = 8 << 20;

/// Segments the manifest lists before small ones are merged
/// ([`ReplicaConfig::merge_segments`]).
pub const DEFAULT_MERGE_SEGMENTS: usize = 64;

/// Replication settings for one database.
#[derive(Clone)]
pub struct ReplicaConfig {
    pub store: Store,
    pub tenant: String,
    pub db: String,
    pub durability: Durability,
    /// Upload at least this often while there is something to upload.
    pub sync_interval: Duration,
    /// Upload early once this many spooled bytes wait.
    pub upload_threshold: u64,
    /// While the bucket is unreachable, accept commits until this many bytes
    /// are spooled; then fail them (never drop them).
    pub max_spool: u64,
    /// Write a snapshot when the segments since the last one exceed this many
    /// bytes (and at least `snapshot_min_bytes`), or after `snapshot_interval`.
    pub snapshot_interval: Duration,
    pub snapshot_min_bytes: u64,
    /// A snapshot larger than this is split into parts of this size
    /// (`docs/format.md` §2.8): bounded uploads, memory and ranged reads.
    pub snapshot_part_bytes: u64,
    /// When the manifest lists more segments than this, the newest run of
    /// small ones is merged into one segment, so the manifest (read by every
    /// cold open, rewritten by every upload) stays short however often the
    /// writer uploads between snapshots.
    pub merge_segments: usize,
    /// Keep every restore point this far back.
    pub retention: Duration,
    /// How long a commit in `sync` mode, or a close, waits for the bucket.
    pub sync_timeout: Duration,
    /// A writer's lease: another writer may take over a database only once
    /// its holder has not renewed the lease for this long (crashed or cut
    /// off). A clean close releases it at once.
    pub lease_ttl: Duration,
    /// The cluster node this process runs as (`engine::node`): the writer's
    /// lease is bound to its heartbeat instead of renewed by time.
    pub node: Option<std::sync::Arc<super::node::Node>>,
    /// Open a database that is not on this node without downloading it:
    /// pages are fetched when first read (`engine/lazy.rs`).
    pub lazy: bool,
}

impl ReplicaConfig {
    pub fn new(store: Store, tenant: &str, db: &str) -> Result<ReplicaConfig> {
        crate::format::keys::validate_tenant(tenant)?;
        crate::format::keys::validate_db_name(db)?;
        Ok(ReplicaConfig {
            store,
            tenant: tenant.to_string(),
            db: db.to_string(),
            durability: Durability::Async,
            sync_interval: Duration::from_secs(1),
            upload_threshold: 8 << 20,
            max_spool: 1 << 30,
            snapshot_interval: Duration::from_secs(24 * 3600),
            snapshot_min_bytes: 64 << 20,
            snapshot_part_bytes: DEFAULT_SNAPSHOT_PART,
            merge_segments: DEFAULT_MERGE_SEGMENTS,
            retention: Duration::from_secs(7 * 24 * 3600),
            sync_timeout: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(30),
            node: None,
            lazy: true,
        })
    }
}

/// Parse a duration like `1s`, `250ms`, `7d` (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration> {
    humantime::parse_duration(s)
        .map_err(|e| Error::invalid(format!("bad duration `{s}`: {e} (examples: 250ms, 1s, 7d)")))
}
