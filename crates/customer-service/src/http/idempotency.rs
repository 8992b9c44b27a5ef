//! Idempotency-Key on create: the header read and checked, the stored key scoped by the
//! client, and the stored answer sent again (the store keeps it; see
//! `application/create_customer.rs`).

use axum::http::header::{CONTENT_TYPE, ETAG, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::application::StoredResponse;
use crate::domain::Customer;

use super::envelope;
use super::error::ApiError;

/// The 201 of a create as stored for its idempotency key (and sent through [`replay`]).
pub(super) fn created_answer(customer: &Customer) -> StoredResponse {
    let (status, Json(body)) = envelope::created(customer.snapshot());
    StoredResponse {
        status: status.as_u16(),
        body: serde_json::to_string(&body).unwrap_or_default(),
        location: Some(format!("/api/v1/customers/{}", customer.id)),
        etag: Some(format!("\"{}\"", customer.version)),
    }
}

/// A stored answer, sent again.
pub(super) fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED);
    let mut response = (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        stored.body,
    )
        .into_response();
    for (name, value) in [(LOCATION, stored.location), (ETAG, stored.etag)] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Subjects longer than this are stored as their SHA-256: every store's key column holds
/// the scoped key (MySQL's, `varchar(768)`, has the least room).
const MAX_STORED_SCOPE_CHARS: usize = 256;

/// The stored key of `key` sent by `subject`: scoped by the subject, so that two clients
/// choosing the same key never see each other's answer. A subject of more than
/// [`MAX_STORED_SCOPE_CHARS`] characters (tokens may carry any) is stored as
/// `sha256:<hex>`, which keeps the scoped key within 512 characters.
pub(super) fn scoped_key(subject: &str, key: &str) -> String {
    use sha2::Digest;
    if subject.chars().count() <= MAX_STORED_SCOPE_CHARS {
        return format!("{subject}\u{1f}{key}");
    }
    let hex: String = sha2::Sha256::digest(subject.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}\u{1f}{key}")
}

/// The `Idempotency-Key` header: 1–255 visible ASCII characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| {
            !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| {
            ApiError::field(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })
}
