//! `/.strata-stats`: what this mount has asked of the bucket so far, one
//! `name=value` per line (requests by kind, bytes read and written). Tests
//! and users read it to see what a query cost.

use crate::ctx::Ctx;

pub fn content(ctx: &Ctx) -> Vec<u8> {
    let c = ctx.bucket.snapshot();
    format!(
        "requests={}\nget={}\nget_range={}\nlist={}\nput={}\ndelete={}\nbytes_read={}\nbytes_written={}\n",
        c.total(),
        c.get,
        c.get_range,
        c.list,
        c.writes(),
        c.delete,
        c.bytes_read,
        c.bytes_written
    )
    .into_bytes()
}
