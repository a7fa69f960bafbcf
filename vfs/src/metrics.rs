//! Prometheus metrics of the engine, in one registry the binary can expose.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::sync::LazyLock;

pub struct Metrics {
    pub registry: Registry,
    pub commits: IntCounter,
    pub segments_uploaded: IntCounter,
    /// Small segments merged into one (`engine/uploader.rs` `maybe_merge`).
    pub segments_merged: IntCounter,
    pub bytes_uploaded: IntCounter,
    pub upload_errors: IntCounter,
    pub snapshots: IntCounter,
    pub spool_bytes: IntGauge,
    pub replication_lag: Histogram,
    pub bucket_requests: IntCounterVec,
    /// Per database (`tenant/db`): the replicated watermark.
    pub replicated_txid: IntGaugeVec,
    /// Per database: age of the oldest commit not yet in the bucket.
    pub lag_ms: IntGaugeVec,
    /// Page reads served by the in-memory page cache, and those that went
    /// to the bucket.
    pub page_cache_hits: IntCounter,
    pub page_cache_misses: IntCounter,
    /// Busy sleeps that a release of the write lock ended early
    /// (`sqlite/busy.rs`).
    pub write_lock_handoffs: IntCounter,
    /// Read replicas (`engine/follow.rs`): moves to a newer head, failed
    /// looks, and per database the txid followed and the staleness.
    pub follower_moves: IntCounter,
    pub follower_errors: IntCounter,
    pub follower_txid: IntGaugeVec,
    pub follower_staleness_ms: IntGaugeVec,
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
    let segments_merged = counter(
        "segments_merged_total",
        "Small segments replaced in the manifest by a merged one",
    );
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
    let gauges = |name: &str, help: &str| {
        let g = IntGaugeVec::new(Opts::new(name, help), &["db"]).expect("static metric names");
        registry
            .register(Box::new(g.clone()))
            .expect("unique metric names");
        g
    };
    let replicated_txid = gauges("replicated_txid", "Last txid in the bucket, per database");
    let lag_ms = gauges(
        "replication_lag_milliseconds",
        "Age of the oldest commit not yet in the bucket, per database (0 = caught up)",
    );
    let page_cache_hits = counter("page_cache_hits_total", "Page reads served from memory");
    let page_cache_misses = counter(
        "page_cache_misses_total",
        "Page reads fetched from the bucket",
    );
    let write_lock_handoffs = counter(
        "write_lock_handoffs_total",
        "Busy waits for a WAL write lock ended early by its release in this process",
    );
    let follower_moves = counter(
        "follower_moves_total",
        "Read replicas moved to a newer head of their database",
    );
    let follower_errors = counter(
        "follower_errors_total",
        "Read replicas' failed looks for a newer head (they serve what they have)",
    );
    let follower_txid = gauges(
        "follower_txid",
        "The txid a read replica of this process serves, per database",
    );
    let follower_staleness_ms = gauges(
        "follower_staleness_milliseconds",
        "Time since a read replica last read its database's head from the bucket, per database",
    );
    Metrics {
        follower_moves,
        follower_errors,
        follower_txid,
        follower_staleness_ms,
        write_lock_handoffs,
        registry,
        replicated_txid,
        lag_ms,
        page_cache_hits,
        page_cache_misses,
        commits,
        segments_uploaded,
        segments_merged,
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
