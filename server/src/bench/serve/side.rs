//! One tenant on strata, the same app on the real PocketBase: the same
//! collection and records (seeded through each one's API), the same wrk
//! scripts, runs alternating between the two, ratios of the medians.

use super::http::{Conn, Peer, Req, load};
use super::pocketbase::PocketBase;
use super::strata::Server;
use super::wrk::{self, Endpoint, Mix, Report};
use super::{
    ADMIN_TOKEN, COLLECTION, MEMBER, Opts, SUPERUSER, Table, bar, children_cpu_secs, cpu_secs, ms,
    post, posts_collection, proc_kib, record_id,
};
use anyhow::{Context, Result};
use hyper::Method;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// A server under test and where its API is.
pub struct Side {
    pub name: &'static str,
    pub peer: Peer,
    /// `/t/<tenant>` on strata, empty on PocketBase.
    pub prefix: String,
}

impl Side {
    pub fn strata(s: &Server, tenant: &str) -> Side {
        Side {
            name: "strata",
            peer: s.peer(),
            prefix: format!("/t/{tenant}"),
        }
    }

    pub fn pocketbase(p: &PocketBase) -> Side {
        Side {
            name: "PocketBase",
            peer: Peer {
                addr: p.addr,
                pid: p.pid(),
            },
            prefix: String::new(),
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.peer.addr,
            prefix: self.prefix.clone(),
        }
    }
}

/// Create the tenant `id` on a strata server (admin API).
pub async fn create_tenant(s: &Server, id: &str) -> Result<()> {
    s.conn()
        .await?
        .call(
            Method::POST,
            "/_strata/api/tenants",
            Some(ADMIN_TOKEN),
            Some(json!({"id": id, "superuser": {"email": SUPERUSER.0, "password": SUPERUSER.1}})),
        )
        .await
        .map(drop)
}

/// The bench superuser's token on `side`, signed in over `c`.
pub async fn superuser_token(side: &Side, c: &mut Conn) -> Result<String> {
    let auth = c
        .call(
            Method::POST,
            &format!(
                "{}/api/collections/_superusers/auth-with-password",
                side.prefix
            ),
            None,
            Some(json!({"identity": SUPERUSER.0, "password": SUPERUSER.1})),
        )
        .await?;
    Ok(auth["token"].as_str().context("no token")?.to_string())
}

/// The app on one side: `posts` with `records` records (ids chosen by the
/// client, `r00000000000000`, ...), and `members` with one auth record.
/// Returns how long the records took to insert.
pub async fn seed(side: &Side, records: u64, conc: usize, progress: bool) -> Result<Duration> {
    let p = &side.prefix;
    let mut c = side.peer.conn().await?;
    let token = superuser_token(side, &mut c).await?;
    c.call(
        Method::POST,
        &format!("{p}/api/collections"),
        Some(&token),
        Some(posts_collection()),
    )
    .await?;
    c.call(
        Method::POST,
        &format!("{p}/api/collections"),
        Some(&token),
        Some(json!({"name": "members", "type": "auth"})),
    )
    .await?;
    c.call(
        Method::POST,
        &format!("{p}/api/collections/members/records"),
        Some(&token),
        Some(json!({"email": MEMBER.0, "password": MEMBER.1, "passwordConfirm": MEMBER.1})),
    )
    .await?;
    if records == 0 {
        return Ok(Duration::ZERO);
    }
    let pb = progress.then(|| bar(records, &format!("{}: insert", side.name)));
    let path = format!("{p}/api/collections/{COLLECTION}/records");
    let r = load(side.peer, conc, records, pb.clone(), move |i| {
        Req::post(&path, &post(Some(&record_id(i)), i))
    })
    .await?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    r.check(&format!("{}: insert", side.name))?;
    Ok(r.elapsed)
}

/// The request mixes, reads first: creates change what lists read.
pub fn mixes(records: u64) -> Vec<Mix> {
    let last = records.saturating_sub(1);
    let pages = records.div_ceil(20).max(1);
    let coll = format!("prefix .. \"/api/collections/{COLLECTION}/records");
    let json = r#"{["Content-Type"] = "application/json"}"#;
    let body = post(None, 7).to_string().replace('"', "\\\"");
    vec![
        Mix {
            name: "getOne",
            lua: format!("  return wrk.format(\"GET\", {coll}/\" .. id(rand(0, {last})))"),
        },
        Mix {
            name: "list",
            lua: format!(
                "  return wrk.format(\"GET\", {coll}?perPage=20&page=\" .. rand(1, {pages}))"
            ),
        },
        Mix {
            name: "list-skipTotal",
            lua: format!(
                "  return wrk.format(\"GET\", {coll}?perPage=20&skipTotal=1&page=\" .. rand(1, {pages}))"
            ),
        },
        Mix {
            // `n >= x && n < x + 200`: no index on n, so a scan, with totals.
            name: "filter",
            lua: format!(
                "  local x = rand(0, {last})\n  return wrk.format(\"GET\", {coll}?perPage=20&filter=\" .. \"n%3E%3D\" .. x .. \"%20%26%26%20n%3C\" .. (x + 200))"
            ),
        },
        Mix {
            name: "update",
            lua: format!(
                "  return wrk.format(\"PATCH\", {coll}/\" .. id(rand(0, {last})), {json}, '{{\"title\": \"updated ' .. rand(1, 1000000000) .. '\"}}')"
            ),
        },
        Mix {
            name: "auth-with-password",
            lua: format!(
                "  return wrk.format(\"POST\", prefix .. \"/api/collections/members/auth-with-password\", {json}, '{{\"identity\": \"{}\", \"password\": \"{}\"}}')",
                MEMBER.0, MEMBER.1
            ),
        },
        Mix {
            name: "create",
            lua: format!("  return wrk.format(\"POST\", {coll}\", {json}, \"{body}\")"),
        },
    ]
}

/// One measured wrk run and the CPU around it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub report: Report,
    /// Server CPU per request, µs.
    pub cpu_us: f64,
    /// Cores the load generator used.
    pub wrk_cores: f64,
}

/// Warm-up, then one measured run of `mix` against `endpoints`, with the
/// CPU of `pids` (the servers) over it.
pub fn sample(
    dir: &Path,
    o: &Opts,
    mix: &Mix,
    endpoints: &[Endpoint],
    threads: usize,
    pids: &[u32],
) -> Result<Sample> {
    let conns = o.serve_concurrency.max(threads);
    wrk::run(dir, mix, endpoints, threads, conns, o.serve_warmup.into())?;
    let cpu = |pids: &[u32]| pids.iter().map(|&p| cpu_secs(p)).sum::<f64>();
    let (c0, w0) = (cpu(pids), children_cpu_secs());
    let d: Duration = o.serve_duration.into();
    let report = wrk::run(dir, mix, endpoints, threads, conns, d)?;
    let (c1, w1) = (cpu(pids), children_cpu_secs());
    Ok(Sample {
        cpu_us: (c1 - c0) * 1e6 / report.requests.max(1) as f64,
        wrk_cores: (w1 - w0) / d.as_secs_f64(),
        report,
    })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Alternating rounds of `mix` on each side; (strata, PocketBase) samples.
pub fn compare(
    dir: &Path,
    o: &Opts,
    mix: &Mix,
    strata: (&[Endpoint], &[u32]),
    pocketbase: (&[Endpoint], &[u32]),
    threads: usize,
) -> Result<(Vec<Sample>, Vec<Sample>)> {
    let (mut s, mut p) = (Vec::new(), Vec::new());
    for round in 0..o.serve_rounds.max(1) {
        // PocketBase first in even rounds, strata first in odd ones.
        for first in [round % 2 == 0, round % 2 == 1] {
            if first {
                p.push(sample(dir, o, mix, pocketbase.0, threads, pocketbase.1)?);
            } else {
                s.push(sample(dir, o, mix, strata.0, threads, strata.1)?);
            }
        }
        println!(
            "  {} round {}: strata {} | PocketBase {}",
            mix.name,
            round + 1,
            s[round].report.summary(),
            p[round].report.summary()
        );
    }
    Ok((s, p))
}

/// The table row of one compared mix.
pub fn row(table: &mut Table, what: &str, s: &[Sample], p: &[Sample]) -> f64 {
    let rate = |v: &[Sample]| median(v.iter().map(|x| x.report.rate).collect());
    let lat = |v: &[Sample], f: fn(&Report) -> Duration| {
        median(v.iter().map(|x| ms(f(&x.report))).collect())
    };
    let cpu = |v: &[Sample]| median(v.iter().map(|x| x.cpu_us).collect());
    let (rs, rp) = (rate(s), rate(p));
    let ratios: Vec<f64> = s
        .iter()
        .zip(p)
        .map(|(a, b)| a.report.rate / b.report.rate.max(1e-9))
        .collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
    let ratio = rs / rp.max(1e-9);
    table.row(
        what,
        format!(
            "strata {rs:.0}/s (p50 {:.2} ms, p99 {:.2} ms) · PocketBase {rp:.0}/s (p50 {:.2} ms, p99 {:.2} ms)",
            lat(s, |r| r.p50),
            lat(s, |r| r.p99),
            lat(p, |r| r.p50),
            lat(p, |r| r.p99),
        ),
        format!(
            "**{ratio:.2}x** (rounds {lo:.2}–{hi:.2}x); server CPU/request {:.0} µs vs {:.0} µs; wrk {:.2} cores",
            cpu(s),
            cpu(p),
            median(s.iter().chain(p).map(|x| x.wrk_cores).collect()),
        ),
    );
    ratio
}

/// Memory of one process: (peak, now) in MiB.
pub fn memory(pid: u32) -> (u64, u64) {
    (proc_kib(pid, "VmHWM") >> 10, proc_kib(pid, "VmRSS") >> 10)
}

/// The `api` part. Returns strata's median create rate.
pub async fn run(
    dir: &Path,
    bucket: &str,
    pb_bin: &Path,
    o: &Opts,
    table: &mut Table,
) -> Result<f64> {
    let s = Server::start(dir, "api", bucket, &[], &[])?;
    create_tenant(&s, "bench").await?;
    let pb = PocketBase::start(pb_bin, &dir.join("pb-api"))?;
    let (ss, ps) = (Side::strata(&s, "bench"), Side::pocketbase(&pb));
    let n = o.serve_records;
    let conc = o.serve_concurrency;
    let ins_p = seed(&ps, n, conc, true).await?;
    let ins_s = seed(&ss, n, conc, true).await?;
    println!(
        "seeded {n} records (POST, {conc} at a time): strata {:.1} s, PocketBase {:.1} s",
        ins_s.as_secs_f64(),
        ins_p.as_secs_f64()
    );
    table.row(
        &format!("insert {n} records (POST, {conc} at a time, seeding)"),
        format!(
            "strata {:.1} s · PocketBase {:.1} s",
            ins_s.as_secs_f64(),
            ins_p.as_secs_f64()
        ),
        format!(
            "{:.2}x",
            ins_p.as_secs_f64() / ins_s.as_secs_f64().max(1e-9)
        ),
    );
    println!(
        "wrk: {} thread(s), {conc} connections, {} s per run after {} s of warm-up, {} alternating rounds",
        o.serve_threads,
        o.serve_duration.as_secs(),
        o.serve_warmup.as_secs(),
        o.serve_rounds
    );
    let (se, pe) = ([ss.endpoint()], [ps.endpoint()]);
    let (spid, ppid) = ([ss.peer.pid], [ps.peer.pid]);
    let mut create = 0.0;
    for mix in mixes(n) {
        let (a, b) = compare(dir, o, &mix, (&se, &spid), (&pe, &ppid), o.serve_threads)?;
        row(table, mix.name, &a, &b);
        if mix.name == "create" {
            create = median(a.iter().map(|x| x.report.rate).collect());
        }
    }
    let (sm, pm) = (memory(ss.peer.pid), memory(ps.peer.pid));
    println!(
        "memory: strata peak {} MiB, now {} MiB; PocketBase peak {} MiB, now {} MiB",
        sm.0, sm.1, pm.0, pm.1
    );
    table.row(
        "memory, one tenant (after every run)",
        format!(
            "strata peak {} MiB, now {} MiB · PocketBase peak {} MiB, now {} MiB",
            sm.0, sm.1, pm.0, pm.1
        ),
        format!("peak {:.2}x PocketBase's", sm.0 as f64 / pm.0.max(1) as f64),
    );
    drop(pb);
    s.stop()?;
    Ok(create)
}
