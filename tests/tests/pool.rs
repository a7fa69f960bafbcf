//! A tenant's connection pool under concurrent requests, through the real
//! server: readers in parallel see every acknowledged write, a failed write
//! leaves the writer usable and stores nothing, eviction closes every
//! connection; and `strata serve --demo` makes its tenant once.

use anyhow::{Context, Result, ensure};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strata_tests::Backend;
use strata_tests::http::encode;
use strata_tests::serve::{Server, posts_collection};

/// An unlabelled sample from `/metrics`.
fn metric(s: &Server, name: &str) -> Result<f64> {
    let r = s.admin("GET", "/metrics", None)?;
    r.text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("{name} not in /metrics"))
}

/// Files the server process holds open under `dir`.
fn open_files_under(s: &Server, dir: &std::path::Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{}/fd", s.child.id()))? {
        if let Ok(target) = std::fs::read_link(e?.path())
            && target.starts_with(dir)
        {
            out.push(target.display().to_string());
        }
    }
    Ok(out)
}

fn record_id(i: u64) -> String {
    format!("c{i:014}")
}

#[test]
fn concurrent_readers_see_every_acknowledged_write_and_eviction_closes_them_all() -> Result<()> {
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let node = dir.path().join("node");
    let s = Arc::new(Server::start(&b, &node, &["--max-readers", "4"])?);
    s.create_tenant("acme", None)?;
    let token = s.superuser_token("acme")?;
    posts_collection(&s, "acme", &token)?;
    // Records each writer has had acknowledged: writer w's are ids
    // w, w + 2, w + 4, ...
    let acked: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // Two writers, each with its own ids: an id counts once its 200 is in.
    for w in 0..2u64 {
        let (s, acked, stop) = (s.clone(), acked.clone(), stop.clone());
        threads.push(std::thread::spawn(move || -> Result<()> {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let r = s.api(
                    "acme",
                    "POST",
                    "/api/collections/posts/records",
                    None,
                    Some(json!({"id": record_id(i), "title": format!("t{i}"), "n": i})),
                )?;
                ensure!(r.status == 200, "create {i}: {r:?}");
                acked[w as usize].fetch_add(1, Ordering::SeqCst);
                i += 2;
            }
            Ok(())
        }));
    }
    // Readers: whatever was acknowledged before a read began is in it.
    for _ in 0..6 {
        let (s, acked, stop) = (s.clone(), acked.clone(), stop.clone());
        threads.push(std::thread::spawn(move || -> Result<()> {
            let list = format!(
                "/api/collections/posts/records?perPage=500&sort=-n&filter={}",
                encode("(title ~ 't')")
            );
            while !stop.load(Ordering::Relaxed) {
                let before = [0, 1].map(|w| acked[w].load(Ordering::SeqCst));
                for (w, n) in before.iter().enumerate() {
                    if *n == 0 {
                        continue;
                    }
                    let id = w as u64 + 2 * (n - 1);
                    let r = s.api(
                        "acme",
                        "GET",
                        &format!("/api/collections/posts/records/{}", record_id(id)),
                        None,
                        None,
                    )?;
                    ensure!(r.status == 200, "view {id}, acknowledged before: {r:?}");
                }
                let r = s.api("acme", "GET", &list, None, None)?;
                ensure!(r.status == 200, "list: {r:?}");
                let total = r.body["totalItems"].as_u64().context("totalItems")?;
                let want = before[0] + before[1];
                ensure!(
                    total >= want,
                    "list saw {total}, {want} acknowledged before it"
                );
            }
            Ok(())
        }));
    }
    // Sample the open connections while it runs.
    let sampler = {
        let (s, stop, peak) = (s.clone(), stop.clone(), peak.clone());
        std::thread::spawn(move || -> Result<()> {
            while !stop.load(Ordering::Relaxed) {
                let n = metric(&s, "strata_serve_connections_open")? as u64;
                peak.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })
    };
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("thread")?;
    }
    sampler.join().expect("sampler")?;
    let writes: u64 = acked.iter().map(|a| a.load(Ordering::SeqCst)).sum();
    ensure!(writes > 50, "too few writes to mean anything: {writes}");
    // data.db's writer, auxiliary.db's writer and at least two readers.
    let peak = peak.load(Ordering::SeqCst);
    ensure!(
        peak >= 4,
        "readers did not run side by side: at most {peak} connections"
    );
    ensure!(
        peak <= 2 + 4 + 1,
        "more connections than the pool allows: {peak}"
    );

    let tenant_dir = node.join("acme");
    ensure!(
        !open_files_under(&s, &tenant_dir)?.is_empty(),
        "a loaded tenant holds its files open"
    );
    let r = s.admin("POST", "/_strata/api/tenants/acme/evict", None)?;
    ensure!(r.status == 200, "evict: {r:?}");
    let left = open_files_under(&s, &tenant_dir)?;
    ensure!(left.is_empty(), "files still open after eviction: {left:?}");
    ensure!(
        metric(&s, "strata_serve_connections_open")? == 0.0,
        "connections still counted after eviction"
    );
    Ok(())
}

#[test]
fn a_failed_write_stores_nothing_and_leaves_the_writer_usable() -> Result<()> {
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let s = Arc::new(Server::start(&b, &dir.path().join("node"), &[])?);
    s.create_tenant("acme", None)?;
    let token = s.superuser_token("acme")?;
    posts_collection(&s, "acme", &token)?;
    // 16 clients at once, every third one reusing an id: those must fail
    // alone, whatever commit they shared with the others.
    let mut threads = Vec::new();
    for c in 0..16u64 {
        let s = s.clone();
        threads.push(std::thread::spawn(move || -> Result<Vec<(String, u16)>> {
            let mut out = Vec::new();
            for k in 0..30u64 {
                let n = c * 100 + k;
                let id = if k % 3 == 2 {
                    record_id(c * 100 + k - 1)
                } else {
                    record_id(n)
                };
                let r = s.api(
                    "acme",
                    "POST",
                    "/api/collections/posts/records",
                    None,
                    Some(json!({"id": id, "title": format!("t{n}"), "n": n})),
                )?;
                ensure!(
                    r.status == 200 || r.status == 400,
                    "create {id}: a client mistake is a 400, not {r:?}"
                );
                out.push((format!("t{n}"), r.status));
            }
            Ok(out)
        }));
    }
    let mut stored_expected = BTreeSet::new();
    let mut refused = 0;
    for t in threads {
        for (title, status) in t.join().expect("thread")? {
            if status == 200 {
                stored_expected.insert(title);
            } else {
                refused += 1;
            }
        }
    }
    ensure!(refused == 16 * 10, "every reused id is refused: {refused}");
    let r = s.api(
        "acme",
        "GET",
        "/api/collections/posts/records?perPage=1000",
        None,
        None,
    )?;
    ensure!(r.status == 200, "{r:?}");
    let stored: BTreeSet<String> = r.body["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|i| i["title"].as_str().map(str::to_string))
        .collect();
    ensure!(
        stored == stored_expected,
        "stored records differ from acknowledged ones: {} stored, {} acknowledged",
        stored.len(),
        stored_expected.len()
    );
    // A create rule is checked on the inserted row: a refused row was
    // written inside the shared transaction and must be rolled back alone.
    let r = s.api(
        "acme",
        "POST",
        "/api/collections",
        Some(&token),
        Some(json!({
            "name": "gated", "type": "base",
            "fields": [{"name": "n", "type": "number"}],
            "listRule": "", "viewRule": "", "createRule": "n > 0",
        })),
    )?;
    ensure!(r.status == 200, "gated: {r:?}");
    let mut threads = Vec::new();
    for c in 0..8i64 {
        let s = s.clone();
        threads.push(std::thread::spawn(move || -> Result<Vec<i64>> {
            let mut ok = Vec::new();
            for k in 0..20i64 {
                let n = if k % 4 == 0 { 0 } else { c * 100 + k };
                let r = s.api(
                    "acme",
                    "POST",
                    "/api/collections/gated/records",
                    None,
                    Some(json!({"n": n})),
                )?;
                match (n, r.status) {
                    (0, 400) => {}
                    (_, 200) if n > 0 => ok.push(n),
                    _ => anyhow::bail!("gated n={n}: {r:?}"),
                }
            }
            Ok(ok)
        }));
    }
    let mut want = BTreeSet::new();
    for t in threads {
        want.extend(t.join().expect("thread")?);
    }
    let r = s.api(
        "acme",
        "GET",
        "/api/collections/gated/records?perPage=1000",
        None,
        None,
    )?;
    let got: BTreeSet<i64> = r.body["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|i| i["n"].as_i64())
        .collect();
    ensure!(got == want, "refused rows were kept: {got:?} vs {want:?}");

    // A write refused by its rule before it runs: nothing of it stays
    // either, and the next write goes through at once.
    let r = s.api(
        "acme",
        "PATCH",
        &format!("/api/collections/posts/records/{}", record_id(0)),
        None,
        Some(json!({"title": "guest edit"})),
    )?;
    ensure!(r.status == 404, "update rule refuses guests: {r:?}");
    let t = Instant::now();
    let r = s.api(
        "acme",
        "POST",
        "/api/collections/posts/records",
        None,
        Some(json!({"title": "after"})),
    )?;
    ensure!(r.status == 200, "the writer still works: {r:?}");
    ensure!(
        t.elapsed() < Duration::from_secs(5),
        "the writer waited {:?}: a stuck transaction?",
        t.elapsed()
    );
    let v = s.api(
        "acme",
        "GET",
        &format!("/api/collections/posts/records/{}", record_id(0)),
        None,
        None,
    )?;
    ensure!(
        v.body["title"] == "t0",
        "the refused update left no trace: {v:?}"
    );
    Ok(())
}

#[test]
fn serve_demo_makes_a_ready_tenant_once() -> Result<()> {
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let node = dir.path().join("node");
    // The setup runs once the server listens: wait until it has made
    // its three records.
    let wait_for_posts = |s: &Server| -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = s.req("GET", "/t/demo/api/collections/posts/records", &[], None)?;
            let n = r.body["totalItems"].as_u64().unwrap_or(0);
            if r.status == 200 && n >= 3 {
                return Ok(n);
            }
            ensure!(
                Instant::now() < deadline,
                "no demo tenant: {r:?} {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    {
        let s = Server::start(&b, &node, &["--demo"])?;
        ensure!(wait_for_posts(&s)? == 3, "three demo records");
        // The printed superuser signs in.
        let r = s.req(
            "POST",
            "/t/demo/api/collections/_superusers/auth-with-password",
            &[],
            Some(r#"{"identity":"demo@example.com","password":"demo-password"}"#),
        )?;
        ensure!(r.status == 200, "demo superuser: {r:?}");
        let r = s.req(
            "POST",
            "/t/demo/api/collections/posts/records",
            &[],
            Some(r#"{"title":"mine"}"#),
        )?;
        ensure!(r.status == 200, "{r:?}");
    }
    // Killed without a flush: the next start opens it from the node's
    // spool, finds the tenant and makes nothing again.
    let s = Server::start(&b, &node, &["--demo"])?;
    ensure!(wait_for_posts(&s)? == 4, "the demo is made once, and kept");
    // Its setup is done when the superuser's check of `posts` has run: the
    // count stays at 4 (a second setup would have added three).
    std::thread::sleep(Duration::from_millis(1500));
    ensure!(wait_for_posts(&s)? == 4, "the demo is made once, and kept");
    Ok(())
}
