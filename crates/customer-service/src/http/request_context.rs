//! The request context: gives every request its correlation id and span, renders
//! [`ApiError`] bodies (which need the request's path and id) and logs each request once,
//! with the cause of any 5xx. The plumbing around it is tower-http's (see [`super::router`]);
//! this is where its bare answers get the contract's statuses and bodies.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::Instrument;

use super::envelope::now_iso;
use super::error::{ApiError, ErrorBody, ErrorReport, FieldErrorsBody};
use super::metrics::HttpMetrics;

pub(crate) static CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Longest client-supplied correlation id we echo; longer ones are replaced.
const MAX_CORRELATION_ID_CHARS: usize = 128;

fn usable_correlation_id(id: &[u8]) -> bool {
    (1..=MAX_CORRELATION_ID_CHARS).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The request's correlation id, in the request extensions for handlers.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Marks a response that the router produced (a handler or a fallback). An error status
/// without it comes from the plumbing around the router: tower-http's time limit (503) or
/// body limit (413), which answer with bare bodies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered;

pub(crate) fn mark_answered(mut response: Response) -> Response {
    response.extensions_mut().insert(Answered);
    response
}

/// Drops a client's `X-Correlation-ID` that we would not echo, so that tower-http's
/// request-id layer makes a new one. Usable: 1 to 128 characters of `[A-Za-z0-9._:-]` (a
/// UUID, a trace id, `req-42:retry.1`). Anything else could pose as fields in a log line or
/// smuggle text into the permanent event log; it is dropped unlogged.
pub(crate) fn drop_unusable_correlation_id(mut request: Request) -> Request {
    let usable = request
        .headers()
        .get(&CORRELATION_ID)
        .is_none_or(|value| usable_correlation_id(value.as_bytes()));
    if !usable {
        request.headers_mut().remove(&CORRELATION_ID);
    }
    request
}

pub(crate) async fn request_context(
    State(metrics): State<std::sync::Arc<HttpMetrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Set by tower-http's request-id layer outside this one: the client's or a new UUID.
    let id = request
        .headers()
        .get(&CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("<unmatched>", MatchedPath::as_str);
    // The caller's W3C trace context: the request's trace continues it (when traces are
    // exported); a well-formed one is also logged with the span.
    let caller = crate::telemetry::caller_context(request.headers());
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .filter(|_| caller.is_some());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        correlation_id = %id,
        traceparent,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(caller) = caller {
        crate::telemetry::continue_trace(&span, caller);
    }

    // Decided here, where the route is known, rather than in a layer of its own around
    // the routes (one more boxed service cloned for every request).
    let scope = super::replica::scope_of(&request);

    async move {
        let answer = next.run(request);
        let mut response = match scope {
            Some(scope) => crate::application::reading(scope, answer).await,
            None => answer.await,
        };
        let answered = response.extensions_mut().remove::<Answered>().is_some();
        let report = response.extensions_mut().remove::<ErrorReport>();
        if let Some(report) = report {
            response = render_error(response, report, &path, &id);
        } else if !answered {
            response = match response.status() {
                StatusCode::SERVICE_UNAVAILABLE => {
                    with_body_of(response, ApiError::Timeout, &path, &id)
                }
                StatusCode::PAYLOAD_TOO_LARGE => {
                    with_body_of(response, ApiError::PayloadTooLarge, &path, &id)
                }
                // tower-http answers a CORS preflight itself with a 200; the contract says 204.
                StatusCode::OK if method == Method::OPTIONS => {
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    response
                }
                _ => response,
            };
        }
        secure_headers(&path, response.headers_mut());
        let status = response.status();
        let span = tracing::Span::current();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
        crate::telemetry::answer_trace(&span, response.headers_mut());
        let elapsed = started.elapsed();
        metrics.observe(method.as_str(), route, status, elapsed);
        let duration_ms = elapsed.as_millis() as u64;
        if status.is_server_error() {
            tracing::warn!(http.status = status.as_u16(), duration_ms, "request failed");
        } else {
            tracing::info!(
                http.status = status.as_u16(),
                duration_ms,
                "request completed"
            );
        }
        response
    }
    .instrument(span)
    .await
}

/// `X-Content-Type-Options: nosniff` on every answer; `Cache-Control: no-store` on every
/// answer under `/api/v1/` (replacing the `no-cache` of an event stream): customers, events
/// and their errors carry personal data (an e-mail in a path, in an event), and the rest
/// (health, counts) is only true at the moment it is asked.
fn secure_headers(path: &str, headers: &mut axum::http::HeaderMap) {
    use axum::http::header::{CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
    use axum::http::HeaderValue;
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if path.starts_with("/api/v1/") {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The contract's answer to a handler's panic: a 500 whose body (rendered by the request
/// context) says nothing of the panic; the panic's message is logged as its cause.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a handler panicked".to_owned());
    ApiError::Internal(what.into()).into_response()
}

/// A plumbing layer's bare answer with `error`'s body: its status and headers (CORS's
/// among them) stay.
fn with_body_of(response: Response, error: ApiError, path: &str, id: &str) -> Response {
    match error
        .into_response()
        .extensions_mut()
        .remove::<ErrorReport>()
    {
        Some(report) => render_error(response, report, path, id),
        None => response,
    }
}

/// Query parameters whose values an error body's `path` never repeats (a token sent in the
/// URL would otherwise come back in a body that clients log).
const CREDENTIAL_PARAMETERS: [&str; 5] = ["access_token", "token", "api_key", "jwt", "password"];

/// `path` with the value of every credential-named query parameter (any case) replaced by
/// `[redacted]`; the rest as sent.
fn redact_credentials(path: &str) -> std::borrow::Cow<'_, str> {
    let Some((route, query)) = path.split_once('?') else {
        return path.into();
    };
    let secret = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        CREDENTIAL_PARAMETERS
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
    };
    if !query
        .split('&')
        .any(|pair| pair.contains('=') && secret(pair))
    {
        return path.into();
    }
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => format!("{name}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{route}?{}", query.join("&")).into()
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
        path: redact_credentials(path).into_owned(),
        field_errors: report.field_errors.map(FieldErrorsBody),
        correlation_id: status.is_server_error().then(|| id.to_owned()),
    };
    let rendered = Json(body).into_response();
    let (rendered_parts, rendered_body) = rendered.into_parts();
    let mut response = Response::from_parts(parts, Body::empty());
    // The length of the body being replaced, if one was set, is not this body's.
    response
        .headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    *response.body_mut() = rendered_body;
    for (name, value) in rendered_parts.headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;
    use crate::http::{with_layers, RouterOptions};

    fn layered(routes: Router, request_timeout: Duration) -> Router {
        let options = RouterOptions {
            cors_origins: vec!["http://admin.test".to_owned()],
            request_timeout,
            body_limit_bytes: 16,
            authenticator: None,
            rate_limiter: None,
        };
        with_layers(routes, &options, Arc::default())
    }

    async fn body_of(response: Response) -> serde_json::Value {
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_the_contract_500_not_a_dropped_connection() {
        async fn boom() -> &'static str {
            panic!("select * from secrets")
        }
        let app = layered(
            Router::new().route("/boom", get(boom)),
            Duration::from_secs(5),
        );
        let request = Request::builder().uri("/boom").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 500);
        let id = response.headers()["x-correlation-id"].clone();
        assert_eq!(id.len(), 36, "a new UUID");
        let body = body_of(response).await;
        assert_eq!(body["message"], "Internal server error");
        assert_eq!(body["correlationId"], id.to_str().unwrap());
        assert!(!body.to_string().contains("secrets"), "{body}");
    }

    #[tokio::test]
    async fn a_request_over_the_time_limit_gets_503_with_the_error_body() {
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "too late"
            }),
        );
        let app = layered(slow, Duration::from_millis(20));
        let request = Request::builder()
            .uri("/slow?x=1")
            .header("x-correlation-id", "slow-1")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["x-correlation-id"], "slow-1");
        let body = body_of(response).await;
        assert_eq!(body["message"], "Request timed out");
        assert_eq!(body["error"], "Service Unavailable");
        assert_eq!(body["statusCode"], 503);
        assert_eq!(body["path"], "/slow?x=1");
        assert_eq!(body["correlationId"], "slow-1");
    }

    #[tokio::test]
    async fn a_handler_own_503_keeps_its_body() {
        let busy = Router::new().route(
            "/busy",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"down\"}") }),
        );
        let app = layered(busy, Duration::from_secs(5));
        let request = Request::builder().uri("/busy").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(body_of(response).await["status"], "down");
    }

    #[tokio::test]
    async fn a_declared_body_over_the_limit_gets_413_with_the_error_body() {
        let echo = Router::new().route("/echo", axum::routing::post(|body: String| async { body }));
        let app = layered(echo, Duration::from_secs(5));
        let request = Request::builder()
            .method("POST")
            .uri("/echo")
            .header("content-length", "17")
            .header("origin", "http://admin.test")
            .body(Body::from("x".repeat(17)))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 413);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "http://admin.test",
            "a browser can read the 413"
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = body_of(response).await;
        assert_eq!(body["message"], "Request body is too large");
        assert_eq!(body["path"], "/echo");
    }

    #[test]
    fn credentials_in_the_query_are_redacted() {
        for (path, expected) in [
            ("/a", "/a"),
            ("/a?page=2&x", "/a?page=2&x"),
            (
                "/a?access_token=eyJ.x.y&page=2",
                "/a?access_token=[redacted]&page=2",
            ),
            (
                "/a?Token=1&API_KEY=2&jwt=3&password=4&tokens=5",
                "/a?Token=[redacted]&API_KEY=[redacted]&jwt=[redacted]&password=[redacted]&tokens=5",
            ),
        ] {
            assert_eq!(redact_credentials(path), expected);
        }
    }

    #[tokio::test]
    async fn an_unusable_correlation_id_is_replaced() {
        let app = layered(
            Router::new().route("/", get(|| async { "ok" })),
            Duration::from_secs(5),
        );
        let spoof = "abc http.response.status_code=500} x";
        for bad in [
            "",
            &"x".repeat(129),
            spoof,
            "a/b",
            "a\"b",
            "é",
            "a,b",
            "{x}",
        ] {
            let request = Request::builder()
                .uri("/")
                .header("x-correlation-id", bad)
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.headers()["x-correlation-id"].len(), 36, "{bad:?}");
        }
        for good in [
            "a",
            "req-42:retry.1_x",
            &"x".repeat(128),
            "0af7651916cd43dd8448eb211c80319c",
        ] {
            let request = Request::builder()
                .uri("/")
                .header("x-correlation-id", good)
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.headers()["x-correlation-id"], good);
        }
    }
}
