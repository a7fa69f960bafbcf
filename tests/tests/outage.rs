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
use strata_vfs::bucket::fault::FaultStore;
use strata_vfs::engine::Target;

fn pragma(c: &rusqlite::Connection, name: &str) -> Result<String> {
    Ok(c.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
}

#[test]
fn sixty_second_outage_under_load_loses_nothing() -> Result<()> {
    strata_vfs::sqlite::register_static()?;
    for b in Backend::all()? {
        let fault = Arc::new(FaultStore::new(b.store()?));
        let url = format!("fault://outage-{}-{}", b.name(), rand::random::<u32>());
        ensure!(strata_vfs::sqlite::params::register_store(
            &url,
            fault.clone()
        ));
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("data.db");
        let uri = format!(
            "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db&sync_interval=100ms",
            local.display()
        );
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let c = rusqlite::Connection::open_with_flags(&uri, flags)?;
        c.pragma_update(None, "journal_mode", "wal")?;
        c.execute_batch("CREATE TABLE rows(id INTEGER PRIMARY KEY, pad BLOB)")?;
        pragma(&c, "strata_flush")?;

        // A steady load of ~200 txn/s from a second connection.
        let acked = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (acked, stop, uri) = (acked.clone(), stop.clone(), uri.clone());
            std::thread::spawn(move || -> Result<()> {
                let w = rusqlite::Connection::open_with_flags(&uri, flags)?;
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
        eprintln!(
            "[{}] 60 s outage: {during} rows committed meanwhile, max lag {max_lag} ms, caught up in {caught_up:?}, all {last} rows in the bucket",
            b.name()
        );
    }
    Ok(())
}

/// With a small spool bound, an outage makes commits fail with a clear
/// "spool is full" error instead of growing without limit; nothing
/// acknowledged is lost, and commits work again when the bucket returns.
#[test]
fn a_full_spool_refuses_commits_until_the_bucket_returns() -> Result<()> {
    strata_vfs::sqlite::register_static()?;
    let b = Backend::local()?;
    let fault = Arc::new(FaultStore::new(b.store()?));
    let url = format!("fault://spool-{}", rand::random::<u32>());
    ensure!(strata_vfs::sqlite::params::register_store(
        &url,
        fault.clone()
    ));
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("data.db");
    let uri = format!(
        "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db&sync_interval=100ms&max_spool=300000",
        local.display()
    );
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let c = rusqlite::Connection::open_with_flags(&uri, flags)?;
    c.pragma_update(None, "journal_mode", "wal")?;
    c.execute_batch("CREATE TABLE rows(id INTEGER PRIMARY KEY, pad BLOB)")?;
    pragma(&c, "strata_flush")?;
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
