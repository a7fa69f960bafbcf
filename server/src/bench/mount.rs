//! `strata bench --mount`: read throughput through `strata mount` against
//! the same file on local disk, as ratios measured in the same run. A
//! database of `--mount-mib` MiB of random rows is imported into a fresh
//! local bucket and mounted by a child `strata mount` (this binary); then,
//! on the live file and on the local copy: one sequential pass (1 MiB
//! reads, cold for the mount: every page comes from the bucket), a second
//! pass (the kernel's page cache), random 4 KiB reads, and random point
//! queries through SQLite. The mount's `/.strata-stats` tells how many
//! requests of each pass reached the mount process: reads the kernel could
//! not serve from its cache, and the POSIX lock requests SQLite makes
//! around every read transaction (each one a FUSE round trip).

use super::{per_second, start_self, stop_self};
use anyhow::{Result, bail};
use rand::Rng;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const MIB: f64 = 1048576.0;

pub fn run(dir: &Path, mib: u64) -> Result<()> {
    let local = dir.join("mount-src.db");
    let rows = mib * 256; // 4000-byte rows: about a page each
    {
        let c = rusqlite::Connection::open(&local)?;
        c.pragma_update(None, "page_size", 4096)?;
        c.pragma_update(None, "synchronous", "off")?;
        c.execute_batch(&format!(
            "CREATE TABLE big(id INTEGER PRIMARY KEY, pad BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO big SELECT i, randomblob(4000) FROM n;"
        ))?;
    }
    let bucket = format!("file://{}/mount-bucket", dir.display());
    let store = strata_vfs::bucket::open_bucket(&bucket)?;
    let keys = strata_vfs::format::keys::DbKeys::new("bench", "data.db")?;
    strata_vfs::engine::import::import(&store, &keys, &local)?;

    let mp = dir.join("mnt");
    std::fs::create_dir_all(&mp)?;
    let (mut child, _) = start_self(
        &["mount".as_ref(), bucket.as_ref(), mp.as_os_str()],
        &[],
        Stdio::inherit(),
        "mounted",
    )?;
    let result = measure(&local, &mp, rows)
        .and_then(|()| measure_past(&local, &mp.join("bench/@txid/1/data.db")));
    stop_self(&mut child)?;
    result
}

/// One sequential pass over `p`, in MiB/s (the whole file must come back).
fn seq(p: &Path) -> Result<f64> {
    let size = std::fs::metadata(p)?.len();
    let mut f = std::fs::File::open(p)?;
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    if n != size {
        bail!("{}: read {n} of {size} bytes", p.display());
    }
    Ok(n as f64 / MIB / t.elapsed().as_secs_f64())
}

/// A past file is immutable, so the kernel keeps its pages: the second
/// pass is served from the page cache.
fn measure_past(local: &Path, past: &Path) -> Result<()> {
    let first = seq(past)?;
    let (m, l) = (seq(past)?, seq(local)?);
    println!(
        "sequential, past file (@txid/1): first pass {first:.0} MiB/s; second pass local {l:.0} MiB/s, mount {m:.0} MiB/s, ratio {:.3}",
        m / l
    );
    Ok(())
}

/// `/.strata-stats` of the mount at `mp`: db_reads, lock_requests.
fn daemon_counts(mp: &Path) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(mp.join(".strata-stats"))?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    Ok((get("db_reads"), get("lock_requests")))
}

/// What `f` made reach the mount process: (reads, lock requests).
fn counted<T>(mp: &Path, f: impl FnOnce() -> Result<T>) -> Result<(T, u64, u64)> {
    let (r0, l0) = daemon_counts(mp)?;
    let v = f()?;
    let (r1, l1) = daemon_counts(mp)?;
    Ok((v, r1 - r0, l1 - l0))
}

fn measure(local: &Path, mp: &Path, rows: u64) -> Result<()> {
    let mounted = &mp.join("bench/data.db");
    let size = std::fs::metadata(local)?.len();
    println!(
        "mount: {} MiB database, local copy vs the live file through `strata mount` (local-directory bucket)",
        size >> 20
    );
    let (m1, r1, _) = counted(mp, || seq(mounted))?;
    let l1 = seq(local)?;
    println!(
        "sequential, first pass (mount cold): local {l1:.0} MiB/s, mount {m1:.0} MiB/s, ratio {:.3} ({r1} reads reached the mount)",
        m1 / l1
    );
    let (m2, r2, _) = counted(mp, || seq(mounted))?;
    let l2 = seq(local)?;
    println!(
        "sequential, second pass (kernel cache): local {l2:.0} MiB/s, mount {m2:.0} MiB/s, ratio {:.3} ({r2} reads reached the mount)",
        m2 / l2
    );
    let random = |p: &Path| -> Result<f64> {
        let f = std::fs::File::open(p)?;
        let pages = size / 4096;
        let mut buf = vec![0u8; 4096];
        let mut rng = rand::rng();
        per_second(Duration::from_secs(3), || {
            Ok(f.read_exact_at(&mut buf, rng.random_range(0..pages) * 4096)?)
        })
    };
    let (mr, rr, _) = counted(mp, || random(mounted))?;
    let lr = random(local)?;
    println!(
        "random 4 KiB reads: local {lr:.0}/s, mount {mr:.0}/s, ratio {:.3} ({rr} reads reached the mount)",
        mr / lr
    );
    let queries = |p: &Path| -> Result<f64> {
        let c =
            rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut stmt = c.prepare("SELECT length(pad) FROM big WHERE id = ?1")?;
        let mut rng = rand::rng();
        per_second(Duration::from_secs(3), || {
            let _: i64 = stmt.query_row([rng.random_range(1..=rows as i64)], |r| r.get(0))?;
            Ok(())
        })
    };
    let (mq, rq, lk) = counted(mp, || queries(mounted))?;
    let lq = queries(local)?;
    let n = (mq * 3.0).max(1.0);
    println!(
        "random point queries (sqlite, one connection): local {lq:.0}/s, mount {mq:.0}/s, ratio {:.3} (per query: {:.2} reads, {:.1} lock requests reached the mount)",
        mq / lq,
        rq as f64 / n,
        lk as f64 / n
    );
    Ok(())
}
