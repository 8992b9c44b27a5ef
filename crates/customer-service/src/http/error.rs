//! [`ApiError`]: the one place where failures become HTTP statuses and the contract's error
//! body. Handlers and extractors return it; the request-context middleware adds the request's
//! path and correlation id, writes the body and logs the cause once.

use std::fmt::Write as _;

use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use crate::application::ApplicationError;
use crate::domain::{DomainError, FieldErrors};

/// Every failure a request can end in. Each variant's doc names its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with `fieldErrors`.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// 400: a body or parameter that could not be read at all.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401 with `WWW-Authenticate`: no usable bearer token. The message says why (missing,
    /// expired, …) and never quotes the token.
    #[error("unauthorized")]
    Unauthorized {
        message: String,
        invalid_token: bool,
    },
    /// 404 with this message ("Customer not found", "Cannot GET /x").
    #[error("not found")]
    NotFound(String),
    /// 409: the e-mail belongs to another customer.
    #[error("email already exists")]
    EmailTaken,
    /// 410: an Idempotency-Key whose customer was erased.
    #[error("gone")]
    Gone,
    /// 422: an Idempotency-Key reused with a different request.
    #[error("idempotency key conflict")]
    IdempotencyConflict,
    /// 412: `If-Match` does not name the current version.
    #[error("precondition failed")]
    PreconditionFailed,
    /// 429 with `Retry-After`: the client's write rate limit.
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    /// 413: body over the configured limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 503 with `Retry-After`: a resource of this instance is at its cap (event streams);
    /// the message says which.
    #[error("busy")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    /// 503: the request ran out of time.
    #[error("request timed out")]
    Timeout,
    /// 503: a dependency (the database) is down.
    #[error("dependency unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// 500: a bug. The body says nothing of the cause; the log does.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The most fields a 400 names: a body of thousands of unknown keys gets an answer of a
/// bounded size (its `message` ends "…and N more", N the fields left out).
pub(crate) const MAX_FIELD_ERRORS: usize = 20;

/// What [`ApiError::into_response`] leaves in the response extensions for the middleware
/// that knows the request (path, correlation id) to render and log.
#[derive(Debug, Clone)]
pub(crate) struct ErrorReport {
    pub message: String,
    pub field_errors: Option<FieldErrors>,
    /// The full cause chain of a 5xx, for the log only.
    pub cause: Option<String>,
}

/// The contract's error body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "message": "email must be an email, First name must be at least 2 characters",
    "statusCode": 400,
    "error": "Bad Request",
    "timestamp": "2026-11-30T09:15:27.403Z",
    "path": "/api/v1/customers",
    "fieldErrors": {"email": ["email must be an email"],
                    "firstName": ["First name must be at least 2 characters"]}
}))]
pub(crate) struct ErrorBody {
    pub message: String,
    pub status_code: u16,
    /// The status's reason phrase.
    pub error: String,
    pub timestamp: String,
    /// The request path with its query string.
    pub path: String,
    /// Messages per field; present on validation failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, Vec<String>>>)]
    pub field_errors: Option<FieldErrorsBody>,
    /// Present on 5xx answers, to quote when reporting the problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// [`FieldErrors`] as a JSON object, fields in the order they were found.
#[derive(Debug)]
pub(crate) struct FieldErrorsBody(pub FieldErrors);

impl Serialize for FieldErrorsBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (field, messages) in self.0.iter() {
            map.serialize_entry(field, messages)?;
        }
        map.end()
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::EmailTaken => StatusCode::CONFLICT,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Gone => StatusCode::GONE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout | ApiError::Unavailable(_) | ApiError::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A field-level validation failure of one field.
    pub fn field(field: &str, message: &str) -> ApiError {
        ApiError::Validation(FieldErrors::single(field, message))
    }

    fn report(self) -> ErrorReport {
        let (message, field_errors, cause) = match self {
            ApiError::Validation(mut errors) => {
                let dropped = errors.keep_first(MAX_FIELD_ERRORS);
                let message = match dropped {
                    0 => errors.to_string(),
                    n => format!("{errors}, …and {n} more"),
                };
                (message, Some(errors), None)
            }
            ApiError::BadRequest(message) | ApiError::NotFound(message) => (message, None, None),
            ApiError::Unauthorized { message, .. } | ApiError::Busy { message, .. } => {
                (message, None, None)
            }
            ApiError::EmailTaken => ("Email already exists".to_owned(), None, None),
            ApiError::PreconditionFailed => (
                "The customer has changed: its version does not match If-Match".to_owned(),
                None,
                None,
            ),
            ApiError::PayloadTooLarge => ("Request body is too large".to_owned(), None, None),
            ApiError::IdempotencyConflict => (
                "Idempotency-Key was already used with a different request".to_owned(),
                None,
                None,
            ),
            ApiError::Gone => ("This request's customer was erased".to_owned(), None, None),
            ApiError::TooManyRequests { retry_after_secs } => (
                format!("Too many requests: retry in {retry_after_secs} s"),
                None,
                None,
            ),
            ApiError::Timeout => ("Request timed out".to_owned(), None, None),
            ApiError::Unavailable(cause) => (
                "Service temporarily unavailable, please retry".to_owned(),
                None,
                Some(chain(&*cause)),
            ),
            ApiError::Internal(cause) => (
                "Internal server error".to_owned(),
                None,
                Some(chain(&*cause)),
            ),
        };
        ErrorReport {
            message,
            field_errors,
            cause,
        }
    }
}

/// `error: cause: cause…`, the whole chain on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = status.into_response();
        if let ApiError::Unauthorized {
            message,
            invalid_token,
        } = &self
        {
            // RFC 6750: the scheme and realm, and for a bad token the error and why.
            let challenge = if *invalid_token {
                format!(
                    "Bearer realm=\"customer-service\", error=\"invalid_token\", error_description=\"{}\"",
                    message.replace('"', "'")
                )
            } else {
                "Bearer realm=\"customer-service\"".to_owned()
            };
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
        }
        if let ApiError::TooManyRequests { retry_after_secs }
        | ApiError::Busy {
            retry_after_secs, ..
        } = &self
        {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response.extensions_mut().insert(self.report());
        response
    }
}

impl From<ApplicationError> for ApiError {
    fn from(error: ApplicationError) -> Self {
        match error {
            ApplicationError::Domain(DomainError::Validation(errors)) => {
                ApiError::Validation(errors)
            }
            ApplicationError::NotFound => ApiError::NotFound("Customer not found".to_owned()),
            ApplicationError::EmailTaken => ApiError::EmailTaken,
            ApplicationError::VersionMismatch => ApiError::PreconditionFailed,
            ApplicationError::IdempotencyConflict => ApiError::IdempotencyConflict,
            ApplicationError::IdempotentCustomerErased => ApiError::Gone,
            ApplicationError::Unavailable(cause) => ApiError::Unavailable(Box::new(cause)),
            ApplicationError::Internal(cause) => ApiError::Internal(Box::new(cause)),
        }
    }
}
