//! The HTTP interface: routes under `/api/v1`, the contract's envelopes and error bodies,
//! correlation ids, CORS, limits and the OpenAPI document.
//!
//! Layers, outermost first: request context (correlation id, span, time limit, error
//! rendering, access log) → CORS → authentication → write rate limit → body limit → routes.

mod auth;
mod catalog;
mod cors;
mod customers;
mod dashboard;
mod envelope;
mod error;
mod events;
mod extract;
mod health;
mod metrics;
mod openapi;
mod rate_limit;
mod request_context;
mod server;

pub use auth::{Actor, Authenticator};
pub use error::ApiError;
pub use metrics::HttpMetrics;
pub use rate_limit::RateLimiter;
pub use server::{raise_open_file_limit, serve, ServerLimits};

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::{middleware, Router};

use crate::application::{Clock, CustomerStore, EventLog};
use crate::outbox::RelayStatus;
use crate::sinks::RedisSink;

/// `service` in health answers and `source` of events.
pub(crate) const SERVICE_NAME: &str = "customer-service";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn CustomerStore>,
    pub events: Arc<dyn EventLog>,
    pub clock: Arc<dyn Clock>,
    /// For the health check's `uptime`.
    pub started_at: Instant,
    pub relay: Arc<RelayStatus>,
    /// For the health check; `None` when no Redis is configured.
    pub redis: Option<Arc<RedisSink>>,
    /// How long an Idempotency-Key's answer is kept.
    pub idempotency_ttl: Duration,
    /// Health is degraded while the oldest unpublished event is older than this.
    pub outbox_degraded_after: Duration,
    /// The HTTP series of `/metrics`, recorded by the request context.
    pub metrics: Arc<HttpMetrics>,
    /// Moves when this instance's relay moves the watermark: wakes the SSE streams.
    pub settled: tokio::sync::watch::Receiver<i64>,
    /// Turns true at shutdown: ends open SSE streams, which would otherwise hold the
    /// graceful shutdown open forever.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
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

/// The whole application router.
pub fn router(state: AppState, options: &RouterOptions) -> Router {
    let api = Router::new()
        .merge(customers::router())
        .merge(events::router())
        .merge(catalog::router())
        .merge(dashboard::router())
        .merge(health::router());
    let origins: Arc<[String]> = options.cors_origins.clone().into();
    let context = request_context::ContextState {
        request_timeout: options.request_timeout,
        metrics: state.metrics.clone(),
    };
    let mut router = Router::new()
        .nest("/api/v1", api)
        .merge(health::probes())
        .merge(metrics::router())
        .merge(dashboard::page())
        .merge(openapi::router())
        .fallback(route_not_found)
        .method_not_allowed_fallback(route_not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(options.body_limit_bytes));
    // Layers that are off cost nothing: they are not there.
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
    router
        .layer(middleware::from_fn_with_state(origins, cors::cors))
        .layer(middleware::from_fn_with_state(
            context,
            request_context::request_context,
        ))
}

/// 404 "Cannot <METHOD> <path>", as the original answered unknown routes (and methods).
async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("Cannot {method} {}", uri.path()))
}
