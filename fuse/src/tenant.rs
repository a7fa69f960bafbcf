//! `/<tenant>`: its databases (live, read-only), `@history` and `@txid`
//! (time travel), and its ordinary objects `hooks/`, `storage/` and
//! `metadata.json`.

use crate::ctx::Ctx;
use crate::errno::{FsResult, NO_ENTRY};
use crate::inodes::Node;
use crate::plain_file;
use std::sync::Arc;

pub const HISTORY: &str = "@history";
pub const TXID: &str = "@txid";
/// Folders of ordinary objects; always shown, so that a first hook can be written.
pub const OBJECT_DIRS: [&str; 2] = ["hooks", "storage"];
pub const METADATA: &str = "metadata.json";

pub fn children(ctx: &Ctx, tenant: &Arc<str>) -> FsResult<Vec<(String, Node)>> {
    let mut out = vec![
        (HISTORY.to_string(), Node::HistoryDir(tenant.clone())),
        (TXID.to_string(), Node::TxidDir(tenant.clone())),
    ];
    for d in OBJECT_DIRS.into_iter().chain([METADATA]) {
        let node = Node::Object {
            tenant: tenant.clone(),
            path: d.into(),
        };
        if d != METADATA || plain_file::stat(ctx, tenant, d).is_ok() {
            out.push((d.to_string(), node));
        }
    }
    for db in ctx.databases(tenant)?.iter() {
        out.push((db.clone(), live_db(tenant, db)));
    }
    Ok(out)
}

pub fn lookup(ctx: &Ctx, tenant: &Arc<str>, name: &str) -> FsResult<Node> {
    match name {
        HISTORY => Ok(Node::HistoryDir(tenant.clone())),
        TXID => Ok(Node::TxidDir(tenant.clone())),
        n if OBJECT_DIRS.contains(&n) || n == METADATA => Ok(Node::Object {
            tenant: tenant.clone(),
            path: n.into(),
        }),
        n if ctx.databases(tenant)?.iter().any(|d| d == n) => Ok(live_db(tenant, n)),
        _ => Err(NO_ENTRY),
    }
}

fn live_db(tenant: &Arc<str>, db: &str) -> Node {
    Node::Db {
        tenant: tenant.clone(),
        db: db.into(),
        at: None,
    }
}
