//! Three `strata serve` nodes on one bucket (`server/src/serve/cluster/`),
//! real processes on loopback ports, on the local bucket and on the loopback
//! S3 server: any node answers any tenant (forwarding to the holder), a
//! holder killed with -9 under sync writes is replaced within the takeover
//! bound with every acknowledged write kept, and a holder paused past its
//! ttl is fenced and serves no stale read when it wakes.

use anyhow::{Context, Result, ensure};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use strata_tests::serve::{Server, posts_collection};
use strata_tests::{Backend, assert_one_history, http, workspace_bin};

/// Sets its flag when dropped: writer threads of a scope stop when the
/// scope's body returns, an error included (else the scope would wait for
/// them forever).
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Clients on three threads, each sending to the nodes in turn as a load
/// balancer does (a node that refuses connections is skipped): creates of
/// post `w<thread>-<i>`, and with `reads` a list between two creates.
struct Load {
    addrs: Vec<String>,
    reads: bool,
    stop: std::sync::atomic::AtomicBool,
    /// Acknowledged creates: the title, and when.
    acked: std::sync::Mutex<Vec<(String, Instant)>>,
    /// Every other answer: its status and what it was.
    refused: std::sync::Mutex<Vec<(u16, String)>>,
}

impl Load {
    fn new(nodes: &[Server], reads: bool) -> Load {
        Load {
            addrs: nodes.iter().map(|n| n.addr.clone()).collect(),
            reads,
            stop: Default::default(),
            acked: Default::default(),
            refused: Default::default(),
        }
    }

    /// One client's loop, until `stop`.
    fn client(&self, w: usize) {
        let mut n = w;
        for i in 0.. {
            if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            n = (n + 1) % self.addrs.len();
            let title = format!("w{w}-{i}");
            let (method, path, body) = if self.reads && i % 2 == 1 {
                ("GET", "/t/t1/api/collections/posts/records?perPage=5", None)
            } else {
                (
                    "POST",
                    "/t/t1/api/collections/posts/records",
                    Some(json!({"title": title}).to_string()),
                )
            };
            let Ok(r) = http::request(&self.addrs[n], method, path, &[], body.as_deref()) else {
                continue;
            };
            if r.status != 200 {
                let what = format!("{method} via {}: {} {}", self.addrs[n], r.status, r.text);
                lock(&self.refused).push((r.status, what));
            } else if method == "POST" {
                lock(&self.acked).push((title, Instant::now()));
            }
        }
    }

    fn acked_count(&self) -> usize {
        lock(&self.acked).len()
    }

    /// Wait until `n` creates are acknowledged, or `deadline`.
    fn wait_for(&self, n: usize, deadline: Instant) {
        while self.acked_count() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node ttl of the tests: beats every fifth of it. On the local bucket
/// 1 s (takeover in about a second); the loopback S3 server (moto, one
/// Python process) answers a put in up to a second under the tests' load,
/// so there 3 s, lest live nodes look dead.
fn ttl(b: &Backend) -> Duration {
    match b {
        Backend::Local(_) => Duration::from_secs(1),
        Backend::S3(..) => Duration::from_secs(3),
    }
}

fn node(b: &Backend, dir: &Path, id: &str, env: &[(&str, &str)]) -> Result<Server> {
    let ttl = ttl(b);
    let beat = format!("{}ms", ttl.as_millis() / 5);
    let ttl = format!("{}ms", ttl.as_millis());
    Server::start_with(
        b,
        &dir.join(id),
        &["--node-id", id, "--heartbeat", &beat, "--node-ttl", &ttl],
        env,
    )
}

fn three(b: &Backend, dir: &Path, env: &[(&str, &str)]) -> Result<Vec<Server>> {
    (0..3)
        .map(|i| node(b, dir, &format!("n{i}"), env))
        .collect()
}

/// Three nodes in sync durability (what was acknowledged is in the bucket
/// when a holder stops: in async mode its last second of commits would wait
/// in its spool, and be fenced there), tenant `t1` with `posts`; returns
/// them and t1's holder.
fn with_posts(b: &Backend, dir: &Path) -> Result<(Vec<Server>, usize)> {
    let nodes = three(b, dir, &[("STRATA_DURABILITY", "sync")])?;
    nodes[0].create_tenant("t1", None)?;
    let token = nodes[0].superuser_token("t1")?;
    posts_collection(&nodes[1], "t1", &token)?;
    let h = holder(&nodes.iter().map(Some).collect::<Vec<_>>(), "t1")?;
    Ok((nodes, h))
}

/// Whether `s` itself has `tenant` loaded (its tenant list is its own view;
/// one tenant's `show` goes to the holder).
fn loaded_on(s: &Server, tenant: &str) -> Result<bool> {
    let r = s.admin("GET", "/_strata/api/tenants", None)?;
    ensure!(r.status == 200, "list on {}: {r:?}", s.addr);
    let t = r.body["items"]
        .as_array()
        .and_then(|i| i.iter().find(|t| t["id"] == tenant))
        .with_context(|| format!("{tenant} not listed on {}: {r:?}", s.addr))?;
    Ok(t["state"] == "loaded")
}

/// The node that has `tenant` loaded (exactly one may).
fn holder(nodes: &[Option<&Server>], tenant: &str) -> Result<usize> {
    let mut holding = Vec::new();
    for (i, s) in nodes.iter().enumerate() {
        let Some(s) = s else { continue };
        if loaded_on(s, tenant)? {
            holding.push(i);
        }
    }
    ensure!(
        holding.len() == 1,
        "{tenant} is loaded on nodes {holding:?}"
    );
    Ok(holding[0])
}

fn metric(s: &Server, name: &str) -> Result<f64> {
    let r = s.admin("GET", "/metrics", None)?;
    r.text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .with_context(|| format!("no {name} in /metrics"))
}

fn create(s: &Server, tenant: &str, title: &str) -> Result<http::Response> {
    s.api(
        tenant,
        "POST",
        "/api/collections/posts/records",
        None,
        Some(json!({"title": title})),
    )
}

/// Every post title, as `s` lists them.
fn titles(s: &Server, tenant: &str) -> Result<BTreeSet<String>> {
    let r = s.api(
        tenant,
        "GET",
        "/api/collections/posts/records?perPage=500&skipTotal=1",
        None,
        None,
    )?;
    ensure!(r.status == 200, "list on {}: {r:?}", s.addr);
    Ok(r.body["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|i| i["title"].as_str().map(str::to_string))
        .collect())
}

/// A write of post `title` to t1 via `s`, retried as a client does on the
/// answers that say so (502, 503, 504), for up to 10 s.
fn create_retrying(s: &Server, title: &str) -> Result<http::Response> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = create(s, "t1", title)?;
        if matches!(r.status, 502..=504) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        return Ok(r);
    }
}

fn verify(b: &Backend, tenant: &str) -> Result<()> {
    let out = b
        .command(&workspace_bin("strata")?)
        .args(["verify", &b.url(), &format!("{tenant}/data.db")])
        .output()?;
    ensure!(
        out.status.success(),
        "strata verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_one_history(&b.store()?, tenant, "data.db")?;
    Ok(())
}

#[test]
fn sdk_clients_on_every_node_share_one_tenant() -> Result<()> {
    for b in Backend::all()? {
        let name = b.name();
        let dir = tempfile::tempdir()?;
        let nodes = three(&b, dir.path(), &[])?;
        nodes[0].create_tenant("shop", None)?;
        nodes[0].create_tenant("chat", None)?;
        let all: Vec<Option<&Server>> = nodes.iter().map(Some).collect();
        // Each tenant lands on the node that placement picks; the SDK then
        // talks to it through another node, every call forwarded: CRUD on
        // one tenant, realtime (SSE, subscriptions, events) on the other.
        let mut through = Vec::new();
        for t in ["shop", "chat"] {
            let r = nodes[0].api(t, "GET", "/api/health", None, None)?;
            ensure!(r.status == 200, "[{name}] health of {t}: {r:?}");
            through.push((holder(&all, t)? + 1) % 3);
        }
        let base = |t: &str, i: usize| format!("http://{}/t/{t}", nodes[i].addr);
        std::thread::scope(|s| -> Result<()> {
            let crud = s.spawn(|| {
                strata_tests::sdk::run(
                    "client.mjs",
                    &base("shop", through[0]),
                    &[],
                    "checks passed",
                )
            });
            let live = s.spawn(|| {
                strata_tests::sdk::run(
                    "realtime.mjs",
                    &base("chat", through[1]),
                    &[],
                    "realtime checks passed",
                )
            });
            crud.join()
                .map_err(|_| anyhow::anyhow!("client.mjs panicked"))??;
            live.join()
                .map_err(|_| anyhow::anyhow!("realtime.mjs panicked"))??;
            Ok(())
        })
        .with_context(|| {
            format!(
                "[{name}]\n{}",
                nodes
                    .iter()
                    .map(|n| n.log_text())
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            )
        })?;
        let h = holder(&all, "shop")?;

        // Raw writes round-robin over the nodes: every one succeeds, and every
        // node lists them all.
        let token = nodes[0].superuser_token("shop")?;
        posts_collection(&nodes[2], "shop", &token)?;
        let mut want = BTreeSet::new();
        for i in 0..30 {
            let title = format!("post-{i}");
            let r = create(&nodes[i % 3], "shop", &title)?;
            ensure!(r.status == 200, "[{name}] create via n{}: {r:?}", i % 3);
            want.insert(title);
        }
        for (i, n) in nodes.iter().enumerate() {
            ensure!(
                titles(n, "shop")? == want,
                "[{name}] n{i} lists other posts"
            );
        }
        ensure!(
            holder(&all, "shop")? == h,
            "[{name}] the tenant moved without a reason"
        );
        for (i, n) in nodes.iter().enumerate() {
            let forwarded = metric(n, "strata_serve_forwarded_total")?;
            ensure!(
                i == h || forwarded > 0.0,
                "[{name}] n{i} forwarded no request (holder n{h})"
            );
            ensure!(
                metric(n, "strata_serve_cluster_nodes_live")? == 3.0,
                "[{name}] n{i} does not see three nodes"
            );
        }
        // `strata node list` and the tenant list say who is where.
        let out = std::process::Command::new(workspace_bin("strata")?)
            .args([
                "node",
                "list",
                "--server",
                &format!("http://{}", nodes[0].addr),
            ])
            .env("STRATA_ADMIN_TOKEN", strata_tests::serve::ADMIN)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        ensure!(
            out.status.success()
                && lines.len() == 3
                && lines[0].starts_with("n0\t")
                && lines[0].ends_with("(this node)")
                && lines.iter().all(|l| l.contains("\tserving\t")),
            "[{name}] strata node list: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = nodes[h].admin("GET", "/_strata/api/tenants", None)?;
        let shop = r.body["items"]
            .as_array()
            .and_then(|i| i.iter().find(|t| t["id"] == "shop"))
            .with_context(|| format!("{r:?}"))?;
        ensure!(shop["node"] == format!("n{h}").as_str(), "[{name}] {shop}");
        // One tenant's admin calls are answered by its holder, whichever
        // node is asked.
        let r = nodes[(h + 1) % 3].admin("GET", "/_strata/api/tenants/shop", None)?;
        ensure!(
            r.body["holder"] == format!("n{h}").as_str()
                && r.body["state"] == "loaded"
                && r.body["node"] == format!("n{h}").as_str(),
            "[{name}] show: {r:?}"
        );

        // A client cannot pose as a node: forward headers without the
        // cluster's key are dropped. Believed, they would make a node that
        // does not hold the tenant serve it itself (and fail to claim it).
        let other = (h + 1) % 3;
        let r = http::request(
            &nodes[other].addr,
            "GET",
            "/t/shop/api/collections/posts/records?perPage=1",
            &[
                "Strata-Forward-Key: guess".into(),
                "Strata-Client-Ip: 10.9.9.9".into(),
                format!("Strata-Forwarded-By: n{h}"),
            ],
            None,
        )?;
        ensure!(r.status == 200, "[{name}] a spoofed forward: {r:?}");
        ensure!(
            holder(&all, "shop")? == h,
            "[{name}] a spoofed forward moved the tenant"
        );
        let r = nodes[(h + 2) % 3].admin("POST", "/_strata/api/tenants/shop/evict", None)?;
        ensure!(
            r.body["evicted"] == true,
            "[{name}] evict via another node: {r:?}"
        );
        ensure!(
            !loaded_on(&nodes[h], "shop")?,
            "[{name}] not evicted at the holder"
        );
        verify(&b, "shop").with_context(|| name.to_string())?;
    }
    Ok(())
}

#[test]
fn kill_9_of_the_holder_under_sync_writes_loses_no_acknowledged_write() -> Result<()> {
    for b in Backend::all()? {
        let name = b.name();
        let dir = tempfile::tempdir()?;
        let (mut nodes, h) = with_posts(&b, dir.path())?;
        let load = Load::new(&nodes, false);
        let killed = std::thread::scope(|s| -> Result<Instant> {
            for w in 0..3 {
                let load = &load;
                s.spawn(move || load.client(w));
            }
            let _stop = StopOnDrop(&load.stop);
            let deadline = Instant::now() + Duration::from_secs(60);
            load.wait_for(60, deadline);
            nodes[h].child.kill()?;
            let killed = Instant::now();
            load.wait_for(load.acked_count() + 60, deadline);
            Ok(killed)
        })?;
        // Retry answers only: the holder died with the request (502, 504)
        // or is being replaced (503).
        let refused = load.refused.into_inner().unwrap_or_else(|e| e.into_inner());
        let wrong: Vec<&String> = refused
            .iter()
            .filter(|(status, _)| !matches!(status, 502..=504))
            .map(|(_, what)| what)
            .collect();
        ensure!(wrong.is_empty(), "[{name}] writes got {wrong:?}");
        let acked = load.acked.into_inner().unwrap_or_else(|e| e.into_inner());
        let after: Vec<&(String, Instant)> = acked.iter().filter(|(_, t)| *t > killed).collect();
        ensure!(
            after.len() >= 60,
            "[{name}] only {} writes after the kill",
            after.len()
        );
        let first = after
            .iter()
            .map(|(_, t)| *t)
            .min()
            .context("a write after the kill")?;
        let takeover = first - killed;
        eprintln!(
            "[{name}] takeover after kill -9: {} ms",
            takeover.as_millis()
        );
        ensure!(
            takeover < ttl(&b) + Duration::from_secs(4),
            "[{name}] takeover took {takeover:?} (node ttl {:?})",
            ttl(&b)
        );
        let survivor = (h + 1) % 3;
        let listed = titles(&nodes[survivor], "t1")?;
        let missing: Vec<&String> = acked
            .iter()
            .map(|(t, _)| t)
            .filter(|t| !listed.contains(*t))
            .collect();
        ensure!(
            missing.is_empty(),
            "[{name}] acknowledged writes lost: {missing:?}"
        );
        for n in nodes.iter_mut().enumerate().filter(|(i, _)| *i != h) {
            n.1.terminate()?;
        }
        verify(&b, "t1").with_context(|| name.to_string())?;
    }
    Ok(())
}

#[test]
fn a_holder_paused_past_its_ttl_is_fenced_and_serves_no_stale_read() -> Result<()> {
    for b in Backend::all()? {
        let name = b.name();
        let dir = tempfile::tempdir()?;
        let (nodes, h) = with_posts(&b, dir.path())?;
        let other = (h + 1) % 3;
        for i in 0..5 {
            ensure!(create(&nodes[other], "t1", &format!("before-{i}"))?.status == 200);
        }
        let pid = nodes[h].child.id();
        strata_tests::freeze_outside_bucket_lock(&b, pid)?;
        let paused = Instant::now();
        // Writes through the other nodes wait for the holder's heartbeat to go
        // stale, then another node takes the tenant over.
        for i in 0..5 {
            let r = create_retrying(&nodes[other], &format!("during-{i}"))?;
            ensure!(
                r.status == 200,
                "[{name}] write while the holder is paused: {r:?}"
            );
        }
        let took = paused.elapsed();
        ensure!(
            took >= ttl(&b) / 2,
            "[{name}] taken over after {took:?}, before the ttl"
        );
        let still: Vec<Option<&Server>> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (i != h).then_some(n))
            .collect();
        let new = holder(&still, "t1")?;
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };

        // The woken node must not answer from its stale copy: it answers 503
        // (retry) until it has beaten again, then forwards to the new holder.
        let want: BTreeSet<String> = (0..5)
            .flat_map(|i| [format!("before-{i}"), format!("during-{i}")])
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = nodes[h].api(
                "t1",
                "GET",
                "/api/collections/posts/records?perPage=500&skipTotal=1",
                None,
                None,
            )?;
            if r.status == 503 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            ensure!(r.status == 200, "[{name}] read via the woken node: {r:?}");
            let mut got: Vec<String> = r.body["items"]
                .as_array()
                .context("items")?
                .iter()
                .filter_map(|i| i["title"].as_str().map(str::to_string))
                .collect();
            got.sort();
            ensure!(
                got == want.iter().cloned().collect::<Vec<_>>(),
                "[{name}] the woken node served a stale read (or a write twice): {got:?}"
            );
            break;
        }
        let r = create_retrying(&nodes[h], "after")?;
        ensure!(r.status == 200, "[{name}] write via the woken node: {r:?}");
        ensure!(
            titles(&nodes[new], "t1")?.contains("after"),
            "[{name}] the write via the woken node is not at the new holder"
        );
        let log = nodes[h].log_text();
        ensure!(
            log.contains("lapse"),
            "[{name}] the woken node did not notice its lapse:\n{log}"
        );
        ensure!(
            !loaded_on(&nodes[h], "t1")?,
            "[{name}] the woken node still has the tenant loaded"
        );
        verify(&b, "t1").with_context(|| name.to_string())?;
    }
    Ok(())
}

#[test]
fn a_planned_move_and_a_drain_under_load_fail_no_request() -> Result<()> {
    for b in Backend::all()? {
        let name = b.name();
        let dir = tempfile::tempdir()?;
        let (mut nodes, h) = with_posts(&b, dir.path())?;
        let load = Load::new(&nodes, true);
        let addrs = &load.addrs;
        let (target, drained) = std::thread::scope(|s| -> Result<(usize, usize)> {
            for w in 0..3 {
                let load = &load;
                s.spawn(move || load.client(w));
            }
            let _stop = StopOnDrop(&load.stop);
            let count = || load.acked_count();
            let wait_for = |n: usize| load.wait_for(n, Instant::now() + Duration::from_secs(30));
            wait_for(30);
            // A move, asked of a node that does not hold the tenant: the call
            // goes on to the holder.
            let target = (h + 1) % 3;
            let asked = (h + 2) % 3;
            let out = std::process::Command::new(workspace_bin("strata")?)
                .args(["tenant", "move", "t1", "--to", &format!("n{target}")])
                .args(["--server", &format!("http://{}", addrs[asked])])
                .env("STRATA_ADMIN_TOKEN", strata_tests::serve::ADMIN)
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            ensure!(
                out.status.success(),
                "[{name}] move: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let moved: serde_json::Value = serde_json::from_str(&text)?;
            eprintln!("[{name}] move pause: {} ms", moved["pauseMs"]);
            ensure!(
                moved["to"] == format!("n{target}").as_str()
                    && moved["from"] == format!("n{h}").as_str(),
                "[{name}] {moved}"
            );
            let live: Vec<Option<&Server>> = nodes.iter().map(Some).collect();
            ensure!(holder(&live, "t1")? == target, "[{name}] not moved");
            let before = count();
            wait_for(before + 30);
            // SIGTERM on the new holder: it drains (hands t1 over) and stops.
            nodes[target].terminate()?;
            let before = count();
            wait_for(before + 30);
            Ok((target, before))
        })?;
        let failed: Vec<String> = load
            .refused
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|(_, what)| what)
            .collect();
        let notes: Vec<String> = nodes
            .iter()
            .flat_map(|n| {
                n.log_text()
                    .lines()
                    .filter(|l| l.contains("stale") || l.contains("lapse") || l.contains("moved"))
                    .map(|l| format!("{}: {l}", n.addr))
                    .collect::<Vec<_>>()
            })
            .collect();
        ensure!(
            failed.is_empty(),
            "[{name}] {} failed requests: {:?}\n{}",
            failed.len(),
            &failed[..failed.len().min(5)],
            notes.join("\n")
        );
        let acked: Vec<String> = load
            .acked
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        ensure!(
            acked.len() >= drained + 30,
            "[{name}] the load stalled after the drain"
        );
        let rest: Vec<Option<&Server>> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (i != target).then_some(n))
            .collect();
        let now = holder(&rest, "t1")?;
        let log = nodes[target].log_text();
        ensure!(
            log.contains("tenant moved"),
            "[{name}] the drain moved nothing:\n{log}"
        );
        let listed = titles(&nodes[now], "t1")?;
        let missing: Vec<&String> = acked.iter().filter(|t| !listed.contains(*t)).collect();
        ensure!(
            missing.is_empty(),
            "[{name}] acknowledged writes lost: {missing:?}"
        );
        for (i, n) in nodes.iter_mut().enumerate() {
            if i != target {
                n.terminate()?;
            }
        }
        verify(&b, "t1").with_context(|| name.to_string())?;
    }
    Ok(())
}

/// The official SDK's realtime through a node that does not hold the
/// tenant, and a move of the tenant to the third node midway: the stream
/// ends, the SDK reconnects (forwarded to the new holder), resubscribes and
/// gets the next event.
#[test]
fn realtime_subscribers_follow_a_moved_tenant() -> Result<()> {
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let nodes = three(&b, dir.path(), &[])?;
    nodes[0].create_tenant("chat", None)?;
    let r = nodes[0].api("chat", "GET", "/api/health", None, None)?;
    ensure!(r.status == 200, "{r:?}");
    let all: Vec<Option<&Server>> = nodes.iter().map(Some).collect();
    let h = holder(&all, "chat")?;
    let (via, to) = ((h + 1) % 3, (h + 2) % 3);
    let mv = format!("http://{}/_strata/api/tenants/chat/move", nodes[via].addr);
    let body = json!({"to": format!("n{to}")}).to_string();
    let env = [
        ("STRATA_EVICT_URL", mv.as_str()),
        ("STRATA_EVICT_BODY", body.as_str()),
        ("STRATA_ADMIN_TOKEN", strata_tests::serve::ADMIN),
    ];
    strata_tests::sdk::run(
        "realtime.mjs",
        &format!("http://{}/t/chat", nodes[via].addr),
        &env,
        "realtime checks passed",
    )
    .with_context(|| {
        nodes
            .iter()
            .map(|n| n.log_text())
            .collect::<Vec<_>>()
            .join("\n---\n")
    })?;
    ensure!(holder(&all, "chat")? == to, "the tenant is not on n{to}");
    Ok(())
}
