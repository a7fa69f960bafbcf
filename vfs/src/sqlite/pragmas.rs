//! `PRAGMA strata_*`: replication state from SQL, for applications and tests.
//!
//! - `strata_status`: one line of `key=value` pairs.
//! - `strata_committed` / `strata_replicated`: txids (the replicated watermark).
//! - `strata_lag_ms`: how long the oldest unreplicated commit has waited.
//! - `strata_flush[=timeout_ms]`: upload everything now and wait; returns the txid.
//! - `strata_missing_pages`: pages of a lazily opened copy not on this node yet.
//! - `strata_claim`: take the writer lease now, not at the first commit.
//! - `strata_hydrate`: fetch them all now (parallel ranged GETs); returns how many.
//! - `strata_write_lock_handoffs` (answered in `vfs.rs`, as it is about
//!   locks): busy waits for this database's write lock that its release in
//!   this process ended (`busy.rs`).

use crate::engine::Replica;
use crate::error::{Error, Result};
use std::time::Duration;

pub fn run(r: &Replica, name: &str, arg: Option<&str>) -> Result<String> {
    let st = r.status();
    Ok(match name {
        "strata_status" => format!(
            "committed={} replicated={} lag_ms={} spool_bytes={} error={} fenced={}",
            st.committed,
            st.replicated,
            st.lag().as_millis(),
            st.spool_bytes,
            st.last_error.as_deref().unwrap_or("none"),
            st.fenced.as_deref().unwrap_or("no"),
        ),
        "strata_committed" => st.committed.to_string(),
        "strata_replicated" => st.replicated.to_string(),
        "strata_lag_ms" => st.lag().as_millis().to_string(),
        "strata_flush" => {
            let ms = match arg {
                Some(a) => a.parse().map_err(|_| {
                    Error::invalid(format!("strata_flush takes milliseconds, not `{a}`"))
                })?,
                None => 30_000,
            };
            r.flush(Duration::from_millis(ms))?.to_string()
        }
        "strata_claim" => {
            r.claim()?;
            "claimed".to_string()
        }
        "strata_hydrate" => r.hydrate(None)?.to_string(),
        "strata_missing_pages" => r.lazy().map_or(0, |l| l.missing_pages()).to_string(),
        other => {
            return Err(Error::invalid(format!(
                "unknown pragma {other}; see `strata_status`"
            )));
        }
    })
}
