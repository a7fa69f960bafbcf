//! A bucket in a local directory: one file per key.
//!
//! Every write goes to a temp file in the target's directory, is fsynced, then
//! renamed into place (and the directory fsynced), so readers see the old or
//! the new object, never a torn one. Every mutation (put, conditional put,
//! delete) takes an exclusive `flock` on one of `<root>/.strata-lock-NN`
//! (the key's stripe) around its check+rename, which makes conditional puts
//! atomic across threads and across processes sharing the directory. Data is written before the lock is taken,
//! so the critical section is a stat/read plus a rename.
//!
//! Names starting with `.strata-` are reserved (the lock files, temp files) and
//! are rejected as key segments by every backend (see `check_key`).

use super::{ETag, Object, ObjectMeta, ObjectStore};
use crate::error::{Error, IoResultExt, Result};
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Reserved name prefix for the store's own files (lock, temp files).
const RESERVED: &str = ".strata-";
/// Conditional writes and deletes of one key are serialized by the `flock`
/// of one of these files, chosen by the key's hash (`.strata-lock-00` ..
/// `-63`): writes to different keys (thousands of tenants' manifests) do
/// not wait for each other.
pub const LOCK_STRIPES: usize = 64;
const LOCK_PREFIX: &str = ".strata-lock-";

/// Every lock file of the bucket directory `root` (for tools and tests
/// that must know no process holds any of them).
pub fn lock_files(root: &Path) -> Vec<PathBuf> {
    (0..LOCK_STRIPES)
        .map(|i| root.join(format!("{LOCK_PREFIX}{i:02}")))
        .collect()
}
/// How long a conditional write waits for that lock before it reports the
/// bucket unavailable (a process frozen while holding it must not hang
/// every other writer).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Key rules, shared by all backends so a key valid on one is valid on all.
// ---------------------------------------------------------------------------

/// A key is a relative `/`-separated path: no empty, `.` or `..` segments, no
/// leading `/`, no backslash or NUL, and no segment starting with `.strata-`.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("empty key"));
    }
    check_path_chars(key).map_err(|why| Error::invalid(format!("bad key {key:?}: {why}")))?;
    for seg in key.split('/') {
        check_segment(seg).map_err(|why| Error::invalid(format!("bad key {key:?}: {why}")))?;
    }
    Ok(())
}

/// A list prefix follows the key rules, except that it may be empty, end in
/// `/`, and its last segment may be partial (`tenants/ac`).
/// A directory for `list_dirs`: empty (the top) or a prefix ending in `/`.
pub(crate) fn check_dir(dir: &str) -> Result<()> {
    if !dir.is_empty() && !dir.ends_with('/') {
        return Err(Error::invalid(format!(
            "bad directory {dir:?}: it must end with '/'"
        )));
    }
    check_prefix(dir)
}

/// Whether a directory holds at least one object (stops at the first).
fn has_object(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        if name.to_string_lossy().starts_with(RESERVED) {
            return false;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => has_object(&e.path()),
            Ok(_) => true,
            Err(_) => false,
        }
    })
}

pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_path_chars(prefix)
        .map_err(|why| Error::invalid(format!("bad prefix {prefix:?}: {why}")))?;
    let body = prefix.strip_suffix('/').unwrap_or(prefix);
    let segs: Vec<&str> = body.split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len() && !prefix.ends_with('/');
        // A partial last segment may be a prefix of a valid name ("." of ".x").
        if last && !seg.is_empty() && *seg != ".." {
            continue;
        }
        check_segment(seg)
            .map_err(|why| Error::invalid(format!("bad prefix {prefix:?}: {why}")))?;
    }
    Ok(())
}

fn check_path_chars(s: &str) -> std::result::Result<(), &'static str> {
    if s.starts_with('/') {
        return Err("must be relative (no leading '/')");
    }
    if s.contains('\\') {
        return Err("backslash not allowed");
    }
    if s.contains('\0') {
        return Err("NUL not allowed");
    }
    Ok(())
}

fn check_segment(seg: &str) -> std::result::Result<(), &'static str> {
    match seg {
        "" => Err("empty path segment"),
        "." | ".." => Err("'.' and '..' segments not allowed"),
        s if s.starts_with(RESERVED) => Err("names starting with '.strata-' are reserved"),
        _ => Ok(()),
    }
}

/// Validates a read range against an object of `size` bytes and returns the
/// (possibly truncated) range to read. Same rules on every backend.
pub(crate) fn clamp_range(key: &str, range: &Range<u64>, size: u64) -> Result<Range<u64>> {
    if range.start >= range.end {
        return Err(Error::invalid(format!(
            "get_range {key}: empty range {}..{}",
            range.start, range.end
        )));
    }
    if range.start >= size {
        return Err(Error::invalid(format!(
            "get_range {key}: range {}..{} starts past the end ({size} bytes)",
            range.start, range.end
        )));
    }
    Ok(range.start..range.end.min(size))
}

// ---------------------------------------------------------------------------
// ETags: a content hash, computed on read. Stable across builds and versions
// (no std hasher), so two binaries sharing a directory agree.
// ---------------------------------------------------------------------------

/// `crc32c` plus a 64-bit multiplicative hash plus the length: a changed
/// content changes the etag short of a 96-bit collision at equal length
/// (crc32c alone is linear, so it is not trusted alone for compare-and-swap).
pub(crate) fn content_etag(data: &[u8]) -> ETag {
    let crc = crc32c::crc32c(data);
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ data.len() as u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h = mix(h ^ u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 56));
    // Final avalanche (murmur3 fmix64).
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    ETag(format!("{crc:08x}{h:016x}-{:x}", data.len()))
}

#[inline]
fn mix(h: u64) -> u64 {
    h.wrapping_mul(0x9FB2_1C65_1E98_DF25).rotate_left(29)
}

// ---------------------------------------------------------------------------

/// A bucket in a local directory.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    /// In this process, a thread waits for a stripe here (woken when it is
    /// free) rather than polling its `flock`, which only other processes
    /// then contend for.
    stripes: Vec<parking_lot::Mutex<()>>,
}

/// Removes a temp file on drop unless it was renamed into place.
struct TempFile {
    path: Option<PathBuf>,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// An exclusive `flock` on one stripe's lock file, released on drop (close).
struct LockGuard<'a> {
    // Released in field order: the flock, then this process's stripe.
    _file: File,
    _stripe: parking_lot::MutexGuard<'a, ()>,
}

enum Cond<'a> {
    None,
    Absent,
    Match(&'a ETag),
}

impl LocalStore {
    /// Opens (creating it if needed) a bucket directory. A relative `root` is
    /// made absolute against the current directory.
    pub fn new(root: PathBuf) -> Result<Self> {
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .io_ctx("local bucket: current directory")?
                .join(root)
        };
        if root.exists() && !root.is_dir() {
            return Err(Error::invalid(format!(
                "local bucket {} is not a directory",
                root.display()
            )));
        }
        fs::create_dir_all(&root).io_ctx(format!("create bucket directory {}", root.display()))?;
        Ok(LocalStore {
            root,
            stripes: (0..LOCK_STRIPES)
                .map(|_| parking_lot::Mutex::new(()))
                .collect(),
        })
    }

    /// The bucket directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn lock(&self, key: &str) -> Result<LockGuard<'_>> {
        let stripe = crc32c::crc32c(key.as_bytes()) as usize % LOCK_STRIPES;
        let held = self.stripes[stripe].lock();
        let path = self.root.join(format!("{LOCK_PREFIX}{stripe:02}"));
        // A fresh open file description per lock: flock excludes other
        // descriptions, including other threads of this process.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .io_ctx(format!("open lock file {}", path.display()))?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut pause = std::time::Duration::from_micros(100);
        loop {
            // SAFETY: flock on a valid, owned descriptor.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(LockGuard {
                    _file: file,
                    _stripe: held,
                });
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(10));
                }
                io::ErrorKind::WouldBlock => {
                    return Err(Error::unavailable(format!(
                        "{} has been locked by another process for {LOCK_WAIT:?} (is one frozen or stuck?)",
                        path.display()
                    )));
                }
                _ => return Err(Error::io(format!("lock {}", path.display()), err)),
            }
        }
    }

    /// Creates the directories between root and `dir`, fsyncing the parent
    /// of each one created so the new entries survive a crash.
    fn create_dirs(&self, key: &str, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let rel = dir
            .strip_prefix(&self.root)
            .map_err(|_| Error::invalid(format!("put {key}: path escapes bucket")))?;
        let mut cur = self.root.clone();
        for comp in rel.components() {
            let parent = cur.clone();
            cur.push(comp);
            match fs::create_dir(&cur) {
                Ok(()) => sync_dir(&parent)
                    .map_err(|e| Error::io(format!("put {key}: fsync directory"), e))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !cur.is_dir() {
                        return Err(Error::invalid(format!(
                            "put {key}: {} is an object, a local bucket cannot also hold keys under it",
                            cur.strip_prefix(&self.root).unwrap_or(&cur).display()
                        )));
                    }
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("put {key}: create directory {}", cur.display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    fn write(&self, key: &str, data: &[u8], cond: Cond<'_>) -> Result<ETag> {
        let path = self.path(key)?;
        let Some(dir) = path.parent().map(Path::to_path_buf) else {
            return Err(Error::invalid(format!("put {key}: bad key")));
        };
        self.create_dirs(key, &dir)?;

        // Write and fsync the new content before taking the lock.
        // No key name in the temp name: the key's last segment may already be
        // close to NAME_MAX.
        let tmp_path = dir.join(format!("{RESERVED}tmp.{:016x}", rand::random::<u64>()));
        let mut tmp = TempFile {
            path: Some(tmp_path.clone()),
        };
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp_path)
                .io_ctx(format!("put {key}: create temp file"))?;
            f.write_all(data).io_ctx(format!("put {key}: write"))?;
            f.sync_all().io_ctx(format!("put {key}: fsync"))?;
        }

        let lock = self
            .lock(key)
            .map_err(|e| e.context(format!("put {key}")))?;
        match cond {
            Cond::None => {}
            Cond::Absent => match fs::symlink_metadata(&path) {
                Ok(_) => {
                    return Err(Error::conflict(format!(
                        "put_if_absent {key}: object already exists"
                    )));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(Error::io(format!("put_if_absent {key}: stat"), e)),
            },
            Cond::Match(expected) => match read_file(&path) {
                Ok(cur) => {
                    let actual = content_etag(&cur);
                    if &actual != expected {
                        return Err(Error::conflict(format!(
                            "put_if_match {key}: object changed (etag {} != expected {})",
                            actual.0, expected.0
                        )));
                    }
                }
                Err(e) if is_not_found(&e) => {
                    return Err(Error::conflict(format!(
                        "put_if_match {key}: object no longer exists"
                    )));
                }
                Err(e) => return Err(Error::io(format!("put_if_match {key}: read current"), e)),
            },
        }
        fs::rename(&tmp_path, &path).map_err(|e| {
            if e.kind() == io::ErrorKind::IsADirectory || e.kind() == io::ErrorKind::DirectoryNotEmpty {
                Error::invalid(format!(
                    "put {key}: keys exist under {key}/, a local bucket cannot also hold {key} as an object"
                ))
            } else {
                Error::io(format!("put {key}: rename"), e)
            }
        })?;
        tmp.path = None;
        // The check and the rename are what must not interleave; making
        // the rename durable needs no lock (a later writer's own fsync of
        // the directory covers this entry too).
        drop(lock);
        sync_dir(&dir).io_ctx(format!("put {key}: fsync directory"))?;
        Ok(content_etag(data))
    }

    fn list_dir(
        &self,
        dir: &Path,
        rel: &str,
        prefix: &str,
        out: &mut Vec<ObjectMeta>,
    ) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            // Removed or replaced concurrently: nothing to list there.
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => {
                return Err(Error::io(
                    format!("list {prefix}: read directory {}", dir.display()),
                    e,
                ));
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("list {prefix}: read directory {}", dir.display()),
                        e,
                    ));
                }
            };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(RESERVED) {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // Prune subtrees that cannot match: a directory `key` can hold
            // matches only if `key/` and the prefix agree on their overlap.
            let ft = match entry.file_type() {
                Ok(t) => t,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(Error::io(format!("list {prefix}: stat {key}"), e)),
            };
            if ft.is_dir() {
                let sub = format!("{key}/");
                let n = sub.len().min(prefix.len());
                if sub.as_bytes()[..n] == prefix.as_bytes()[..n] {
                    self.list_dir(&entry.path(), &key, prefix, out)?;
                }
            } else if ft.is_file() && key.starts_with(prefix) {
                let size = match entry.metadata() {
                    Ok(m) => m.len(),
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(Error::io(format!("list {prefix}: stat {key}"), e)),
                };
                out.push(ObjectMeta { key, size });
            }
        }
        Ok(())
    }
}

fn is_not_found(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Maps a read error: a missing file (or a path through a file) is NotFound.
fn read_err(op: &str, key: &str, e: io::Error) -> Error {
    if is_not_found(&e) {
        Error::not_found(format!("{op} {key}: no such object"))
    } else {
        Error::io(format!("{op} {key}"), e)
    }
}

impl ObjectStore for LocalStore {
    fn get(&self, key: &str) -> Result<Object> {
        let path = self.path(key)?;
        let data = read_file(&path).map_err(|e| read_err("get", key, e))?;
        let etag = content_etag(&data);
        Ok(Object {
            data: Bytes::from(data),
            etag,
        })
    }

    fn get_into(&self, key: &str, out: &mut [u8]) -> Result<u64> {
        let path = self.path(key)?;
        let f = File::open(&path).map_err(|e| read_err("get", key, e))?;
        let meta = f.metadata().map_err(|e| read_err("get", key, e))?;
        if !meta.is_file() {
            return Err(Error::not_found(format!("get {key}: no such object")));
        }
        // Objects are replaced by rename, never modified in place.
        if meta.len() == out.len() as u64 {
            f.read_exact_at(out, 0).io_ctx(format!("get {key}"))?;
        }
        Ok(meta.len())
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        let f = File::open(&path).map_err(|e| read_err("get_range", key, e))?;
        let meta = f.metadata().map_err(|e| read_err("get_range", key, e))?;
        if !meta.is_file() {
            return Err(Error::not_found(format!("get_range {key}: no such object")));
        }
        let r = clamp_range(key, &range, meta.len())?;
        // Objects are replaced by rename, never modified in place, so the
        // size seen through this descriptor stays valid.
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        f.read_exact_at(&mut buf, r.start)
            .io_ctx(format!("get_range {key}"))?;
        Ok(Bytes::from(buf))
    }

    fn put(&self, key: &str, data: Bytes) -> Result<ETag> {
        self.write(key, &data, Cond::None)
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ETag> {
        self.write(key, &data, Cond::Absent)
    }

    fn put_if_match(&self, key: &str, data: Bytes, etag: &ETag) -> Result<ETag> {
        self.write(key, &data, Cond::Match(etag))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        check_prefix(prefix)?;
        let mut out = Vec::new();
        self.list_dir(&self.root, "", prefix, &mut out)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        check_dir(dir)?;
        let path = self.root.join(dir.trim_end_matches('/'));
        let entries = match fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if is_not_found(&e) => return Ok(vec![]),
            Err(e) => return Err(Error::io(format!("list {dir}: read directory"), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Deletes leave empty directories behind; S3 has no such thing.
            if !name.starts_with(RESERVED)
                && entry.file_type().is_ok_and(|t| t.is_dir())
                && has_object(&entry.path())
            {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let _lock = self
            .lock(key)
            .map_err(|e| e.context(format!("delete {key}")))?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => return Ok(()), // keys live under it; no object here
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(Error::io(format!("delete {key}: stat"), e)),
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(Error::io(format!("delete {key}"), e)),
        }
        // Empty parent directories are left in place: removing them would
        // race with a concurrent put creating its temp file there.
        if let Some(dir) = path.parent() {
            sync_dir(dir).io_ctx(format!("delete {key}: fsync directory"))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::sync::{Arc, Barrier};

    #[test]
    fn contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("bucket")).unwrap();
        super::super::contract::run_all(&store);
    }

    #[test]
    fn bad_keys_rejected() {
        // The root inside a private directory, so that "escaped" is
        // checked where nothing else writes (not the shared /tmp).
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        let store = LocalStore::new(root.clone()).unwrap();
        let bad = [
            "",
            "/abs",
            "a/../b",
            "..",
            "../x",
            "a//b",
            "a/",
            "a/./b",
            ".",
            "a\\b",
            "a\0b",
            ".strata-lock",
            "x/.strata-tmp.y.1",
        ];
        for key in bad {
            let err = store.put(key, Bytes::from_static(b"x")).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "put {key:?}: {err}");
            let err = store.get(key).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "get {key:?}: {err}");
            let err = store.delete(key).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "delete {key:?}: {err}");
        }
        for prefix in ["/a", "../", "a/../", "a//", "a\\"] {
            let err = store.list(prefix).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "list {prefix:?}: {err}");
        }
        // Partial last segments are fine in a prefix.
        store.list("a/.").unwrap();
        store.list(".").unwrap();
        // Nothing escaped the root.
        assert!(!outer.path().join("x").exists());
        let outside: Vec<_> = std::fs::read_dir(outer.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outside, ["root"], "something escaped the root");
    }

    #[test]
    fn no_temp_files_left_and_lock_file_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf()).unwrap();
        let e1 = store.put("a/b/c", Bytes::from_static(b"one")).unwrap();
        store
            .put_if_absent("a/b/c", Bytes::from_static(b"two"))
            .unwrap_err();
        store
            .put_if_match("a/b/c", Bytes::from_static(b"three"), &ETag("nope".into()))
            .unwrap_err();
        store
            .put_if_match("a/b/c", Bytes::from_static(b"four"), &e1)
            .unwrap();
        store.put("a/d", Bytes::new()).unwrap();
        let mut names = Vec::new();
        walk(dir.path(), &mut names);
        names.sort();
        let stripes: Vec<String> = lock_files(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let (locks, objects): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| stripes.contains(n));
        assert_eq!(
            objects,
            vec!["a/b/c", "a/d"],
            "only objects and lock files remain"
        );
        assert!(
            !locks.is_empty() && locks.len() <= 2,
            "one lock file per stripe used: {locks:?}"
        );
        let keys: Vec<String> = store.list("").unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, vec!["a/b/c", "a/d"]);
        assert_eq!(&store.get("a/b/c").unwrap().data[..], b"four");
    }

    fn walk(dir: &Path, out: &mut Vec<String>) {
        fn go(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    go(root, &e.path(), out);
                } else {
                    out.push(
                        e.path()
                            .strip_prefix(root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        go(dir, dir, out)
    }

    #[test]
    fn two_instances_race_put_if_absent() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..5 {
            let key = format!("race/{round}");
            let barrier = Arc::new(Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    // A separate store instance per thread, as separate processes would have.
                    let store = LocalStore::new(dir.path().to_path_buf()).unwrap();
                    let barrier = barrier.clone();
                    let key = key.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        store
                            .put_if_absent(&key, Bytes::from(format!("writer {i}")))
                            .map(|_| i)
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let winners: Vec<usize> = results
                .iter()
                .filter_map(|r| r.as_ref().ok().copied())
                .collect();
            assert_eq!(winners.len(), 1, "exactly one winner: {results:?}");
            for r in &results {
                if let Err(e) = r {
                    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                }
            }
            let store = LocalStore::new(dir.path().to_path_buf()).unwrap();
            assert_eq!(
                store.get(&key).unwrap().data,
                Bytes::from(format!("writer {}", winners[0]))
            );
        }
    }

    #[test]
    fn file_and_directory_key_clash_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf()).unwrap();
        store.put("a", Bytes::from_static(b"x")).unwrap();
        assert_eq!(
            store
                .put("a/b", Bytes::from_static(b"y"))
                .unwrap_err()
                .kind(),
            ErrorKind::Invalid
        );
        assert_eq!(store.get("a/b").unwrap_err().kind(), ErrorKind::NotFound);
        store.put("c/d", Bytes::from_static(b"y")).unwrap();
        assert_eq!(
            store.put("c", Bytes::from_static(b"x")).unwrap_err().kind(),
            ErrorKind::Invalid
        );
        assert_eq!(store.get("c").unwrap_err().kind(), ErrorKind::NotFound);
        store.delete("c").unwrap();
        assert_eq!(&store.get("c/d").unwrap().data[..], b"y");
    }

    #[test]
    fn etag_changes_with_content() {
        let a = content_etag(b"hello world, this is strata");
        let b = content_etag(b"hello world, this is strata!");
        let c = content_etag(b"hello world, this is strbta");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, content_etag(b"hello world, this is strata"));
        assert_ne!(content_etag(b""), content_etag(b"\0"));
        assert_ne!(content_etag(b"\0"), content_etag(b"\0\0"));
    }

    #[test]
    fn root_that_is_a_file_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert_eq!(
            LocalStore::new(file).unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }

    #[test]
    fn describe_and_relative_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf()).unwrap();
        assert_eq!(store.describe(), format!("file://{}", dir.path().display()));
        assert!(store.root().is_absolute());
    }
}
