//! The seed corpus: real inputs for every target, made by strata's own
//! encoders, a real SQLite and the PocketBase docs' examples. They are
//! committed under `corpus/<target>/`; `cargo test -p strata-fuzz --test
//! smoke -- --ignored write_seed_corpus` writes them anew.

use crate::vfs::wal_header;
use bytes::Bytes;
use serde_json::json;
use strata_server::serve::auth::token::{sign, unix_now};
use strata_vfs::format::manifest::{EpochStart, Lease, Manifest, SegmentRef, SnapshotRef};
use strata_vfs::format::segment::{
    EncodeOptions, SegmentKind, SegmentMeta, SnapshotWriter, TxnPages, Written, encode_with,
};
use strata_vfs::format::{DbKeys, keys};
use strata_vfs::{DbId, Epoch, Millis, PageNo, TxId};

/// Every seed: (target, file name, bytes).
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, seeds: Vec<(String, Vec<u8>)>| {
        out.extend(seeds.into_iter().map(|(n, b)| (target, n, b)));
    };
    add("filter", filters());
    add("query_params", query_params());
    add("multipart", multipart());
    add("jwt", jwt());
    add("segment", segments());
    add("segment_roundtrip", roundtrips());
    add("manifest_keys", manifest_keys());
    add("wal", wals());
    add("wal_capture", captures());
    out
}

fn named(prefix: &str, items: impl IntoIterator<Item = Vec<u8>>) -> Vec<(String, Vec<u8>)> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, b)| (format!("{prefix}-{i:02}"), b))
        .collect()
}

/// Filters in the forms the PocketBase docs show, over the fixture's
/// fields, each with a mode byte (scope, caller, collection).
fn filters() -> Vec<(String, Vec<u8>)> {
    let posts = [
        "title = 'alpha'",
        "n > 1 && done = true",
        "(title ~ 'al' || n <= 0) && kind != 'b'",
        "created >= '2022-01-01 00:00:00' && updated <= @now",
        "tags ?= 'a'",
        "tags ?!= 'c' && tags:length > 1",
        "tags:each ~ 'a'",
        "author.name = 'Ann'",
        "author = @request.auth.id",
        "@request.auth.id != '' && readers ?= @request.auth.id",
        "readers.name ?~ 'o'",
        "readers:length >= 2",
        "@collection.users.name = 'Bob'",
        "@collection.users:u.id = author && @collection.users:u.name != ''",
        "meta.a = 1",
        "when > @todayStart && when < @todayEnd",
        "when >= @yesterday || when <= @tomorrow",
        "@request.body.title:isset = true",
        "@request.body.tags:length = 2 && @request.body.nested.x ?= 1",
        "@request.query.q = 'x' && @request.headers.user_agent = 'fuzz'",
        "@request.method = 'GET' && @request.context != 'oauth2'",
        "title !~ '%' && title ~ '\\_'",
        "n != null && meta = null",
        "kind = 'a' && (tags ?!= 'b' || n >= 2.5)",
        "secret = 's'",
        "id ?= 'p1' || id = \"p2\"",
        "title:lower = 'alpha'",
        "n = -3 || n = 1e3 || n = .5",
        "((((title = 'a'))))",
        "author.readers.name = 'x'",
        "@request.auth.collectionName = 'users'",
        "created > '2024-01-01' && strftime('%Y', created) = '2024'",
    ];
    let users = [
        "email = 'a@example.com'",
        "verified = true || emailVisibility = false",
        "name ~ 'A' && id = @request.auth.id",
        "password = 'x'",
        "tokenKey != ''",
    ];
    let mut out = Vec::new();
    for (k, f) in posts.iter().enumerate() {
        out.push([&[(k % 4) as u8][..], f.as_bytes()].concat());
    }
    for (k, f) in users.iter().enumerate() {
        out.push([&[4 | (k % 4) as u8][..], f.as_bytes()].concat());
    }
    named("doc", out)
}

fn query_params() -> Vec<(String, Vec<u8>)> {
    let cases = [
        (0, "-created,id", "*", "author"),
        (0, "@random", "id,title", "readers"),
        (0, "+title,-n", "expand.author.name,id", "author,readers"),
        (1, "author.name", "", "author.nothing"),
        (0, "meta", "id, title ,", "x.y.z"),
        (0, "secret", "secret", "author.readers.author"),
        (1, "secret,-updated", "*,id", " author , readers "),
        (0, "tags", "expand", "readers.readers"),
        (0, "-@random,", "id", ""),
        (0, "when,kind,done,n", "title:excerpt(10)", "author,author"),
        (1, "-author", "id,expand.readers", "readers.author"),
    ];
    named(
        "param",
        cases
            .iter()
            .map(|(m, s, f, e)| format!("{}{s}\n{f}\n{e}", *m as u8 as char).into_bytes()),
    )
}

fn multipart() -> Vec<(String, Vec<u8>)> {
    let part = |name: &str, value: &str| {
        format!("--XB\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    };
    let sdk = format!(
        "{}{}{}--XB--\r\n",
        part("title", "hello\r\nworld"),
        part("tags", "a"),
        part("tags", "b"),
    );
    let payload = format!(
        "{}{}--XB--\r\n",
        part("title", "x"),
        part(
            "@jsonPayload",
            r#"{"n": 3, "ok": true, "meta": {"a": [1]}}"#
        )
    );
    let file = "--XB\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nx\r\n--XB--\r\n";
    let noname = "--XB\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XB--\r\n";
    let quoted = "--a b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n1\r\n--a b--\r\n";
    let mut out: Vec<Vec<u8>> = vec![
        [b"\x00XB\n".as_slice(), sdk.as_bytes()].concat(),
        [b"\x00XB\n".as_slice(), payload.as_bytes()].concat(),
        [b"\x00XB\n".as_slice(), file.as_bytes()].concat(),
        [b"\x00XB\n".as_slice(), noname.as_bytes()].concat(),
        [b"\x00XB\n".as_slice(), part("title", "x").as_bytes()].concat(),
        [b"\x00\"a b\"\n".as_slice(), quoted.as_bytes()].concat(),
        b"\x00XB\n--XB--\r\n".to_vec(),
        b"\x01\n{\"title\": \"x\", \"n\": 1, \"tags\": [\"a\"]}".to_vec(),
        b"\x01\n[1, 2]".to_vec(),
        b"\x01\n   ".to_vec(),
        b"\x02\ntitle=x&n=1".to_vec(),
        [
            b"\x03multipart/form-data; boundary=XB; charset=utf-8\n".as_slice(),
            sdk.as_bytes(),
        ]
        .concat(),
        b"\x03MULTIPART/FORM-DATA\n--XB--\r\n".to_vec(),
        b"\x03text/plain\n{\"a\": 1}".to_vec(),
    ];
    let mut raw = b"\x00XB\n--XB\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n".to_vec();
    raw.extend([0xff, 0xfe]);
    raw.extend(b"\r\n--XB--\r\n");
    out.push(raw);
    named("body", out)
}

fn jwt() -> Vec<(String, Vec<u8>)> {
    let key = "tenant-secret.k1";
    let now = unix_now();
    let good = sign(
        &json!({"id": "u1", "type": "auth", "collectionId": "_pb_users_auth_", "refreshable": true, "exp": now + 86400}),
        key,
    )
    .expect("sign");
    let expired = sign(&json!({"id": "u1", "type": "auth", "exp": 1}), key).expect("sign");
    let no_exp = sign(&json!({"id": "u1", "type": "auth"}), key).expect("sign");
    // `alg: none` with the signature dropped, and a header that lies.
    let body = good.split('.').nth(1).unwrap_or_default();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
    let hs512 = format!(
        "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.{body}.{}",
        good.rsplit('.').next().unwrap_or_default()
    );
    let cases = [
        (7u16, good.clone(), key, "u1"),
        (40, good.clone(), "another-key", "u2"),
        (0, expired, key, "u1"),
        (3, no_exp, key, "x"),
        (99, none, key, "y"),
        (12, hs512, key, ""),
        (5, format!("{good}.extra"), key, "z"),
        (1, "a.b.c".into(), "", "0"),
        (2, "..".into(), "k", "\u{1f600}"),
        (9, String::new(), "", ""),
    ];
    named(
        "token",
        cases.iter().map(|(flip, tok, key, id)| {
            [
                &flip.to_le_bytes()[..],
                format!("{tok}\n{key}\n{id}").as_bytes(),
            ]
            .concat()
        }),
    )
}

/// Pages of a real SQLite database of `page_size` bytes (a few tables and
/// an index), read from its file.
pub fn sqlite_pages(page_size: u32) -> Vec<Bytes> {
    let path = std::env::temp_dir().join(format!(
        "strata-fuzz-seed-{}-{page_size}.db",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    {
        let c = rusqlite::Connection::open(&path).expect("sqlite");
        c.execute_batch(&format!(
            "PRAGMA page_size={page_size}; PRAGMA journal_mode=DELETE;
             CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, n REAL);
             CREATE INDEX t_name ON t(name);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 40)
             INSERT INTO t(name, n) SELECT 'name ' || i, i * 1.5 FROM s;"
        ))
        .expect("fill");
    }
    let file = std::fs::read(&path).expect("read db");
    let _ = std::fs::remove_file(&path);
    file.chunks(page_size as usize)
        .map(Bytes::copy_from_slice)
        .collect()
}

fn segments() -> Vec<(String, Vec<u8>)> {
    let db_id = DbId(*b"fuzz-seed-db-id!");
    let mut out = Vec::new();
    for (ps, compress) in [(512u32, true), (512, false), (1024, true), (4096, true)] {
        let pages = sqlite_pages(ps);
        let n = pages.len() as u32;
        let opts = EncodeOptions {
            created: Some(Millis(1_700_000_000_000)),
            compress,
        };
        let meta = |kind| SegmentMeta {
            db_id,
            epoch: Epoch(2),
            page_size: ps,
            kind,
        };
        // A snapshot of the whole database.
        let all: Vec<(PageNo, Bytes)> = (1..=n).map(PageNo).zip(pages.iter().cloned()).collect();
        let snap = TxnPages {
            txid: TxId(5),
            commit: Millis(1_700_000_000_000),
            db_pages: n,
            pages: all,
        };
        if ps <= 1024 {
            out.push(
                encode_with(&meta(SegmentKind::Snapshot), &[snap], &opts)
                    .expect("snapshot")
                    .to_vec(),
            );
        }
        // Three transactions rewriting pages 1 and 2 (deltas), a shrink.
        let edit = |p: &Bytes, b: u8| {
            let mut v = p.to_vec();
            v[100] = b;
            v[101] = b;
            Bytes::from(v)
        };
        let txns = vec![
            TxnPages {
                txid: TxId(6),
                commit: Millis(1_700_000_000_001),
                db_pages: n,
                pages: vec![(PageNo(1), pages[0].clone()), (PageNo(2), pages[1].clone())],
            },
            TxnPages {
                txid: TxId(7),
                commit: Millis(1_700_000_000_002),
                db_pages: n,
                pages: vec![
                    (PageNo(2), edit(&pages[1], 7)),
                    (PageNo(1), edit(&pages[0], 1)),
                ],
            },
            TxnPages {
                txid: TxId(8),
                commit: Millis(1_700_000_000_003),
                db_pages: 2,
                pages: vec![],
            },
        ];
        out.push(
            encode_with(&meta(SegmentKind::Segment), &txns, &opts)
                .expect("segment")
                .to_vec(),
        );
        // Split snapshots: the index object, and index then parts.
        if ps == 512 {
            let mut w = SnapshotWriter::new(
                &meta(SegmentKind::Snapshot),
                TxId(9),
                Millis(1_700_000_000_004),
                n,
                2048,
                &opts,
            )
            .expect("writer");
            let mut parts = Vec::new();
            for p in &pages {
                parts.extend(w.push(p).expect("push"));
            }
            if let Written::Split { index, last } = w.finish().expect("finish") {
                parts.extend(last);
                out.push(index.to_vec());
                out.push([index.to_vec(), parts.concat()].concat());
            }
        }
    }
    named("object", out)
}

fn roundtrips() -> Vec<(String, Vec<u8>)> {
    // Structured inputs (see `segment_roundtrip`): mode, first txid, txns.
    let mut out = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for mode in 0u8..16 {
        let mut b = vec![mode];
        for _ in 0..96 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.push((x >> 24) as u8 % if mode & 1 == 0 { 4 } else { 255 });
        }
        out.push(b);
    }
    named("txns", out)
}

fn manifest_keys() -> Vec<(String, Vec<u8>)> {
    let mut m = Manifest::new(DbId(*b"fuzz-seed-db-id!"), 4096);
    let bare = m.to_bytes().to_vec();
    let k = DbKeys::new("acme", "data.db").expect("keys");
    m.epoch = Epoch(2);
    m.epochs = vec![
        EpochStart {
            epoch: Epoch(1),
            start: TxId(1),
        },
        EpochStart {
            epoch: Epoch(2),
            start: TxId(6),
        },
    ];
    m.head = TxId(9);
    m.head_commit = Millis(1_700_000_000_009);
    m.db_pages = 12;
    m.snapshot = Some(SnapshotRef {
        txid: TxId(5),
        commit: Millis(1_700_000_000_005),
        key: k.snapshot(TxId(5), Millis(1_700_000_000_005)),
        size: 4321,
        prefix: Some(300),
    });
    m.segments = vec![SegmentRef {
        first: TxId(6),
        last: TxId(9),
        first_commit: Millis(1_700_000_000_006),
        last_commit: Millis(1_700_000_000_009),
        epoch: Epoch(2),
        key: k.segment(TxId(6), TxId(9), Epoch(2), Millis(1_700_000_000_009)),
        size: 999,
        prefix: None,
    }];
    m.writer = Some("host:42".into());
    m.lease = Some(Lease {
        holder: "host:42:abc".into(),
        epoch: Epoch(2),
        expires: Millis(1_700_000_060_000),
        node: None,
    });
    let full = m.to_bytes().to_vec();
    let compact = serde_json::to_vec(&m).expect("json");
    let seg = k.segment(TxId(6), TxId(9), Epoch(2), Millis(1_700_000_000_009));
    let snap = k.snapshot(TxId(5), Millis(1_700_000_000_005));
    let parts = keys::snapshot_parts_dir(&snap, Epoch(2)).expect("parts");
    let part = keys::snapshot_part(&snap, Epoch(2), 3).expect("part");
    let hot = k.hot_pages(TxId(5), Millis(1));
    let nums: Vec<u8> = [6u64, 9, 2, 1_700_000_000_009]
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .collect();
    let line =
        |t: &str, d: &str, key: &str| [format!("\x01{t}\n{d}\n{key}\n").as_bytes(), &nums].concat();
    let out = vec![
        [b"\x00".as_slice(), &bare].concat(),
        [b"\x00".as_slice(), &full].concat(),
        [b"\x00".as_slice(), &compact].concat(),
        b"\x00{\"format\": 2}".to_vec(),
        line("acme", "data.db", &seg),
        line("acme", "data.db", &snap),
        line("acme", "data.db", &parts),
        line("acme", "data.db", &part),
        line("acme", "data.db", &hot),
        line("acme", "data.db", &k.manifest()),
        line("acme", "data.db", &seg.replace("-e", "-e0")),
        line("Acme", "data.db", &seg),
        line("a_b-c", ".hidden", ""),
        line("t1", "x", "tenants/t1/db/x/segments/1-2-e3-4.seg"),
    ];
    named("doc", out)
}

/// A real WAL: SQLite's `-wal` file after a few transactions (no
/// checkpoint), copied while the database is open.
pub fn sqlite_wal(page_size: u32) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!(
        "strata-fuzz-wal-{}-{page_size}.db",
        std::process::id()
    ));
    let wal = path.with_extension("db-wal");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&wal);
    let c = rusqlite::Connection::open(&path).expect("sqlite");
    c.execute_batch(&format!(
        "PRAGMA page_size={page_size}; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO t(name) VALUES ('a'), ('b');
         BEGIN; INSERT INTO t(name) SELECT name || 'x' FROM t; COMMIT;
         UPDATE t SET name = 'c' WHERE id = 1;
         DELETE FROM t WHERE id = 2;"
    ))
    .expect("fill");
    let bytes = std::fs::read(&wal).expect("read wal");
    drop(c);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&wal);
    bytes
}

fn wals() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for ps in [512, 1024] {
        let w = sqlite_wal(ps);
        out.push([&[0u8][..], &w].concat());
        // Cut inside the last frame, and a commit frame's checksum broken.
        out.push([&[0u8][..], &w[..w.len() - 10]].concat());
        let mut bad = w.clone();
        let at = bad.len() - ps as usize - 8;
        bad[at] ^= 1;
        out.push([&[0u8][..], &bad].concat());
    }
    out.push([&[0u8][..], &wal_header(true, 65536, (1, 2))].concat());
    // Built WALs (`wal`, odd mode byte): salts, frames, damage, cut.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for mode in [1u8, 3, 5, 7, 1, 3] {
        let mut b = vec![mode];
        for _ in 0..80 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.push((x >> 32) as u8);
        }
        out.push(b);
    }
    named("wal", out)
}

/// Write sequences for `wal_capture`: page size, salts, then operations
/// (see there): SQLite's order (header, then per frame its header and its
/// page), whole frames, rewrites, a rollback's leftovers, restarts.
fn captures() -> Vec<(String, Vec<u8>)> {
    let head = |ps: u8| {
        let mut b = vec![ps];
        b.extend(0x1234_5678u32.to_le_bytes());
        b.extend(0x9abc_def0u32.to_le_bytes());
        b
    };
    let hdr = |idx: u8, pgno: u8, commit: bool| vec![1, idx, pgno, if commit { 5 } else { 0 }];
    let page = |idx: u8, fill: u8| vec![3, idx, fill, 3, 7, 0, b'x', b'y', b'z'];
    let frame = |idx: u8, pgno: u8, commit: bool, fill: u8| {
        vec![2, idx, pgno, if commit { 3 } else { 0 }, fill, 0, 0, 0]
    };
    let seq = |ps: u8, ops: &[Vec<u8>]| [head(ps), ops.concat()].concat();
    let out = vec![
        // One transaction of three frames, SQLite's two writes per frame.
        seq(
            0,
            &[
                vec![0, 0],
                hdr(0, 0, false),
                page(0, 1),
                hdr(1, 1, false),
                page(1, 2),
                hdr(2, 2, true),
                page(2, 3),
            ],
        ),
        // Whole frames, two transactions, a page written twice.
        seq(
            1,
            &[
                vec![0, 0],
                frame(0, 0, false, 9),
                frame(1, 0, true, 8),
                frame(2, 3, false, 7),
                frame(3, 3, true, 6),
            ],
        ),
        // A rolled-back transaction's frames overwritten by the next one.
        seq(
            0,
            &[
                vec![0, 0],
                hdr(0, 0, false),
                page(0, 1),
                hdr(1, 1, false),
                page(1, 1),
                vec![4, 0],
                hdr(0, 4, false),
                page(0, 2),
                hdr(1, 5, true),
                page(1, 2),
            ],
        ),
        // A frame header rewritten, a page rewritten in place.
        seq(
            0,
            &[
                vec![0, 0],
                hdr(0, 0, false),
                page(0, 1),
                page(0, 2),
                hdr(1, 1, true),
                hdr(1, 2, true),
                page(1, 3),
            ],
        ),
        // The header was written before this handle: page size from the file.
        seq(
            1,
            &[
                vec![5, 0],
                frame(4, 0, true, 1),
                hdr(5, 1, false),
                page(5, 1),
            ],
        ),
        // A restart (new header) mid-transaction, odd writes refused.
        seq(
            0,
            &[
                vec![0, 0],
                hdr(0, 0, false),
                vec![0, 0],
                vec![7, 0, 16, 0, 0, 0, 2],
                vec![6, 0, 40, 0, 0, 0, 0],
                frame(0, 1, true, 4),
            ],
        ),
        // Frames before any header, and a write inside the header.
        seq(
            0,
            &[frame(0, 0, true, 1), vec![7, 0, 8, 0, 0, 0, 1], vec![0, 0]],
        ),
    ];
    named("writes", out)
}
