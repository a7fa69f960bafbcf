//! End-to-end replication through the VFS: real processes, real `kill -9`,
//! restores compared with what the writer acknowledged. Every test body runs
//! against a local-directory bucket and a real S3 server (moto) on loopback.

use anyhow::{Context, Result, ensure};
use rand::Rng;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use strata_tests::{Backend, content_hash, integrity, restore};
use strata_vfs::engine::Target;
use strata_vfs::format::keys::DbKeys;
use strata_vfs::{Millis, TxId};

/// The test writer on `local`, replicating to `b`; `uri` adds URI parameters.
fn writer_with(
    b: &Backend,
    mode: &str,
    local: &std::path::Path,
    uri: &str,
    extra: &[&str],
) -> Result<Child> {
    let mut cmd = b.command(std::path::Path::new(env!(
        "CARGO_BIN_EXE_strata-test-writer"
    )));
    cmd.arg(mode)
        .arg(local)
        .arg(format!("{}{uri}", b.params("acme")));
    cmd.args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    Ok(cmd.spawn()?)
}

fn writer(b: &Backend, mode: &str, local: &std::path::Path, extra: &[&str]) -> Result<Child> {
    writer_with(b, mode, local, "&sync_interval=200ms", extra)
}

/// Random transactions, then restores at random txids and times must equal
/// the state the writer saw right after that commit.
#[test]
fn point_in_time_restore_matches_the_writers_states() -> Result<()> {
    // Without snapshots (restores replay segments from txid 1); with a
    // snapshot every few uploads (restores start from the newest snapshot at
    // or before the target, found by listing the bucket); and with many
    // small uploads merged into fewer segments (`merge_segments`).
    #[derive(PartialEq, Clone, Copy, Debug)]
    enum Case {
        Plain,
        Snapshots,
        Merges,
    }
    let mut cases = Vec::new();
    for c in [Case::Plain, Case::Snapshots, Case::Merges] {
        cases.push((Backend::local()?, c));
        cases.push((Backend::s3()?, c));
    }
    for (b, case) in cases {
        let snapshots = case == Case::Snapshots;
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("data.db");
        let seed: u64 = rand::random();
        let n = if case == Case::Plain { 120 } else { 200 };
        let uri = match case {
            Case::Plain => "&sync_interval=200ms",
            Case::Snapshots => "&sync_interval=50ms&snapshot_interval=150ms",
            Case::Merges => "&sync_interval=10ms&merge_segments=3",
        };
        let mut child = writer_with(
            &b,
            "pitr",
            &local,
            uri,
            &[&seed.to_string(), &n.to_string()],
        )?;
        let out = BufReader::new(child.stdout.take().context("stdout")?);
        let mut states: BTreeMap<u64, (u64, u64, u32)> = BTreeMap::new();
        let mut done = None;
        for line in out.lines() {
            let line = line?;
            let f: Vec<&str> = line.split_whitespace().collect();
            match f[0] {
                "txn" => {
                    // The first line of a txid is its real commit; later ones were empty transactions.
                    states.entry(f[1].parse()?).or_insert((
                        f[2].parse()?,
                        f[3].parse()?,
                        f[4].parse()?,
                    ));
                }
                "done" => done = Some(f[1].parse::<u64>()?),
                _ => {}
            }
        }
        ensure!(child.wait()?.success(), "writer failed (seed {seed})");
        let head = done.context("writer did not finish")?;
        // Transactions that change nothing write nothing and get no txid.
        ensure!(
            states.len() > n / 2 && states.len() <= n,
            "{} states for {n} transactions",
            states.len()
        );
        let store = b.store()?;
        let h = strata_vfs::engine::history::load(
            store.as_ref(),
            &DbKeys::new("acme", "data.db")?,
            None,
        )?;
        ensure!(
            snapshots != h.snapshots.is_empty(),
            "[{}] snapshots={snapshots} but the bucket holds {}",
            b.name(),
            h.snapshots.len()
        );
        if case == Case::Merges {
            // The manifest lists a few segments; the small ones merged into
            // them are still in the bucket until retention.
            let listed = h.manifest.segments.len();
            let objects = store
                .list(&DbKeys::new("acme", "data.db")?.segments_prefix())?
                .len();
            ensure!(
                listed <= 4 && objects > listed + 3,
                "[{}] the manifest lists {listed} segments, the bucket holds {objects}",
                b.name()
            );
            // A lazy reader's page map over the merged segments reads the
            // same bytes as a restore.
            let keys = DbKeys::new("acme", "data.db")?;
            let map =
                strata_vfs::engine::pages::PageMap::build(store.as_ref(), &keys, Target::Latest)?;
            let mut bytes = vec![0u8; map.size() as usize];
            ensure!(map.read_at(store.as_ref(), 0, &mut bytes)? == bytes.len());
            let out = dir.path().join("latest.db");
            restore(&store, "acme", "data.db", Target::Latest, &out)?;
            ensure!(
                bytes == std::fs::read(&out)?,
                "[{}] page map differs",
                b.name()
            );
        }
        let mut rng = rand::rng();
        let txids: Vec<u64> = states.keys().copied().collect();
        for i in 0..15 {
            let t = if i == 0 {
                head
            } else {
                txids[rng.random_range(0..txids.len())]
            };
            let out = dir.path().join(format!("at-{t}.db"));
            let r = restore(&store, "acme", "data.db", Target::TxId(TxId(t)), &out)?;
            ensure!(r.txid == TxId(t));
            ensure!(integrity(&out)? == "ok");
            let c = rusqlite::Connection::open(&out)?;
            ensure!(
                content_hash(&c)? == states[&t].2,
                "[{}] state at txid {t} differs (seed {seed})",
                b.name()
            );
        }
        // By time: any instant between one commit's return and the next one's start.
        let mut checked = 0;
        for w in txids.windows(2) {
            let (a, next) = (states[&w[0]], states[&w[1]]);
            if next.0 > a.1 + 1 && rng.random_range(0..3) == 0 {
                let t = Millis(a.1 + (next.0 - a.1) / 2);
                let out = dir.path().join(format!("time-{}.db", t.0));
                let r = restore(&store, "acme", "data.db", Target::Time(t), &out)?;
                ensure!(
                    r.txid == TxId(w[0]),
                    "[{}] time {} restored txid {} not {}",
                    b.name(),
                    t.0,
                    r.txid,
                    w[0]
                );
                let c = rusqlite::Connection::open(&out)?;
                ensure!(content_hash(&c)? == a.2);
                checked += 1;
            }
        }
        ensure!(
            checked > 0,
            "no gaps between commits to test time restores in"
        );
        eprintln!(
            "[{}] pitr ok ({case:?}, snapshots: {}): {} txids, {checked} time points (seed {seed})",
            b.name(),
            h.snapshots.len(),
            txids.len()
        );
    }
    Ok(())
}

/// `kill -9` a writer at random moments, restart it each time; at the end
/// every acknowledged row is in the bucket, nothing else is, the database
/// passes integrity_check and the txid chain has no gap.
#[test]
fn kill_dash_nine_loses_nothing_acknowledged() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("data.db");
        let mut acked: i64 = 0;
        let mut rng = rand::rng();
        for round in 0..20 {
            let mut child = writer(&b, "crash", &local, &[])?;
            let out = child.stdout.take().context("stdout")?;
            let (tx, rx) = std::sync::mpsc::channel::<i64>();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(n) = line.strip_prefix("ack ") {
                        let _ = tx.send(n.parse().unwrap_or(0));
                    }
                }
            });
            let deadline = Instant::now() + Duration::from_millis(rng.random_range(150..900));
            while Instant::now() < deadline {
                if let Ok(n) = rx.recv_timeout(Duration::from_millis(20)) {
                    acked = acked.max(n);
                }
            }
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            child.wait()?;
            reader.join().ok();
            while let Ok(n) = rx.try_recv() {
                acked = acked.max(n);
            }
            ensure!(acked > 0 || round > 0, "writer acknowledged nothing");
        }
        // A last clean run uploads whatever the last kill left in the spool.
        let c = writer(&b, "pitr", &local, &["1", "1"])?;
        let o = c.wait_with_output()?;
        ensure!(o.status.success(), "final writer failed");
        let store = b.store()?;
        let out = dir.path().join("restored.db");
        restore(&store, "acme", "data.db", Target::Latest, &out)?;
        ensure!(integrity(&out)? == "ok");
        let c = rusqlite::Connection::open(&out)?;
        let (n, max): (i64, i64) =
            c.query_row("SELECT count(*), coalesce(max(id),0) FROM rows", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        ensure!(
            max >= acked,
            "[{}] acknowledged row {acked} missing (max {max})",
            b.name()
        );
        ensure!(n == max, "[{}] rows are not 1..={max}: {n} rows", b.name());
        // No gap, no duplicate txid: the chain is contiguous from txid 1.
        let h = strata_tests::assert_one_history(&store, "acme", "data.db")
            .map_err(|e| e.context(format!("[{}]", b.name())))?;
        eprintln!(
            "[{}] 20 kills: {acked} acknowledged rows, all present, {} txids",
            b.name(),
            h.manifest.head
        );
    }
    Ok(())
}

/// Corrupt or truncated objects: a clear error naming the object, never a
/// panic, never a silently wrong database.
#[test]
fn corrupt_and_truncated_objects_are_named() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("data.db");
        let c = writer(&b, "pitr", &local, &["7", "30"])?;
        ensure!(c.wait_with_output()?.status.success());
        let store = b.store()?;
        let keys = DbKeys::new("acme", "data.db")?;
        let segs = store.list(&keys.segments_prefix())?;
        ensure!(!segs.is_empty());
        let key = &segs[0].key;
        let good = store.get(key)?.data;
        let out = dir.path().join("r.db");
        // One flipped byte in the page data.
        let mut bad = good.to_vec();
        let n = bad.len();
        bad[n - 10] ^= 0x55;
        store.put(key, bad.into())?;
        let err = restore(&store, "acme", "data.db", Target::Latest, &out)
            .expect_err("corrupt segment restored");
        ensure!(
            err.to_string().contains(key.as_str()),
            "error does not name {key}: {err}"
        );
        ensure!(!out.exists(), "a partial restore was left in place");
        // Truncated.
        store.put(key, good.slice(..good.len() / 2))?;
        let err = restore(&store, "acme", "data.db", Target::Latest, &out)
            .expect_err("truncated segment restored");
        ensure!(
            err.to_string().contains("truncated") && err.to_string().contains(key.as_str()),
            "{err}"
        );
        // verify names it too.
        let v = strata_vfs::engine::verify::verify(&store, &keys, dir.path(), &Default::default());
        ensure!(
            v.as_ref()
                .is_err_and(|e| e.to_string().contains(key.as_str())),
            "verify: {:?}",
            v.map(|r| r.objects)
        );
        // A corrupt manifest.
        store.put(&keys.manifest(), bytes::Bytes::from_static(b"{not json"))?;
        let err =
            restore(&store, "acme", "data.db", Target::Latest, &out).expect_err("corrupt manifest");
        ensure!(err.to_string().contains("manifest.json"), "{err}");
        // Put the segment back: everything restores again.
        store.put(key, good)?;
    }
    Ok(())
}

/// Retention deletes what no restore point in the window needs: the newest
/// snapshot older than the window stays, and so does everything after it;
/// older points fail with a clear error; the latest state is intact.
#[test]
fn retention_keeps_every_point_in_the_window_and_nothing_older() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("data.db");
        let uri = "&sync_interval=50ms&snapshot_interval=100ms&retention=300ms";
        let c = writer_with(&b, "pitr", &local, uri, &["3", "150"])?;
        let o = c.wait_with_output()?;
        ensure!(o.status.success(), "writer failed");
        std::thread::sleep(Duration::from_millis(400));
        // A second session: its snapshots push the window past the first one.
        let c = writer_with(&b, "pitr", &local, uri, &["4", "150"])?;
        let o = c.wait_with_output()?;
        ensure!(o.status.success(), "writer failed");
        let store = b.store()?;
        let keys = DbKeys::new("acme", "data.db")?;
        let h = strata_vfs::engine::history::load(store.as_ref(), &keys, None)?;
        let oldest = h.oldest().context("no restore point left")?;
        ensure!(
            oldest > TxId(1),
            "[{}] nothing was deleted (oldest restore point {oldest})",
            b.name()
        );
        ensure!(
            store.list(&keys.segments_prefix())?.iter().all(|o| keys
                .parse_segment_key(&o.key)
                .is_some_and(|k| k.last > oldest || h.segments.iter().any(|s| s.key == o.key))),
            "[{}] segments older than the oldest restore point remain",
            b.name()
        );
        // Every snapshot has its hot pages, and no hot pages outlive theirs.
        let snaps: Vec<String> = store
            .list(&keys.snapshots_prefix())?
            .into_iter()
            .map(|o| o.key)
            .collect();
        let (hot, full): (Vec<&String>, Vec<&String>) =
            snaps.iter().partition(|k| k.ends_with(".hot"));
        ensure!(
            hot.len() == full.len()
                && hot
                    .iter()
                    .all(|h| full.contains(&&h.replace(".hot", ".snap"))),
            "[{}] snapshots {full:?} vs hot pages {hot:?}",
            b.name()
        );
        let out = dir.path().join("old.db");
        let err = restore(&store, "acme", "data.db", Target::TxId(TxId(1)), &out)
            .expect_err("txid 1 is outside retention");
        ensure!(
            err.to_string().contains("oldest restore point"),
            "unclear error: {err}"
        );
        for t in [oldest, h.manifest.head] {
            let out = dir.path().join(format!("at-{t}.db"));
            let r = restore(&store, "acme", "data.db", Target::TxId(t), &out)?;
            ensure!(r.txid == t && integrity(&out)? == "ok");
        }
        eprintln!(
            "[{}] retention ok: restorable {oldest}..={}",
            b.name(),
            h.manifest.head
        );
    }
    Ok(())
}
