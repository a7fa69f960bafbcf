//! The bucket layer: one small trait over object stores, and its backends.
//!
//! Everything strata stores goes through [`ObjectStore`]. Backends:
//! - [`local::LocalStore`]: a directory (the default). Writes are atomic
//!   (temp file + rename); conditional puts are atomic too (a lock per store).
//! - [`s3::S3Store`]: any S3-compatible server via `aws-sdk-s3`, configured
//!   from the standard `AWS_*` variables, never from instance metadata.
//! - [`memory::MemoryStore`]: in-memory, for unit tests.
//! - [`fault::FaultStore`]: wraps any store to inject errors, latency and
//!   outages at named points, for tests.
//! - [`metered::MeteredStore`]: counts requests and bytes (Prometheus + tests).
//! - [`deadline::DeadlineStore`]: bounds how long any call may take.
//!
//! The trait is blocking: callers are the VFS callbacks, background threads
//! and the CLI. The S3 backend hands its async work to one runtime.

pub mod deadline;
pub mod fault;
pub mod local;
pub mod memory;
pub mod metered;
pub mod s3;
mod url;

pub use url::{BucketUrl, open_bucket};

use crate::error::Result;
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;

/// An opaque version tag of an object, used for compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(pub String);

/// A whole object and its version.
#[derive(Debug, Clone)]
pub struct Object {
    pub data: Bytes,
    pub etag: ETag,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// The operations strata needs from a bucket, and no more.
///
/// Keys are `/`-separated relative paths (`tenants/acme/db/data.db/manifest.json`).
/// Errors use [`crate::ErrorKind`]: a missing object is `NotFound`, a failed
/// condition is `Conflict`, anything transient is `Unavailable`.
pub trait ObjectStore: Send + Sync + 'static {
    /// The whole object and its etag.
    fn get(&self, key: &str) -> Result<Object>;

    /// The whole object into `out`, for a caller that knows its size from an
    /// index: returns the object's length, and only if that is `out.len()`
    /// does `out` hold the object (otherwise its contents are unspecified and
    /// the caller reports the mismatch). Reading into a reused buffer saves
    /// a fresh allocation, and its page faults, per object.
    fn get_into(&self, key: &str, out: &mut [u8]) -> Result<u64> {
        let data = self.get(key)?.data;
        if data.len() == out.len() {
            out.copy_from_slice(&data);
        }
        Ok(data.len() as u64)
    }

    /// Bytes `range` of the object. A range past the end is truncated to the
    /// object's size (as S3 does); a range starting past the end is `Invalid`.
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;

    /// Unconditional write (create or replace).
    fn put(&self, key: &str, data: Bytes) -> Result<ETag>;

    /// Create only if no object exists at `key`; `Conflict` otherwise.
    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ETag>;

    /// Replace only if the current object's etag is `etag`; `Conflict` if it
    /// changed or no longer exists.
    fn put_if_match(&self, key: &str, data: Bytes, etag: &ETag) -> Result<ETag>;

    /// All objects whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// The names one level below `dir` (which ends in `/`, or is empty for
    /// the top) that have objects under them, sorted: S3's common prefixes
    /// with delimiter `/`. Listing the tenants of a bucket this way costs one
    /// request per thousand tenants, not one per thousand objects.
    fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        local::check_dir(dir)?;
        let mut out: Vec<String> = self
            .list(dir)?
            .into_iter()
            .filter_map(|o| {
                let (name, _) = o.key.strip_prefix(dir)?.split_once('/')?;
                Some(name.to_string())
            })
            .collect();
        out.dedup();
        Ok(out)
    }

    /// Delete; deleting a missing object is not an error.
    fn delete(&self, key: &str) -> Result<()>;

    /// Where this store points, for messages (`file:///tmp/b`, `s3://b/p`).
    fn describe(&self) -> String;

    /// What tells this bucket apart from every other one a process may open:
    /// the scope of caches keyed by object key. Two stores with the same
    /// identity hold the same objects. Defaults to [`describe`](Self::describe);
    /// a store whose description leaves out where it lives (S3's endpoint)
    /// says more.
    fn identity(&self) -> String {
        self.describe()
    }
}

/// Stores are shared between the VFS, the uploader and the CLI.
pub type Store = Arc<dyn ObjectStore>;

impl<T: ObjectStore + ?Sized> ObjectStore for Arc<T> {
    fn get(&self, key: &str) -> Result<Object> {
        (**self).get(key)
    }
    fn get_into(&self, key: &str, out: &mut [u8]) -> Result<u64> {
        (**self).get_into(key, out)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        (**self).get_range(key, range)
    }
    fn put(&self, key: &str, data: Bytes) -> Result<ETag> {
        (**self).put(key, data)
    }
    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ETag> {
        (**self).put_if_absent(key, data)
    }
    fn put_if_match(&self, key: &str, data: Bytes, etag: &ETag) -> Result<ETag> {
        (**self).put_if_match(key, data, etag)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        (**self).list(prefix)
    }
    fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        (**self).list_dirs(dir)
    }
    fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn identity(&self) -> String {
        (**self).identity()
    }
}

/// The one backend test body, run against every backend (unit tests run it on
/// memory, local and fault stores; `tests/` runs it on a real S3 server).
#[doc(hidden)]
pub mod contract;
