//! The request bodies of the customer writes and the parameters several routes share, as
//! the OpenAPI document shows them: every field with its format, limits and an example, so
//! that Swagger UI's "Try it out" sends a request that works.
//!
//! Documentation only: the handlers take any JSON object and the domain validates it, which
//! keeps every message the contract's (a typed extractor would answer serde's). The limits
//! written here are the domain's (`crate::domain`); the API tests send every example and the
//! boundary values of the limits, so the two cannot drift apart unnoticed.

#![allow(dead_code, reason = "read by the OpenAPI derive only")]

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

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
    /// 2–100 characters, not counting surrounding spaces (which are trimmed).
    #[schema(min_length = 2, max_length = 100, example = "Ada")]
    first_name: String,
    /// 2–100 characters, not counting surrounding spaces (which are trimmed).
    #[schema(min_length = 2, max_length = 100, example = "Lovelace")]
    last_name: String,
    /// Digits, spaces, `+`, `-`, `(` and `)`, with at least 10 digits; at most 32 characters.
    #[schema(
        pattern = r"^\+?[\d\s\-()]+$",
        min_length = 10,
        max_length = 32,
        example = "+44 20 7946 0958"
    )]
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
    /// 2–100 characters, not counting surrounding spaces.
    #[schema(nullable = false, min_length = 2, max_length = 100, example = "Ada")]
    first_name: Option<String>,
    /// 2–100 characters, not counting surrounding spaces.
    #[schema(nullable = false, min_length = 2, max_length = 100, example = "King")]
    last_name: Option<String>,
    /// As on create; `null` removes it.
    #[schema(
        pattern = r"^\+?[\d\s\-()]+$",
        min_length = 10,
        max_length = 32,
        example = "+44 20 7946 0000"
    )]
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

/// A postal address: `street`, `city` and `country` required, each field at most 200
/// characters, no other keys.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = AddressInput)]
pub(crate) struct AddressInput {
    #[schema(min_length = 1, max_length = 200, example = "12 St James's Square")]
    street: String,
    #[schema(min_length = 1, max_length = 200, example = "London")]
    city: String,
    #[schema(max_length = 200, example = json!(null))]
    state: Option<String>,
    #[schema(max_length = 200, example = "SW1Y 4JH")]
    zip_code: Option<String>,
    #[schema(min_length = 1, max_length = 200, example = "United Kingdom")]
    country: String,
}

/// Free-form preferences: these four keys are checked when present, any other key is kept
/// as sent. At most 2,000 characters as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreferencesInput {
    #[schema(nullable = false, example = "Analytical Engines Ltd")]
    company: Option<String>,
    #[schema(nullable = false, example = "Computing")]
    industry: Option<String>,
    #[schema(nullable = false, example = "email")]
    preferred_contact: Option<String>,
    #[schema(nullable = false, example = true)]
    newsletter: Option<bool>,
}
