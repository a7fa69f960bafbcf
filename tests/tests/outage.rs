//! The bucket goes away under a write load (fault injection over a real
//! local or S3 store): commits keep succeeding while the spool has room,
//! then fail clearly when it is full; lag and the error are visible; when
//! the bucket returns everything catches up in order, with no gap, and
//! nothing acknowledged is lost.

use anyhow::{Context, Result, ensure};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};
use strata_tests::{Backend, integrity, restore};
use strata_vfs::bucket::ObjectStore;
use strata_vfs::bucket::fault::{FaultStore, Op};
use strata_vfs::engine::Target;

fn pragma(c: &rusqlite::Connection, name: &str) -> Result<String> {
    Ok(c.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
}

/// A database on `b` behind a fault-injecting wrapper: the wrapper, the
/// temp dir holding the local copy, the URI (with `extra` params) and an
/// open WAL connection on which `rows` is created and replicated.
struct Faulty {
    fault: Arc<FaultStore<strata_vfs::bucket::Store>>,
    /// The `fault://` URL that names the wrapper in `bucket=`.
    url: String,
    dir: tempfile::TempDir,
    uri: String,
    conn: rusqlite::Connection,
}

const FLAGS: rusqlite::OpenFlags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
    .union(rusqlite::OpenFlags::SQLITE_OPEN_CREATE)
    .union(rusqlite::OpenFlags::SQLITE_OPEN_URI);

fn faulty(b: &Backend, tag: &str, extra: &str) -> Result<Faulty> {
    strata_vfs::sqlite::register_static()?;
    let fault = Arc::new(FaultStore::new(b.store()?));
    let url = format!("fault://{tag}-{}-{}", b.name(), rand::random::<u32>());
    ensure!(strata_vfs::sqlite::params::register_store(
        &url,
        fault.clone()
    ));
    let dir = tempfile::tempdir()?;
    let uri = format!(
        "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db&{extra}",
        dir.path().join("data.db").display()
    );
    let conn = rusqlite::Connection::open_with_flags(&uri, FLAGS)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.execute_batch("CREATE TABLE rows(id INTEGER PRIMARY KEY, pad BLOB)")?;
    pragma(&conn, "strata_flush")?;
    Ok(Faulty {
        fault,
        url,
        dir,
        uri,
        conn,
    })
}

#[test]
fn sixty_second_outage_under_load_loses_nothing() -> Result<()> {
    for b in Backend::all()? {
        let Faulty {
            fault,
            url,
            dir,
            uri,
            conn: c,
        } = faulty(&b, "outage", "sync_interval=100ms")?;
        let local = dir.path().join("data.db");
        let sync = SyncWriter::start(&b, &url, dir.path())?;

        // A steady load of ~200 txn/s from a second connection.
        let acked = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (acked, stop, uri) = (acked.clone(), stop.clone(), uri.clone());
            std::thread::spawn(move || -> Result<()> {
                let w = rusqlite::Connection::open_with_flags(&uri, FLAGS)?;
                let mut id = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    w.execute(
                        "INSERT INTO rows(id, pad) VALUES (?1, randomblob(200))",
                        [id],
                    )?;
                    acked.store(id, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            })
        };
        std::thread::sleep(Duration::from_secs(2));
        fault.set_outage(true);
        let outage = Instant::now();
        let mut max_lag = 0u64;
        while outage.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_secs(1));
            max_lag = max_lag.max(pragma(&c, "strata_lag_ms")?.parse()?);
        }
        let during = acked.load(Ordering::Relaxed);
        let status = pragma(&c, "strata_status")?;
        ensure!(
            status.contains("injected outage"),
            "[{}] the outage is not visible: {status}",
            b.name()
        );
        ensure!(
            max_lag >= 55_000,
            "[{}] lag during the outage was only {max_lag} ms",
            b.name()
        );
        // `strata status`, from another process, sees the backlog too.
        let out = b
            .command(&strata_tests::workspace_bin("strata")?)
            .args(["status", &b.url(), "acme/data.db", "--json", "--local"])
            .arg(&local)
            .output()?;
        ensure!(
            out.status.success(),
            "strata status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let st: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        ensure!(
            st["unreplicated"].as_u64().is_some_and(|n| n > 1000)
                && st["lag_ms"].as_u64().is_some_and(|l| l > 50_000),
            "[{}] strata status does not show the backlog: {st}",
            b.name()
        );
        let outage_ended = Instant::now();
        fault.set_outage(false);
        // Lag returns to normal by itself, under the continuing load.
        let back = Instant::now();
        loop {
            let lag: u64 = pragma(&c, "strata_lag_ms")?.parse()?;
            if lag < 1000 {
                break;
            }
            ensure!(
                back.elapsed() < Duration::from_secs(30),
                "[{}] lag still {lag} ms after 30 s",
                b.name()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caught_up = back.elapsed();
        stop.store(true, Ordering::Relaxed);
        load.join().ok().context("load thread panicked")??;
        let last = acked.load(Ordering::Relaxed);
        ensure!(
            last > during && during > 10_000 / 2,
            "[{}] the load stalled ({during} rows during the outage)",
            b.name()
        );
        pragma(&c, "strata_flush")?;
        drop(c);

        let store = b.store()?;
        let out = dir.path().join("restored.db");
        restore(&store, "acme", "data.db", Target::Latest, &out)?;
        ensure!(integrity(&out)? == "ok");
        let r = rusqlite::Connection::open(&out)?;
        let (n, max): (i64, i64) = r.query_row("SELECT count(*), max(id) FROM rows", [], |x| {
            Ok((x.get(0)?, x.get(1)?))
        })?;
        ensure!(
            n == last && max == last,
            "[{}] {n} rows (max {max}) in the bucket, {last} acknowledged",
            b.name()
        );
        strata_tests::assert_one_history(&store, "acme", "data.db")
            .map_err(|e| e.context(format!("[{}]", b.name())))?;
        sync.check(&b, outage, outage_ended, dir.path())?;
        eprintln!(
            "[{}] 60 s outage: {during} rows committed meanwhile, max lag {max_lag} ms, caught up in {caught_up:?}, all {last} rows in the bucket",
            b.name()
        );
    }
    Ok(())
}

fn has_row(c: &rusqlite::Connection, id: i64) -> Result<bool> {
    Ok(
        c.query_row("SELECT count(*) FROM rows WHERE id = ?1", [id], |r| {
            r.get::<_, i64>(0)
        })? == 1,
    )
}

/// A sync-mode writer on a second database through the same faulty bucket,
/// during the whole test: every commit that reports success must already be
/// in the bucket (checked against the real store at once), so none may
/// succeed while the bucket is down.
struct SyncWriter {
    stop: Arc<AtomicBool>,
    /// Acknowledged rows and when their commits returned.
    acked: Arc<std::sync::Mutex<Vec<(i64, Instant)>>>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl SyncWriter {
    fn start(b: &Backend, url: &str, dir: &std::path::Path) -> Result<SyncWriter> {
        let uri = format!(
            "file:{}?vfs=strata&bucket={url}&tenant=acme&db=sync.db&durability=sync",
            dir.join("sync.db").display()
        );
        let store = b.store()?;
        let keys = strata_vfs::format::keys::DbKeys::new("acme", "sync.db")?;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || -> Result<()> {
            let c = rusqlite::Connection::open_with_flags(&uri, FLAGS)?;
            c.pragma_update(None, "journal_mode", "wal")?;
            c.execute_batch("CREATE TABLE rows(id INTEGER PRIMARY KEY)")?;
            // Each row is one transaction: row `id` is txid `base + id`.
            let base: u64 = pragma(&c, "strata_committed")?.parse()?;
            let mut id = 0i64;
            while !s.load(Ordering::Relaxed) {
                match c.execute("INSERT INTO rows(id) VALUES (?1)", [id + 1]) {
                    Ok(_) => {
                        id += 1;
                        let m = store.get(&keys.manifest())?;
                        let head =
                            strata_vfs::format::manifest::Manifest::from_bytes(&m.data)?.head;
                        ensure!(
                            head.0 >= base + id as u64,
                            "sync commit of row {id} returned before the bucket had it (head {head})"
                        );
                        a.lock().expect("not poisoned").push((id, Instant::now()));
                    }
                    // Failed after its commit point (its upload failed): the
                    // row is here, unacknowledged, and reaches the bucket later.
                    Err(_) if has_row(&c, id + 1)? => id += 1,
                    Err(_) => {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        });
        Ok(SyncWriter {
            stop,
            acked,
            thread,
        })
    }

    /// No success during the outage, successes again after it, and every
    /// acknowledged row restored from the bucket.
    fn check(self, b: &Backend, from: Instant, to: Instant, dir: &std::path::Path) -> Result<()> {
        // Sync commits resume once an upload retry (every 0.5 s at most)
        // gets through; a slow CI machine gets some slack.
        let deadline = Instant::now() + Duration::from_secs(30);
        let resumed = || {
            let acked = self.acked.lock().expect("not poisoned");
            acked.iter().any(|(_, t)| *t > to)
        };
        while !resumed() && !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().context("sync writer panicked")??;
        let acked = std::mem::take(&mut *self.acked.lock().expect("not poisoned"));
        let grace = Duration::from_secs(1);
        let during: Vec<_> = acked
            .iter()
            .filter(|(_, t)| *t > from + grace && *t < to)
            .map(|(id, _)| id)
            .collect();
        ensure!(
            during.is_empty(),
            "[{}] sync commits {during:?} succeeded while the bucket was down",
            b.name()
        );
        ensure!(
            acked.iter().any(|(_, t)| *t > to),
            "[{}] sync commits did not resume after the outage",
            b.name()
        );
        let out = dir.join("sync-restored.db");
        restore(&b.store()?, "acme", "sync.db", Target::Latest, &out)?;
        let ids: Vec<i64> = {
            let r = rusqlite::Connection::open(&out)?;
            let mut s = r.prepare("SELECT id FROM rows")?;
            s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for (id, _) in &acked {
            ensure!(
                ids.contains(id),
                "[{}] acknowledged sync row {id} is not in the bucket",
                b.name()
            );
        }
        eprintln!(
            "[{}] sync mode: {} commits acknowledged, none during the outage",
            b.name(),
            acked.len()
        );
        Ok(())
    }
}

/// With a small spool bound, an outage makes commits fail with a clear
/// "spool is full" error instead of growing without limit; nothing
/// acknowledged is lost, and commits work again when the bucket returns.
#[test]
fn a_full_spool_refuses_commits_until_the_bucket_returns() -> Result<()> {
    let b = Backend::local()?;
    let Faulty {
        fault,
        dir,
        conn: c,
        ..
    } = faulty(&b, "spool", "sync_interval=100ms&max_spool=300000")?;
    fault.set_outage(true);
    let mut acked = 0i64;
    let err = loop {
        // Distinct pages so the spool grows by whole pages.
        match c.execute(
            "INSERT INTO rows(id, pad) VALUES (?1, randomblob(3000))",
            [acked + 1],
        ) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        ensure!(acked < 10_000, "the spool bound was never enforced");
    };
    ensure!(
        err.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
        "a full spool should read as SQLITE_FULL, got {err}"
    );
    ensure!(acked > 10, "commits failed too early ({acked})");
    fault.set_outage(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.execute(
            "INSERT INTO rows(id, pad) VALUES (?1, randomblob(3000))",
            [acked + 1],
        ) {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => anyhow::bail!("commits did not resume: {e}"),
        }
    }
    acked += 1;
    pragma(&c, "strata_flush")?;
    drop(c);
    let out = dir.path().join("restored.db");
    restore(&b.store()?, "acme", "data.db", Target::Latest, &out)?;
    let r = rusqlite::Connection::open(&out)?;
    let n: i64 = r.query_row("SELECT count(*) FROM rows", [], |x| x.get(0))?;
    ensure!(n == acked, "{n} rows in the bucket, {acked} acknowledged");
    Ok(())
}

/// A segment lands but the manifest update after it fails (the bucket goes
/// away in between). The retry uploads a longer batch from the same txid, so
/// the bucket holds a short stray next to the real segment: history must
/// still be one chain, and every point in it restorable.
#[test]
fn a_segment_whose_manifest_update_failed_leaves_one_history() -> Result<()> {
    for b in Backend::all()? {
        let Faulty {
            fault,
            dir,
            conn: c,
            ..
        } = faulty(&b, "stray", "sync_interval=50ms")?;
        let insert = |id: i64| c.execute("INSERT INTO rows VALUES (?1, randomblob(100))", [id]);
        // The next manifest update fails without reaching the bucket; once
        // it has, the bucket is down until more commits pile up.
        fault.fail_key_matching(Op::PutIfMatch, "manifest.json", 1);
        for id in 1..=5 {
            insert(id)?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while fault.injected() == 0 {
            ensure!(
                Instant::now() < deadline,
                "[{}] no upload was tried",
                b.name()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        fault.set_outage(true);
        for id in 6..=20 {
            insert(id)?;
        }
        fault.set_outage(false);
        pragma(&c, "strata_flush")?;
        drop(c);

        let store = b.store()?;
        let keys = strata_vfs::format::keys::DbKeys::new("acme", "data.db")?;
        let firsts: Vec<_> = store
            .list(&keys.segments_prefix())?
            .iter()
            .filter_map(|o| keys.parse_segment_key(&o.key).map(|k| k.first))
            .collect();
        let unique: std::collections::BTreeSet<_> = firsts.iter().collect();
        ensure!(
            unique.len() < firsts.len(),
            "[{}] expected a stray segment next to its replacement: {firsts:?}",
            b.name()
        );
        let h = strata_tests::assert_one_history(&store, "acme", "data.db")
            .map_err(|e| e.context(format!("[{}]", b.name())))?;
        // Every txid restores, and the row count never goes backwards.
        let mut prev = -1i64;
        for t in 2..=h.manifest.head.0 {
            let out = dir.path().join(format!("at{t}.db"));
            restore(
                &store,
                "acme",
                "data.db",
                Target::TxId(strata_vfs::TxId(t)),
                &out,
            )?;
            ensure!(integrity(&out)? == "ok");
            let n: i64 = rusqlite::Connection::open(&out)?.query_row(
                "SELECT count(*) FROM rows",
                [],
                |x| x.get(0),
            )?;
            ensure!(
                n >= prev,
                "[{}] txid {t} has {n} rows, fewer than before",
                b.name()
            );
            prev = n;
        }
        ensure!(
            prev == 20,
            "[{}] {prev} rows at the head, 20 acknowledged",
            b.name()
        );
    }
    Ok(())
}
