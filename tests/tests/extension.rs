//! The loadable extension in real programs: the machine's `sqlite3` CLI and
//! Debian's `python3` (whose `sqlite3` module can load extensions), plus a
//! plain `sqlite3` reading the same local database while a writer has it open
//! (the `-shm` is SQLite's own shared memory), and a read replica in the
//! CLI that follows a writer on another node.

use anyhow::{Context, Result, ensure};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use strata_tests::{Backend, extension_path, integrity, restore};
use strata_vfs::engine::Target;

const PYTHON: &str = "/usr/bin/python3";

fn ext_stem() -> Result<String> {
    let p = extension_path()?;
    Ok(p.with_extension("").display().to_string())
}

/// `sqlite3` with the extension loaded, then the URI opened (the CLI opens a
/// filename argument before running `-cmd`, so the URI goes through `.open`);
/// the SQL arrives on stdin, as a user would type it.
fn sqlite3_ext(b: &Backend, uri: &str, sql: &str) -> Result<std::process::Output> {
    let mut child = b
        .command(std::path::Path::new("sqlite3"))
        .env_remove("STRATA_BUCKET")
        .arg("-bail")
        .arg("-cmd")
        .arg(format!(".load {}", ext_stem()?))
        .arg("-cmd")
        .arg(format!(".open {uri}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run sqlite3 (install it: apt-get install sqlite3)")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(sql.as_bytes())?;
    Ok(child.wait_with_output()?)
}

fn count_in_bucket(b: &Backend, dir: &std::path::Path, db: &str, table: &str) -> Result<i64> {
    let out = dir.join(format!("check-{db}"));
    let _ = std::fs::remove_file(&out);
    restore(&b.store()?, "acme", db, Target::Latest, &out)?;
    ensure!(integrity(&out)? == "ok");
    let c = rusqlite::Connection::open(&out)?;
    Ok(c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
}

#[test]
fn sqlite3_cli_writes_through_the_extension() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("cli.db");
        let uri = format!("file:{}?vfs=strata&{}", local.display(), b.params("acme"));
        let sql = "PRAGMA journal_mode=wal; CREATE TABLE t(x); \
                   WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500) INSERT INTO t SELECT i FROM n; \
                   INSERT INTO t VALUES (501); PRAGMA strata_flush;";
        let out = sqlite3_ext(&b, &uri, sql)?;
        ensure!(
            out.status.success(),
            "[{}] sqlite3 failed: {}",
            b.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            stdout.lines().next() == Some("wal"),
            "journal mode: {stdout}"
        );
        ensure!(
            count_in_bucket(&b, dir.path(), "cli.db", "t")? == 501,
            "[{}] rows missing in the bucket",
            b.name()
        );

        // A missing bucket parameter is a clear error, not a crash.
        let bad = format!(
            "file:{}?vfs=strata&tenant=acme",
            dir.path().join("x.db").display()
        );
        let out = sqlite3_ext(&Backend::local()?, &bad, "CREATE TABLE t(x);")?;
        // The CLI reports the failed `.open` (and carries on in memory).
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            err.contains("no bucket") && err.contains("STRATA_BUCKET"),
            "unclear error: {err}"
        );
    }
    Ok(())
}

/// Python writes; a plain sqlite3 (no extension) reads the same file while
/// the writer is open; a second process with the extension may read but not write.
#[test]
fn python_writer_with_concurrent_readers() -> Result<()> {
    need_python()?;
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("py.db");
    let uri = format!("file:{}?vfs=strata&{}", local.display(), b.params("acme"));
    let script = format!(
        r#"
import sqlite3, sys
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension({ext:?})
c = sqlite3.connect({uri:?}, uri=True, isolation_level=None)
assert c.execute("pragma journal_mode=wal").fetchone()[0] == "wal"
c.execute("create table t(x)")
for i in range(200):
    c.execute("insert into t values (?)", (i,))
print("written", flush=True)
sys.stdin.readline()
print(c.execute("pragma strata_flush").fetchone()[0], flush=True)
"#,
        ext = extension_path()?.display().to_string(),
        uri = uri
    );
    let mut py = Command::new(PYTHON)
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(py.stdout.take().context("stdout")?).lines();
    ensure!(
        lines.next().transpose()?.as_deref() == Some("written"),
        "python writer failed"
    );

    // Plain SQLite, no extension, reads the live database through the WAL.
    let out = Command::new("sqlite3")
        .arg(&local)
        .arg("SELECT count(*) FROM t;")
        .output()?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == "200",
        "plain reader: {:?}",
        out
    );

    // A second process with the extension: reads work, writes are refused.
    let second = |sql: &str| sqlite3_ext(&b, &uri, sql);
    let out = second("SELECT count(*) FROM t;")?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == "200",
        "second reader: {:?}",
        out
    );
    let out = second("INSERT INTO t VALUES (-1);")?;
    ensure!(
        !out.status.success(),
        "a second writer process was allowed to write"
    );
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("another process"),
        "unclear error: {:?}",
        out
    );

    py.stdin.take().context("stdin")?.write_all(b"go\n")?;
    let flushed = lines.next().transpose()?.context("flush")?;
    ensure!(py.wait()?.success());
    ensure!(flushed.parse::<u64>()? >= 201, "flushed txid {flushed}");
    ensure!(count_in_bucket(&b, dir.path(), "py.db", "t")? == 200);
    Ok(())
}

/// Sync durability through the extension, from Python threads: every
/// `INSERT` that returns is already in the bucket (the replicated watermark
/// has reached it), and concurrent writers share uploads. This exercises the
/// WAL hook the extension installs through SQLite's API table.
/// The tests that run Python fail loudly without it.
fn need_python() -> Result<()> {
    ensure!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} missing: apt-get install python3"
    );
    Ok(())
}

/// The start of a Python script on the extension: loads it, defines
/// `conn()` (a connection to `uri` any thread may use, with a busy timeout
/// of `timeout_s`), and opens `c` in WAL mode.
fn python_prelude(uri: &str, timeout_s: u32) -> Result<String> {
    Ok(format!(
        r#"
import sqlite3, threading, time
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension({ext:?})
def conn():
    return sqlite3.connect({uri:?}, uri=True, isolation_level=None, timeout={timeout_s}, check_same_thread=False)
c = conn()
assert c.execute("pragma journal_mode=wal").fetchone()[0] == "wal"
"#,
        ext = extension_path()?.display().to_string(),
    ))
}

/// Python threads contend for the write lock through the loadable
/// extension: the waiter is woken by the release (the VFS's `xSleep` is
/// strata's in this registration path too), and both rows are there.
#[test]
fn python_writers_hand_the_write_lock_over() -> Result<()> {
    need_python()?;
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let uri = format!(
        "file:{}?vfs=strata&{}",
        dir.path().join("busy.db").display(),
        b.params("acme")
    );
    let script = python_prelude(&uri, 60)?
        + r#"
c.execute("create table t(x)")
holder = conn()
holder.execute("begin immediate")
holder.execute("insert into t values (1)")
waiter = threading.Thread(target=lambda: conn().execute("insert into t values (2)"))
waiter.start()
time.sleep(0.4)  # deep in SQLite's busy schedule (sleeps of 50 and 100 ms)
assert waiter.is_alive(), "the waiter wrote while the lock was held"
holder.execute("commit")
waiter.join()
assert c.execute("select count(*) from t").fetchone()[0] == 2
print(c.execute("pragma strata_write_lock_handoffs").fetchone()[0])
"#;
    let out = Command::new(PYTHON).arg("-c").arg(&script).output()?;
    ensure!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let handoffs: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    ensure!(
        handoffs >= 1,
        "the waiter slept out SQLite's busy sleep instead of being woken by the release"
    );
    Ok(())
}

#[test]
fn python_sync_mode_commits_are_in_the_bucket_when_they_return() -> Result<()> {
    need_python()?;
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("sync.db");
        let uri = format!(
            "file:{}?vfs=strata&durability=sync&{}",
            local.display(),
            b.params("acme")
        );
        let script = python_prelude(&uri, 30)?
            + r#"
c.execute("create table t(who, n)")
# One row per transaction from here on: row r is txid base + r.
base = int(c.execute("pragma strata_committed").fetchone()[0])
bad = []
def writer(who):
    w = conn()
    for n in range(25):
        w.execute("insert into t values (?, ?)", (who, n))
        txid = base + int(w.execute("select rowid from t where who = ? and n = ?", (who, n)).fetchone()[0])
        replicated = int(w.execute("pragma strata_replicated").fetchone()[0])
        if replicated < txid:
            bad.append((who, n, txid, replicated))
threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("bad", len(bad), bad[:3])
print("rows", c.execute("select count(*) from t").fetchone()[0])
"#;
        let out = b
            .command(std::path::Path::new(PYTHON))
            .env_remove("STRATA_BUCKET")
            .arg("-c")
            .arg(&script)
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "[{}] python failed: {}",
            b.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            stdout.contains("bad 0 ") && stdout.contains("rows 200"),
            "[{}] sync commits returned before the bucket had them: {stdout}",
            b.name()
        );
        ensure!(count_in_bucket(&b, dir.path(), "sync.db", "t")? == 200);
    }
    Ok(())
}

/// A read replica in the `sqlite3` CLI (issue 15): one CLI session opens the
/// database read-only in a directory that has no copy of it (another
/// node) and reads twice, two seconds apart; between the reads a second
/// CLI process commits a row on the writer's node. The second read sees it.
#[test]
fn sqlite3_cli_follows_a_live_database_from_another_node() -> Result<()> {
    for b in Backend::all()? {
        let name = b.name();
        let (writer, reader) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let w_uri = format!(
            "file:{}?vfs=strata&{}",
            writer.path().join("live.db").display(),
            b.params("acme")
        );
        let r_uri = format!(
            "file:{}?vfs=strata&mode=ro&refresh=100ms&{}",
            reader.path().join("live.db").display(),
            b.params("acme")
        );
        let ok = |out: &std::process::Output, what: &str| -> Result<()> {
            ensure!(
                out.status.success(),
                "[{name}] {what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        let out = sqlite3_ext(
            &b,
            &w_uri,
            "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2); PRAGMA strata_flush;",
        )?;
        ok(&out, "the first writer")?;
        let read = std::thread::scope(|s| -> Result<std::process::Output> {
            let r = s.spawn(|| {
                sqlite3_ext(
                    &b,
                    &r_uri,
                    "SELECT count(*) FROM t;\n.shell sleep 2\nSELECT count(*) FROM t;\nPRAGMA strata_status;\n",
                )
            });
            std::thread::sleep(std::time::Duration::from_millis(500));
            let out = sqlite3_ext(&b, &w_uri, "INSERT INTO t VALUES (3); PRAGMA strata_flush;")?;
            ok(&out, "the second writer")?;
            r.join()
                .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?
        })?;
        ok(&read, "the reader")?;
        let stdout = String::from_utf8_lossy(&read.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        ensure!(
            lines.len() == 3 && lines[..2] == ["2", "3"] && lines[2].contains("replica=yes"),
            "[{name}] the reader printed {stdout:?}"
        );
        ensure!(
            !reader.path().join("live.db").exists(),
            "[{name}] the replica left a local copy"
        );
    }
    Ok(())
}
