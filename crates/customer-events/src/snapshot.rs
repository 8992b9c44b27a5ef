//! The customer as the API represents it: the `data` of a GET, and `previousData` of a
//! CustomerUpdated event. Field order is the contract's, so serialized JSON matches it exactly.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A postal address. `state` and `zipCode` are optional and serialize as `null` when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub state: Option<String>,
    pub zip_code: Option<String>,
    pub country: String,
}

/// One customer, every key always present (absent optional values are `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Customer, example = json!({
    "id": 1, "email": "ada.lovelace@example.com", "firstName": "Ada", "lastName": "Lovelace",
    "phone": "+44 20 7946 0958", "isActive": true, "dateOfBirth": "1990-12-10",
    "address": {"street": "12 St James's Square", "city": "London", "state": null,
                "zipCode": "SW1Y 4JH", "country": "United Kingdom"},
    "preferences": {"newsletter": true, "preferredContact": "email"},
    "createdAt": "2026-11-30T09:15:27.403Z", "updatedAt": "2026-11-30T09:15:27.403Z",
    "fullName": "Ada Lovelace", "version": 1
})))]
#[serde(rename_all = "camelCase")]
pub struct CustomerSnapshot {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub is_active: bool,
    /// `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
    pub address: Option<Address>,
    /// A JSON object: `company`, `industry`, `preferredContact`, `newsletter` and free keys.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub preferences: Option<Map<String, Value>>,
    pub created_at: String,
    pub updated_at: String,
    /// `firstName + " " + lastName`, trimmed.
    pub full_name: String,
    /// The number of events this customer has had (the `sequence` of its latest event).
    pub version: i64,
}
