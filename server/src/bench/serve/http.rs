//! The in-process HTTP/1.1 load generator (hyper, keep-alive connections,
//! one request in flight on each): used to seed servers through their API
//! and to time exactly one first request per tenant, which a duration-based
//! tool like wrk cannot. Throughput is measured with wrk (`wrk.rs`).

use super::{ADMIN_TOKEN, cpu_secs, ms};
use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use indicatif::ProgressBar;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A server process under load: where it listens, and its pid (for CPU).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub pid: u32,
}

impl Peer {
    pub async fn conn(&self) -> Result<Conn> {
        Conn::open(self.addr).await
    }
}

/// One request, made up front so that building it is not timed.
#[derive(Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    pub token: Option<String>,
    /// The body's type (JSON unless set).
    pub content_type: Option<String>,
}

impl Req {
    pub fn get(path: String) -> Req {
        Req {
            method: Method::GET,
            path,
            body: None,
            token: None,
            content_type: None,
        }
    }
    pub fn post(path: &str, body: &Value) -> Req {
        Req {
            method: Method::POST,
            path: path.into(),
            body: Some(body.to_string().into()),
            token: None,
            content_type: None,
        }
    }
    /// A POST of `body` as `content_type` (a multipart upload).
    pub fn post_raw(path: &str, content_type: &str, body: Bytes) -> Req {
        Req {
            method: Method::POST,
            path: path.into(),
            body: Some(body),
            token: None,
            content_type: Some(content_type.into()),
        }
    }
    /// With the admin token.
    pub fn admin(mut self) -> Req {
        self.token = Some(ADMIN_TOKEN.into());
        self
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    tx: SendRequest<Full<Bytes>>,
    host: String,
}

/// A status and a body.
pub struct Answer(pub u16, pub Bytes);

impl Answer {
    pub fn ok(self, what: &str) -> Result<Bytes> {
        ensure!(
            (200..300).contains(&self.0),
            "{what}: {} {}",
            self.0,
            String::from_utf8_lossy(&self.1)
        );
        Ok(self.1)
    }
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn {
            tx,
            host: addr.to_string(),
        })
    }

    pub async fn send(&mut self, r: &Req) -> Result<Answer> {
        let mut b = Request::builder()
            .method(r.method.clone())
            .uri(&r.path)
            .header(hyper::header::HOST, &self.host);
        if let Some(t) = &r.token {
            b = b.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if r.body.is_some() {
            let ct = r.content_type.as_deref().unwrap_or("application/json");
            b = b.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = b.body(Full::new(r.body.clone().unwrap_or_default()))?;
        self.tx.ready().await?;
        let resp = self.tx.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer(status, body))
    }

    /// A JSON request that must succeed; its JSON answer.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut r = match &body {
            Some(b) => Req::post(path, b),
            None => Req::get(path.into()),
        };
        r.method = method;
        r.token = token.map(str::to_string);
        let body = self.send(&r).await?.ok(path)?;
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub async fn evict(&mut self, tenant: &str) -> Result<()> {
        let path = format!("/_strata/api/tenants/{tenant}/evict");
        self.call(Method::POST, &path, Some(ADMIN_TOKEN), None)
            .await
            .map(drop)
    }
}

/// What a load run saw.
pub struct Run {
    pub lat: Latencies,
    errors: u64,
    first_error: Option<String>,
    pub elapsed: Duration,
    /// CPU cores used by the server and by the load generator.
    cores: Option<(f64, f64)>,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.lat.0.len() as f64 / self.elapsed.as_secs_f64()
    }
    pub fn check(&self, what: &str) -> Result<()> {
        if self.errors > 0 {
            bail!(
                "{what}: {} of {} requests failed; first: {}",
                self.errors,
                self.lat.0.len(),
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        Ok(())
    }
    pub fn summary(&self) -> String {
        let cpu = self.cores.map_or(String::new(), |(s, c)| {
            format!(
                "; CPU: server {s:.2} cores ({:.0} us/request), load generator {c:.2}",
                s * 1e6 / self.rate()
            )
        });
        format!("{:.0} req/s, {}{cpu}", self.rate(), self.lat.summary())
    }
}

/// Sorted latencies.
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    pub fn new(mut v: Vec<Duration>) -> Latencies {
        v.sort_unstable();
        Latencies(v)
    }
    pub fn pct(&self, p: f64) -> Duration {
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(i).copied().unwrap_or_default()
    }
    pub fn summary(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms ({} requests)",
            ms(self.pct(0.5)),
            ms(self.pct(0.99)),
            self.0.len()
        )
    }
}

/// `conc` connections, each sending `make(i)` (a shared sequence number)
/// and waiting for the answer, until `until`.
pub async fn load(
    s: Peer,
    conc: usize,
    count: u64,
    pb: Option<ProgressBar>,
    make: impl Fn(u64) -> Req + Send + Sync + 'static,
) -> Result<Run> {
    let make = Arc::new(make);
    let next = Arc::new(AtomicU64::new(0));
    let cpu = (cpu_secs(s.pid), cpu_secs(std::process::id()));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conc.max(1) {
        let mut c = Conn::open(s.addr).await?;
        let (make, next, pb) = (make.clone(), next.clone(), pb.clone());
        workers.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let r = make(i);
                let t = Instant::now();
                let Answer(status, body) = c.send(&r).await?;
                lat.push(t.elapsed());
                if !(200..300).contains(&status) {
                    errors += 1;
                    first_error.get_or_insert_with(|| {
                        format!(
                            "{} {} -> {status} {}",
                            r.method,
                            r.path,
                            String::from_utf8_lossy(&body)
                        )
                    });
                }
                if let Some(pb) = &pb {
                    pb.inc(1);
                }
            }
            anyhow::Ok((lat, errors, first_error))
        }));
    }
    let mut run = Run {
        lat: Latencies(Vec::new()),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        cores: None,
    };
    let mut all = Vec::new();
    for w in workers {
        let (lat, errors, first) = w.await??;
        all.extend(lat);
        run.errors += errors;
        run.first_error = run.first_error.or(first);
    }
    run.elapsed = start.elapsed();
    run.lat = Latencies::new(all);
    let secs = run.elapsed.as_secs_f64();
    run.cores = Some((
        (cpu_secs(s.pid) - cpu.0) / secs,
        (cpu_secs(std::process::id()) - cpu.1) / secs,
    ));
    Ok(run)
}
