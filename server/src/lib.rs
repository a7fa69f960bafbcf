//! The `strata` binary's library: everything but the CLI itself (which is
//! `main.rs`, with the exit-code mapping and the allocator tuning). It is a
//! library so that the fuzz targets in `tests/fuzz/` can reach the server's
//! parsers.
//!
//! - `demo.rs`: `strata tour`, the replication tour.
//! - `mount.rs`: `strata mount`.
//! - `bench/`: `strata bench`.
//! - `serve/`: `strata serve` and `strata tenant` (map in `serve/mod.rs`).

pub mod bench;
pub mod demo;
pub mod mount;
pub mod serve;

use anyhow::{Result, bail};
use indicatif::ProgressBar;
use std::path::Path;
use std::sync::Arc;
use strata_vfs::bucket::{Store, open_bucket};
use strata_vfs::engine::restore::{self, Options};
use strata_vfs::format::keys::DbKeys;

/// A database argument `tenant/name` as its keys.
pub fn db_keys(db: &str) -> Result<DbKeys> {
    let Some((tenant, name)) = db.split_once('/') else {
        bail!("DB must be `tenant/name`, e.g. `acme/data.db`, not `{db}`");
    };
    Ok(DbKeys::new(tenant, name)?)
}

/// `PRAGMA integrity_check` must say `ok`.
pub fn integrity_check(path: &Path) -> strata_vfs::Result<()> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| strata_vfs::Error::corrupt(format!("open restored database: {e}")))?;
    let res: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| strata_vfs::Error::corrupt(format!("integrity_check: {e}")))?;
    if res != "ok" {
        return Err(strata_vfs::Error::corrupt(format!(
            "integrity_check: {res}"
        )));
    }
    Ok(())
}

/// Restore options: `parallelism` downloads, progress on `pb`, the result
/// checked by [`integrity_check`].
pub fn restore_options(parallelism: usize, pb: Option<ProgressBar>) -> Options {
    Options {
        parallelism,
        progress: pb.map(|pb| {
            Arc::new(move |done: u64, total: u64| {
                pb.set_length(total);
                pb.set_position(done);
            }) as restore::ProgressFn
        }),
        verify: Some(Arc::new(integrity_check)),
        ..Options::default()
    }
}

/// The bucket at `url`.
pub fn store(url: &str) -> Result<Store> {
    Ok(open_bucket(url)?)
}
