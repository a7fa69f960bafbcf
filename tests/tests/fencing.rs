//! One writer per database, enforced by the bucket: a lease claimed with a
//! conditional put, renewed by every manifest update, and an epoch that
//! fences a writer that lost it. Two real processes on two "nodes" (local
//! directories) share one bucket.

use anyhow::{Context, Result, ensure};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use strata_tests::{Backend, content_hash, integrity, restore};
use strata_vfs::TxId;
use strata_vfs::engine::Target;

fn writer(b: &Backend, mode: &str, local: &std::path::Path, extra: &[&str]) -> Result<Child> {
    let mut cmd = b.command(std::path::Path::new(env!(
        "CARGO_BIN_EXE_strata-test-writer"
    )));
    cmd.arg(mode).arg(local).arg(format!(
        "{}&db=data.db&sync_interval=100ms&lease_ttl=1500ms",
        b.params("acme")
    ));
    cmd.args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd.spawn()?)
}

fn signal(c: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(c.id() as i32, sig) };
}

/// Wait for `n` "ack" lines from a crash-mode writer; returns the last id.
fn acks(lines: &mut impl Iterator<Item = std::io::Result<String>>, n: usize) -> Result<i64> {
    let mut last = 0;
    for _ in 0..n {
        let l = lines.next().context("writer stopped")??;
        last = l.strip_prefix("ack ").context("ack line")?.parse()?;
    }
    Ok(last)
}

#[test]
fn a_second_writer_is_refused_then_takes_over_and_the_first_is_fenced() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let (node_a, node_b) = (dir.path().join("a.db"), dir.path().join("b.db"));
        let mut a = writer(&b, "crash", &node_a, &[])?;
        let mut a_out = BufReader::new(a.stdout.take().context("stdout")?).lines();
        acks(&mut a_out, 200)?;

        // While A is alive and renewing, B is refused at open with a clear error.
        let refused = writer(&b, "pitr", &node_b, &["1", "5"])?.wait_with_output()?;
        ensure!(
            !refused.status.success(),
            "[{}] a second writer opened while the first holds the lease",
            b.name()
        );
        let err = String::from_utf8_lossy(&refused.stderr);
        ensure!(
            err.contains("held by another writer"),
            "[{}] unclear refusal: {err}",
            b.name()
        );

        // Let A replicate some of its rows (it uploads every 100 ms)...
        std::thread::sleep(Duration::from_millis(500));
        // ...then A is paused (a long GC pause, a frozen VM) past its lease: B takes over.
        strata_tests::freeze_outside_bucket_lock(&b, a.id())?;
        std::thread::sleep(Duration::from_millis(2000));
        let b_run = writer(&b, "pitr", &node_b, &["2", "30"])?.wait_with_output()?;
        ensure!(
            b_run.status.success(),
            "[{}] takeover failed: {}",
            b.name(),
            String::from_utf8_lossy(&b_run.stderr)
        );
        let b_lines = String::from_utf8_lossy(&b_run.stdout).into_owned();
        let last = b_lines
            .lines()
            .rfind(|l| l.starts_with("txn "))
            .context("B committed nothing")?;
        let f: Vec<&str> = last.split_whitespace().collect();
        let (b_txid, b_hash): (u64, u32) = (f[1].parse()?, f[4].parse()?);

        // A wakes up: its next upload is refused, it stops accepting commits.
        signal(&a, libc::SIGCONT);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = a.try_wait()? {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            while a_out.next().is_some_and(|l| l.is_ok()) {
                if a.try_wait()?.is_some() {
                    break;
                }
            }
        };
        let Some(status) = status else {
            signal(&a, libc::SIGKILL);
            anyhow::bail!(
                "[{}] the paused writer kept committing after losing its lease",
                b.name()
            );
        };
        ensure!(!status.success());
        let mut a_err = String::new();
        std::io::Read::read_to_string(&mut a.stderr.take().context("stderr")?, &mut a_err)?;
        ensure!(
            a_err.contains("took over"),
            "[{}] the fenced writer did not say why: {a_err}",
            b.name()
        );

        // Exactly one history: contiguous txids, B's last state on top.
        let store = b.store()?;
        let h = strata_tests::assert_one_history(&store, "acme", "data.db")
            .map_err(|e| e.context(format!("[{}]", b.name())))?;
        ensure!(
            h.manifest.head == TxId(b_txid),
            "[{}] head {} is not B's last txid {b_txid}",
            b.name(),
            h.manifest.head
        );
        let out = dir.path().join("final.db");
        restore(&store, "acme", "data.db", Target::Latest, &out)?;
        ensure!(integrity(&out)? == "ok");
        let c = rusqlite::Connection::open(&out)?;
        ensure!(
            content_hash(&c)? == b_hash,
            "[{}] the bucket does not hold B's acknowledged state",
            b.name()
        );
        let (n, max): (i64, i64) = c.query_row("SELECT count(*), max(id) FROM rows", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        ensure!(
            n > 0 && n == max,
            "[{}] A's replicated rows in the bucket are not 1..={max}",
            b.name()
        );
        eprintln!(
            "[{}] fencing ok: A's {n} replicated rows, then B to txid {b_txid}",
            b.name()
        );
    }
    Ok(())
}

/// Closing hands the database over at once: no waiting for the lease.
#[test]
fn a_clean_close_hands_over_immediately() -> Result<()> {
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    for (i, node) in ["a.db", "b.db", "a.db"].iter().enumerate() {
        let started = Instant::now();
        let out = writer(&b, "pitr", &dir.path().join(node), &[&i.to_string(), "5"])?
            .wait_with_output()?;
        ensure!(
            out.status.success(),
            "node {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            started.elapsed() < Duration::from_millis(1500),
            "handover waited for the lease"
        );
    }
    Ok(())
}
