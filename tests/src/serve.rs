//! `strata serve` as a child process, driven over HTTP as a client would:
//! shared by the serve and dashboard tests.

use crate::http::{self, Response};
use crate::{Backend, workspace_bin};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The admin token every test server gets, and each tenant's first superuser.
pub const ADMIN: &str = "test-admin-token";
pub const SU_EMAIL: &str = "root@acme.test";
pub const SU_PASSWORD: &str = "correct horse";

/// A running `strata serve` (killed on drop) and its address.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: std::path::PathBuf,
}

impl Server {
    pub fn start(b: &Backend, data_dir: &Path, extra: &[&str]) -> Result<Server> {
        Self::start_with(b, data_dir, extra, &[])
    }

    /// With extra environment, e.g. the VFS's `STRATA_DURABILITY`.
    pub fn start_with(
        b: &Backend,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server> {
        let log = data_dir.with_extension("log");
        let mut child = b
            .command(&workspace_bin("strata")?)
            .envs(env.iter().copied())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--bucket",
                &b.url(),
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("STRATA_ADMIN_TOKEN", ADMIN)
            .env("STRATA_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start strata serve")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line
            .trim()
            .strip_prefix("strata serve: listening on http://")
        else {
            let _ = child.kill();
            bail!(
                "server did not start ({line:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Ok(Server {
            addr: addr.to_string(),
            child,
            log,
        })
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

    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Result<Response> {
        let b = body.map(|v| v.to_string());
        self.req(
            method,
            path,
            &[format!("Authorization: Bearer {ADMIN}")],
            b.as_deref(),
        )
    }

    /// A tenant API call with an optional auth token.
    pub fn api(
        &self,
        tenant: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Response> {
        http::api(
            &self.addr,
            method,
            &format!("/t/{tenant}{path}"),
            token,
            body.as_ref(),
        )
    }

    pub fn create_tenant(&self, id: &str, domain: Option<&str>) -> Result<()> {
        let r = self.admin(
            "POST",
            "/_strata/api/tenants",
            Some(json!({"id": id, "domain": domain, "superuser": {"email": SU_EMAIL, "password": SU_PASSWORD}})),
        )?;
        ensure!(r.status == 201, "create {id}: {r:?}");
        Ok(())
    }

    pub fn superuser_token(&self, tenant: &str) -> Result<String> {
        let r = self.api(
            tenant,
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": SU_EMAIL, "password": SU_PASSWORD})),
        )?;
        ensure!(r.status == 200, "auth: {r:?}");
        Ok(r.body["token"].as_str().context("token")?.to_string())
    }

    /// SIGTERM, then wait (polling) for the exit.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            ensure!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `posts` collection anyone may list, view and create in.
pub fn posts_collection(s: &Server, tenant: &str, token: &str) -> Result<()> {
    let r = s.api(
        tenant,
        "POST",
        "/api/collections",
        Some(token),
        Some(json!({
            "name": "posts",
            "type": "base",
            "fields": [
                {"name": "title", "type": "text", "required": true},
                {"name": "n", "type": "number"},
                {"name": "done", "type": "bool"},
                {"name": "tags", "type": "json"},
                {"name": "owner", "type": "text"},
                {"name": "created", "type": "autodate", "onCreate": true},
                {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
            ],
            "listRule": "", "viewRule": "", "createRule": "",
            "updateRule": "@request.auth.id != '' && owner = @request.auth.id", "deleteRule": null,
        })),
    )?;
    ensure!(r.status == 200, "create collection: {r:?}");
    ensure!(
        r.body["listRule"] == "" && r.body["deleteRule"].is_null(),
        "{r:?}"
    );
    Ok(())
}

/// How many records `posts` has, as a guest sees it.
pub fn count_posts(s: &Server, tenant: &str) -> Result<i64> {
    let r = s.api(
        tenant,
        "GET",
        "/api/collections/posts/records?perPage=1",
        None,
        None,
    )?;
    ensure!(r.status == 200, "count {tenant}: {r:?}");
    r.body["totalItems"].as_i64().context("totalItems")
}

/// Add the record `{title: "p<i>", n: i}` to `posts`, as a guest.
pub fn add_post(s: &Server, tenant: &str, i: i64) -> Result<()> {
    let r = s.api(
        tenant,
        "POST",
        "/api/collections/posts/records",
        None,
        Some(json!({"title": format!("p{i}"), "n": i})),
    )?;
    ensure!(r.status == 200, "add post {i} to {tenant}: {r:?}");
    Ok(())
}

/// Three posts, an eviction (it flushes, so the bucket's head is then a
/// restore point), two more posts; returns that restore point's txid.
pub fn posts_around_a_restore_point(s: &Server, tenant: &str) -> Result<u64> {
    for i in 0..3 {
        add_post(s, tenant, i)?;
    }
    s.admin(
        "POST",
        &format!("/_strata/api/tenants/{tenant}/evict"),
        None,
    )?;
    let shown = s.admin("GET", &format!("/_strata/api/tenants/{tenant}"), None)?;
    let point = shown.body["replication"]["data.db"]["bucketHead"]
        .as_u64()
        .with_context(|| format!("no bucket head: {shown:?}"))?;
    for i in 3..5 {
        add_post(s, tenant, i)?;
    }
    Ok(point)
}
