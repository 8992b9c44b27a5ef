//! Prometheus metrics at `GET /metrics`, in the text exposition format.
//!
//! - `http_requests_total` and `http_request_duration_seconds` (histogram) by method, route
//!   template (never an id) and status, recorded by the request context for every answer;
//! - the outbox and relay, database pools and Redis, read when scraped.
//!
//! Hand-written rather than a metrics library: a dozen series, one mutex-guarded map on the
//! request path, and no global registry to wire through the tests.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How long a scrape waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_seconds: f64,
    /// Observations at or below each bound (not cumulative; summed when rendered).
    buckets: [u64; BUCKETS.len()],
}

/// The HTTP series: by route template, then (method, status). Looked up by `&str`, so
/// recording a request allocates nothing once its series exists.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    series: Mutex<HashMap<String, RouteSeries>>,
}

/// One route's series by (method label, status).
type RouteSeries = HashMap<(&'static str, u16), Series>;

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

impl HttpMetrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let by_route = match series.get_mut(route) {
            Some(by_route) => by_route,
            None => series.entry(route.to_owned()).or_default(),
        };
        let entry = by_route.entry((method_label(method), status)).or_default();
        entry.count += 1;
        entry.sum_seconds += seconds;
        if let Some(slot) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            entry.buckets[slot] += 1;
        }
    }

    /// Requests answered so far, and how many of them with a 5xx.
    pub fn totals(&self) -> (u64, u64) {
        let Ok(series) = self.series.lock() else {
            return (0, 0);
        };
        series
            .values()
            .flat_map(HashMap::iter)
            .fold((0, 0), |(all, failed), ((_, status), s)| {
                let failed = if *status >= 500 {
                    failed + s.count
                } else {
                    failed
                };
                (all + s.count, failed)
            })
    }

    fn render(&self, out: &mut String) {
        // Sorted, so a scrape reads the same order every time.
        let series: BTreeMap<(String, &'static str, u16), Series> = match self.series.lock() {
            Ok(series) => series
                .iter()
                .flat_map(|(route, by_key)| {
                    by_key
                        .iter()
                        .map(|((method, status), s)| ((route.clone(), *method, *status), s.clone()))
                })
                .collect(),
            Err(_) => return,
        };
        help(
            out,
            "http_requests_total",
            "counter",
            "HTTP requests answered.",
        );
        for ((route, method, status), s) in &series {
            let _ = writeln!(
                out,
                "http_requests_total{{{}}} {}",
                labels(method, route, *status),
                s.count
            );
        }
        help(
            out,
            "http_request_duration_seconds",
            "histogram",
            "Time from receiving a request to its answer.",
        );
        for ((route, method, status), s) in &series {
            let labels = labels(method, route, *status);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(s.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

fn labels(method: &str, route: &str, status: u16) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{status}\"",
        escape(method),
        escape(route)
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, text: &str, value: impl std::fmt::Display) {
    help(out, name, "gauge", text);
    let _ = writeln!(out, "{name} {value}");
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus text exposition of this instance's metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    state.metrics.render(&mut out);

    let relay = state.relay.snapshot();
    let outbox = tokio::time::timeout(PROBE_TIMEOUT, state.events.outbox_status()).await;
    if let Ok(Ok(outbox)) = outbox {
        gauge(
            &mut out,
            "outbox_pending_events",
            "Events committed and not yet published.",
            outbox.pending,
        );
        let age = outbox.oldest_pending_at.map_or(0.0, |at| {
            (state.clock.now().millis() - at.millis()).max(0) as f64 / 1000.0
        });
        gauge(
            &mut out,
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished event (0 when none).",
            age,
        );
    }
    help(
        &mut out,
        "outbox_published_events_total",
        "counter",
        "Events this instance published.",
    );
    let _ = writeln!(
        out,
        "outbox_published_events_total {}",
        relay.published_total
    );
    help(
        &mut out,
        "outbox_publish_failures_total",
        "counter",
        "Failed relay steps (each retried) on this instance.",
    );
    let _ = writeln!(
        out,
        "outbox_publish_failures_total {}",
        relay.failures_total
    );
    gauge(
        &mut out,
        "relay_leader",
        "1 if this instance holds the relay lease and publishes.",
        u8::from(relay.is_leader),
    );

    help(
        &mut out,
        "db_pool_connections",
        "gauge",
        "Database connections by pool and state.",
    );
    for (pool, usage) in state.store.pool_usage() {
        for (kind, value) in [
            ("in_use", usage.in_use),
            ("idle", usage.idle),
            ("max", usage.max),
        ] {
            let _ = writeln!(
                out,
                "db_pool_connections{{pool=\"{pool}\",state=\"{kind}\"}} {value}"
            );
        }
    }
    let database_up = matches!(
        tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    gauge(
        &mut out,
        "database_up",
        "1 if the database answered this scrape.",
        u8::from(database_up),
    );
    if let Some(redis) = &state.redis {
        let up = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, redis.ping()).await,
            Ok(Ok(()))
        );
        gauge(
            &mut out,
            "redis_up",
            "1 if Redis answered this scrape.",
            u8::from(up),
        );
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
        metrics.observe("GET", "/a/{id}", 200, Duration::from_millis(3));
        metrics.observe("GET", "/a/{id}", 200, Duration::from_millis(30));
        metrics.observe("GET", "/a/{id}", 200, Duration::from_secs(9));
        metrics.observe("GET", "odd\"route", 404, Duration::from_millis(1));
        let mut out = String::new();
        metrics.render(&mut out);
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
        metrics.observe("POST", "/a", 503, Duration::from_millis(1));
        assert_eq!(metrics.totals(), (5, 1));
    }
}
