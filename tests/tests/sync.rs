//! Sync durability: a commit returns only once the bucket has it; many
//! writers share uploads (group commit); with the bucket down, commits are
//! refused with a retryable error, and nothing refused shows up later.

use anyhow::{Result, bail, ensure};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_tests::{Backend, integrity, restore};
use strata_vfs::bucket::fault::FaultStore;
use strata_vfs::bucket::{ObjectStore, Store};
use strata_vfs::engine::Target;
use strata_vfs::format::keys::DbKeys;
use strata_vfs::format::manifest::Manifest;

const FLAGS: rusqlite::OpenFlags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
    .union(rusqlite::OpenFlags::SQLITE_OPEN_CREATE)
    .union(rusqlite::OpenFlags::SQLITE_OPEN_URI);

/// The head txid in the bucket's manifest, read past any fault wrapper.
fn bucket_head(store: &Store) -> Result<u64> {
    let keys = DbKeys::new("acme", "data.db")?;
    let o = store.get(&keys.manifest())?;
    Ok(Manifest::from_bytes(&o.data)?.head.0)
}

fn committed(c: &rusqlite::Connection) -> Result<u64> {
    Ok(
        c.query_row("PRAGMA strata_committed", [], |r| r.get::<_, String>(0))?
            .parse()?,
    )
}

/// A sync-mode database behind a fault wrapper, with `rows` created; returns
/// the URI and the txid before the first row (row `id` is txid `base + id`
/// because each row is its own transaction).
fn setup(
    b: &Backend,
    fault: &Arc<FaultStore<Store>>,
    dir: &std::path::Path,
) -> Result<(String, u64)> {
    strata_vfs::sqlite::register_static()?;
    let url = format!("fault://sync-{}-{}", b.name(), rand::random::<u32>());
    ensure!(strata_vfs::sqlite::params::register_store(
        &url,
        fault.clone()
    ));
    let uri = format!(
        "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db&durability=sync",
        dir.join("data.db").display()
    );
    let c = rusqlite::Connection::open_with_flags(&uri, FLAGS)?;
    c.pragma_update(None, "journal_mode", "wal")?;
    c.execute_batch("CREATE TABLE rows(id INTEGER PRIMARY KEY, who INTEGER, pad BLOB)")?;
    Ok((uri.clone(), committed(&c)?))
}

/// 16 threads commit concurrently; each commit, once returned, is in the
/// bucket's manifest; the result restores with every row.
#[test]
fn every_sync_commit_is_in_the_bucket_when_it_returns() -> Result<()> {
    for b in Backend::all()? {
        let store = b.store()?;
        let fault = Arc::new(FaultStore::new(store.clone()));
        let dir = tempfile::tempdir()?;
        let (uri, base) = setup(&b, &fault, dir.path())?;
        let per_thread = 15;
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (uri, store) = (uri.clone(), store.clone());
                std::thread::spawn(move || -> Result<()> {
                    let c = rusqlite::Connection::open_with_flags(&uri, FLAGS)?;
                    c.busy_timeout(Duration::from_secs(30))?;
                    for _ in 0..per_thread {
                        c.execute(
                            "INSERT INTO rows(who, pad) VALUES (?1, randomblob(100))",
                            [t],
                        )?;
                        let txid = base + c.last_insert_rowid() as u64;
                        let head = bucket_head(&store)?;
                        ensure!(
                            head >= txid,
                            "commit of txid {txid} returned while the bucket's head was {head}"
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        let out = dir.path().join("restored.db");
        restore(&store, "acme", "data.db", Target::Latest, &out)?;
        ensure!(integrity(&out)? == "ok");
        let n: i64 =
            rusqlite::Connection::open(&out)?
                .query_row("SELECT count(*) FROM rows", [], |r| r.get(0))?;
        ensure!(n == 16 * per_thread, "[{}] {n} rows restored", b.name());
    }
    Ok(())
}

/// With the bucket down, a sync commit fails: the first with "committed
/// locally, not confirmed" (it was already past the commit point when the
/// upload failed), the rest with SQLITE_BUSY before their commit point. When
/// the bucket returns, commits succeed again; the bucket then holds every
/// acknowledged row, none of the refused ones, and matches the local copy.
#[test]
fn sync_commits_are_refused_while_the_bucket_is_down() -> Result<()> {
    let b = Backend::local()?;
    let store = b.store()?;
    let fault = Arc::new(FaultStore::new(store.clone()));
    let dir = tempfile::tempdir()?;
    let (uri, _) = setup(&b, &fault, dir.path())?;
    let c = rusqlite::Connection::open_with_flags(&uri, FLAGS)?;
    let insert = |id: i64| c.execute("INSERT INTO rows(id, who) VALUES (?1, 0)", [id]);
    for id in 1..=5 {
        insert(id)?;
    }
    fault.set_outage(true);
    let (mut acked, mut refused, mut unconfirmed) = (vec![], vec![], vec![]);
    let started = Instant::now();
    for id in 6..=40 {
        match insert(id) {
            Ok(_) => acked.push(id),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                refused.push(id)
            }
            // SQLite reports a WAL-hook failure as SQLITE_ERROR from step
            // (the extended code, SQLITE_IOERR, comes from reset).
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::Unknown) => {
                unconfirmed.push(id)
            }
            Err(e) => bail!("unexpected error for row {id}: {e}"),
        }
    }
    ensure!(
        acked.is_empty(),
        "commits {acked:?} reported success while the bucket was down"
    );
    ensure!(
        refused.len() >= 30,
        "only {} commits were refused up front ({unconfirmed:?} unconfirmed)",
        refused.len()
    );
    ensure!(
        started.elapsed() < Duration::from_secs(9),
        "failing took {:?}: it should not wait for the sync timeout",
        started.elapsed()
    );
    fault.set_outage(false);
    // Commits resume by themselves once an upload goes through.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut id = 100;
    loop {
        match insert(id) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                ensure!(
                    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy),
                    "while recovering: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
                id += 1;
            }
            Err(e) => bail!("commits did not resume: {e}"),
        }
    }
    let ids: Vec<i64> = {
        let mut s = c.prepare("SELECT id FROM rows ORDER BY id")?;
        s.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    drop(c);
    let out = dir.path().join("restored.db");
    restore(&store, "acme", "data.db", Target::Latest, &out)?;
    let restored: Vec<i64> = {
        let r = rusqlite::Connection::open(&out)?;
        let mut s = r.prepare("SELECT id FROM rows ORDER BY id")?;
        s.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    ensure!(restored == ids, "bucket {restored:?} != local {ids:?}");
    for r in &refused {
        ensure!(!ids.contains(r), "refused row {r} was committed");
    }
    ensure!(ids.contains(&id), "the acknowledged row {id} is missing");
    Ok(())
}
