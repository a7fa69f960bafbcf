//! `/.strata-stats`: what this mount has asked of the bucket so far, one
//! `name=value` per line (requests by kind, bytes read and written), and
//! what the kernel asked of the database files (reads that were not served
//! from its page cache, lock requests, live-file moves and the page ranges
//! they dropped). Tests and users read it to see what a query cost.

use crate::ctx::Ctx;
use std::sync::atomic::Ordering;

pub fn content(ctx: &Ctx) -> Vec<u8> {
    let c = ctx.bucket.snapshot();
    let k = &ctx.counters;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    format!(
        "requests={}\nget={}\nget_range={}\nlist={}\nput={}\ndelete={}\nbytes_read={}\nbytes_written={}\n\
         db_reads={}\ndb_read_bytes={}\nlock_requests={}\nlive_moves={}\ninvalidations={}\n",
        c.total(),
        c.get,
        c.get_range,
        c.list,
        c.writes(),
        c.delete,
        c.bytes_read,
        c.bytes_written,
        n(&k.db_reads),
        n(&k.db_read_bytes),
        n(&k.lock_requests),
        n(&k.live_moves),
        n(&k.invalidations),
    )
    .into_bytes()
}
