//! A real S3-compatible server (moto) on loopback, one per test that needs it.
//!
//! `S3Server::start()` launches `moto_server` on a free port, waits until it
//! answers HTTP, and creates the bucket `strata-test`. The server (its whole
//! process group) is killed when the value is dropped.

use anyhow::{Context, Result, anyhow, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_vfs::bucket::Store;
use strata_vfs::bucket::s3::{S3Config, S3Store};

/// The bucket every test server starts with.
pub const BUCKET: &str = "strata-test";

const NOT_FOUND: &str = "moto_server not found: install it with `pip install 'moto[server]'` \
                         (the S3-compatible test server); .ci/run does this";
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct S3Server {
    child: Option<Child>,
    port: u16,
    /// moto's stderr (its request log), kept for error messages.
    log: tempfile::NamedTempFile,
}

impl S3Server {
    /// Starts moto_server on a free loopback port with an empty `strata-test` bucket.
    pub fn start() -> Result<S3Server> {
        let bin = find_on_path("moto_server").ok_or_else(|| anyhow!(NOT_FOUND))?;
        // Bind-and-release to pick a free port; the race with other
        // processes is tiny and a collision shows up as a startup error.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = tempfile::NamedTempFile::new().context("moto log file")?;
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().context("moto log file")?)
            // Own process group, so Drop can kill whatever the launcher forks.
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut server = S3Server {
            child: Some(child),
            port,
            log,
        };
        server.wait_ready()?;
        server.create_bucket(BUCKET)?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://strata-test/<prefix>`
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{}", prefix.trim_matches('/'))
    }

    /// The variables a child process needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The config for an in-process store under `prefix` (no process env involved).
    pub fn config(&self, prefix: &str) -> S3Config {
        S3Config {
            bucket: BUCKET.to_string(),
            prefix: prefix.to_string(),
            endpoint: Some(self.endpoint()),
            region: "us-east-1".to_string(),
            access_key_id: "test".to_string(),
            secret_access_key: "test".to_string(),
            session_token: None,
            force_path_style: true,
        }
    }

    /// An in-process S3 store under `prefix`. Panics if the store cannot be
    /// built (only on a malformed prefix: building sends no request).
    pub fn store(&self, prefix: &str) -> Store {
        match S3Store::new(self.config(prefix)) {
            Ok(s) => std::sync::Arc::new(s),
            Err(e) => panic!("S3 store for {}: {e}", self.url(prefix)),
        }
    }

    /// Kills the server now (to test outages); Drop does the same.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling the process group we created for our child.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The tail of moto's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "moto_server exited during startup ({status}):\n{}",
                    self.log_tail()
                );
            }
            if let Ok((200, _)) = self.request("GET / HTTP/1.1") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "moto_server did not answer on {} within {START_TIMEOUT:?}:\n{}",
                    self.endpoint(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn create_bucket(&self, bucket: &str) -> Result<()> {
        // moto accepts unsigned requests; the S3 store cannot create buckets.
        let (status, body) = self.request(&format!("PUT /{bucket} HTTP/1.1"))?;
        if status != 200 {
            bail!("create bucket {bucket}: HTTP {status}: {body}");
        }
        Ok(())
    }

    /// One raw HTTP/1.1 request with an empty body; returns (status, body).
    fn request(&self, request_line: &str) -> Result<(u16, String)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "{request_line}\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| {
                anyhow!(
                    "not an HTTP response: {:?}",
                    resp.chars().take(80).collect::<String>()
                )
            })?;
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
