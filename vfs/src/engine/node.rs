//! Node membership: this process's heartbeat, and what other nodes' say.
//!
//! A node keeps one object, `_strata/nodes/<id>.json`, and replaces it
//! every `heartbeat` with a conditional put on the etag it last wrote: one
//! request per beat, however many databases it holds. A writer opened with
//! a [`Node`] (`ReplicaConfig::node`, URI parameter `node=`) binds its lease
//! to it ([`LeaseNode`]): the lease needs no renewal of its own (an idle
//! database makes no request at all) and is valid exactly while the node's
//! heartbeat is fresh and names the same incarnation. When the node dies,
//! every one of its leases becomes claimable once its beat is `ttl` old.
//!
//! The holder's side of the bargain ([`Node::check`]): a node that has not
//! finished a beat attempt within `ttl` (paused, stuck) must not act on its
//! leases until it has; a beat that succeeds after a gap longer than `ttl`
//! is a *lapse*: another node may have taken any lease meanwhile, so the
//! lapse callback runs (the server drops every tenant it had loaded) before
//! the node counts as fresh again. Writes never depend on this: the
//! manifest's conditional put fences a writer whose epoch was taken.
//!
//! Times in heartbeats are wall-clock milliseconds: nodes' clocks must agree
//! to well within `ttl` (NTP gives milliseconds), as for time leases.

use crate::bucket::{ETag, Store};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::format::manifest::LeaseNode;
use crate::format::node::{Heartbeat, NODE_FORMAT, NODES_PREFIX, NodeState, node_key};
use crate::types::Millis;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: String,
    /// How other nodes reach this one; opaque to the engine.
    pub advertise: String,
    /// A beat this often.
    pub heartbeat: Duration,
    /// Leases of this node are claimable once its beat is this old.
    pub ttl: Duration,
}

type LapseFn = Box<dyn Fn() + Send + Sync>;

/// This process's membership: started by [`Node::start`], beating on its own
/// thread until [`Node::stop`].
pub struct Node {
    cfg: NodeConfig,
    store: Store,
    incarnation: String,
    started: Millis,
    inner: Mutex<Inner>,
    wake: Condvar,
    on_lapse: Mutex<Vec<LapseFn>>,
    lapses: AtomicU64,
    beats: AtomicU64,
    failed_beats: AtomicU64,
}

struct Inner {
    etag: Option<ETag>,
    seq: u64,
    state: NodeState,
    tenants: u64,
    /// When the last successful beat was sent (taken before its put).
    last_ok: Instant,
    /// When the last attempt, successful or not, finished.
    last_attempt: Instant,
    /// Attempts were more than a ttl apart (the process was paused): not
    /// serving until a successful beat has handled the lapse, even if the
    /// attempts in between fail.
    paused: bool,
    /// Another process took over this node id: nothing is ours any more.
    lost: Option<String>,
    stopping: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.cfg.id)
            .field("incarnation", &self.incarnation)
            .finish()
    }
}

/// Nodes running in this process, by id (the VFS's `node=` parameter).
static LOCAL: LazyLock<Mutex<HashMap<String, Weak<Node>>>> = LazyLock::new(Default::default);

/// The node `id` running in this process.
pub fn local(id: &str) -> Result<Arc<Node>> {
    LOCAL
        .lock()
        .get(id)
        .and_then(Weak::upgrade)
        .ok_or_else(|| {
            Error::invalid(format!(
                "node {id:?} is not running in this process (node= names a node started with it, as `strata serve --node-id`)"
            ))
        })
}

impl Node {
    /// Join: write the first beat and start beating. Refused while another
    /// live process beats under the same id.
    pub fn start(store: Store, cfg: NodeConfig) -> Result<Arc<Node>> {
        let key = node_key(&cfg.id)?;
        if cfg.heartbeat.is_zero() || cfg.ttl <= cfg.heartbeat {
            return Err(Error::invalid(format!(
                "the node ttl ({:?}) must be longer than the heartbeat ({:?})",
                cfg.ttl, cfg.heartbeat
            )));
        }
        let now = Instant::now();
        let node = Arc::new(Node {
            incarnation: format!("{:016x}", rand::random::<u64>()),
            started: Millis::now(),
            inner: Mutex::new(Inner {
                etag: None,
                seq: 0,
                state: NodeState::Serving,
                tenants: 0,
                last_ok: now,
                last_attempt: now,
                paused: false,
                lost: None,
                stopping: false,
                thread: None,
            }),
            wake: Condvar::new(),
            on_lapse: Mutex::new(Vec::new()),
            lapses: AtomicU64::new(0),
            beats: AtomicU64::new(0),
            failed_beats: AtomicU64::new(0),
            store,
            cfg,
        });
        // A fresh beat of another process under this id: take over if that
        // process is gone (it ran on this machine and its pid is free, or
        // its beats stopped for a ttl), refuse if it still beats.
        let mut waited: Option<u64> = None;
        let etag = loop {
            let seen = match node.store.get(&key) {
                Ok(obj) => Some(obj),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.context(format!("read {key}"))),
            };
            let Some(obj) = seen else {
                break node.put_beat(None)?;
            };
            let h = Heartbeat::from_bytes(&obj.data).map_err(|e| e.context(&key))?;
            let now = Millis::now();
            if !h.alive_at(now) || gone_from_this_machine(&h) {
                break node.put_beat(Some(&obj.etag))?;
            }
            if waited.is_some_and(|seq| seq != h.seq) {
                return Err(Error::conflict(format!(
                    "node id {} is in use by a live process (at {}, last beat {} ms ago): \
                     give this node another --node-id, or stop that one",
                    h.node,
                    h.advertise,
                    h.age(now).as_millis()
                )));
            }
            waited = Some(h.seq);
            let left = h.beat.0.saturating_add(h.ttl_ms).saturating_sub(now.0);
            tracing::info!(node = %h.node, wait_ms = left, "a previous process of this node id may still run: waiting for its heartbeat to go stale");
            std::thread::sleep(Duration::from_millis(left + 10));
        };
        node.inner.lock().etag = Some(etag);
        LOCAL
            .lock()
            .insert(node.cfg.id.clone(), Arc::downgrade(&node));
        let beating = node.clone();
        let handle = std::thread::Builder::new()
            .name(format!("strata-node-{}", node.cfg.id))
            .spawn(move || beating.run())
            .map_err(|e| Error::unavailable(format!("start the heartbeat thread: {e}")))?;
        node.inner.lock().thread = Some(handle);
        tracing::info!(node = %node.cfg.id, incarnation = %node.incarnation, "node joined");
        Ok(node)
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// What a lease taken by this node names.
    pub fn lease_node(&self) -> LeaseNode {
        LeaseNode {
            id: self.cfg.id.clone(),
            incarnation: self.incarnation.clone(),
        }
    }

    /// Whether `n` is this process's node.
    pub fn is(&self, n: &LeaseNode) -> bool {
        n.id == self.cfg.id && n.incarnation == self.incarnation
    }

    /// Run `f` at every lapse (on the heartbeat thread, before the node
    /// counts as fresh again).
    pub fn on_lapse(&self, f: impl Fn() + Send + Sync + 'static) {
        self.on_lapse.lock().push(Box::new(f));
    }

    /// May this node act on its leases now? `Unavailable` while it has not
    /// finished a beat attempt within its ttl (it was paused: its leases may
    /// be another node's by now, which the next beat finds out), and for
    /// good once another process took its id. A beat that fails because the
    /// bucket is down does not stop the node: nobody can claim its leases
    /// without the bucket either.
    pub fn check(&self) -> Result<()> {
        let i = self.inner.lock();
        if let Some(why) = &i.lost {
            return Err(Error::unavailable(why.clone()));
        }
        if i.paused || i.last_attempt.elapsed() >= self.cfg.ttl {
            return Err(Error::unavailable(format!(
                "node {} has not beaten for {} ms (paused?): its leases are being checked",
                self.cfg.id,
                i.last_attempt.elapsed().as_millis()
            )));
        }
        Ok(())
    }

    /// Time since the last successful beat was sent.
    pub fn beat_age(&self) -> Duration {
        self.inner.lock().last_ok.elapsed()
    }

    /// Lapses so far, successful and failed beats.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.lapses.load(Ordering::Relaxed),
            self.beats.load(Ordering::Relaxed),
            self.failed_beats.load(Ordering::Relaxed),
        )
    }

    /// Tenants loaded, told in the next beat.
    pub fn set_tenants(&self, n: u64) {
        self.inner.lock().tenants = n;
    }

    /// Say `state` now (a beat at once).
    pub fn set_state(&self, state: NodeState) -> Result<()> {
        self.inner.lock().state = state;
        self.beat()
    }

    /// Leave: a last beat saying `stopped` (every lease of the node becomes
    /// claimable at once), and no more beats.
    pub fn stop(&self) {
        let thread = {
            let mut i = self.inner.lock();
            i.stopping = true;
            i.state = NodeState::Stopped;
            i.thread.take()
        };
        self.wake.notify_all();
        if let Some(t) = thread {
            let _ = t.join();
        }
        if let Err(e) = self.beat() {
            tracing::warn!(node = %self.cfg.id, error = %e, "could not say stopped; the heartbeat goes stale by itself");
        }
        LOCAL.lock().remove(&self.cfg.id);
        tracing::info!(node = %self.cfg.id, "node left");
    }

    /// Stop beating without a word, as a crashed process does (fault
    /// drills and tests): the heartbeat goes stale after its ttl.
    pub fn abandon(&self) {
        let thread = {
            let mut i = self.inner.lock();
            i.stopping = true;
            i.thread.take()
        };
        self.wake.notify_all();
        if let Some(t) = thread {
            let _ = t.join();
        }
        LOCAL.lock().remove(&self.cfg.id);
    }

    fn run(&self) {
        loop {
            {
                let mut i = self.inner.lock();
                if i.stopping || i.lost.is_some() {
                    return;
                }
                let _ = self.wake.wait_for(&mut i, self.cfg.heartbeat);
                if i.stopping {
                    return;
                }
            }
            if let Err(e) = self.beat() {
                tracing::warn!(node = %self.cfg.id, error = %e, "heartbeat failed; retried next beat");
            }
        }
    }

    /// One beat: the heartbeat object replaced on our etag.
    fn beat(&self) -> Result<()> {
        let sent = Instant::now();
        let etag = {
            let mut i = self.inner.lock();
            if sent.saturating_duration_since(i.last_attempt) >= self.cfg.ttl {
                i.paused = true;
            }
            i.etag.clone()
        };
        let result = self.put_beat(etag.as_ref());
        let mut i = self.inner.lock();
        match result {
            Ok(etag) => {
                self.beats.fetch_add(1, Ordering::Relaxed);
                i.etag = Some(etag);
                let gap = sent.saturating_duration_since(i.last_ok);
                if gap >= self.cfg.ttl || i.paused {
                    // Handled before `check` passes again (it fails until
                    // `last_attempt` moves).
                    self.lapses.fetch_add(1, Ordering::Relaxed);
                    drop(i);
                    tracing::warn!(node = %self.cfg.id, gap_ms = gap.as_millis() as u64, "lapse: no beat for longer than the node ttl; dropping what the node held");
                    for f in self.on_lapse.lock().iter() {
                        f();
                    }
                    i = self.inner.lock();
                }
                i.last_ok = sent;
                i.last_attempt = Instant::now();
                i.paused = false;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                i.last_attempt = Instant::now();
                self.failed_beats.fetch_add(1, Ordering::Relaxed);
                let why = format!(
                    "node id {} was taken over by another process: this one holds nothing",
                    self.cfg.id
                );
                tracing::error!(node = %self.cfg.id, "{why}");
                i.lost = Some(why.clone());
                drop(i);
                for f in self.on_lapse.lock().iter() {
                    f();
                }
                Err(Error::conflict(why))
            }
            Err(e) => {
                i.last_attempt = Instant::now();
                self.failed_beats.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Write a beat, conditional on `etag` (or create-only without one). A
    /// conflict that is our own lost response is absorbed.
    fn put_beat(&self, etag: Option<&ETag>) -> Result<ETag> {
        let key = node_key(&self.cfg.id)?;
        let h = {
            let mut i = self.inner.lock();
            i.seq += 1;
            Heartbeat {
                format: NODE_FORMAT,
                node: self.cfg.id.clone(),
                incarnation: self.incarnation.clone(),
                advertise: self.cfg.advertise.clone(),
                state: i.state,
                started: self.started,
                beat: Millis::now(),
                ttl_ms: self.cfg.ttl.as_millis() as u64,
                seq: i.seq,
                tenants: i.tenants,
                host: this_host(),
                pid: std::process::id(),
            }
        };
        let put = match etag {
            Some(etag) => self.store.put_if_match(&key, h.to_bytes(), etag),
            None => self.store.put_if_absent(&key, h.to_bytes()),
        };
        match put {
            Err(e) if e.kind() == ErrorKind::Conflict => {
                // Ours if the object there is this very beat.
                let obj = self.store.get(&key).ctx(format!("re-read {key}"))?;
                let there = Heartbeat::from_bytes(&obj.data).map_err(|e| e.context(&key))?;
                if there.incarnation == self.incarnation && there.seq == h.seq {
                    Ok(obj.etag)
                } else {
                    Err(e)
                }
            }
            other => other.map_err(|e| e.context(format!("beat {key}"))),
        }
    }
}

/// This machine's name, as heartbeats record it.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Did `h` come from a process of this machine that no longer runs?
fn gone_from_this_machine(h: &Heartbeat) -> bool {
    if h.host.is_empty() || h.host != this_host() || h.pid == 0 || h.pid == std::process::id() {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(h.pid as libc::pid_t, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The heartbeat of `node`, if it has one.
pub fn read(store: &Store, node: &str) -> Result<Option<Heartbeat>> {
    let key = node_key(node)?;
    match store.get(&key) {
        Ok(obj) => Heartbeat::from_bytes(&obj.data)
            .map(Some)
            .map_err(|e| e.context(&key)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.context(format!("read {key}"))),
    }
}

/// Is the lease bound to `n` still held: does its node beat, as the same
/// incarnation, within its ttl? One GET.
pub fn holds(store: &Store, n: &LeaseNode) -> Result<bool> {
    Ok(read(store, &n.id)?
        .is_some_and(|h| h.incarnation == n.incarnation && h.alive_at(Millis::now())))
}

/// Every node's heartbeat, live or not (a LIST and one GET per node),
/// sorted by id. Unreadable ones are skipped with a warning.
pub fn list(store: &Store) -> Result<Vec<Heartbeat>> {
    let mut out = Vec::new();
    for o in store.list(NODES_PREFIX).ctx("list nodes")? {
        let Some(id) = crate::format::node::parse_node_key(&o.key) else {
            continue;
        };
        match read(store, id) {
            Ok(Some(h)) => out.push(h),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                tracing::warn!(key = %o.key, error = %e, "unreadable heartbeat skipped")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::memory::MemoryStore;

    fn cfg(id: &str, beat_ms: u64, ttl_ms: u64) -> NodeConfig {
        NodeConfig {
            id: id.into(),
            advertise: format!("http://{id}"),
            heartbeat: Duration::from_millis(beat_ms),
            ttl: Duration::from_millis(ttl_ms),
        }
    }

    fn store() -> Store {
        Arc::new(MemoryStore::new())
    }

    #[test]
    fn a_node_beats_and_its_leases_hold_until_it_stops() {
        let s = store();
        let n = Node::start(s.clone(), cfg("unit-a", 20, 400)).unwrap();
        let lease = n.lease_node();
        assert!(holds(&s, &lease).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        let h = read(&s, "unit-a").unwrap().unwrap();
        assert!(h.seq >= 3, "beats went on: seq {}", h.seq);
        assert!(n.check().is_ok());
        assert_eq!(local("unit-a").unwrap().incarnation(), n.incarnation());
        n.stop();
        assert!(!holds(&s, &lease).unwrap(), "a stopped node holds nothing");
        assert!(local("unit-a").is_err());
    }

    #[test]
    fn a_second_process_cannot_take_a_live_node_id_but_takes_a_dead_ones() {
        let s = store();
        let a = Node::start(s.clone(), cfg("unit-b", 20, 300)).unwrap();
        let e = Node::start(s.clone(), cfg("unit-b", 20, 300)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert!(e.to_string().contains("in use"), "{e}");
        let old = a.lease_node();
        // Dies without a word: the beats stop.
        a.abandon();
        std::thread::sleep(Duration::from_millis(350));
        assert!(!holds(&s, &old).unwrap(), "a stale beat holds nothing");
        let b = Node::start(s.clone(), cfg("unit-b", 20, 300)).unwrap();
        assert!(
            !holds(&s, &old).unwrap(),
            "the new incarnation does not revive old leases"
        );
        assert!(holds(&s, &b.lease_node()).unwrap());
        // The old process, waking, finds its id taken: it holds nothing.
        assert!(a.beat().is_err());
        assert!(a.check().is_err());
        b.stop();
    }

    #[test]
    fn a_beat_after_a_gap_longer_than_the_ttl_is_a_lapse_that_runs_first() {
        let faults = Arc::new(crate::bucket::fault::FaultStore::new(MemoryStore::new()));
        let s: Store = faults.clone();
        let n = Node::start(s.clone(), cfg("unit-c", 20, 200)).unwrap();
        // As if paused: the beating thread is gone; beats are ours to make.
        n.abandon();
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        n.on_lapse(move || {
            s2.fetch_add(1, Ordering::SeqCst);
        });
        n.beat().unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 0, "no gap, no lapse");
        std::thread::sleep(Duration::from_millis(250));
        let e = n.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        n.beat().unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert!(n.check().is_ok(), "fresh again after the lapse was handled");
        // Paused again, and the first beat after waking fails (the bucket
        // hiccups): still not serving, as the lapse is not handled yet.
        std::thread::sleep(Duration::from_millis(250));
        faults.set_outage(true);
        assert!(n.beat().is_err());
        assert!(
            n.check().is_err(),
            "a failed beat after a pause must not clear it"
        );
        faults.set_outage(false);
        n.beat().unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert!(n.check().is_ok());
        // The bucket down while the node runs: failing beats keep it serving
        // (nobody can claim its leases without the bucket either).
        faults.set_outage(true);
        for _ in 0..3 {
            assert!(n.beat().is_err());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(n.check().is_ok(), "an outage alone does not stop the node");
        faults.set_outage(false);
        n.stop();
    }
}
