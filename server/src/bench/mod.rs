//! `strata bench`: strata against plain SQLite, in one run, on this machine.
//! Results are ratios against the baseline measured in the same run.

mod mount;
mod serve;

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Bucket to replicate to (default: a fresh local directory).
    #[arg(long)]
    bucket: Option<String>,
    /// Transactions per write-throughput run.
    #[arg(long, default_value_t = 20_000)]
    txns: u64,
    /// Target rate for the lag measurement (transactions per second).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Rows of the cold-open / warm-read database (~250 bytes each).
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
    /// Duration of the lag measurement.
    #[arg(long, default_value = "10s")]
    lag_duration: humantime::Duration,
    /// Duration of each sync-mode group-commit run (1, 4 and 16 writers).
    #[arg(long, default_value = "5s")]
    sync_duration: humantime::Duration,
    /// Run only these parts (comma-separated): write, lag, cold, sync.
    #[arg(long, value_delimiter = ',', default_value = "write,lag,cold,sync")]
    only: Vec<Part>,
    /// Only the mount benchmark: read throughput through `strata mount` vs
    /// the same file on local disk (needs FUSE).
    #[arg(long)]
    mount: bool,
    /// Size of the mount benchmark's database.
    #[arg(long, default_value_t = 256)]
    mount_mib: u64,
    /// Only the server benchmark: `strata serve` over HTTP (getOne, list,
    /// create, update, auth, evicted tenants, many tenants), side by side
    /// with the real PocketBase started in the same run (`--serve-only`).
    #[arg(long, conflicts_with = "mount")]
    serve: bool,
    #[command(flatten)]
    serve_opts: serve::Opts,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Write throughput vs plain SQLite.
    Write,
    /// Replication lag and bucket requests at a steady rate.
    Lag,
    /// Cold lazy open vs full restore, hydrate, warm reads.
    Cold,
    /// Sync-mode group commit: 1, 4, 16 concurrent writers.
    Sync,
}

fn open(uri: &str) -> Result<rusqlite::Connection> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let c = rusqlite::Connection::open_with_flags(uri, flags)?;
    c.pragma_update(None, "journal_mode", "wal")?;
    c.pragma_update(None, "synchronous", "normal")?;
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")?;
    Ok(c)
}

fn write_run(c: &rusqlite::Connection, n: u64) -> Result<Duration> {
    let mut stmt = c.prepare("INSERT INTO t(v) VALUES (randomblob(100))")?;
    let t = Instant::now();
    for _ in 0..n {
        stmt.execute([])?;
    }
    Ok(t.elapsed())
}

pub fn run(a: Args) -> Result<()> {
    strata_vfs::sqlite::register_static()?;
    let dir = tempfile_dir()?;
    if a.mount {
        let r = mount::run(&dir, a.mount_mib);
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    if a.serve {
        let r = serve::run(&dir, a.bucket.as_deref(), &a.serve_opts);
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    let bucket = a
        .bucket
        .clone()
        .unwrap_or_else(|| format!("file://{}/bucket", dir.display()));
    println!(
        "strata bench: {} small transactions per run, bucket {bucket}",
        a.txns
    );

    if a.only.contains(&Part::Write) {
        write_vs_plain(&a, &dir, &bucket)?;
    }
    if a.only.contains(&Part::Lag) {
        lag(&a, &dir, &bucket)?;
    }
    if a.only.contains(&Part::Cold) {
        cold_and_warm(&bucket, &dir, a.rows)?;
    }
    if a.only.contains(&Part::Sync) {
        sync_scaling(&bucket, &dir, a.sync_duration.into())?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Write throughput, alternating plain / strata runs to even out noise.
fn write_vs_plain(a: &Args, dir: &std::path::Path, bucket: &str) -> Result<()> {
    let plain_path = dir.join("plain.db");
    let plain = open(&plain_path.display().to_string())?;
    let strata_path = dir.join("strata.db");
    let cfg_uri = crate::demo::vfs_uri(&strata_path, bucket, "bench", "strata.db");
    let strata = open(&cfg_uri)?;
    let (mut tp, mut ts) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        tp += write_run(&plain, a.txns / 3)?;
        ts += write_run(&strata, a.txns / 3)?;
    }
    let n = (a.txns / 3 * 3) as f64;
    let (rp, rs) = (n / tp.as_secs_f64(), n / ts.as_secs_f64());
    println!(
        "write throughput: sqlite {rp:.0} txn/s, strata {rs:.0} txn/s, ratio {:.3}",
        rs / rp
    );
    let _: String = strata.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
    drop(strata);
    drop(plain);
    Ok(())
}

/// Replication lag and requests per 1,000 transactions at a steady rate.
fn lag(a: &Args, dir: &std::path::Path, bucket: &str) -> Result<()> {
    let lag_path = dir.join("lag.db");
    let c = open(&crate::demo::vfs_uri(&lag_path, bucket, "bench", "lag.db"))?;
    let mut stmt = c.prepare("INSERT INTO t(v) VALUES (randomblob(100))")?;
    let dur: Duration = a.lag_duration.into();
    // The writer's epoch claim happens on the first upload: not steady state.
    let _: String = c.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
    let before = requests();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut samples = Vec::new();
    let mut last_sample = Instant::now();
    while start.elapsed() < dur {
        let due = (start.elapsed().as_secs_f64() * a.rate as f64) as u64;
        while sent < due {
            stmt.execute([])?;
            sent += 1;
        }
        if last_sample.elapsed() >= Duration::from_millis(20) {
            let lag: String = c.query_row("PRAGMA strata_lag_ms", [], |r| r.get(0))?;
            samples.push(lag.parse::<u64>().unwrap_or(0));
            last_sample = Instant::now();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let steady = requests();
    let _: String = c.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
    samples.sort_unstable();
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "replication lag at {} txn/s for {:?}: p50 {} ms, p99 {} ms ({} samples of the oldest unreplicated commit's age)",
        a.rate,
        dur,
        pct(0.5),
        pct(0.99),
        samples.len()
    );
    let per_k = |op: &str| (steady[op] - before[op]) as f64 * 1000.0 / sent.max(1) as f64;
    println!(
        "bucket requests per 1,000 txns (steady state, {sent} txns): total {:.2} = put_if_absent {:.2} + put_if_match {:.2} + get {:.2} + list {:.2}",
        OPS.iter().map(|o| per_k(o)).sum::<f64>(),
        per_k("put_if_absent"),
        per_k("put_if_match"),
        per_k("get"),
        per_k("list"),
    );
    drop(stmt);
    drop(c); // close (final upload) before the directory goes
    Ok(())
}

/// Sync durability: every commit waits for its upload, so one writer is
/// bound by the bucket's round trips; concurrent writers share uploads
/// (group commit). Same database, 1, 4 and 16 connections on threads.
fn sync_scaling(bucket: &str, dir: &std::path::Path, each: Duration) -> Result<()> {
    let mut single = 0.0;
    for writers in [1usize, 4, 16] {
        let name = format!("sync{writers}.db");
        let uri = format!(
            "{}&durability=sync",
            crate::demo::vfs_uri(&dir.join(&name), bucket, "bench", &name)
        );
        let setup = open(&uri)?;
        // The epoch claim and the first upload are not steady state.
        write_run(&setup, 10)?;
        // Segment uploads only (merges and snapshots also create objects).
        let uploaded = || strata_vfs::metrics::METRICS.segments_uploaded.get();
        let before = uploaded();
        let deadline = Instant::now() + each;
        let started = Instant::now();
        let counts = std::thread::scope(|s| {
            let handles: Vec<_> = (0..writers)
                .map(|_| {
                    s.spawn(|| -> Result<u64> {
                        let c = open(&uri)?;
                        c.busy_timeout(Duration::from_secs(60))?;
                        let mut stmt = c.prepare("INSERT INTO t(v) VALUES (randomblob(100))")?;
                        let mut n = 0;
                        while Instant::now() < deadline {
                            stmt.execute([])?;
                            n += 1;
                        }
                        Ok(n)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| anyhow::anyhow!("writer panicked"))?)
                .collect::<Result<Vec<u64>>>()
        })?;
        let secs = started.elapsed().as_secs_f64();
        let total: u64 = counts.iter().sum();
        let uploads = uploaded() - before;
        let rate = total as f64 / secs;
        if writers == 1 {
            single = rate;
        }
        println!(
            "sync-mode commits, {writers:>2} writer(s): {rate:.0} txn/s ({:.2}x one writer), {:.1} commits per upload",
            rate / single,
            total as f64 / uploads.max(1) as f64
        );
        drop(setup);
    }
    Ok(())
}

/// Cold open (lazy) vs a full restore of the same database, then warm point
/// reads through strata vs plain SQLite on the same data.
fn cold_and_warm(bucket: &str, dir: &std::path::Path, rows: u64) -> Result<()> {
    use rand::Rng;
    let store = strata_vfs::bucket::open_bucket(bucket)?;
    let metered = std::sync::Arc::new(strata_vfs::bucket::metered::MeteredStore::new(
        store.clone(),
    ));
    let url = format!("metered+{bucket}");
    strata_vfs::sqlite::params::register_store(&url, metered.clone());
    let db = "cold.db";
    // An existing tenant: built with plain SQLite, then imported (its pages
    // become the snapshot at txid 1, with its hot pages beside it).
    let src = dir.join("cold-src.db");
    let _ = std::fs::remove_file(&src);
    let writer = rusqlite::Connection::open(&src)?;
    // WAL mode, as every database strata serves is: the cold open below
    // then neither writes nor converts anything before its query.
    writer.pragma_update(None, "journal_mode", "wal")?;
    writer.execute_batch(&format!(
        "CREATE TABLE r(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {rows})
         INSERT INTO r SELECT i, hex(randomblob(100)) FROM n;"
    ))?;
    let size: i64 = writer.query_row(
        "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
        [],
        |r| r.get(0),
    )?;
    drop(writer);
    let keys = strata_vfs::format::keys::DbKeys::new("bench", db)?;
    strata_vfs::engine::import::import(&store, &keys, &src)?;
    let _ = std::fs::remove_file(&src);
    let restored = dir.join("cold-restored.db");
    let t = Instant::now();
    strata_vfs::engine::restore::restore(
        &store,
        &keys,
        strata_vfs::engine::Target::Latest,
        &restored,
        &Default::default(),
    )?;
    let t_restore = t.elapsed();

    let before = metered.snapshot();
    tracing::debug!("cold open: start");
    let t = Instant::now();
    // Open and query only: `open` would also create the bench's table.
    let cold = rusqlite::Connection::open_with_flags(
        crate::demo::vfs_uri(&dir.join("cold-node.db"), &url, "bench", db),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )?;
    let id = (rows / 2 + 1) as i64;
    tracing::debug!("cold open: opened");
    let _: String = cold.query_row("SELECT v FROM r WHERE id = ?1", [id], |r| r.get(0))?;
    let t_first = t.elapsed();
    tracing::debug!("cold open: first row");
    let used = metered.snapshot().sub(&before);
    println!(
        "cold open of a {} MiB database: first row after {:.1} ms, {} requests, {} bytes ({:.2}% of the database); full restore {:.1} ms; ratio {:.0}x",
        size >> 20,
        t_first.as_secs_f64() * 1e3,
        used.total(),
        used.bytes_read,
        used.bytes_read as f64 * 100.0 / size as f64,
        t_restore.as_secs_f64() * 1e3,
        t_restore.as_secs_f64() / t_first.as_secs_f64()
    );
    let t = Instant::now();
    let before = metered.snapshot();
    let _: String = cold.query_row("PRAGMA strata_hydrate", [], |r| r.get(0))?;
    let hydrate = t.elapsed();
    let got = metered.snapshot().sub(&before).bytes_read;
    let raw = raw_read(&store, &keys)?;
    let fill = fill_sparse(dir, size as u64)?;
    let mib_s = |bytes: u64, d: Duration| bytes as f64 / 1048576.0 / d.as_secs_f64();
    println!(
        "hydrate: {} MiB of objects in {:.0} ms = {:.0} MiB/s; raw parallel GETs of the same objects: {:.0} MiB/s; ratio {:.2} (database: {:.0} MiB/s hydrated, {:.0} MiB/s restored)",
        got >> 20,
        hydrate.as_secs_f64() * 1e3,
        mib_s(got, hydrate),
        mib_s(raw.0, raw.1),
        mib_s(got, hydrate) / mib_s(raw.0, raw.1),
        mib_s(size as u64, hydrate),
        mib_s(size as u64, t_restore),
    );
    println!(
        "local disk: filling a sparse file of the database's size (8 MiB writes, then fdatasync): {:.0} MiB/s through the page cache, {:.0} MiB/s with O_DIRECT",
        mib_s(size as u64, fill.0),
        mib_s(size as u64, fill.1),
    );

    // Warm point reads: the hydrated strata copy vs plain SQLite on the
    // restore. Both were written around the page cache (O_DIRECT), so read
    // each once first: "warm" means both in the OS page cache.
    for f in [&restored, &dir.join("cold-node.db")] {
        read_through(f)?;
    }
    let plain = rusqlite::Connection::open(&restored)?;
    let reads = |c: &rusqlite::Connection| -> Result<f64> {
        let mut stmt = c.prepare_cached("SELECT v FROM r WHERE id = ?1")?;
        let mut rng = rand::rng();
        per_second(Duration::from_secs(2), || {
            let _: String = stmt.query_row([rng.random_range(1..=rows as i64)], |r| r.get(0))?;
            Ok(())
        })
    };
    let (p1, s1, p2, s2) = (reads(&plain)?, reads(&cold)?, reads(&plain)?, reads(&cold)?);
    let (p, s) = ((p1 + p2) / 2.0, (s1 + s2) / 2.0);
    println!(
        "warm point reads: sqlite {p:.0}/s, strata {s:.0}/s, ratio {:.3}",
        s / p
    );
    // A point-in-time view reads through the in-memory page cache only.
    let view = rusqlite::Connection::open_with_flags(
        format!(
            "{}&txid=1",
            crate::demo::vfs_uri(&dir.join("view.db"), &url, "bench", db)
        ),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )?;
    let m = &strata_vfs::metrics::METRICS;
    reads(&view)?; // warm-up
    let (h0, m0) = (m.page_cache_hits.get(), m.page_cache_misses.get());
    let v = reads(&view)?;
    let (hits, misses) = (m.page_cache_hits.get() - h0, m.page_cache_misses.get() - m0);
    println!(
        "point-in-time view (txid=1), warm random point reads: {v:.0}/s, ratio {:.3} to sqlite; page cache hit ratio {:.1}% ({} MiB cache, {} MiB database)",
        v / p,
        hits as f64 * 100.0 / (hits + misses).max(1) as f64,
        std::env::var("STRATA_PAGE_CACHE")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(64 << 20)
            >> 20,
        size >> 20
    );
    Ok(())
}

/// Read a file once, so that the OS page cache holds it.
fn read_through(path: &std::path::Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 8 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

/// What the local disk gives a hydrate: writing `bytes` into a sparse file
/// of that size (as a lazy copy is) in 8 MiB writes, then `fdatasync`,
/// through the page cache and with `O_DIRECT` (what hydrate uses where it
/// can: some file systems fill holes much slower through the page cache).
fn fill_sparse(dir: &std::path::Path, bytes: u64) -> Result<(Duration, Duration)> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let path = dir.join("fill.bin");
    let mut chunk = vec![0x5au8; (8 << 20) + 4096];
    let skip = chunk.as_ptr().align_offset(4096);
    let chunk = &mut chunk[skip..skip + (8 << 20)];
    let mut times = Vec::new();
    for flags in [0, libc::O_DIRECT] {
        let _ = std::fs::remove_file(&path);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .custom_flags(flags)
            .open(&path)?;
        f.set_len(bytes)?;
        let t = Instant::now();
        for at in (0..bytes).step_by(chunk.len()) {
            // (A 4 KiB multiple: the database is whole pages.)
            let n = (bytes - at).min(chunk.len() as u64) as usize;
            f.write_all_at(&chunk[..n], at)?;
        }
        f.sync_data()?;
        times.push(t.elapsed());
    }
    std::fs::remove_file(&path)?;
    Ok((times[0], times[1]))
}

/// The bucket's own read bandwidth for this database's objects (snapshot,
/// its parts, segments; not the manifest or hot pages): 8 threads of 8 MiB
/// ranged GETs, nothing decoded. Returns (bytes, time).
fn raw_read(
    store: &strata_vfs::bucket::Store,
    keys: &strata_vfs::format::keys::DbKeys,
) -> Result<(u64, Duration)> {
    let objects: Vec<(String, u64)> = store
        .list(keys.root())?
        .into_iter()
        .filter(|o| o.key != keys.manifest() && !o.key.ends_with(".hot"))
        .filter(|o| !o.key.ends_with("lease.json"))
        .map(|o| (o.key, o.size))
        .collect();
    let ranges: Vec<(&str, u64, u64)> = objects
        .iter()
        .flat_map(|(k, size)| {
            (0..*size)
                .step_by(8 << 20)
                .map(move |a| (k.as_str(), a, (a + (8 << 20)).min(*size)))
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t = Instant::now();
    let bytes: Result<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| -> Result<u64> {
                    let mut n = 0;
                    while let Some(&(k, a, b)) =
                        ranges.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        n += store.get_range(k, a..b)?.len() as u64;
                    }
                    Ok(n)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow::anyhow!("reader panicked"))?)
            .sum()
    });
    Ok((bytes?, t.elapsed()))
}

/// How many times `op` runs per second, over `d`.
pub(crate) fn per_second(d: Duration, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < d {
        op()?;
        n += 1;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

const OPS: [&str; 7] = [
    "get",
    "get_range",
    "put",
    "put_if_absent",
    "put_if_match",
    "list",
    "delete",
];

/// Process-wide bucket request counters by operation.
fn requests() -> std::collections::HashMap<&'static str, u64> {
    OPS.iter()
        .map(|op| {
            (
                *op,
                strata_vfs::metrics::METRICS
                    .bucket_requests
                    .with_label_values(&[op])
                    .get(),
            )
        })
        .collect()
}

/// Start this binary as a child (`strata mount`, `strata serve`) and wait
/// for its first line on stdout, which must start with `ready`.
pub(crate) fn start_self(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    stderr: Stdio,
    ready: &str,
) -> Result<(Child, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()?;
    let mut line = String::new();
    let out = child.stdout.take().context("child stdout")?;
    BufReader::new(out).read_line(&mut line)?;
    if !line.starts_with(ready) {
        let _ = child.kill();
        let _ = child.wait();
        bail!("{args:?} did not come up: {line:?}");
    }
    Ok((child, line))
}

/// SIGTERM, as Ctrl-C would, then wait for the child to exit.
pub(crate) fn stop_self(child: &mut Child) -> Result<std::process::ExitStatus> {
    // SAFETY: signalling our own child process by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    Ok(child.wait()?)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("strata-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
