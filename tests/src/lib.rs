//! Test harness: real processes and real servers on loopback.
//!
//! - [`s3server`]: a moto S3 server on a free loopback port.
//! - [`pocketbase`]: the real PocketBase as a child process, the reference.
//! - [`serve`]: `strata serve` as a child process, and HTTP helpers for it.
//! - [`side`]: the real PocketBase or a strata tenant, for comparisons.
//! - [`sse`]: a server-sent events client (realtime), reads with deadlines.
//! - [`webdriver`]: headless Chromium driven through chromedriver.
//! - [`Backend`]: the same test body runs against a local-directory bucket
//!   and the S3 server; child processes get the bucket's URL and `AWS_*` env.
//! - helpers to find the built binaries and compare database contents.

pub mod http;
pub mod pocketbase;
pub mod s3server;
pub mod sdk;
pub mod serve;
pub mod side;
pub mod sse;
pub mod webdriver;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a test's bucket lives.
pub enum Backend {
    Local(tempfile::TempDir),
    S3(s3server::S3Server, String),
}

impl Backend {
    pub fn local() -> Result<Backend> {
        Ok(Backend::Local(tempfile::tempdir()?))
    }
    pub fn s3() -> Result<Backend> {
        let server = s3server::S3Server::start()?;
        let prefix = format!("t{}", rand::random::<u32>());
        Ok(Backend::S3(server, prefix))
    }
    /// Both backends, for tests that run the same body on each.
    pub fn all() -> Result<Vec<Backend>> {
        Ok(vec![Backend::local()?, Backend::s3()?])
    }
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local(_) => "local",
            Backend::S3(..) => "s3",
        }
    }
    pub fn url(&self) -> String {
        match self {
            Backend::Local(d) => format!("file://{}/bucket", d.path().display()),
            Backend::S3(s, p) => s.url(p),
        }
    }
    /// The environment a child process needs to reach the bucket.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::Local(_) => vec![],
            Backend::S3(s, _) => s.env(),
        }
    }
    /// An engine handle on the bucket, for checks from the test itself.
    pub fn store(&self) -> Result<strata_vfs::bucket::Store> {
        Ok(match self {
            Backend::Local(d) => {
                strata_vfs::bucket::open_bucket(&format!("file://{}/bucket", d.path().display()))?
            }
            Backend::S3(s, p) => s.store(p),
        })
    }
    /// URI parameters selecting this bucket and a tenant.
    pub fn params(&self, tenant: &str) -> String {
        format!("bucket={}&tenant={tenant}", self.url())
    }
    pub fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c
    }
}

/// A binary built by this workspace (`target/<profile>/<name>`).
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // `STRATA_BIN_DIR` (e.g. `target/release`, for a benchmark) wins.
    let dir = match std::env::var_os("STRATA_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => exe
            .parent()
            .and_then(|d| d.parent())
            .context("locate target dir")?
            .to_path_buf(),
    };
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} is not built: run `cargo build --workspace --bins` (scripts/test does)",
            p.display()
        );
    }
    Ok(p)
}

/// The loadable extension, built in release mode by scripts/test.
pub fn extension_path() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(3).context("locate target dir")?;
    let p = target.join("release/libstrata.so");
    if !p.exists() {
        bail!(
            "{} is not built: run `cargo build --release -p strata-ext` (scripts/test does)",
            p.display()
        );
    }
    Ok(p)
}

/// A stable digest of every user table's rows (order-independent of pages).
pub fn content_hash(c: &rusqlite::Connection) -> Result<u32> {
    let mut tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tables.sort();
    let mut h = 0u32;
    for t in tables {
        h = crc32(h, t.as_bytes());
        let mut stmt = c.prepare(&format!("SELECT * FROM \"{t}\" ORDER BY rowid"))?;
        let n = stmt.column_count();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            for i in 0..n {
                let v = format!("{:?}", row.get_ref(i)?);
                h = crc32(h, v.as_bytes());
            }
        }
    }
    Ok(h)
}

fn crc32(mut h: u32, data: &[u8]) -> u32 {
    // FNV-style mixing is enough to tell states apart in tests.
    for &b in data {
        h = (h ^ b as u32).wrapping_mul(16_777_619).rotate_left(5);
    }
    h
}

/// `PRAGMA integrity_check` of a file.
pub fn integrity(path: &Path) -> Result<String> {
    let c =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
}

/// A read-write connection to `uri` (a `file:` URI, usually through the
/// strata VFS), created if missing, in WAL mode.
pub fn open_wal(uri: &str) -> Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )?;
    c.pragma_update(None, "journal_mode", "wal")?;
    Ok(c)
}

/// Restore through the engine (what `strata restore` does), checked.
pub fn restore(
    store: &strata_vfs::bucket::Store,
    tenant: &str,
    db: &str,
    target: strata_vfs::engine::Target,
    out: &Path,
) -> Result<strata_vfs::engine::restore::Restored> {
    let keys = strata_vfs::format::keys::DbKeys::new(tenant, db)?;
    Ok(strata_vfs::engine::restore::restore(
        store,
        &keys,
        target,
        out,
        &Default::default(),
    )?)
}

/// Exactly one history: the segment chain is contiguous from txid 1 to the
/// manifest's head (no gap, no overlap, no second writer's branch). Returns
/// the history for further checks.
pub fn assert_one_history(
    store: &strata_vfs::bucket::Store,
    tenant: &str,
    db: &str,
) -> Result<strata_vfs::engine::history::History> {
    let keys = strata_vfs::format::keys::DbKeys::new(tenant, db)?;
    let h = strata_vfs::engine::history::load(store.as_ref(), &keys, None)?;
    let mut next = strata_vfs::TxId(1);
    for s in &h.segments {
        if s.first != next {
            bail!(
                "two histories or a gap: expected txid {next}, segment {} starts at {}",
                s.key,
                s.first
            );
        }
        next = s.last.next();
    }
    if next != h.manifest.head.next() {
        bail!(
            "the segments end at txid {} but the head is {}",
            next.0 - 1,
            h.manifest.head
        );
    }
    Ok(h)
}

/// Register `store` (a metered or fault-injecting wrapper) with the VFS
/// under a fresh `<scheme>://<tag>-<random>` URL for `bucket=`, after
/// registering the VFS itself. Returns the URL.
pub fn register_wrapped(
    scheme: &str,
    tag: &str,
    store: strata_vfs::bucket::Store,
) -> Result<String> {
    strata_vfs::sqlite::register_static()?;
    let url = format!("{scheme}://{tag}-{}", rand::random::<u64>());
    anyhow::ensure!(
        strata_vfs::sqlite::params::register_store(&url, store),
        "{url} is already registered"
    );
    Ok(url)
}

/// Pause process `pid` (SIGSTOP), but never while it holds a local bucket's write lock:
/// a frozen lock holder would (rightly) make the bucket unavailable to every
/// other writer, which is not what this test is about. Against S3 there is
/// no such lock.
pub fn freeze_outside_bucket_lock(b: &Backend, pid: u32) -> Result<()> {
    // SAFETY: kill(2) on a child of the test.
    let signal = |sig: i32| unsafe {
        libc::kill(pid as i32, sig);
    };
    use std::os::fd::AsRawFd;
    let Some(dir) = b
        .url()
        .strip_prefix("file://")
        .map(std::path::PathBuf::from)
    else {
        signal(libc::SIGSTOP);
        return Ok(());
    };
    let locks = strata_vfs::bucket::local::lock_files(&dir)
        .iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(p)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    // SAFETY: flock on our own open descriptors.
    let free = |f: &std::fs::File| unsafe {
        libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0
            && libc::flock(f.as_raw_fd(), libc::LOCK_UN) == 0
    };
    for _ in 0..1000 {
        signal(libc::SIGSTOP);
        std::thread::sleep(std::time::Duration::from_millis(5)); // let the stop land
        if locks.iter().all(free) {
            return Ok(());
        }
        signal(libc::SIGCONT);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    anyhow::bail!("the writer always held the bucket lock")
}
