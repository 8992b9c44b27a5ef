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
        let duplicate = std::cell::RefCell::new(None);
        let mut reader = serde_json::Deserializer::from_slice(&bytes);
        let parsed = serde::de::DeserializeSeed::deserialize(
            Unique {
                path: String::new(),
                duplicate: &duplicate,
            },
            &mut reader,
        )
        .and_then(|value| reader.end().map(|()| value));
        match parsed {
            Ok(Value::Object(object)) => Ok(JsonObject(object)),
            Ok(_) => Err(ApiError::BadRequest(
                "Request body must be a JSON object".to_owned(),
            )),
            Err(_) if duplicate.borrow().is_some() => {
                let key = duplicate.take().unwrap_or_default();
                let message = format!("property {key} is given more than once");
                Err(ApiError::field(&key, &message))
            }
            // serde_json's syntax messages name a position, never the input itself.
            Err(error) => Err(ApiError::BadRequest(format!(
                "Malformed JSON in request body: {error}"
            ))),
        }
    }
}

/// A JSON value whose objects may not repeat a key. serde_json keeps the last of repeated
/// keys, where a gateway or firewall in front of us may read the first: the two would see
/// different requests. The first repeated key (dotted from the top: `address.city`) is left
/// in `duplicate` and the parse fails.
struct Unique<'a> {
    path: String,
    duplicate: &'a std::cell::RefCell<Option<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Unique<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Unique<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Unique {
            path: self.path.clone(),
            duplicate: self.duplicate,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if object.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(path);
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(Unique {
                path,
                duplicate: self.duplicate,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
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

/// The `:email` route parameter, percent-decoded. One that does not decode to UTF-8 (`%FF`)
/// is the contract's 400 on the field, not axum's plain-text rejection.
#[derive(Debug)]
pub struct EmailParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for EmailParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(email)| EmailParam(email))
            .map_err(|_| ApiError::field("email", crate::domain::EMAIL_MESSAGE))
    }
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

    async fn body_of(json: &str) -> Result<Map<String, Value>, ApiError> {
        let request = Request::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(json.to_owned()))
            .unwrap();
        JsonObject::from_request(request, &()).await.map(|o| o.0)
    }

    #[tokio::test]
    async fn a_repeated_key_is_a_400_naming_it_at_any_depth() {
        let read = body_of(r#"{"a":[1,{"b":null}],"c":{"d":1.5,"e":"x"},"f":true}"#)
            .await
            .unwrap();
        assert_eq!(
            Value::Object(read),
            serde_json::json!({"a":[1,{"b":null}],"c":{"d":1.5,"e":"x"},"f":true})
        );
        for (json, field) in [
            (r#"{"email":"a@b.co","email":"c@d.co"}"#, "email"),
            (r#"{"address":{"city":"A","city":"B"}}"#, "address.city"),
            (r#"{"p":[{"x":1,"x":2}]}"#, "p.x"),
        ] {
            match body_of(json).await {
                Err(ApiError::Validation(errors)) => assert_eq!(
                    errors.of(field),
                    [format!("property {field} is given more than once")],
                    "{json}"
                ),
                other => panic!("{json}: {other:?}"),
            }
        }
        // Still malformed JSON where it is, after a repeated key or not.
        assert!(matches!(
            body_of(r#"{"a":1} x"#).await,
            Err(ApiError::BadRequest(m)) if m.starts_with("Malformed JSON")
        ));
    }

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
