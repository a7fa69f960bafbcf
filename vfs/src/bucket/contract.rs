//! The one backend test body. Every backend must pass `run_all`: unit tests
//! run it on the memory, local, fault and metered stores, `tests/` runs it on
//! S3 against a real S3-compatible server.
//!
//! Keys live under a random `contract-<hex>/` prefix, so it can run against a
//! shared bucket; it deletes what it wrote when it passes.
//!
//! Documented latitude between backends:
//! - `put_if_match` on a missing key is `Conflict` or `NotFound`. The trait
//!   says `Conflict`, and every backend here gives it (S3 itself answers 404
//!   NoSuchKey; `S3Store` maps that to `Conflict`), but callers must not
//!   depend on the difference.
//! - Two writes of the same content may or may not get the same etag.

use super::{ETag, ObjectMeta, ObjectStore};
use crate::ErrorKind;
use bytes::Bytes;
use std::sync::Barrier;

/// Runs every contract check against `store`. Panics on the first failure.
pub fn run_all(store: &dyn ObjectStore) {
    let base = format!("contract-{:016x}/", rand::random::<u64>());
    missing_key(store, &base);
    roundtrip(store, &base);
    get_range(store, &base);
    get_into(store, &base);
    put_if_absent(store, &base);
    put_if_match(store, &base);
    list(store, &base);
    delete(store, &base);
    bad_keys(store);
    race_put_if_absent(store, &base);
    race_put_if_match(store, &base);
    cleanup(store, &base);
}

fn kind_of<T: std::fmt::Debug>(r: crate::Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

/// Bytes that differ at every position, so an off-by-one shows.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

fn missing_key(store: &dyn ObjectStore, base: &str) {
    let key = format!("{base}missing/nothing-here");
    assert_eq!(
        kind_of(store.get(&key)),
        ErrorKind::NotFound,
        "get of a missing key"
    );
    assert_eq!(
        kind_of(store.get_range(&key, 0..10)),
        ErrorKind::NotFound,
        "get_range of a missing key"
    );
}

fn roundtrip(store: &dyn ObjectStore, base: &str) {
    for (name, data) in [
        ("small", Bytes::from_static(b"hello strata")),
        ("empty", Bytes::new()),
        ("one-mib", pattern(1 << 20, 7)),
    ] {
        let key = format!("{base}roundtrip/{name}");
        let etag = store
            .put(&key, data.clone())
            .unwrap_or_else(|e| panic!("put {name}: {e}"));
        let obj = store
            .get(&key)
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        assert_eq!(obj.data.len(), data.len(), "{name}: length");
        assert!(obj.data == data, "{name}: content differs after roundtrip");
        assert_eq!(obj.etag, etag, "{name}: get returns the etag put returned");
    }
    // Overwrite replaces content and changes the etag.
    let key = format!("{base}roundtrip/small");
    let before = store.get(&key).unwrap().etag;
    let after = store.put(&key, Bytes::from_static(b"replaced")).unwrap();
    assert_ne!(before, after, "overwrite with new content changes the etag");
    let obj = store.get(&key).unwrap();
    assert_eq!(&obj.data[..], b"replaced");
    assert_eq!(obj.etag, after);
}

fn get_range(store: &dyn ObjectStore, base: &str) {
    let key = format!("{base}range/obj");
    let data = pattern(1000, 3);
    store.put(&key, data.clone()).unwrap();
    let mid = store.get_range(&key, 100..250).unwrap();
    assert!(mid == data.slice(100..250), "middle range");
    assert!(
        store.get_range(&key, 0..1).unwrap() == data.slice(0..1),
        "first byte"
    );
    assert!(
        store.get_range(&key, 999..1000).unwrap() == data.slice(999..1000),
        "last byte"
    );
    assert!(
        store.get_range(&key, 0..1000).unwrap() == data,
        "whole object as a range"
    );
    let tail = store.get_range(&key, 900..5000).unwrap();
    assert!(
        tail == data.slice(900..1000),
        "range past the end is truncated (got {} bytes)",
        tail.len()
    );
    assert_eq!(
        kind_of(store.get_range(&key, 1000..1010)),
        ErrorKind::Invalid,
        "range starting at the end"
    );
    assert_eq!(
        kind_of(store.get_range(&key, 5000..6000)),
        ErrorKind::Invalid,
        "range starting past the end"
    );
    assert_eq!(
        kind_of(store.get_range(&key, 10..10)),
        ErrorKind::Invalid,
        "empty range"
    );
    let empty = format!("{base}range/empty");
    store.put(&empty, Bytes::new()).unwrap();
    assert_eq!(
        kind_of(store.get_range(&empty, 0..10)),
        ErrorKind::Invalid,
        "any range of an empty object"
    );
}

fn get_into(store: &dyn ObjectStore, base: &str) {
    let key = format!("{base}into/obj");
    let data = pattern(100_000, 5);
    store.put(&key, data.clone()).unwrap();
    let mut buf = vec![0u8; data.len()];
    assert_eq!(store.get_into(&key, &mut buf).unwrap(), data.len() as u64);
    assert!(buf == data, "get_into of the exact size");
    // A buffer of the wrong size learns the real one, without an error.
    for len in [data.len() - 1, data.len() + 1, 0] {
        let mut other = vec![0u8; len];
        assert_eq!(
            store.get_into(&key, &mut other).unwrap(),
            data.len() as u64,
            "get_into with a {len}-byte buffer"
        );
    }
    let empty = format!("{base}into/empty");
    store.put(&empty, Bytes::new()).unwrap();
    assert_eq!(
        store.get_into(&empty, &mut []).unwrap(),
        0,
        "an empty object"
    );
    assert_eq!(
        kind_of(store.get_into(&format!("{base}into/missing"), &mut buf)),
        ErrorKind::NotFound,
        "get_into of a missing key"
    );
}

fn put_if_absent(store: &dyn ObjectStore, base: &str) {
    let key = format!("{base}absent/obj");
    let etag = store
        .put_if_absent(&key, Bytes::from_static(b"first"))
        .expect("first put_if_absent");
    assert_eq!(
        kind_of(store.put_if_absent(&key, Bytes::from_static(b"second"))),
        ErrorKind::Conflict,
        "second put_if_absent"
    );
    let obj = store.get(&key).unwrap();
    assert_eq!(
        &obj.data[..],
        b"first",
        "content unchanged by the failed put_if_absent"
    );
    assert_eq!(obj.etag, etag);
    // Also a conflict when the existing object was written unconditionally.
    let key2 = format!("{base}absent/obj2");
    store.put(&key2, Bytes::from_static(b"plain")).unwrap();
    assert_eq!(
        kind_of(store.put_if_absent(&key2, Bytes::from_static(b"x"))),
        ErrorKind::Conflict
    );
    // And allowed again after a delete.
    store.delete(&key2).unwrap();
    store
        .put_if_absent(&key2, Bytes::from_static(b"again"))
        .expect("put_if_absent after delete");
}

fn put_if_match(store: &dyn ObjectStore, base: &str) {
    let key = format!("{base}match/obj");
    let e1 = store.put(&key, Bytes::from_static(b"v1")).unwrap();
    let e2 = store
        .put_if_match(&key, Bytes::from_static(b"v2"), &e1)
        .expect("put_if_match with the current etag");
    assert_ne!(e1, e2, "put_if_match returns a new etag");
    let obj = store.get(&key).unwrap();
    assert_eq!(&obj.data[..], b"v2");
    assert_eq!(obj.etag, e2, "get returns the etag put_if_match returned");
    // Stale etag.
    assert_eq!(
        kind_of(store.put_if_match(&key, Bytes::from_static(b"v3"), &e1)),
        ErrorKind::Conflict,
        "stale etag"
    );
    assert_eq!(
        &store.get(&key).unwrap().data[..],
        b"v2",
        "content unchanged by the failed put_if_match"
    );
    // A made-up etag.
    let bogus = ETag("\"00000000000000000000000000000000\"".into());
    assert_eq!(
        kind_of(store.put_if_match(&key, Bytes::from_static(b"v3"), &bogus)),
        ErrorKind::Conflict
    );
    // Chains: the returned etag is usable for the next swap.
    let e3 = store
        .put_if_match(&key, Bytes::from_static(b"v3"), &e2)
        .expect("chained put_if_match");
    store
        .put_if_match(&key, Bytes::from_static(b"v4"), &e3)
        .expect("chained put_if_match");
    // Missing key: Conflict or NotFound (see module docs).
    let missing = format!("{base}match/missing");
    let kind = kind_of(store.put_if_match(&missing, Bytes::from_static(b"x"), &e1));
    assert!(
        matches!(kind, ErrorKind::Conflict | ErrorKind::NotFound),
        "put_if_match on a missing key: {kind}"
    );
    assert_eq!(
        kind_of(store.get(&missing)),
        ErrorKind::NotFound,
        "failed put_if_match created nothing"
    );
}

fn list(store: &dyn ObjectStore, base: &str) {
    let p = format!("{base}list/");
    let files = [
        ("a", 1usize),
        ("b/c", 2),
        ("b/d", 3),
        ("bb", 4),
        ("b/e/f", 0),
    ];
    for (k, n) in files {
        store.put(&format!("{p}{k}"), pattern(n, 1)).unwrap();
    }
    store
        .put(&format!("{base}listother/x"), Bytes::from_static(b"x"))
        .unwrap();

    let got = |prefix: &str| -> Vec<ObjectMeta> {
        store
            .list(prefix)
            .unwrap_or_else(|e| panic!("list {prefix}: {e}"))
    };
    let keys = |prefix: &str| -> Vec<String> {
        got(prefix)
            .into_iter()
            .map(|m| m.key.strip_prefix(&p).unwrap_or(&m.key).to_string())
            .collect()
    };

    let all = got(&p);
    let expect: Vec<ObjectMeta> = [("a", 1u64), ("b/c", 2), ("b/d", 3), ("b/e/f", 0), ("bb", 4)]
        .iter()
        .map(|(k, n)| ObjectMeta {
            key: format!("{p}{k}"),
            size: *n,
        })
        .collect();
    assert_eq!(
        all, expect,
        "list of nested keys: full keys, sorted, with sizes"
    );
    assert_eq!(
        keys(&format!("{p}b")),
        ["b/c", "b/d", "b/e/f", "bb"],
        "partial-segment prefix"
    );
    assert_eq!(
        keys(&format!("{p}b/")),
        ["b/c", "b/d", "b/e/f"],
        "directory prefix"
    );
    assert_eq!(
        keys(&format!("{p}b/e/f")),
        ["b/e/f"],
        "prefix equal to a key"
    );
    assert!(keys(&format!("{p}zzz")).is_empty(), "no match");
    assert!(
        keys(&format!("{base}nothing/")).is_empty(),
        "missing directory"
    );
    // `list/` must not list `listother/`, but `list` (no slash) does.
    assert!(got(&p).iter().all(|m| !m.key.contains("listother")));
    let both = got(&format!("{base}list"));
    assert_eq!(
        both.len(),
        6,
        "prefix without slash spans siblings: {both:?}"
    );
    assert_eq!(
        both.last().map(|m| m.key.as_str()),
        Some(format!("{base}listother/x").as_str())
    );
    // The whole bucket listing includes ours (other runs may share the bucket).
    let everything = store.list("").unwrap();
    assert!(
        everything.windows(2).all(|w| w[0].key < w[1].key),
        "list(\"\") sorted"
    );
    assert!(everything.iter().any(|m| m.key == format!("{p}b/e/f")));

    // One level of "directories", as S3's delimiter listing gives them.
    let dirs = |d: &str| {
        store
            .list_dirs(d)
            .unwrap_or_else(|e| panic!("list_dirs {d}: {e}"))
    };
    assert_eq!(dirs(&p), ["b"], "list_dirs: only names with keys below");
    assert_eq!(dirs(&format!("{p}b/")), ["e"], "list_dirs nested");
    assert!(dirs(&format!("{p}b/e/f/")).is_empty(), "list_dirs of a key");
    assert!(
        dirs(&format!("{base}nothing/")).is_empty(),
        "list_dirs missing"
    );
    assert!(
        dirs("").iter().any(|d| format!("{d}/") == base),
        "list_dirs of the top has our base"
    );
    // After the only key under a directory goes, so does the directory.
    store.delete(&format!("{p}b/e/f")).unwrap();
    assert!(dirs(&format!("{p}b/")).is_empty(), "list_dirs after delete");
    assert_eq!(
        kind_of(store.list_dirs(&format!("{p}b"))),
        ErrorKind::Invalid,
        "list_dirs wants a trailing slash"
    );
}

fn delete(store: &dyn ObjectStore, base: &str) {
    let key = format!("{base}delete/obj");
    store.put(&key, Bytes::from_static(b"x")).unwrap();
    store.delete(&key).expect("delete");
    assert_eq!(
        kind_of(store.get(&key)),
        ErrorKind::NotFound,
        "get after delete"
    );
    assert!(
        store.list(&format!("{base}delete/")).unwrap().is_empty(),
        "list after delete"
    );
    store.delete(&key).expect("delete again");
    store
        .delete(&format!("{base}delete/never-existed"))
        .expect("delete of a missing key");
}

fn bad_keys(store: &dyn ObjectStore) {
    for key in ["", "/abs", "a//b", "a/../b", "trailing/"] {
        assert_eq!(kind_of(store.get(key)), ErrorKind::Invalid, "get {key:?}");
        assert_eq!(
            kind_of(store.put(key, Bytes::new())),
            ErrorKind::Invalid,
            "put {key:?}"
        );
    }
}

fn race_put_if_absent(store: &dyn ObjectStore, base: &str) {
    const N: usize = 8;
    let key = format!("{base}race/absent");
    let barrier = Barrier::new(N);
    let results: Vec<crate::Result<ETag>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (key, barrier) = (&key, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    store.put_if_absent(key, Bytes::from(format!("writer {i}")))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer panicked"))
            .collect()
    });
    let winners: Vec<usize> = (0..N).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one put_if_absent wins: {results:?}"
    );
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.kind(), ErrorKind::Conflict, "losers get Conflict: {e}");
        }
    }
    let obj = store.get(&key).unwrap();
    assert_eq!(
        obj.data,
        Bytes::from(format!("writer {}", winners[0])),
        "the winner's content is stored"
    );
    assert_eq!(Some(&obj.etag), results[winners[0]].as_ref().ok());
}

fn race_put_if_match(store: &dyn ObjectStore, base: &str) {
    const N: usize = 8;
    let key = format!("{base}race/match");
    let start = store.put(&key, Bytes::from_static(b"start")).unwrap();
    let barrier = Barrier::new(N);
    let results: Vec<crate::Result<ETag>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (key, barrier, start) = (&key, &barrier, &start);
                s.spawn(move || {
                    barrier.wait();
                    store.put_if_match(key, Bytes::from(format!("writer {i}")), start)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer panicked"))
            .collect()
    });
    let winners: Vec<usize> = (0..N).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one put_if_match wins: {results:?}"
    );
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.kind(), ErrorKind::Conflict, "losers get Conflict: {e}");
        }
    }
    let obj = store.get(&key).unwrap();
    assert_eq!(
        obj.data,
        Bytes::from(format!("writer {}", winners[0])),
        "the winner's content is stored"
    );
    assert_eq!(Some(&obj.etag), results[winners[0]].as_ref().ok());
}

fn cleanup(store: &dyn ObjectStore, base: &str) {
    for m in store.list(base).unwrap() {
        store.delete(&m.key).unwrap();
    }
    assert!(store.list(base).unwrap().is_empty(), "cleanup");
}
