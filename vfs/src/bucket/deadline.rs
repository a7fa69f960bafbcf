//! Puts an upper bound on every call to a store: a call that has not
//! answered within the deadline fails with `Unavailable` ("… did not answer
//! within 10s"), so an interactive caller never hangs on a bucket that is
//! down. Calls run on a pool of worker threads (starting a thread per call
//! costs more than a local read); a call that timed out keeps its worker
//! until the backend gives up (its own timeouts still apply), and its result
//! is dropped. Calls queued behind busy workers time out the same way.
//!
//! One operation (a FUSE lookup, say) may make several calls in a row; so
//! that it too is bounded by about one deadline, a call that times out marks
//! the bucket as not answering, and for the next deadline's length calls
//! fail at once with that news; then one call is let through to probe it.

use super::{ETag, Object, ObjectMeta, ObjectStore, Store};
use crate::error::{Error, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use std::ops::Range;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// Workers per store: enough for the parallel page fetches of a few readers.
const WORKERS: usize = 16;

pub struct DeadlineStore {
    inner: Store,
    deadline: Duration,
    jobs: Mutex<mpsc::Sender<Job>>,
    /// When a call last timed out, while no call has succeeded since.
    silent_since: Mutex<Option<Instant>>,
}

impl DeadlineStore {
    pub fn new(inner: Store, deadline: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rx = rx.clone();
            // A worker that cannot start only makes the pool smaller.
            let _ = std::thread::Builder::new()
                .name(format!("strata-bucket-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => break, // the store was dropped
                        }
                    }
                });
        }
        DeadlineStore {
            inner,
            deadline,
            jobs: Mutex::new(tx),
            silent_since: Mutex::new(None),
        }
    }

    /// Run `f` on a worker and wait for it at most the deadline.
    fn call<T: Send + 'static>(
        &self,
        what: String,
        f: impl FnOnce(&dyn ObjectStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        {
            let mut silent = self.silent_since.lock();
            if let Some(t) = *silent {
                if t.elapsed() < self.deadline {
                    return Err(Error::unavailable(format!(
                        "{what}: {} has not answered for {:?} (a call timed out after {:?})",
                        self.inner.describe(),
                        t.elapsed() + self.deadline,
                        self.deadline
                    )));
                }
                // Let this call probe; calls meanwhile still fail fast.
                *silent = Some(Instant::now());
            }
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let inner = self.inner.clone();
        let job: Job = Box::new(move || {
            let _ = tx.send(f(inner.as_ref()));
        });
        if self.jobs.lock().send(job).is_err() {
            return Err(Error::unavailable(format!("{what}: no bucket worker left")));
        }
        match rx.recv_timeout(self.deadline) {
            Ok(r) => {
                *self.silent_since.lock() = None;
                r
            }
            Err(_) => {
                *self.silent_since.lock() = Some(Instant::now());
                Err(Error::unavailable(format!(
                    "{what}: {} did not answer within {:?}",
                    self.inner.describe(),
                    self.deadline
                )))
            }
        }
    }
}

impl ObjectStore for DeadlineStore {
    fn get(&self, key: &str) -> Result<Object> {
        let k = key.to_owned();
        self.call(format!("get {key}"), move |s| s.get(&k))
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let k = key.to_owned();
        self.call(format!("get {key}"), move |s| s.get_range(&k, range))
    }
    fn put(&self, key: &str, data: Bytes) -> Result<ETag> {
        let k = key.to_owned();
        self.call(format!("put {key}"), move |s| s.put(&k, data))
    }
    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ETag> {
        let k = key.to_owned();
        self.call(format!("put {key}"), move |s| s.put_if_absent(&k, data))
    }
    fn put_if_match(&self, key: &str, data: Bytes, etag: &ETag) -> Result<ETag> {
        let (k, e) = (key.to_owned(), etag.clone());
        self.call(format!("put {key}"), move |s| s.put_if_match(&k, data, &e))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let p = prefix.to_owned();
        self.call(format!("list {prefix}"), move |s| s.list(&p))
    }
    fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        let d = dir.to_owned();
        self.call(format!("list {dir}"), move |s| s.list_dirs(&d))
    }
    fn delete(&self, key: &str) -> Result<()> {
        let k = key.to_owned();
        self.call(format!("delete {key}"), move |s| s.delete(&k))
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
    use crate::ErrorKind;
    use crate::bucket::fault::FaultStore;
    use crate::bucket::memory::MemoryStore;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn contract() {
        let store = DeadlineStore::new(Arc::new(MemoryStore::new()), Duration::from_secs(10));
        super::super::contract::run_all(&store);
    }

    #[test]
    fn a_slow_bucket_fails_within_the_deadline() {
        let fault = Arc::new(FaultStore::new(MemoryStore::new()));
        fault.put("k", Bytes::from_static(b"v")).unwrap();
        fault.set_latency(Duration::from_secs(3));
        let store = DeadlineStore::new(fault.clone(), Duration::from_millis(200));
        let t = Instant::now();
        let err = store.get("k").unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.to_string().contains("did not answer within"), "{err}");
        // The next calls of the same operation fail at once...
        let t = Instant::now();
        let err = store.get("k").unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        assert!(err.to_string().contains("has not answered"), "{err}");
        // ...until the deadline has passed and a probe gets through.
        fault.set_latency(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(store.get("k").unwrap().data, Bytes::from_static(b"v"));
        assert!(store.get("k").is_ok());
    }
}
