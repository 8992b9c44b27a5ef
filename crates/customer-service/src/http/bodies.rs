//! The request bodies of the customer writes and the parameters several routes share, as
//! the OpenAPI document shows them: every field with its format, limits and an example, so
//! that Swagger UI's "Try it out" sends a request that works.
//!
//! Documentation only: the handlers take any JSON object and the domain validates it, which
//! keeps every message the contract's (a typed extractor would answer serde's). The rules
//! written here are the domain's (`crate::domain`), as exact patterns where a length or a
//! character class is involved; the API tests send every example and values at and around
//! every rule, and schemathesis runs in CI, so the two cannot drift apart unnoticed.

#![allow(dead_code, reason = "read by the OpenAPI derive only")]

use serde::Deserialize;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, Modify, ToSchema};

use crate::domain::BirthDate;

/// Puts the patterns below on the body fields they describe (utoipa's `pattern` attribute
/// takes only a literal).
pub(crate) struct TextRules {
    /// The date the document is built on: the date-of-birth rule depends on it.
    pub today: chrono::NaiveDate,
}

impl Modify for TextRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let birth_date = birth_date_pattern(BirthDate::latest_on(self.today));
        let rules = [
            ("CreateCustomerRequest", "firstName", NAME_PATTERN),
            ("CreateCustomerRequest", "lastName", NAME_PATTERN),
            ("CreateCustomerRequest", "phone", PHONE_PATTERN),
            ("UpdateCustomerRequest", "firstName", NAME_PATTERN),
            ("UpdateCustomerRequest", "lastName", NAME_PATTERN),
            ("UpdateCustomerRequest", "phone", PHONE_PATTERN),
            ("AddressInput", "street", ADDRESS_PATTERN),
            ("AddressInput", "city", ADDRESS_PATTERN),
            ("AddressInput", "country", ADDRESS_PATTERN),
            ("AddressInput", "state", OPTIONAL_ADDRESS_PATTERN),
            ("AddressInput", "zipCode", OPTIONAL_ADDRESS_PATTERN),
            ("CreateCustomerRequest", "dateOfBirth", &birth_date),
            ("UpdateCustomerRequest", "dateOfBirth", &birth_date),
        ];
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (schema, property, pattern) in rules {
            let field = match components.schemas.get_mut(schema) {
                Some(RefOr::T(Schema::Object(object))) => object.properties.get_mut(property),
                _ => None,
            };
            if let Some(RefOr::T(Schema::Object(field))) = field {
                field.pattern = Some((*pattern).to_owned());
            }
        }
    }
}

// The domain's text rules as ECMA-262 patterns (JSON Schema's dialect), exact in both
// directions: what a pattern matches the domain accepts, and what it does not the domain
// refuses. White space is Rust's `char::is_whitespace` (what `str::trim` trims), control
// characters `char::is_control` (U+0000–U+001F, U+007F–U+009F); lengths count characters
// after trimming, which `maxLength` cannot say of the untrimmed value. The API tests check
// each against the domain's parsers (`openapi_conformance.rs`).

/// A white-space character (`char::is_whitespace`).
macro_rules! ws {
    () => {
        "[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    };
}
/// A white-space character that is not a control character.
macro_rules! plain_ws {
    () => {
        "[ \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    };
}
/// A character that is neither white space nor a control character.
macro_rules! solid {
    () => {
        "[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    };
}
/// A character that is not a control character.
macro_rules! not_control {
    () => {
        "[^\\u0000-\\u001f\\u007f-\\u009f]"
    };
}

/// `domain::PersonName`: trimmed 2–100 characters, no control character among them.
pub(crate) const NAME_PATTERN: &str = concat!(
    "^",
    ws!(),
    "*",
    solid!(),
    not_control!(),
    "{0,98}",
    solid!(),
    ws!(),
    "*$"
);
/// `domain::Address`, a required field: trimmed 1–200 characters, no control character in
/// the value at all (so only the white space that is not one surrounds it).
pub(crate) const ADDRESS_PATTERN: &str = concat!(
    "^",
    plain_ws!(),
    "*",
    solid!(),
    "(?:",
    not_control!(),
    "{0,198}",
    solid!(),
    ")?",
    plain_ws!(),
    "*$"
);
/// `domain::Address`, `state` and `zipCode`: also blank (any white space), stored as `null`.
pub(crate) const OPTIONAL_ADDRESS_PATTERN: &str = concat!(
    "^(?:",
    ws!(),
    "*|",
    plain_ws!(),
    "*",
    solid!(),
    "(?:",
    not_control!(),
    "{0,198}",
    solid!(),
    ")?",
    plain_ws!(),
    "*)$"
);
/// `domain::Phone`: trimmed, an optional `+`, then digits, white space, `(`, `)` and `-` with
/// at least 10 digits, at most 32 characters in all (the look-ahead).
pub(crate) const PHONE_PATTERN: &str = concat!(
    "^",
    ws!(),
    "*(?=[+0-9()\\-](?:[0-9()\\-]|",
    ws!(),
    "){0,30}[+0-9()\\-]",
    ws!(),
    "*$)",
    "\\+?(?:[()\\-]|",
    ws!(),
    ")*(?:[0-9](?:[()\\-]|",
    ws!(),
    ")*){10,}$"
);

/// `domain::BirthDate` on the day `latest` is of: a date (or a date-time, by its first ten
/// characters) on or before `latest`, after optional white space. The one rule that moves
/// with the calendar, so the document is rebuilt each day (`openapi::document`).
/// Approximate only where a date-time's offset moves its UTC date across `latest`.
pub(crate) fn birth_date_pattern((year, month, day): (i32, u32, u32)) -> String {
    let before = |value: u32, width: usize| -> Option<String> {
        (value > 0).then(|| at_most(&format!("{:0width$}", value - 1)))
    };
    let mut alternatives = Vec::new();
    if let Some(years) = u32::try_from(year).ok().and_then(|y| before(y, 4)) {
        alternatives.push(format!("(?:{years})-[0-9]{{2}}-[0-9]{{2}}"));
    }
    let same_year = format!("{year:04}-");
    if let Some(months) = before(month, 2) {
        alternatives.push(format!("{same_year}(?:{months})-[0-9]{{2}}"));
    }
    alternatives.push(format!(
        "{same_year}{month:02}-(?:{})",
        at_most(&format!("{day:02}"))
    ));
    format!("^{}*(?:{})", ws!(), alternatives.join("|"))
}

/// A pattern of the digit strings as long as `limit` that are not greater than it.
fn at_most(limit: &str) -> String {
    let Some(first) = limit.chars().next() else {
        return String::new();
    };
    let rest = &limit[1..];
    let same = if rest.is_empty() {
        first.to_string()
    } else {
        format!("{first}(?:{})", at_most(rest))
    };
    match first.to_digit(10) {
        Some(d) if d > 0 => format!("[0-{}][0-9]{{{}}}|{same}", d - 1, rest.len()),
        _ => same,
    }
}

/// The `{id}` of a customer route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct CustomerIdPath {
    /// The customer's id, a positive integer.
    #[param(minimum = 1, maximum = 9223372036854775807_i64, example = 1)]
    id: i64,
}

/// The optional precondition of the customer writes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct IfMatchHeader {
    /// The customer's `ETag` as last read (e.g. `"3"`, with the quotes): the write is refused
    /// with 412 when the customer has changed since. `*` means any version. (No example
    /// here: Swagger UI would send it on every "Try it out".)
    #[serde(rename = "If-Match")]
    #[param(nullable = false)]
    if_match: Option<String>,
}

/// The body of `POST /api/v1/customers`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "email": "ada.lovelace@example.com",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "phone": "+44 20 7946 0958",
    "isActive": true,
    "dateOfBirth": "1990-12-10",
    "address": {"street": "12 St James's Square", "city": "London", "state": null,
                "zipCode": "SW1Y 4JH", "country": "United Kingdom"},
    "preferences": {"newsletter": true, "preferredContact": "email", "company": "Analytical Engines Ltd"}
}))]
pub(crate) struct CreateCustomerRequest {
    /// An e-mail address (`name@domain.tld`), at most 254 characters; stored trimmed and
    /// lower-cased. Unique ignoring case: a taken one is answered 409.
    #[schema(format = Email, max_length = 254, example = "ada.lovelace@example.com")]
    email: String,
    /// 2–100 characters and no control characters, not counting surrounding white space
    /// (which is trimmed).
    #[schema(min_length = 2, example = "Ada")]
    first_name: String,
    /// As `firstName`.
    #[schema(min_length = 2, example = "Lovelace")]
    last_name: String,
    /// Digits, white space, `(`, `)` and `-`, after an optional leading `+`, with at least 10
    /// digits; at most 32 characters, not counting surrounding white space (which is trimmed).
    #[schema(min_length = 10, example = "+44 20 7946 0958")]
    phone: Option<String>,
    /// Whether the customer is active; `true` when left out.
    #[schema(nullable = false, default = true, example = true)]
    is_active: Option<bool>,
    /// A date (`YYYY-MM-DD`) or an ISO 8601 date-time (stored as its UTC date); not in the
    /// future, and the customer at least 13 years old.
    #[schema(format = Date, example = "1990-12-10")]
    date_of_birth: Option<String>,
    address: Option<AddressInput>,
    preferences: Option<PreferencesInput>,
}

/// The body of `PATCH /api/v1/customers/{id}`: any of the create fields, each with the
/// create's rules. `null` clears `phone`, `dateOfBirth`, `address` or `preferences`.
/// Setting `isActive` publishes CustomerActivated or CustomerDeactivated as well.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"lastName": "King", "phone": "+44 20 7946 0000"}))]
pub(crate) struct UpdateCustomerRequest {
    /// As on create; a new address must not be another customer's (409).
    #[schema(nullable = false, format = Email, max_length = 254, example = "ada.king@example.com")]
    email: Option<String>,
    /// As on create.
    #[schema(nullable = false, min_length = 2, example = "Ada")]
    first_name: Option<String>,
    /// As on create.
    #[schema(nullable = false, min_length = 2, example = "King")]
    last_name: Option<String>,
    /// As on create; `null` removes it.
    #[schema(min_length = 10, example = "+44 20 7946 0000")]
    phone: Option<String>,
    #[schema(nullable = false, example = false)]
    is_active: Option<bool>,
    /// As on create; `null` removes it.
    #[schema(format = Date, example = "1990-12-10")]
    date_of_birth: Option<String>,
    /// A whole new address (not merged with the old one); `null` removes it.
    address: Option<AddressInput>,
    /// The whole preferences object (not merged); `null` removes it.
    preferences: Option<PreferencesInput>,
}

/// A postal address: `street`, `city` and `country` required, no other keys. Each field is
/// trimmed and then at most 200 characters; no field holds a control character, not even
/// around it. `state` and `zipCode` may be left out, `null`, or blank (stored as `null`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = AddressInput)]
pub(crate) struct AddressInput {
    #[schema(min_length = 1, example = "12 St James's Square")]
    street: String,
    #[schema(min_length = 1, example = "London")]
    city: String,
    #[schema(example = json!(null))]
    state: Option<String>,
    #[schema(example = "SW1Y 4JH")]
    zip_code: Option<String>,
    #[schema(min_length = 1, example = "United Kingdom")]
    country: String,
}

/// Free-form preferences: these four keys are checked when present, any other key is kept
/// as sent. At most 2,000 characters as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreferencesInput {
    #[schema(example = "Analytical Engines Ltd")]
    company: Option<String>,
    #[schema(example = "Computing")]
    industry: Option<String>,
    #[schema(example = "email")]
    preferred_contact: Option<String>,
    #[schema(example = true)]
    newsletter: Option<bool>,
}
