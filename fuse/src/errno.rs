//! The one mapping from failures to errno. Nodes return [`FsError`]; only
//! `fs.rs` turns it into an errno, through [`FsError::errno`].
//!
//! | engine kind | errno | why |
//! | --- | --- | --- |
//! | NotFound | ENOENT | no such tenant, database, object or restore point |
//! | Invalid | EINVAL (ENOENT while resolving a path) | a name that can never exist does not exist |
//! | Conflict | EBUSY | someone else changed it |
//! | Unavailable | EIO, logged | the bucket is down or slower than `--timeout` |
//! | Corrupt | EIO, logged | a checksum failed; the log names the object |
//!
//! Plus the filesystem's own answers: EROFS for any change to a database
//! file or a time-travel folder, ENOTDIR/EISDIR/ENOTEMPTY/EXDEV as usual.

use fuser::Errno;
use strata_vfs::{Error, ErrorKind};

#[derive(Debug)]
pub enum FsError {
    Engine(Error),
    Sys(Errno),
}

pub type FsResult<T> = Result<T, FsError>;

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        FsError::Engine(e)
    }
}

/// Database files and time-travel folders are read-only.
pub const READ_ONLY: FsError = FsError::Sys(Errno::EROFS);
pub const NO_ENTRY: FsError = FsError::Sys(Errno::ENOENT);

impl FsError {
    /// The errno for `op` (e.g. `read acme/data.db`); EIO is logged with why.
    pub fn errno(&self, op: &str) -> Errno {
        match self {
            FsError::Sys(e) => *e,
            FsError::Engine(e) => match e.kind() {
                ErrorKind::NotFound => Errno::ENOENT,
                ErrorKind::Invalid => Errno::EINVAL,
                ErrorKind::Conflict => Errno::EBUSY,
                ErrorKind::Unavailable => {
                    tracing::error!("{op}: EIO, the bucket is unavailable: {e}");
                    Errno::EIO
                }
                ErrorKind::Corrupt => {
                    tracing::error!("{op}: EIO, corrupt data: {e}");
                    Errno::EIO
                }
            },
        }
    }

    /// Resolving a name: one that is missing or cannot exist (a txid beyond
    /// the head, a time before the oldest restore point) is simply not there.
    pub fn resolving(self) -> FsError {
        match self {
            FsError::Engine(e) if matches!(e.kind(), ErrorKind::Invalid | ErrorKind::NotFound) => {
                NO_ENTRY
            }
            other => other,
        }
    }

    pub fn is_no_entry(&self) -> bool {
        matches!(self, FsError::Sys(e) if e.code() == libc::ENOENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_once() {
        let e = |k| FsError::Engine(Error::new(k, "x"));
        assert_eq!(e(ErrorKind::NotFound).errno("t").code(), libc::ENOENT);
        assert_eq!(e(ErrorKind::Unavailable).errno("t").code(), libc::EIO);
        assert_eq!(e(ErrorKind::Corrupt).errno("t").code(), libc::EIO);
        assert_eq!(e(ErrorKind::Conflict).errno("t").code(), libc::EBUSY);
        assert_eq!(e(ErrorKind::Invalid).errno("t").code(), libc::EINVAL);
        assert_eq!(
            e(ErrorKind::Invalid).resolving().errno("t").code(),
            libc::ENOENT
        );
        assert_eq!(READ_ONLY.errno("t").code(), libc::EROFS);
    }
}
