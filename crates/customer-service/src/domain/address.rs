//! Postal addresses: street, city and country required; state and zip code optional.

use serde_json::{Map, Value};

use super::validation::{char_len, FieldErrors};

/// A validated address. Values are trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub state: Option<String>,
    pub zip_code: Option<String>,
    pub country: String,
}

pub const ADDRESS_MESSAGE: &str = "Address format is invalid";
const MAX_ADDRESS_FIELD_CHARS: usize = 200;
const REQUIRED: [&str; 3] = ["street", "city", "country"];
const OPTIONAL: [&str; 2] = ["state", "zipCode"];

impl Address {
    /// Validates the `address` object of a request; failures go to `address.<key>`.
    pub fn parse(value: &Value, errors: &mut FieldErrors) -> Option<Address> {
        let Some(object) = value.as_object() else {
            errors.add("address", ADDRESS_MESSAGE);
            return None;
        };
        let before = errors.clone();
        for key in object.keys() {
            if !REQUIRED.contains(&key.as_str()) && !OPTIONAL.contains(&key.as_str()) {
                errors.add(
                    format!("address.{key}"),
                    format!("property {key} should not exist"),
                );
            }
        }
        let mut field = |key: &str, required: bool| -> Option<String> {
            match object.get(key) {
                None | Some(Value::Null) if !required => None,
                Some(Value::String(s))
                    if !s.trim().is_empty()
                        && char_len(s.trim()) <= MAX_ADDRESS_FIELD_CHARS
                        && !s.chars().any(char::is_control) =>
                {
                    Some(s.trim().to_owned())
                }
                Some(Value::String(s)) if !required && s.trim().is_empty() => None,
                _ => {
                    errors.add(format!("address.{key}"), ADDRESS_MESSAGE);
                    None
                }
            }
        };
        let street = field("street", true);
        let city = field("city", true);
        let state = field("state", false);
        let zip_code = field("zipCode", false);
        let country = field("country", true);
        if *errors != before {
            return None;
        }
        Some(Address {
            street: street?,
            city: city?,
            state,
            zip_code,
            country: country?,
        })
    }

    /// The stored / wire form: all five keys, absent ones `null`.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("street".into(), Value::from(self.street.clone()));
        object.insert("city".into(), Value::from(self.city.clone()));
        object.insert("state".into(), Value::from(self.state.clone()));
        object.insert("zipCode".into(), Value::from(self.zip_code.clone()));
        object.insert("country".into(), Value::from(self.country.clone()));
        Value::Object(object)
    }

    /// Reads back the JSON text of what [`Address::to_json`] stored; `None` if it is not
    /// that shape. Read straight into the address, with no `Value` tree in between: every
    /// read of a customer with an address does this.
    pub fn from_stored(text: &str) -> Option<Address> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Stored {
            street: String,
            city: String,
            state: Option<String>,
            zip_code: Option<String>,
            country: String,
        }
        let Stored {
            street,
            city,
            state,
            zip_code,
            country,
        } = serde_json::from_str(text).ok()?;
        Some(Address {
            street,
            city,
            state,
            zip_code,
            country,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Address, FieldErrors> {
        let mut errors = FieldErrors::new();
        Address::parse(&value, &mut errors).ok_or(errors)
    }

    #[test]
    fn a_full_address_is_trimmed_and_kept() {
        let a = parse(
            json!({"street": " 1 Main St ", "city": "Springfield", "state": "IL",
                             "zipCode": "62701", "country": "USA"}),
        )
        .unwrap();
        assert_eq!(a.street, "1 Main St");
        assert_eq!(a.zip_code.as_deref(), Some("62701"));
    }

    #[test]
    fn state_and_zip_code_are_optional() {
        let a = parse(json!({"street": "s", "city": "c", "country": "x"})).unwrap();
        assert_eq!(a.state, None);
        assert_eq!(
            a.to_json(),
            json!({"street": "s", "city": "c", "state": null, "zipCode": null, "country": "x"})
        );
    }

    #[test]
    fn each_bad_sub_field_is_reported_under_its_dotted_name() {
        let errors =
            parse(json!({"street": "", "city": 5, "state": "IL", "extra": 1})).unwrap_err();
        assert_eq!(errors.of("address.street"), [ADDRESS_MESSAGE]);
        assert_eq!(errors.of("address.city"), [ADDRESS_MESSAGE]);
        assert_eq!(errors.of("address.country"), [ADDRESS_MESSAGE]);
        assert_eq!(
            errors.of("address.extra"),
            ["property extra should not exist"]
        );
        assert!(errors.of("address.state").is_empty());
    }

    #[test]
    fn two_hundred_characters_per_field_is_the_maximum() {
        let ok = parse(json!({"street": "s".repeat(200), "city": "c", "country": "x"}));
        assert!(ok.is_ok());
        let errors = parse(json!({"street": "s".repeat(201), "city": "c", "country": "x"}));
        assert_eq!(errors.unwrap_err().of("address.street"), [ADDRESS_MESSAGE]);
    }

    #[test]
    fn a_non_object_is_reported_under_address() {
        assert_eq!(
            parse(json!("1 Main St")).unwrap_err().of("address"),
            [ADDRESS_MESSAGE]
        );
    }

    #[test]
    fn what_is_stored_reads_back() {
        for value in [
            json!({"street": "1 Main St", "city": "Springfield", "country": "US"}),
            json!({"street": "Rue 2", "city": "Lyon", "state": "ARA", "zipCode": "69001", "country": "FR"}),
        ] {
            let address = parse(value).unwrap();
            let stored = address.to_json().to_string();
            assert_eq!(Address::from_stored(&stored), Some(address));
        }
        for corrupt in [
            "",
            "null",
            r#"{"city": "Lyon", "country": "FR"}"#,
            r#"{"street": 1, "city": "Lyon", "country": "FR"}"#,
        ] {
            assert_eq!(Address::from_stored(corrupt), None, "{corrupt}");
        }
    }
}
