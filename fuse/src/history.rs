//! Time travel, read-only:
//!
//! - `/<tenant>/@history/` lists the tenant's restore points by commit time
//!   (RFC 3339, UTC, milliseconds): one folder per snapshot and per segment
//!   end of any of its databases. Any other time can be looked up too
//!   (`@history/2026-11-25T10:00:00Z/`): it shows the state after the last
//!   transaction committed at or before it.
//! - `/<tenant>/@txid/` lists the same restore points by txid; any txid
//!   from the oldest restorable one to the head can be looked up.
//! - `/<tenant>/@history/<time>/` and `@txid/<N>/` hold each database that
//!   has that restore point (txids count per database).

use crate::ctx::Ctx;
use crate::db_file;
use crate::errno::{FsResult, NO_ENTRY};
use crate::inodes::{At, Node};
use std::collections::BTreeSet;
use std::sync::Arc;
use strata_vfs::engine::history;
use strata_vfs::format::keys::DbKeys;
use strata_vfs::{Millis, TxId};

/// Restore points of every database of the tenant: (txid, commit time).
fn points(ctx: &Ctx, tenant: &Arc<str>) -> FsResult<BTreeSet<(TxId, Millis)>> {
    let mut out = BTreeSet::new();
    for db in ctx.databases(tenant)?.iter() {
        let keys = DbKeys::new(tenant, db)?;
        let h = history::load(ctx.store(), &keys, None)?;
        let oldest = h.oldest().unwrap_or(h.manifest.head);
        out.extend(
            h.snapshots
                .iter()
                .map(|s| (s.txid, s.commit))
                .chain(h.segments.iter().map(|s| (s.last, s.last_commit)))
                .filter(|(t, _)| *t >= oldest),
        );
    }
    Ok(out)
}

pub fn history_children(ctx: &Ctx, tenant: &Arc<str>) -> FsResult<Vec<(String, Node)>> {
    let times: BTreeSet<Millis> = points(ctx, tenant)?.into_iter().map(|p| p.1).collect();
    Ok(times
        .into_iter()
        .map(|t| (t.rfc3339(), Node::Point(tenant.clone(), At::Time(t))))
        .collect())
}

pub fn txid_children(ctx: &Ctx, tenant: &Arc<str>) -> FsResult<Vec<(String, Node)>> {
    let txids: BTreeSet<TxId> = points(ctx, tenant)?.into_iter().map(|p| p.0).collect();
    Ok(txids
        .into_iter()
        .map(|t| (t.to_string(), Node::Point(tenant.clone(), At::TxId(t))))
        .collect())
}

/// `@history/<name>`: any RFC 3339 time.
pub fn lookup_time(tenant: &Arc<str>, name: &str) -> FsResult<Node> {
    let t = humantime::parse_rfc3339_weak(name).map_err(|_| NO_ENTRY)?;
    Ok(Node::Point(
        tenant.clone(),
        At::Time(Millis::from_system_time(t)),
    ))
}

/// `@txid/<name>`: a decimal txid, 1 or more.
pub fn lookup_txid(tenant: &Arc<str>, name: &str) -> FsResult<Node> {
    match name.parse::<u64>() {
        Ok(t) if t > 0 && name.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Node::Point(tenant.clone(), At::TxId(TxId(t))))
        }
        _ => Err(NO_ENTRY),
    }
}

/// The databases that have this restore point.
pub fn point_children(ctx: &Ctx, tenant: &Arc<str>, at: At) -> FsResult<Vec<(String, Node)>> {
    let mut out = Vec::new();
    for db in ctx.databases(tenant)?.iter() {
        let node = Node::Db {
            tenant: tenant.clone(),
            db: db.as_str().into(),
            at: Some(at),
        };
        match db_file::past(ctx, tenant, db, at) {
            Ok(_) => out.push((db.clone(), node)),
            Err(e) if e.is_no_entry() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

pub fn point_lookup(ctx: &Ctx, tenant: &Arc<str>, at: At, name: &str) -> FsResult<Node> {
    if !ctx.databases(tenant)?.iter().any(|d| d == name) {
        return Err(NO_ENTRY);
    }
    db_file::past(ctx, tenant, name, at)?;
    Ok(Node::Db {
        tenant: tenant.clone(),
        db: name.into(),
        at: Some(at),
    })
}
