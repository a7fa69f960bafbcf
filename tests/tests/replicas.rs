//! Read replicas (`vfs/src/sqlite/remote.rs`, `vfs/src/engine/follow.rs`):
//! a read-only open of a live database on a "node" with no local copy
//! (another directory) follows the writer's commits within about the
//! refresh interval, one state per read transaction, says how stale it is,
//! keeps serving through a bucket outage, and refuses writes. In process on
//! every backend, and through the loadable extension in Python.

use anyhow::{Context, Result, ensure};
use rusqlite::{Connection, OpenFlags};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_tests::{Backend, extension_path};
use strata_vfs::bucket::fault::FaultStore;

fn writer(url: &str, dir: &std::path::Path) -> Result<Connection> {
    strata_tests::open_wal(&format!(
        "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db&sync_interval=50ms",
        dir.join("data.db").display()
    ))
}

/// The backend's store as the VFS reaches it in this process.
fn bucket(b: &Backend) -> Result<String> {
    strata_tests::register_wrapped("replicas", b.name(), b.store()?)
}

/// A read-only open on another node: `dir` has no copy of the database.
/// `extra` parameters come first (the first of a name counts).
fn reader(url: &str, dir: &std::path::Path, extra: &str) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        format!(
            "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db{extra}&refresh=100ms",
            dir.join("data.db").display()
        ),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
}

fn flush(c: &Connection) -> Result<u64> {
    let t: String = c.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
    Ok(t.parse()?)
}

fn count(c: &Connection) -> Result<i64> {
    Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
}

fn pragma(c: &Connection, name: &str) -> Result<String> {
    Ok(c.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
}

/// Wait until `c` sees `want` rows; the time it took.
fn until_count(c: &Connection, want: i64, within: Duration) -> Result<Duration> {
    let t = Instant::now();
    loop {
        let n = count(c)?;
        if n == want {
            return Ok(t.elapsed());
        }
        ensure!(
            t.elapsed() < within,
            "the replica still sees {n} rows, not {want}, after {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn body(b: &Backend) -> Result<()> {
    let name = b.name();
    let url = bucket(b)?;
    let (wd, rd) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let w = writer(&url, wd.path())?;
    w.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
         INSERT INTO t SELECT i, printf('%0200d', i) FROM n;",
    )?;
    let first = flush(&w)?;

    let r = reader(&url, rd.path(), "")?;
    ensure!(count(&r)? == 2000, "[{name}] first read");
    ensure!(
        !rd.path().join("data.db").exists(),
        "[{name}] the replica made a local copy"
    );
    ensure!(pragma(&r, "strata_txid")? == first.to_string());
    let status = pragma(&r, "strata_status")?;
    ensure!(
        status.contains("replica=yes") && status.contains("error=none"),
        "[{name}] {status}"
    );

    // New commits arrive within about the refresh interval (100 ms), new
    // tables included (SQLite's schema is re-read when the state moves).
    w.execute_batch(
        "INSERT INTO t(v) VALUES ('new'); CREATE TABLE u(x); INSERT INTO u VALUES (42);",
    )?;
    let head = flush(&w)?;
    let took = until_count(&r, 2001, Duration::from_secs(3))?;
    ensure!(
        took < Duration::from_millis(1500),
        "[{name}] followed after {took:?}"
    );
    let u: i64 = r.query_row("SELECT x FROM u", [], |r| r.get(0))?;
    ensure!(u == 42, "[{name}] the new table reads {u}");
    ensure!(pragma(&r, "strata_txid")? == head.to_string());
    let stale: u64 = pragma(&r, "strata_staleness_ms")?.parse()?;
    ensure!(
        stale < 1000,
        "[{name}] staleness {stale} ms right after a read"
    );

    // One state per read transaction: a commit that lands meanwhile is
    // seen only after it ends.
    r.execute_batch("BEGIN")?;
    ensure!(count(&r)? == 2001);
    w.execute("UPDATE t SET v = 'changed' WHERE id = 1", [])?;
    w.execute("INSERT INTO t(v) VALUES ('later')", [])?;
    flush(&w)?;
    std::thread::sleep(Duration::from_millis(300));
    let v1: String = r.query_row("SELECT v FROM t WHERE id = 1", [], |r| r.get(0))?;
    ensure!(
        count(&r)? == 2001 && v1 == format!("{:0200}", 1),
        "[{name}] a read transaction saw a later commit ({v1})"
    );
    r.execute_batch("COMMIT")?;
    until_count(&r, 2002, Duration::from_secs(3))?;
    let v1: String = r.query_row("SELECT v FROM t WHERE id = 1", [], |r| r.get(0))?;
    ensure!(v1 == "changed", "[{name}] after the transaction: {v1}");

    // It is read-only, and says so.
    let e = r
        .execute("INSERT INTO t(v) VALUES ('from the replica')", [])
        .unwrap_err();
    ensure!(
        e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly),
        "[{name}] a write on the replica: {e}"
    );
    // `replica=1` asks for it explicitly, also where a local file exists.
    std::fs::write(rd.path().join("data.db"), b"")?;
    let r2 = reader(&url, rd.path(), "&replica=1")?;
    ensure!(count(&r2)? == 2002, "[{name}] replica=1 over a local file");
    ensure!(pragma(&r2, "integrity_check")? == "ok");
    // Bad parameters are refused at open.
    std::fs::remove_file(rd.path().join("data.db"))?;
    ensure!(
        reader(&url, rd.path(), "&refresh=soon").is_err(),
        "[{name}] refresh=soon was taken"
    );
    let other = Connection::open_with_flags(
        format!(
            "file:{}?vfs=strata&bucket={url}&tenant=nobody&db=data.db",
            rd.path().join("data.db").display()
        ),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    );
    ensure!(
        other.is_err(),
        "[{name}] a replica of a database that does not exist opened"
    );
    Ok(())
}

#[test]
fn a_read_only_open_elsewhere_follows_the_writer() -> Result<()> {
    for b in Backend::all()? {
        body(&b)?;
    }
    Ok(())
}

/// Through a bucket outage the replica serves the state it has (pages it
/// read before, from the page cache), reports the outage and a growing
/// staleness, and catches up when the bucket is back.
#[test]
fn a_replica_serves_what_it_has_through_an_outage() -> Result<()> {
    let b = Backend::local()?;
    let fault = Arc::new(FaultStore::new(b.store()?));
    let faulty = strata_tests::register_wrapped("fault", "replica-outage", fault.clone())?;
    let (wd, rd) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let w = writer(&bucket(&b)?, wd.path())?;
    w.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a'), ('b');",
    )?;
    flush(&w)?;
    let r = reader(&faulty, rd.path(), "")?;
    ensure!(count(&r)? == 2);

    fault.set_outage(true);
    w.execute("INSERT INTO t(v) VALUES ('c')", [])?;
    flush(&w)?;
    std::thread::sleep(Duration::from_millis(400));
    ensure!(
        count(&r)? == 2,
        "the replica read the bucket during an outage"
    );
    std::thread::sleep(Duration::from_millis(200));
    ensure!(count(&r)? == 2);
    let status = pragma(&r, "strata_status")?;
    let stale: u64 = pragma(&r, "strata_staleness_ms")?.parse()?;
    ensure!(
        !status.contains("error=none") && stale >= 500,
        "during the outage: {status}, staleness {stale} ms"
    );
    let metrics = strata_vfs::metrics::render();
    ensure!(
        metrics.contains("strata_follower_staleness_milliseconds{db=\"acme/data.db\"}"),
        "no staleness gauge in the metrics"
    );

    fault.set_outage(false);
    until_count(&r, 3, Duration::from_secs(3))?;
    let status = pragma(&r, "strata_status")?;
    ensure!(status.contains("error=none"), "after the outage: {status}");

    // Following costs the manifest and what is new: no object the replica
    // already knew is read again.
    let root = "tenants/acme/db/data.db/";
    let known: Vec<String> = b.store()?.list(root)?.into_iter().map(|o| o.key).collect();
    let read = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = read.clone();
    fault.set_hook(Some(Arc::new(move |_op, key: &str| {
        log.lock().expect("log").push(key.to_string());
        None
    })));
    w.execute("INSERT INTO t(v) VALUES ('d')", [])?;
    flush(&w)?;
    until_count(&r, 4, Duration::from_secs(3))?;
    fault.set_hook(None);
    let read = read.lock().map_err(|_| anyhow::anyhow!("log"))?.clone();
    let manifest = format!("{root}manifest.json");
    ensure!(
        read.contains(&manifest)
            && read.iter().any(|k| k != &manifest)
            && read.iter().all(|k| k == &manifest || !known.contains(k)),
        "a move read {read:?} (known before: {known:?})"
    );
    Ok(())
}

/// Any SQLite program: Python's `sqlite3` with the loadable extension opens
/// the database read-only on a node with no copy and follows a writer in
/// this process, one long-lived connection seeing each new commit.
#[test]
fn python_follows_a_writer_through_the_extension() -> Result<()> {
    const PYTHON: &str = "/usr/bin/python3";
    ensure!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} missing: apt-get install python3"
    );
    for b in Backend::all()? {
        let name = b.name();
        let (wd, rd) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let w = writer(&bucket(&b)?, wd.path())?;
        w.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")?;
        flush(&w)?;
        let uri = format!(
            "file:{}?vfs=strata&mode=ro&{}&refresh=50ms",
            rd.path().join("data.db").display(),
            b.params("acme")
        );
        // The reader prints the count each time it changes, until it sees 5.
        let script = format!(
            r#"
import sqlite3, time
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension({ext:?})
c = sqlite3.connect({uri:?}, uri=True)
seen, start = -1, time.time()
while seen < 5 and time.time() - start < 20:
    n = c.execute("select count(*) from t").fetchone()[0]
    if n != seen:
        print(n, flush=True)
        seen = n
    time.sleep(0.01)
print(c.execute("pragma strata_status").fetchone()[0], flush=True)
"#,
            ext = extension_path()?.display().to_string(),
        );
        let mut child = b
            .command(std::path::Path::new(PYTHON))
            .env_remove("STRATA_BUCKET")
            .arg("-c")
            .arg(&script)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let lines = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        for i in 1..=5 {
            std::thread::sleep(Duration::from_millis(300));
            w.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])?;
            flush(&w)?;
        }
        let out = child.wait_with_output()?;
        let lines = lines.join().map_err(|_| anyhow::anyhow!("reader thread"))?;
        ensure!(
            out.status.success(),
            "[{name}] python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every commit was seen on its own (300 ms apart, refresh 50 ms).
        ensure!(
            lines.len() == 7 && lines[..6] == ["0", "1", "2", "3", "4", "5"],
            "[{name}] python saw {lines:?}"
        );
        ensure!(lines[6].contains("replica=yes"), "[{name}] {}", lines[6]);
    }
    Ok(())
}
