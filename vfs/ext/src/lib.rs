//! `libstrata.so`: the strata VFS as a SQLite loadable extension.
//!
//! ```text
//! sqlite3 -cmd ".load target/release/libstrata" \
//!   -cmd ".open file:data.db?vfs=strata&bucket=file:///tmp/b&tenant=acme"
//! ```
//! Loading registers the VFS `strata` once per process and keeps the library
//! loaded (`SQLITE_OK_LOAD_PERMANENTLY`), since SQLite keeps calling into it.

use std::ffi::{c_char, c_int, c_void};

const SQLITE_OK_LOAD_PERMANENTLY: c_int = 256;

/// Entry point SQLite derives from the file name `libstrata.so`.
///
/// # Safety
/// Called by SQLite with a valid `sqlite3_api_routines` pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_strata_init(
    _db: *mut c_void,
    err: *mut *mut c_char,
    api: *mut sqlite_plugin::sqlite3_api_routines,
) -> c_int {
    let _ = err;
    init_logging();
    match unsafe { strata_vfs::sqlite::register_dynamic(api) } {
        Ok(()) => SQLITE_OK_LOAD_PERMANENTLY,
        Err(rc) => rc,
    }
}

/// The generic entry point, for loaders that do not derive a name.
///
/// # Safety
/// As [`sqlite3_strata_init`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut c_void,
    err: *mut *mut c_char,
    api: *mut sqlite_plugin::sqlite3_api_routines,
) -> c_int {
    unsafe { sqlite3_strata_init(db, err, api) }
}

/// Log to stderr at `STRATA_LOG` (default `warn`): the host program has no
/// subscriber of its own.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
