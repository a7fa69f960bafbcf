//! `strata serve`: many tenant apps on one node, each a PocketBase-style API
//! over its own `data.db` and `auxiliary.db` in the bucket.
//!
//! Where a request goes:
//! - [`api`]: a tenant's API (`/t/<tenant>/api/...` or its own domain):
//!   routes, the tenant middleware, the handlers;
//! - [`query`]: everything that becomes SQL (filter, names, rules, expand,
//!   indexes); [`records`]: record values in and out; [`auth`]: tokens and
//!   passwords; [`schema`]: PocketBase's tables;
//! - [`tenants`]: the registry (lazy load, eviction), each tenant's
//!   connection pools, the tenant lifecycle in the bucket;
//! - [`admin`]: the operator API under `/_strata/api/`, its dashboard at
//!   `/_strata/`, and `strata tenant` (its CLI);
//! - [`settings`]: a tenant's PocketBase settings; [`ratelimit`]: the
//!   fixed windows of its `rateLimits` rules and of the node's guard on
//!   failed logins; [`realtime`]: SSE subscriptions;
//! - [`cluster`]: many nodes on one bucket: heartbeats, routing a tenant's
//!   request to the node that holds it, forwarding;
//! - [`errors`]: the one mapping to HTTP status; `/metrics` is [`metrics`].
//!
//! Seams for later: file fields (`storage/`) and JS hooks (`hooks/`) hang
//! off the tenant routes in [`api`].

pub mod admin;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod demo;
pub mod errors;
pub mod files;
pub mod metrics;
pub mod query;
pub mod ratelimit;
pub mod realtime;
pub mod records;
pub mod schema;
pub mod settings;
pub mod tenants;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use errors::ApiError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Serve the operator's surface (`/metrics`, the dashboard at
    /// `/_strata/` and the admin API under it) on this address only, and
    /// not on --listen; `/metrics` needs no token there. Without it they are
    /// on --listen, and `/metrics` needs the admin token as the admin API
    /// does. Never answered through a tenant's own domain.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// The bucket: `file:///path`, a plain path, or `s3://bucket/prefix`.
    #[arg(long, env = "STRATA_BUCKET", default_value = "strata-data/bucket")]
    bucket: String,
    /// Local cache of the tenants' databases.
    #[arg(long, default_value = "strata-data/node")]
    data_dir: PathBuf,
    /// Most tenants loaded at once; the least recently used is evicted.
    #[arg(long, default_value_t = 1000)]
    max_tenants: usize,
    /// Evict a tenant after this long without requests.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    idle_ttl: Duration,
    /// How long eviction waits for in-flight requests.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Largest request body in bytes (larger: 413). PocketBase's default,
    /// 32 MiB: a record with its uploads is read whole before it is
    /// checked, so this also bounds the memory of one request.
    #[arg(long, default_value_t = 32 << 20)]
    max_body: usize,
    /// Request log rows kept per tenant in auxiliary.db `_logs`.
    #[arg(long, default_value_t = 10_000)]
    log_cap: u64,
    /// After an eviction, delete the tenant's local files if every commit is
    /// in the bucket (saves disk on nodes with many tenants; the next load is
    /// lazy from the bucket).
    #[arg(long)]
    drop_local_on_evict: bool,
    /// How long a deleted tenant's data is kept; then it is purged from the
    /// bucket (checked at most once a minute).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    delete_grace: Duration,
    /// Reader connections of one tenant's data.db at most (readers run in
    /// parallel with each other and with the one writer; they open on
    /// demand).
    #[arg(long, default_value_t = default_readers())]
    max_readers: usize,
    /// Close a reader connection after this long unused.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    reader_idle: Duration,
    /// MiB of recently served files (and thumbs) kept in memory, for all
    /// tenants: served again without a bucket request, and while the
    /// bucket is unreachable.
    #[arg(long, default_value_t = 128)]
    file_cache_mb: u64,
    /// The node's guard on password guessing, whatever a tenant's own
    /// `rateLimits` say: after this many failed logins of one identity of a
    /// tenant within the window, its logins get 429 until the window ends
    /// (`10/1m`; `off` to disable). Correct logins are never counted.
    #[arg(long, default_value = "10/1m", value_parser = parse_guard)]
    auth_failures: AuthGuard,
    /// This node's name in the cluster (its heartbeat is
    /// `_strata/nodes/<id>.json` in the bucket). Nodes on one bucket share
    /// its tenants: each tenant is served by the node that holds its lease,
    /// and any node forwards a request there. Default: `<hostname>-<port>`.
    #[arg(long, env = "STRATA_NODE_ID")]
    node_id: Option<String>,
    /// How other nodes reach this one (`http://10.0.0.7:8090`). Default:
    /// the --listen address (the host name if that is 0.0.0.0).
    #[arg(long, env = "STRATA_ADVERTISE")]
    advertise: Option<String>,
    /// How often this node's heartbeat is written (one conditional PUT,
    /// whatever the number of tenants; the tenants' leases need none).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// A node whose heartbeat is this old is dead: any other node may take
    /// its tenants. Bounds the takeover time after a crash.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    node_ttl: Duration,
    /// Make a ready demo tenant (`demo`, with a superuser and a `posts`
    /// collection) if there is none, and print how to reach it. Without
    /// STRATA_ADMIN_TOKEN, a token is generated for this run.
    #[arg(long)]
    demo: bool,
}

/// `--auth-failures`: a count per window, or off.
#[derive(Debug, Clone, Copy)]
struct AuthGuard(Option<(i64, Duration)>);

/// `N/DURATION` (`10/1m`) or `off`.
fn parse_guard(s: &str) -> Result<AuthGuard, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(AuthGuard(None));
    }
    let (n, d) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected N/DURATION (e.g. 10/1m) or off"))?;
    let n: i64 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{n:?}: expected a count above 0"))?;
    let d = humantime::parse_duration(d.trim()).map_err(|e| format!("{d:?}: {e}"))?;
    if d.as_secs() == 0 {
        return Err(format!("{d:?}: the window must be at least 1s"));
    }
    Ok(AuthGuard(Some((n, d))))
}

/// One reader per core, and at least two.
fn default_readers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

pub struct AppInner {
    pub registry: Arc<tenants::Registry>,
    pub cluster: Arc<cluster::Cluster>,
    pub admin_token: Option<String>,
    pub metrics: Arc<metrics::Metrics>,
}

pub type App = Arc<AppInner>;

/// A plain path becomes an absolute `file://` URL: the VFS resolves the
/// URI parameter in this process, but keep it independent of later cwd use.
fn bucket_url(s: &str) -> Result<String> {
    if s.contains("://") {
        return Ok(s.to_string());
    }
    std::fs::create_dir_all(s).with_context(|| format!("create {s}"))?;
    let abs = std::fs::canonicalize(s).with_context(|| format!("resolve {s}"))?;
    Ok(format!("file://{}", abs.display()))
}

pub fn run(args: Args) -> Result<()> {
    strata_vfs::sqlite::register_static()?;
    let bucket = bucket_url(&args.bucket)?;
    // The VFS's own store for this bucket: one client, and every request
    // (heartbeats, files, metadata) counted in strata_bucket_requests_total.
    let store = strata_vfs::sqlite::params::shared_store(&bucket)?;
    // Bound before the node joins: its id and address name the port.
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listen on {}", args.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let node = strata_vfs::engine::node::NodeConfig {
        id: args
            .node_id
            .clone()
            .unwrap_or_else(|| cluster::default_node_id(addr)),
        advertise: args
            .advertise
            .clone()
            .unwrap_or_else(|| cluster::default_advertise(addr)),
        heartbeat: args.heartbeat,
        ttl: args.node_ttl,
    };
    let cluster = cluster::Cluster::join(store.clone(), node)
        .context("join the cluster (the nodes of this bucket)")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create {}", args.data_dir.display()))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let cfg = tenants::Config {
        bucket,
        data_dir: args.data_dir.canonicalize()?,
        max_tenants: args.max_tenants.max(1),
        idle_ttl: args.idle_ttl,
        drain_timeout: args.drain_timeout,
        log_cap: args.log_cap,
        delete_grace: args.delete_grace,
        drop_local_on_evict: args.drop_local_on_evict,
        max_readers: args.max_readers.max(1),
        reader_idle: args.reader_idle,
        file_cache: args.file_cache_mb << 20,
        auth_failures: args.auth_failures.0,
        node: cluster.id().to_string(),
    };
    let mut admin_token = std::env::var("STRATA_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let generated = args.demo && admin_token.is_none();
    if generated {
        admin_token = Some(schema::new_secret());
    }
    if admin_token.is_none() {
        tracing::warn!("STRATA_ADMIN_TOKEN is not set: the admin API is closed");
    }
    let app: App = Arc::new(AppInner {
        registry: Arc::new(tenants::Registry::new(cfg, store, metrics.clone())),
        cluster: cluster.clone(),
        admin_token,
        metrics,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    {
        // A lapse: every tenant out of service before the node serves again.
        let (reg, handle, c) = (app.registry.clone(), rt.handle().clone(), cluster.clone());
        cluster.node.on_lapse(move || {
            c.lapsed();
            reg.drop_all(&handle);
        });
    }
    let demo = args.demo.then_some(generated);
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        serve(app, listener, args.metrics_listen, args.max_body, demo).await
    });
    // Last: say stopped, so other nodes need not wait for the heartbeat to
    // go stale (every lease was released by the closes).
    cluster.node.stop();
    served
}

/// Serve until SIGTERM or Ctrl-C. `demo`: set the demo tenant up once
/// listening (`Some(true)` if its admin token was generated).
async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    metrics_listen: Option<SocketAddr>,
    max_body: usize,
    demo: Option<bool>,
) -> Result<()> {
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port.
    println!("strata serve: listening on http://{addr}");
    let operator = match metrics_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("listen on {at}"))?;
            // Nobody may be reading stdout after the first line.
            use std::io::Write;
            let _ = writeln!(
                std::io::stdout(),
                "strata serve: operator surface on http://{}",
                l.local_addr()?
            );
            let routes = operator_router(app.clone(), max_body, false);
            Some(tokio::spawn(async move {
                axum::serve(l, routes)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }))
        }
        None => None,
    };
    let sweeper = {
        let reg = app.registry.clone();
        let every = (reg.cfg.idle_ttl / 4).clamp(
            Duration::from_millis(100),
            tenants::tenant::LOG_FLUSH_EVERY / 2,
        );
        // Purging lists every tenant: at most once a minute (or per grace).
        let purge_every = reg
            .cfg
            .delete_grace
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut last_purge = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(every).await;
                reg.maintain().await;
                reg.sweep_idle().await;
                if last_purge.elapsed() >= purge_every {
                    last_purge = tokio::time::Instant::now();
                    let r = reg.clone();
                    if let Err(e) = tenants::blocking(move || r.purge_due()).await {
                        tracing::warn!(error = %e, "purge of deleted tenants failed; retried later");
                    }
                }
            }
        })
    };
    let watcher = tokio::spawn(cluster::watch(app.clone()));
    if let (Some(generated), Some(token)) = (demo, app.admin_token.clone()) {
        let base = format!("http://{addr}");
        let cfg = app.registry.cfg.clone();
        tokio::spawn(async move {
            let t = token.clone();
            match tokio::task::spawn_blocking(move || demo::setup(&base, &t)).await {
                Ok(Ok(())) => {
                    // Nobody may be reading stdout any more (a test, a pipe).
                    use std::io::Write;
                    let g = demo::guide(addr, &token, generated, &cfg);
                    let _ = writeln!(std::io::stdout(), "{g}");
                }
                Ok(Err(e)) => eprintln!("error: {e:#}"),
                Err(e) => eprintln!("error: demo setup: {e}"),
            }
        });
    }
    let reg = app.registry.clone();
    let drainer = app.clone();
    // The peer's address reaches handlers (rate limits key on it).
    axum::serve(
        listener,
        router(app.clone(), max_body, metrics_listen.is_none())
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // A node with live peers hands its tenants over while it still
        // answers (and forwards) requests; then it stops taking them. A node
        // alone (the drain finds no live peer: 409) closes them here.
        match drainer.cluster.drain(&drainer).await {
            Ok(d) => tracing::info!(moved = d.moved.len(), failed = d.failed.len(), "drained"),
            Err(e) if e.status() == StatusCode::CONFLICT => {}
            Err(e) => tracing::warn!(error = %e, "drain failed; closing the tenants here"),
        }
        reg.close_realtime();
    })
    .await
    .context("serve")?;
    if let Some(op) = operator {
        op.abort();
    }
    sweeper.abort();
    watcher.abort();
    // Every request has finished: flush and close every tenant.
    let n = app.registry.loaded_count();
    let failed = app.registry.close_all().await;
    if failed > 0 {
        return Err(strata_vfs::Error::unavailable(format!(
            "{failed} of {n} tenants could not flush at shutdown; their commits stay in the local spool and upload when they are opened again"
        ))
        .into());
    }
    eprintln!("strata serve: stopped, {n} tenants flushed");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining requests");
}

/// The node's router: the tenants' API, and with `operator` also the
/// operator's surface (else that is on its own listener).
pub fn router(app: App, max_body: usize, operator: bool) -> Router {
    let tenants = Router::new()
        .nest("/t/{tenant}", api::by_path(&app))
        .merge(api::by_host(&app));
    let r = if operator {
        tenants.merge(operator_routes(&app, true))
    } else {
        tenants
    };
    r.fallback(|| async { ApiError::not_found() })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn(cors))
        .with_state(app)
}

/// The operator's surface alone, for `--metrics-listen`.
fn operator_router(app: App, max_body: usize, metrics_token: bool) -> Router {
    operator_routes(&app, metrics_token)
        .fallback(|| async { ApiError::not_found() })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// `/metrics`, the dashboard and the admin API. Never through a tenant's own
/// domain; `/metrics` with `metrics_token` needs the admin token (the admin
/// API always does; the dashboard page is a static shell over it).
fn operator_routes(app: &App, metrics_token: bool) -> Router<App> {
    let metrics = if metrics_token {
        Router::new().route(
            "/metrics",
            get(render_metrics).route_layer(axum::middleware::from_fn_with_state(
                app.clone(),
                admin::require_admin,
            )),
        )
    } else {
        Router::new().route("/metrics", get(render_metrics))
    };
    Router::new()
        .nest("/_strata/api", admin::router(app.clone()))
        .route("/_strata/", get(admin::dashboard::page))
        .route("/_strata", get(admin::dashboard::redirect))
        .merge(metrics)
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            not_on_tenant_domains,
        ))
}

/// A request whose `Host` is a tenant's domain is that tenant's: the
/// operator's paths are a 404 there, as any unknown path of the tenant.
async fn not_on_tenant_domains(State(app): State<App>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match app.registry.tenant_for_host(host).await {
        Ok(_) => ApiError::not_found().into_response(),
        Err(e) if e.status() == StatusCode::NOT_FOUND => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn render_metrics(State(app): State<App>) -> Response {
    app.metrics.connections.set(
        app.registry
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// CORS for browser clients, as PocketBase allows by default: any origin.
async fn cors(req: Request, next: Next) -> Response {
    let allow_headers = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("*"));
    let mut resp = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, PUT, PATCH, POST, DELETE"),
        );
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        r
    } else {
        next.run(req).await
    };
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    // Browser apps may read where their write stands (see records.rs).
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Strata-Txid, Strata-Replicated"),
    );
    resp
}
