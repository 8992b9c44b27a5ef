//! Erasure (GDPR): the personal data in a stored envelope replaced by [`ERASED`], the shape
//! kept, so erased events still read (and validate) as their type.

use serde_json::{Map, Value};

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

/// The envelope `json` with its personal data erased; `None` if it is not an envelope.
pub fn erase_envelope(json: &str) -> Option<String> {
    let mut envelope: Value = serde_json::from_str(json).ok()?;
    let data = envelope.get_mut("data")?.as_object_mut()?;
    erase_customer(data);
    if let Some(Value::Object(previous)) = data.get_mut("previousData") {
        erase_customer(previous);
    }
    if let Some(Value::Object(changes)) = data.get_mut("changes") {
        for (field, change) in changes.iter_mut() {
            let personal = PERSONAL_TEXT.contains(&field.as_str()) || field == "address";
            if let (true, Value::Object(change)) = (personal, change) {
                for side in ["old", "new"] {
                    if let Some(value) = change.get_mut(side) {
                        *value = erased_value(field, value);
                    }
                }
            }
        }
    }
    Some(envelope.to_string())
}

fn erase_customer(customer: &mut Map<String, Value>) {
    for (field, value) in customer.iter_mut() {
        if PERSONAL_TEXT.contains(&field.as_str()) || field == "address" {
            *value = erased_value(field, value);
        }
    }
}

/// A personal value erased: text becomes [`ERASED`], an address `null`, `null` stays.
fn erased_value(field: &str, value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        _ if field == "address" => Value::Null,
        _ => Value::String(ERASED.to_owned()),
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
}
