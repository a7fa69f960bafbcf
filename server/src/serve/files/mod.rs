//! Files of `file` fields. They live in the bucket, in PocketBase's layout
//! under the tenant's prefix:
//!
//! ```text
//! tenants/<tenant>/storage/<collectionId>/<recordId>/<name>
//! tenants/<tenant>/storage/<collectionId>/<recordId>/thumbs_<name>/<WxH>_<name>
//! ```
//!
//! - [`names`]: an upload's stored name (PocketBase's sanitized, suffixed
//!   names);
//! - [`upload`]: a multipart file part, its type detected from its bytes,
//!   checked against its field;
//! - [`thumbs`]: PocketBase's thumb sizes, made once with `image` and kept
//!   in the bucket beside the file;
//! - this file: the node's [`FileStore`] (the bucket and a bounded cache of
//!   file bytes shared by every tenant) and a tenant's view of it
//!   ([`TenantFiles`]).
//!
//! The order of a write keeps every name a committed record holds backed
//! by an object: uploads are put before the record's transaction, removed
//! again if it fails; files a record no longer names are deleted after it
//! commits. A failed deletion leaves an orphan object, never a dangling
//! name.

pub mod names;
pub mod thumbs;
pub mod upload;

use crate::serve::errors::ApiResult;
use crate::serve::tenants::blocking;
use bytes::Bytes;
use std::sync::Arc;
use strata_vfs::bucket::Store;

/// The node's files: the bucket, and the bytes of recently served files
/// (and thumbs), bounded by size like the page cache. A cached file keeps
/// being served while the bucket is unreachable.
pub struct FileStore {
    store: Store,
    cache: moka::sync::Cache<String, Bytes>,
}

/// Files larger than this are served from the bucket each time, not
/// cached (one large video must not evict every avatar), and streamed in
/// ranged reads of [`STREAM_CHUNK`].
pub const CACHE_LARGEST: usize = 8 << 20;

/// One ranged read of a streamed download.
pub const STREAM_CHUNK: u64 = 1 << 20;

impl FileStore {
    pub fn new(store: Store, cache_bytes: u64) -> FileStore {
        FileStore {
            store,
            cache: moka::sync::Cache::builder()
                .weigher(|k: &String, v: &Bytes| (k.len() + v.len()).min(u32::MAX as usize) as u32)
                .max_capacity(cache_bytes)
                .build(),
        }
    }

    /// The files of tenant `id`.
    pub fn tenant(self: &Arc<Self>, id: &str) -> TenantFiles {
        TenantFiles {
            node: self.clone(),
            prefix: format!("tenants/{id}/storage/"),
        }
    }
}

/// One tenant's files (cheap to clone).
#[derive(Clone)]
pub struct TenantFiles {
    node: Arc<FileStore>,
    /// `tenants/<id>/storage/`.
    prefix: String,
}

impl TenantFiles {
    /// The folder of one record's files, ending in `/`.
    pub fn record_dir(&self, collection_id: &str, record_id: &str) -> String {
        format!("{}{collection_id}/{record_id}/", self.prefix)
    }

    pub fn key(&self, collection_id: &str, record_id: &str, name: &str) -> String {
        format!("{}{name}", self.record_dir(collection_id, record_id))
    }

    /// Where the thumb `size` of file `name` is kept.
    pub fn thumb_key(
        &self,
        collection_id: &str,
        record_id: &str,
        name: &str,
        size: &str,
    ) -> String {
        format!(
            "{}thumbs_{name}/{size}_{name}",
            self.record_dir(collection_id, record_id)
        )
    }

    /// Store `data` at `key` (an outage is a 503).
    pub async fn put(&self, key: String, data: Bytes) -> ApiResult<()> {
        let node = self.node.clone();
        blocking(move || {
            node.store.put(&key, data.clone())?;
            if data.len() <= CACHE_LARGEST {
                node.cache.insert(key, data);
            }
            Ok(())
        })
        .await
    }

    /// The object at `key`, from the cache or the bucket; `None` if there
    /// is none.
    pub async fn get(&self, key: String) -> ApiResult<Option<Bytes>> {
        if let Some(b) = self.node.cache.get(&key) {
            return Ok(Some(b));
        }
        let node = self.node.clone();
        blocking(move || match node.store.get(&key) {
            Ok(o) => {
                if o.data.len() <= CACHE_LARGEST {
                    node.cache.insert(key, o.data.clone());
                }
                Ok(Some(o.data))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// The object at `key` if the node's cache has it (no request).
    pub fn cached(&self, key: &str) -> Option<Bytes> {
        self.node.cache.get(key)
    }

    /// The size of the object at `key` (one listing); `None` if there is
    /// none.
    pub async fn size(&self, key: String) -> ApiResult<Option<u64>> {
        let node = self.node.clone();
        blocking(move || {
            Ok(node
                .store
                .list(&key)?
                .into_iter()
                .find(|o| o.key == key)
                .map(|o| o.size))
        })
        .await
    }

    /// Bytes `range` of the object at `key`, from the bucket.
    pub async fn get_range(&self, key: String, range: std::ops::Range<u64>) -> ApiResult<Bytes> {
        let node = self.node.clone();
        blocking(move || Ok(node.store.get_range(&key, range)?)).await
    }

    /// Bytes `range` of the object at `key` as a stream of ranged reads of
    /// [`STREAM_CHUNK`], each made when the one before has been taken: a
    /// download holds one chunk in memory, whatever the file's size.
    pub fn stream(
        &self,
        key: String,
        range: std::ops::Range<u64>,
    ) -> impl futures_util::Stream<Item = ApiResult<Bytes>> + Send + 'static {
        let files = self.clone();
        futures_util::stream::unfold(range.start, move |at| {
            let (files, key, end) = (files.clone(), key.clone(), range.end);
            async move {
                if at >= end {
                    return None;
                }
                let to = (at + STREAM_CHUNK).min(end);
                match files.get_range(key, at..to).await {
                    // A short read ends the stream rather than loop.
                    Ok(b) if b.is_empty() => None,
                    Ok(b) => {
                        let next = at + b.len() as u64;
                        Some((Ok(b), next))
                    }
                    Err(e) => Some((Err(e), end)),
                }
            }
        })
    }

    /// Delete the files `names` of a record, with their thumbs. Best
    /// effort, in the background: a failure is logged and leaves orphans.
    pub fn delete_later(&self, collection_id: &str, record_id: &str, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        let dir = self.record_dir(collection_id, record_id);
        self.spawn_delete(move |store, cache| {
            for name in &names {
                let key = format!("{dir}{name}");
                cache.invalidate(&key);
                store.delete(&key)?;
                delete_prefix(store, cache, &format!("{dir}thumbs_{name}/"))?;
            }
            Ok(())
        });
    }

    /// Delete every file of a record (the record is gone), in the background.
    pub fn delete_record_later(&self, collection_id: &str, record_id: &str) {
        let dir = self.record_dir(collection_id, record_id);
        self.spawn_delete(move |store, cache| delete_prefix(store, cache, &dir));
    }

    /// Delete every file of a collection (it is gone), in the background.
    pub fn delete_collection_later(&self, collection_id: &str) {
        let dir = format!("{}{collection_id}/", self.prefix);
        self.spawn_delete(move |store, cache| delete_prefix(store, cache, &dir));
    }

    /// Delete objects just put for a write that then failed.
    pub fn discard_later(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        self.spawn_delete(move |store, cache| {
            for k in &keys {
                cache.invalidate(k);
                store.delete(k)?;
            }
            Ok(())
        });
    }

    fn spawn_delete(
        &self,
        f: impl FnOnce(&Store, &moka::sync::Cache<String, Bytes>) -> strata_vfs::Result<()>
        + Send
        + 'static,
    ) {
        let node = self.node.clone();
        let job = move || {
            if let Err(e) = f(&node.store, &node.cache) {
                tracing::warn!(error = %e, "deleting files failed; the objects stay as orphans");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(job)),
            Err(_) => job(),
        }
    }
}

fn delete_prefix(
    store: &Store,
    cache: &moka::sync::Cache<String, Bytes>,
    prefix: &str,
) -> strata_vfs::Result<()> {
    for o in store.list(prefix)? {
        cache.invalidate(&o.key);
        store.delete(&o.key)?;
    }
    Ok(())
}
