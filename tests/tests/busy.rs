//! Writers of one process hand a WAL database's write lock to each other
//! (`vfs/src/sqlite/busy.rs`): a writer that found the lock taken takes it
//! when it is released instead of sleeping out SQLite's busy schedule; the
//! busy timeout still ends a wait on a lock that is never released; and
//! many writers contending with a timeout all get through.

use anyhow::{Result, ensure};
use std::time::{Duration, Instant};
use strata_tests::Backend;
use strata_vfs::metrics::METRICS;

/// A fresh database for one test.
struct Db {
    uri: String,
    _dir: tempfile::TempDir,
    _bucket: Backend,
}

fn db() -> Result<Db> {
    let bucket = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let uri = setup(&bucket, dir.path())?;
    Ok(Db {
        uri,
        _dir: dir,
        _bucket: bucket,
    })
}

/// Busy waits for this database's write lock that a release ended.
fn handoffs(c: &rusqlite::Connection) -> Result<u64> {
    Ok(c.query_row("PRAGMA strata_write_lock_handoffs", [], |r| {
        r.get::<_, String>(0)
    })?
    .parse()?)
}

fn open(uri: &str) -> Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )?;
    Ok(c)
}

/// A WAL database with table `t`, in async mode on a local bucket.
fn setup(b: &Backend, dir: &std::path::Path) -> Result<String> {
    strata_vfs::sqlite::register_static()?;
    let uri = format!(
        "file:{}?vfs=strata&{}&db=data.db",
        dir.join("data.db").display(),
        b.params("acme")
    );
    let c = open(&uri)?;
    c.pragma_update(None, "journal_mode", "wal")?;
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, who INTEGER)")?;
    Ok(uri)
}

/// A connection in the middle of a write transaction: it holds the lock.
fn hold_write_lock(uri: &str) -> Result<rusqlite::Connection> {
    let c = open(uri)?;
    c.execute_batch("BEGIN IMMEDIATE; INSERT INTO t(who) VALUES (1)")?;
    Ok(c)
}

#[test]
fn a_waiting_writer_is_woken_by_the_release() -> Result<()> {
    let db = db()?;
    let uri = db.uri.clone();
    let holder = hold_write_lock(&uri)?;
    let before = handoffs(&holder)?;
    let metric = METRICS.write_lock_handoffs.get();
    let waiter = {
        let uri = uri.clone();
        std::thread::spawn(move || -> Result<()> {
            let c = open(&uri)?;
            c.busy_timeout(Duration::from_secs(60))?;
            c.execute("INSERT INTO t(who) VALUES (2)", [])?;
            Ok(())
        })
    };
    // Long enough for the waiter to be deep in SQLite's busy schedule
    // (its sleeps reach 50 and 100 ms).
    std::thread::sleep(Duration::from_millis(400));
    ensure!(
        !waiter.is_finished(),
        "the waiter wrote while the lock was held"
    );
    holder.execute_batch("COMMIT")?;
    waiter.join().expect("waiter panicked")?;
    ensure!(
        handoffs(&holder)? > before,
        "the waiter slept out its busy sleep instead of being woken by the release"
    );
    // The process-wide metric counts it too.
    ensure!(METRICS.write_lock_handoffs.get() > metric);
    let rows: i64 = holder.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    ensure!(rows == 2, "{rows} rows");
    Ok(())
}

#[test]
fn the_busy_timeout_still_ends_a_wait_for_a_lock_never_released() -> Result<()> {
    let db = db()?;
    let uri = db.uri.clone();
    let holder = hold_write_lock(&uri)?;
    let c = open(&uri)?;
    let timeout = Duration::from_millis(300);
    c.busy_timeout(timeout)?;
    let started = Instant::now();
    let err = c
        .execute("INSERT INTO t(who) VALUES (2)", [])
        .expect_err("wrote while another connection held the write lock");
    let waited = started.elapsed();
    ensure!(
        err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy),
        "{err}"
    );
    ensure!(waited >= timeout, "gave up after {waited:?}");
    holder.execute_batch("COMMIT")?;
    Ok(())
}

/// 16 connections on threads, each committing 200 one-row transactions with
/// a 5 s busy timeout: handing the lock over starves no one into a timeout.
#[test]
fn many_contending_writers_all_get_through() -> Result<()> {
    let db = db()?;
    let uri = db.uri.clone();
    let (threads, each) = (16, 200);
    let writers: Vec<_> = (0..threads)
        .map(|w| {
            let uri = uri.clone();
            std::thread::spawn(move || -> Result<()> {
                let c = open(&uri)?;
                c.busy_timeout(Duration::from_secs(5))?;
                for _ in 0..each {
                    c.execute("INSERT INTO t(who) VALUES (?1)", [w])?;
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer panicked")?;
    }
    let c = open(&uri)?;
    for w in 0..threads {
        let n: i64 = c.query_row("SELECT count(*) FROM t WHERE who = ?1", [w], |r| r.get(0))?;
        ensure!(n == each, "writer {w} committed {n} of {each}");
    }
    Ok(())
}
