//! Our extractors: they reject bad input with [`ApiError`] (the contract's body) instead of
//! axum's plain-text rejections.

use axum::body::Bytes;
use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_TYPE, IF_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use crate::application::Precondition;
use crate::domain::CustomerId;

use super::error::ApiError;

/// The query string as name → value (the last of a repeated name). One that cannot be read
/// is the contract's 400, not axum's plain-text rejection.
#[derive(Debug)]
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(params) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest("The query string could not be read".to_owned()))?;
        Ok(QueryParams(params))
    }
}

/// A request body that is a JSON object, sent as `application/json` (or `…+json`).
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !has_json_content_type(req.headers()) {
            return Err(ApiError::BadRequest(
                "Content-Type must be application/json".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("The request body could not be read".to_owned())
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(object)) => Ok(JsonObject(object)),
            Ok(_) => Err(ApiError::BadRequest(
                "Request body must be a JSON object".to_owned(),
            )),
            // serde_json's syntax messages name a position, never the input itself.
            Err(error) => Err(ApiError::BadRequest(format!(
                "Malformed JSON in request body: {error}"
            ))),
        }
    }
}

fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `:id` route parameter: a positive integer.
#[derive(Debug, Clone, Copy)]
pub struct CustomerIdParam(pub CustomerId);

/// The original's ParseIntPipe message.
const ID_MESSAGE: &str = "Validation failed (numeric string is expected)";

impl<S: Send + Sync> FromRequestParts<S> for CustomerIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::field("id", ID_MESSAGE))?;
        parse_id(&raw)
            .and_then(CustomerId::new)
            .map(CustomerIdParam)
            .ok_or_else(|| ApiError::field("id", ID_MESSAGE))
    }
}

/// The original's integer pipe: `-?digits` and nothing else (no `+`, spaces or fraction);
/// leading zeros are accepted, as there.
fn parse_id(raw: &str) -> Option<i64> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// The `If-Match` precondition, if the request has one: `*`, or the strong ETag
/// `"<version>"`. Weak tags never match (If-Match compares strongly), and neither do lists or
/// unreadable values: the write then fails with 412 rather than ignoring the condition.
pub fn precondition(headers: &HeaderMap) -> Option<Precondition> {
    let value = headers.get(IF_MATCH)?;
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Some(Precondition::Exists);
    }
    let version = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<i64>().ok());
    Some(version.map_or(Precondition::Never, Precondition::Version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn if_match_takes_a_star_or_a_strong_version_tag() {
        assert_eq!(precondition(&HeaderMap::new()), None);
        assert_eq!(
            precondition(&with(IF_MATCH, "*")),
            Some(Precondition::Exists)
        );
        assert_eq!(
            precondition(&with(IF_MATCH, "\"3\"")),
            Some(Precondition::Version(3))
        );
        assert_eq!(
            precondition(&with(IF_MATCH, "W/\"3\"")),
            Some(Precondition::Never)
        );
        assert_eq!(
            precondition(&with(IF_MATCH, "3")),
            Some(Precondition::Never)
        );
    }

    #[test]
    fn ids_are_optionally_signed_digits_only() {
        assert_eq!(parse_id("1"), Some(1));
        assert_eq!(parse_id("01"), Some(1));
        assert_eq!(parse_id("-3"), Some(-3));
        for bad in ["+1", " 1", "1 ", "1.0", "", "-", "1e3", "0x1", "١"] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(has_json_content_type(&with(
            CONTENT_TYPE,
            "application/json; charset=utf-8"
        )));
        assert!(has_json_content_type(&with(
            CONTENT_TYPE,
            "Application/JSON"
        )));
        assert!(has_json_content_type(&with(
            CONTENT_TYPE,
            "application/merge-patch+json"
        )));
        assert!(!has_json_content_type(&with(CONTENT_TYPE, "text/plain")));
        assert!(!has_json_content_type(&HeaderMap::new()));
    }
}
