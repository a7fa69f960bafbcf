//! Configuration of a database opened through the VFS: URI parameters
//! (`file:data.db?vfs=strata&bucket=...&tenant=acme`), falling back to
//! `STRATA_*` environment variables.
//!
//! | URI parameter      | environment               | default            |
//! |--------------------|---------------------------|--------------------|
//! | `bucket`           | `STRATA_BUCKET`           | (required)         |
//! | `tenant`           | `STRATA_TENANT`           | (required)         |
//! | `db`               | `STRATA_DB`               | the file's name    |
//! | `durability`       | `STRATA_DURABILITY`       | `async`            |
//! | `sync_interval`    | `STRATA_SYNC_INTERVAL`    | `1s`               |
//! | `max_spool`        | `STRATA_MAX_SPOOL`        | 1 GiB (bytes)      |
//! | `snapshot_interval`| `STRATA_SNAPSHOT_INTERVAL`| `24h`              |
//! | `snapshot_part`    | `STRATA_SNAPSHOT_PART`    | 8 MiB (bytes)      |
//! | `merge_segments`   | `STRATA_MERGE_SEGMENTS`   | 64                 |
//! | `retention`        | `STRATA_RETENTION`        | `7d`               |
//! | `lease_ttl`        | `STRATA_LEASE_TTL`        | `30s`              |
//! | `node`             | `STRATA_NODE`             | none: leases by time; else the lease is bound to this process's node of that id (`engine::node`) |
//! | `lazy`             | `STRATA_LAZY`             | `1` (on)           |
//! | `replica`          | (URI only)                | `0`; `1`: read-only, following the bucket's head (a read replica, `remote.rs`) |
//! | `refresh`          | `STRATA_REFRESH`          | `1s`: how often a read replica looks for newer commits |
//! | `txid` / `time`    | (URI only)                | none: read-only at that point in time (`remote.rs`) |

use crate::bucket::{Store, open_bucket};
use crate::engine::config::{ReplicaConfig, parse_duration};
use crate::error::{Error, Result};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// URI parameters as SQLite lays them out after a filename:
/// `name\0key\0value\0key\0value\0\0`.
pub struct UriParams(Vec<(String, String)>);

impl UriParams {
    /// # Safety
    /// `name` must point at a filename SQLite passed to xOpen for a main
    /// database (which is followed by its parameters), NUL-terminated.
    pub unsafe fn read(name: *const u8) -> UriParams {
        let mut out = Vec::new();
        if name.is_null() {
            return UriParams(out);
        }
        unsafe {
            let mut p = name;
            p = p.add(cstr_len(p) + 1);
            loop {
                let klen = cstr_len(p);
                if klen == 0 {
                    break;
                }
                let key = String::from_utf8_lossy(std::slice::from_raw_parts(p, klen)).into_owned();
                p = p.add(klen + 1);
                let vlen = cstr_len(p);
                let val = String::from_utf8_lossy(std::slice::from_raw_parts(p, vlen)).into_owned();
                p = p.add(vlen + 1);
                out.push((key, val));
            }
        }
        UriParams(out)
    }

    pub fn empty() -> UriParams {
        UriParams(Vec::new())
    }

    /// The URI parameter only (no environment fallback).
    pub fn uri(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The URI parameter, else `STRATA_<KEY>` from the environment.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(format!("STRATA_{}", key.to_ascii_uppercase())).ok())
            .filter(|v| !v.is_empty())
    }
}

unsafe fn cstr_len(p: *const u8) -> usize {
    let mut n = 0;
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    n
}

static STORES: LazyLock<Mutex<HashMap<String, Store>>> = LazyLock::new(Default::default);

/// One store per bucket URL per process (an S3 store owns a client and
/// runtime), metered into `strata_bucket_requests_total`.
pub fn shared_store(url: &str) -> Result<Store> {
    let mut stores = STORES.lock();
    if let Some(s) = stores.get(url) {
        return Ok(s.clone());
    }
    let s: Store =
        std::sync::Arc::new(crate::bucket::metered::MeteredStore::new(open_bucket(url)?));
    stores.insert(url.to_string(), s.clone());
    Ok(s)
}

/// Make `url` name `store` for every database opened in this process: for
/// embedding strata with a store built in code, and for tests that inject
/// faults (`bucket=fault://name` over a `FaultStore`). Replaces nothing
/// already in use; returns false if `url` was taken.
pub fn register_store(url: &str, store: Store) -> bool {
    let mut stores = STORES.lock();
    if stores.contains_key(url) {
        return false;
    }
    stores.insert(url.to_string(), store);
    true
}

/// Where the database at `path` lives: (bucket URL, tenant, database name).
pub fn location(path: &str, params: &UriParams) -> Result<(String, String, String)> {
    let bucket = params.get("bucket").ok_or_else(|| {
        Error::invalid(format!(
            "{path}: no bucket: add `bucket=file:///path` or `bucket=s3://bucket/prefix` to the URI, or set STRATA_BUCKET"
        ))
    })?;
    let tenant = params.get("tenant").ok_or_else(|| {
        Error::invalid(format!(
            "{path}: no tenant: add `tenant=NAME` to the URI, or set STRATA_TENANT"
        ))
    })?;
    let db = match params.get("db") {
        Some(d) => d,
        None => std::path::Path::new(path)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Error::invalid(format!("{path}: cannot name the database; add `db=NAME`"))
            })?,
    };
    Ok((bucket, tenant, db))
}

/// Build the replication config of the database at `path`.
pub fn replica_config(path: &str, params: &UriParams) -> Result<ReplicaConfig> {
    let (bucket, tenant, db) = location(path, params)?;
    let mut cfg = ReplicaConfig::new(shared_store(&bucket)?, &tenant, &db)?;
    if let Some(d) = params.get("durability") {
        cfg.durability = d.parse()?;
    }
    if let Some(v) = params.get("sync_interval") {
        cfg.sync_interval = parse_duration(&v)?;
    }
    if let Some(v) = params.get("snapshot_interval") {
        cfg.snapshot_interval = parse_duration(&v)?;
    }
    if let Some(v) = params.get("lazy") {
        cfg.lazy = !matches!(v.as_str(), "0" | "false" | "off" | "no");
    }
    if let Some(v) = params.get("lease_ttl") {
        cfg.lease_ttl = parse_duration(&v)?;
    }
    if let Some(v) = params.get("node") {
        cfg.node = Some(crate::engine::node::local(&v)?);
    }
    if let Some(v) = params.get("retention") {
        cfg.retention = parse_duration(&v)?;
    }
    if let Some(v) = params.get("snapshot_part") {
        cfg.snapshot_part_bytes = v.parse().ok().filter(|&n| n >= 65536).ok_or_else(|| {
            Error::invalid(format!(
                "snapshot_part must be a byte count of at least 65536, not `{v}`"
            ))
        })?;
    }
    if let Some(v) = params.get("merge_segments") {
        cfg.merge_segments = v.parse().ok().filter(|&n| n >= 2).ok_or_else(|| {
            Error::invalid(format!(
                "merge_segments must be a count of at least 2, not `{v}`"
            ))
        })?;
    }
    if let Some(v) = params.get("max_spool") {
        cfg.max_spool = v
            .parse()
            .map_err(|_| Error::invalid(format!("max_spool must be a byte count, not `{v}`")))?;
    }
    Ok(cfg)
}
