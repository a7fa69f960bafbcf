//! The uploader thread of one replica: every sync interval (or sooner when
//! woken) it seals the active spool file, turns each sealed file into one
//! segment (`put_if_absent`) and then moves the manifest's head
//! (`put_if_match`). Steady state costs exactly two requests per upload and
//! never a LIST.
//!
//! Fencing: the manifest update is conditional on the etag we last wrote. If
//! it fails and the manifest now names another epoch, a newer writer took
//! over: this replica stops accepting commits and says so.

use super::LocalState;
use super::config::Durability;
use super::replica::Core;
use super::spool::{self, SpoolTxn};
use super::{snapshot, spool::Sealed};
use crate::bucket::ETag;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::format::manifest::{EpochStart, Lease, Manifest, SegmentRef};
use crate::format::segment::{self, SegmentKind, SegmentMeta, TxnPages};
use crate::metrics::METRICS;
use crate::types::{Epoch, Millis, TxId};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Spool bytes (deltas included) merged into one segment when a backlog
/// waits; also the most a merge of small segments writes as one.
const SEGMENT_TARGET: u64 = 16 << 20;

/// The most a merge of small segments rewrites as one.
const MERGE_BYTES: u64 = 4 << 20;

/// The newest uploaded segments kept in memory for the next merge, per
/// writer (a node may hold thousands); older ones a merge GETs back.
const RECENT_BYTES: u64 = 1 << 20;

/// Run the uploader of `core`. It holds the manifest once the epoch is
/// claimed (by the first commit, or by its own first upload).
pub(crate) fn run(core: Arc<Core>) {
    let mut up = Uploader {
        core,
        manifest: None,
        shutdown_deadline: None,
        last_batch: (0, Duration::ZERO),
        recent: Default::default(),
    };
    up.run();
    // A closed database has no lag to report: drop its series, so a node that
    // loads and evicts thousands of tenants exports only the open ones.
    let db = up.core.keys.label();
    let _ = METRICS.replicated_txid.remove_label_values(&[&db]);
    let _ = METRICS.lag_ms.remove_label_values(&[&db]);
}

/// Take over the database: bump the epoch and take the lease with one
/// conditional put, which makes every older writer's next manifest update
/// fail. Refused while another holder's lease is still valid.
pub(crate) fn claim(core: &Core, seen: Option<(Manifest, ETag)>) -> Result<(Manifest, ETag)> {
    let key = core.keys.manifest();
    let mut seen = seen;
    loop {
        let current = match seen.take() {
            Some(m) => Some(m),
            None => match core.cfg.store.get(&key) {
                Ok(obj) => Some((
                    Manifest::from_bytes(&obj.data).map_err(|e| e.context(&key))?,
                    obj.etag,
                )),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.context(format!("read {key}"))),
            },
        };
        let (db_id, page_size) = {
            let w = core.writer.lock();
            (w.db_id, w.page_size)
        };
        let replicated = core.progress.lock().replicated;
        let now = Millis::now();
        let lease = |epoch| {
            lease_of(
                core,
                epoch,
                Millis(now.0 + core.cfg.lease_ttl.as_millis() as u64),
            )
        };
        let result = match current {
            None => {
                let mut m = Manifest::new(db_id, page_size);
                m.epoch = Epoch(1);
                m.epochs = vec![EpochStart {
                    epoch: Epoch(1),
                    start: TxId(1),
                }];
                m.writer = Some(core.me.clone());
                m.lease = Some(lease(m.epoch));
                m.updated = now;
                core.cfg
                    .store
                    .put_if_absent(&key, m.to_bytes())
                    .map(|etag| (m, etag))
            }
            Some((mut m, etag)) => {
                if m.db_id != db_id {
                    return Err(Error::conflict(format!(
                        "{key} now belongs to database {}, not {db_id}",
                        m.db_id
                    )));
                }
                if let Some(l) = &m.lease
                    && let Some(until) = held_by_other(core, l, now)?
                {
                    return Err(Error::conflict(format!(
                        "{} is held by another writer ({}, epoch {}) {until}: one writer per database. \
                         Close it there, or wait for its lease to expire if it crashed",
                        core.keys.root(),
                        l.holder,
                        l.epoch,
                    )));
                }
                if m.head != replicated {
                    return Err(Error::conflict(format!(
                        "another writer moved {key} to txid {} while this node was at {replicated}",
                        m.head
                    )));
                }
                let epoch = Epoch(m.epoch.0 + 1);
                m.epoch = epoch;
                m.epochs.push(EpochStart {
                    epoch,
                    start: m.head.next(),
                });
                m.writer = Some(core.me.clone());
                m.lease = Some(lease(epoch));
                m.updated = now;
                core.cfg
                    .store
                    .put_if_match(&key, m.to_bytes(), &etag)
                    .map(|etag| (m, etag))
            }
        };
        match result {
            Ok((m, etag)) => {
                tracing::info!(epoch = %m.epoch, head = %m.head, "writer epoch claimed");
                return Ok((m, etag));
            }
            // Lost a race with another claimant: look again.
            Err(e) if e.kind() == ErrorKind::Conflict => continue,
            Err(e) => return Err(e.context(format!("claim {key}"))),
        }
    }
}

struct Uploader {
    core: Arc<Core>,
    /// The manifest as we last wrote it, once our epoch is claimed.
    manifest: Option<(Manifest, ETag)>,
    shutdown_deadline: Option<Instant>,
    /// Transactions and time of the last upload (sync mode's group window).
    last_batch: (u64, Duration),
    /// The newest segments this writer uploaded, as uploaded (at most
    /// `RECENT_BYTES`): what a merge reads instead of GETting them back.
    recent: std::collections::VecDeque<(String, bytes::Bytes)>,
}

/// Encode `txns` (at least one) as one segment and upload it. Create-only:
/// our epoch's keys are ours alone, so an object already there is our own
/// earlier attempt whose response was lost.
fn put_segment(
    core: &Core,
    meta: &SegmentMeta,
    txns: &[TxnPages],
) -> Result<(SegmentRef, bytes::Bytes)> {
    let (Some(first), Some(last)) = (txns.first(), txns.last()) else {
        return Err(Error::invalid("a segment needs a transaction"));
    };
    let body = segment::encode(meta, txns)?;
    let size = body.len() as u64;
    let prefix = segment::SegmentHeader::decode(&body)?.prefix_len();
    let key = core
        .keys
        .segment(first.txid, last.txid, meta.epoch, last.commit);
    match core.cfg.store.put_if_absent(&key, body.clone()) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::Conflict => {
            tracing::debug!(key, "segment already uploaded")
        }
        Err(e) => return Err(e.context(format!("upload {key}"))),
    }
    METRICS.bytes_uploaded.inc_by(size);
    let seg = SegmentRef {
        first: first.txid,
        last: last.txid,
        first_commit: first.commit,
        last_commit: last.commit,
        epoch: meta.epoch,
        key,
        size,
        prefix: Some(prefix),
    };
    Ok((seg, body))
}

impl Uploader {
    fn run(&mut self) {
        let interval = self.core.cfg.sync_interval;
        let mut next_tick = Instant::now() + interval;
        loop {
            let (shutdown, flush, due) = {
                let mut p = self.core.progress.lock();
                while !p.wake && !p.flush && !p.shutdown && Instant::now() < next_tick {
                    self.core.progress_cv.wait_until(&mut p, next_tick);
                }
                let due = std::mem::take(&mut p.wake) || Instant::now() >= next_tick;
                (p.shutdown, std::mem::take(&mut p.flush), due)
            };
            if flush {
                self.write_spool_buffer();
            }
            if !due && !shutdown {
                continue;
            }
            if !shutdown {
                self.group_window();
            }
            if shutdown && self.shutdown_deadline.is_none() {
                self.shutdown_deadline = Some(Instant::now() + self.core.cfg.sync_timeout);
            }
            let started = Instant::now();
            let before = self.core.progress.lock().replicated;
            let result = self.tick();
            let after = self.core.progress.lock().replicated;
            self.last_batch = (after.0.saturating_sub(before.0), started.elapsed());
            // A commit that arrives just after this tick started waits for the
            // next tick *and* its upload: start the next one early by about
            // one upload's time, so replication lag stays within the interval.
            let took = started.elapsed() + Duration::from_millis(20);
            next_tick = started + interval.saturating_sub(took.min(interval / 2));
            match result {
                Ok(()) => self.set_error(None),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    tracing::error!(error = %e, "replication stopped: fenced");
                    let mut p = self.core.progress.lock();
                    p.fenced = Some(e.to_string());
                    self.core.progress_cv.notify_all();
                    return;
                }
                Err(e) => {
                    METRICS.upload_errors.inc();
                    let oldest = self.core.progress.lock().pending.front().map(|(_, t)| *t);
                    if let Some(t) = oldest {
                        METRICS
                            .lag_ms
                            .with_label_values(&[&self.core.keys.label()])
                            .set(Millis::now().0.saturating_sub(t.0) as i64);
                    }
                    tracing::warn!(error = %e, "upload failed; will retry");
                    self.set_error(Some(e.to_string()));
                    // Back off a little, but keep the interval as the upper bound.
                    next_tick = Instant::now()
                        + interval
                            .min(Duration::from_millis(500))
                            .max(Duration::from_millis(50));
                }
            }
            if let Some(deadline) = self.shutdown_deadline {
                let pending = self.core.progress.lock().pending.len();
                if pending == 0 || Instant::now() >= deadline {
                    if pending == 0 {
                        self.release();
                    }
                    if pending > 0 {
                        tracing::warn!(
                            pending,
                            "closing with transactions still spooled; they upload at the next open"
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Sync mode's group commit: the writers the last upload released commit
    /// again within moments; wait for them (up to a quarter of an upload's
    /// time, at most 1 ms) so they share the next upload instead of each
    /// waiting for a whole extra one. A single writer never waits here. A
    /// longer window (half an upload, at most 5 ms) gathered more commits
    /// per upload (12.0 vs 10.3 of 16 writers on moto) but fewer per second.
    fn group_window(&self) {
        let (released, took) = self.last_batch;
        if self.core.cfg.durability != Durability::Sync || released < 2 {
            return;
        }
        let deadline = Instant::now() + (took / 4).min(Duration::from_millis(1));
        let mut p = self.core.progress.lock();
        while (p.pending.len() as u64) < released && !p.shutdown {
            if self
                .core
                .progress_cv
                .wait_until(&mut p, deadline)
                .timed_out()
            {
                break;
            }
        }
    }

    /// Write the committers' spool buffer out on this thread, so a commit
    /// only copies into memory; then start its writeback so that the fsync
    /// SQLite asks for later has little left to do.
    fn write_spool_buffer(&self) {
        let mut w = self.core.writer.lock();
        let Some((chunk, active)) = w.spool.take_buffer() else {
            return;
        };
        let mut a = active.lock();
        drop(w); // order is kept: the file is locked before the writer lock goes
        let written = a.append(&chunk);
        let handle = a.handle();
        drop(a);
        match (written, handle) {
            (Ok(()), Ok(f)) => {
                use std::os::fd::AsRawFd;
                // SAFETY: a hint on our own descriptor.
                unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "spool write failed; retried at the next flush")
            }
        }
    }

    fn set_error(&self, e: Option<String>) {
        let mut p = self.core.progress.lock();
        p.last_error = e;
        self.core.progress_cv.notify_all();
    }

    fn tick(&mut self) -> Result<()> {
        if let Some(f) = self.core.progress.lock().fenced.clone() {
            return Err(Error::conflict(f));
        }
        let shipped = self.ship();
        {
            let mut p = self.core.progress.lock();
            if p.bucket_down != shipped.is_err() {
                p.bucket_down = shipped.is_err();
                if let Err(e) = &shipped {
                    // Sync-mode waiters fail fast with the reason.
                    p.last_error = Some(e.to_string());
                }
                self.core.progress_cv.notify_all();
            }
        }
        shipped?;
        // Closing: what is left is to release the lease, not to tidy up.
        if self.shutdown_deadline.is_some() {
            return Ok(());
        }
        match self.maybe_merge() {
            Err(e) if e.kind() == ErrorKind::Conflict => return Err(e),
            // Only an optimization: the next tick tries again.
            Err(e) => tracing::warn!(error = %e, "merging small segments failed; will retry"),
            Ok(()) => {}
        }
        self.maybe_snapshot()?;
        self.take_handoff();
        // An idle writer renews its lease at half its lifetime; a lease
        // bound to a node is kept by the node's heartbeat instead.
        let renew_at = Millis::now().0 + self.core.cfg.lease_ttl.as_millis() as u64 / 2;
        if self.manifest.as_ref().is_some_and(|(m, _)| {
            m.lease
                .as_ref()
                .is_none_or(|l| l.node.is_none() && l.expires.0 < renew_at)
        }) {
            self.publish(|_| {})?;
        }
        Ok(())
    }

    /// Upload every sealed spool file, in order, claiming first if needed.
    /// Nothing to upload, nothing claimed: a replica that only reads makes
    /// no request here.
    fn ship(&mut self) -> Result<()> {
        {
            let mut w = self.core.writer.lock();
            if !w.held {
                w.spool.seal()?;
            }
        }
        loop {
            let batch = self
                .core
                .writer
                .lock()
                .spool
                .next_sealed_batch(SEGMENT_TARGET);
            if batch.is_empty() {
                break;
            }
            self.claim()?;
            self.upload(&batch)?;
            let mut w = self.core.writer.lock();
            for sealed in &batch {
                w.spool.remove_sealed(sealed.first)?;
            }
            let bytes = w.spool.pending_bytes();
            drop(w);
            METRICS.spool_bytes.set(bytes as i64);
            let mut p = self.core.progress.lock();
            p.spool_bytes = bytes;
        }
        Ok(())
    }

    /// Hand the database over at close: release the lease so the next writer
    /// need not wait for it to expire.
    fn release(&mut self) {
        self.take_handoff();
        if self
            .manifest
            .as_ref()
            .is_some_and(|(m, _)| m.lease.is_some())
            && self.core.progress.lock().fenced.is_none()
            && let Err(e) = self.publish_until(|_| {}, Millis(0))
        {
            tracing::warn!(error = %e, "could not release the writer lease; it expires by itself");
        }
    }

    /// An epoch claimed before any commit (`Replica::claim`) is ours to
    /// keep and release, writes or not.
    fn take_handoff(&mut self) {
        if self.manifest.is_none() {
            self.manifest = self.core.claim.lock().handoff.take();
        }
    }

    /// Take the epoch the first commit claimed, or claim it now (that
    /// commit found the bucket down).
    fn claim(&mut self) -> Result<()> {
        if self.manifest.is_none() {
            let mut c = self.core.claim.lock();
            let m = match c.handoff.take() {
                Some(m) => m,
                None => {
                    let seen = c.seen.take();
                    let m = claim(&self.core, seen)?;
                    c.done = true;
                    m
                }
            };
            self.manifest = Some(m);
        }
        Ok(())
    }

    /// Upload sealed spool files (consecutive) as segments.
    fn upload(&mut self, batch: &[Sealed]) -> Result<()> {
        let core = self.core.clone();
        let Some((m, _)) = &self.manifest else {
            return Err(Error::unavailable("writer epoch not claimed"));
        };
        let head = m.head;
        let epoch = m.epoch;
        let db_id = m.db_id;
        let mut txns: Vec<SpoolTxn> = Vec::new();
        for sealed in batch {
            txns.extend(
                spool::read_file(&sealed.path)?
                    .into_iter()
                    .filter(|t| t.txid > head),
            );
        }
        let Some(first) = txns.first() else {
            return Ok(());
        };
        if first.txid != head.next() {
            return Err(Error::corrupt(format!(
                "spool starts at txid {} but the bucket's head is {head}: a gap would be replicated",
                first.txid
            )));
        }
        // One segment per run of equal page size (a VACUUM may change it).
        let mut start = 0;
        while start < txns.len() {
            let ps = txns[start].page_size;
            let end = txns[start..]
                .iter()
                .position(|t| t.page_size != ps)
                .map_or(txns.len(), |i| start + i);
            self.upload_run(&txns[start..end], db_id, epoch, ps, &core)?;
            start = end;
        }
        Ok(())
    }

    fn upload_run(
        &mut self,
        txns: &[SpoolTxn],
        db_id: crate::DbId,
        epoch: Epoch,
        page_size: u32,
        core: &Core,
    ) -> Result<()> {
        let last = &txns[txns.len() - 1];
        let pages: Vec<TxnPages> = txns
            .iter()
            .map(|t| TxnPages {
                txid: t.txid,
                commit: t.commit,
                db_pages: t.db_pages,
                pages: t.pages.clone(),
            })
            .collect();
        let meta = SegmentMeta {
            db_id,
            epoch,
            page_size,
            kind: SegmentKind::Segment,
        };
        let (seg, body) = put_segment(core, &meta, &pages)?;
        METRICS.segments_uploaded.inc();
        // The last upload of a closing replica releases the lease with the
        // same put (no commit can follow: its connections are closed).
        let closing_done =
            self.shutdown_deadline.is_some() && core.progress.lock().committed == last.txid;
        let lease_until = if closing_done {
            Millis(0)
        } else {
            self.renewed_lease()
        };
        self.publish_until(
            |m| {
                m.segments.push(seg.clone());
                m.head = last.txid;
                m.head_commit = last.commit;
                m.db_pages = last.db_pages;
                m.page_size = page_size;
            },
            lease_until,
        )?;
        self.remember(seg.key.clone(), body);
        // The bucket now has it: trim progress and remember the head locally.
        let mut p = core.progress.lock();
        p.replicated = last.txid;
        let now = Millis::now();
        while let Some((txid, t)) = p.pending.front().copied() {
            if txid > last.txid {
                break;
            }
            METRICS
                .replication_lag
                .observe(now.0.saturating_sub(t.0) as f64 / 1000.0);
            p.pending.pop_front();
        }
        let db = core.keys.label();
        METRICS
            .replicated_txid
            .with_label_values(&[&db])
            .set(last.txid.0 as i64);
        let lag = p
            .pending
            .front()
            .map_or(0, |(_, t)| now.0.saturating_sub(t.0));
        METRICS.lag_ms.with_label_values(&[&db]).set(lag as i64);
        core.progress_cv.notify_all();
        drop(p);
        // Saved before the spool file is removed: a crash in between leaves
        // records the next open skips (txid <= head), never a gap.
        LocalState {
            db_id,
            page_size,
            head: last.txid,
            wal: last.wal,
        }
        .save(&core.dir)?;
        Ok(())
    }

    /// Apply `change` to the manifest and write it conditionally. A conflict
    /// caused by our own lost response is recognised and absorbed.
    fn publish(&mut self, change: impl Fn(&mut Manifest)) -> Result<()> {
        self.publish_until(change, self.renewed_lease())
    }

    /// A lease renewed now expires at this time.
    fn renewed_lease(&self) -> Millis {
        Millis(Millis::now().0 + self.core.cfg.lease_ttl.as_millis() as u64)
    }

    fn publish_until(&mut self, change: impl Fn(&mut Manifest), lease_until: Millis) -> Result<()> {
        let core = self.core.clone();
        let key = core.keys.manifest();
        let Some((mut m, etag)) = self.manifest.clone() else {
            return Err(Error::unavailable("writer epoch not claimed"));
        };
        let mut etag = etag;
        loop {
            let mut next = m.clone();
            change(&mut next);
            next.updated = Millis::now();
            // Every update renews the lease; `lease_until` 0 releases it.
            next.lease = (lease_until.0 > 0).then(|| lease_of(&core, next.epoch, lease_until));
            match core.cfg.store.put_if_match(&key, next.to_bytes(), &etag) {
                Ok(new_etag) => {
                    self.manifest = Some((next, new_etag));
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    let obj = core
                        .cfg
                        .store
                        .get(&key)
                        .map_err(|e| e.context(format!("re-read {key}")))?;
                    let current = Manifest::from_bytes(&obj.data).map_err(|e| e.context(&key))?;
                    if current.epoch != m.epoch {
                        return Err(Error::conflict(format!(
                            "another writer (epoch {}, {}) took over {}: this writer (epoch {}) stopped; \
                             its unreplicated transactions are kept in {}",
                            current.epoch,
                            current.writer.as_deref().unwrap_or("unknown"),
                            core.keys.root(),
                            m.epoch,
                            core.dir.display()
                        )));
                    }
                    if current.head == next.head
                        && current.snapshot == next.snapshot
                        && current.lease == next.lease
                    {
                        self.manifest = Some((current, obj.etag));
                        return Ok(());
                    }
                    m = current;
                    etag = obj.etag;
                }
                Err(e) => return Err(e.context(format!("update {key}"))),
            }
        }
    }

    /// Write a snapshot once enough history has piled up since the last one,
    /// then apply retention.
    /// Keep the manifest short. Every upload adds a segment, and between
    /// snapshots (up to a day apart) a writer that commits often adds
    /// thousands: every upload would rewrite, and every cold open read and
    /// index, all of them. When the manifest lists more than
    /// `merge_segments`, the newest run of this epoch's segments that
    /// together stay under `SEGMENT_TARGET` is rewritten as one segment
    /// holding the same transactions (so every point in time stays
    /// readable), and the manifest names it instead. The small objects stay
    /// until retention removes them: a reader may still hold a page map that
    /// names them, and within an epoch a txid has one content, so history
    /// may use either (`history::chain` prefers what the manifest lists).
    fn maybe_merge(&mut self) -> Result<()> {
        let Some((m, _)) = &self.manifest else {
            return Ok(());
        };
        let max = self.core.cfg.merge_segments.max(2);
        if m.segments.len() <= max {
            return Ok(());
        }
        let Some(epoch) = m.segments.last().map(|s| s.epoch) else {
            return Ok(());
        };
        let mut start = m.segments.len();
        let mut bytes = 0;
        while let Some(s) = start.checked_sub(1).map(|i| &m.segments[i]) {
            if s.epoch != epoch || bytes + s.size > MERGE_BYTES {
                break;
            }
            bytes += s.size;
            start -= 1;
        }
        let run: Vec<SegmentRef> = m.segments[start..].to_vec();
        if run.len() < 2 {
            return Ok(());
        }
        let core = self.core.clone();
        let store = core.cfg.store.as_ref();
        let db_id = m.db_id;
        let recent = &self.recent;
        let fetched: Vec<Result<segment::Segment>> = std::thread::scope(|s| {
            let handles: Vec<_> = run
                .chunks(run.len().div_ceil(8))
                .map(|chunk| {
                    s.spawn(move || -> Vec<Result<segment::Segment>> {
                        chunk
                            .iter()
                            .map(|r| {
                                let data = match recent.iter().find(|(k, _)| *k == r.key) {
                                    Some((_, b)) => b.clone(),
                                    None => store.get(&r.key).ctx(format!("read {}", r.key))?.data,
                                };
                                segment::decode_bytes(data).ctx(&r.key)
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(Error::corrupt("segment merge thread panicked"))]
                    })
                })
                .collect()
        });
        let mut txns: Vec<TxnPages> = Vec::new();
        let mut page_size = None;
        for seg in fetched {
            let seg = seg?;
            let ps = seg.index.header.page_size;
            if *page_size.get_or_insert(ps) != ps {
                // A page-size change (VACUUM) inside the run: leave it be.
                return Ok(());
            }
            txns.extend(seg.to_txns()?);
        }
        let (first, last) = (&run[0], &run[run.len() - 1]);
        if txns.first().map(|t| t.txid) != Some(first.first)
            || txns.last().map(|t| t.txid) != Some(last.last)
            || txns.windows(2).any(|w| w[1].txid != w[0].txid.next())
        {
            return Err(Error::corrupt(format!(
                "segments {}..{} do not hold consecutive transactions",
                first.key, last.key
            )));
        }
        let meta = SegmentMeta {
            db_id,
            epoch,
            page_size: page_size.unwrap_or(0),
            kind: SegmentKind::Segment,
        };
        let (merged, body) = put_segment(&core, &meta, &txns)?;
        let size = merged.size;
        let gone: Vec<String> = run.iter().map(|r| r.key.clone()).collect();
        self.publish(|m| {
            if let Some(at) = m.segments.iter().position(|s| gone.contains(&s.key)) {
                m.segments.retain(|s| !gone.contains(&s.key));
                m.segments.insert(at, merged.clone());
            }
        })?;
        self.recent.retain(|(k, _)| !gone.contains(k));
        self.remember(merged.key.clone(), body);
        METRICS.segments_merged.inc_by(run.len() as u64);
        tracing::debug!(segments = run.len(), size, "merged small segments");
        Ok(())
    }

    /// Keep an uploaded segment's bytes for the next merge, within
    /// `RECENT_BYTES` (oldest dropped first: a merge only takes the newest).
    fn remember(&mut self, key: String, body: bytes::Bytes) {
        self.recent.push_back((key, body));
        let mut total: u64 = self.recent.iter().map(|(_, b)| b.len() as u64).sum();
        while total > RECENT_BYTES {
            let Some((_, b)) = self.recent.pop_front() else {
                break;
            };
            total -= b.len() as u64;
        }
    }

    fn maybe_snapshot(&mut self) -> Result<()> {
        let Some((m, _)) = &self.manifest else {
            return Ok(());
        };
        if m.segments.is_empty() {
            return Ok(());
        }
        let since: u64 = m.segments.iter().map(|s| s.size).sum();
        let db_bytes = m.db_pages as u64 * m.page_size as u64;
        let last_snap = m
            .snapshot
            .as_ref()
            .map_or(m.segments[0].first_commit, |s| s.commit);
        let age = Duration::from_millis(Millis::now().0.saturating_sub(last_snap.0));
        let shutting = self.shutdown_deadline.is_some();
        let due = since >= self.core.cfg.snapshot_min_bytes.max(db_bytes)
            || age >= self.core.cfg.snapshot_interval;
        if !due || shutting {
            return Ok(());
        }
        let (head, db_id) = (m.head, m.db_id);
        let core = self.core.clone();
        let snapshot = snapshot::write_latest(
            &core.cfg.store,
            &core.keys,
            m,
            &core.dir,
            core.cfg.snapshot_part_bytes,
        )?;
        let size = snapshot.size;
        self.publish(|m| {
            m.snapshot = Some(snapshot.clone());
            m.segments.retain(|s| s.first > head);
        })?;
        tracing::info!(txid = %head, size, db = %db_id, "snapshot written");
        if let Err(e) =
            super::history::apply_retention(&core.cfg.store, &core.keys, core.cfg.retention)
        {
            tracing::warn!(error = %e, "retention failed; will retry after the next snapshot");
        }
        Ok(())
    }
}

/// `host:pid:nonce@local-path`: who holds a lease (the nonce tells apart two
/// opens by one process).
pub(crate) fn writer_name(local: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}:{}:{:08x}@{}",
        host.trim(),
        std::process::id(),
        rand::random::<u32>(),
        local.display()
    )
}

/// Was `holder` an earlier writer of the same local file on this host? Then it
/// is gone: this process holds that file's writer lock (`flock`), which the
/// kernel released when the holder died. Its lease need not be waited out.
/// This writer's lease: bound to its node when it runs as one (no expiry
/// of its own), else by time until `until`.
fn lease_of(core: &Core, epoch: Epoch, until: Millis) -> Lease {
    match &core.cfg.node {
        Some(n) => Lease {
            holder: core.me.clone(),
            epoch,
            expires: Millis(0),
            node: Some(n.lease_node()),
        },
        None => Lease {
            holder: core.me.clone(),
            epoch,
            expires: until,
            node: None,
        },
    }
}

/// Whether `l` keeps this writer out at `now`: `Some(until when)` if
/// another writer holds it. A node-bound lease is held while its node beats
/// (one GET of its heartbeat); a time lease until it expires. Our own
/// lease, or one from this node's earlier process, never is.
fn held_by_other(core: &Core, l: &Lease, now: Millis) -> Result<Option<String>> {
    if let Some(n) = &l.node {
        if core.cfg.node.as_ref().is_some_and(|me| me.is(n)) {
            return Ok(None);
        }
        return Ok(
            super::node::holds(&core.cfg.store, n)?.then(|| format!("while node {} beats", n.id))
        );
    }
    let other = l.holder != core.me && l.expires > now && !same_node(&l.holder, &core.me);
    Ok(other.then(|| format!("until {}", l.expires.rfc3339())))
}

fn same_node(holder: &str, me: &str) -> bool {
    let node = |s: &str| {
        s.split_once(':')
            .map(|(h, _)| h.to_string())
            .zip(s.rsplit_once('@').map(|(_, p)| p.to_string()))
    };
    node(holder).is_some() && node(holder) == node(me)
}
