//! `strata bench --serve`: `strata serve` over HTTP on this machine, side
//! by side with the real PocketBase in the same run. Both are child
//! processes on loopback ports with fresh data directories (strata: this
//! binary, a local-directory bucket unless `--bucket`); throughput comes
//! from `wrk` (`wrk.rs`), the same script and settings for both, runs
//! alternating between them.
//!
//! Parts (`--serve-only`):
//! - `api` (`side.rs`): one tenant on each, the same collection, records and
//!   request mixes (getOne, list with and without totals, filtered list,
//!   update, auth-with-password, create), `--serve-rounds` alternating runs
//!   of each; ratios, server CPU per request, and both processes' memory;
//! - `many` (`many.rs`): `--serve-pb-tenants` tenants in one strata process
//!   against as many PocketBase processes (one per tenant, as a
//!   container-per-tenant host runs them): req/s and total RSS;
//! - `sync` (`tenants.rs`): create on a server whose databases use
//!   `durability=sync`, against async create on the same box in this run;
//! - `evicted` (`tenants.rs`): first request to evicted tenants, with and
//!   without their local files, vs a loaded tenant;
//! - `tenants` (`tenants.rs`): `--serve-tenants` tenants created and touched
//!   once each under `--serve-max-tenants`: loads/s, latency, memory;
//! - `files` (`files.rs`): uploads and downloads of `--serve-files` files
//!   through strata and PocketBase, against the bucket's own PUT and GET;
//! - `cluster` (`cluster.rs`): three nodes on one bucket: forwarded against
//!   direct requests, planned moves, an idle node's bucket requests, spread
//!   of tenants, takeover after kill -9.
//!
//! Every answer must be 2xx: any other status fails the run.

mod cluster;
mod files;
mod http;
mod many;
mod pocketbase;
mod side;
mod strata;
mod tenants;
mod wrk;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "strata-bench-admin-token";
pub const SUPERUSER: (&str, &str) = ("bench@example.com", "bench-password");
/// An auth record of the `members` collection, for auth-with-password.
pub const MEMBER: (&str, &str) = ("member@example.com", "member-password");
pub const COLLECTION: &str = "posts";

#[derive(clap::Args)]
pub struct Opts {
    /// With --serve: connections of the load generator.
    #[arg(long, default_value_t = 16)]
    serve_concurrency: usize,
    /// With --serve: wrk threads for one tenant (more threads take more of
    /// the cores the servers run on).
    #[arg(long, default_value_t = 1)]
    serve_threads: usize,
    /// With --serve: how long each measured run lasts.
    #[arg(long, default_value = "10s")]
    serve_duration: humantime::Duration,
    /// With --serve: unmeasured load before each run.
    #[arg(long, default_value = "2s")]
    serve_warmup: humantime::Duration,
    /// With --serve: alternating runs of each request mix on each server.
    #[arg(long, default_value_t = 3)]
    serve_rounds: usize,
    /// With --serve: records in the collection the reads go to.
    #[arg(long, default_value_t = 10_000)]
    serve_records: u64,
    /// With --serve: tenants (PocketBase processes) of the `many` part.
    #[arg(long, default_value_t = 100)]
    serve_pb_tenants: usize,
    /// With --serve: records of each tenant in the `many` part.
    #[arg(long, default_value_t = 1_000)]
    serve_pb_records: u64,
    /// With --serve: the PocketBase binary (default: STRATA_POCKETBASE,
    /// `pocketbase` on PATH, target/pocketbase/bin/pocketbase).
    #[arg(long)]
    pocketbase: Option<PathBuf>,
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
        default_value = "api,many,sync,evicted,tenants,files,cluster"
    )]
    serve_only: Vec<ServePart>,
    /// With --serve: files uploaded and downloaded in the `files` part.
    #[arg(long, default_value_t = 64)]
    serve_files: u64,
    /// With --serve: the size of each of those files, in KiB.
    #[arg(long, default_value_t = 1024)]
    serve_file_kib: u64,
    /// With --serve: uploads (and downloads) in flight at once.
    #[arg(long, default_value_t = 4)]
    serve_file_concurrency: usize,
    /// With --serve: planned moves timed in the `cluster` part.
    #[arg(long, default_value_t = 20)]
    serve_moves: usize,
    /// With --serve: kill -9 rounds of the `cluster` part.
    #[arg(long, default_value_t = 20)]
    serve_kills: usize,
    /// With --serve: tenants spread over the nodes in the `cluster` part.
    #[arg(long, default_value_t = 1000)]
    serve_cluster_tenants: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServePart {
    /// One tenant, strata and PocketBase side by side.
    Api,
    /// Many tenants: one strata process against one PocketBase each.
    Many,
    /// create with durability=sync.
    Sync,
    /// First request to an evicted tenant.
    Evicted,
    /// Many tenants under the LRU bound.
    Tenants,
    /// File uploads and downloads against the bucket's own PUT and GET.
    Files,
    /// Three nodes on one bucket: forwarding, moves, heartbeat cost,
    /// spread, takeover after kill -9.
    Cluster,
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
    let only = |p| o.serve_only.contains(&p);
    println!(
        "strata bench --serve: servers as child processes on loopback; strata's bucket {}",
        bucket_for("<part>")
    );
    let mut async_create = None;
    if only(ServePart::Api) || only(ServePart::Many) {
        wrk::check()?;
    }
    if only(ServePart::Api) {
        let pb = pocketbase::find(o.pocketbase.as_deref())?;
        async_create = Some(side::run(dir, &bucket_for("api"), &pb, o, table).await?);
    }
    if only(ServePart::Many) {
        let pb = pocketbase::find(o.pocketbase.as_deref())?;
        many::run(dir, &bucket_for("many"), &pb, o, table).await?;
    }
    if only(ServePart::Sync) {
        tenants::sync(dir, &bucket_for("sync"), o, async_create, table).await?;
    }
    if only(ServePart::Evicted) {
        tenants::evicted(dir, &bucket_for("evicted"), o, table).await?;
    }
    if only(ServePart::Tenants) {
        tenants::tenants(dir, &bucket_for("tenants"), o, table).await?;
    }
    if only(ServePart::Files) {
        let pb = pocketbase::find(o.pocketbase.as_deref())?;
        files::run(dir, &bucket_for("files"), &pb, o, table).await?;
    }
    if only(ServePart::Cluster) {
        wrk::check()?;
        cluster::run(dir, &bucket_for("cluster"), o, table).await?;
    }
    Ok(())
}

/// The collection every part reads and writes: text, number and bool
/// fields (records of about 200 bytes) and the two autodate fields that
/// PocketBase's dashboard adds, public rules.
fn posts_collection() -> Value {
    let fields = vec![
        json!({"name": "title", "type": "text", "required": true}),
        json!({"name": "body", "type": "text"}),
        json!({"name": "n", "type": "number"}),
        json!({"name": "done", "type": "bool"}),
        json!({"name": "created", "type": "autodate", "onCreate": true}),
        json!({"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}),
    ];
    json!({
        "name": COLLECTION,
        "type": "base",
        "fields": fields,
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
    })
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

/// CPU seconds of the children this process has waited for (wrk runs).
fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// A kB field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
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
pub struct Table(Vec<[String; 3]>);

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
