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

fn writer(b: &Backend, mode: &str, local: &std::path::Path, extra: &[&str]) -> Result<Child> {
    let mut cmd = b.command(std::path::Path::new(env!(
        "CARGO_BIN_EXE_strata-test-writer"
    )));
    cmd.arg(mode)
        .arg(local)
        .arg(format!("{}&sync_interval=200ms", b.params("acme")));
    cmd.args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    Ok(cmd.spawn()?)
}

/// Random transactions, then restores at random txids and times must equal
/// the state the writer saw right after that commit.
#[test]
fn point_in_time_restore_matches_the_writers_states() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("data.db");
        let seed: u64 = rand::random();
        let n = 120;
        let mut child = writer(&b, "pitr", &local, &[&seed.to_string(), &n.to_string()])?;
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
            "[{}] pitr ok: {} txids, {checked} time points (seed {seed})",
            b.name(),
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
        let keys = DbKeys::new("acme", "data.db")?;
        let h = strata_vfs::engine::history::load(store.as_ref(), &keys, None)?;
        let mut next = TxId(1);
        for s in &h.segments {
            ensure!(
                s.first == next,
                "[{}] gap or overlap at txid {} (segment {})",
                b.name(),
                next,
                s.key
            );
            next = s.last.next();
        }
        ensure!(next == h.manifest.head.next());
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
    let b = Backend::local()?;
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
    Ok(())
}
