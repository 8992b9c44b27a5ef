//! Erasure (GDPR): the personal data in a stored envelope replaced by [`ERASED`], the shape
//! kept, so erased events still read (and validate) as their type.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::json::{self, Json};

/// What erased text fields read.
pub const ERASED: &str = "[erased]";

/// Text fields that hold personal data, wherever a customer appears (`data`,
/// `data.previousData`). `address` is personal too and becomes `null`.
const PERSONAL_TEXT: [&str; 6] = [
    "email",
    "firstName",
    "lastName",
    "fullName",
    "phone",
    "dateOfBirth",
];

/// The envelope `json` with its personal data erased, every key where it was.
///
/// An envelope whose `data` cannot be read (nested beyond [`json::MAX_DEPTH`], or not an
/// object) is erased whole: its `data` becomes [`ERASED`], every other key is kept. `Err`
/// only if the text is not a JSON object at all; the caller must then replace it anyway.
pub fn erase_envelope(text: &str) -> Result<String, serde_json::Error> {
    if let Ok(mut envelope) = json::from_str::<Json>(text) {
        if let Some(data @ Json::Object(_)) = envelope.get_mut("data") {
            erase_customer(data);
            if let Some(previous @ Json::Object(_)) = data.get_mut("previousData") {
                erase_customer(previous);
            }
            if let Some(Json::Object(changes)) = data.get_mut("changes") {
                for (field, change) in changes.iter_mut() {
                    if is_personal(field) {
                        for side in ["old", "new"] {
                            if let Some(value) = change.get_mut(side) {
                                erase_value(field, value);
                            }
                        }
                    }
                }
            }
            return Ok(envelope.to_json());
        }
    }
    erase_whole(text)
}

fn is_personal(field: &str) -> bool {
    PERSONAL_TEXT.contains(&field) || field == "address"
}

fn erase_customer(customer: &mut Json) {
    if let Json::Object(fields) = customer {
        for (field, value) in fields.iter_mut() {
            if is_personal(field) {
                erase_value(field, value);
            }
        }
    }
}

/// A personal value erased: text becomes [`ERASED`], an address `null`, `null` stays.
fn erase_value(field: &str, value: &mut Json) {
    if value.is_null() {
        return;
    }
    *value = if field == "address" {
        Json::Scalar(Value::Null)
    } else {
        Json::Scalar(Value::String(ERASED.to_owned()))
    };
}

/// The envelope with `data` replaced by [`ERASED`] and its other keys kept, for an envelope
/// whose `data` cannot be read. `data` is skipped without recursion, so its depth does not
/// matter; the other keys are read with serde_json's usual limit.
fn erase_whole(text: &str) -> Result<String, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let envelope = deserializer.deserialize_map(WholeErased)?;
    deserializer.end()?;
    Ok(envelope.to_json())
}

struct WholeErased;

impl<'de> Visitor<'de> for WholeErased {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == "data" {
                map.next_value::<IgnoredAny>()?;
                Json::Scalar(Value::String(ERASED.to_owned()))
            } else {
                map.next_value::<Json>()?
            };
            entries.push((key, value));
        }
        if !entries.iter().any(|(key, _)| key == "data") {
            return Err(de::Error::missing_field("data"));
        }
        Ok(Json::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_personal_field_is_erased_and_nothing_else() {
        let updated = json!({
            "eventType": "CustomerUpdated", "eventId": "e", "occurredOn": "t",
            "data": {"customerId": 7, "email": "a@b.co", "firstName": "Ann", "lastName": "Lim",
                     "fullName": "Ann Lim", "phone": null, "isActive": true,
                     "dateOfBirth": "1990-01-01",
                     "address": {"street": "1 A St", "city": "B", "state": null, "zipCode": null, "country": "C"},
                     "preferences": {"newsletter": true}, "updatedAt": "t",
                     "previousData": {"id": 7, "email": "a@b.co", "firstName": "Ann", "lastName": "Lee",
                                      "fullName": "Ann Lee", "phone": "+1 555", "isActive": true,
                                      "dateOfBirth": null, "address": null, "preferences": null,
                                      "createdAt": "t", "updatedAt": "t", "version": 1},
                     "changes": {"lastName": {"old": "Lee", "new": "Lim"},
                                 "phone": {"old": "+1 555", "new": null},
                                 "isActive": {"old": false, "new": true}}},
            "metadata": {"eventId": "e", "eventType": "CustomerUpdated", "aggregateId": 7}
        });
        let erased: Value =
            serde_json::from_str(&erase_envelope(&updated.to_string()).unwrap()).unwrap();
        let data = &erased["data"];
        for field in ["email", "firstName", "lastName", "fullName", "dateOfBirth"] {
            assert_eq!(data[field], ERASED, "{field}");
            let previous = &data["previousData"][field];
            assert!(previous.is_null() || previous == ERASED, "{field}");
        }
        assert_eq!(data["phone"], Value::Null, "null stays null");
        assert_eq!(data["previousData"]["phone"], ERASED);
        assert_eq!(data["address"], Value::Null);
        assert_eq!(
            data["changes"]["lastName"],
            json!({"old": ERASED, "new": ERASED})
        );
        assert_eq!(
            data["changes"]["phone"],
            json!({"old": ERASED, "new": null})
        );
        assert_eq!(
            data["changes"]["isActive"],
            json!({"old": false, "new": true})
        );
        assert_eq!(
            data["preferences"],
            json!({"newsletter": true}),
            "not personal"
        );
        assert_eq!(erased["metadata"], updated["metadata"]);
        let text = erased.to_string();
        for secret in ["a@b.co", "Ann", "Lim", "Lee", "555", "1 A St", "1990"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn keys_keep_their_order() {
        let stored = r#"{"eventType":"CustomerDeleted","eventId":"e","occurredOn":"t","data":{"customerId":7,"email":"a@b.co","fullName":"Ann Lee","deletedAt":"t"},"metadata":{"eventId":"e","eventType":"CustomerDeleted","occurredOn":"t","version":"1.0","aggregateId":7,"sequence":2,"correlationId":"c","source":"customer-service"}}"#;
        assert_eq!(
            erase_envelope(stored).unwrap(),
            stored.replace("a@b.co", ERASED).replace("Ann Lee", ERASED)
        );
    }

    #[test]
    fn an_unreadable_data_is_erased_whole_keeping_the_other_keys() {
        let deep = format!("{}1{}", r#"{"x":"#.repeat(300), "}".repeat(300));
        let stored = format!(
            r#"{{"eventType":"CustomerCreated","eventId":"e","occurredOn":"t","data":{{"email":"a@b.co","preferences":{deep}}},"metadata":{{"eventId":"e","sequence":1}}}}"#
        );
        assert_eq!(
            erase_envelope(&stored).unwrap(),
            r#"{"eventType":"CustomerCreated","eventId":"e","occurredOn":"t","data":"[erased]","metadata":{"eventId":"e","sequence":1}}"#
        );
        let not_an_object = r#"{"eventType":"CustomerCreated","data":"Ann","metadata":{}}"#;
        assert_eq!(
            erase_envelope(not_an_object).unwrap(),
            r#"{"eventType":"CustomerCreated","data":"[erased]","metadata":{}}"#
        );
        assert!(erase_envelope("not json").is_err());
        assert!(erase_envelope(r#"{"eventType":"x"}"#).is_err());
    }
}
