//! `strata bench --serve`: `strata serve` over HTTP on this machine, with
//! PocketBase's published figures as the bar. The server is a child process
//! (this binary) on a free loopback port with a fresh data directory; the
//! load generator runs here, in-process: one tokio thread, `--serve-concurrency`
//! keep-alive HTTP/1.1 connections, one request in flight on each.
//!
//! Parts (`--serve-only`):
//! - `api`: a tenant with a base collection of `--serve-records` records
//!   (inserted through the API), then getOne, list (`perPage=20`) and create,
//!   each for `--serve-duration` after `--serve-warmup` (after `evicted`, so
//!   that its forks hold just the inserted records);
//! - `sync`: create again on a server whose databases use `durability=sync`
//!   (server-wide through `STRATA_DURABILITY`: there is no per-tenant mode);
//! - `evicted`: `--serve-evicted` forks of that tenant, each written to and
//!   evicted; the first request to each, with its local files kept and with
//!   them removed (a node that never had it), vs the same request on a
//!   loaded tenant;
//! - `tenants`: `--serve-tenants` tenants created and touched on a server
//!   with `--max-tenants` `--serve-max-tenants`; loads, evictions, peak RSS
//!   and open files of the server process.
//!
//! Every response must be 2xx: any other status fails the run.

use super::{start_self, stop_self};
use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// PocketBase v0.36.0 on a Hetzner CAX11 (2 vCPU ARM64), its load generator
/// on the same box (github.com/pocketbase/benchmarks,
/// `results/hetzner_cax11.md`): getOne, 1,000 requests at concurrency 100
/// in 378.5 ms; create, 50,000 `posts100k` records at concurrency 500 in
/// 24.81 s; list, `posts10k` `?perPage=20` ("simpleB"), 1,000 requests at
/// concurrency 1,000 in 1.476 s.
const PB_GET_ONE: f64 = 2640.0;
const PB_CREATE: f64 = 2015.0;
const PB_LIST: f64 = 678.0;

const ADMIN_TOKEN: &str = "strata-bench-admin-token";
const SUPERUSER: (&str, &str) = ("bench@example.com", "bench-password");
const COLLECTION: &str = "posts";

#[derive(clap::Args)]
pub struct Opts {
    /// With --serve: connections of the load generator (one request in
    /// flight on each).
    #[arg(long, default_value_t = 16)]
    serve_concurrency: usize,
    /// With --serve: how long each getOne, list and create run lasts.
    #[arg(long, default_value = "10s")]
    serve_duration: humantime::Duration,
    /// With --serve: unmeasured load before each run.
    #[arg(long, default_value = "2s")]
    serve_warmup: humantime::Duration,
    /// With --serve: records in the collection that getOne and list read.
    #[arg(long, default_value_t = 10_000)]
    serve_records: u64,
    /// With --serve: tenants whose first request after eviction is timed.
    #[arg(long, default_value_t = 200)]
    serve_evicted: u64,
    /// With --serve: tenants created and touched under the LRU bound.
    #[arg(long, default_value_t = 10_000)]
    serve_tenants: u64,
    /// With --serve: the server's --max-tenants for that part.
    #[arg(long, default_value_t = 200)]
    serve_max_tenants: usize,
    /// With --serve: run only these parts (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "api,sync,evicted,tenants"
    )]
    serve_only: Vec<ServePart>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServePart {
    /// getOne, list and create on one tenant.
    Api,
    /// create with durability=sync.
    Sync,
    /// First request to an evicted tenant.
    Evicted,
    /// Many tenants under the LRU bound.
    Tenants,
}

pub fn run(dir: &Path, bucket: Option<&str>, o: &Opts) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut table = Table::default();
    let result = rt.block_on(run_parts(dir, bucket, o, &mut table));
    table.print();
    result
}

async fn run_parts(dir: &Path, bucket: Option<&str>, o: &Opts, table: &mut Table) -> Result<()> {
    let bucket_for = |part: &str| match bucket {
        Some(b) => format!("{}/{part}", b.trim_end_matches('/')),
        None => dir.join(format!("bucket-{part}")).display().to_string(),
    };
    println!(
        "strata bench --serve: load generator in this process (1 tokio thread, {} keep-alive connections), server `strata serve` as a child process, bucket {}",
        o.serve_concurrency,
        bucket_for("<part>")
    );
    let hash = Instant::now();
    bcrypt::hash(SUPERUSER.1, bcrypt::DEFAULT_COST)?;
    println!(
        "bcrypt (cost {}, one hash in this process): {:.0} ms",
        bcrypt::DEFAULT_COST,
        ms(hash.elapsed())
    );
    let only = |p| o.serve_only.contains(&p);
    let mut async_create = None;
    if only(ServePart::Api) || only(ServePart::Evicted) {
        let s = Server::start(dir, "api", &bucket_for("api"), &[], &[])?;
        seed(&s, "bench", o.serve_records, o.serve_concurrency, table).await?;
        // Evicted first: the forks then hold exactly the seeded records.
        if only(ServePart::Evicted) {
            evicted(&s, o, table).await?;
        }
        if only(ServePart::Api) {
            async_create = Some(api(&s, o, table).await?);
        }
        s.report_memory("api server", table);
        s.stop()?;
    }
    if only(ServePart::Sync) {
        let s = Server::start(
            dir,
            "sync",
            &bucket_for("sync"),
            &[],
            &[("STRATA_DURABILITY", "sync")],
        )?;
        seed(&s, "bench", 0, o.serve_concurrency, table).await?;
        let r = measure(&s, o, "create (durability=sync)", create_req("bench")).await?;
        let vs = async_create.map_or(String::new(), |a: f64| {
            format!("{:.2}x async create", r.rate() / a)
        });
        table.row("create, durability=sync", r.summary(), vs);
        s.stop()?;
    }
    if only(ServePart::Tenants) {
        let max = o.serve_max_tenants.to_string();
        let s = Server::start(
            dir,
            "tenants",
            &bucket_for("tenants"),
            &["--max-tenants", &max],
            &[],
        )?;
        tenants(&s, o, table).await?;
        s.stop()?;
    }
    Ok(())
}

/// A tenant with a superuser and a public base collection of `records`
/// records (ids `r00000000000000`, ...).
async fn seed(s: &Server, id: &str, records: u64, conc: usize, table: &mut Table) -> Result<()> {
    let mut c = s.conn().await?;
    let t = Instant::now();
    c.call(
        Method::POST,
        "/_strata/api/tenants",
        Some(ADMIN_TOKEN),
        Some(json!({"id": id, "superuser": {"email": SUPERUSER.0, "password": SUPERUSER.1}})),
    )
    .await?;
    let created = t.elapsed();
    let auth = c
        .call(
            Method::POST,
            &format!("/t/{id}/api/collections/_superusers/auth-with-password"),
            None,
            Some(json!({"identity": SUPERUSER.0, "password": SUPERUSER.1})),
        )
        .await?;
    let token = auth["token"].as_str().context("no token")?.to_string();
    c.call(
        Method::POST,
        &format!("/t/{id}/api/collections"),
        Some(&token),
        Some(json!({
            "name": COLLECTION,
            "type": "base",
            "fields": [
                {"name": "title", "type": "text", "required": true},
                {"name": "body", "type": "text"},
                {"name": "n", "type": "number"},
                {"name": "done", "type": "bool"},
            ],
            "listRule": "", "viewRule": "", "createRule": "",
        })),
    )
    .await?;
    println!(
        "tenant {id}: created in {:.0} ms (superuser bcrypt included), collection `{COLLECTION}`",
        ms(created)
    );
    if records == 0 {
        return Ok(());
    }
    let pb = bar(records, "insert");
    let path = records_path(id);
    let r = load(s, conc, Until::Count(records), Some(pb.clone()), move |i| {
        Req::post(&path, &post(Some(&record_id(i)), i))
    })
    .await?;
    pb.finish_and_clear();
    r.check("insert")?;
    println!(
        "insert {records} records (POST, concurrency {conc}, client-chosen ids): {:.1} s, {}",
        r.elapsed.as_secs_f64(),
        r.summary()
    );
    table.row(
        &format!("insert {records} records (POST)"),
        format!("{:.1} s = {}", r.elapsed.as_secs_f64(), r.summary()),
        String::new(),
    );
    Ok(())
}

fn records_path(tenant: &str) -> String {
    format!("/t/{tenant}/api/collections/{COLLECTION}/records")
}

fn record_id(i: u64) -> String {
    format!("r{i:014}")
}

/// A record body of about 200 bytes, like a short post.
fn post(id: Option<&str>, i: u64) -> Value {
    let mut v = json!({
        "title": format!("post number {i}"),
        "body": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.",
        "n": i,
        "done": i.is_multiple_of(2),
    });
    if let Some(id) = id {
        v["id"] = id.into();
    }
    v
}

fn create_req(tenant: &str) -> impl Fn(u64) -> Req + Send + Sync + 'static {
    let path = records_path(tenant);
    move |i| Req::post(&path, &post(None, i))
}

/// getOne, list and create on the seeded tenant. Returns create's rate.
async fn api(s: &Server, o: &Opts, table: &mut Table) -> Result<f64> {
    let records = o.serve_records;
    let path = records_path("bench");
    let get_one = {
        let path = path.clone();
        move |_| {
            Req::get(format!(
                "{path}/{}",
                record_id(rand::random_range(0..records))
            ))
        }
    };
    let r = measure(s, o, "getOne", get_one).await?;
    table.row("getOne", r.summary(), ratio(r.rate(), PB_GET_ONE));
    let pages = records.div_ceil(20).max(1);
    let list = {
        let path = path.clone();
        move |_| {
            Req::get(format!(
                "{path}?perPage=20&page={}",
                rand::random_range(1..=pages)
            ))
        }
    };
    let r = measure(s, o, "list (perPage=20)", list).await?;
    table.row(
        &format!("list, perPage=20 over {records} records"),
        r.summary(),
        format!(
            "{} (PocketBase's posts10k list, concurrency 1000)",
            ratio(r.rate(), PB_LIST)
        ),
    );
    let r = measure(s, o, "create", create_req("bench")).await?;
    table.row("create", r.summary(), ratio(r.rate(), PB_CREATE));
    Ok(r.rate())
}

/// First request to evicted tenants: forks of `bench`, each written to
/// (segments on top of the fork's snapshot) and evicted.
async fn evicted(s: &Server, o: &Opts, table: &mut Table) -> Result<()> {
    let n = o.serve_evicted;
    let ids: Vec<String> = (0..n).map(|i| format!("ev{i:05}")).collect();
    let pb = bar(n, "fork");
    let t = Instant::now();
    {
        let ids = ids.clone();
        let r = load(
            s,
            o.serve_concurrency.min(4),
            Until::Count(n),
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
    Ok(())
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
async fn tenants(s: &Server, o: &Opts, table: &mut Table) -> Result<()> {
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
    let r = load(s, conc, Until::Count(n), Some(pb.clone()), move |i| {
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
    let pb = bar(n, "touch tenants");
    let r = load(s, conc, Until::Count(n), Some(pb.clone()), move |i| {
        Req::get(format!("/t/{}/api/health", id(i)))
    })
    .await?;
    pb.finish_and_clear();
    r.check("touch tenant")?;
    sampler.abort();
    let loads = s.metric("strata_serve_tenant_loads_total").await?;
    let evictions = s.metric("strata_serve_tenant_evictions_total").await?;
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
        format!("{loads} loads, {evictions} evictions, {loaded} loaded at the end"),
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
    Ok(())
}

/// Warm-up, then a timed run; any non-2xx answer fails the bench.
async fn measure(
    s: &Server,
    o: &Opts,
    name: &str,
    make: impl Fn(u64) -> Req + Send + Sync + 'static,
) -> Result<Run> {
    let make = Arc::new(make);
    let warm = {
        let make = make.clone();
        load(
            s,
            o.serve_concurrency,
            Until::Time(o.serve_warmup.into()),
            None,
            move |i| make(i),
        )
        .await?
    };
    warm.check(name)?;
    let r = load(
        s,
        o.serve_concurrency,
        Until::Time(o.serve_duration.into()),
        None,
        move |i| make(i),
    )
    .await?;
    r.check(name)?;
    println!("{name}: {}", r.summary());
    Ok(r)
}

/// User and system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields 14 and 15 (utime, stime), counted after the `(comm)` field.
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn ratio(rate: f64, bar: f64) -> String {
    format!("{:.2}x PocketBase's {bar:.0}/s", rate / bar)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bar(n: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(n);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// The rows printed at the end.
#[derive(Default)]
struct Table(Vec<[String; 3]>);

impl Table {
    fn row(&mut self, what: &str, result: String, vs: String) {
        self.0.push([what.to_string(), result, vs]);
    }
    fn print(&self) {
        if self.0.is_empty() {
            return;
        }
        println!("\n| what | result | vs |\n|---|---|---|");
        for [a, b, c] in &self.0 {
            println!("| {a} | {b} | {c} |");
        }
    }
}

/// The `strata serve` child.
struct Server {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(
        dir: &Path,
        name: &str,
        bucket: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server> {
        let data_dir = dir.join(format!("node-{name}"));
        let log = dir.join(format!("serve-{name}.log"));
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--bucket".as_ref(),
            bucket.as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let mut env = env.to_vec();
        env.push(("STRATA_ADMIN_TOKEN", ADMIN_TOKEN));
        let (child, line) = start_self(
            &args,
            &env,
            Stdio::from(std::fs::File::create(&log)?),
            "strata serve: listening on http://",
        )
        .with_context(|| {
            format!(
                "strata serve: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .context("no address")?
            .parse()?;
        Ok(Server {
            child,
            addr,
            data_dir,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn conn(&self) -> Result<Conn> {
        Conn::open(self.addr).await
    }

    /// A kB field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`).
    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// An unlabelled sample from `/metrics`.
    async fn metric(&self, name: &str) -> Result<f64> {
        let body = self
            .conn()
            .await?
            .send(&Req::get("/metrics".into()))
            .await?
            .ok("/metrics")?;
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("{name} not in /metrics"))
    }

    fn report_memory(&self, what: &str, table: &mut Table) {
        let (hwm, rss) = (self.status_kib("VmHWM"), self.status_kib("VmRSS"));
        let files = open_fds(self.pid());
        println!(
            "{what}: peak RSS {} MiB, RSS now {} MiB, open files {files}",
            hwm >> 10,
            rss >> 10
        );
        table.row(
            &format!("{what}: memory"),
            format!("peak RSS {} MiB, now {} MiB", hwm >> 10, rss >> 10),
            format!("open files {files}"),
        );
    }

    /// SIGTERM: the server drains, flushes every loaded tenant and must exit 0.
    fn stop(mut self) -> Result<()> {
        let status = stop_self(&mut self.child)?;
        ensure!(
            status.success(),
            "strata serve exited with {status}: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One request, made up front so that building it is not timed.
#[derive(Clone)]
struct Req {
    method: Method,
    path: String,
    body: Option<Bytes>,
    token: Option<String>,
}

impl Req {
    fn get(path: String) -> Req {
        Req {
            method: Method::GET,
            path,
            body: None,
            token: None,
        }
    }
    fn post(path: &str, body: &Value) -> Req {
        Req {
            method: Method::POST,
            path: path.into(),
            body: Some(body.to_string().into()),
            token: None,
        }
    }
    /// With the admin token.
    fn admin(mut self) -> Req {
        self.token = Some(ADMIN_TOKEN.into());
        self
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    tx: SendRequest<Full<Bytes>>,
    host: String,
}

/// A status and a body.
struct Answer(u16, Bytes);

impl Answer {
    fn ok(self, what: &str) -> Result<Bytes> {
        ensure!(
            (200..300).contains(&self.0),
            "{what}: {} {}",
            self.0,
            String::from_utf8_lossy(&self.1)
        );
        Ok(self.1)
    }
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn {
            tx,
            host: addr.to_string(),
        })
    }

    async fn send(&mut self, r: &Req) -> Result<Answer> {
        let mut b = Request::builder()
            .method(r.method.clone())
            .uri(&r.path)
            .header(hyper::header::HOST, &self.host);
        if let Some(t) = &r.token {
            b = b.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if r.body.is_some() {
            b = b.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = b.body(Full::new(r.body.clone().unwrap_or_default()))?;
        self.tx.ready().await?;
        let resp = self.tx.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer(status, body))
    }

    /// A JSON request that must succeed; its JSON answer.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut r = match &body {
            Some(b) => Req::post(path, b),
            None => Req::get(path.into()),
        };
        r.method = method;
        r.token = token.map(str::to_string);
        let body = self.send(&r).await?.ok(path)?;
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn evict(&mut self, tenant: &str) -> Result<()> {
        let path = format!("/_strata/api/tenants/{tenant}/evict");
        self.call(Method::POST, &path, Some(ADMIN_TOKEN), None)
            .await
            .map(drop)
    }
}

enum Until {
    Time(Duration),
    Count(u64),
}

/// What a load run saw.
struct Run {
    lat: Latencies,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// CPU cores used by the server and by the load generator.
    cores: Option<(f64, f64)>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.lat.0.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn check(&self, what: &str) -> Result<()> {
        if self.errors > 0 {
            bail!(
                "{what}: {} of {} requests failed; first: {}",
                self.errors,
                self.lat.0.len(),
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        Ok(())
    }
    fn summary(&self) -> String {
        let cpu = self.cores.map_or(String::new(), |(s, c)| {
            format!(
                "; CPU: server {s:.2} cores ({:.0} us/request), load generator {c:.2}",
                s * 1e6 / self.rate()
            )
        });
        format!("{:.0} req/s, {}{cpu}", self.rate(), self.lat.summary())
    }
}

/// Sorted latencies.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut v: Vec<Duration>) -> Latencies {
        v.sort_unstable();
        Latencies(v)
    }
    fn pct(&self, p: f64) -> Duration {
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(i).copied().unwrap_or_default()
    }
    fn summary(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms ({} requests)",
            ms(self.pct(0.5)),
            ms(self.pct(0.99)),
            self.0.len()
        )
    }
}

/// `conc` connections, each sending `make(i)` (a shared sequence number)
/// and waiting for the answer, until `until`.
async fn load(
    s: &Server,
    conc: usize,
    until: Until,
    pb: Option<ProgressBar>,
    make: impl Fn(u64) -> Req + Send + Sync + 'static,
) -> Result<Run> {
    let make = Arc::new(make);
    let next = Arc::new(AtomicU64::new(0));
    let cpu = (cpu_secs(s.pid()), cpu_secs(std::process::id()));
    let start = Instant::now();
    let (deadline, count) = match until {
        Until::Time(d) => (Some(start + d), u64::MAX),
        Until::Count(n) => (None, n),
    };
    let mut workers = Vec::new();
    for _ in 0..conc.max(1) {
        let mut c = s.conn().await?;
        let (make, next, pb) = (make.clone(), next.clone(), pb.clone());
        workers.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let r = make(i);
                let t = Instant::now();
                let Answer(status, body) = c.send(&r).await?;
                lat.push(t.elapsed());
                if !(200..300).contains(&status) {
                    errors += 1;
                    first_error.get_or_insert_with(|| {
                        format!(
                            "{} {} -> {status} {}",
                            r.method,
                            r.path,
                            String::from_utf8_lossy(&body)
                        )
                    });
                }
                if let Some(pb) = &pb {
                    pb.inc(1);
                }
            }
            anyhow::Ok((lat, errors, first_error))
        }));
    }
    let mut run = Run {
        lat: Latencies(Vec::new()),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        cores: None,
    };
    let mut all = Vec::new();
    for w in workers {
        let (lat, errors, first) = w.await??;
        all.extend(lat);
        run.errors += errors;
        run.first_error = run.first_error.or(first);
    }
    run.elapsed = start.elapsed();
    run.lat = Latencies::new(all);
    let secs = run.elapsed.as_secs_f64();
    run.cores = Some((
        (cpu_secs(s.pid()) - cpu.0) / secs,
        (cpu_secs(std::process::id()) - cpu.1) / secs,
    ));
    Ok(run)
}
