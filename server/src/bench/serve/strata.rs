//! `strata serve` as a child process (this binary) on a free loopback
//! port, with a fresh data directory and the bench's admin token.

use super::ADMIN_TOKEN;
use super::http::{Conn, Peer, Req};
use crate::bench::{start_self, stop_self};
use crate::serve::metrics::Phase;
use anyhow::{Context, Result, ensure};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// The `strata serve` child.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl Server {
    pub fn start(
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn peer(&self) -> Peer {
        Peer {
            addr: self.addr,
            pid: self.pid(),
        }
    }

    pub async fn conn(&self) -> Result<Conn> {
        Conn::open(self.addr).await
    }

    /// A kB field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`).
    pub fn status_kib(&self, field: &str) -> u64 {
        super::proc_kib(self.pid(), field)
    }

    async fn metrics_text(&self) -> Result<String> {
        let body = self
            .conn()
            .await?
            .send(&Req::get("/metrics".into()).admin())
            .await?
            .ok("/metrics")?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// An unlabelled sample from `/metrics`.
    pub async fn metric(&self, name: &str) -> Result<f64> {
        self.metrics_text()
            .await?
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("{name} not in /metrics"))
    }

    /// `strata_serve_tenant_phase_seconds`: (phase, total seconds, count).
    pub async fn phases(&self) -> Result<Vec<(String, f64, f64)>> {
        let text = self.metrics_text().await?;
        let value = |suffix: &str, phase: &str| {
            let key = format!("strata_serve_tenant_phase_seconds_{suffix}{{phase=\"{phase}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&key)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(Phase::ALL
            .iter()
            .map(|p| {
                let l = p.label();
                (l.to_string(), value("sum", l), value("count", l))
            })
            .collect())
    }

    /// kill -9, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the server drains, flushes every loaded tenant and must exit 0.
    pub fn stop(mut self) -> Result<()> {
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

pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}
