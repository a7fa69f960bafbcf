//! A node's view of one replicated database, from its files alone (no need
//! to be the process that writes it): what is committed locally, what the
//! bucket has, what waits in the spool. `strata status` prints it.

use super::LocalState;
use super::replica::sidecar_dir;
use super::spool::{self, SpoolSummary};
use crate::bucket::ObjectStore;
use crate::error::Result;
use crate::format::keys::DbKeys;
use crate::types::{Millis, TxId};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct LocalStatus {
    /// The bucket's head as this node last saw it (`state.json`).
    pub seen_head: TxId,
    pub spool: SpoolSummary,
    /// The bucket's head now (`None`: the bucket did not answer).
    pub bucket_head: Option<TxId>,
    pub bucket_error: Option<String>,
    pub writer: Option<String>,
}

impl LocalStatus {
    /// Transactions committed here that the bucket does not have.
    pub fn unreplicated(&self) -> u64 {
        let head = self.bucket_head.unwrap_or(self.seen_head);
        self.spool.last.map_or(0, |l| l.0.saturating_sub(head.0))
    }

    /// How long the oldest of them has waited.
    pub fn lag(&self) -> std::time::Duration {
        match (self.unreplicated(), self.spool.oldest_commit) {
            (0, _) | (_, None) => std::time::Duration::ZERO,
            (_, Some(t)) => std::time::Duration::from_millis(Millis::now().0.saturating_sub(t.0)),
        }
    }
}

pub fn local_status(local: &Path, store: &dyn ObjectStore, keys: &DbKeys) -> Result<LocalStatus> {
    let dir = sidecar_dir(local);
    let state = LocalState::load(&dir)?.unwrap_or_default();
    let spool = spool::summarize(&dir.join("spool"))?;
    let (bucket_head, bucket_error, writer) = match super::restore::read_manifest(store, keys) {
        Ok(m) => (
            Some(m.head),
            None,
            m.lease
                .filter(|l| l.node.is_some() || l.expires > Millis::now())
                .map(|l| match l.node {
                    Some(n) => format!("{} (node {})", l.holder, n.id),
                    None => l.holder,
                }),
        ),
        Err(e) => (None, Some(e.to_string()), None),
    };
    Ok(LocalStatus {
        seen_head: state.head,
        spool,
        bucket_head,
        bucket_error,
        writer,
    })
}
