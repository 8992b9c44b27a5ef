//! The outermost middleware: gives every request its correlation id and span, applies the
//! time limit, renders [`ApiError`] bodies (which need the request's path and id) and logs
//! each request once, with the cause of any 5xx.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::FutureExt;
use tracing::Instrument;

use super::envelope::now_iso;
use super::error::{ApiError, ErrorBody, ErrorReport, FieldErrorsBody};
use super::metrics::HttpMetrics;

pub(crate) static CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Longest client-supplied correlation id we echo; longer ones are replaced.
const MAX_CORRELATION_ID_CHARS: usize = 128;

/// The request's correlation id, in the request extensions for handlers.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// The client's `X-Correlation-ID` if it is usable, else a new UUID.
fn correlation_id(request: &Request) -> String {
    request
        .headers()
        .get(&CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_CORRELATION_ID_CHARS
                && !id.chars().any(char::is_control)
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// What the request context needs besides the request.
#[derive(Clone)]
pub(crate) struct ContextState {
    pub request_timeout: Duration,
    pub metrics: Arc<HttpMetrics>,
}

pub(crate) async fn request_context(
    State(context): State<ContextState>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_timeout = context.request_timeout;
    let started = Instant::now();
    let id = correlation_id(&request);
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str)
        .to_owned();
    // The caller's W3C trace context, for trace export; only a well-formed one is kept
    // (it is also logged with the span).
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .filter(|value| crate::telemetry::TraceParent::parse(value).is_some());
    let span = tracing::info_span!(
        "request",
        http.method = %method,
        http.route = %route,
        correlation_id = %id,
        traceparent,
        http.response.status_code = tracing::field::Empty,
    );

    async move {
        // A panic in a handler is a bug, but the client still gets the contract's 500 (with
        // its correlation id) rather than a dropped connection.
        let handled = AssertUnwindSafe(next.run(request)).catch_unwind();
        let mut response = match tokio::time::timeout(request_timeout, handled).await {
            Ok(Ok(response)) => response,
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a handler panicked".to_owned());
                ApiError::Internal(what.into()).into_response()
            }
            Err(_elapsed) => ApiError::Timeout.into_response(),
        };
        if let Some(report) = response.extensions_mut().remove::<ErrorReport>() {
            response = render_error(response, report, &path, &id);
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(CORRELATION_ID.clone(), value);
        }
        let status = response.status().as_u16();
        tracing::Span::current().record("http.response.status_code", status);
        let elapsed = started.elapsed();
        context
            .metrics
            .observe(method.as_str(), &route, status, elapsed);
        let duration_ms = elapsed.as_millis() as u64;
        if response.status().is_server_error() {
            tracing::warn!(http.status = status, duration_ms, "request failed");
        } else {
            tracing::info!(http.status = status, duration_ms, "request completed");
        }
        response
    }
    .instrument(span)
    .await
}

/// Replaces the (empty) body of an error response with the contract's error body.
fn render_error(response: Response, report: ErrorReport, path: &str, id: &str) -> Response {
    let (parts, _) = response.into_parts();
    let status = parts.status;
    if let Some(cause) = &report.cause {
        // Logged here, once, inside the request span; never sent to the client.
        tracing::error!(error.cause = %cause, http.status = status.as_u16(), "request error");
    }
    let body = ErrorBody {
        message: report.message,
        status_code: status.as_u16(),
        error: status.canonical_reason().unwrap_or("Error").to_owned(),
        timestamp: now_iso(),
        path: path.to_owned(),
        field_errors: report.field_errors.map(FieldErrorsBody),
        correlation_id: status.is_server_error().then(|| id.to_owned()),
    };
    let rendered = Json(body).into_response();
    let (rendered_parts, rendered_body) = rendered.into_parts();
    let mut response = Response::from_parts(parts, Body::empty());
    *response.body_mut() = rendered_body;
    for (name, value) in rendered_parts.headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::{middleware, Router};
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_gets_the_contract_500_not_a_dropped_connection() {
        async fn boom() -> &'static str {
            panic!("select * from secrets")
        }
        let app = Router::new()
            .route("/boom", get(boom))
            .layer(middleware::from_fn_with_state(
                ContextState {
                    request_timeout: Duration::from_secs(5),
                    metrics: Arc::default(),
                },
                request_context,
            ));
        let request = Request::builder().uri("/boom").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 500);
        assert!(response.headers().contains_key("x-correlation-id"));
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["message"], "Internal server error");
        assert!(!body.to_string().contains("secrets"), "{body}");
    }

    #[tokio::test]
    async fn a_request_over_the_time_limit_gets_503_with_the_error_body() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "too late"
                }),
            )
            .layer(middleware::from_fn_with_state(
                ContextState {
                    request_timeout: Duration::from_millis(20),
                    metrics: Arc::default(),
                },
                request_context,
            ));
        let request = Request::builder()
            .uri("/slow?x=1")
            .header("x-correlation-id", "slow-1")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["x-correlation-id"], "slow-1");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["message"], "Request timed out");
        assert_eq!(body["error"], "Service Unavailable");
        assert_eq!(body["path"], "/slow?x=1");
        assert_eq!(body["correlationId"], "slow-1");
    }
}
