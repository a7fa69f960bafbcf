//! # strata-fuse: `strata mount`
//!
//! A bucket as a read-mostly filesystem, with time travel. Each file below
//! serves one kind of node, as a thin layer over `strata_vfs`'s engine API:
//!
//! ```text
//! /                          root.rs       one folder per tenant
//! /.strata-stats             stats.rs      bucket requests and bytes of this mount
//! /<tenant>/                 tenant.rs
//!     <db>                   db_file.rs    live database file, read-only, lazily fetched
//!     @history/<time>/<db>   history.rs    the state at a time (db_file.rs serves the file)
//!     @txid/<N>/<db>         history.rs    the state right after txid N
//!     hooks/… storage/…      plain_file.rs ordinary objects, written back on close
//!     metadata.json          plain_file.rs
//! ```
//!
//! The live file is cached by the kernel and shows one state to every
//! reader; it moves to a newer head only while no process holds a POSIX
//! lock on it (SQLite read-locks around each read transaction), dropping
//! exactly the changed pages from the kernel's cache before the next lock
//! is granted: a transaction never sees pages of two states (db_file.rs).
//!
//! - `fs.rs`: the `fuser::Filesystem` that dispatches to those files.
//! - `locks.rs`: the POSIX locks the kernel forwards, per inode and owner.
//! - `inodes.rs`: inode numbers ↔ nodes.
//! - `ctx.rs`: the bucket (each call bounded by `--timeout`, and metered),
//!   the options, cached listings.
//! - `errno.rs`: the one mapping from failures to errno.
//! - `session.rs`: mounting, clearing a stale mount, unmounting on a signal.

mod ctx;
mod db_file;
mod errno;
mod fs;
mod history;
mod inodes;
mod locks;
mod plain_file;
mod root;
mod session;
mod stats;
mod tenant;

pub use session::{Mounted, clear_stale, mount};

use std::time::Duration;

/// How a mount behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often a live database file, and listings, may look at the bucket
    /// again for news (at most once per interval, and only when used: a
    /// live file looks when a read lock or an open arrives with no lock held).
    pub refresh: Duration,
    /// The longest any one bucket request may take; past it, EIO.
    pub timeout: Duration,
    /// Threads serving the kernel's requests.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            refresh: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            threads: 4,
        }
    }
}
