//! The real PocketBase as a child process, the reference that conformance
//! tests compare `strata serve` with: a fresh data directory, a superuser
//! ([`SU_EMAIL`]), a free loopback port; killed on drop.
//!
//! The binary is `$STRATA_POCKETBASE`, else `target/pocketbase/bin/pocketbase`
//! as `./scripts/pocketbase` installs it.

use crate::http::{self, Response};
use crate::serve::{SU_EMAIL, SU_PASSWORD};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PocketBase and its address.
pub struct PocketBase {
    child: Child,
    pub addr: String,
    dir: tempfile::TempDir,
}

/// Where the PocketBase binary is, or an error saying how to install it.
pub fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_POCKETBASE") {
        return Ok(PathBuf::from(p));
    }
    let mut roots = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")];
    if let Some(t) = std::env::current_exe()?.ancestors().nth(3) {
        roots.push(t.to_path_buf());
    }
    for r in &roots {
        let p = r.join("pocketbase/bin/pocketbase");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "the real PocketBase is missing (looked in {roots:?}/pocketbase/bin/pocketbase): \
         run ./scripts/pocketbase to install it, or set STRATA_POCKETBASE"
    )
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `true` once `/api/health` is 200; `false` if the process exited or
/// 20 s passed.
fn wait_healthy(child: &mut Child, addr: &str) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        if http::request(addr, "GET", "/api/health", &[], None).is_ok_and(|r| r.status == 200) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(false)
}

impl PocketBase {
    /// Start a fresh PocketBase with the test superuser; wait until
    /// `/api/health` answers.
    pub fn start() -> Result<PocketBase> {
        let bin = binary()?;
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("pb_data");
        let out = Command::new(&bin)
            .args(["superuser", "upsert", SU_EMAIL, SU_PASSWORD, "--dir"])
            .arg(&data)
            .output()
            .with_context(|| format!("run {}", bin.display()))?;
        ensure!(
            out.status.success(),
            "pocketbase superuser upsert: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = dir.path().join("pocketbase.log");
        // A port taken between the probe and the bind: try another.
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port()?);
            let child = Command::new(&bin)
                .args(["serve", "--http", &addr, "--dir"])
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .context("start pocketbase serve")?;
            let mut child = child;
            if wait_healthy(&mut child, &addr)? {
                return Ok(PocketBase { child, addr, dir });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        bail!(
            "pocketbase did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    }

    pub fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[String],
        body: Option<&str>,
    ) -> Result<Response> {
        http::request(&self.addr, method, path, headers, body)
    }

    /// An API call with an optional auth token.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Response> {
        http::api(&self.addr, method, path, token, body.as_ref())
    }

    pub fn superuser_token(&self) -> Result<String> {
        let r = self.api(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": SU_EMAIL, "password": SU_PASSWORD})),
        )?;
        ensure!(r.status == 200, "pocketbase superuser auth: {r:?}");
        Ok(r.body["token"].as_str().context("token")?.to_string())
    }

    /// The process id (benchmarks read its memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pocketbase.log")).unwrap_or_default()
    }
}

impl Drop for PocketBase {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
