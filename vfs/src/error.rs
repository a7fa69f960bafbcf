//! One error type for the engine, classified once.
//!
//! Every failure is one of a few kinds; each edge maps the kind exactly once
//! (SQLite result codes in `sqlite/`, exit codes in the CLI, later errno in the
//! mount and HTTP status in the server). Messages carry short context chains
//! (`open segment tenants/acme/...: checksum mismatch`).

use std::fmt;

/// What went wrong, from the caller's point of view: what can it do about it?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object or database does not exist.
    NotFound,
    /// The bucket or the local disk cannot be reached or written right now
    /// (network, outage, disk full). Retrying later may succeed.
    Unavailable,
    /// Someone else changed what we expected (conditional write failed, another
    /// writer holds the database). Retrying blindly will not help.
    Conflict,
    /// Stored bytes fail their checksums or do not parse. Nothing is repaired
    /// silently; the message names the object.
    Corrupt,
    /// The request itself is wrong (bad URL, bad tenant name, bad argument).
    Invalid,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Invalid => "invalid",
        })
    }
}

/// What an `Unavailable` error means for the request that got it, where an
/// edge can say more than the kind (SQLite has its own codes for these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Retry {
    /// Retry later; whether the request took effect depends on the operation.
    #[default]
    Later,
    /// Local space ran out (spool bound, full disk): free space or wait.
    Full,
    /// The request did not take effect at all: retry it as it is.
    NotApplied,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The engine's error: a kind, a message with context, and an optional cause.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct Error {
    kind: ErrorKind,
    retry: Retry,
    msg: String,
    #[source]
    source: Option<Source>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            retry: Retry::Later,
            msg: msg.into(),
            source: None,
        }
    }
    pub fn with_source(kind: ErrorKind, msg: impl Into<String>, source: impl Into<Source>) -> Self {
        let source = source.into();
        Error {
            kind,
            retry: Retry::Later,
            msg: format!("{}: {source}", msg.into()),
            source: Some(source),
        }
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, msg)
    }
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, msg)
    }
    /// Unavailable because local space ran out (spool bound, full disk).
    pub fn full(msg: impl Into<String>) -> Self {
        Self::unavailable(msg).with_retry(Retry::Full)
    }
    /// Unavailable, and the request was refused before it took effect.
    pub fn not_applied(msg: impl Into<String>) -> Self {
        Self::unavailable(msg).with_retry(Retry::NotApplied)
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, msg)
    }
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, msg)
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg)
    }

    /// A copy of the kind and message (the cause is dropped): for errors
    /// shared between waiters, e.g. of a cache load.
    pub fn clone_error(&self) -> Error {
        Error::new(self.kind, self.msg.clone()).with_retry(self.retry)
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
    pub fn retry(&self) -> Retry {
        self.retry
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Prefix the message with what we were doing: `open segment X: <msg>`.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }

    /// Classify a local I/O error. A full disk is `Unavailable` (free space and
    /// retry); a missing file is `NotFound`.
    pub fn io(ctx: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                ErrorKind::Invalid
            }
            _ => ErrorKind::Unavailable,
        };
        if err.raw_os_error() == Some(libc::ENOSPC) {
            let ctx = format!("{ctx} (local disk is full: free space, nothing was lost)");
            return Error::with_source(kind, ctx, err).with_retry(Retry::Full);
        }
        Error::with_source(kind, ctx.to_string(), err)
    }
}

/// `.ctx("open segment")` on any engine result.
pub trait ResultExt<T> {
    fn ctx(self, ctx: impl fmt::Display) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn ctx(self, ctx: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(ctx))
    }
}

/// `.io_ctx("write spool")` on std::io results.
pub trait IoResultExt<T> {
    fn io_ctx(self, ctx: impl fmt::Display) -> Result<T>;
}

impl<T> IoResultExt<T> for std::io::Result<T> {
    fn io_ctx(self, ctx: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::io(ctx, e))
    }
}
