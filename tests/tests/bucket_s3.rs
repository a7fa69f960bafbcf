//! The S3 backend against a real S3-compatible server (moto on loopback):
//! the shared backend contract, plus how S3 failures are classified.

use std::time::{Duration, Instant};
use strata_tests::s3server::{BUCKET, S3Server};
use strata_vfs::ErrorKind;
use strata_vfs::bucket::ETag;
use strata_vfs::bucket::contract;
use strata_vfs::bucket::s3::S3Store;

#[test]
fn s3_contract() {
    let server = S3Server::start().unwrap();
    // Under a prefix, as deployments use it...
    contract::run_all(&*server.store("some/prefix"));
    // ...and at the bucket root.
    contract::run_all(&*server.store(""));
}

#[test]
fn s3_error_mapping() {
    let mut server = S3Server::start().unwrap();
    let store = server.store("errors");

    let err = store.get("missing/key").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().starts_with("get missing/key: "),
        "context names the key: {err}"
    );

    let e1 = store.put("m", b"v1".to_vec().into()).unwrap();
    let e2 = store.put_if_match("m", b"v2".to_vec().into(), &e1).unwrap();
    let err = store
        .put_if_match("m", b"v3".to_vec().into(), &e1)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "stale etag: {err}");
    let err = store.put_if_absent("m", b"v3".to_vec().into()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "existing key: {err}");
    assert_eq!(&store.get("m").unwrap().data[..], b"v2");
    assert_eq!(store.get("m").unwrap().etag, e2);
    let err = store
        .put_if_match("m", b"v3".to_vec().into(), &ETag("not-an-etag".into()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "made-up etag: {err}");

    let err = store
        .put_if_match("gone", b"v".to_vec().into(), &e2)
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "If-Match on a missing key (S3 says 404): {err}"
    );

    let err = store.get_range("m", 10..20).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "range past the end: {err}");

    // A bucket that does not exist is a configuration mistake, not an outage.
    let mut cfg = server.config("x");
    cfg.bucket = "no-such-bucket".into();
    let other = S3Store::new(cfg).unwrap();
    let err = strata_vfs::bucket::ObjectStore::get(&other, "k").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");

    // The server goes away: Unavailable, promptly (retries and connect timeout
    // bound it), never a hang.
    server.stop();
    for (what, result) in [
        ("get", store.get("m").map(|_| ())),
        ("put", store.put("m", b"v".to_vec().into()).map(|_| ())),
        ("list", store.list("").map(|_| ())),
    ] {
        let err = result.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Unavailable,
            "{what} with the server down: {err}"
        );
    }
    let t = Instant::now();
    let err = store.get("m").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("cannot reach S3"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "failing took {:?}",
        t.elapsed()
    );
}

#[test]
fn s3_prefixes_are_isolated() {
    let server = S3Server::start().unwrap();
    let a = server.store("tenant-a");
    let b = server.store("tenant-a-b");
    let root = server.store("");
    a.put("k", b"a".to_vec().into()).unwrap();
    b.put("k", b"b".to_vec().into()).unwrap();
    assert_eq!(
        a.list("")
            .unwrap()
            .iter()
            .map(|m| m.key.as_str())
            .collect::<Vec<_>>(),
        ["k"]
    );
    assert_eq!(&b.get("k").unwrap().data[..], b"b");
    let keys: Vec<String> = root.list("").unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["tenant-a-b/k", "tenant-a/k"]);
    assert_eq!(a.describe(), format!("s3://{BUCKET}/tenant-a"));
    assert_eq!(server.url("tenant-a"), "s3://strata-test/tenant-a");
    assert!(
        server
            .env()
            .iter()
            .any(|(k, v)| k == "AWS_ENDPOINT_URL" && *v == server.endpoint())
    );
}

#[test]
fn s3_list_paginates() {
    let server = S3Server::start().unwrap();
    let store = server.store("pages");
    // Past S3's 1000-key page size.
    let n = 1005;
    std::thread::scope(|s| {
        for t in 0..5 {
            let store = &store;
            s.spawn(move || {
                for i in (t..n).step_by(5) {
                    store.put(&format!("k/{i:05}"), Vec::new().into()).unwrap();
                    // Also past a page of common prefixes (delimiter LIST).
                    store
                        .put(&format!("d/{i:05}/x"), Vec::new().into())
                        .unwrap();
                }
            });
        }
    });
    let list = store.list("k/").unwrap();
    assert_eq!(list.len(), n);
    assert!(list.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(list[0].key, "k/00000");
    let dirs = store.list_dirs("d/").unwrap();
    assert_eq!(dirs.len(), n);
    assert_eq!((dirs[0].as_str(), dirs[n - 1].as_str()), ("00000", "01004"));
}
