//! Fault injection around any store, for tests.
//!
//! All controls are thread-safe and take effect immediately, also while other
//! threads are calling the store. Named crash points are expressed as key
//! matches: "after segment upload, before manifest update" is
//! `fail_key_matching(Op::PutIfMatch, "manifest", 1)`.
//!
//! Per call, in order: the hook, the outage switch, `fail_next`, the
//! `fail_key_matching` rules (each failing call consumes one count of one
//! matching control), the latency, then the inner call, then the
//! `after_put_then_fail` rules ("the request succeeded but the response was
//! lost"). For `list` the "key" matched is the prefix.

use super::{ETag, Object, ObjectMeta, ObjectStore};
use crate::error::{Error, Result};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A store operation, as named by fault controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Get,
    GetRange,
    Put,
    PutIfAbsent,
    PutIfMatch,
    List,
    Delete,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Op::Get,
        Op::GetRange,
        Op::Put,
        Op::PutIfAbsent,
        Op::PutIfMatch,
        Op::List,
        Op::Delete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetRange => "get_range",
            Op::Put => "put",
            Op::PutIfAbsent => "put_if_absent",
            Op::PutIfMatch => "put_if_match",
            Op::List => "list",
            Op::Delete => "delete",
        }
    }

    /// Whether the op changes the bucket.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Op::Put | Op::PutIfAbsent | Op::PutIfMatch | Op::Delete
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Called before each op with the op and its key (the prefix for `list`);
/// returning `Some(err)` fails the op with `err` without reaching the store.
pub type Hook = Arc<dyn Fn(Op, &str) -> Option<Error> + Send + Sync>;

#[derive(Debug)]
struct Rule {
    op: Op,
    substring: String,
    remaining: usize,
}

/// Wraps a store and injects failures, latency and outages.
pub struct FaultStore<S> {
    inner: S,
    outage: AtomicBool,
    latency_us: AtomicU64,
    fail_next: [AtomicUsize; 7],
    fail_rules: Mutex<Vec<Rule>>,
    lost_rules: Mutex<Vec<Rule>>,
    hook: RwLock<Option<Hook>>,
    injected: AtomicU64,
}

impl<S: fmt::Debug> fmt::Debug for FaultStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .field("outage", &self.outage.load(Ordering::Relaxed))
            .field("injected", &self.injected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Consumes one count of the first rule matching `op` and `key`.
fn take_rule(rules: &Mutex<Vec<Rule>>, op: Op, key: &str) -> bool {
    let mut rules = rules.lock();
    let Some(i) = rules
        .iter()
        .position(|r| r.op == op && r.remaining > 0 && key.contains(r.substring.as_str()))
    else {
        return false;
    };
    rules[i].remaining -= 1;
    if rules[i].remaining == 0 {
        rules.remove(i);
    }
    true
}

impl<S: ObjectStore> FaultStore<S> {
    /// A wrapper that injects nothing until told to.
    pub fn new(inner: S) -> Self {
        FaultStore {
            inner,
            outage: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
            fail_next: Default::default(),
            fail_rules: Mutex::new(Vec::new()),
            lost_rules: Mutex::new(Vec::new()),
            hook: RwLock::new(None),
            injected: AtomicU64::new(0),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// While on, every op fails with `Unavailable` ("injected outage").
    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::SeqCst);
    }

    /// Delay added before every op that is not failed up front.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_us.store(
            latency.as_micros().min(u64::MAX as u128) as u64,
            Ordering::SeqCst,
        );
    }

    /// The next `n` calls of `op` fail with `Unavailable` (replaces any
    /// previous count for `op`; 0 clears it).
    pub fn fail_next(&self, op: Op, n: usize) {
        self.fail_next[op.index()].store(n, Ordering::SeqCst);
    }

    /// The next `n` calls of `op` whose key contains `substring` fail with
    /// `Unavailable` without reaching the store. Rules add up.
    pub fn fail_key_matching(&self, op: Op, substring: &str, n: usize) {
        if n > 0 {
            self.fail_rules.lock().push(Rule {
                op,
                substring: substring.to_string(),
                remaining: n,
            });
        }
    }

    /// The next `n` calls of `op` whose key contains `substring` (`""`
    /// matches all) reach the store, and if the store succeeds the call still
    /// returns `Unavailable`: the request was applied but its response was
    /// lost. Meant for `Put*` and `Delete`. `usize::MAX` means "always".
    pub fn after_put_then_fail(&self, op: Op, substring: &str, n: usize) {
        if n > 0 {
            self.lost_rules.lock().push(Rule {
                op,
                substring: substring.to_string(),
                remaining: n,
            });
        }
    }

    /// Installs (or with `None` removes) the hook called before each op.
    pub fn set_hook(&self, hook: Option<Hook>) {
        *self.hook.write() = hook;
    }

    /// Removes every fault: outage, latency, counts, rules and the hook.
    pub fn clear(&self) {
        self.set_outage(false);
        self.set_latency(Duration::ZERO);
        for c in &self.fail_next {
            c.store(0, Ordering::SeqCst);
        }
        self.fail_rules.lock().clear();
        self.lost_rules.lock().clear();
        self.set_hook(None);
    }

    /// How many calls have failed because of an injected fault so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn inject(&self, err: Error) -> Error {
        self.injected.fetch_add(1, Ordering::SeqCst);
        err
    }

    fn call<T>(&self, op: Op, key: &str, f: impl FnOnce(&S) -> Result<T>) -> Result<T> {
        // Clone the hook out so it runs without the lock (it may call set_hook).
        let hook = self.hook.read().clone();
        if let Some(hook) = hook
            && let Some(err) = hook(op, key)
        {
            return Err(self.inject(err));
        }
        if self.outage.load(Ordering::SeqCst) {
            return Err(self.inject(Error::unavailable(format!("{op} {key}: injected outage"))));
        }
        let armed =
            self.fail_next[op.index()]
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if armed.is_ok() {
            return Err(self.inject(Error::unavailable(format!("{op} {key}: injected failure"))));
        }
        if take_rule(&self.fail_rules, op, key) {
            return Err(self.inject(Error::unavailable(format!(
                "{op} {key}: injected failure (key match)"
            ))));
        }
        let latency = self.latency_us.load(Ordering::SeqCst);
        if latency > 0 {
            std::thread::sleep(Duration::from_micros(latency));
        }
        // Decide before the call so concurrent callers consume counts exactly.
        let lose_response = take_rule(&self.lost_rules, op, key);
        let out = f(&self.inner)?;
        if lose_response {
            return Err(self.inject(Error::unavailable(format!(
                "{op} {key}: injected failure after the request was applied (response lost)"
            ))));
        }
        Ok(out)
    }
}

impl<S: ObjectStore> ObjectStore for FaultStore<S> {
    fn get(&self, key: &str) -> Result<Object> {
        self.call(Op::Get, key, |s| s.get(key))
    }

    fn get_into(&self, key: &str, out: &mut [u8]) -> Result<u64> {
        self.call(Op::Get, key, |s| s.get_into(key, out))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.call(Op::GetRange, key, |s| s.get_range(key, range))
    }

    fn put(&self, key: &str, data: Bytes) -> Result<ETag> {
        self.call(Op::Put, key, |s| s.put(key, data))
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ETag> {
        self.call(Op::PutIfAbsent, key, |s| s.put_if_absent(key, data))
    }

    fn put_if_match(&self, key: &str, data: Bytes, etag: &ETag) -> Result<ETag> {
        self.call(Op::PutIfMatch, key, |s| s.put_if_match(key, data, etag))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.call(Op::List, prefix, |s| s.list(prefix))
    }

    fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        self.call(Op::List, dir, |s| s.list_dirs(dir))
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.call(Op::Delete, key, |s| s.delete(key))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn identity(&self) -> String {
        self.inner.identity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::bucket::Store;
    use crate::bucket::memory::MemoryStore;
    use std::time::Instant;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn contract_without_faults() {
        let store = FaultStore::new(MemoryStore::new());
        super::super::contract::run_all(&store);
        assert_eq!(store.injected(), 0);
    }

    #[test]
    fn wraps_a_shared_store() {
        let inner: Store = Arc::new(MemoryStore::new());
        let store = FaultStore::new(inner.clone());
        store.put("k", b("v")).unwrap();
        assert_eq!(inner.get("k").unwrap().data, b("v"));
    }

    #[test]
    fn outage() {
        let store = FaultStore::new(MemoryStore::new());
        store.put("k", b("v")).unwrap();
        store.set_outage(true);
        let err = store.get("k").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.to_string().contains("injected outage"), "{err}");
        assert_eq!(
            store.put("k2", b("v")).unwrap_err().kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(store.list("").unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(
            store.delete("k").unwrap_err().kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(store.injected(), 4);
        store.set_outage(false);
        assert_eq!(store.get("k").unwrap().data, b("v"));
        assert!(
            store.inner().get("k2").is_err(),
            "nothing reached the store during the outage"
        );
    }

    #[test]
    fn fail_next() {
        let store = FaultStore::new(MemoryStore::new());
        store.fail_next(Op::Put, 2);
        assert_eq!(
            store.put("a", b("1")).unwrap_err().kind(),
            ErrorKind::Unavailable
        );
        // Other ops are unaffected.
        store.put_if_absent("b", b("1")).unwrap();
        assert_eq!(
            store.put("a", b("2")).unwrap_err().kind(),
            ErrorKind::Unavailable
        );
        store.put("a", b("3")).unwrap();
        assert_eq!(store.get("a").unwrap().data, b("3"));
        assert_eq!(store.injected(), 2);
        store.fail_next(Op::Get, 5);
        store.fail_next(Op::Get, 0);
        store.get("a").unwrap();
    }

    #[test]
    fn fail_key_matching() {
        let store = FaultStore::new(MemoryStore::new());
        let e = store.put("db/manifest.json", b("m1")).unwrap();
        // "after segment upload, before manifest update"
        store.fail_key_matching(Op::PutIfMatch, "manifest", 1);
        store.put_if_absent("db/segments/1", b("seg")).unwrap();
        let err = store
            .put_if_match("db/manifest.json", b("m2"), &e)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(
            store.get("db/manifest.json").unwrap().data,
            b("m1"),
            "not applied"
        );
        store.put_if_match("db/manifest.json", b("m2"), &e).unwrap();
        // Non-matching keys and other ops pass.
        store.fail_key_matching(Op::Get, "segments", 2);
        store.get("db/manifest.json").unwrap();
        store.get("db/segments/1").unwrap_err();
        store.get("db/segments/1").unwrap_err();
        store.get("db/segments/1").unwrap();
        assert_eq!(store.injected(), 3);
    }

    #[test]
    fn response_lost() {
        let store = FaultStore::new(MemoryStore::new());
        store.after_put_then_fail(Op::PutIfAbsent, "manifest", 1);
        let err = store
            .put_if_absent("db/manifest.json", b("m1"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.to_string().contains("response lost"), "{err}");
        // The write was applied: a retry now conflicts, as on a real server.
        let obj = store.get("db/manifest.json").unwrap();
        assert_eq!(obj.data, b("m1"));
        assert_eq!(
            store
                .put_if_absent("db/manifest.json", b("m1"))
                .unwrap_err()
                .kind(),
            ErrorKind::Conflict
        );

        store.after_put_then_fail(Op::PutIfMatch, "", 1);
        store
            .put_if_match("db/manifest.json", b("m2"), &obj.etag)
            .unwrap_err();
        assert_eq!(store.get("db/manifest.json").unwrap().data, b("m2"));
        // An inner failure is reported as itself and does not consume a count.
        store.after_put_then_fail(Op::PutIfMatch, "", 1);
        let err = store
            .put_if_match("db/manifest.json", b("m3"), &obj.etag)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(store.injected(), 2);
    }

    #[test]
    fn hook() {
        let store = FaultStore::new(MemoryStore::new());
        store.set_hook(Some(Arc::new(|op, key| {
            (op == Op::Delete && key.starts_with("keep/")).then(|| Error::conflict("hook says no"))
        })));
        store.put("keep/a", b("1")).unwrap();
        assert_eq!(
            store.delete("keep/a").unwrap_err().kind(),
            ErrorKind::Conflict
        );
        store.delete("other").unwrap();
        store.set_hook(None);
        store.delete("keep/a").unwrap();
        assert_eq!(store.injected(), 1);
    }

    #[test]
    fn latency_and_clear() {
        let store = FaultStore::new(MemoryStore::new());
        store.set_latency(Duration::from_millis(50));
        let t = Instant::now();
        store.put("a", b("1")).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(50));
        store.set_outage(true);
        store.fail_next(Op::Get, 3);
        store.fail_key_matching(Op::Get, "a", 3);
        store.after_put_then_fail(Op::Put, "", 3);
        store.clear();
        let t = Instant::now();
        store.get("a").unwrap();
        store.put("a", b("2")).unwrap();
        assert!(t.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn controls_are_thread_safe() {
        let store = Arc::new(FaultStore::new(MemoryStore::new()));
        store.put("k", b("v")).unwrap();
        store.fail_next(Op::Get, 100);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || (0..100).filter(|_| store.get("k").is_err()).count())
            })
            .collect();
        let failed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(failed, 100, "exactly the armed count failed");
        assert_eq!(store.injected(), 100);
    }
}
