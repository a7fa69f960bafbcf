//! An in-memory bucket for unit tests. Same semantics (and key rules) as the
//! other backends; every write gets a fresh etag from a process-wide counter.

use super::local::{check_key, check_prefix, clamp_range};
use super::{ETag, Object, ObjectMeta, ObjectStore};
use crate::error::{Error, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide, so etags never repeat even across stores.
static VERSION: AtomicU64 = AtomicU64::new(1);

fn etag_of(version: u64) -> ETag {
    ETag(format!("mem-{version}"))
}

/// An in-memory bucket.
#[derive(Debug)]
pub struct MemoryStore {
    name: String,
    /// Unique in the process: two memory stores never share an identity,
    /// whatever their names.
    instance: u64,
    objects: Mutex<BTreeMap<String, (Bytes, u64)>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::named("")
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that describes itself as `mem://name` (see `BucketUrl`).
    pub fn named(name: &str) -> Self {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        MemoryStore {
            name: name.to_string(),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            objects: Mutex::default(),
        }
    }

    fn insert(map: &mut BTreeMap<String, (Bytes, u64)>, key: &str, data: Bytes) -> ETag {
        let version = VERSION.fetch_add(1, Ordering::Relaxed);
        map.insert(key.to_string(), (data, version));
        etag_of(version)
    }
}

impl ObjectStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Object> {
        check_key(key)?;
        match self.objects.lock().get(key) {
            Some((data, v)) => Ok(Object {
                data: data.clone(),
                etag: etag_of(*v),
            }),
            None => Err(Error::not_found(format!("get {key}: no such object"))),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        check_key(key)?;
        let data = match self.objects.lock().get(key) {
            Some((data, _)) => data.clone(),
            None => return Err(Error::not_found(format!("get_range {key}: no such object"))),
        };
        let r = clamp_range(key, &range, data.len() as u64)?;
        Ok(data.slice(r.start as usize..r.end as usize))
    }

    fn put(&self, key: &str, data: Bytes) -> Result<ETag> {
        check_key(key)?;
        Ok(Self::insert(&mut self.objects.lock(), key, data))
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ETag> {
        check_key(key)?;
        let mut map = self.objects.lock();
        if map.contains_key(key) {
            return Err(Error::conflict(format!(
                "put_if_absent {key}: object already exists"
            )));
        }
        Ok(Self::insert(&mut map, key, data))
    }

    fn put_if_match(&self, key: &str, data: Bytes, etag: &ETag) -> Result<ETag> {
        check_key(key)?;
        let mut map = self.objects.lock();
        match map.get(key) {
            None => Err(Error::conflict(format!(
                "put_if_match {key}: object no longer exists"
            ))),
            Some((_, v)) if etag_of(*v) != *etag => Err(Error::conflict(format!(
                "put_if_match {key}: object changed (etag {} != expected {})",
                etag_of(*v).0,
                etag.0
            ))),
            Some(_) => Ok(Self::insert(&mut map, key, data)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        check_prefix(prefix)?;
        let map = self.objects.lock();
        Ok(map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (data, _))| ObjectMeta {
                key: k.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.objects.lock().remove(key);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("mem://{}", self.name)
    }

    fn identity(&self) -> String {
        format!("mem://{}#{}", self.name, self.instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract() {
        super::super::contract::run_all(&MemoryStore::new());
    }

    #[test]
    fn etags_never_repeat() {
        let a = MemoryStore::new();
        let b = MemoryStore::new();
        let e1 = a.put("k", Bytes::from_static(b"x")).unwrap();
        let e2 = b.put("k", Bytes::from_static(b"x")).unwrap();
        let e3 = a.put("k", Bytes::from_static(b"x")).unwrap();
        assert_ne!(e1, e2);
        assert_ne!(e1, e3);
    }
}
