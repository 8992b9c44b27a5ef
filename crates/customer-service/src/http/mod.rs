//! The HTTP interface: routes under `/api/v1`, the contract's envelopes and error bodies,
//! correlation ids, CORS, limits and the OpenAPI document.
//!
//! Layers, outermost first, from tower-http unless named: unusable correlation ids dropped →
//! request id (`X-Correlation-ID`: the client's or a new UUID, echoed on the answer) →
//! compression (answers of 1 KiB or more) → request context (ours: span, read scope, error
//! bodies, access log, metrics) → time
//! limit (503) → panic catcher (500) → CORS → authentication (ours) → write rate limit (ours,
//! on governor) → body limit (413) → routes.

mod auth;
mod bodies;
mod catalog;
mod customers;
mod dashboard;
mod envelope;
mod error;
mod events;
mod extract;
mod health;
mod idempotency;
mod live;
mod metrics;
mod openapi;
mod rate_limit;
mod replica;
mod request_context;
mod sagas;
mod server;
mod sse_clients;

pub use auth::{Actor, Authenticator};
pub use error::ApiError;
pub use live::LiveLog;
pub use metrics::HttpMetrics;
pub use rate_limit::RateLimiter;
pub use server::{raise_open_file_limit, serve, ServerLimits};
pub use sse_clients::{SseClients, SseSlot};

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::{middleware, Router};
use tower::util::{MapRequestLayer, MapResponseLayer};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

use crate::application::{Clock, CustomerStore, EventLog, ReadModels};
use crate::outbox::RelayStatus;
use crate::sinks::RedisSink;

/// `service` in health answers and `source` of events.
pub(crate) const SERVICE_NAME: &str = "customer-service";

/// What every handler can reach. axum's `State` clones it for every handler and middleware
/// that takes it, so it is one `Arc`: cloned field by field (fourteen `Arc`s, a watch
/// receiver and the saga definitions' `Vec`) it was a measurable share of a GET's CPU
/// (`AppState::clone` and its drop, 2.5 % in `perf` under the benchmark's GET load).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    pub store: Arc<dyn CustomerStore>,
    pub events: Arc<dyn EventLog>,
    /// The read models (customer statistics).
    pub models: Arc<dyn ReadModels>,
    pub clock: Arc<dyn Clock>,
    /// For the health check's `uptime`.
    pub started_at: Instant,
    pub relay: Arc<RelayStatus>,
    /// For the health check; `None` when no Redis is configured.
    pub redis: Option<Arc<RedisSink>>,
    /// For the health check; `None` when no NATS is configured.
    pub nats: Option<Arc<crate::sinks::NatsSink>>,
    /// How long an Idempotency-Key's answer is kept.
    pub idempotency_ttl: Duration,
    /// Health is degraded while the oldest unpublished event is older than this.
    pub outbox_degraded_after: Duration,
    /// The HTTP series of `/metrics`, recorded by the request context.
    pub metrics: Arc<HttpMetrics>,
    /// The live tail of the settled log, shared by every SSE stream of this instance.
    pub live: Arc<LiveLog>,
    /// Which background worker failed, if one did: `/readyz` answers 503 naming it.
    pub workers: Arc<crate::workers::WorkerHealth>,
    /// Turns true at shutdown: ends open SSE streams, which would otherwise hold the
    /// graceful shutdown open forever.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The sagas: their store, the definitions this configuration runs (none without
    /// `ERASURE_PARTICIPANTS`), and the orchestrator's counters.
    pub sagas: SagaContext,
    /// The open event streams, capped (`SSE_MAX_CLIENTS`, `SSE_MAX_CLIENTS_PER_ADDRESS`).
    pub sse: Arc<SseClients>,
}

impl axum::extract::FromRef<AppState> for Arc<SseClients> {
    fn from_ref(state: &AppState) -> Arc<SseClients> {
        state.sse.clone()
    }
}

/// What the saga routes, health and metrics need.
#[derive(Clone)]
pub struct SagaContext {
    pub store: Arc<dyn crate::application::SagaStore>,
    pub definitions: crate::application::Sagas,
    pub status: Arc<crate::orchestrator::OrchestratorStatus>,
}

/// Limits, CORS and authentication settings of the router.
#[derive(Clone)]
pub struct RouterOptions {
    pub cors_origins: Vec<String>,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    /// `None`: no authentication.
    pub authenticator: Option<Arc<Authenticator>>,
    /// `None`: writes are not rate-limited.
    pub rate_limiter: Option<Arc<RateLimiter>>,
}

/// Connections of the `PROBE_PORT` listener at most.
pub const PROBE_CONNECTIONS: usize = 64;

/// The `PROBE_PORT` router: the probes, the health routes and `/metrics`, with the same
/// layers (and authentication of `/metrics`) as on the main port.
pub fn probe_router(state: AppState, options: &RouterOptions) -> Router {
    let metrics = state.metrics.clone();
    let api = Router::new()
        .merge(health::router())
        .merge(customers::liveness_router());
    let routes = Router::new()
        .nest("/api/v1", api)
        .merge(health::probes())
        .merge(metrics::router())
        .fallback(route_not_found)
        .method_not_allowed_fallback(route_not_found)
        .with_state(state);
    with_layers(routes, options, metrics)
}

/// The whole application router.
pub fn router(state: AppState, options: &RouterOptions) -> Router {
    let api = Router::new()
        .merge(customers::router())
        .merge(events::router())
        .merge(catalog::router())
        .merge(dashboard::router())
        .merge(health::router())
        .merge(sagas::router());
    let metrics = state.metrics.clone();
    let routes = Router::new()
        .nest("/api/v1", api)
        .merge(health::probes())
        .merge(metrics::router())
        .merge(dashboard::page())
        .merge(openapi::router())
        .fallback(route_not_found)
        .method_not_allowed_fallback(route_not_found)
        .with_state(state);
    with_layers(routes, options, metrics)
}

const ALLOWED_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];
const EXPOSED_HEADERS: [&str; 3] = ["x-correlation-id", "etag", "location"];
/// Answers smaller than this are sent as they are: one packet either way, and the
/// compression's work (and its `Vary` header) would cost more than the bytes it saves.
const COMPRESS_FROM_BYTES: u16 = 1024;
/// Browsers may cache a preflight answer for a day.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(86_400);

/// The layers around the routes (see the module's documentation for their order). Each
/// `Router::layer` call boxes every route once more, and axum clones a route's boxed service
/// for every request it serves: the fixed layers go in two calls (the body limits and the
/// answered mark; the plumbing outside them), and an optional layer costs a call only when
/// it is on (tower's `option_layer` would turn every error type into a boxed error, which
/// axum's routes do not take).
pub(crate) fn with_layers(
    routes: Router,
    options: &RouterOptions,
    metrics: Arc<HttpMetrics>,
) -> Router {
    let mut router = routes.layer(
        ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(options.body_limit_bytes))
            .layer(DefaultBodyLimit::disable())
            // Inside every other layer: what passes here was answered by the router itself.
            .layer(MapResponseLayer::new(request_context::mark_answered)),
    );
    if let Some(limiter) = &options.rate_limiter {
        router = router.layer(middleware::from_fn_with_state(
            limiter.clone(),
            rate_limit::limit_writes,
        ));
    }
    if let Some(authenticator) = &options.authenticator {
        router = router.layer(middleware::from_fn_with_state(
            authenticator.clone(),
            auth::authenticate,
        ));
    }
    let origins: Vec<HeaderValue> = options
        .cors_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    if !origins.is_empty() {
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods(ALLOWED_METHODS)
                .allow_headers(AllowHeaders::mirror_request())
                .expose_headers(EXPOSED_HEADERS.map(axum::http::HeaderName::from_static))
                .max_age(PREFLIGHT_MAX_AGE),
        );
    }
    router.layer(
        ServiceBuilder::new()
            .layer(MapRequestLayer::new(
                request_context::drop_unusable_correlation_id,
            ))
            .layer(SetRequestIdLayer::new(
                request_context::CORRELATION_ID.clone(),
                MakeRequestUuid,
            ))
            .layer(PropagateRequestIdLayer::new(
                request_context::CORRELATION_ID.clone(),
            ))
            .layer(
                CompressionLayer::new()
                    .compress_when(SizeAbove::new(COMPRESS_FROM_BYTES).and(NotForContentType::SSE)),
            )
            .layer(middleware::from_fn_with_state(
                metrics,
                request_context::request_context,
            ))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                options.request_timeout,
            ))
            .layer(CatchPanicLayer::custom(request_context::panic_response)),
    )
}

/// 404 "Cannot <METHOD> <path>", as the original answered unknown routes (and methods).
async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("Cannot {method} {}", uri.path()))
}
