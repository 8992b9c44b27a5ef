//! The live dashboard: a page at `/dashboard` (HTML, CSS and script compiled into the binary;
//! no CDN, no build step) and the status feed it reads.
//!
//! - `GET /dashboard`, `/dashboard/app.css`, `/dashboard/app.js`: the page. It holds no data,
//!   so it is served to anyone, like the API docs; everything it shows comes from the API
//!   with the bearer token the page asks for when the API answers 401.
//! - `GET /api/v1/health/stream`: Server-Sent Events, one `status` event a second: the health
//!   report plus the relay's counters, the watermark, the dead-letter depth and the HTTP
//!   totals. A read like any other: protected with `AUTH_PROTECT_READS=true`.
//!
//! The page also reads `GET /api/v1/events/stream` (the recent events and the rate by type)
//! and, for the customer lookup, the customer and history routes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderName;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::health::{self, Health, CHECK_TIMEOUT};
use super::sse_clients::SseSlot;
use super::AppState;

/// How often the status feed sends a status.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// The page may load only what the binary serves and talk only to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = include_str!("dashboard/index.html");
const STYLE: &str = include_str!("dashboard/app.css");
const SCRIPT: &str = include_str!("dashboard/app.js");

/// The page's routes, at the root; and `GET /`, which sends a browser to the page (the one
/// departure from the original's 404 for an unknown route: there is nothing else at `/`).
pub(crate) fn page() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/dashboard") }),
        )
        .route("/dashboard", get(index))
        .route("/dashboard/app.css", get(style))
        .route("/dashboard/app.js", get(script))
}

/// The status feed, under `/api/v1`.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/health/stream", get(status_stream))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            // Always revalidated: a new binary's page replaces the old one at once.
            (CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-content-type-options"), "nosniff"),
        ],
        body,
    )
}

async fn index() -> impl IntoResponse {
    (
        [
            (
                HeaderName::from_static("content-security-policy"),
                CONTENT_SECURITY_POLICY,
            ),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
        ],
        asset("text/html; charset=utf-8", PAGE),
    )
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `data` of a `status` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status {
    /// What `GET /api/v1/health` answers.
    health: Health,
    /// Every event at or below this log position is published (or was rolled back);
    /// `null` when the database does not answer.
    watermark: Option<i64>,
    relay: RelayCounters,
    /// Entries in the dead-letter stream `<stream>:dlq`; `null` without Redis or when it
    /// does not answer.
    dead_letters: Option<u64>,
    http: HttpCounters,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RelayCounters {
    /// Events this instance published since it started.
    published_total: u64,
    /// Failed relay steps (each retried) since it started.
    failures_total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpCounters {
    /// Requests this instance answered since it started.
    requests_total: u64,
    /// Of which with a 5xx status.
    server_errors_total: u64,
}

async fn status(state: &AppState) -> Status {
    let dead_letters = async {
        let redis = state.redis.as_ref()?;
        tokio::time::timeout(CHECK_TIMEOUT, redis.dead_letter_depth())
            .await
            .ok()?
            .ok()
    };
    let (health, watermark, dead_letters) = tokio::join!(
        health::report(state),
        tokio::time::timeout(CHECK_TIMEOUT, state.events.watermark()),
        dead_letters,
    );
    let relay = state.relay.snapshot();
    let (requests_total, server_errors_total) = state.metrics.totals();
    Status {
        health,
        watermark: watermark.ok().and_then(Result::ok),
        relay: RelayCounters {
            published_total: relay.published_total,
            failures_total: relay.failures_total,
        },
        dead_letters,
        http: HttpCounters {
            requests_total,
            server_errors_total,
        },
    }
}

/// The service's state, once a second, for the dashboard.
#[utoipa::path(get, path = "/api/v1/health/stream", tag = "health",
    summary = "Live status (Server-Sent Events)",
    description = "The service's state once a second, as the dashboard shows it: health, relay, outbox, dead letters and traffic.",
    responses((status = 200, description = "text/event-stream: event = status, data = Status JSON, one a second",
               content_type = "text/event-stream", body = Status),
              (status = 503, description = "Too many event streams open on this instance (SSE_MAX_CLIENTS) or from this address (SSE_MAX_CLIENTS_PER_ADDRESS); see Retry-After", body = ErrorBody)))]
pub(crate) async fn status_stream(
    State(state): State<AppState>,
    slot: SseSlot,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut ticks = tokio::time::interval(STATUS_INTERVAL);
    // A slow check delays the next status; it never sends a burst to catch up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The slot travels with the stream: the client counts against the SSE caps till it ends.
    let shutdown = state.shutdown.clone();
    let statuses = stream::unfold(
        (state, shutdown, ticks, slot),
        |(state, mut shutdown, mut ticks, slot)| async move {
            tokio::select! {
                _ = ticks.tick() => {}
                stop = shutdown.wait_for(|stop| *stop) => {
                    drop(stop);
                    return None;
                }
            }
            let status = status(&state).await;
            let event = Event::default()
                .event("status")
                .json_data(&status)
                .unwrap_or_else(|_| Event::default().comment("status unavailable"));
            Some((Ok(event), (state, shutdown, ticks, slot)))
        },
    );
    Sse::new(statuses).keep_alive(KeepAlive::default())
}
