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

#[test]
fn pages_read_in_place_equal_a_restore() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("data.db");
        let mut cmd = b.command(std::path::Path::new(env!(
            "CARGO_BIN_EXE_strata-test-writer"
        )));
        cmd.arg("pitr").arg(&local).arg(format!(
            "{}&sync_interval=50ms&snapshot_interval=200ms",
            b.params("acme")
        ));
        let out = cmd.args(["5", "150"]).output()?;
        ensure!(
            out.status.success(),
            "writer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
