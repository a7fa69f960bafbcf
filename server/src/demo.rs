//! `strata demo`: the product in one minute, on a local bucket.

use anyhow::{Context, Result};
use std::path::Path;
use strata_vfs::TxId;
use strata_vfs::engine::history;
use strata_vfs::engine::restore::{self, Target};
use strata_vfs::format::keys::DbKeys;

/// The URI that opens `local` through the strata VFS.
pub fn vfs_uri(local: &Path, bucket: &str, tenant: &str, db: &str) -> String {
    format!(
        "file:{}?vfs=strata&bucket={}&tenant={}&db={}",
        local.display(),
        uri_escape(bucket),
        uri_escape(tenant),
        uri_escape(db)
    )
}

fn uri_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'&' | b'?' | b'#' | b'%' | b'=' => format!("%{b:02X}"),
            _ => (b as char).to_string(),
        })
        .collect()
}

/// Run every statement of `sql` and print rows `|`-separated, like the sqlite3 CLI.
pub fn print_query(conn: &rusqlite::Connection, sql: &str) -> Result<()> {
    use rusqlite::fallible_iterator::FallibleIterator;
    use rusqlite::types::ValueRef;
    let mut batch = rusqlite::Batch::new(conn, sql);
    while let Some(mut stmt) = batch.next()? {
        let n = stmt.column_count();
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            let mut cols = Vec::with_capacity(n);
            for i in 0..n {
                cols.push(match row.get_ref(i)? {
                    ValueRef::Null => String::new(),
                    ValueRef::Integer(i) => i.to_string(),
                    ValueRef::Real(f) => f.to_string(),
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
                });
            }
            println!("{}", cols.join("|"));
        }
    }
    Ok(())
}

pub fn run(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let bucket_dir = dir.join("bucket");
    let bucket = format!("file://{}", bucket_dir.display());
    let node = dir.join("node");
    std::fs::create_dir_all(&node)?;
    let local = node.join("data.db");
    for f in ["data.db", "data.db-wal", "data.db-shm"] {
        let _ = std::fs::remove_file(node.join(f));
    }
    let _ = std::fs::remove_dir_all(node.join("data.db-strata"));
    let _ = std::fs::remove_dir_all(&bucket_dir);
    strata_vfs::sqlite::register_static()?;

    println!("strata demo in {}\n", dir.display());
    println!(
        "1. A node opens tenant `acme`'s data.db through the strata VFS and writes 100 transactions."
    );
    let uri = vfs_uri(&local, &bucket, "acme", "data.db");
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn = rusqlite::Connection::open_with_flags(&uri, flags)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.execute_batch(
        "CREATE TABLE posts(id INTEGER PRIMARY KEY, title TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP)",
    )?;
    for i in 1..=100 {
        conn.execute(
            "INSERT INTO posts(title) VALUES (?1)",
            [format!("post #{i}")],
        )?;
    }
    let txid: String = conn.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
    println!(
        "   every commit is in {} (replicated through txid {txid})\n",
        bucket
    );
    drop(conn);

    println!("2. The node is disposable: delete its files. The bucket is the truth.");
    let store = strata_vfs::bucket::open_bucket(&bucket)?;
    let keys = DbKeys::new("acme", "data.db")?;
    let h = history::load(store.as_ref(), &keys, None)?;
    println!(
        "   history: txids {}..={}, {} segments, {} snapshots",
        h.oldest().unwrap_or_default(),
        h.manifest.head,
        h.segments.len(),
        h.snapshots.len()
    );
    let mid = TxId(h.manifest.head.0 / 2);
    let out = dir.join("restored-at-mid.db");
    let r = restore::restore(
        &store,
        &keys,
        Target::TxId(mid),
        &out,
        &crate::restore_options(8, None),
    )?;
    let c = rusqlite::Connection::open(&out)?;
    let n: i64 = c.query_row("SELECT count(*) FROM posts", [], |r| r.get(0))?;
    println!(
        "3. Point-in-time restore to txid {} -> {} ({n} posts then)",
        r.txid,
        out.display()
    );
    let out = dir.join("restored-latest.db");
    restore::restore(
        &store,
        &keys,
        Target::Latest,
        &out,
        &crate::restore_options(8, None),
    )?;
    let c = rusqlite::Connection::open(&out)?;
    let n: i64 = c.query_row("SELECT count(*) FROM posts", [], |r| r.get(0))?;
    println!(
        "4. Latest restore -> {} ({n} posts), integrity_check ok\n",
        out.display()
    );
    println!("Try: cargo run --release -- history {bucket} acme/data.db");
    Ok(())
}
