//! Prometheus metrics at `GET /metrics`, in the text exposition format, on the `prometheus`
//! crate (each app has its own registry, so apps in one test process keep their series apart):
//!
//! - `http_requests_total` and `http_request_duration_seconds` (histogram) by method, route
//!   template (never an id) and status, recorded by the request context for every answer;
//! - the process (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//!   `process_open_fds`, …), from `/proc` on Linux;
//! - the outbox and relay, database pools and Redis, read when scraped.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use super::AppState;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How long a scrape waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// Upper bounds of the read models' apply-delay buckets, in seconds.
const DELAY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// This app's registry: the HTTP series recorded on every answer, and the read models'
/// apply delays recorded on every batch.
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    projection_delay: HistogramVec,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics::new()
    }
}

/// The method's name as a `'static` label (other methods share one label).
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

const HTTP_LABELS: [&str; 3] = ["method", "route", "status"];

impl HttpMetrics {
    pub fn new() -> HttpMetrics {
        let registry = Registry::new();
        // The names, labels and buckets are constants: these cannot fail.
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered."),
            &HTTP_LABELS,
        )
        .expect("valid counter");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from receiving a request to its answer.",
            )
            .buckets(BUCKETS.to_vec()),
            &HTTP_LABELS,
        )
        .expect("valid histogram");
        let projection_delay = HistogramVec::new(
            HistogramOpts::new(
                "projection_apply_delay_seconds",
                "Time from an event's occurredOn to the commit of its read model's batch \
                 (serving copies only, not rebuilds).",
            )
            .buckets(DELAY_BUCKETS.to_vec()),
            &["model"],
        )
        .expect("valid histogram");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(projection_delay.clone()),
            #[cfg(target_os = "linux")]
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(collector).expect("unique series names");
        }
        HttpMetrics {
            registry,
            requests,
            duration,
            projection_delay,
        }
    }

    /// Records a read model's committed batch: each event's delay from its `occurredOn`.
    pub fn observe_projection(&self, batch: &customer_events::projection::AppliedBatch) {
        if !batch.serving {
            return;
        }
        let histogram = self.projection_delay.with_label_values(&[batch.model]);
        for occurred in &batch.occurred_ms {
            histogram.observe((batch.committed_ms - occurred).max(0) as f64 / 1000.0);
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: StatusCode, elapsed: Duration) {
        let labels = [method_label(method), route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Requests answered so far, and how many of them with a 5xx.
    pub fn totals(&self) -> (u64, u64) {
        let mut all = 0;
        let mut failed = 0;
        for family in prometheus::core::Collector::collect(&self.requests) {
            for metric in family.get_metric() {
                let count = metric.get_counter().get_value() as u64;
                all += count;
                let server_error = metric
                    .get_label()
                    .iter()
                    .any(|l| l.name() == "status" && l.value().starts_with('5'));
                if server_error {
                    failed += count;
                }
            }
        }
        (all, failed)
    }
}

/// The series read when scraped, in a registry of their own so a failed probe leaves its
/// series out instead of showing a stale value.
fn scrape_registry() -> Registry {
    Registry::new()
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: C) {
    // Each name is registered once per scrape registry: this cannot fail.
    let _ = registry.register(Box::new(metric));
}

fn gauge(registry: &Registry, name: &str, help: &str, value: f64) {
    if let Ok(gauge) = Gauge::new(name, help) {
        gauge.set(value);
        register(registry, gauge);
    }
}

fn int_gauge(registry: &Registry, name: &str, help: &str, value: i64) {
    if let Ok(gauge) = IntGauge::new(name, help) {
        gauge.set(value);
        register(registry, gauge);
    }
}

fn counter(registry: &Registry, name: &str, help: &str, value: u64) {
    if let Ok(counter) = IntCounter::new(name, help) {
        counter.inc_by(value);
        register(registry, counter);
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus text exposition of this instance's metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    summary = "Prometheus metrics",
    description = "This instance's metrics in the Prometheus text format: requests, the relay, the outbox and pools.",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let scrape = scrape_registry();
    let relay = state.relay.snapshot();
    let outbox = tokio::time::timeout(PROBE_TIMEOUT, state.events.outbox_status()).await;
    if let Ok(Ok(outbox)) = outbox {
        int_gauge(
            &scrape,
            "outbox_pending_events",
            "Events committed and not yet published.",
            outbox.pending,
        );
        let age = outbox.oldest_pending_at.map_or(0.0, |at| {
            (state.clock.now().millis() - at.millis()).max(0) as f64 / 1000.0
        });
        gauge(
            &scrape,
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished event (0 when none).",
            age,
        );
    }
    counter(
        &scrape,
        "outbox_published_events_total",
        "Events this instance published.",
        relay.published_total,
    );
    counter(
        &scrape,
        "outbox_publish_failures_total",
        "Failed relay steps (each retried) on this instance.",
        relay.failures_total,
    );
    counter(
        &scrape,
        "events_stream_log_reads_total",
        "Queries of the event log for live SSE streams (one reader per instance, plus each \
         client's catch-up).",
        state.live.reads(),
    );
    int_gauge(
        &scrape,
        "events_streams_open",
        "Server-Sent Events streams open on this instance (SSE_MAX_CLIENTS caps them).",
        i64::try_from(state.sse.open()).unwrap_or(i64::MAX),
    );
    counter(
        &scrape,
        "events_streams_refused_total",
        "Server-Sent Events streams refused with 503 (SSE_MAX_CLIENTS or \
         SSE_MAX_CLIENTS_PER_ADDRESS reached).",
        state.sse.refused(),
    );
    int_gauge(
        &scrape,
        "relay_leader",
        "1 if this instance holds the relay lease and publishes.",
        i64::from(relay.is_leader),
    );
    if let Ok(pools) = IntGaugeVec::new(
        Opts::new(
            "db_pool_connections",
            "Database connections by pool and state.",
        ),
        &["pool", "state"],
    ) {
        for (pool, usage) in state.store.pool_usage() {
            for (kind, value) in [
                ("in_use", usage.in_use),
                ("idle", usage.idle),
                ("max", usage.max),
            ] {
                pools
                    .with_label_values(&[pool, kind])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        register(&scrape, pools);
    }
    if let Ok(searches) = IntCounterVec::new(
        Opts::new(
            "customer_search_queries_total",
            "Search queries by what they find (query: the total's count, or the page) and how \
             (path: through the trigram index, or by a scan / walk of the list order).",
        ),
        &["query", "path"],
    ) {
        let queries = state.store.search_queries();
        for (query, path, value) in [
            ("count", "index", queries.count_index),
            ("count", "scan", queries.count_scan),
            ("page", "index", queries.page_index),
            ("page", "walk", queries.page_walk),
        ] {
            searches.with_label_values(&[query, path]).inc_by(value);
        }
        register(&scrape, searches);
    }
    let now = state.clock.now();
    let lags = tokio::time::timeout(
        PROBE_TIMEOUT,
        crate::application::projection_states(&*state.models, &*state.events, now),
    )
    .await;
    if let Ok(Ok(lags)) = lags {
        let series = [
            (
                "projection_position",
                "The log position a read model includes.",
            ),
            (
                "projection_lag_events",
                "Settled events a read model has not applied yet.",
            ),
        ];
        for (index, (name, help)) in series.into_iter().enumerate() {
            if let Ok(vec) = IntGaugeVec::new(Opts::new(name, help), &["model"]) {
                for (model, lag) in &lags {
                    let value = if index == 0 { lag.position } else { lag.events };
                    vec.with_label_values(&[model.model.as_str()]).set(value);
                }
                register(&scrape, vec);
            }
        }
        if let Ok(vec) = prometheus::GaugeVec::new(
            Opts::new(
                "projection_lag_seconds",
                "Age of the oldest settled event a read model has not applied (0 when none).",
            ),
            &["model"],
        ) {
            for (model, lag) in &lags {
                vec.with_label_values(&[model.model.as_str()])
                    .set(lag.ms as f64 / 1000.0);
            }
            register(&scrape, vec);
        }
    }
    if !state.sagas.definitions.is_empty() {
        let summary = tokio::time::timeout(
            PROBE_TIMEOUT,
            crate::application::saga_summary(&*state.sagas.store, now),
        )
        .await;
        if let Ok(Ok(summary)) = summary {
            if let Ok(vec) = IntGaugeVec::new(Opts::new("sagas", "Sagas by state."), &["state"]) {
                for (saga_state, n) in &summary.by_state {
                    vec.with_label_values(&[saga_state.as_str()]).set(*n);
                }
                register(&scrape, vec);
            }
            gauge(
                &scrape,
                "saga_oldest_open_age_seconds",
                "Age of the oldest open saga (0 when none is open).",
                summary.oldest_open_started_at.map_or(0.0, |at| {
                    (now.millis() - at.millis()).max(0) as f64 / 1000.0
                }),
            );
            int_gauge(
                &scrape,
                "sagas_past_half_deadline",
                "Open sagas with more than half of the time to their deadline gone.",
                summary.past_half_deadline,
            );
        }
        let status = &state.sagas.status;
        counter(
            &scrape,
            "saga_replies_recorded_total",
            "Participants' answers this instance recorded (repeats included).",
            status
                .replies_recorded
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        counter(
            &scrape,
            "saga_replies_refused_total",
            "Participants' answers this instance refused (unknown saga or participant, a \
             token of no open request, a saga that has ended).",
            status
                .replies_refused
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    let database_up = matches!(
        tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    int_gauge(
        &scrape,
        "database_up",
        "1 if the database answered this scrape.",
        i64::from(database_up),
    );
    if let Some(replica) = state.store.replica_status() {
        int_gauge(
            &scrape,
            "database_replica_up",
            "1 if the read replica answered its last check.",
            i64::from(replica.up),
        );
        gauge(
            &scrape,
            "database_replica_lag_seconds",
            "How far the read replica is behind the primary (lists and counts served by it lag this much).",
            replica.lag.as_secs_f64(),
        );
        if let Ok(reads) = prometheus::IntCounterVec::new(
            Opts::new(
                "database_replica_reads_total",
                "Reads that could go to the replica, by where they went.",
            ),
            &["target"],
        ) {
            reads
                .with_label_values(&["replica"])
                .inc_by(replica.reads_replica);
            reads
                .with_label_values(&["primary"])
                .inc_by(replica.reads_primary);
            register(&scrape, reads);
        }
    }
    if let Some(nats) = &state.nats {
        let up = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, nats.ping()).await,
            Ok(Ok(()))
        );
        int_gauge(
            &scrape,
            "nats_up",
            "1 if NATS (and its JetStream stream) answered this scrape.",
            i64::from(up),
        );
    }
    if let Some(redis) = &state.redis {
        let up = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, redis.ping()).await,
            Ok(Ok(()))
        );
        int_gauge(
            &scrape,
            "redis_up",
            "1 if Redis answered this scrape.",
            i64::from(up),
        );
    }

    let mut families = state.metrics.registry.gather();
    families.extend(scrape.gather());
    let mut out = Vec::with_capacity(8192);
    if let Err(error) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!(%error, "metrics could not be encoded");
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_labels_are_escaped() {
        let metrics = HttpMetrics::default();
        let ok = StatusCode::OK;
        metrics.observe("GET", "/a/{id}", ok, Duration::from_millis(3));
        metrics.observe("GET", "/a/{id}", ok, Duration::from_millis(30));
        metrics.observe("GET", "/a/{id}", ok, Duration::from_secs(9));
        metrics.observe(
            "GET",
            "odd\"route",
            StatusCode::NOT_FOUND,
            Duration::from_millis(1),
        );
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut out)
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        let labels = r#"method="GET",route="/a/{id}",status="200""#;
        for line in [
            format!("http_requests_total{{{labels}}} 3"),
            format!("http_request_duration_seconds_bucket{{{labels},le=\"0.001\"}} 0"),
            format!("http_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 1"),
            format!("http_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 2"),
            format!("http_request_duration_seconds_bucket{{{labels},le=\"5\"}} 2"),
            format!("http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3"),
            format!("http_request_duration_seconds_count{{{labels}}} 3"),
            r#"http_requests_total{method="GET",route="odd\"route",status="404"} 1"#.to_owned(),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
        metrics.observe(
            "POST",
            "/a",
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(1),
        );
        assert_eq!(metrics.totals(), (5, 1));
    }
}
