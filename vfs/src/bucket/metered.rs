//! Counts requests and bytes per store, for tests ("a checkpoint costs N
//! requests") and for metrics.
//!
//! Every call counts as a request, whether it succeeds or not (a failed request
//! is still billed and still costs a round trip). Bytes written count the
//! payload of every put attempt; bytes read count the payload returned.

use super::{ETag, Object, ObjectMeta, ObjectStore};
use crate::error::Result;
use bytes::Bytes;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time copy of a [`MeteredStore`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub get: u64,
    pub get_range: u64,
    pub put: u64,
    pub put_if_absent: u64,
    pub put_if_match: u64,
    pub list: u64,
    pub delete: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl Counts {
    /// Total requests of all kinds (bytes not included).
    pub fn total(&self) -> u64 {
        self.get
            + self.get_range
            + self.put
            + self.put_if_absent
            + self.put_if_match
            + self.list
            + self.delete
    }

    /// Total write requests (put, put_if_absent, put_if_match).
    pub fn writes(&self) -> u64 {
        self.put + self.put_if_absent + self.put_if_match
    }

    /// What happened between `earlier` and `self` (saturating).
    pub fn sub(&self, earlier: &Counts) -> Counts {
        Counts {
            get: self.get.saturating_sub(earlier.get),
            get_range: self.get_range.saturating_sub(earlier.get_range),
            put: self.put.saturating_sub(earlier.put),
            put_if_absent: self.put_if_absent.saturating_sub(earlier.put_if_absent),
            put_if_match: self.put_if_match.saturating_sub(earlier.put_if_match),
            list: self.list.saturating_sub(earlier.list),
            delete: self.delete.saturating_sub(earlier.delete),
            bytes_read: self.bytes_read.saturating_sub(earlier.bytes_read),
            bytes_written: self.bytes_written.saturating_sub(earlier.bytes_written),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    get: AtomicU64,
    get_range: AtomicU64,
    put: AtomicU64,
    put_if_absent: AtomicU64,
    put_if_match: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// Wraps a store and counts what goes through it.
#[derive(Debug)]
pub struct MeteredStore<S> {
    inner: S,
    c: Counters,
}

/// One request: this store's counter and the process-wide Prometheus one.
fn count(c: &AtomicU64, op: &str) {
    c.fetch_add(1, Ordering::Relaxed);
    crate::metrics::METRICS
        .bucket_requests
        .with_label_values(&[op])
        .inc();
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl<S: ObjectStore> MeteredStore<S> {
    pub fn new(inner: S) -> Self {
        MeteredStore {
            inner,
            c: Counters::default(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn snapshot(&self) -> Counts {
        let c = &self.c;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            get: l(&c.get),
            get_range: l(&c.get_range),
            put: l(&c.put),
            put_if_absent: l(&c.put_if_absent),
            put_if_match: l(&c.put_if_match),
            list: l(&c.list),
            delete: l(&c.delete),
            bytes_read: l(&c.bytes_read),
            bytes_written: l(&c.bytes_written),
        }
    }
}

impl<S: ObjectStore> ObjectStore for MeteredStore<S> {
    fn get(&self, key: &str) -> Result<Object> {
        count(&self.c.get, "get");
        let obj = self.inner.get(key)?;
        inc(&self.c.bytes_read, obj.data.len() as u64);
        Ok(obj)
    }

    fn get_into(&self, key: &str, out: &mut [u8]) -> Result<u64> {
        count(&self.c.get, "get");
        let len = self.inner.get_into(key, out)?;
        if len == out.len() as u64 {
            inc(&self.c.bytes_read, len);
        }
        Ok(len)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        count(&self.c.get_range, "get_range");
        let data = self.inner.get_range(key, range)?;
        inc(&self.c.bytes_read, data.len() as u64);
        Ok(data)
    }

    fn put(&self, key: &str, data: Bytes) -> Result<ETag> {
        count(&self.c.put, "put");
        inc(&self.c.bytes_written, data.len() as u64);
        self.inner.put(key, data)
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ETag> {
        count(&self.c.put_if_absent, "put_if_absent");
        inc(&self.c.bytes_written, data.len() as u64);
        self.inner.put_if_absent(key, data)
    }

    fn put_if_match(&self, key: &str, data: Bytes, etag: &ETag) -> Result<ETag> {
        count(&self.c.put_if_match, "put_if_match");
        inc(&self.c.bytes_written, data.len() as u64);
        self.inner.put_if_match(key, data, etag)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        count(&self.c.list, "list");
        self.inner.list(prefix)
    }

    fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        count(&self.c.list, "list");
        self.inner.list_dirs(dir)
    }

    fn delete(&self, key: &str) -> Result<()> {
        count(&self.c.delete, "delete");
        self.inner.delete(key)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn identity(&self) -> String {
        self.inner.identity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::memory::MemoryStore;

    #[test]
    fn contract() {
        let store = MeteredStore::new(MemoryStore::new());
        super::super::contract::run_all(&store);
        assert!(store.snapshot().total() > 0);
    }

    #[test]
    fn counts_requests_and_bytes() {
        let store = MeteredStore::new(MemoryStore::new());
        let before = store.snapshot();
        let e = store.put("a", Bytes::from_static(b"hello")).unwrap();
        store.put_if_absent("b", Bytes::from_static(b"xy")).unwrap();
        store
            .put_if_absent("b", Bytes::from_static(b"xyz"))
            .unwrap_err();
        store
            .put_if_match("a", Bytes::from_static(b"hi"), &e)
            .unwrap();
        store.get("a").unwrap();
        store.get("missing").unwrap_err();
        store.get_range("b", 1..10).unwrap();
        store.list("").unwrap();
        store.delete("a").unwrap();
        let d = store.snapshot().sub(&before);
        assert_eq!(
            d,
            Counts {
                get: 2,
                get_range: 1,
                put: 1,
                put_if_absent: 2,
                put_if_match: 1,
                list: 1,
                delete: 1,
                bytes_read: 2 + 1,
                bytes_written: 5 + 2 + 3 + 2,
            }
        );
        assert_eq!(d.total(), 9);
        assert_eq!(d.writes(), 4);
        assert_eq!(before.sub(&d), Counts::default(), "saturating");
    }
}
