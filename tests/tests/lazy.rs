//! Lazy open: a node opens a database that is not on its disk without
//! downloading it; pages arrive as SQLite reads them; `strata_hydrate` fills
//! the rest; the copy stays correct through writes and a reopen.

use anyhow::{Context, Result, ensure};
use std::sync::Arc;
use std::time::Instant;
use strata_tests::{Backend, integrity};
use strata_vfs::bucket::metered::MeteredStore;

use strata_tests::open_wal as open;

#[test]
fn lazy_open_fetches_only_what_is_read() -> Result<()> {
    let b = Backend::local()?;
    let metered = Arc::new(MeteredStore::new(b.store()?));
    let url = strata_tests::register_wrapped("metered", "lazy", metered.clone())?;
    let dir = tempfile::tempdir()?;

    // Node 1 writes a ~64 MiB database and replicates it.
    let params = format!("vfs=strata&bucket={url}&tenant=acme&db=data.db&sync_interval=100ms");
    let node1 = dir.path().join("node1.db");
    let c = open(&format!("file:{}?{params}", node1.display()))?;
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200000)
         INSERT INTO t SELECT i, printf('%0300d', i) FROM n;",
    )?;
    let size: i64 = c.query_row(
        "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
        [],
        |r| r.get(0),
    )?;
    c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
    drop(c);
    ensure!(size > 50 << 20, "database is only {size} bytes");

    // Node 2 has nothing local: the open and a point query fetch a sliver.
    let node2 = dir.path().join("node2.db");
    let before = metered.snapshot();
    let t0 = Instant::now();
    let c = open(&format!("file:{}?{params}", node2.display()))?;
    let v: String = c.query_row("SELECT v FROM t WHERE id = 123456", [], |r| r.get(0))?;
    let first_row = t0.elapsed();
    ensure!(v == format!("{:0300}", 123456));
    let used = metered.snapshot().sub(&before);
    ensure!(
        used.bytes_read * 50 < size as u64,
        "a point query read {} of {size} bytes",
        used.bytes_read
    );
    let missing: u64 = c
        .query_row("PRAGMA strata_missing_pages", [], |r| r.get::<_, String>(0))?
        .parse()?;
    ensure!(
        missing > 10_000,
        "only {missing} pages missing: the open downloaded the database"
    );

    // Writes work on a partial copy; then hydrate fills the rest.
    c.execute("UPDATE t SET v = 'changed' WHERE id = 7", [])?;
    let t1 = Instant::now();
    let filled: u64 = c
        .query_row("PRAGMA strata_hydrate", [], |r| r.get::<_, String>(0))?
        .parse()?;
    let hydrate = t1.elapsed();
    ensure!(filled > 0);
    let missing: u64 = c
        .query_row("PRAGMA strata_missing_pages", [], |r| r.get::<_, String>(0))?
        .parse()?;
    ensure!(missing == 0, "{missing} pages still missing after hydrate");
    let (n, changed): (i64, String) = c.query_row(
        "SELECT count(*), (SELECT v FROM t WHERE id = 7) FROM t",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ensure!(
        n == 200000 && changed == "changed",
        "hydrate overwrote a local write or lost rows"
    );
    c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
    drop(c);
    ensure!(integrity(&node2)? == "ok");
    eprintln!(
        "lazy open of {} MiB: first row after {first_row:?} reading {} bytes in {} requests; hydrate {filled} pages in {hydrate:?}",
        size >> 20,
        used.bytes_read,
        used.total()
    );
    Ok(())
}

/// A copy left partial by a close (or a crash) resumes lazily at the next
/// open, and a read-only connection in the same process sees complete pages.
#[test]
fn a_partial_copy_resumes_after_reopen() -> Result<()> {
    strata_vfs::sqlite::register_static()?;
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let params = format!(
        "vfs=strata&{}&db=data.db&sync_interval=100ms",
        b.params("acme")
    );
    let node1 = dir.path().join("node1.db");
    let c = open(&format!("file:{}?{params}", node1.display()))?;
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000)
         INSERT INTO t SELECT i, printf('%0200d', i) FROM n;",
    )?;
    c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
    drop(c);
    let node2 = dir.path().join("node2.db");
    let uri = format!("file:{}?{params}", node2.display());
    let c = open(&uri)?;
    let one: String = c.query_row("SELECT v FROM t WHERE id = 5", [], |r| r.get(0))?;
    ensure!(one.ends_with('5'));
    let reader = rusqlite::Connection::open_with_flags(
        format!("file:{}?vfs=strata", node2.display()),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )?;
    let n: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    ensure!(n == 20000, "read-only connection saw {n} rows");
    drop(reader);
    drop(c);
    let c = open(&uri)?;
    let sum: i64 = c.query_row("SELECT sum(id) FROM t", [], |r| r.get(0))?;
    ensure!(sum == 20000 * 20001 / 2);
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(ok == "ok");
    let _ = c
        .query_row("PRAGMA strata_hydrate", [], |r| r.get::<_, String>(0))
        .context("hydrate")?;
    Ok(())
}

/// During a bucket outage a lazily opened copy serves every page it already
/// has, fails cleanly (an I/O error naming the cause, no hang, no crash) on
/// pages it does not, and serves those too once the bucket is back; the
/// same after a reopen while the bucket is down.
#[test]
fn a_partial_copy_serves_what_it_has_through_an_outage() -> Result<()> {
    use strata_vfs::bucket::fault::FaultStore;
    let b = Backend::local()?;
    let fault = Arc::new(FaultStore::new(b.store()?));
    let url = strata_tests::register_wrapped("fault", "lazy-outage", fault.clone())?;
    let dir = tempfile::tempdir()?;
    let params = format!("vfs=strata&bucket={url}&tenant=acme&db=data.db");
    let c = open(&format!(
        "file:{}?{params}",
        dir.path().join("n1.db").display()
    ))?;
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 50000)
         INSERT INTO t SELECT i, printf('%0300d', i) FROM n;",
    )?;
    c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
    drop(c);

    let node2 = format!("file:{}?{params}", dir.path().join("n2.db").display());
    let c = open(&node2)?;
    let get = |c: &rusqlite::Connection, id: i64| -> Result<String> {
        Ok(c.query_row("SELECT v FROM t WHERE id = ?1", [id], |r| r.get(0))?)
    };
    // Fails cleanly, quickly, and says it is an I/O error.
    let fails = |c: &rusqlite::Connection, id: i64| -> Result<()> {
        let t = Instant::now();
        let err = c
            .query_row("SELECT v FROM t WHERE id = ?1", [id], |r| {
                r.get::<_, String>(0)
            })
            .err()
            .context("a missing page was served during the outage")?;
        ensure!(
            err.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure),
            "unexpected error: {err}"
        );
        ensure!(
            t.elapsed().as_secs() < 5,
            "the failing read took {:?}",
            t.elapsed()
        );
        Ok(())
    };
    ensure!(get(&c, 10)? == format!("{:0300}", 10));
    fault.set_outage(true);
    // Present pages: served from the local copy; missing ones fail.
    ensure!(get(&c, 10)? == format!("{:0300}", 10));
    fails(&c, 45_000)?;
    fault.set_outage(false);
    ensure!(get(&c, 45_000)? == format!("{:0300}", 45_000));
    drop(c);

    // Reopened while the bucket is down: the same, from the pages on disk.
    fault.set_outage(true);
    let c = open(&node2)?;
    ensure!(get(&c, 10)? == format!("{:0300}", 10));
    ensure!(get(&c, 45_000)? == format!("{:0300}", 45_000));
    fails(&c, 30_000)?;
    fault.set_outage(false);
    ensure!(get(&c, 30_000)? == format!("{:0300}", 30_000));
    ensure!(integrity_of(&c)? == "ok");
    Ok(())
}

fn integrity_of(c: &rusqlite::Connection) -> Result<String> {
    Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
}

/// A tenant that exists in the bucket (imported: a snapshot, with its hot
/// pages beside it) is opened on a node that has nothing: the first point
/// query reads the manifest, then the snapshot's index and hot pages (in
/// parallel), then the leaf: 4 GETs. Without the hot pages, every B-tree
/// level costs one more sequential read.
#[test]
fn a_cold_point_query_reads_manifest_index_and_hot_pages_then_the_leaf() -> Result<()> {
    let b = Backend::local()?;
    let metered = Arc::new(MeteredStore::new(b.store()?));
    let url = strata_tests::register_wrapped("metered", "hot", metered.clone())?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src.db");
    rusqlite::Connection::open(&src)?.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300000)
         INSERT INTO t SELECT i, printf('%0100d', i) FROM n;",
    )?;
    let store = b.store()?;
    for db in ["hot.db", "cold.db"] {
        let keys = strata_vfs::format::keys::DbKeys::new("acme", db)?;
        strata_vfs::engine::import::import(&store, &keys, &src)?;
    }
    // cold.db: the same snapshot without its hot pages.
    let keys = strata_vfs::format::keys::DbKeys::new("acme", "cold.db")?;
    let hot: Vec<_> = store
        .list(&keys.snapshots_prefix())?
        .into_iter()
        .filter(|o| o.key.ends_with(".hot"))
        .collect();
    ensure!(hot.len() == 1, "import wrote no hot pages: {hot:?}");
    store.delete(&hot[0].key)?;

    let mut reads = Vec::new();
    for db in ["hot.db", "cold.db"] {
        let before = metered.snapshot();
        let node = dir.path().join(format!("node-{db}"));
        let c = open(&format!(
            "file:{}?vfs=strata&bucket={url}&tenant=acme&db={db}",
            node.display()
        ))?;
        let v: String = c.query_row("SELECT v FROM t WHERE id = 222222", [], |r| r.get(0))?;
        ensure!(v == format!("{:0100}", 222222));
        let used = metered.snapshot().sub(&before);
        reads.push(used.get + used.get_range);
        if db == "hot.db" {
            // A full scan reads ahead: far fewer GETs than pages.
            let before = metered.snapshot();
            let (n, pages): (i64, i64) = c.query_row(
                "SELECT (SELECT count(*) FROM t WHERE v LIKE '0%'), (SELECT page_count FROM pragma_page_count)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            ensure!(n == 300_000, "scan saw {n} rows");
            let used = metered.snapshot().sub(&before);
            let gets = used.get + used.get_range;
            ensure!(
                gets * 20 < pages as u64,
                "a scan of {pages} pages took {gets} GETs: no read-ahead"
            );
        }
    }
    ensure!(
        reads[0] <= 4,
        "with hot pages the first row took {} GETs: manifest, index ∥ hot pages, leaf expected",
        reads[0]
    );
    ensure!(
        reads[1] > reads[0],
        "hot pages saved nothing ({} vs {} GETs)",
        reads[0],
        reads[1]
    );
    Ok(())
}

#[test]
fn a_lazy_open_that_fails_hands_the_writer_lease_back() -> Result<()> {
    use strata_vfs::bucket::fault::{FaultStore, Op};
    let b = Backend::local()?;
    let fault = Arc::new(FaultStore::new(b.store()?));
    let url = strata_tests::register_wrapped("fault", "lease", fault.clone())?;
    let dir = tempfile::tempdir()?;
    let params = format!("vfs=strata&bucket={url}&tenant=acme&db=data.db&lease_ttl=1h");
    let c = open(&format!(
        "file:{}?{params}",
        dir.path().join("n1.db").display()
    ))?;
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (42);")?;
    c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
    drop(c);

    // A new node's page map cannot read the segment's index: the open fails
    // (the lease claim ran alongside it and succeeded).
    fault.fail_key_matching(Op::GetRange, ".seg", 1);
    let n2 = format!("file:{}?{params}", dir.path().join("n2.db").display());
    let err = open(&n2)
        .err()
        .context("the open survived an unreadable index")?;
    ensure!(fault.injected() == 1, "{err}");
    let keys = strata_vfs::format::keys::DbKeys::new("acme", "data.db")?;
    let m = strata_vfs::engine::restore::read_manifest(fault.as_ref(), &keys)?;
    ensure!(
        m.lease.is_none(),
        "the failed open kept the lease: {:?}",
        m.lease
    );
    // So another node opens at once, not after the 1 h lease.
    let c = open(&format!(
        "file:{}?{params}",
        dir.path().join("n3.db").display()
    ))?;
    let x: i64 = c.query_row("SELECT x FROM t", [], |r| r.get(0))?;
    ensure!(x == 42);
    Ok(())
}
