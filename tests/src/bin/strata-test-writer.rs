//! A writer process for the end-to-end tests: opens a database through the
//! strata VFS (in-process, rusqlite) and runs one of two workloads, printing
//! one line per acknowledged commit so the parent test can check every
//! acknowledged transaction later, after `kill -9` if it likes.
//!
//! `strata-test-writer crash LOCAL URI_PARAMS` — insert rows 1, 2, 3... (a
//! few per transaction), forever; prints `ack <last id>` after each commit.
//! `strata-test-writer pitr LOCAL URI_PARAMS SEED N` — N random transactions
//! over a key/value table; prints `txn <txid> <before_ms> <after_ms> <hash>`.
//! Both end (when they end) with `PRAGMA strata_flush` and `done <txid>`.

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, local, params) = (&args[1], &args[2], &args[3]);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    strata_vfs::sqlite::register_static()?;
    let uri = format!("file:{local}?vfs=strata&{params}");
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let mut c = rusqlite::Connection::open_with_flags(&uri, flags)
        .with_context(|| format!("open {uri}"))?;
    c.pragma_update(None, "journal_mode", "wal")?;
    c.pragma_update(None, "synchronous", "normal")?;
    let out = std::io::stdout();
    match mode.as_str() {
        "crash" => {
            c.execute_batch("CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, pad BLOB)")?;
            let mut next: i64 =
                c.query_row("SELECT coalesce(max(id), 0) + 1 FROM rows", [], |r| {
                    r.get(0)
                })?;
            let mut rng = rand::rngs::StdRng::from_entropy_compat();
            loop {
                let n = rng.random_range(1..=4);
                let tx = c.transaction()?;
                for i in 0..n {
                    tx.execute(
                        "INSERT INTO rows(id, pad) VALUES (?1, randomblob(?2))",
                        (next + i, rng.random_range(10..3000)),
                    )?;
                }
                tx.commit()?;
                next += n;
                writeln!(out.lock(), "ack {}", next - 1)?;
                if rng.random_range(0..50) == 0 {
                    c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")?;
                }
            }
        }
        "pitr" => {
            let seed: u64 = args[4].parse()?;
            let n: u64 = args[5].parse()?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            c.execute_batch("CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v TEXT)")?;
            for _ in 0..n {
                let before = now_ms();
                let tx = c.transaction()?;
                for _ in 0..rng.random_range(1..=5) {
                    let k = rng.random_range(0..200);
                    match rng.random_range(0..10) {
                        0..=5 => tx.execute(
                            "INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)",
                            (k, "x".repeat(rng.random_range(1..2000))),
                        )?,
                        6..=8 => tx.execute("DELETE FROM kv WHERE k = ?1", [k])?,
                        _ => tx.execute("UPDATE kv SET v = v || 'u' WHERE k % 7 = ?1", [k % 7])?,
                    };
                }
                tx.commit()?;
                let txid: String = c.query_row("PRAGMA strata_committed", [], |r| r.get(0))?;
                let hash = strata_tests::content_hash(&c)?;
                writeln!(out.lock(), "txn {txid} {before} {} {hash}", now_ms())?;
                if rng.random_range(0..4) == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(3));
                }
                if rng.random_range(0..40) == 0 {
                    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
                }
            }
        }
        other => anyhow::bail!("unknown mode {other}"),
    }
    let txid: String = c.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
    writeln!(out.lock(), "done {txid}")?;
    Ok(())
}

trait FromEntropyCompat {
    fn from_entropy_compat() -> Self;
}
impl FromEntropyCompat for rand::rngs::StdRng {
    fn from_entropy_compat() -> Self {
        rand::rngs::StdRng::seed_from_u64(rand::random())
    }
}
