//! Customer preferences: a free JSON object with four typed keys, at most 2000 characters
//! and 32 levels deep.

use serde_json::{Map, Value};

use super::validation::{char_len, FieldErrors};

/// A validated preferences object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences(Map<String, Value>);

pub const PREFERENCES_SIZE_MESSAGE: &str = "Preferences must not exceed 2000 characters";
pub const PREFERENCES_DEPTH_MESSAGE: &str =
    "Preferences must not be nested more than 32 levels deep";
const MAX_PREFERENCES_CHARS: usize = 2000;
/// Objects and arrays nested in `preferences`, itself included. Every event that carries
/// the customer wraps it two or three levels deeper, and every reader of the log (history,
/// `asOf`, `events verify`, erasure, consumers using serde_json's default 128-level limit)
/// must read what a write accepted.
const MAX_PREFERENCES_DEPTH: usize = 32;
const STRING_KEYS: [&str; 3] = ["company", "industry", "preferredContact"];

impl Preferences {
    /// Validates the `preferences` object of a request; type failures go to
    /// `preferences.<key>`, the size limit to `preferences`.
    pub fn parse(value: &Value, errors: &mut FieldErrors) -> Option<Preferences> {
        let Some(object) = value.as_object() else {
            errors.add("preferences", "preferences must be an object");
            return None;
        };
        let mut is_valid = true;
        for key in STRING_KEYS {
            if object
                .get(key)
                .is_some_and(|v| !v.is_string() && !v.is_null())
            {
                errors.add(
                    format!("preferences.{key}"),
                    format!("{key} must be a string"),
                );
                is_valid = false;
            }
        }
        if object
            .get("newsletter")
            .is_some_and(|v| !v.is_boolean() && !v.is_null())
        {
            errors.add(
                "preferences.newsletter",
                "newsletter must be a boolean value",
            );
            is_valid = false;
        }
        if depth(value) > MAX_PREFERENCES_DEPTH {
            errors.add("preferences", PREFERENCES_DEPTH_MESSAGE);
            // Not measured further: the size check below would serialize it all again.
            return None;
        }
        // The original measured JSON.stringify(preferences).length: compact JSON.
        if char_len(&value.to_string()) > MAX_PREFERENCES_CHARS {
            errors.add("preferences", PREFERENCES_SIZE_MESSAGE);
            is_valid = false;
        }
        is_valid.then(|| Preferences(object.clone()))
    }

    pub fn from_stored(object: Map<String, Value>) -> Preferences {
        Preferences(object)
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// Nesting of objects and arrays in `value` (a scalar is 0). The request body parser stops
/// at 128 levels, which bounds this recursion.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Preferences, FieldErrors> {
        let mut errors = FieldErrors::new();
        Preferences::parse(&value, &mut errors).ok_or(errors)
    }

    #[test]
    fn typed_keys_and_free_keys_are_kept() {
        let p = parse(json!({"company": "Acme", "newsletter": true, "theme": "dark"})).unwrap();
        assert_eq!(p.as_map()["theme"], json!("dark"));
    }

    #[test]
    fn typed_keys_with_the_wrong_type_are_reported() {
        let errors = parse(json!({"company": 1, "newsletter": "yes"})).unwrap_err();
        assert_eq!(
            errors.of("preferences.company"),
            ["company must be a string"]
        );
        assert_eq!(
            errors.of("preferences.newsletter"),
            ["newsletter must be a boolean value"]
        );
    }

    #[test]
    fn two_thousand_serialized_characters_is_the_maximum() {
        // {"note":"…"} is 11 characters around the value.
        assert!(parse(json!({"note": "x".repeat(1989)})).is_ok());
        let errors = parse(json!({"note": "x".repeat(1990)})).unwrap_err();
        assert_eq!(errors.of("preferences"), [PREFERENCES_SIZE_MESSAGE]);
    }

    #[test]
    fn thirty_two_levels_is_the_deepest() {
        let nested = |levels: usize| {
            (1..levels).fold(json!({"leaf": true}), |inner, _| json!({ "n": inner }))
        };
        assert_eq!(depth(&nested(32)), 32);
        assert!(parse(nested(32)).is_ok());
        let errors = parse(nested(33)).unwrap_err();
        assert_eq!(errors.of("preferences"), [PREFERENCES_DEPTH_MESSAGE]);
        // Arrays count as levels too.
        assert!(parse(json!({ "a": [[nested(29)]] })).is_ok());
        let errors = parse(json!({ "a": [[nested(30)]] })).unwrap_err();
        assert_eq!(errors.of("preferences"), [PREFERENCES_DEPTH_MESSAGE]);
    }

    #[test]
    fn a_non_object_is_rejected() {
        let errors = parse(json!([1, 2])).unwrap_err();
        assert_eq!(errors.of("preferences"), ["preferences must be an object"]);
    }
}
