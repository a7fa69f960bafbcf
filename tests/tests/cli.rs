//! The `strata` binary as a user runs it: import an existing database, write
//! through `exec`, read history, restore by txid and time, verify; and the
//! exit codes and messages of bad input. Against both backends.

use anyhow::{Context, Result, ensure};
use std::process::{Command, Output};
use strata_tests::{Backend, integrity, workspace_bin};

fn strata(b: &Backend, args: &[&str]) -> Result<Output> {
    let out = b
        .command(&workspace_bin("strata")?)
        .args(args)
        .output()
        .context("run strata")?;
    Ok(out)
}

fn ok(out: Output) -> Result<String> {
    ensure!(
        out.status.success(),
        "strata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn count(path: &std::path::Path) -> Result<i64> {
    let c = rusqlite::Connection::open(path)?;
    Ok(c.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?)
}

#[test]
fn import_exec_history_restore_verify() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("existing.db");
        let out = Command::new("sqlite3")
            .arg(&src)
            .arg(
                "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT); \
                  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000) \
                  INSERT INTO items(name) SELECT 'item ' || i FROM n;",
            )
            .output()?;
        ensure!(out.status.success(), "sqlite3: {out:?}");
        let url = b.url();
        let s = src.to_str().context("utf-8 path")?;
        ok(strata(&b, &["import", s, &url, "acme/data.db"])?)?;
        // Importing twice is a conflict with a clear message and exit code 5.
        let again = strata(&b, &["import", s, &url, "acme/data.db"])?;
        ensure!(again.status.code() == Some(5), "second import: {again:?}");
        ensure!(String::from_utf8_lossy(&again.stderr).contains("already holds a database"));

        // A node with no local copy writes through the VFS: it restores first.
        let local = dir.path().join("node.db");
        let l = local.to_str().context("utf-8 path")?;
        ok(strata(
            &b,
            &[
                "exec",
                &url,
                "acme/data.db",
                "--local",
                l,
                "INSERT INTO items(name) VALUES ('new')",
            ],
        )?)?;
        let rows = ok(strata(
            &b,
            &[
                "exec",
                &url,
                "acme/data.db",
                "--local",
                l,
                "SELECT count(*) FROM items; SELECT name FROM items WHERE id = 1001",
            ],
        )?)?;
        // A second node warms up: `hydrate` leaves a complete local copy
        // (plain SQLite, no strata, reads all of it).
        let warm = dir.path().join("warm.db");
        let w = warm.to_str().context("utf-8 path")?;
        let said = ok(strata(
            &b,
            &["hydrate", &url, "acme/data.db", "--local", w],
        )?)?;
        ensure!(said.contains("complete"), "hydrate said: {said}");
        ensure!(count(&warm)? == 1001 && integrity(&warm)? == "ok");
        ensure!(
            rows.lines().collect::<Vec<_>>() == ["1001", "new"],
            "exec printed {rows:?}"
        );

        let h: serde_json::Value = serde_json::from_str(&ok(strata(
            &b,
            &["history", &url, "acme/data.db", "--json"],
        )?)?)?;
        let head = h["head"].as_u64().context("head")?;
        ensure!(head >= 2 && h["oldest"].as_u64() == Some(1), "history: {h}");
        ensure!(
            h["snapshots"].as_array().is_some_and(|s| s.len() == 1),
            "the import is the first snapshot: {h}"
        );
        let human = ok(strata(&b, &["history", &url, "acme/data.db"])?)?;
        ensure!(
            human.contains(&format!("restorable: any txid from 1 to {head}")),
            "{human}"
        );

        let at1 = dir.path().join("at1.db");
        ok(strata(
            &b,
            &[
                "restore",
                &url,
                "acme/data.db",
                "-o",
                at1.to_str().context("path")?,
                "--txid",
                "1",
            ],
        )?)?;
        ensure!(count(&at1)? == 1000 && integrity(&at1)? == "ok");
        // Refuses to overwrite without --force.
        let again = strata(
            &b,
            &[
                "restore",
                &url,
                "acme/data.db",
                "-o",
                at1.to_str().context("path")?,
            ],
        )?;
        ensure!(
            !again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force")
        );
        let now = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + std::time::Duration::from_secs(1),
        )
        .to_string();
        let latest = dir.path().join("latest.db");
        ok(strata(
            &b,
            &[
                "restore",
                &url,
                "acme/data.db",
                "-o",
                latest.to_str().context("path")?,
                "--time",
                &now,
            ],
        )?)?;
        ensure!(count(&latest)? == 1001);
        let v = ok(strata(&b, &["verify", &url, "acme/data.db"])?)?;
        ensure!(v.starts_with("ok:"), "verify: {v}");

        // Bad input: clear messages, distinct exit codes, never a panic.
        let missing = strata(&b, &["history", &url, "nobody/data.db"])?;
        ensure!(missing.status.code() == Some(3), "missing db: {missing:?}");
        let bad = strata(&b, &["history", &url, "../etc/data.db"])?;
        ensure!(bad.status.code() == Some(2), "bad tenant: {bad:?}");
        let never = dir.path().join("never.db");
        let before = strata(
            &b,
            &[
                "restore",
                &url,
                "acme/data.db",
                "-o",
                never.to_str().context("path")?,
                "--time",
                "2001-01-01T00:00:00Z",
            ],
        )?;
        ensure!(
            before.status.code() == Some(3),
            "time before history: {before:?}"
        );
        ensure!(
            String::from_utf8_lossy(&before.stderr).contains("before the oldest restore point")
        );
        ensure!(!never.exists(), "a failed restore left a file");
        for out in [missing, bad, before] {
            ensure!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        }
    }
    Ok(())
}
