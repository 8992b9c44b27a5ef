//! Turns a request body (a JSON object) into validated [`CustomerFields`] or [`CustomerPatch`],
//! collecting every failure per field with the original service's messages.

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::address::Address;
use super::birth_date::{BirthDate, BIRTH_DATE_FORMAT_MESSAGE};
use super::email::{Email, EMAIL_MESSAGE};
use super::person_name::PersonName;
use super::phone::{Phone, PHONE_MESSAGE};
use super::preferences::Preferences;
use super::validation::{DomainError, FieldErrors};

/// The fields a client may send, in representation order: the order failures are reported
/// in, and the keys a CustomerUpdated's `changes` can hold.
pub(crate) const CUSTOMER_FIELDS: [&str; 8] = [
    "email",
    "firstName",
    "lastName",
    "phone",
    "isActive",
    "dateOfBirth",
    "address",
    "preferences",
];

/// The fields a client sets, every one valid: a customer to create, or a customer's
/// current values.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerFields {
    pub email: Email,
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub phone: Option<Phone>,
    pub is_active: bool,
    pub date_of_birth: Option<BirthDate>,
    pub address: Option<Address>,
    pub preferences: Option<Preferences>,
}

/// A partial update. `None`: leave the field alone; `Some(None)`: clear it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerPatch {
    pub email: Option<Email>,
    pub first_name: Option<PersonName>,
    pub last_name: Option<PersonName>,
    pub phone: Option<Option<Phone>>,
    pub is_active: Option<bool>,
    pub date_of_birth: Option<Option<BirthDate>>,
    pub address: Option<Option<Address>>,
    pub preferences: Option<Option<Preferences>>,
}

/// Validates a create body: `email`, `firstName`, `lastName` required.
pub fn parse_new_customer(
    body: &Map<String, Value>,
    today: NaiveDate,
) -> Result<CustomerFields, DomainError> {
    let mut input = Input::new(body, today);
    let email = input.email(true);
    let first_name = input.name("firstName", "First name", true);
    let last_name = input.name("lastName", "Last name", true);
    let phone = input.phone().flatten();
    let is_active = input.is_active().unwrap_or(true);
    let date_of_birth = input.date_of_birth().flatten();
    let address = input.address().flatten();
    let preferences = input.preferences().flatten();
    input.finish(|| CustomerFields {
        email: email.expect("validated: email is required"),
        first_name: first_name.expect("validated: firstName is required"),
        last_name: last_name.expect("validated: lastName is required"),
        phone,
        is_active,
        date_of_birth,
        address,
        preferences,
    })
}

/// Validates a PATCH body: any subset of the create fields.
pub fn parse_customer_patch(
    body: &Map<String, Value>,
    today: NaiveDate,
) -> Result<CustomerPatch, DomainError> {
    let mut input = Input::new(body, today);
    let patch = CustomerPatch {
        email: input.email(false),
        first_name: input.name("firstName", "First name", false),
        last_name: input.name("lastName", "Last name", false),
        phone: input.phone(),
        is_active: input.is_active(),
        date_of_birth: input.date_of_birth(),
        address: input.address(),
        preferences: input.preferences(),
    };
    input.finish(|| patch)
}

/// One body being validated; each method reads one field and records its failures.
/// `Option<Option<T>>` results mean absent / `null` / a value.
struct Input<'a> {
    body: &'a Map<String, Value>,
    today: NaiveDate,
    errors: FieldErrors,
}

impl<'a> Input<'a> {
    fn new(body: &'a Map<String, Value>, today: NaiveDate) -> Self {
        Input {
            body,
            today,
            errors: FieldErrors::new(),
        }
    }

    fn email(&mut self, required: bool) -> Option<Email> {
        match self.body.get("email") {
            None if !required => None,
            Some(Value::String(raw)) => self.check("email", Email::parse(raw)),
            _ => self.fail("email", EMAIL_MESSAGE),
        }
    }

    fn name(&mut self, field: &str, label: &str, required: bool) -> Option<PersonName> {
        match self.body.get(field) {
            None if !required => None,
            Some(Value::String(raw)) => self.check(field, PersonName::parse(raw, label)),
            _ => self.fail(field, format!("{field} must be a string")),
        }
    }

    fn phone(&mut self) -> Option<Option<Phone>> {
        match self.body.get("phone")? {
            Value::Null => Some(None),
            Value::String(raw) => self.check("phone", Phone::parse(raw)).map(Some),
            _ => self.fail("phone", PHONE_MESSAGE),
        }
    }

    fn is_active(&mut self) -> Option<bool> {
        match self.body.get("isActive")? {
            Value::Bool(b) => Some(*b),
            _ => self.fail("isActive", "isActive must be a boolean value"),
        }
    }

    fn date_of_birth(&mut self) -> Option<Option<BirthDate>> {
        match self.body.get("dateOfBirth")? {
            Value::Null => Some(None),
            Value::String(raw) => self
                .check("dateOfBirth", BirthDate::parse(raw, self.today))
                .map(Some),
            _ => self.fail("dateOfBirth", BIRTH_DATE_FORMAT_MESSAGE),
        }
    }

    fn address(&mut self) -> Option<Option<Address>> {
        match self.body.get("address")? {
            Value::Null => Some(None),
            value => Address::parse(value, &mut self.errors).map(Some),
        }
    }

    fn preferences(&mut self) -> Option<Option<Preferences>> {
        match self.body.get("preferences")? {
            Value::Null => Some(None),
            value => Preferences::parse(value, &mut self.errors).map(Some),
        }
    }

    fn check<T, M: Into<String>>(&mut self, field: &str, result: Result<T, M>) -> Option<T> {
        result
            .map_err(|message| self.errors.add(field, message))
            .ok()
    }

    fn fail<T>(&mut self, field: &str, message: impl Into<String>) -> Option<T> {
        self.errors.add(field, message);
        None
    }

    /// Adds unknown-property failures, then returns the value or every failure.
    fn finish<T>(mut self, value: impl FnOnce() -> T) -> Result<T, DomainError> {
        for key in self.body.keys() {
            if !CUSTOMER_FIELDS.contains(&key.as_str()) {
                self.errors
                    .add(key.clone(), format!("property {key} should not exist"));
            }
        }
        self.errors.into_result(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn create_errors(value: Value) -> FieldErrors {
        match parse_new_customer(&object(value), today()) {
            Err(DomainError::Validation(errors)) => errors,
            Ok(c) => panic!("expected failures, got {c:?}"),
        }
    }

    #[test]
    fn a_minimal_customer_gets_the_defaults() {
        let c = parse_new_customer(
            &object(json!({"email": "A@B.co", "firstName": "Ann", "lastName": "Lee"})),
            today(),
        )
        .unwrap();
        assert_eq!(c.email.as_str(), "a@b.co");
        assert!(c.is_active);
        assert_eq!(
            (c.phone, c.date_of_birth, c.address, c.preferences),
            (None, None, None, None)
        );
    }

    #[test]
    fn an_empty_body_reports_every_required_field() {
        let errors = create_errors(json!({}));
        assert_eq!(errors.of("email"), [EMAIL_MESSAGE]);
        assert_eq!(errors.of("firstName"), ["firstName must be a string"]);
        assert_eq!(errors.of("lastName"), ["lastName must be a string"]);
        assert_eq!(
            errors.to_string(),
            "email must be an email, firstName must be a string, lastName must be a string"
        );
    }

    #[test]
    fn wrong_types_are_reported_per_field() {
        let errors = create_errors(json!({"email": 1, "firstName": ["A"], "lastName": null,
            "phone": 5550100100i64, "isActive": "true", "dateOfBirth": 19900115,
            "address": "x", "preferences": 3}));
        assert_eq!(errors.of("email"), [EMAIL_MESSAGE]);
        assert_eq!(errors.of("firstName"), ["firstName must be a string"]);
        assert_eq!(errors.of("lastName"), ["lastName must be a string"]);
        assert_eq!(errors.of("phone"), [PHONE_MESSAGE]);
        assert_eq!(errors.of("isActive"), ["isActive must be a boolean value"]);
        assert_eq!(errors.of("dateOfBirth"), [BIRTH_DATE_FORMAT_MESSAGE]);
        assert_eq!(errors.of("address"), ["Address format is invalid"]);
        assert_eq!(errors.of("preferences"), ["preferences must be an object"]);
    }

    #[test]
    fn unknown_properties_are_rejected_by_name() {
        let errors = create_errors(json!({"email": "a@b.co", "firstName": "Ann",
                                          "lastName": "Lee", "id": 5}));
        assert_eq!(errors.of("id"), ["property id should not exist"]);
    }

    #[test]
    fn an_empty_patch_changes_nothing() {
        assert_eq!(
            parse_customer_patch(&Map::new(), today()).unwrap(),
            CustomerPatch::default()
        );
    }

    #[test]
    fn null_clears_optional_fields_in_a_patch() {
        let patch = parse_customer_patch(
            &object(
                json!({"phone": null, "dateOfBirth": null, "address": null, "preferences": null}),
            ),
            today(),
        )
        .unwrap();
        assert_eq!(patch.phone, Some(None));
        assert_eq!(patch.date_of_birth, Some(None));
        assert_eq!(patch.address, Some(None));
        assert_eq!(patch.preferences, Some(None));
    }

    #[test]
    fn null_is_not_a_value_for_required_fields_or_is_active_in_a_patch() {
        let result = parse_customer_patch(
            &object(json!({"email": null, "firstName": null, "isActive": null})),
            today(),
        );
        let Err(DomainError::Validation(errors)) = result else {
            panic!()
        };
        assert_eq!(errors.of("email"), [EMAIL_MESSAGE]);
        assert_eq!(errors.of("firstName"), ["firstName must be a string"]);
        assert_eq!(errors.of("isActive"), ["isActive must be a boolean value"]);
    }
}
