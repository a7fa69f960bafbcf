//! Sync-mode commits wait for the bucket *after* SQLite releases the write
//! lock, in a WAL hook, so that concurrent committers share one upload
//! (group commit).
//!
//! Why a hook: the VFS sees the commit frame while the WAL write lock is
//! held; waiting there would serialize every committer behind one upload.
//! After the lock is released, the only callback whose result reaches the
//! application is the WAL hook (`sqlite3_wal_hook`), which SQLite runs right
//! after each WAL commit on the committing thread. So:
//!
//! 1. the VFS captures the commit and records `(replica, txid)` in this
//!    thread's [`PENDING`] ([`committed`]);
//! 2. the hook (kept installed on every sync-mode connection by a commit hook
//!    that an auto-extension sets at open) takes it and waits ([`Replica::wait_synced`]); a failure becomes the
//!    statement's result code (the commit happened locally and is spooled);
//! 3. the hook also does SQLite's automatic checkpoint, which it replaces;
//!    `PRAGMA wal_autocheckpoint` on a sync-mode connection is answered by
//!    the VFS (see `vfs.rs`) so that it does not remove the hook.
//!
//! If an application replaces the hook anyway (`sqlite3_wal_hook`), the
//! next commit on the thread finds a [`PENDING`] entry nobody took; from
//! then on that thread waits under the lock (correct, no group commit), and
//! a warning says so.

// Without a way to register (no `static`/`dynamic` feature) nothing installs it.
#![cfg_attr(not(any(feature = "static", feature = "dynamic")), allow(dead_code))]

use super::sqlite_code;
use crate::engine::Replica;
use crate::types::TxId;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::{Arc, OnceLock, Weak};

/// The pragma (through `SQLITE_FCNTL_PRAGMA`) by which the hook asks the main
/// database file whether it is a sync-mode strata database.
pub(super) const PRAGMA_SYNC: &str = "strata_sync_mode";
/// ... and for its automatic checkpoint threshold, in frames.
pub(super) const PRAGMA_AUTOCHECKPOINT: &str = "strata_wal_autocheckpoint";
/// SQLite's default `wal_autocheckpoint`.
pub(super) const DEFAULT_AUTOCHECKPOINT: i32 = 1000;

type WalHookFn = unsafe extern "C" fn(*mut c_void, *mut c_void, *const c_char, c_int) -> c_int;

/// The few SQLite API functions the hook needs: linked directly (static) or
/// taken from the loadable extension's API table (dynamic).
struct Api {
    wal_hook: SetWalHook,
    wal_checkpoint: Checkpoint,
    file_control: FileControl,
    commit_hook: SetCommitHook,
    free: Free,
}

type SetWalHook = unsafe extern "C" fn(*mut c_void, Option<WalHookFn>, *mut c_void) -> *mut c_void;
type Checkpoint = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type FileControl = unsafe extern "C" fn(*mut c_void, *const c_char, c_int, *mut c_void) -> c_int;
type CommitHookFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type SetCommitHook =
    unsafe extern "C" fn(*mut c_void, Option<CommitHookFn>, *mut c_void) -> *mut c_void;
type Free = unsafe extern "C" fn(*mut c_void);

static API: OnceLock<Api> = OnceLock::new();

thread_local! {
    /// The sync-mode commit this thread made and has not yet waited for.
    static PENDING: RefCell<Option<(Weak<Replica>, TxId)>> = const { RefCell::new(None) };
    /// This thread found the hook missing once: it waits under the lock.
    static NO_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The VFS committed `txid` on a sync-mode database: leave it for the hook,
/// or wait now if this thread has shown it has no hook.
pub(super) fn committed(replica: &Arc<Replica>, txid: TxId) {
    let stale = PENDING.with(|p| p.replace(Some((Arc::downgrade(replica), txid))));
    if stale.is_some() && !NO_HOOK.get() {
        NO_HOOK.set(true);
        tracing::warn!(
            "strata: sync mode: the WAL hook did not run after the last commit on this thread \
             (was sqlite3_wal_hook or sqlite3_wal_autocheckpoint called?); commits on this \
             thread now wait for the bucket under the write lock, without group commit"
        );
    }
    if NO_HOOK.get() {
        PENDING.set(None);
        // Past the commit point: a failure can only be reported, not undone.
        if let Err(e) = replica.wait_synced(txid) {
            tracing::error!(error = %e, "strata: sync-mode commit is not in the bucket");
        }
    }
}

/// The hook: wait for this thread's pending commit, then checkpoint as
/// SQLite's default hook would.
unsafe extern "C" fn on_commit(
    _arg: *mut c_void,
    db: *mut c_void,
    schema: *const c_char,
    frames: c_int,
) -> c_int {
    let mut rc = 0;
    if let Some((replica, txid)) = PENDING.with(|p| p.take())
        && let Some(replica) = replica.upgrade()
        && let Err(e) = replica.wait_synced(txid)
    {
        tracing::error!(error = %e, "strata: sync-mode commit failed");
        rc = sqlite_code(&e);
    }
    let Some(api) = API.get() else {
        return rc;
    };
    // SAFETY: db and schema come from SQLite for the duration of this call.
    let limit = unsafe { ask(api, db, schema, PRAGMA_AUTOCHECKPOINT) }
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_AUTOCHECKPOINT);
    if limit > 0 && frames >= limit {
        // As SQLite's own hook: a busy checkpoint is not the commit's error.
        // SAFETY: as above.
        unsafe { (api.wal_checkpoint)(db, schema) };
    }
    rc
}

/// Run `PRAGMA <name>` against the VFS of `schema`'s file (no SQL involved):
/// `None` if the file is not one of ours or does not answer.
unsafe fn ask(api: &Api, db: *mut c_void, schema: *const c_char, name: &str) -> Option<String> {
    const SQLITE_FCNTL_PRAGMA: c_int = 14;
    let name = CString::new(name).ok()?;
    let mut args: [*mut c_char; 3] = [
        std::ptr::null_mut(),
        name.as_ptr().cast_mut(),
        std::ptr::null_mut(),
    ];
    // SAFETY: the FCNTL_PRAGMA argument layout; SQLite allocated args[0].
    unsafe {
        let rc = (api.file_control)(db, schema, SQLITE_FCNTL_PRAGMA, args.as_mut_ptr().cast());
        let out =
            (!args[0].is_null()).then(|| CStr::from_ptr(args[0]).to_string_lossy().into_owned());
        if !args[0].is_null() {
            (api.free)(args[0].cast());
        }
        (rc == 0).then_some(out).flatten()
    }
}

/// Commit hook of sync-mode connections: (re)install the WAL hook. It cannot
/// be installed once at open: SQLite sets its default WAL hook after running
/// auto-extensions, and `sqlite3_wal_autocheckpoint` replaces it any time.
unsafe extern "C" fn before_commit(db: *mut c_void) -> c_int {
    if let Some(api) = API.get() {
        // SAFETY: db is the connection that is committing (the hook's arg).
        unsafe { (api.wal_hook)(db, Some(on_commit), std::ptr::null_mut()) };
    }
    0 // 0 = go ahead with the commit
}

/// Auto-extension: runs for every new connection; on those whose main
/// database is a sync-mode strata database, installs the commit hook that
/// keeps the WAL hook in place.
unsafe extern "C" fn on_open(
    db: *mut c_void,
    _err: *mut *mut c_char,
    _api: *const c_void,
) -> c_int {
    if let Some(api) = API.get() {
        let main = c"main";
        // SAFETY: db is the connection SQLite is opening.
        unsafe {
            if ask(api, db, main.as_ptr(), PRAGMA_SYNC).as_deref() == Some("1") {
                (api.commit_hook)(db, Some(before_commit), db);
            }
        }
    }
    0
}

type EntryFn = unsafe extern "C" fn(*mut c_void, *mut *mut c_char, *const c_void) -> c_int;

/// Install the auto-extension in the SQLite linked into this program.
#[cfg(feature = "static")]
pub(super) fn install_static() -> Result<(), i32> {
    use rusqlite::ffi;
    // SAFETY: only pointer types differ (`sqlite3*` vs `void*`); the ABI is the same.
    let api = unsafe {
        Api {
            wal_hook: std::mem::transmute::<*const (), SetWalHook>(
                ffi::sqlite3_wal_hook as *const (),
            ),
            wal_checkpoint: std::mem::transmute::<*const (), Checkpoint>(
                ffi::sqlite3_wal_checkpoint as *const (),
            ),
            file_control: std::mem::transmute::<*const (), FileControl>(
                ffi::sqlite3_file_control as *const (),
            ),
            commit_hook: std::mem::transmute::<*const (), SetCommitHook>(
                ffi::sqlite3_commit_hook as *const (),
            ),
            free: std::mem::transmute::<*const (), Free>(ffi::sqlite3_free as *const ()),
        }
    };
    let _ = API.set(api);
    // SAFETY: as above, for the entry point's signature.
    let rc = unsafe {
        type Entry = unsafe extern "C" fn(
            *mut ffi::sqlite3,
            *mut *mut c_char,
            *const ffi::sqlite3_api_routines,
        ) -> c_int;
        ffi::sqlite3_auto_extension(Some(std::mem::transmute::<EntryFn, Entry>(
            on_open as EntryFn,
        )))
    };
    if rc == 0 { Ok(()) } else { Err(rc) }
}

/// Install the auto-extension through a loadable extension's API table.
///
/// # Safety
/// `api` is the valid `sqlite3_api_routines` SQLite passed to the extension.
#[cfg(feature = "dynamic")]
pub(super) unsafe fn install_dynamic(api: &sqlite_plugin::sqlite3_api_routines) -> Result<(), i32> {
    use sqlite_plugin::vars::SQLITE_MISUSE;
    // SAFETY: each field is the named SQLite function; only pointer types
    // differ (`sqlite3*` vs `void*`).
    let table = unsafe {
        Api {
            wal_hook: std::mem::transmute::<*const (), SetWalHook>(
                api.wal_hook.ok_or(SQLITE_MISUSE)? as *const (),
            ),
            wal_checkpoint: std::mem::transmute::<*const (), Checkpoint>(
                api.wal_checkpoint.ok_or(SQLITE_MISUSE)? as *const (),
            ),
            file_control: std::mem::transmute::<*const (), FileControl>(
                api.file_control.ok_or(SQLITE_MISUSE)? as *const (),
            ),
            commit_hook: std::mem::transmute::<*const (), SetCommitHook>(
                api.commit_hook.ok_or(SQLITE_MISUSE)? as *const (),
            ),
            free: std::mem::transmute::<*const (), Free>(
                api.free.ok_or(SQLITE_MISUSE)? as *const ()
            ),
        }
    };
    let auto = api.auto_extension.ok_or(SQLITE_MISUSE)?;
    let _ = API.set(table);
    // SAFETY: SQLite calls auto-extensions as (db, pzErrMsg, pApi).
    let rc = unsafe {
        auto(Some(
            std::mem::transmute::<EntryFn, unsafe extern "C" fn()>(on_open as EntryFn),
        ))
    };
    if rc == 0 { Ok(()) } else { Err(rc) }
}
