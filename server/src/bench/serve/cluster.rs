//! `--serve-only cluster`: three `strata serve` nodes on one bucket, with
//! the shipped heartbeat and node ttl (`serve/cluster/`):
//! - forwarded against direct: the same wrk mix at the tenant's holder and
//!   through another node, alternating; the ratio is what a hop costs;
//! - planned moves: `--serve-moves` moves of a loaded tenant between nodes,
//!   the pause each reported (how long its requests waited);
//! - the bucket requests of an idle node (heartbeat, view), per hour and
//!   per month at S3's prices, with tenants loaded;
//! - spread: `--serve-cluster-tenants` tenants each touched once through a
//!   random node, then counted per node (max/mean);
//! - takeover: `--serve-kills` times, kill -9 of the holder, then the time
//!   until a read through another node answers 200; the node comes back
//!   under the same id before the next round.

use super::http::{Conn, Req};
use super::side::{Side, create_tenant, median, mixes, sample, seed};
use super::strata::Server;
use super::wrk::Endpoint;
use super::{ADMIN_TOKEN, COLLECTION, Opts, Table, bar, record_id};
use anyhow::{Context, Result, bail, ensure};
use hyper::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// S3 Standard request prices (us-east-1), dollars per 1,000 requests.
const PUT_LIST_PER_1000: f64 = 0.005;
const GET_PER_1000: f64 = 0.0004;

const NODES: usize = 3;

fn start(dir: &Path, bucket: &str, i: usize) -> Result<Server> {
    let id = format!("n{i}");
    Server::start(dir, &id, bucket, &["--node-id", &id], &[])
}

async fn admin(s: &Server, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    s.conn()
        .await?
        .call(method, path, Some(ADMIN_TOKEN), body)
        .await
}

/// Wait until `s` sees `n` live nodes (its view refreshes every ttl/2).
async fn see_live(s: &Server, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = admin(s, Method::GET, "/_strata/api/nodes", None).await?;
        let live = v["items"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|n| n["state"] == "serving").count());
        if live >= n {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{} sees {live} live nodes, not {n}",
            s.addr
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The node index holding `tenant`, as the bucket says (asked of `s`).
async fn holder(s: &Server, tenant: &str) -> Result<Option<usize>> {
    let v = admin(
        s,
        Method::GET,
        &format!("/_strata/api/tenants/{tenant}"),
        None,
    )
    .await?;
    Ok(v["holder"]
        .as_str()
        .and_then(|h| h.strip_prefix('n'))
        .and_then(|i| i.parse().ok()))
}

/// `strata_bucket_requests_total` of a node by operation.
async fn bucket_requests(s: &Server) -> Result<Vec<(String, f64)>> {
    let mut c = s.conn().await?;
    let a = c.send(&Req::get("/metrics".into()).admin()).await?;
    let text = String::from_utf8_lossy(&a.ok("/metrics")?).into_owned();
    Ok(text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("strata_bucket_requests_total{op=\"")?;
            let (op, v) = rest.split_once("\"}")?;
            Some((op.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

fn node(nodes: &[Option<Server>], i: usize) -> Result<&Server> {
    nodes[i]
        .as_ref()
        .with_context(|| format!("node n{i} is down"))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(
        ((v.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(v.len().saturating_sub(1)),
    )
    .copied()
    .unwrap_or(0.0)
}

pub async fn run(dir: &Path, bucket: &str, o: &Opts, table: &mut Table) -> Result<()> {
    let mut nodes: Vec<Option<Server>> = (0..NODES)
        .map(|i| start(dir, bucket, i).map(Some))
        .collect::<Result<_>>()?;
    for i in 0..NODES {
        see_live(node(&nodes, i)?, NODES).await?;
    }
    let records = o.serve_records.min(10_000);
    create_tenant(node(&nodes, 0)?, "c0").await?;
    seed(&Side::strata(node(&nodes, 0)?, "c0"), records, 4, true).await?;
    let h = holder(node(&nodes, 0)?, "c0")
        .await?
        .context("c0 has no holder after seeding")?;
    let via = (h + 1) % NODES;
    println!(
        "{NODES} nodes; tenant c0 ({records} records) held by n{h}; forwarded runs go through n{via}"
    );

    // 1. Forwarded against direct.
    let all = mixes(records);
    for name in ["getOne", "list", "create"] {
        let Some(mix) = all.iter().find(|m| m.name == name) else {
            continue;
        };
        let end = |s: &Server| Endpoint {
            addr: s.addr,
            prefix: "/t/c0".into(),
        };
        let (direct, through) = (end(node(&nodes, h)?), end(node(&nodes, via)?));
        let pids = [node(&nodes, h)?.pid(), node(&nodes, via)?.pid()];
        let (mut d, mut f) = (Vec::new(), Vec::new());
        for round in 0..o.serve_rounds.max(1) {
            for first in [round % 2 == 0, round % 2 == 1] {
                if first {
                    d.push(sample(
                        dir,
                        o,
                        mix,
                        std::slice::from_ref(&direct),
                        1,
                        &pids,
                    )?);
                } else {
                    f.push(sample(
                        dir,
                        o,
                        mix,
                        std::slice::from_ref(&through),
                        1,
                        &pids,
                    )?);
                }
            }
            println!(
                "  {name} round {}: direct {} | forwarded {}",
                round + 1,
                d[round].report.summary(),
                f[round].report.summary()
            );
        }
        let rate = |v: &[super::side::Sample]| median(v.iter().map(|x| x.report.rate).collect());
        let p50 = |v: &[super::side::Sample]| {
            median(v.iter().map(|x| x.report.p50.as_secs_f64() * 1e3).collect())
        };
        let cpu = |v: &[super::side::Sample]| median(v.iter().map(|x| x.cpu_us).collect());
        table.row(
            &format!("cluster: {name} forwarded through another node"),
            format!(
                "{:.0} req/s, p50 {:.2} ms, {:.0} µs CPU/req (both nodes) · direct {:.0} req/s, p50 {:.2} ms, {:.0} µs",
                rate(&f),
                p50(&f),
                cpu(&f),
                rate(&d),
                p50(&d),
                cpu(&d)
            ),
            format!("{:.2}x direct req/s", rate(&f) / rate(&d).max(1e-9)),
        );
    }

    // 2. Planned moves, back and forth.
    let moves = o.serve_moves.max(1);
    let progress = bar(moves as u64, "cluster: moves");
    let mut pauses = Vec::new();
    let mut at = holder(node(&nodes, 0)?, "c0").await?.context("holder")?;
    let mut c = Conn::open(node(&nodes, via)?.addr).await?;
    let get = Req::get(format!(
        "/t/c0/api/collections/{COLLECTION}/records/{}",
        record_id(0)
    ));
    for k in 0..moves {
        let to = (at + 1 + k % (NODES - 1)) % NODES;
        let v = admin(
            node(&nodes, at)?,
            Method::POST,
            "/_strata/api/tenants/c0/move",
            Some(json!({"to": format!("n{to}")})),
        )
        .await?;
        pauses.push(v["pauseMs"].as_f64().context("pauseMs")?);
        c.send(&get).await?.ok("a read after a move")?;
        at = to;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let (p50, p99) = (pct(&mut pauses.clone(), 0.5), pct(&mut pauses, 0.99));
    println!("moves: pause p50 {p50:.0} ms, p99 {p99:.0} ms over {moves}");
    table.row(
        &format!("cluster: planned move of a loaded tenant ({moves} moves)"),
        format!("pause p50 {p50:.0} ms, p99 {p99:.0} ms"),
        "goal p99 <= 250 ms".into(),
    );

    // 3. An idle node's own bucket requests, once what the moves left
    // (request logs, background hydration of a lazy copy) has settled.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = Duration::from_secs(30);
    let n0 = node(&nodes, 0)?;
    let before = bucket_requests(n0).await?;
    tokio::time::sleep(idle).await;
    let after = bucket_requests(n0).await?;
    let delta = |op: &str| {
        let f = |v: &[(String, f64)]| v.iter().find(|(o, _)| o == op).map_or(0.0, |x| x.1);
        (f(&after) - f(&before)) * 3600.0 / idle.as_secs_f64()
    };
    let (puts, lists, gets) = (
        delta("put_if_match") + delta("put") + delta("put_if_absent"),
        delta("list"),
        delta("get") + delta("get_range"),
    );
    let month = 730.0 * ((puts + lists) * PUT_LIST_PER_1000 + gets * GET_PER_1000) / 1000.0;
    println!("idle node: {puts:.0} PUTs, {lists:.0} LISTs, {gets:.0} GETs per hour");
    table.row(
        "cluster: an idle node's bucket requests (3 nodes, tenants loaded)",
        format!("{puts:.0} PUT + {lists:.0} LIST + {gets:.0} GET per hour"),
        format!("${month:.2} per node per month at S3 prices, whatever its tenants"),
    );

    // 4. Spread over the nodes.
    let n = o.serve_cluster_tenants.max(NODES as u64);
    let progress = bar(n, "cluster: tenants");
    for i in 0..n {
        let id = format!("s{i:05}");
        create_tenant(node(&nodes, (i % NODES as u64) as usize)?, &id).await?;
        let through = node(&nodes, (rand::random::<u64>() % NODES as u64) as usize)?;
        through
            .conn()
            .await?
            .send(&Req::get(format!("/t/{id}/api/health")))
            .await?
            .ok("touch")?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let mut counts = Vec::new();
    for i in 0..NODES {
        let v = admin(node(&nodes, i)?, Method::GET, "/_strata/api/tenants", None).await?;
        let held = v["items"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|t| {
                    t["state"] == "loaded" && t["id"].as_str().is_some_and(|s| s.starts_with('s'))
                })
                .count()
        });
        counts.push(held);
    }
    let total: usize = counts.iter().sum();
    ensure!(
        total as u64 == n,
        "{total} of {n} tenants loaded: {counts:?}"
    );
    let mean = total as f64 / NODES as f64;
    let max = *counts.iter().max().unwrap_or(&0) as f64;
    println!("spread of {n} tenants: {counts:?}");
    table.row(
        &format!("cluster: {n} tenants over {NODES} nodes"),
        format!("{counts:?} loaded per node"),
        format!("max/mean {:.3} (goal <= 1.2)", max / mean.max(1e-9)),
    );

    // 5. Takeover after kill -9.
    let kills = o.serve_kills.max(1);
    let progress = bar(kills as u64, "cluster: kill -9 rounds");
    let mut takeovers = Vec::new();
    for _ in 0..kills {
        let ask = node(&nodes, (at + 1) % NODES)?;
        let h = holder(ask, "c0").await?.unwrap_or(at);
        let survivor = (h + 1) % NODES;
        let addr = node(&nodes, survivor)?.addr;
        if let Some(mut s) = nodes[h].take() {
            s.kill();
        }
        let killed = Instant::now();
        let took = loop {
            let ok = match Conn::open(addr).await {
                Ok(mut c) => matches!(c.send(&get).await, Ok(a) if a.0 == 200),
                Err(_) => false,
            };
            if ok {
                break killed.elapsed();
            }
            if killed.elapsed() > Duration::from_secs(60) {
                bail!("no takeover within 60 s of killing n{h}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        takeovers.push(took.as_secs_f64() * 1e3);
        nodes[h] = Some(start(dir, bucket, h)?);
        for i in 0..NODES {
            see_live(node(&nodes, i)?, NODES).await?;
        }
        at = survivor;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let (p50, p99) = (pct(&mut takeovers.clone(), 0.5), pct(&mut takeovers, 0.99));
    println!("takeover after kill -9: p50 {p50:.0} ms, p99 {p99:.0} ms over {kills}");
    table.row(
        &format!("cluster: takeover after kill -9 of the holder ({kills} kills, --node-ttl 4s)"),
        format!("first 200 through another node after p50 {p50:.0} ms, p99 {p99:.0} ms"),
        "goal p99 <= 5 s".into(),
    );
    for s in nodes.into_iter().flatten() {
        s.stop()?;
    }
    Ok(())
}
