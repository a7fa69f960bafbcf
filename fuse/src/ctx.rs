//! What every node needs: the bucket (bounded by `--timeout`, metered), the
//! options, and short-lived caches of listings (`--refresh`).

use crate::Options;
use moka::sync::Cache;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use strata_vfs::bucket::deadline::DeadlineStore;
use strata_vfs::bucket::metered::MeteredStore;
use strata_vfs::bucket::{ObjectStore, Store};
use strata_vfs::engine::catalog;
use strata_vfs::{Error, Result};

pub struct Ctx {
    pub bucket: Arc<MeteredStore<DeadlineStore>>,
    pub opts: Options,
    tenants: Cache<(), Arc<Vec<String>>>,
    dbs: Cache<Arc<str>, Arc<Vec<String>>>,
    /// Folders made with mkdir under hooks/ or storage/ that hold no object
    /// yet (a bucket has no empty folders): (tenant, path).
    pub made_dirs: Mutex<BTreeSet<(Arc<str>, String)>>,
    pub db_files: crate::db_file::DbFiles,
    /// Tells the kernel to drop cached pages (set once mounted).
    pub notifier: OnceLock<fuser::Notifier>,
    pub counters: Counters,
}

/// What the kernel asked of the database files (for `/.strata-stats`).
#[derive(Default)]
pub struct Counters {
    /// Read requests on database files that reached this process, and bytes.
    pub db_reads: AtomicU64,
    pub db_read_bytes: AtomicU64,
    /// F_SETLK/F_GETLK requests on database files.
    pub lock_requests: AtomicU64,
    /// Times a live file moved to a newer head.
    pub live_moves: AtomicU64,
    /// Page ranges dropped from the kernel's cache.
    pub invalidations: AtomicU64,
}

impl Ctx {
    pub fn new(store: Store, opts: Options) -> Ctx {
        let bucket = Arc::new(MeteredStore::new(DeadlineStore::new(store, opts.timeout)));
        Ctx {
            bucket,
            tenants: Cache::builder()
                .max_capacity(1)
                .time_to_live(opts.refresh)
                .build(),
            dbs: Cache::builder()
                .max_capacity(1024)
                .time_to_live(opts.refresh)
                .build(),
            made_dirs: Mutex::new(BTreeSet::new()),
            db_files: Default::default(),
            notifier: OnceLock::new(),
            counters: Counters::default(),
            opts,
        }
    }

    pub fn store(&self) -> &dyn ObjectStore {
        self.bucket.as_ref()
    }

    /// The bucket's tenants, listed at most once per refresh interval.
    pub fn tenants(&self) -> Result<Arc<Vec<String>>> {
        self.tenants
            .try_get_with((), || catalog::tenants(self.store()).map(Arc::new))
            .map_err(|e: Arc<Error>| e.clone_error())
    }

    /// A tenant's databases, listed at most once per refresh interval.
    pub fn databases(&self, tenant: &Arc<str>) -> Result<Arc<Vec<String>>> {
        self.dbs
            .try_get_with(tenant.clone(), || {
                catalog::databases(self.store(), tenant).map(Arc::new)
            })
            .map_err(|e: Arc<Error>| e.clone_error())
    }
}
