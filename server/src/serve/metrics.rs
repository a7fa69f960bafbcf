//! The server's Prometheus metrics; `/metrics` renders them after the
//! engine's (`strata_vfs::metrics::render`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

pub struct Metrics {
    registry: Registry,
    pub loaded: IntGauge,
    pub connections: IntGauge,
    pub loads: IntCounter,
    pub evictions: IntCounter,
    pub requests: IntCounterVec,
    pub latency: Histogram,
    /// Where tenant loads and evictions spend their time, by phase.
    pub phases: HistogramVec,
    /// Requests sent on to the node that holds their tenant.
    pub forwarded: IntCounter,
    /// Nodes whose heartbeat is fresh, this one included.
    pub nodes_live: IntGauge,
    /// Seconds since this node's last successful heartbeat.
    pub heartbeat_age: prometheus::Gauge,
    /// This node's lapses (a beat after a gap longer than its ttl).
    pub lapses: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("strata_serve".into()), None).expect("static metric prefix");
        let loaded =
            IntGauge::new("tenants_loaded", "tenants loaded on this node").expect("static");
        let connections = IntGauge::new(
            "connections_open",
            "SQLite connections open, every tenant and database",
        )
        .expect("static");
        let loads = IntCounter::new("tenant_loads_total", "tenants opened from the bucket")
            .expect("static");
        let evictions = IntCounter::new("tenant_evictions_total", "tenants flushed and closed")
            .expect("static");
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "HTTP requests by status class"),
            &["class"],
        )
        .expect("static");
        let latency = Histogram::with_opts(
            HistogramOpts::new("request_duration_seconds", "HTTP request latency").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("static");
        let phases = HistogramVec::new(
            HistogramOpts::new(
                "tenant_phase_seconds",
                "Time of each phase of a tenant load (metadata, open_data, claim, schema) and eviction (drain, queue for a close slot, close, drop_local)",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["phase"],
        )
        .expect("static");
        let forwarded = IntCounter::new(
            "forwarded_total",
            "requests sent on to the node that holds their tenant",
        )
        .expect("static");
        let nodes_live = IntGauge::new(
            "cluster_nodes_live",
            "nodes whose heartbeat is fresh, this one included",
        )
        .expect("static");
        let heartbeat_age = prometheus::Gauge::new(
            "heartbeat_age_seconds",
            "seconds since this node's last successful heartbeat",
        )
        .expect("static");
        let lapses = IntGauge::new(
            "node_lapses",
            "times this node went without a heartbeat for longer than its ttl (and dropped its tenants)",
        )
        .expect("static");
        for c in [
            Box::new(loaded.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(forwarded.clone()),
            Box::new(nodes_live.clone()),
            Box::new(heartbeat_age.clone()),
            Box::new(lapses.clone()),
            Box::new(connections.clone()),
            Box::new(loads.clone()),
            Box::new(evictions.clone()),
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(phases.clone()),
            Box::new(crate::serve::realtime::CLIENTS.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            loaded,
            connections,
            loads,
            evictions,
            requests,
            latency,
            phases,
            forwarded,
            nodes_live,
            heartbeat_age,
            lapses,
        }
    }

    /// Record the phases timed by `p`.
    pub fn phases(&self, p: &Phases) {
        for (phase, d) in &p.0 {
            self.phases
                .with_label_values(&[phase.label()])
                .observe(d.as_secs_f64());
        }
    }

    pub fn observe(&self, status: u16, secs: f64) {
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.with_label_values(&[class]).inc();
        self.latency.observe(secs);
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own registered metrics into a Vec cannot fail.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let mut out = strata_vfs::metrics::render();
        out.push_str(&String::from_utf8_lossy(&buf));
        out
    }
}

/// A timed phase of a tenant load or eviction (the `phase` label of
/// `strata_serve_tenant_phase_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the tenant's metadata object.
    Metadata,
    /// Opening `data.db` (lazily, from the bucket).
    OpenData,
    /// Claiming `data.db`'s lease (a node of a cluster).
    Claim,
    /// The first query: the tenant's secret from the schema.
    Schema,
    /// Waiting for the tenant's requests in flight to end.
    Drain,
    /// Waiting for a close slot.
    Queue,
    /// Closing: logs, final upload, connections.
    Close,
    /// Removing the node's local files (`--drop-local-on-evict`).
    DropLocal,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Metadata,
        Phase::OpenData,
        Phase::Claim,
        Phase::Schema,
        Phase::Drain,
        Phase::Queue,
        Phase::Close,
        Phase::DropLocal,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Metadata => "metadata",
            Phase::OpenData => "open_data",
            Phase::Claim => "claim",
            Phase::Schema => "schema",
            Phase::Drain => "drain",
            Phase::Queue => "queue",
            Phase::Close => "close",
            Phase::DropLocal => "drop_local",
        }
    }
}

/// Consecutive phases of one piece of work, each timed from the end of the
/// one before.
pub struct Phases(Vec<(Phase, std::time::Duration)>, std::time::Instant);

impl Default for Phases {
    fn default() -> Self {
        Phases(Vec::new(), std::time::Instant::now())
    }
}

impl Phases {
    /// The phase `name` ends now.
    pub fn mark(&mut self, name: Phase) {
        let now = std::time::Instant::now();
        self.0.push((name, now - self.1));
        self.1 = now;
    }
}
