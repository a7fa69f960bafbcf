//! One side of a conformance comparison: the real PocketBase, or one
//! tenant ([`TENANT`]) of a fresh `strata serve` on a local bucket. The
//! tests that compare the two (`auth_rules.rs`, `realtime.rs`) send the same
//! requests to each and set up their collections themselves.

use crate::Backend;
use crate::http::Response;
use crate::pocketbase::PocketBase;
use crate::serve::Server;
use anyhow::{Result, ensure};
use serde_json::Value;

/// The strata tenant a side serves.
pub const TENANT: &str = "acme";

pub enum Side {
    PocketBase(PocketBase),
    Strata {
        s: Server,
        _b: Backend,
        _dir: tempfile::TempDir,
    },
}

impl Side {
    /// A fresh PocketBase with the test superuser.
    pub fn pocketbase() -> Result<Side> {
        Ok(Side::PocketBase(PocketBase::start()?))
    }

    /// A fresh strata node (with `extra` flags) and its tenant [`TENANT`].
    pub fn strata(extra: &[&str]) -> Result<Side> {
        Self::strata_with(extra, &[])
    }

    /// The same with extra environment for the server.
    pub fn strata_with(extra: &[&str], env: &[(&str, &str)]) -> Result<Side> {
        let b = Backend::local()?;
        let dir = tempfile::tempdir()?;
        let s = Server::start_with(&b, &dir.path().join("node"), extra, env)?;
        s.create_tenant(TENANT, None)?;
        Ok(Side::Strata {
            s,
            _b: b,
            _dir: dir,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Side::PocketBase(_) => "pocketbase",
            Side::Strata { .. } => "strata",
        }
    }

    pub fn addr(&self) -> &str {
        match self {
            Side::PocketBase(pb) => &pb.addr,
            Side::Strata { s, .. } => &s.addr,
        }
    }

    /// Where the app's API starts on [`Side::addr`]: `""` or `/t/acme`.
    pub fn prefix(&self) -> String {
        match self {
            Side::PocketBase(_) => String::new(),
            Side::Strata { .. } => format!("/t/{TENANT}"),
        }
    }

    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Response> {
        match self {
            Side::PocketBase(pb) => pb.api(method, path, token, body),
            Side::Strata { s, .. } => s.api(TENANT, method, path, token, body),
        }
    }

    /// A request with any headers (`"Name: value"`) and a raw body (a
    /// multipart upload, a `Range` read).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[String],
        body: &[u8],
    ) -> Result<Response> {
        let mut head = format!("{method} {}{path} HTTP/1.1", self.prefix());
        for h in headers {
            head.push_str("\r\n");
            head.push_str(h);
        }
        crate::http::raw(self.addr(), &head, body.len(), body)
    }

    /// The keys under `prefix` of the strata side's bucket (`None` for
    /// PocketBase, which has none).
    pub fn bucket_keys(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        match self {
            Side::PocketBase(_) => Ok(None),
            Side::Strata { _b, .. } => Ok(Some(
                _b.store()?
                    .list(prefix)?
                    .into_iter()
                    .map(|o| o.key)
                    .collect(),
            )),
        }
    }

    /// The status and the `name`s of the records of `coll` that `filter`
    /// selects, sorted by name (as a guest).
    pub fn filtered(&self, coll: &str, filter: &str) -> Result<Value> {
        let r = self.api(
            "GET",
            &format!(
                "/api/collections/{coll}/records?sort=name&filter={}",
                crate::http::encode(filter)
            ),
            None,
            None,
        )?;
        let names: Vec<Value> = r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["name"].clone())
            .collect();
        Ok(serde_json::json!({"status": r.status, "names": names}))
    }

    /// Create a collection as the superuser; it must succeed. Its JSON.
    pub fn create_collection(&self, body: Value) -> Result<Value> {
        let r = self.api(
            "POST",
            "/api/collections",
            Some(&self.superuser()?),
            Some(body),
        )?;
        ensure!(
            r.status == 200,
            "{}: create collection: {}",
            self.name(),
            r.text
        );
        Ok(r.body)
    }

    pub fn superuser(&self) -> Result<String> {
        match self {
            Side::PocketBase(pb) => pb.superuser_token(),
            Side::Strata { s, .. } => s.superuser_token(TENANT),
        }
    }
}

/// What each side answered, step by step: a label and a comparable value.
pub type Steps = [(String, Value)];

/// The two runs of one scenario must match step by step.
pub fn same_steps(pb: &Steps, st: &Steps) -> Result<()> {
    for (i, (p, s)) in pb.iter().zip(st).enumerate() {
        ensure!(
            p == s,
            "step {i} ({}) differs:\n  pocketbase: {}\n  strata:     {}",
            p.0,
            p.1,
            s.1
        );
    }
    ensure!(
        pb.len() == st.len(),
        "step counts differ: {} vs {}",
        pb.len(),
        st.len()
    );
    // Collected by `scripts/conformance` for docs/conformance.md (libtest
    // names each test's thread after the test).
    eprintln!(
        "\nconformance: {}: {} of {} steps match PocketBase",
        std::thread::current().name().unwrap_or("?"),
        st.len(),
        pb.len()
    );
    Ok(())
}

/// PocketBase and strata side by side, each with its superuser's token:
/// the same request to both, answered as a pair.
pub struct Pair {
    pub pb: Side,
    pub st: Side,
    pb_token: String,
    st_token: String,
}

impl Pair {
    /// A fresh PocketBase and a fresh strata node (with `extra` flags).
    pub fn start(extra: &[&str]) -> Result<Pair> {
        let pb = Side::pocketbase()?;
        let st = Side::strata(extra)?;
        Ok(Pair {
            pb_token: pb.superuser()?,
            st_token: st.superuser()?,
            pb,
            st,
        })
    }

    /// The strata side's server (its admin API, its log).
    pub fn server(&self) -> &Server {
        match &self.st {
            Side::Strata { s, .. } => s,
            Side::PocketBase(_) => unreachable!("the strata side is strata"),
        }
    }

    /// The superuser's token on the strata side.
    pub fn strata_token(&self) -> &str {
        &self.st_token
    }

    /// The same JSON call to both; `su`: as each one's superuser, else as a
    /// guest.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        su: bool,
        body: Option<Value>,
    ) -> Result<(Response, Response)> {
        let pb = self.pb.api(
            method,
            path,
            su.then_some(self.pb_token.as_str()),
            body.clone(),
        )?;
        let st = self
            .st
            .api(method, path, su.then_some(self.st_token.as_str()), body)?;
        Ok((pb, st))
    }

    /// The same raw request to both as the superuser (its `Authorization`
    /// added to `headers`).
    pub fn raw_su(
        &self,
        method: &str,
        path: &str,
        headers: &[String],
        body: &[u8],
    ) -> Result<(Response, Response)> {
        let with = |token: &str| {
            let mut h = headers.to_vec();
            h.push(format!("Authorization: {token}"));
            h
        };
        Ok((
            self.pb.raw(method, path, &with(&self.pb_token), body)?,
            self.st.raw(method, path, &with(&self.st_token), body)?,
        ))
    }
}

/// Run `scenario` on a fresh PocketBase, then on a fresh strata tenant,
/// and compare the two step by step.
pub fn on_both(scenario: impl Fn(&Side) -> Result<Vec<(String, Value)>>) -> Result<()> {
    let pb = scenario(&Side::pocketbase()?)?;
    let st = scenario(&Side::strata(&[])?)?;
    same_steps(&pb, &st)
}
