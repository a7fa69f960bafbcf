//! Following a live database from a node that is not its writer: a read
//! replica. The head in the bucket, read page by page like any restore
//! point ([`PageMap`]), moved forward as the writer's commits arrive.
//!
//! A reader asks for the head at the start of each read transaction
//! ([`Follower::head`]) and keeps that one map until the transaction ends,
//! so a transaction sees one state. The head is looked at again at most
//! once per `refresh` interval, with one GET of the manifest, and only
//! the indexes of objects that are new since are fetched
//! ([`PageMap::build_after`]). Readers that find a look under way wait for
//! it, so a transaction that starts at `t` sees every commit that was in
//! the bucket at `t - refresh`.
//!
//! When the bucket cannot be read, the follower goes on serving the state
//! it has and its staleness grows ([`FollowStatus::staleness`]); the
//! writer's own delay (its sync interval, in async durability) comes on
//! top and is not visible from here.

use super::pages::PageMap;
use super::restore::{self, Target};
use crate::bucket::Store;
use crate::error::Result;
use crate::format::keys::DbKeys;
use crate::metrics::METRICS;
use crate::types::{Millis, TxId};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A database's head, followed. Shared by every reader of the database in
/// the process.
pub struct Follower {
    store: Store,
    keys: DbKeys,
    refresh: Duration,
    /// Held while the head is looked at: one look at a time.
    look: Mutex<()>,
    state: Mutex<State>,
}

struct State {
    map: Arc<PageMap>,
    /// The head's commit time, as the manifest says.
    head_commit: Millis,
    /// When the bucket was last read successfully.
    checked: Instant,
    /// When it was last tried: a failed look waits a refresh interval too.
    tried: Instant,
    /// Why the last look failed, until one succeeds.
    error: Option<String>,
    moves: u64,
}

/// What a reader knows about how current its state is.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowStatus {
    pub txid: TxId,
    /// The commit time of `txid` (the writer's clock).
    pub head_commit: Millis,
    /// Time since the bucket was last read successfully: commits younger
    /// than that may be missing. Bounded by the refresh interval while the
    /// bucket answers and readers come.
    pub staleness: Duration,
    /// How many times the state moved forward.
    pub moves: u64,
    pub error: Option<String>,
}

impl Follower {
    /// Open the head of `keys` (one manifest GET, then the indexes).
    pub fn open(store: Store, keys: DbKeys, refresh: Duration) -> Result<Follower> {
        let m = restore::read_manifest(store.as_ref(), &keys)?;
        let map = PageMap::build_with(store.as_ref(), &keys, Target::Latest, Some(&m))?;
        tracing::info!(txid = %map.txid, pages = map.db_pages, "following {}", keys.root());
        let f = Follower {
            store,
            keys,
            refresh,
            look: Mutex::new(()),
            state: Mutex::new(State {
                map: Arc::new(map),
                head_commit: m.head_commit,
                checked: Instant::now(),
                tried: Instant::now(),
                error: None,
                moves: 0,
            }),
        };
        f.publish();
        Ok(f)
    }

    /// The state a read transaction starting now reads: the newest head,
    /// looked at again first if the last look is older than the refresh
    /// interval. A failed look keeps the old state (see the module docs).
    pub fn head(&self) -> Arc<PageMap> {
        {
            let st = self.state.lock();
            if st.tried.elapsed() < self.refresh {
                return st.map.clone();
            }
        }
        let _look = self.look.lock();
        // Another reader may have looked while this one waited.
        if self.state.lock().tried.elapsed() >= self.refresh {
            self.look_now();
        }
        self.publish();
        self.state.lock().map.clone()
    }

    /// Read the manifest and move to its head if it moved.
    fn look_now(&self) {
        let old = self.state.lock().map.clone();
        let store = self.store.as_ref();
        let looked = restore::read_manifest(store, &self.keys).and_then(|m| {
            if m.head == old.txid && m.db_id == old.db_id() {
                return Ok((m, None));
            }
            if m.db_id != old.db_id() {
                tracing::warn!(
                    "{}: the database was replaced in the bucket (a new history); following it",
                    self.keys.root()
                );
            }
            let next = PageMap::build_after(store, &self.keys, &m, &old)?;
            Ok((m, Some(next)))
        });
        let mut st = self.state.lock();
        st.tried = Instant::now();
        match looked {
            Ok((m, next)) => {
                if let Some(next) = next {
                    tracing::debug!(from = %old.txid, to = %next.txid, "{}: follows", self.keys.root());
                    st.map = Arc::new(next);
                    st.moves += 1;
                    METRICS.follower_moves.inc();
                }
                st.head_commit = m.head_commit;
                st.checked = Instant::now();
                st.error = None;
            }
            Err(e) => {
                if st.error.is_none() {
                    tracing::warn!(txid = %old.txid, "{}: serving what it has; could not look for newer commits: {e}", self.keys.root());
                }
                METRICS.follower_errors.inc();
                st.error = Some(e.to_string());
            }
        }
    }

    pub fn status(&self) -> FollowStatus {
        let st = self.state.lock();
        FollowStatus {
            txid: st.map.txid,
            head_commit: st.head_commit,
            staleness: st.checked.elapsed(),
            moves: st.moves,
            error: st.error.clone(),
        }
    }

    /// Per-database gauges: the txid followed and the staleness.
    fn publish(&self) {
        let st = self.status();
        let db = self.keys.label();
        METRICS
            .follower_txid
            .with_label_values(&[&db])
            .set(st.txid.0 as i64);
        METRICS
            .follower_staleness_ms
            .with_label_values(&[&db])
            .set(st.staleness.as_millis() as i64);
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let db = self.keys.label();
        let _ = METRICS.follower_txid.remove_label_values(&[&db]);
        let _ = METRICS.follower_staleness_ms.remove_label_values(&[&db]);
    }
}
