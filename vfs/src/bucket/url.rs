//! Bucket URLs: where a store lives, as users write it.
//!
//! - `file:///abs/path`, or a plain path (relative paths are made absolute
//!   against the current directory): a local directory.
//! - `s3://bucket[/prefix]`: S3, configured from the `AWS_*` variables.
//! - `mem://name`: a process-global in-memory store (same name, same store;
//!   for tests).

use super::Store;
use super::local::{LocalStore, check_prefix};
use super::memory::MemoryStore;
use super::s3::{S3Config, S3Store};
use crate::error::{Error, IoResultExt, Result};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

const FORMS: &str =
    "expected file:///absolute/path, a directory path, s3://bucket[/prefix] or mem://name";

/// A parsed bucket location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketUrl {
    /// A local directory (always absolute).
    Local(PathBuf),
    /// An S3 bucket; `prefix` has no leading or trailing `/` and may be empty.
    S3 { bucket: String, prefix: String },
    /// A named in-memory store, shared within the process.
    Memory(String),
}

impl BucketUrl {
    pub fn parse(s: &str) -> Result<BucketUrl> {
        let bad = |why: &str| Error::invalid(format!("bad bucket URL {s:?}: {why} ({FORMS})"));
        if s.trim().is_empty() {
            return Err(bad("empty"));
        }
        if s.contains('\0') {
            return Err(bad("contains NUL"));
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad("file:// needs an absolute path (file:///path)"));
            }
            return Ok(BucketUrl::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = !bucket.is_empty()
                && bucket.len() <= 255
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            if !valid_bucket {
                return Err(bad("missing or malformed bucket name"));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty() {
                check_prefix(&format!("{prefix}/")).map_err(|e| bad(&e.to_string()))?;
            }
            return Ok(BucketUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(name) = s.strip_prefix("mem://") {
            if name.is_empty() {
                return Err(bad("mem:// needs a name"));
            }
            return Ok(BucketUrl::Memory(name.to_string()));
        }
        if s.contains("://") {
            return Err(bad("unknown scheme"));
        }
        let path = PathBuf::from(s);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()
                .io_ctx(format!("bucket URL {s:?}: current directory"))?
                .join(path)
        };
        Ok(BucketUrl::Local(path))
    }

    /// Builds the store this URL points to.
    pub fn open(&self) -> Result<Store> {
        match self {
            BucketUrl::Local(path) => Ok(Arc::new(LocalStore::new(path.clone())?)),
            BucketUrl::S3 { bucket, prefix } => {
                let cfg = S3Config::from_env(bucket, prefix)?;
                Ok(Arc::new(S3Store::new(cfg)?))
            }
            BucketUrl::Memory(name) => {
                static STORES: LazyLock<Mutex<HashMap<String, Arc<MemoryStore>>>> =
                    LazyLock::new(Default::default);
                let store = STORES
                    .lock()
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(MemoryStore::named(name)))
                    .clone();
                Ok(store)
            }
        }
    }
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketUrl::Local(path) => write!(f, "file://{}", path.display()),
            BucketUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            BucketUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            BucketUrl::Memory(name) => write!(f, "mem://{name}"),
        }
    }
}

impl std::str::FromStr for BucketUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        BucketUrl::parse(s)
    }
}

/// Parses `url` and builds its store (unwrapped: callers add metering).
pub fn open_bucket(url: &str) -> Result<Store> {
    BucketUrl::parse(url)?
        .open()
        .map_err(|e| e.context(format!("open bucket {url}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use bytes::Bytes;
    use std::path::Path;

    #[test]
    fn parse_forms() {
        assert_eq!(
            BucketUrl::parse("file:///tmp/b").unwrap(),
            BucketUrl::Local("/tmp/b".into())
        );
        assert_eq!(
            BucketUrl::parse("/tmp/b").unwrap(),
            BucketUrl::Local("/tmp/b".into())
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            BucketUrl::parse("rel/dir").unwrap(),
            BucketUrl::Local(cwd.join("rel/dir"))
        );
        assert_eq!(
            BucketUrl::parse("./x").unwrap(),
            BucketUrl::Local(cwd.join("./x"))
        );
        assert_eq!(
            BucketUrl::parse("s3://my-bucket").unwrap(),
            BucketUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            BucketUrl::parse("s3://my-bucket/").unwrap(),
            BucketUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            BucketUrl::parse("s3://my.bucket/a/b/").unwrap(),
            BucketUrl::S3 {
                bucket: "my.bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            BucketUrl::parse("mem://t1").unwrap(),
            BucketUrl::Memory("t1".into())
        );
    }

    #[test]
    fn parse_rejects() {
        for bad in [
            "",
            "file://relative",
            "file://",
            "s3://",
            "s3:///prefix",
            "s3://bucket//x",
            "s3://bucket/../x",
            "s3://bu cket/x",
            "mem://",
            "http://example.com/b",
            "gs://bucket",
        ] {
            let err = BucketUrl::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{bad:?}: {err}");
            assert!(
                err.to_string().contains("s3://bucket[/prefix]"),
                "lists accepted forms: {err}"
            );
        }
    }

    #[test]
    fn display_roundtrips() {
        for s in ["file:///tmp/b", "s3://b", "s3://b/p/q", "mem://x"] {
            let u = BucketUrl::parse(s).unwrap();
            assert_eq!(u.to_string(), s);
            assert_eq!(BucketUrl::parse(&u.to_string()).unwrap(), u);
        }
        assert_eq!(
            BucketUrl::parse("/tmp/b").unwrap().to_string(),
            "file:///tmp/b"
        );
    }

    #[test]
    fn mem_urls_share_a_store_by_name() {
        let a = open_bucket("mem://url-test-shared").unwrap();
        let b = open_bucket("mem://url-test-shared").unwrap();
        let c = open_bucket("mem://url-test-other").unwrap();
        a.put("k", Bytes::from_static(b"v")).unwrap();
        assert_eq!(&b.get("k").unwrap().data[..], b"v");
        assert!(c.get("k").unwrap_err().is_not_found());
        assert_eq!(a.describe(), "mem://url-test-shared");
    }

    #[test]
    fn opens_local_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bucket");
        let store = open_bucket(&format!("file://{}", path.display())).unwrap();
        store.put("x/y", Bytes::from_static(b"z")).unwrap();
        assert!(Path::new(&path).join("x/y").is_file());
        let store2 = open_bucket(path.to_str().unwrap()).unwrap();
        assert_eq!(&store2.get("x/y").unwrap().data[..], b"z");
        assert_eq!(store2.describe(), format!("file://{}", path.display()));
    }
}
