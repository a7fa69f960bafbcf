//! `strata mount`, for real: the `strata` binary mounts a bucket (a local
//! directory and a moto S3 server), the real `sqlite3` CLI reads the live
//! and past database files, and the answers are compared with restores of
//! the same points. Also: errno for bad paths and writes, hooks/storage
//! written back to the bucket, a live file following new commits (cached by
//! the kernel, one consistent state per read transaction), a bucket
//! that goes down, clean and unclean unmounts, and what a point query on a
//! 256 MiB tenant costs.
//!
//! FUSE must work here (`/dev/fuse` and `fusermount3`, from Debian's
//! `fuse3`, which scripts/test installs); each test fails if it does not.

use anyhow::{Context, Result, bail, ensure};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_tests::{Backend, restore, workspace_bin};
use strata_vfs::engine::Target;
use strata_vfs::{Millis, TxId};

/// A running `strata mount` child process and its mount point.
struct Mount {
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

fn fuse_available() -> Result<()> {
    ensure!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: these tests need FUSE (modprobe fuse; in a container --device /dev/fuse --cap-add SYS_ADMIN)"
    );
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()));
    ensure!(
        found,
        "fusermount3 is not installed: apt-get install fuse3 (scripts/test does)"
    );
    Ok(())
}

impl Mount {
    fn start(b: &Backend, extra: &[&str]) -> Result<Mount> {
        let dir = tempfile::tempdir()?;
        Self::start_at(b, dir, extra)
    }

    fn start_at(b: &Backend, dir: tempfile::TempDir, extra: &[&str]) -> Result<Mount> {
        let mp = dir.path().join("mnt");
        Self::spawn(b, dir, extra).inspect_err(|_| {
            // Never leave a mount behind a failed start (e.g. a stale one).
            let _ = Command::new("umount").arg("-l").arg(&mp).status();
        })
    }

    fn spawn(b: &Backend, dir: tempfile::TempDir, extra: &[&str]) -> Result<Mount> {
        fuse_available()?;
        let mp = dir.path().join("mnt");
        // It may exist as a stale mount, where mkdir says EEXIST.
        if let Err(e) = std::fs::create_dir(&mp)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(e.into());
        }
        let log = dir.path().join("mount.log");
        let mut child = b
            .command(&workspace_bin("strata")?)
            .args(["mount", &b.url()])
            .arg(&mp)
            .args(["--refresh", "200ms", "--timeout", "3s"])
            .args(extra)
            .env("STRATA_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        // Ready when it says so (it prints after the kernel accepted the mount).
        let out = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let m = Mount {
            child: Some(child),
            dir,
            log,
        };
        if !line.starts_with("mounted") {
            bail!("strata mount did not come up: {line:?}\n{}", m.log_text());
        }
        Ok(m)
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// `.strata-stats` as numbers.
    fn stats(&self) -> Result<HashMap<String, u64>> {
        let text = std::fs::read_to_string(self.path().join(".strata-stats"))?;
        text.lines()
            .map(|l| {
                let (k, v) = l.split_once('=').context("stats line")?;
                Ok((k.to_owned(), v.parse()?))
            })
            .collect()
    }

    /// SIGTERM, as Ctrl-C would: the process must unmount and exit 0.
    fn stop(mut self) -> Result<()> {
        let mut child = self.child.take().context("already stopped")?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if t.elapsed() > Duration::from_secs(15) {
                bail!(
                    "strata mount did not exit after SIGTERM\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        ensure!(status.success(), "exit {status}\n{}", self.log_text());
        ensure!(!mounted(&self.path())?, "still mounted after SIGTERM");
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn mounted(path: &Path) -> Result<bool> {
    let p = path.to_string_lossy().into_owned();
    Ok(std::fs::read_to_string("/proc/mounts")?
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(p.as_str())))
}

/// The real sqlite3 CLI, plain: `sqlite3 FILE SQL`.
fn sqlite3(db: &Path, sql: &str) -> Result<String> {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .context("run sqlite3 (apt-get install sqlite3)")?;
    ensure!(
        out.status.success(),
        "sqlite3 {} {sql:?}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The whole database as SQL (schema and rows): equal dumps, equal states.
const DUMP: &str = ".dump";

/// `txn <txid> <before_ms> <after_ms> <hash>` lines of the pitr writer.
fn write_history(b: &Backend, dir: &Path, seed: u64, n: u64) -> Result<Vec<(u64, u64)>> {
    let out = b
        .command(Path::new(env!("CARGO_BIN_EXE_strata-test-writer")))
        .arg("pitr")
        .arg(dir.join("node.db"))
        .arg(format!(
            "{}&db=data.db&sync_interval=50ms&snapshot_interval=300ms",
            b.params("acme")
        ))
        .args([seed.to_string(), n.to_string()])
        .output()?;
    ensure!(
        out.status.success(),
        "writer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut txns = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first() == Some(&"txn") {
            txns.push((f[1].parse()?, f[3].parse()?));
        }
    }
    Ok(txns)
}

/// `strata import SRC BUCKET DB`.
fn import(b: &Backend, src: &Path, db: &str) -> Result<()> {
    let out = b
        .command(&workspace_bin("strata")?)
        .arg("import")
        .arg(src)
        .args([&b.url(), db])
        .output()?;
    ensure!(out.status.success(), "import {db}: {out:?}");
    Ok(())
}

/// The dump of a restore of `target`, through sqlite3 as well.
fn restored_dump(b: &Backend, dir: &Path, target: Target) -> Result<String> {
    let out = dir.join(format!("restore-{}.db", rand::random::<u32>()));
    restore(&b.store()?, "acme", "data.db", target, &out)?;
    sqlite3(&out, DUMP)
}

fn names(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("ls {}", dir.display()))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    v.sort();
    Ok(v)
}

#[test]
fn sqlite3_on_live_and_past_files_matches_restores() -> Result<()> {
    for b in Backend::all()? {
        let work = tempfile::tempdir()?;
        let txns = write_history(&b, work.path(), 11, 150)?;
        let m = Mount::start(&b, &[])?;
        let root = m.path();
        ensure!(
            names(&root)?.contains(&"acme".to_string()),
            "{:?}",
            names(&root)?
        );
        let acme = root.join("acme");
        let entries = names(&acme)?;
        for want in ["@history", "@txid", "data.db", "hooks", "storage"] {
            ensure!(
                entries.iter().any(|e| e == want),
                "no {want} in {entries:?}"
            );
        }

        // The live file: plain sqlite3, no flags.
        let live = acme.join("data.db");
        ensure!(sqlite3(&live, "PRAGMA integrity_check")?.trim() == "ok");
        let want = restored_dump(&b, work.path(), Target::Latest)?;
        ensure!(
            sqlite3(&live, DUMP)? == want,
            "[{}] live file differs from the latest restore",
            b.name()
        );

        // Every listed txid, and a few unlisted ones.
        let listed: Vec<u64> = names(&acme.join("@txid"))?
            .iter()
            .map(|n| n.parse())
            .collect::<Result<_, _>>()?;
        ensure!(listed.len() >= 2, "[{}] @txid lists {listed:?}", b.name());
        let head = *listed.iter().max().context("no txids")?;
        let oldest = strata_tests::assert_one_history(&b.store()?, "acme", "data.db")?
            .oldest()
            .context("no history")?
            .0;
        let mut txids = listed.clone();
        txids.extend([oldest, (oldest + head) / 2, head - 1]);
        for t in txids {
            let f = acme.join(format!("@txid/{t}/data.db"));
            ensure!(
                sqlite3(&f, "PRAGMA integrity_check")?.trim() == "ok",
                "[{}] integrity of {}",
                b.name(),
                f.display()
            );
            ensure!(
                sqlite3(&f, DUMP)? == restored_dump(&b, work.path(), Target::TxId(TxId(t)))?,
                "[{}] {} differs from a restore of txid {t}",
                b.name(),
                f.display()
            );
        }

        // Times: each listed one, and the end of a few transactions.
        let mut times: Vec<Millis> = names(&acme.join("@history"))?
            .iter()
            .map(|n| Ok(Millis::from_system_time(humantime::parse_rfc3339(n)?)))
            .collect::<Result<_>>()?;
        ensure!(!times.is_empty(), "[{}] @history is empty", b.name());
        times.extend(
            txns.iter()
                .filter(|(t, _)| *t > oldest)
                .step_by(37)
                .map(|&(_, after)| Millis(after)),
        );
        for t in times {
            let f = acme.join("@history").join(t.rfc3339()).join("data.db");
            ensure!(
                sqlite3(&f, DUMP)? == restored_dump(&b, work.path(), Target::Time(t))?,
                "[{}] {} differs from a restore at that time",
                b.name(),
                f.display()
            );
        }
        let stats = m.stats()?;
        ensure!(
            stats["requests"] > 0 && stats["bytes_read"] > 0,
            "{stats:?}"
        );
        m.stop()?;
        eprintln!("[{}] live and past files match restores", b.name());
    }
    Ok(())
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn enoent_erofs_and_write_through_of_ordinary_files() -> Result<()> {
    for b in Backend::all()? {
        let work = tempfile::tempdir()?;
        write_history(&b, work.path(), 3, 10)?;
        let store = b.store()?;
        store.put("tenants/acme/hooks/main.pb.js", "routerAdd()".into())?;
        store.put("tenants/acme/metadata.json", "{\"plan\":\"free\"}".into())?;
        // A second database of the tenant, brought in with `strata import`.
        let aux = work.path().join("aux.db");
        sqlite3(&aux, "CREATE TABLE t(x); INSERT INTO t VALUES ('aux')")?;
        import(&b, &aux, "acme/auxiliary.db")?;
        let m = Mount::start(&b, &[])?;
        let acme = m.path().join("acme");
        ensure!(names(&acme)?.contains(&"auxiliary.db".to_string()));
        for f in ["auxiliary.db", "@txid/1/auxiliary.db"] {
            ensure!(
                sqlite3(&acme.join(f), "SELECT x FROM t")?.trim() == "aux",
                "{f}"
            );
        }

        // Paths that do not exist.
        for p in [
            "nope",
            "acme/nope.db",
            "acme/data.db-wal",
            "acme/@txid/999999/data.db",
            "acme/@txid/0",
            "acme/@txid/x",
            "acme/@history/not-a-time",
            "acme/@history/1999-01-01T00:00:00Z/data.db",
            "acme/hooks/missing.js",
        ] {
            let r = std::fs::metadata(m.path().join(p));
            ensure!(
                errno_of(r) == Some(libc::ENOENT),
                "[{}] {p}: want ENOENT",
                b.name()
            );
        }

        // Database files and time travel are read-only.
        let db = acme.join("data.db");
        let rw = std::fs::OpenOptions::new().write(true).open(&db);
        ensure!(
            errno_of(rw) == Some(libc::EROFS),
            "open data.db for writing"
        );
        for created in ["data.db-journal", "new.db", "@txid/1/x"] {
            let r = std::fs::write(acme.join(created), b"x");
            ensure!(errno_of(r) == Some(libc::EROFS), "create {created}");
        }
        ensure!(errno_of(std::fs::remove_file(&db)) == Some(libc::EROFS));
        ensure!(errno_of(std::fs::rename(&db, acme.join("hooks/x.db"))) == Some(libc::EROFS));
        ensure!(errno_of(std::fs::create_dir(acme.join("sub"))) == Some(libc::EROFS));
        // sqlite3 falls back to read-only on its own and can still read...
        ensure!(
            sqlite3(&db, "SELECT count(*) FROM kv")?
                .trim()
                .parse::<u64>()
                .is_ok()
        );
        // ...but not write.
        let out = Command::new("sqlite3")
            .arg(&db)
            .arg("INSERT INTO kv VALUES (100000, 'x')")
            .output()?;
        ensure!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("readonly"),
            "insert through the mount: {out:?}"
        );

        // Ordinary files read as objects and write back on close.
        ensure!(std::fs::read_to_string(acme.join("hooks/main.pb.js"))? == "routerAdd()");
        ensure!(std::fs::read_to_string(acme.join("metadata.json"))?.contains("free"));
        std::fs::write(acme.join("hooks/main.pb.js"), "routerAdd(2)")?;
        let got = store.get("tenants/acme/hooks/main.pb.js")?.data;
        ensure!(
            &got[..] == b"routerAdd(2)",
            "[{}] hook not written back",
            b.name()
        );
        std::fs::create_dir_all(acme.join("storage/img/2026"))?;
        let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(acme.join("storage/img/2026/a.bin"), &blob)?;
        ensure!(store.get("tenants/acme/storage/img/2026/a.bin")?.data == blob);
        ensure!(std::fs::read(acme.join("storage/img/2026/a.bin"))? == blob);
        ensure!(names(&acme.join("storage/img"))? == ["2026"]);
        std::fs::rename(
            acme.join("storage/img/2026/a.bin"),
            acme.join("storage/b.bin"),
        )?;
        ensure!(store.get("tenants/acme/storage/img/2026/a.bin").is_err());
        ensure!(store.get("tenants/acme/storage/b.bin")?.data == blob);
        std::fs::remove_file(acme.join("storage/b.bin"))?;
        ensure!(store.get("tenants/acme/storage/b.bin").is_err());
        let r = std::fs::remove_dir(acme.join("hooks"));
        ensure!(errno_of(r).is_some(), "hooks/ cannot be removed");
        m.stop()?;
        eprintln!("[{}] ENOENT, EROFS and write-through ok", b.name());
    }
    Ok(())
}

#[test]
fn the_live_file_follows_new_commits() -> Result<()> {
    for b in Backend::all()? {
        let work = tempfile::tempdir()?;
        write_history(&b, work.path(), 5, 20)?;
        let m = Mount::start(&b, &[])?;
        let db = m.path().join("acme/data.db");
        // A long-lived reader, as an application would hold one.
        let reader =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let count = |c: &rusqlite::Connection| -> Result<i64> {
            Ok(c.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))?)
        };
        let before = count(&reader)?;
        let past = m.path().join("acme/@txid/20/data.db");
        let past_dump = sqlite3(&past, DUMP)?;
        // More commits through the writer (same node, same database).
        write_history(&b, work.path(), 6, 40)?;
        let keys = strata_vfs::format::keys::DbKeys::new("acme", "data.db")?;
        let head = strata_vfs::engine::restore::read_manifest(b.store()?.as_ref(), &keys)?.head;
        let want = restored_dump(&b, work.path(), Target::Latest)?;
        // Within the refresh interval (200ms), plus slack for a slow machine.
        let t = Instant::now();
        loop {
            if sqlite3(&db, DUMP)? == want {
                break;
            }
            ensure!(
                t.elapsed() < Duration::from_secs(5),
                "[{}] the live file did not reach txid {head}",
                b.name()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let latest = work.path().join("latest.db");
        restore(&b.store()?, "acme", "data.db", Target::Latest, &latest)?;
        let rows: i64 = sqlite3(&latest, "SELECT count(*) FROM kv")?
            .trim()
            .parse()?;
        let c = count(&reader)?;
        ensure!(
            c == rows,
            "[{}] the long-lived reader sees {c} rows, the head has {rows} (it had {before})",
            b.name()
        );
        ensure!(sqlite3(&db, "PRAGMA integrity_check")?.trim() == "ok");
        ensure!(sqlite3(&past, DUMP)? == past_dump, "a past file changed");
        drop(reader);
        m.stop()?;
        eprintln!("[{}] live file follows commits to txid {head}", b.name());
    }
    Ok(())
}

/// Processes whose parent is `pid` (from /proc/*/stat).
fn children_of(pid: i32) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")? {
        let stat = std::fs::read_to_string(e?.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid ...`; comm may hold spaces: split after ')'.
        if let Some((head, rest)) = stat.rsplit_once(") ")
            && rest.split(' ').nth(1) == Some(pid.to_string().as_str())
        {
            out.push(head.split(' ').next().unwrap_or("").parse()?);
        }
    }
    Ok(out)
}

#[test]
fn kill_9_then_mount_again_at_the_same_path() -> Result<()> {
    let b = Backend::local()?;
    let work = tempfile::tempdir()?;
    write_history(&b, work.path(), 9, 10)?;
    let m = Mount::start(&b, &[])?;
    let probe = |m: &Mount| sqlite3(&m.path().join("acme/data.db"), "SELECT count(*) FROM kv");
    let want = probe(&m)?;
    // A crash that leaves the mount behind: the auto-unmount helper dies too.
    for pid in children_of(m.pid())? {
        // SAFETY: signalling a child of our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // SAFETY: our own child.
    unsafe { libc::kill(m.pid(), libc::SIGKILL) };
    let mut m = m;
    if let Some(mut c) = m.child.take() {
        c.wait()?;
    }
    let mp = m.path();
    let t = Instant::now();
    while errno_of(std::fs::metadata(&mp)) != Some(libc::ENOTCONN) {
        ensure!(
            t.elapsed() < Duration::from_secs(5),
            "expected a stale mount (ENOTCONN) at {}",
            mp.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same path again: the stale mount is cleared and a new one serves.
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir()?);
    drop(m);
    let m2 = Mount::start_at(&b, dir, &[])?;
    ensure!(probe(&m2)? == want);
    ensure!(m2.log_text().contains("stale mount"), "{}", m2.log_text());
    // A plain kill -9 (helper alive): the helper unmounts; mounting works too.
    // SAFETY: our own child.
    unsafe { libc::kill(m2.pid(), libc::SIGKILL) };
    let mut m2 = m2;
    if let Some(mut c) = m2.child.take() {
        c.wait()?;
    }
    let dir = std::mem::replace(&mut m2.dir, tempfile::tempdir()?);
    drop(m2);
    let m3 = Mount::start_at(&b, dir, &[])?;
    ensure!(probe(&m3)? == want);
    // A second mount over a live one is refused (it would hide the first).
    let again = b
        .command(&workspace_bin("strata")?)
        .args(["mount", &b.url()])
        .arg(m3.path())
        .output()?;
    ensure!(
        again.status.code() == Some(5)
            && String::from_utf8_lossy(&again.stderr).contains("already a strata mount"),
        "second mount: {again:?}"
    );
    ensure!(probe(&m3)? == want);
    m3.stop()
}

#[test]
fn a_bucket_that_goes_down_gives_eio_within_the_timeout() -> Result<()> {
    let mut b = Backend::s3()?;
    let work = tempfile::tempdir()?;
    write_history(&b, work.path(), 4, 30)?;
    let m = Mount::start(&b, &[])?;
    let acme = m.path().join("acme");
    sqlite3(&acme.join("data.db"), DUMP)?;
    if let Backend::S3(server, _) = &mut b {
        server.stop();
    }
    for p in ["@txid/7/data.db", "@history/2020-01-01T00:00:00Z/data.db"] {
        let t = Instant::now();
        let r = std::fs::read(acme.join(p));
        let took = t.elapsed();
        ensure!(
            errno_of(r) == Some(libc::EIO),
            "{p} with the bucket down: want EIO"
        );
        // --timeout 3s per request; a lookup makes a few in a row.
        ensure!(took < Duration::from_secs(20), "{p} took {took:?}");
    }
    let log = m.log_text();
    ensure!(
        log.contains("EIO, the bucket is unavailable"),
        "no reason logged:\n{log}"
    );
    m.stop()
}

/// 256 MiB in one tenant; a point query through the mount reads a small
/// fraction of it from the bucket (counted by the mount's metered store).
#[test]
fn a_point_query_on_a_256_mib_tenant_fetches_little() -> Result<()> {
    let b = Backend::local()?;
    let work = tempfile::tempdir()?;
    let src = work.path().join("big.db");
    {
        let c = rusqlite::Connection::open(&src)?;
        c.pragma_update(None, "page_size", 4096)?;
        c.pragma_update(None, "synchronous", "off")?;
        c.execute_batch(
            "CREATE TABLE big(id INTEGER PRIMARY KEY, pad BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 65536)
             INSERT INTO big SELECT i, randomblob(4000) FROM n;",
        )?;
    }
    let size = std::fs::metadata(&src)?.len();
    ensure!(size >= 256 << 20, "built only {size} bytes");
    import(&b, &src, "acme/data.db")?;
    let m = Mount::start(&b, &[])?;
    let before = m.stats()?;
    let got = sqlite3(
        &m.path().join("acme/data.db"),
        "SELECT id, length(pad) FROM big WHERE id = 31337",
    )?;
    ensure!(got.trim() == "31337|4000", "{got}");
    let after = m.stats()?;
    let read = after["bytes_read"] - before["bytes_read"];
    let requests = after["requests"] - before["requests"];
    eprintln!(
        "point query on {} MiB: {read} bytes in {requests} requests ({:.2}% of the database)",
        size >> 20,
        read as f64 * 100.0 / size as f64
    );
    ensure!(
        read * 50 < size,
        "read {read} bytes of {size}: more than 2%"
    );
    m.stop()
}

/// A connection that writes `acme/data.db` through the strata VFS, in this
/// process (uploads every 50ms).
fn vfs_writer(b: &Backend, dir: &Path) -> Result<rusqlite::Connection> {
    strata_vfs::sqlite::register_static()?;
    let uri = format!(
        "file:{}?vfs=strata&{}&db=data.db&sync_interval=50ms",
        dir.join("node.db").display(),
        b.params("acme")
    );
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let c = rusqlite::Connection::open_with_flags(&uri, flags)?;
    c.pragma_update(None, "journal_mode", "wal")?;
    Ok(c)
}

fn flush(c: &rusqlite::Connection) -> Result<u64> {
    let t: String = c.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
    Ok(t.parse()?)
}

/// Accounts whose balances always sum to `ACCOUNTS * 1000`, a log that
/// gains one row per transaction, and the transaction count `gen.n`: a
/// state mixing pages of two commits breaks one of the three.
const ACCOUNTS: i64 = 300;
const CHECK: &str = "SELECT (SELECT sum(bal) FROM acct), (SELECT count(*) FROM log), \
                     (SELECT coalesce(max(n), 0) FROM log), (SELECT n FROM gen);";

/// `CHECK`'s answer: the transaction count, if the state is consistent.
fn consistent(line: &str) -> Result<i64> {
    let f: Vec<i64> = line
        .trim()
        .split('|')
        .map(|x| x.parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("parse {line:?}"))?;
    ensure!(
        f.len() == 4 && f[0] == ACCOUNTS * 1000 && f[1] == f[3] && f[2] == f[3],
        "an inconsistent state: sum|count|max|gen = {line:?}"
    );
    Ok(f[3])
}

fn create_accounts(c: &rusqlite::Connection) -> Result<()> {
    c.execute_batch(&format!(
        "CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER, pad TEXT);
         CREATE TABLE log(n INTEGER PRIMARY KEY, pad TEXT);
         CREATE TABLE gen(n INTEGER);
         INSERT INTO gen VALUES (0);
         WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < {ACCOUNTS})
         INSERT INTO acct SELECT x, 1000, printf('%01000d', x) FROM i;"
    ))?;
    Ok(())
}

/// Transaction `g`: money moves between two accounts (whose pages are far
/// apart), the log grows, the count goes up.
fn transfer(c: &mut rusqlite::Connection, g: i64) -> Result<()> {
    let (a, b) = (g * 37 % ACCOUNTS + 1, g * 101 % ACCOUNTS + 1);
    let tx = c.transaction()?;
    tx.execute(
        "UPDATE acct SET bal = bal - 7, pad = printf('%01000d', ?2) WHERE id = ?1",
        (a, g),
    )?;
    tx.execute("UPDATE acct SET bal = bal + 7 WHERE id = ?1", [b])?;
    tx.execute("INSERT INTO log VALUES (?1, printf('%0300d', ?1))", [g])?;
    tx.execute("UPDATE gen SET n = ?1", [g])?;
    tx.commit()?;
    Ok(())
}

/// The live file, cached by the kernel, under sqlite3 readers in a loop
/// (two at once) and one long read transaction, while commits arrive:
/// every read transaction sees one committed state, the long one keeps its
/// state across a refresh interval, and the file follows the commits.
#[test]
fn readers_of_the_live_file_see_one_state_while_commits_arrive() -> Result<()> {
    let b = Backend::local()?;
    let work = tempfile::tempdir()?;
    let mut w = vfs_writer(&b, work.path())?;
    create_accounts(&w)?;
    flush(&w)?;
    let m = Mount::start(&b, &[])?;
    let db = m.path().join("acme/data.db");
    ensure!(consistent(&sqlite3(&db, CHECK)?)? == 0);
    const N: i64 = 150;
    let (seen, long) = std::thread::scope(|s| -> Result<_> {
        let writer = s.spawn(|| -> Result<()> {
            for g in 1..=N {
                transfer(&mut w, g)?;
                std::thread::sleep(Duration::from_millis(15));
            }
            flush(&w)?;
            Ok(())
        });
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> Result<Vec<i64>> {
                    let mut seen = Vec::new();
                    let sql = format!("{CHECK} PRAGMA integrity_check;");
                    let t = Instant::now();
                    loop {
                        let out = sqlite3(&db, &sql)?;
                        let mut lines = out.lines();
                        let g = consistent(lines.next().unwrap_or(""))?;
                        ensure!(lines.next() == Some("ok"), "integrity: {out}");
                        seen.push(g);
                        if g == N {
                            return Ok(seen);
                        }
                        if t.elapsed() > Duration::from_secs(60) {
                            seen.dedup();
                            bail!("the live file never reached transaction {N}: saw {seen:?}");
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        // One long read transaction across several refresh intervals: its
        // state must not move, whatever the others see meanwhile.
        let long = s.spawn(|| -> Result<(i64, i64)> {
            std::thread::sleep(Duration::from_millis(300));
            let c = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            let check = |c: &rusqlite::Connection| -> Result<i64> {
                let line: String = c.query_row(CHECK, [], |r| {
                    Ok(format!(
                        "{}|{}|{}|{}",
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?
                    ))
                })?;
                consistent(&line)
            };
            // First only gen's page, so that the rest is read (from the
            // kernel's cache or the mount) after the others moved on.
            c.execute_batch("BEGIN")?;
            let first: i64 = c.query_row("SELECT n FROM gen", [], |r| r.get(0))?;
            std::thread::sleep(Duration::from_millis(700));
            let again = check(&c)?;
            c.execute_batch("COMMIT")?;
            ensure!(
                first == again,
                "one read transaction saw transaction {first}, then {again}"
            );
            Ok((first, check(&c)?))
        });
        writer.join().expect("writer")?;
        let after_flush = Instant::now();
        let mut seen = Vec::new();
        for h in readers {
            seen.push(h.join().expect("reader")?);
        }
        let took = after_flush.elapsed();
        // --refresh 200ms: the last commit shows within a few intervals.
        ensure!(
            took < Duration::from_secs(3),
            "the last commit took {took:?} to show"
        );
        Ok((seen, long.join().expect("long reader")?))
    })?;
    for s in &seen {
        ensure!(s.windows(2).all(|w| w[0] <= w[1]), "went back: {s:?}");
        let mut d = s.clone();
        d.dedup();
        ensure!(
            d.len() >= 4,
            "a reader saw only the states {d:?} while {N} commits arrived"
        );
    }
    let (held, after) = long;
    ensure!(
        after >= held,
        "after its transaction the long reader saw {after} < {held}"
    );
    let stats = m.stats()?;
    ensure!(stats["live_moves"] >= 3, "{stats:?}");
    eprintln!(
        "readers saw {} and {} states; the long transaction held {held}; {stats:?}",
        seen[0].len(),
        seen[1].len()
    );
    m.stop()
}

/// The kernel keeps the live file's pages: a second pass of the same scan
/// (another sqlite3 process, so SQLite's own cache is cold) barely reaches
/// the mount, and after a small commit only the changed pages do.
#[test]
fn the_kernel_caches_the_live_file_and_a_commit_drops_only_what_changed() -> Result<()> {
    let b = Backend::local()?;
    let work = tempfile::tempdir()?;
    let mut w = vfs_writer(&b, work.path())?;
    w.execute_batch(&format!(
        "CREATE TABLE log(n INTEGER PRIMARY KEY, pad TEXT);
         CREATE TABLE gen(n INTEGER);
         INSERT INTO gen VALUES (0);
         CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER, pad TEXT);
         WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < {ACCOUNTS} * 8)
         INSERT INTO acct SELECT x, 1000, printf('%01000d', x) FROM i;
         DELETE FROM acct WHERE id > {ACCOUNTS};"
    ))?;
    // The deleted rows' pages are free pages: the scan reads acct's.
    w.execute_batch(&format!(
        "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < {})
         INSERT INTO acct SELECT {ACCOUNTS} + x, 0, printf('%01000d', x) FROM i;",
        ACCOUNTS * 7
    ))?;
    flush(&w)?;
    let m = Mount::start(&b, &[])?;
    let db = m.path().join("acme/data.db");
    let size = std::fs::metadata(&db)?.len();
    let scan = "SELECT sum(length(pad)), sum(bal) FROM acct;";
    let reads = |f: &mut dyn FnMut() -> Result<String>| -> Result<(String, u64, u64)> {
        let before = m.stats()?;
        let out = f()?;
        let after = m.stats()?;
        Ok((
            out,
            after["db_read_bytes"] - before["db_read_bytes"],
            after["lock_requests"] - before["lock_requests"],
        ))
    };
    let (first, r1, l1) = reads(&mut || sqlite3(&db, scan))?;
    let (second, r2, l2) = reads(&mut || sqlite3(&db, scan))?;
    ensure!(first == second);
    eprintln!("{size} bytes; first scan read {r1} bytes from the mount, the second {r2}");
    ensure!(
        r1 * 2 > size,
        "the first scan read only {r1} of {size} bytes"
    );
    ensure!(
        r2 * 20 < r1,
        "the second scan read {r2} bytes from the mount (the first {r1}): the kernel cache is not used"
    );
    // The mount saw both transactions' locks: they decide when it moves.
    ensure!(l1 >= 2 && l2 >= 2, "lock requests {l1}, {l2}");

    // One small commit: the next scan reads the changed pages (and page 1).
    let moves = m.stats()?["live_moves"];
    let (_, r3, _) = reads(&mut || {
        transfer(&mut w, 1)?;
        flush(&w)?;
        let t = Instant::now();
        loop {
            if consistent(&sqlite3(&db, CHECK)?)? == 1 {
                break;
            }
            ensure!(
                t.elapsed() < Duration::from_secs(5),
                "the commit never showed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sqlite3(&db, scan)
    })?;
    let stats = m.stats()?;
    eprintln!("after one commit the scan read {r3} bytes; {stats:?}");
    ensure!(stats["live_moves"] > moves, "{stats:?}");
    ensure!(r3 > 0, "nothing was read again after a commit");
    ensure!(
        r3 * 4 < r1,
        "one commit made the scan read {r3} bytes again (a full scan reads {r1})"
    );
    ensure!(sqlite3(&db, "PRAGMA integrity_check")?.trim() == "ok");
    m.stop()
}
