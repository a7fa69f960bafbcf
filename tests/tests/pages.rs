//! Single pages of any restore point, read with ranged GETs and no restore,
//! equal the pages of a full restore of the same point — with snapshots,
//! deltas and both backends — and cost one request each.

use anyhow::{Context, Result, ensure};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use strata_tests::{Backend, restore};
use strata_vfs::bucket::metered::MeteredStore;
use strata_vfs::engine::Target;
use strata_vfs::engine::pages::PageMap;
use strata_vfs::format::keys::DbKeys;
use strata_vfs::{PageNo, TxId};

/// The test writer in `pitr` mode (`seed`, `txns`), snapshotting often,
/// run to completion.
fn pitr_writer(
    b: &Backend,
    local: &std::path::Path,
    seed: &str,
    txns: &str,
) -> Result<std::process::Output> {
    let mut cmd = b.command(std::path::Path::new(env!(
        "CARGO_BIN_EXE_strata-test-writer"
    )));
    cmd.arg("pitr").arg(local).arg(format!(
        "{}&sync_interval=50ms&snapshot_interval=200ms",
        b.params("acme")
    ));
    let out = cmd.args([seed, txns]).output()?;
    ensure!(
        out.status.success(),
        "writer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

#[test]
fn pages_read_in_place_equal_a_restore() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("data.db");
        pitr_writer(&b, &local, "5", "150")?;
        let store = Arc::new(MeteredStore::new(b.store()?));
        let keys = DbKeys::new("acme", "data.db")?;
        let h = strata_vfs::engine::history::load(store.as_ref(), &keys, None)?;
        let oldest = h.oldest().context("no history")?;
        let head = h.manifest.head;
        for t in [oldest, TxId((oldest.0 + head.0) / 2), head] {
            let before = store.snapshot();
            let map = PageMap::build(store.as_ref(), &keys, Target::TxId(t))?;
            let built = store.snapshot().sub(&before);
            ensure!(
                built.list <= 2,
                "building the map listed {} times",
                built.list
            );
            ensure!(
                built.get + built.get_range <= 1 + 2 * map.objects() as u64,
                "map of {} objects took {:?}",
                map.objects(),
                built
            );
            let restored = dir.path().join(format!("r{t}.db"));
            let r = restore(&b.store()?, "acme", "data.db", Target::TxId(t), &restored)?;
            ensure!(map.db_pages == r.db_pages && map.page_size == r.page_size);
            let file = std::fs::File::open(&restored)?;
            let mut want = vec![0u8; r.page_size as usize];
            for p in 1..=map.db_pages {
                let before = store.snapshot();
                let got = map.read_page(store.as_ref(), PageNo(p))?;
                ensure!(
                    store.snapshot().sub(&before).get_range == 1,
                    "page {p} took more than one request"
                );
                file.read_exact_at(&mut want, PageNo(p).offset(r.page_size))?;
                ensure!(
                    got == want,
                    "[{}] page {p} at txid {t} differs from the restore",
                    b.name()
                );
            }
            ensure!(
                map.read_page(store.as_ref(), PageNo(map.db_pages + 1))
                    .is_err()
            );
        }
        eprintln!("[{}] pages ok at txids {oldest}..={head}", b.name());
    }
    Ok(())
}

/// `txid=` / `time=` open a read-only connection on a past state, served
/// from the bucket page by page, without restoring anything.
#[test]
fn point_in_time_connections_read_the_past_in_place() -> Result<()> {
    strata_vfs::sqlite::register_static()?;
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("data.db");
        let out = pitr_writer(&b, &local, "9", "120")?;
        let mut states = std::collections::BTreeMap::new();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f[0] == "txn" {
                states
                    .entry(f[1].parse::<u64>()?)
                    .or_insert((f[3].parse::<u64>()?, f[4].parse::<u32>()?));
            }
        }
        // In-process (S3 needs its credentials in this process: local only).
        if let Backend::Local(_) = b {
            for (&t, &(_, hash)) in states.iter().step_by(7) {
                let uri = format!(
                    "file:{}?vfs=strata&{}&db=data.db&txid={t}",
                    dir.path().join("view.db").display(),
                    b.params("acme")
                );
                let c = rusqlite::Connection::open_with_flags(
                    &uri,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_URI,
                )?;
                ensure!(
                    strata_tests::content_hash(&c)? == hash,
                    "state at txid {t} differs"
                );
                let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
                ensure!(ok == "ok");
                ensure!(
                    c.execute("DELETE FROM kv", []).is_err(),
                    "a past state accepted a write"
                );
            }
            ensure!(
                !dir.path().join("view.db").exists(),
                "a point-in-time open created a local file"
            );
        }
        // The sqlite3 CLI with the extension, by txid and by time.
        let ext = strata_tests::extension_path()?.with_extension("");
        let (&t, &(after, _)) = states.iter().nth(states.len() / 2).context("states")?;
        let when = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(after),
        );
        for point in [format!("txid={t}"), format!("time={when}")] {
            let uri = format!(
                "file:{}?vfs=strata&{}&db=data.db&{point}",
                dir.path().join("cli.db").display(),
                b.params("acme")
            );
            let out = b
                .command(std::path::Path::new("sqlite3"))
                .arg("-bail")
                .arg("-cmd")
                .arg(format!(".load {}", ext.display()))
                .arg("-cmd")
                .arg(format!(".open {uri}"))
                .arg("-cmd")
                .arg("SELECT count(*) FROM kv;")
                .arg("-cmd")
                .arg("PRAGMA integrity_check;")
                .stdin(std::process::Stdio::null())
                .output()?;
            let so = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success() && so.lines().nth(1) == Some("ok"),
                "[{}] sqlite3 at {point}: {so} {}",
                b.name(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!("[{}] point-in-time connections ok", b.name());
    }
    Ok(())
}
