//! CORS for the origins in `FRONTEND_URL`: the origin is echoed only when allowed, with
//! credentials; preflights are answered 204 here.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const ALLOWED_METHODS: &str = "GET, POST, PATCH, DELETE, OPTIONS";
const ALLOWED_HEADERS: &str =
    "Content-Type, Authorization, X-Correlation-ID, If-Match, If-None-Match, Idempotency-Key";
const EXPOSED_HEADERS: &str = "X-Correlation-ID, ETag, Location";
/// Browsers may cache a preflight answer for a day.
const PREFLIGHT_MAX_AGE_SECS: &str = "86400";

pub(crate) async fn cors(
    State(origins): State<Arc<[String]>>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = request
        .headers()
        .get(ORIGIN)
        .filter(|origin| origins.iter().any(|o| origin.as_bytes() == o.as_bytes()))
        .cloned();
    let is_preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD);

    let mut response = if is_preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if allowed.is_some() {
            let headers = response.headers_mut();
            headers.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            let requested = request
                .headers()
                .get(ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned();
            headers.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                requested.unwrap_or(HeaderValue::from_static(ALLOWED_HEADERS)),
            );
            headers.insert(
                ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
            );
        }
        response
    } else {
        let mut response = next.run(request).await;
        if allowed.is_some() {
            response.headers_mut().insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
        response
    };
    allow(response.headers_mut(), allowed);
    response
}

fn allow(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    headers.append(VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}
