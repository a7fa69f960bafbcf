//! The SQLite side: a VFS named `strata`, built on `sqlite-plugin`, that
//! forwards every file operation to SQLite's own unix VFS and captures each
//! committed transaction on its way into the WAL (or, in rollback-journal
//! mode, into the database file) for the engine.
//!
//! - `base.rs`: files of the base VFS, driven through its C methods.
//! - `capture.rs`: turning writes into committed transactions.
//! - `vfs.rs`: the `sqlite_plugin::vfs::Vfs` implementation and file handles.
//! - `remote.rs`: read-only files served page by page from the bucket: a
//!   point in time (`txid=`, `time=`), or a read replica following the
//!   head (`replica=1`, or `mode=ro` with no local file).
//! - `params.rs`: URI parameters and `STRATA_*` variables.
//! - `registry.rs`: one `Replica` per database file per process.
//! - `hook.rs`: sync mode's wait for the bucket after the write lock is
//!   released (group commit), in a WAL hook.
//! - `busy.rs`: a busy wait for the WAL write lock ends when another
//!   connection of this process releases it (`xSleep`).
//! - `pragmas.rs`: `PRAGMA strata_*`: replication status from SQL.
//! - this file: registration, and the one place where engine errors become
//!   SQLite result codes.

mod base;
mod busy;
pub mod capture;
mod ffi;
mod hook;
pub mod params;
mod pragmas;
mod registry;
mod remote;
mod vfs;

pub use vfs::StrataVfs;

use crate::error::{Error, ErrorKind, Retry};
use sqlite_plugin::vars;

/// The VFS name to put in URIs: `file:data.db?vfs=strata&...`.
pub const VFS_NAME: &str = match VFS_NAME_C.to_str() {
    Ok(name) => name,
    Err(_) => panic!("the VFS name is UTF-8"),
};

/// [`VFS_NAME`] for C.
const VFS_NAME_C: &std::ffi::CStr = c"strata";

/// Point the registered VFS's `xSleep` (SQLite's busy handler sleeps there)
/// at `busy.rs`. `sqlite-plugin` has no hook for it, so the field is set
/// right after registration, before this function returns the VFS to anyone.
///
/// # Safety
/// `vfs` is null or the `sqlite3_vfs` just registered as `strata`.
#[cfg(any(feature = "static", feature = "dynamic"))]
unsafe fn take_over_sleep(vfs: *mut ffi::sqlite3_vfs) {
    if let Some(vfs) = unsafe { vfs.as_mut() } {
        vfs.xSleep = Some(busy::x_sleep);
    }
}

/// Engine error → SQLite result code (the only such mapping).
pub fn sqlite_code(e: &Error) -> i32 {
    match e.kind() {
        ErrorKind::NotFound => vars::SQLITE_CANTOPEN,
        ErrorKind::Unavailable => match e.retry() {
            // Spool or local disk full: "database or disk is full".
            Retry::Full => vars::SQLITE_FULL,
            // Refused before the commit point (sync mode, bucket down): a
            // COMMIT stays open and can be retried; an autocommit statement
            // is rolled back and can be run again.
            Retry::NotApplied => vars::SQLITE_BUSY,
            Retry::Later => vars::SQLITE_IOERR,
        },
        // Another writer owns the database: this connection may only read.
        ErrorKind::Conflict => vars::SQLITE_READONLY,
        ErrorKind::Corrupt => vars::SQLITE_CORRUPT,
        ErrorKind::Invalid => vars::SQLITE_MISUSE,
    }
}

/// Register the `strata` VFS with the SQLite linked into this program
/// (rusqlite's). Idempotent.
#[cfg(feature = "static")]
pub fn register_static() -> crate::Result<()> {
    use std::sync::OnceLock;
    static DONE: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default (unix) VFS.
        let base = unsafe { rusqlite::ffi::sqlite3_vfs_find(std::ptr::null()) };
        if base.is_null() {
            return Err(vars::SQLITE_ERROR);
        }
        let vfs = StrataVfs::new(base.cast());
        sqlite_plugin::vfs::register_static(
            VFS_NAME_C.to_owned(),
            vfs,
            sqlite_plugin::vfs::RegisterOpts {
                make_default: false,
            },
        )?;
        // SAFETY: just registered under this name; see `take_over_sleep`.
        unsafe { take_over_sleep(rusqlite::ffi::sqlite3_vfs_find(VFS_NAME_C.as_ptr()).cast()) };
        hook::install_static()
    });
    r.map_err(|rc| Error::unavailable(format!("register the strata VFS: SQLite error {rc}")))
}

/// Register the `strata` VFS from a loadable extension's init function.
///
/// # Safety
/// `api` is the `sqlite3_api_routines` pointer SQLite passed to the init function.
#[cfg(feature = "dynamic")]
pub unsafe fn register_dynamic(api: *mut sqlite_plugin::sqlite3_api_routines) -> Result<(), i32> {
    let api_ref = unsafe { api.as_ref() }.ok_or(vars::SQLITE_MISUSE)?;
    let find = api_ref.vfs_find.ok_or(vars::SQLITE_MISUSE)?;
    // Registering twice (the extension loaded by several connections) is a no-op.
    let name = VFS_NAME_C.to_owned();
    if !unsafe { find(name.as_ptr()) }.is_null() {
        return Ok(());
    }
    let base = unsafe { find(std::ptr::null()) };
    if base.is_null() {
        return Err(vars::SQLITE_ERROR);
    }
    let vfs = StrataVfs::new(base.cast());
    unsafe {
        sqlite_plugin::vfs::register_dynamic(
            api,
            name,
            vfs,
            sqlite_plugin::vfs::RegisterOpts {
                make_default: false,
            },
        )?;
        take_over_sleep(find(VFS_NAME_C.as_ptr()).cast());
        hook::install_dynamic(api_ref)
    }
}
