//! Prometheus metrics of the engine, in one registry the binary can expose.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::sync::LazyLock;

pub struct Metrics {
    pub registry: Registry,
    pub commits: IntCounter,
    pub segments_uploaded: IntCounter,
    pub bytes_uploaded: IntCounter,
    pub upload_errors: IntCounter,
    pub snapshots: IntCounter,
    pub spool_bytes: IntGauge,
    pub replication_lag: Histogram,
    pub bucket_requests: IntCounterVec,
}

fn build() -> Metrics {
    let registry = Registry::new_custom(Some("strata".into()), None).expect("static metric names");
    let counter = |name: &str, help: &str| {
        let c = IntCounter::new(name, help).expect("static metric names");
        registry
            .register(Box::new(c.clone()))
            .expect("unique metric names");
        c
    };
    let commits = counter("commits_total", "Transactions committed through the VFS");
    let segments_uploaded = counter("segments_uploaded_total", "Segments written to the bucket");
    let bytes_uploaded = counter("uploaded_bytes_total", "Segment and snapshot bytes written");
    let upload_errors = counter("upload_errors_total", "Failed upload attempts (retried)");
    let snapshots = counter("snapshots_total", "Snapshots written");
    let spool_bytes = IntGauge::new(
        "spool_bytes",
        "Bytes spooled locally, not yet in the bucket",
    )
    .expect("static metric names");
    registry
        .register(Box::new(spool_bytes.clone()))
        .expect("unique metric names");
    let replication_lag = Histogram::with_opts(
        HistogramOpts::new(
            "replication_lag_seconds",
            "Commit to manifest-in-bucket delay",
        )
        .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
    )
    .expect("static metric names");
    registry
        .register(Box::new(replication_lag.clone()))
        .expect("unique metric names");
    let bucket_requests = IntCounterVec::new(
        Opts::new(
            "bucket_requests_total",
            "Object store requests by operation",
        ),
        &["op"],
    )
    .expect("static metric names");
    registry
        .register(Box::new(bucket_requests.clone()))
        .expect("unique metric names");
    Metrics {
        registry,
        commits,
        segments_uploaded,
        bytes_uploaded,
        upload_errors,
        snapshots,
        spool_bytes,
        replication_lag,
        bucket_requests,
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(build);

/// Render every metric in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&METRICS.registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
