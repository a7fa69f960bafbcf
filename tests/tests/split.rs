//! Split snapshots (`docs/format.md` §2.8): a large snapshot is an index
//! object plus parts. Every way of reading one (restore, lazy open, hydrate,
//! verify) gives the same database; a damaged or missing part is named and
//! never read as data; retention removes parts with their snapshot. Run on
//! the local bucket and on the loopback S3 server.

use anyhow::{Context, Result, bail, ensure};
use std::path::Path;
use strata_tests::{Backend, content_hash, integrity};
use strata_vfs::engine::{self, Target};
use strata_vfs::format::keys::DbKeys;

/// Parts of 64 KiB: a 3 MiB database becomes ~45 of them.
const PART: u64 = 64 << 10;

fn source(dir: &Path) -> Result<std::path::PathBuf> {
    let src = dir.join("src.db");
    rusqlite::Connection::open(&src)?.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         CREATE INDEX t_v ON t(v);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 12000)
         INSERT INTO t SELECT i, hex(randomblob(60)) FROM n;
         -- Text that compresses: its parts are decoded, the others written as fetched.
         CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
         INSERT INTO notes SELECT i, printf('note %d: %s', i, replace(hex(zeroblob(150)), '00', 'ab')) FROM n;",
    )?;
    Ok(src)
}

fn hash_of(path: &Path) -> Result<u32> {
    content_hash(&rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?)
}

/// Restore the latest state; its integrity check and content hash.
fn restored(store: &strata_vfs::bucket::Store, keys: &DbKeys, dir: &Path) -> Result<u32> {
    let out = dir.join("restored.db");
    engine::restore::restore(store, keys, Target::Latest, &out, &Default::default())?;
    ensure!(integrity(&out)? == "ok");
    hash_of(&out)
}

fn parts_of(store: &strata_vfs::bucket::Store, keys: &DbKeys) -> Result<Vec<String>> {
    Ok(store
        .list(&keys.parts_prefix())?
        .into_iter()
        .map(|o| o.key)
        .collect())
}

#[test]
fn a_split_snapshot_reads_back_every_way_on_every_backend() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let src = source(dir.path())?;
        let want = hash_of(&src)?;
        let store = b.store()?;
        let keys = DbKeys::new("acme", "data.db")?;
        let (_, _, stored) = engine::import::import_with(&store, &keys, &src, PART)?;
        let parts = parts_of(&store, &keys)?;
        let size = std::fs::metadata(&src)?.len();
        ensure!(parts.len() >= 20, "{}: {} parts", b.name(), parts.len());
        ensure!(
            stored > size / 2,
            "import reports {stored} bytes for {size}"
        );
        let snap = store
            .list(&keys.snapshots_prefix())?
            .into_iter()
            .find(|o| o.key.ends_with(".snap"))
            .context("no snapshot object")?;
        ensure!(
            snap.size < 64 << 10,
            "the snapshot object holds the body: {} bytes",
            snap.size
        );
        // Both kinds of part: raw ones (the random text) and compressed ones.
        let idx = strata_vfs::format::segment::decode_split_index(&store.get(&snap.key)?.data)?;
        let raw = (0..idx.parts.len()).filter(|&i| idx.part_is_raw(i)).count();
        ensure!(
            raw > 0 && raw < idx.parts.len(),
            "{}: {raw} of {} parts raw",
            b.name(),
            idx.parts.len()
        );
        // `strata history` counts the parts with their snapshot.
        let h = engine::history::load(store.as_ref(), &keys, None)?;
        let bytes = engine::history::snapshot_bytes(store.as_ref(), &keys, &h)?;
        ensure!(
            bytes.get(&snap.key) == Some(&stored),
            "{}: history says {:?} bytes, import stored {stored}",
            b.name(),
            bytes.get(&snap.key)
        );

        ensure!(
            restored(&store, &keys, dir.path())? == want,
            "{}: restore differs",
            b.name()
        );

        // Verify reads every part.
        let report = engine::verify::verify(&store, &keys, dir.path(), &Default::default())?;
        ensure!(report.problems.is_empty(), "{:?}", report.problems);

        // Lazy open on an empty node: a point query, then hydrate.
        let url = strata_tests::register_wrapped("split", b.name(), store.clone())?;
        let node = dir.path().join("node.db");
        let uri = format!(
            "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db",
            node.display()
        );
        let c = rusqlite::Connection::open_with_flags(
            &uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        let v: String = c.query_row("SELECT v FROM t WHERE id = 7777", [], |r| r.get(0))?;
        let direct: String = rusqlite::Connection::open(&src)?.query_row(
            "SELECT v FROM t WHERE id = 7777",
            [],
            |r| r.get(0),
        )?;
        ensure!(v == direct);
        let missing: i64 = c
            .query_row("PRAGMA strata_missing_pages", [], |r| r.get::<_, String>(0))?
            .parse()?;
        ensure!(missing > 0, "the point query fetched every page");
        c.query_row("PRAGMA strata_hydrate", [], |r| r.get::<_, String>(0))?;
        let missing: String = c.query_row("PRAGMA strata_missing_pages", [], |r| r.get(0))?;
        ensure!(missing == "0", "after hydrate: {missing} missing");
        ensure!(c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))? == "ok");
        ensure!(
            content_hash(&c)? == want,
            "{}: hydrated copy differs",
            b.name()
        );
        drop(c);

        // A point-in-time view reads the split snapshot page by page.
        let map = engine::pages::PageMap::build(
            store.as_ref(),
            &keys,
            Target::TxId(strata_vfs::TxId(1)),
        )?;
        let mut buf = vec![0u8; map.size() as usize];
        ensure!(map.read_at(store.as_ref(), 0, &mut buf)? == buf.len());
        ensure!(
            buf == std::fs::read(&src)?,
            "{}: page map differs",
            b.name()
        );
    }
    Ok(())
}

#[test]
fn a_damaged_or_missing_part_is_named_and_never_read_as_data() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let src = source(dir.path())?;
        let store = b.store()?;
        let keys = DbKeys::new("acme", "data.db")?;
        engine::import::import_with(&store, &keys, &src, PART)?;
        let parts = parts_of(&store, &keys)?;
        let victim = &parts[parts.len() / 2];
        let good = store.get(victim)?.data;

        // One flipped byte.
        let mut bad = good.to_vec();
        bad[100] ^= 0x40;
        store.put(victim, bad.into())?;
        let out = dir.path().join("restored.db");
        let err =
            engine::restore::restore(&store, &keys, Target::Latest, &out, &Default::default())
                .err()
                .context("restore read a damaged part")?;
        let msg = err.to_string();
        ensure!(
            msg.contains(victim.as_str()) && msg.contains("checksum"),
            "{}: {msg}",
            b.name()
        );
        ensure!(err.kind() == strata_vfs::ErrorKind::Corrupt, "{msg}");
        ensure!(!out.exists(), "a failed restore left a file");
        let err = engine::verify::verify(&store, &keys, dir.path(), &Default::default())
            .err()
            .context("verify passed a damaged part")?;
        ensure!(err.to_string().contains("checksum"), "{err}");
        // A page read from that part fails its page checksum, cleanly.
        let map = engine::pages::PageMap::build(store.as_ref(), &keys, Target::Latest)?;
        let mut buf = vec![0u8; map.size() as usize];
        let err = map
            .read_at(store.as_ref(), 0, &mut buf)
            .err()
            .context("read a damaged part")?;
        ensure!(err.kind() == strata_vfs::ErrorKind::Corrupt, "{err}");

        // Gone.
        store.delete(victim)?;
        let err =
            engine::restore::restore(&store, &keys, Target::Latest, &out, &Default::default())
                .err()
                .context("restore without a part")?;
        ensure!(
            err.to_string().contains(victim.as_str()) && err.to_string().contains("missing"),
            "{}: {err}",
            b.name()
        );
        ensure!(
            err.kind() == strata_vfs::ErrorKind::Corrupt,
            "{}: {err}",
            b.name()
        );
        // A lazy reader of a page in that part: the same, never zeros.
        let map = engine::pages::PageMap::build(store.as_ref(), &keys, Target::Latest)?;
        let err = map
            .read_at(store.as_ref(), 0, &mut buf)
            .err()
            .context("read a missing part")?;
        ensure!(err.kind() == strata_vfs::ErrorKind::Corrupt, "{err}");

        // Put back: everything reads again.
        store.put(victim, good)?;
        ensure!(restored(&store, &keys, dir.path())? == hash_of(&src)?);
    }
    Ok(())
}

#[test]
fn a_writer_snapshots_in_parts_and_retention_removes_old_parts() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let store = b.store()?;
        let keys = DbKeys::new("acme", "data.db")?;
        let url = strata_tests::register_wrapped("split", b.name(), store.clone())?;
        let uri = format!(
            "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db&sync_interval=100ms\
             &snapshot_interval=1ms&snapshot_part=65536&retention=1ms",
            dir.path().join("w.db").display(),
        );
        let c = rusqlite::Connection::open_with_flags(
            &uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        c.pragma_update(None, "journal_mode", "wal")?;
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")?;
        let mut snapshots = std::collections::BTreeSet::new();
        for round in 0..6 {
            c.execute_batch(&format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
                 INSERT INTO t(v) SELECT hex(randomblob(60)) || '{round}' FROM n;"
            ))?;
            let head: u64 = c
                .query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?
                .parse()?;
            // The uploader snapshots after each upload (interval 1 ms).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let m = engine::restore::read_manifest(store.as_ref(), &keys)?;
                if let Some(s) = &m.snapshot
                    && s.txid.0 >= head
                {
                    snapshots.insert(s.key.clone());
                    break;
                }
                if std::time::Instant::now() > deadline {
                    bail!("{}: no snapshot of txid {head} after 30 s", b.name());
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let want = content_hash(&c)?;
        drop(c);
        ensure!(snapshots.len() >= 3, "only {} snapshots", snapshots.len());
        // Parts exist only for snapshots that are still in the bucket.
        let live: Vec<String> = store
            .list(&keys.snapshots_prefix())?
            .into_iter()
            .filter(|o| o.key.ends_with(".snap"))
            .map(|o| o.key)
            .collect();
        ensure!(
            live.len() < snapshots.len(),
            "retention kept every snapshot: {live:?}"
        );
        let parts = parts_of(&store, &keys)?;
        ensure!(
            !parts.is_empty(),
            "{}: the writer's snapshots were not split",
            b.name()
        );
        for p in &parts {
            let stem = p
                .rsplit('/')
                .nth(1)
                .and_then(|d| d.rsplit_once("-e"))
                .map(|(s, _)| s)
                .context("part key")?;
            ensure!(
                live.iter().any(|k| k.contains(stem)),
                "{}: part {p} outlived its snapshot",
                b.name()
            );
        }
        ensure!(restored(&store, &keys, dir.path())? == want);
    }
    Ok(())
}

#[test]
fn a_failed_part_upload_fails_the_snapshot_cleanly_and_a_retry_completes_it() -> Result<()> {
    use strata_vfs::bucket::fault::{FaultStore, Op};
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let src = source(dir.path())?;
        let fault = std::sync::Arc::new(FaultStore::new(b.store()?));
        let store: strata_vfs::bucket::Store = fault.clone();
        let keys = DbKeys::new("acme", "data.db")?;
        // The 10th part's upload fails (its key ends in 000009.part).
        fault.fail_key_matching(Op::PutIfAbsent, "000009.part", 1);
        let err = engine::import::import_with(&store, &keys, &src, PART)
            .err()
            .context("import survived a failed part upload")?;
        ensure!(
            err.to_string().contains("000009.part"),
            "{}: {err}",
            b.name()
        );
        ensure!(fault.injected() == 1);
        // The failed import took back the parts that did land: nothing is left.
        let listed: Vec<String> = store
            .list(keys.root())?
            .into_iter()
            .map(|o| o.key)
            .collect();
        ensure!(
            listed.is_empty(),
            "{}: a failed import left {listed:?}",
            b.name()
        );
        // A retry writes it all again.
        engine::import::import_with(&store, &keys, &src, PART)?;
        ensure!(
            restored(&store, &keys, dir.path())? == hash_of(&src)?,
            "{}: retry differs",
            b.name()
        );
    }
    Ok(())
}
