//! `strata`: one binary for every job. Each subcommand is a thin layer over
//! `strata_vfs`'s engine API; errors are printed with their context chain and
//! mapped to an exit code once, here.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_server::{bench, db_keys, demo, mount, restore_options, serve, store};
use strata_vfs::engine::restore::{self, Target};
use strata_vfs::engine::{history, import, verify};
use strata_vfs::{ErrorKind, Millis, TxId};

/// glibc's malloc keeps one arena per thread that allocated (up to eight
/// per core), and memory freed in an arena mostly stays resident: with an
/// uploader thread per database and a pool of blocking threads, a burst of
/// writes left RSS at 3-5x the live heap. Fewer arenas (one per two cores)
/// measured 20-35% less RSS here, with no throughput lost above the noise
/// (`strata bench --serve`, RSS rows). Freed memory is also handed back periodically by
/// `strata serve` (`malloc_trim` in `Registry::maintain`).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(1, |n| n.get() / 2);
        // SAFETY: mallopt only sets a tunable.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas.max(1) as libc::c_int) };
    }
}

/// S3 as the single source of truth for SQLite databases.
///
/// BUCKET is `file:///path` (or a plain path) for a local directory, or
/// `s3://bucket/prefix` for S3 or any S3-compatible server, configured with
/// the standard AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
/// AWS_SECRET_ACCESS_KEY variables. DB is `tenant/name`, e.g. `acme/data.db`.
#[derive(Parser)]
#[command(name = "strata", version, about, long_about)]
struct Cli {
    /// Log filter (tracing syntax), e.g. `info` or `strata_vfs=debug`.
    #[arg(long, env = "STRATA_LOG", default_value = "warn", global = true)]
    log: String,
    /// Log lines as text for people, or one JSON object per line for a log
    /// pipeline (`json`).
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "text", global = true, value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show a database's restore points: txids, times, snapshots.
    History {
        bucket: String,
        db: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Restore a database (latest, or a point in time) into a file.
    ///
    /// The result is checked (checksums of every object, then
    /// `PRAGMA integrity_check`) before it is moved into place.
    Restore {
        bucket: String,
        db: String,
        /// Where to write the database.
        #[arg(short, long)]
        output: PathBuf,
        /// The state right after this transaction.
        #[arg(long, conflicts_with = "time")]
        txid: Option<u64>,
        /// The state at this time (RFC 3339, e.g. 2026-11-25T10:00:00Z).
        #[arg(long)]
        time: Option<String>,
        /// Concurrent downloads.
        #[arg(long, default_value_t = 8)]
        parallelism: usize,
        /// Replace OUTPUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Bring an existing SQLite database into a bucket as a new database.
    Import {
        source: PathBuf,
        bucket: String,
        db: String,
    },
    /// Check every object's checksums and that the latest state restores and
    /// passes `PRAGMA integrity_check`.
    Verify { bucket: String, db: String },
    /// Replication state of a local database: what is committed here, what
    /// the bucket has, what waits in the spool and for how long. Reads only
    /// files, so it works next to a running writer.
    Status {
        bucket: String,
        db: String,
        /// The local database file.
        #[arg(long)]
        local: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Make the local copy of a database complete, with a progress bar.
    ///
    /// A copy opened lazily has only the pages read so far; this fetches the
    /// rest with parallel ranged GETs (the same as `PRAGMA strata_hydrate`).
    /// With no local file, it creates one: a way to warm a node up before it
    /// serves. The database must not be open for writing in another process
    /// (run the pragma there instead).
    Hydrate {
        bucket: String,
        db: String,
        /// The local database file.
        #[arg(long)]
        local: PathBuf,
    },
    /// Run SQL against a replicated database through the strata VFS.
    ///
    /// The local file is a cache: if it is missing it is restored from the
    /// bucket first; every commit is replicated before this command exits.
    Exec {
        bucket: String,
        db: String,
        /// The local database file.
        #[arg(long)]
        local: PathBuf,
        sql: String,
    },
    /// Mount a bucket as a filesystem: one folder per tenant, its databases
    /// read-only (lazily fetched, following new commits), `@history/<time>/`
    /// and `@txid/<N>/` for the past, and `hooks/`, `storage/`,
    /// `metadata.json` as ordinary files (written back on close).
    Mount(mount::Args),
    /// Measure strata against plain SQLite on this machine (see docs/benchmarks.md).
    Bench(bench::Args),
    /// A guided tour of replication on a local bucket: write, replicate,
    /// look at history, restore. (The main job is `strata serve --demo`.)
    #[command(alias = "demo")]
    Tour {
        /// Working directory (default: ./strata-data/demo).
        #[arg(long, default_value = "strata-data/demo")]
        dir: PathBuf,
    },
    /// Serve many tenants' PocketBase-compatible APIs from the bucket.
    ///
    /// Tenants load on their first request (lazily, nothing is downloaded
    /// up front) and are evicted by LRU and idle time. The admin API under
    /// /_strata/api/ needs STRATA_ADMIN_TOKEN.
    Serve(serve::Args),
    /// Manage tenants on a running server (the admin API).
    Tenant {
        #[command(flatten)]
        server: ServerUrl,
        #[command(subcommand)]
        cmd: serve::admin::client::TenantCmd,
    },
    /// The nodes of a cluster (servers on one bucket), through a running
    /// server's admin API.
    Node {
        #[command(flatten)]
        server: ServerUrl,
        #[command(subcommand)]
        cmd: serve::admin::client::NodeCmd,
    },
}

/// The running server an admin subcommand talks to.
#[derive(clap::Args)]
struct ServerUrl {
    /// The server's base URL.
    #[arg(
        long = "server",
        env = "STRATA_SERVER",
        default_value = "http://127.0.0.1:8090",
        global = true
    )]
    url: String,
}

fn main() {
    tune_allocator();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    if let Err(e) = run(cli.cmd) {
        eprintln!("error: {e:#}");
        // One exit code per error kind, so scripts can tell them apart.
        let code = match e.downcast_ref::<strata_vfs::Error>().map(|e| e.kind()) {
            Some(ErrorKind::NotFound) => 3,
            Some(ErrorKind::Unavailable) => 4,
            Some(ErrorKind::Conflict) => 5,
            Some(ErrorKind::Corrupt) => 6,
            Some(ErrorKind::Invalid) => 2,
            None => 1,
        };
        std::process::exit(code);
    }
}

fn progress_bar(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

fn parse_time(s: &str) -> Result<Millis> {
    let t = humantime::parse_rfc3339_weak(s)
        .with_context(|| format!("bad time `{s}`: use RFC 3339, e.g. 2026-11-25T10:00:00Z"))?;
    Ok(Millis::from_system_time(t))
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::History { bucket, db, json } => {
            let (store, keys) = (store(&bucket)?, db_keys(&db)?);
            let h = history::load(store.as_ref(), &keys, None)?;
            let snap_bytes = history::snapshot_bytes(store.as_ref(), &keys, &h)?;
            let snap_size = |s: &strata_vfs::format::SnapshotRef| {
                snap_bytes.get(&s.key).copied().unwrap_or(s.size)
            };
            if json {
                let v = serde_json::json!({
                    "db_id": h.manifest.db_id.to_string(),
                    "head": h.manifest.head,
                    "head_time": h.manifest.head_commit.rfc3339(),
                    "oldest": h.oldest(),
                    "epochs": h.manifest.epochs.iter().map(|e| serde_json::json!({"epoch": e.epoch, "start": e.start})).collect::<Vec<_>>(),
                    "snapshots": h.snapshots.iter().map(|s| serde_json::json!({"txid": s.txid, "time": s.commit.rfc3339(), "size": snap_size(s)})).collect::<Vec<_>>(),
                    "segments": h.segments.iter().map(|s| serde_json::json!({"first": s.first, "last": s.last, "last_time": s.last_commit.rfc3339(), "epoch": s.epoch, "size": s.size})).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let m = &h.manifest;
            println!(
                "database {} at {}/{}",
                m.db_id,
                store.describe(),
                keys.root()
            );
            println!(
                "head: txid {} at {} ({} pages of {} bytes)",
                m.head,
                m.head_commit.rfc3339(),
                m.db_pages,
                m.page_size
            );
            match h.oldest() {
                Some(o) => println!("restorable: any txid from {o} to {}", m.head),
                None => println!("restorable: nothing yet"),
            }
            println!(
                "writer: epoch {} ({})",
                m.epoch,
                m.writer.as_deref().unwrap_or("-")
            );
            println!("\nsnapshots:");
            for s in &h.snapshots {
                println!(
                    "  txid {:>10}  {}  {:>12} bytes",
                    s.txid,
                    s.commit.rfc3339(),
                    snap_size(s)
                );
            }
            println!("\nsegments (txids, last commit time):");
            for s in &h.segments {
                println!(
                    "  {:>10} ..= {:<10}  {}  {:>10} bytes  epoch {}",
                    s.first,
                    s.last,
                    s.last_commit.rfc3339(),
                    s.size,
                    s.epoch
                );
            }
            Ok(())
        }
        Cmd::Restore {
            bucket,
            db,
            output,
            txid,
            time,
            parallelism,
            force,
        } => {
            let (store, keys) = (store(&bucket)?, db_keys(&db)?);
            if output.exists() && !force {
                bail!("{} exists: pass --force to replace it", output.display());
            }
            let target = match (txid, time) {
                (Some(t), _) => Target::TxId(TxId(t)),
                (None, Some(t)) => Target::Time(parse_time(&t)?),
                (None, None) => Target::Latest,
            };
            let pb = progress_bar("restore");
            let r = restore::restore(
                &store,
                &keys,
                target,
                &output,
                &restore_options(parallelism, Some(pb.clone())),
            )?;
            pb.finish_and_clear();
            println!(
                "restored {} to txid {} ({}), {} pages, {} bytes fetched; integrity_check ok",
                output.display(),
                r.txid,
                r.commit.rfc3339(),
                r.db_pages,
                r.bytes_fetched
            );
            Ok(())
        }
        Cmd::Import { source, bucket, db } => {
            let (store, keys) = (store(&bucket)?, db_keys(&db)?);
            // A consistent copy through SQLite's backup API, even if the
            // source is in use or has a WAL.
            let tmp = tempfile_path(&source);
            let src = rusqlite::Connection::open_with_flags(
                &source,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .with_context(|| format!("open {}", source.display()))?;
            let mut dst = rusqlite::Connection::open(&tmp)?;
            {
                let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
                let pb = ProgressBar::new(0);
                loop {
                    let step = backup.step(256)?;
                    let p = backup.progress();
                    pb.set_length(p.pagecount as u64);
                    pb.set_position((p.pagecount - p.remaining) as u64);
                    if step == rusqlite::backup::StepResult::Done {
                        break;
                    }
                }
                pb.finish_and_clear();
            }
            dst.pragma_update(None, "journal_mode", "delete")?;
            drop(dst);
            let result = import::import(&store, &keys, &tmp);
            let _ = std::fs::remove_file(&tmp);
            let (id, txid, size) = result?;
            println!(
                "imported {} as database {id} at {}/{} (txid {txid}, {size} bytes)",
                source.display(),
                store.describe(),
                keys.root()
            );
            Ok(())
        }
        Cmd::Verify { bucket, db } => {
            let (store, keys) = (store(&bucket)?, db_keys(&db)?);
            let scratch = std::env::temp_dir();
            let r = verify::verify(&store, &keys, &scratch, &restore_options(8, None))?;
            println!(
                "ok: {} objects, {} bytes, checksums valid; latest state (txid {}) restores and passes integrity_check",
                r.objects,
                r.bytes,
                r.restored_txid.unwrap_or_default()
            );
            Ok(())
        }
        Cmd::Exec {
            bucket,
            db,
            local,
            sql,
        } => {
            let keys = db_keys(&db)?;
            strata_vfs::sqlite::register_static()?;
            let uri = demo::vfs_uri(&local, &bucket, keys.tenant(), keys.db());
            let conn = rusqlite::Connection::open_with_flags(
                &uri,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                    | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                    | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )
            .with_context(|| format!("open {uri}"))?;
            conn.pragma_update(None, "journal_mode", "wal")?;
            demo::print_query(&conn, &sql)?;
            let txid: String = conn.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
            eprintln!("replicated through txid {txid}");
            Ok(())
        }
        Cmd::Hydrate { bucket, db, local } => {
            let keys = db_keys(&db)?;
            let cfg =
                strata_vfs::engine::ReplicaConfig::new(store(&bucket)?, keys.tenant(), keys.db())?;
            let replica = strata_vfs::engine::Replica::open(&local, cfg)?.with_context(|| {
                format!(
                    "{} is open for writing in another process: run `PRAGMA strata_hydrate` there",
                    local.display()
                )
            })?;
            let pb = progress_bar("hydrate");
            let progress: restore::ProgressFn = {
                let pb = pb.clone();
                Arc::new(move |done: u64, total: u64| {
                    pb.set_length(total);
                    pb.set_position(done);
                })
            };
            let filled = replica.hydrate(Some(progress))?;
            pb.finish_and_clear();
            let missing = replica.lazy().map_or(0, |l| l.missing_pages());
            anyhow::ensure!(missing == 0, "{missing} pages still missing after hydrate");
            println!("{}: complete ({filled} pages fetched)", local.display());
            Ok(())
        }
        Cmd::Status {
            bucket,
            db,
            local,
            json,
        } => {
            let (store, keys) = (store(&bucket)?, db_keys(&db)?);
            let s = strata_vfs::engine::status::local_status(&local, store.as_ref(), &keys)?;
            if json {
                let v = serde_json::json!({
                    "bucket_head": s.bucket_head,
                    "bucket_error": s.bucket_error,
                    "local_last": s.spool.last.unwrap_or(s.seen_head),
                    "unreplicated": s.unreplicated(),
                    "lag_ms": s.lag().as_millis() as u64,
                    "spool_bytes": s.spool.bytes,
                    "spool_files": s.spool.files,
                    "writer": s.writer,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            match (&s.bucket_head, &s.bucket_error) {
                (Some(h), _) => println!("bucket: head txid {h} ({})", store.describe()),
                (None, Some(e)) => println!("bucket: UNREACHABLE ({e})"),
                _ => {}
            }
            println!(
                "writer: {}",
                s.writer.as_deref().unwrap_or("none (no valid lease)")
            );
            println!(
                "local:  {} transactions not yet in the bucket, oldest waiting {:.1?}",
                s.unreplicated(),
                s.lag()
            );
            println!("spool:  {} bytes in {} files", s.spool.bytes, s.spool.files);
            Ok(())
        }
        Cmd::Mount(args) => mount::run(args),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Tour { dir } => demo::run(&dir),
        Cmd::Serve(args) => serve::run(args),
        Cmd::Tenant { server, cmd } => {
            let token = std::env::var("STRATA_ADMIN_TOKEN").ok();
            serve::admin::client::run(&server.url, token.as_deref(), cmd)
        }
        Cmd::Node { server, cmd } => {
            let token = std::env::var("STRATA_ADMIN_TOKEN").ok();
            serve::admin::client::run_node(&server.url, token.as_deref(), cmd)
        }
    }
}

fn tempfile_path(near: &Path) -> PathBuf {
    let mut s = near.as_os_str().to_owned();
    s.push(format!(".strata-import-{}", std::process::id()));
    PathBuf::from(s)
}
