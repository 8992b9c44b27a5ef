//! Reading stored envelopes whatever their depth, and rewriting them without reordering keys.
//!
//! serde_json refuses input nested deeper than 128 levels. An envelope wraps the customer two
//! or three levels down (`data`, `data.previousData`), so a `preferences` object that the HTTP
//! parser accepted could make an event that serde_json's defaults cannot read back. Readers of
//! stored events use [`from_str`], which allows [`MAX_DEPTH`] levels (after a cheap
//! non-recursive scan, so the recursion stays bounded). [`Json`] is a JSON tree that keeps
//! each object's keys in their order, so an envelope rewritten through it (erasure) keeps the
//! contract's key order byte for byte; `serde_json::Value` would sort them.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// The deepest nesting [`from_str`] reads: far above what any build of the service wrote (the
/// HTTP parser stops at 128 levels, and `preferences` is now limited to 32), and low enough
/// that the recursive descent fits any thread's stack.
pub const MAX_DEPTH: usize = 256;

/// How deeply arrays and objects nest in `json` (0 for a scalar), counted without recursion;
/// brackets inside strings do not count. Malformed input gets a best-effort count, and
/// the parser reports it.
pub fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses `json` as `T` like `serde_json::from_str`, but reads up to [`MAX_DEPTH`] levels
/// of nesting instead of 128.
pub fn from_str<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, serde_json::Error> {
    let depth = nesting_depth(json);
    if depth > MAX_DEPTH {
        return Err(de::Error::custom(format_args!(
            "nested {depth} levels deep, more than the {MAX_DEPTH} this reader allows"
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    deserializer.disable_recursion_limit();
    let value = T::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// A JSON value whose objects keep their keys in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    /// A string, number, boolean or `null`.
    Scalar(Value),
}

impl Json {
    /// The value under `key`, if this is an object that has it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Scalar(Value::Null))
    }

    /// Compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a JSON tree always serializes")
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Scalar(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Scalar(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Scalar(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Scalar(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Scalar(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Scalar(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Scalar(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Scalar(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries: Vec<(String, Json)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            // A repeated key: the last one wins, in the first one's place (as serde_json).
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key, value)),
            }
        }
        Ok(Json::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn depth_counts_containers_but_not_brackets_in_strings() {
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth(r#"{"a":[1,{"b":2}],"c":{}}"#), 3);
        assert_eq!(nesting_depth(r#"{"a":"[[[{{{\"[["}"#), 1);
        assert_eq!(nesting_depth(&nested(200)), 200);
    }

    #[test]
    fn deeper_than_serde_jsons_limit_reads_up_to_the_maximum() {
        assert!(serde_json::from_str::<Value>(&nested(200)).is_err());
        let read: Value = from_str(&nested(MAX_DEPTH)).unwrap();
        assert_eq!(read.to_string(), nested(MAX_DEPTH));
        let error = from_str::<Value>(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(error.to_string().contains("257 levels deep"), "{error}");
        assert!(from_str::<Value>("{} x").is_err(), "trailing input");
    }

    #[test]
    fn a_tree_keeps_key_order_and_values_byte_for_byte() {
        let text = r#"{"z":1,"a":[true,null,"s\"",-2.5,{"y":{},"b":[]}],"m":18446744073709551615}"#;
        let tree: Json = from_str(text).unwrap();
        assert_eq!(tree.to_json(), text);
        let repeated: Json = from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert_eq!(repeated.to_json(), r#"{"b":3,"a":2}"#);
    }
}
