//! One `Replica` per database file per process, shared by every connection
//! (and its WAL handle) that opens the file; and one `Follower` per database
//! followed (read replicas, `remote.rs`), shared by its readers.

use crate::bucket::Store;
use crate::engine::follow::Follower;
use crate::engine::{Replica, ReplicaConfig};
use crate::error::Result;
use crate::format::keys::DbKeys;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

static REPLICAS: LazyLock<Mutex<HashMap<PathBuf, Weak<Replica>>>> = LazyLock::new(Default::default);

/// The replica of `path`, opening it if this process has none. `None`: another
/// process is the writer, so connections here may only read.
pub fn acquire(path: &Path, cfg: ReplicaConfig) -> Result<Option<Arc<Replica>>> {
    let started = Instant::now();
    loop {
        let mut map = REPLICAS.lock();
        if let Some((Some(r), _)) = map.get(path).map(|w| (w.upgrade(), w.strong_count())) {
            return Ok(Some(r));
        }
        let closing = map.contains_key(path);
        match Replica::open(path, cfg.clone())? {
            Some(r) => {
                let r = Arc::new(r);
                map.insert(path.to_path_buf(), Arc::downgrade(&r));
                return Ok(Some(r));
            }
            // Our own last connection may still be closing (final upload):
            // wait for it rather than demote this connection to a reader.
            None if closing && started.elapsed() < cfg.sync_timeout + Duration::from_secs(2) => {
                drop(map);
                std::thread::sleep(Duration::from_millis(10));
            }
            None => {
                map.remove(path);
                return Ok(None);
            }
        }
    }
}

/// The replica of `path` if some connection of this process holds it.
pub fn find(path: &Path) -> Option<Arc<Replica>> {
    REPLICAS.lock().get(path).and_then(Weak::upgrade)
}

/// (bucket URL, `tenant/db`, refresh interval).
type FollowKey = (String, String, Duration);

static FOLLOWERS: LazyLock<Mutex<HashMap<FollowKey, Weak<Follower>>>> =
    LazyLock::new(Default::default);

/// The follower of `keys` in the bucket at `url`, opening it (a manifest
/// GET and the indexes) if no reader of this process has it.
pub fn follower(url: &str, store: Store, keys: DbKeys, refresh: Duration) -> Result<Arc<Follower>> {
    let key = (url.to_string(), keys.root().to_string(), refresh);
    let mut map = FOLLOWERS.lock();
    if let Some(f) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(f);
    }
    map.retain(|_, w| w.strong_count() > 0);
    let f = Arc::new(Follower::open(store, keys, refresh)?);
    map.insert(key, Arc::downgrade(&f));
    Ok(f)
}
