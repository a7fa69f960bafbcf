//! Point-in-time restore against a model (`proptest`): random transactions
//! (inserts, updates, deletes, several in one), flushes, reopens on another
//! "node" (a new local directory: a lazy open, then a new writer epoch),
//! small segments merged (`merge_segments=2`) and snapshots taken between
//! them; afterwards every txid that was committed restores to exactly the
//! model's state after that transaction, and the latest state passes
//! `integrity_check`. A failing case is shrunk to a short op list.

use anyhow::{Result, ensure};
use proptest::prelude::*;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::sync::Arc;
use strata_tests::{integrity, register_wrapped, restore};
use strata_vfs::bucket::Store;
use strata_vfs::bucket::memory::MemoryStore;
use strata_vfs::engine::Target;

#[derive(Debug, Clone)]
enum Op {
    /// Upsert `key` = `value`.
    Put(u8, u16),
    Delete(u8),
    /// Several puts in one transaction.
    Batch(Vec<(u8, u16)>),
    /// Wait until the bucket has every commit.
    Flush,
    /// Close, and open on another node.
    Reopen,
    /// Let the snapshot interval pass (a snapshot is taken at the next upload).
    Wait,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..16, any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..16).prop_map(Op::Delete),
        2 => prop::collection::vec((0u8..16, any::<u16>()), 1..6).prop_map(Op::Batch),
        2 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Wait),
    ]
}

type State = BTreeMap<i64, i64>;

fn open(url: &str, dir: &std::path::Path) -> Result<Connection> {
    strata_tests::open_wal(&format!(
        "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db&sync_interval=20ms&merge_segments=2&snapshot_interval=150ms",
        dir.join("data.db").display()
    ))
}

fn committed(c: &Connection) -> Result<u64> {
    Ok(
        c.query_row("PRAGMA strata_committed", [], |r| r.get::<_, String>(0))?
            .parse()?,
    )
}

fn rows(c: &Connection) -> Result<State> {
    let mut st = c.prepare("SELECT k, v FROM kv ORDER BY k")?;
    let out = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(out)
}

/// What a case's history came to have: (a snapshot, a segment of several
/// txids, several writer epochs).
type Shape = (bool, bool, bool);

fn run(ops: &[Op]) -> Result<Shape> {
    let store: Store = Arc::new(MemoryStore::new());
    let url = register_wrapped("pitr", "model", store.clone())?;
    let nodes = tempfile::tempdir()?;
    let mut node = 0;
    let mut c = open(&url, &nodes.path().join("n0"))?;
    c.execute_batch("CREATE TABLE kv(k INTEGER PRIMARY KEY, v INTEGER NOT NULL)")?;
    let mut model = State::new();
    // txid → the model's state right after it.
    let mut at: BTreeMap<u64, State> = BTreeMap::new();
    at.insert(committed(&c)?, model.clone());
    for op in ops {
        let changed = match op {
            Op::Put(k, v) => {
                c.execute(
                    "INSERT INTO kv(k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                    [*k as i64, *v as i64],
                )?;
                model.insert(*k as i64, *v as i64);
                true
            }
            Op::Delete(k) => {
                let n = c.execute("DELETE FROM kv WHERE k = ?1", [*k as i64])?;
                model.remove(&(*k as i64));
                n > 0
            }
            Op::Batch(puts) => {
                let tx = c.transaction()?;
                for (k, v) in puts {
                    tx.execute(
                        "INSERT INTO kv(k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                        [*k as i64, *v as i64],
                    )?;
                    model.insert(*k as i64, *v as i64);
                }
                tx.commit()?;
                true
            }
            Op::Flush => {
                c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
                false
            }
            Op::Reopen => {
                drop(c);
                node += 1;
                c = open(&url, &nodes.path().join(format!("n{node}")))?;
                ensure!(rows(&c)? == model, "node {node} opened another state");
                false
            }
            Op::Wait => {
                std::thread::sleep(std::time::Duration::from_millis(160));
                false
            }
        };
        if changed {
            let t = committed(&c)?;
            ensure!(
                !at.contains_key(&t) || at[&t] == model,
                "txid {t} committed twice"
            );
            at.insert(t, model.clone());
        }
    }
    c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
    drop(c);
    let out = tempfile::tempdir()?;
    for (t, want) in &at {
        let file = out.path().join(format!("at-{t}.db"));
        let r = restore(
            &store,
            "acme",
            "data.db",
            Target::TxId(strata_vfs::TxId(*t)),
            &file,
        )?;
        ensure!(r.txid.0 == *t, "restoring txid {t} reached {}", r.txid);
        let got = rows(&Connection::open(&file)?)?;
        ensure!(
            &got == want,
            "txid {t}: restored {got:?}, the model says {want:?}"
        );
    }
    let latest = out.path().join("latest.db");
    restore(&store, "acme", "data.db", Target::Latest, &latest)?;
    ensure!(integrity(&latest)? == "ok");
    let last = at.values().next_back().cloned().unwrap_or_default();
    ensure!(
        rows(&Connection::open(&latest)?)? == last,
        "the latest state"
    );
    let keys = strata_vfs::format::keys::DbKeys::new("acme", "data.db")?;
    let m = strata_vfs::engine::restore::read_manifest(store.as_ref(), &keys)?;
    Ok((
        m.snapshot.is_some(),
        m.segments.iter().any(|s| s.first < s.last),
        m.epochs.len() > 1,
    ))
}

/// 24 random cases; together they must have covered snapshots, merged (or
/// batched) segments and writer changes, or the property says little.
#[test]
fn every_txid_restores_to_the_models_state() -> Result<()> {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let seen = std::cell::RefCell::new((0, 0, 0));
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let (snap, merged, epochs) =
            run(&ops).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let mut s = seen.borrow_mut();
        s.0 += snap as u32;
        s.1 += merged as u32;
        s.2 += epochs as u32;
        Ok(())
    });
    if let Err(e) = result {
        anyhow::bail!("{e}");
    }
    let (snap, merged, epochs) = seen.into_inner();
    eprintln!(
        "pitr model: of 24 cases, {snap} had a snapshot, {merged} a segment of several txids, {epochs} several epochs"
    );
    ensure!(
        snap > 0 && merged > 0 && epochs > 0,
        "the cases never covered snapshots ({snap}), merges ({merged}) or writer changes ({epochs})"
    );
    Ok(())
}
