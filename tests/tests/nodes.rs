//! Leases bound to a node's heartbeat (`vfs/src/engine/node.rs`), through
//! the VFS's `node=` parameter: an idle writer makes no request of its own,
//! another node's writer is refused while the holder beats, and takes over
//! once the holder's heartbeat is stale; the old writer is fenced. On every
//! backend (the local directory and the loopback S3 server).

use anyhow::{Context, Result, ensure};
use rusqlite::Connection;
use std::time::{Duration, Instant};
use strata_tests::Backend;
use strata_vfs::engine::node::{self, Node, NodeConfig};

/// The backend's store as the VFS reaches it in this process.
fn bucket(b: &Backend) -> Result<String> {
    strata_tests::register_wrapped("nodes", b.name(), b.store()?)
}

fn start(url: &str, id: &str) -> Result<std::sync::Arc<Node>> {
    let store = strata_vfs::sqlite::params::shared_store(url)?;
    Ok(Node::start(
        store,
        NodeConfig {
            id: id.into(),
            advertise: format!("http://{id}.invalid"),
            heartbeat: Duration::from_millis(100),
            ttl: Duration::from_millis(600),
        },
    )?)
}

fn open(url: &str, dir: &std::path::Path, node: &str) -> Result<Connection> {
    let uri = format!(
        "file:{}?vfs=strata&bucket={url}&tenant=acme&db=data.db&node={node}&sync_interval=50ms&lease_ttl=400ms",
        dir.join("data.db").display(),
    );
    strata_tests::open_wal(&uri)
}

fn manifest(b: &Backend) -> Result<strata_vfs::format::Manifest> {
    let store = b.store()?;
    let obj = store.get("tenants/acme/db/data.db/manifest.json")?;
    Ok(strata_vfs::format::Manifest::from_bytes(&obj.data)?)
}

fn flush(c: &Connection) -> Result<String> {
    Ok(c.query_row("PRAGMA strata_flush", [], |r| r.get(0))?)
}

fn body(b: &Backend, ids: (&str, &str)) -> Result<()> {
    let name = b.name();
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let url = bucket(b)?;
    let na = start(&url, ids.0)?;
    let nb = start(&url, ids.1)?;
    let a = open(&url, da.path(), ids.0)?;
    a.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a1')",
    )?;
    flush(&a)?;
    let m = manifest(b)?;
    let lease = m.lease.clone().context("a lease after the first commit")?;
    let bound = lease.node.clone().context("the lease names the node")?;
    ensure!(
        bound.id == ids.0 && bound.incarnation == na.incarnation() && lease.expires.0 == 0,
        "[{name}] lease {lease:?}"
    );

    // Idle for several of the time lease's lifetimes: the heartbeat keeps
    // the lease, the manifest is not touched.
    std::thread::sleep(Duration::from_millis(1500));
    let idle = manifest(b)?;
    ensure!(
        idle.updated == m.updated && idle.lease == m.lease,
        "[{name}] an idle node-bound writer rewrote its manifest: {:?} -> {:?}",
        m.updated,
        idle.updated
    );

    // Another node's writer is refused while A beats, at a claim and at a
    // commit alike.
    let b2 = open(&url, db.path(), ids.1)?;
    let e = b2
        .query_row("PRAGMA strata_claim", [], |r| r.get::<_, String>(0))
        .unwrap_err()
        .to_string();
    ensure!(
        e.contains("while node") && e.contains(ids.0),
        "[{name}] claim while A beats: {e}"
    );
    let refused = b2.execute("INSERT INTO t(v) VALUES ('b-early')", []);
    ensure!(refused.is_err(), "[{name}] B wrote while A held the lease");

    // A dies without a word; once its beat is a ttl old, B claims.
    na.abandon();
    let died = Instant::now();
    let took = loop {
        match b2.query_row("PRAGMA strata_claim", [], |r| r.get::<_, String>(0)) {
            Ok(_) => break died.elapsed(),
            Err(e) if died.elapsed() < Duration::from_secs(10) => {
                ensure!(e.to_string().contains("while node"), "[{name}] {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => anyhow::bail!("[{name}] B never took over: {e}"),
        }
    };
    ensure!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "[{name}] takeover after {took:?} (ttl 600 ms, last beat up to 100 ms before the death)"
    );
    b2.execute("INSERT INTO t(v) VALUES ('b1')", [])?;
    flush(&b2)?;
    let after = manifest(b)?;
    ensure!(
        after.epoch.0 == m.epoch.0 + 1
            && after
                .lease
                .as_ref()
                .and_then(|l| l.node.as_ref())
                .map(|n| n.id.as_str())
                == Some(ids.1),
        "[{name}] B's epoch: {after:?}"
    );

    // A's connection, still open, is fenced: its commit never reaches the
    // bucket's history.
    let _ = a.execute("INSERT INTO t(v) VALUES ('a-zombie')", []);
    let flushed = flush(&a);
    ensure!(
        flushed.is_err(),
        "[{name}] the fenced writer flushed: {flushed:?}"
    );
    let rows: Vec<String> = b2
        .prepare("SELECT v FROM t ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    ensure!(rows == ["a1", "b1"], "[{name}] rows {rows:?}");
    drop(b2);
    nb.stop();
    ensure!(
        !node::holds(&b.store()?, &nb.lease_node())?,
        "[{name}] a stopped node still holds"
    );
    Ok(())
}

#[test]
fn node_bound_leases_need_no_renewal_and_pass_when_the_node_dies() -> Result<()> {
    for (i, b) in Backend::all()?.iter().enumerate() {
        body(b, (&format!("na{i}"), &format!("nb{i}")))?;
    }
    Ok(())
}
