//! `strata mount BUCKET MOUNTPOINT`: a thin layer over `strata_fuse`.

use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    bucket: String,
    /// An existing, empty directory.
    mountpoint: PathBuf,
    /// How often a live database file (and a listing) may check the bucket
    /// for news; a reader's transaction sees the bucket as of at most this
    /// long before it started (or older while another process keeps a read
    /// transaction open: the file moves only while no lock is held).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    refresh: Duration,
    /// The longest one bucket request may take before the file operation
    /// fails with EIO (logged with the reason).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Threads serving the kernel's requests.
    #[arg(long, default_value_t = 4)]
    threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    let store = crate::store(&args.bucket)?;
    let opts = strata_fuse::Options {
        refresh: args.refresh,
        timeout: args.timeout,
        threads: args.threads,
    };
    let m = strata_fuse::mount(store, &args.mountpoint, opts)?;
    // Scripts (and the tests) wait for this line.
    println!(
        "mounted {} at {} (Ctrl-C or SIGTERM unmounts)",
        args.bucket,
        args.mountpoint.display()
    );
    std::io::stdout().flush()?;
    m.wait()?;
    eprintln!("unmounted {}", args.mountpoint.display());
    Ok(())
}
