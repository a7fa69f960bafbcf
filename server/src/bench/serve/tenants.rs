//! strata alone, against goals and its own figures in the same run: sync
//! durability against async creates, the first request to evicted
//! tenants, and many tenants under the LRU bound.

use super::http::{Latencies, Req, load};
use super::side::{self, Side, create_tenant, median, sample, seed};
use super::strata::{Server, open_fds};
use super::wrk::Endpoint;
use super::{COLLECTION, Opts, SUPERUSER, Table, bar, ms, post, record_id};
use anyhow::{Context, Result, ensure};
use hyper::Method;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn records_path(tenant: &str) -> String {
    format!("/t/{tenant}/api/collections/{COLLECTION}/records")
}

/// Creates on a server whose databases are all `durability=sync` (the
/// response waits until the bucket has the write), through wrk as in the
/// `api` part; against that part's async creates.
pub async fn sync(
    dir: &Path,
    bucket: &str,
    o: &Opts,
    async_create: Option<f64>,
    table: &mut Table,
) -> Result<()> {
    let s = Server::start(dir, "sync", bucket, &[], &[("STRATA_DURABILITY", "sync")])?;
    create_tenant(&s, "bench").await?;
    let side = Side::strata(&s, "bench");
    seed(&side, 0, 1, false).await?;
    let mixes = side::mixes(o.serve_records);
    let mix = mixes
        .iter()
        .find(|m| m.name == "create")
        .context("no create mix")?;
    let end = [Endpoint {
        addr: side.peer.addr,
        prefix: side.prefix.clone(),
    }];
    let uploads_before = s
        .metric("strata_segments_uploaded_total")
        .await
        .unwrap_or(0.0);
    let mut runs = Vec::new();
    for _ in 0..o.serve_rounds.max(1) {
        let r = sample(dir, o, mix, &end, o.serve_threads, &[s.pid()])?;
        println!("  create (durability=sync): {}", r.report.summary());
        runs.push(r);
    }
    let uploads = s
        .metric("strata_segments_uploaded_total")
        .await
        .unwrap_or(0.0)
        - uploads_before;
    let requests: u64 = runs.iter().map(|r| r.report.requests).sum();
    let rate = median(runs.iter().map(|r| r.report.rate).collect());
    let p99 = median(runs.iter().map(|r| ms(r.report.p99)).collect());
    let vs = async_create.map_or(String::new(), |a| format!("{:.2}x async create", rate / a));
    table.row(
        "create, durability=sync",
        format!("{rate:.0}/s, p99 {p99:.1} ms"),
        format!(
            "{vs}; {:.1} creates per segment upload (group commit across requests)",
            requests as f64 / uploads.max(1.0)
        ),
    );
    s.stop()
}

/// First request to evicted tenants: forks of `bench`, each written to
/// (segments on top of the fork's snapshot) and evicted.
pub async fn evicted(dir: &Path, bucket: &str, o: &Opts, table: &mut Table) -> Result<()> {
    let server = Server::start(dir, "evicted", bucket, &[], &[])?;
    let s = &server;
    create_tenant(s, "bench").await?;
    seed(
        &Side::strata(s, "bench"),
        o.serve_records,
        o.serve_concurrency,
        true,
    )
    .await?;
    let n = o.serve_evicted;
    let ids: Vec<String> = (0..n).map(|i| format!("ev{i:05}")).collect();
    let pb = bar(n, "fork");
    let t = Instant::now();
    {
        let ids = ids.clone();
        let r = load(
            s.peer(),
            o.serve_concurrency.min(4),
            n,
            Some(pb.clone()),
            move |i| {
                Req::post(
                    "/_strata/api/tenants/bench/fork",
                    &json!({"newId": ids[i as usize]}),
                )
                .admin()
            },
        )
        .await?;
        r.check("fork")?;
    }
    pb.finish_and_clear();
    let forked = t.elapsed();
    let mut c = s.conn().await?;
    for id in &ids {
        for i in 0..5 {
            c.call(Method::POST, &records_path(id), None, Some(post(None, i)))
                .await?;
        }
        c.evict(id).await?;
    }
    println!(
        "{n} tenants: forked from `bench` in {:.1} s, 5 records written to each, evicted",
        forked.as_secs_f64()
    );
    let records = o.serve_records;
    let get_one = |tenant: &str| {
        Req::get(format!(
            "{}/{}",
            records_path(tenant),
            record_id(rand::random_range(0..records))
        ))
    };
    let loads_before = s.metric("strata_serve_tenant_loads_total").await?;
    let kept = one_by_one(s, &ids, get_one).await?;
    let loads = s.metric("strata_serve_tenant_loads_total").await? - loads_before;
    ensure!(
        loads as u64 == n,
        "expected {n} tenant loads, /metrics says {loads}"
    );
    let loaded = one_by_one(s, &vec!["bench".to_string(); ids.len()], get_one).await?;
    // A node that never had them: evict again and remove the local files.
    for id in &ids {
        c.evict(id).await?;
        std::fs::remove_dir_all(s.data_dir.join(id))
            .with_context(|| format!("remove {id}'s local files"))?;
    }
    let cold = one_by_one(s, &ids, get_one).await?;
    for id in &ids {
        c.evict(id).await?;
    }
    println!(
        "getOne, sequential, on a loaded tenant: {}",
        loaded.summary()
    );
    println!(
        "first getOne to an evicted tenant (local files kept): {}",
        kept.summary()
    );
    println!(
        "first getOne to an evicted tenant (no local files): {}",
        cold.summary()
    );
    let goal = |l: &Latencies| {
        let p99 = l.pct(0.99);
        format!(
            "p99 {} 50 ms goal; {:.1}x a loaded tenant's p50",
            if p99 <= Duration::from_millis(50) {
                "within"
            } else {
                "OVER"
            },
            ms(l.pct(0.5)) / ms(loaded.pct(0.5)).max(0.001)
        )
    };
    table.row(
        "getOne on a loaded tenant (sequential)",
        loaded.summary(),
        String::new(),
    );
    table.row(
        &format!("first getOne, evicted tenant, local files kept ({n})"),
        kept.summary(),
        goal(&kept),
    );
    table.row(
        &format!("first getOne, evicted tenant, no local files ({n})"),
        cold.summary(),
        goal(&cold),
    );
    server.stop()
}

/// One request to each tenant in turn, on one connection; their latencies.
async fn one_by_one(s: &Server, ids: &[String], req: impl Fn(&str) -> Req) -> Result<Latencies> {
    let mut c = s.conn().await?;
    let mut lat = Vec::new();
    for id in ids {
        let r = req(id);
        let t = Instant::now();
        c.send(&r).await?.ok(id)?;
        lat.push(t.elapsed());
    }
    Ok(Latencies::new(lat))
}

/// `--serve-tenants` tenants created, then each touched once (a health
/// request, which loads it) under `--max-tenants`.
pub async fn tenants(dir: &Path, bucket: &str, o: &Opts, table: &mut Table) -> Result<()> {
    let max = o.serve_max_tenants.to_string();
    let server = Server::start(dir, "tenants", bucket, &["--max-tenants", &max], &[])?;
    let s = &server;
    let n = o.serve_tenants;
    let conc = o.serve_concurrency;
    let id = |i: u64| format!("t{i:06}");
    let peak_fds = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (pid, peak) = (s.pid(), peak_fds.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(open_fds(pid) as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let pb = bar(n, "create tenants");
    let r = load(s.peer(), conc, n, Some(pb.clone()), move |i| {
        Req::post(
            "/_strata/api/tenants",
            &json!({"id": id(i), "superuser": {"email": SUPERUSER.0, "password": SUPERUSER.1}}),
        )
        .admin()
    })
    .await?;
    pb.finish_and_clear();
    r.check("create tenant")?;
    println!("create {n} tenants (concurrency {conc}): {}", r.summary());
    table.row(
        &format!("create {n} tenants (admin API, with superuser)"),
        format!("{:.0} s = {}", r.elapsed.as_secs_f64(), r.summary()),
        String::new(),
    );
    let rss_created = s.status_kib("VmRSS");
    let phases_before = s.phases().await?;
    let pb = bar(n, "touch tenants");
    let r = load(s.peer(), conc, n, Some(pb.clone()), move |i| {
        Req::get(format!("/t/{}/api/health", id(i)))
    })
    .await?;
    pb.finish_and_clear();
    r.check("touch tenant")?;
    // Sustained: the evictions the loads caused must be done too.
    let settle = Instant::now();
    while s.metric("strata_serve_tenants_loaded").await? > o.serve_max_tenants as f64 {
        ensure!(
            settle.elapsed() < Duration::from_secs(120),
            "evictions did not catch up with the loads"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = r.elapsed + settle.elapsed();
    println!(
        "back within --max-tenants {:.2} s after the last request: {:.0} loads/s sustained",
        settle.elapsed().as_secs_f64(),
        n as f64 / settled.as_secs_f64()
    );
    sampler.abort();
    let loads = s.metric("strata_serve_tenant_loads_total").await?;
    let evictions = s.metric("strata_serve_tenant_evictions_total").await?;
    // Where a load's time went (each phase's mean over this run).
    let breakdown: Vec<String> = s
        .phases()
        .await?
        .iter()
        .zip(&phases_before)
        .filter(|((_, _, c), (_, _, c0))| c > c0)
        .map(|((p, t, c), (_, t0, c0))| format!("{p} {:.2} ms", (t - t0) * 1e3 / (c - c0)))
        .collect();
    println!("mean time per phase: {}", breakdown.join(", "));
    table.row(
        "one load, by phase (mean; eviction of another tenant included)",
        breakdown.join(", "),
        String::new(),
    );
    let loaded = s.metric("strata_serve_tenants_loaded").await?;
    let (hwm, rss) = (s.status_kib("VmHWM"), s.status_kib("VmRSS"));
    println!(
        "touch {n} tenants (first request each, --max-tenants {}): {}; loads {loads}, evictions {evictions}, loaded now {loaded}",
        o.serve_max_tenants,
        r.summary()
    );
    println!(
        "server process: peak RSS {} MiB (VmHWM), RSS {} MiB after creating, {} MiB after touching; open files now {}, peak {}",
        hwm >> 10,
        rss_created >> 10,
        rss >> 10,
        open_fds(s.pid()),
        peak_fds.load(Ordering::Relaxed)
    );
    ensure!(loads as u64 >= n, "{n} touches but only {loads} loads");
    table.row(
        &format!(
            "touch {n} tenants (first request loads it), --max-tenants {}",
            o.serve_max_tenants
        ),
        format!("{:.0} s = {}", r.elapsed.as_secs_f64(), r.summary()),
        format!(
            "{loads} loads, {evictions} evictions; {:.0} loads/s sustained (until back within the bound)",
            n as f64 / settled.as_secs_f64()
        ),
    );
    table.row(
        &format!("server process, {n} tenants"),
        format!("peak RSS {} MiB", hwm >> 10),
        format!(
            "open files: peak {}, {} at the end",
            peak_fds.load(Ordering::Relaxed),
            open_fds(s.pid())
        ),
    );
    server.stop()
}
