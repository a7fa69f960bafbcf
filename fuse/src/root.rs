//! `/`: one folder per tenant that has any object in the bucket, plus
//! `.strata-stats`. Tenants are created by writing through strata, not here.

use crate::ctx::Ctx;
use crate::errno::{FsResult, NO_ENTRY};
use crate::inodes::Node;

pub const STATS: &str = ".strata-stats";

pub fn children(ctx: &Ctx) -> FsResult<Vec<(String, Node)>> {
    let mut out: Vec<(String, Node)> = ctx
        .tenants()?
        .iter()
        .map(|t| (t.clone(), Node::Tenant(t.as_str().into())))
        .collect();
    out.push((STATS.into(), Node::Stats));
    Ok(out)
}

pub fn lookup(ctx: &Ctx, name: &str) -> FsResult<Node> {
    if name == STATS {
        return Ok(Node::Stats);
    }
    if ctx.tenants()?.iter().any(|t| t == name) {
        return Ok(Node::Tenant(name.into()));
    }
    Err(NO_ENTRY)
}
