//! Handing a WAL database's write lock to the next writer of this process.
//!
//! A connection that cannot take the WAL write lock gets SQLITE_BUSY, and
//! SQLite's busy handler sleeps through the connection's VFS (`xSleep`) for
//! 1, 2, 5, 10, 15, ... ms, whether or not the lock is released meanwhile.
//! With many writers in one process (a server's connections; sync mode,
//! where one upload releases every writer at once) they spend most of that
//! time asleep next to a free lock: 16 sync-mode writers shared an upload
//! 10.6 at a time instead of 16 (`docs/benchmarks.md`).
//!
//! So each database has a [`WriteGate`]: a connection that fails to take the
//! write lock notes the gate on its thread ([`WriteGate::busy`]); the VFS's
//! `xSleep` ([`x_sleep`]) then waits on that gate and returns when the lock
//! is released ([`WriteGate::released`] wakes one sleeper per release,
//! oldest first), and never later than SQLite asked.
//!
//! Invariants:
//! - A sleep never lasts longer than asked, so nothing waits longer than
//!   with SQLite's own handler; writers in other processes are not seen,
//!   and a sleeper waiting on them sleeps as asked.
//! - SQLite counts its busy timeout in the sleeps it asked for, so a sleep
//!   that ends early makes the timeout end sooner in real time. A thread's
//!   early endings are capped at [`EARLY_CAP`] until it takes the lock; past
//!   that it sleeps as asked: `busy_timeout` ends at most that much early.

// Without a way to register (no `static`/`dynamic` feature) nothing sleeps here.
#![cfg_attr(not(any(feature = "static", feature = "dynamic")), allow(dead_code))]

use crate::metrics::METRICS;
use parking_lot::{Condvar, Mutex};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

/// Offset of the WAL write lock among the shm locks (`WAL_WRITE_LOCK`).
pub(super) const WAL_WRITE_LOCK: u32 = 0;

/// Sleep time a thread may save, in total, until it takes the write lock.
const EARLY_CAP: Duration = Duration::from_millis(100);

/// A busy wait noted this long before the sleep is not the sleep's cause
/// (SQLite sleeps microseconds after the failed lock).
const STALE: Duration = Duration::from_millis(10);

/// One database's write-lock releases, for the threads waiting to take it.
#[derive(Default)]
pub(super) struct WriteGate {
    /// How many times the lock was released: a sleeper waits for a change.
    releases: Mutex<u64>,
    cv: Condvar,
    /// Busy sleeps a release ended (`PRAGMA strata_write_lock_handoffs`).
    handoffs: std::sync::atomic::AtomicU64,
}

static GATES: LazyLock<Mutex<HashMap<PathBuf, Weak<WriteGate>>>> = LazyLock::new(Default::default);

/// The gate of the database at `path`, shared by all its connections here.
pub(super) fn gate(path: &Path) -> Arc<WriteGate> {
    let mut gates = GATES.lock();
    if let Some(g) = gates.get(path).and_then(Weak::upgrade) {
        return g;
    }
    gates.retain(|_, g| g.strong_count() > 0);
    let g = Arc::new(WriteGate::default());
    gates.insert(path.to_path_buf(), Arc::downgrade(&g));
    g
}

struct Waiting {
    gate: Arc<WriteGate>,
    /// `releases` when the lock was found taken.
    seen: u64,
    at: Instant,
}

thread_local! {
    /// The gate this thread failed to pass, until its next sleep.
    static WAITING: RefCell<Option<Waiting>> = const { RefCell::new(None) };
    /// Sleep time saved since this thread last took a write lock.
    static EARLY: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

impl WriteGate {
    /// This thread took the write lock.
    pub(super) fn taken(&self) {
        EARLY.set(Duration::ZERO);
        WAITING.set(None);
    }

    /// This thread found the write lock taken: its next sleep waits here.
    pub(super) fn busy(self: &Arc<Self>) {
        let seen = *self.releases.lock();
        WAITING.set(Some(Waiting {
            gate: self.clone(),
            seen,
            at: Instant::now(),
        }));
    }

    /// The write lock was released: wake the oldest sleeper.
    pub(super) fn released(&self) {
        *self.releases.lock() += 1;
        self.cv.notify_one();
    }

    /// Busy sleeps on this database a release ended, in this process.
    pub(super) fn handoffs(&self) -> u64 {
        self.handoffs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait until a release after `seen`, at most `asked`. True if woken by one.
    fn wait(&self, seen: u64, asked: Duration) -> bool {
        let deadline = Instant::now() + asked;
        let mut releases = self.releases.lock();
        while *releases == seen {
            if self.cv.wait_until(&mut releases, deadline).timed_out() {
                return *releases != seen;
            }
        }
        true
    }
}

/// Sleep for `asked`, or until the write lock this thread found taken is
/// released (within what is left of [`EARLY_CAP`]).
fn sleep(asked: Duration) {
    sleep_capped(asked, EARLY_CAP)
}

/// [`sleep`], with the cap as a parameter (tests).
fn sleep_capped(asked: Duration, cap: Duration) {
    let waiting = WAITING.take().filter(|w| w.at.elapsed() < STALE);
    let early = EARLY.get();
    match waiting {
        Some(w) if early < cap => {
            let started = Instant::now();
            if w.gate.wait(w.seen, asked) {
                METRICS.write_lock_handoffs.inc();
                w.gate
                    .handoffs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // Never save more than what is left of the cap.
            let floor = asked.saturating_sub(cap - early);
            if let Some(rest) = floor.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
            EARLY.set(early + asked.saturating_sub(started.elapsed()));
        }
        _ => std::thread::sleep(asked),
    }
}

/// The VFS's `xSleep`: SQLite's busy handler sleeps here between attempts.
/// Returns the microseconds SQLite asked for, as the unix VFS does.
pub(super) unsafe extern "C" fn x_sleep(_vfs: *mut super::ffi::sqlite3_vfs, us: c_int) -> c_int {
    sleep(Duration::from_micros(us.max(0) as u64));
    us
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_ends_the_sleep_of_a_thread_that_found_the_lock_taken() {
        let g = gate(Path::new("/busy-test/a.db"));
        let g2 = g.clone();
        let sleeper = std::thread::spawn(move || {
            g2.busy();
            let t = Instant::now();
            sleep_capped(Duration::from_secs(30), Duration::from_secs(60));
            (t.elapsed(), EARLY.get())
        });
        std::thread::sleep(Duration::from_millis(50));
        g.released();
        let (slept, early) = sleeper.join().unwrap();
        assert!(slept < Duration::from_secs(10), "slept {slept:?}");
        assert!(early > Duration::from_secs(20), "saved {early:?}");
    }

    #[test]
    fn a_release_before_the_sleep_is_not_missed() {
        let g = gate(Path::new("/busy-test/b.db"));
        g.busy();
        g.released();
        let t = Instant::now();
        sleep_capped(Duration::from_secs(30), Duration::from_secs(60));
        assert!(t.elapsed() < Duration::from_secs(10));
        g.taken();
        assert_eq!(EARLY.get(), Duration::ZERO);
    }

    #[test]
    fn past_the_cap_or_without_a_failed_lock_a_sleep_lasts_as_asked() {
        let g = gate(Path::new("/busy-test/c.db"));
        // No failed lock on this thread: a plain sleep.
        let t = Instant::now();
        sleep(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(30));
        // 10 ms of the cap left: a release ends a 30 ms sleep after 20.
        EARLY.set(EARLY_CAP - Duration::from_millis(10));
        g.busy();
        g.released();
        let t = Instant::now();
        sleep(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(20));
        assert!(EARLY.get() <= EARLY_CAP, "saved {:?}", EARLY.get());
        // Early endings used up: the release does not shorten the sleep.
        EARLY.set(EARLY_CAP);
        g.busy();
        g.released();
        let t = Instant::now();
        sleep(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(30));
        g.taken();
    }

    #[test]
    fn connections_to_one_database_share_its_gate() {
        let a = gate(Path::new("/busy-test/d.db"));
        assert!(Arc::ptr_eq(&a, &gate(Path::new("/busy-test/d.db"))));
        assert!(!Arc::ptr_eq(&a, &gate(Path::new("/busy-test/e.db"))));
    }
}
