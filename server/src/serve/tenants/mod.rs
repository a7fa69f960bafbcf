//! Tenants on this node: which are loaded, how their databases are used,
//! and their lifecycle objects in the bucket.
//!
//! - [`registry`]: lazy load on first request, LRU and idle eviction with
//!   draining, background upkeep ([`Registry::maintain`]);
//! - [`tenant`]: a loaded tenant (its two databases, JWT secret, request
//!   log rows waiting to be written in a batch);
//! - [`pool`]: one database's connections: parallel readers, one writer
//!   whose queued writes share a transaction (and an upload);
//! - [`lifecycle`]: create, soft delete and purge, restore, fork, export,
//!   list, and this node's view of a tenant's replication;
//! - [`domains`]: a tenant's own domain, claimed in the bucket;
//! - [`backup`]: the export's zip.
//!
//! A tenant's databases are opened through the strata VFS
//! (`file:...?vfs=strata&bucket=&tenant=&db=`), lazily from the bucket:
//! pages arrive on first read. Local files live under
//! `<data-dir>/<tenant>/` and are only a cache.
//!
//! Bucket objects besides the databases:
//! - `tenants/<id>/metadata.json`: `{id, domain, created, deleted, purgeAfter}`;
//! - `_strata/domains/<domain>`: the tenant id, a claim made with a
//!   conditional put so that two tenants cannot take one domain.

pub mod backup;
pub mod domains;
pub mod lifecycle;
pub mod pool;
pub mod registry;
pub mod tenant;

pub use domains::{HostError, claimable_domain, is_address, normalize_host};
pub use lifecycle::Metadata;
pub use pool::Commit;
pub use registry::Registry;
pub use tenant::{DATA_DB, Guard, LogRow, Tenant};

use super::errors::{ApiError, ApiResult};
use std::path::PathBuf;
use std::time::Duration;
use strata_vfs::format::keys::validate_tenant;

#[derive(Debug, Clone)]
pub struct Config {
    /// The bucket URL as the VFS URI parameter takes it.
    pub bucket: String,
    pub data_dir: PathBuf,
    pub max_tenants: usize,
    pub idle_ttl: Duration,
    /// How long eviction waits for in-flight requests, and how long a
    /// request waits for an evicting tenant before it gets 503.
    pub drain_timeout: Duration,
    /// Rows kept in `_logs`.
    pub log_cap: u64,
    /// How long a deleted tenant stays restorable.
    pub delete_grace: Duration,
    /// Delete an evicted tenant's local files once all of it is in the bucket.
    pub drop_local_on_evict: bool,
    /// Reader connections of one tenant's `data.db` at most.
    pub max_readers: usize,
    /// A reader unused this long is closed.
    pub reader_idle: Duration,
    /// Bytes of file contents cached in memory (see `serve::files`).
    pub file_cache: u64,
    /// Failed logins of one identity per window before 429 (`None`: off).
    pub auth_failures: Option<(i64, Duration)>,
    /// The cluster node this process runs as (`serve::cluster`): its
    /// databases' leases are bound to its heartbeat, and a load claims
    /// `data.db` at once.
    pub node: String,
}

pub fn check_tenant_id(id: &str) -> ApiResult<()> {
    validate_tenant(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Run blocking work (bucket requests, file work) on the blocking pool.
pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> ApiResult<R> + Send + 'static,
) -> ApiResult<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}
