//! # strata-vfs: the engine
//!
//! S3 (or a directory) is the single source of truth for SQLite databases;
//! local files are caches. This crate is the engine; it never mentions HTTP or
//! FUSE. The map:
//!
//! - [`error`]: one error type, classified once (not found / unavailable /
//!   conflict / corrupt / invalid).
//! - [`types`]: `PageNo`, `TxId`, `Epoch`, `DbId`, `Millis`.
//! - [`bucket`]: the object-store trait and its backends (local directory,
//!   S3, memory) and wrappers (fault injection, metering, deadlines).
//! - [`mod@format`]: the bytes we store: segments, snapshots, the manifest and
//!   the key layout (`docs/format.md` is the spec), and SQLite's WAL format.
//! - [`engine`]: replication (spool, uploader, snapshots, retention) and
//!   reading history back (restore, history, verify, import).
//! - [`sqlite`]: the SQLite VFS (on `sqlite-plugin`) that captures every
//!   committed WAL transaction and hands it to the engine, and sync mode's
//!   WAL hook.
//! - [`metrics`]: Prometheus metrics.

pub mod bucket;
pub mod engine;
pub mod error;
pub mod format;
pub mod metrics;
pub mod sqlite;
pub mod types;

pub use error::{Error, ErrorKind, Result, Retry};
pub use types::{DbId, Epoch, Millis, PageNo, TxId};
