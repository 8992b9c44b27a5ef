//! The customer and its rules: value objects that validate when they are parsed, the
//! aggregate that decides what a change does, and the events each change emits.
//!
//! Pure code: no I/O, no async, no clock reads (the caller passes `now`), no framework types.
//! `serde_json` appears only as the data model of request bodies and event payloads.

mod address;
mod birth_date;
mod customer;
mod customer_input;
mod email;
mod person_name;
mod phone;
mod preferences;
pub mod saga;
mod timestamp;
mod validation;

pub use address::Address;
pub use birth_date::BirthDate;
pub use customer::{Customer, CustomerChange, CustomerDraft, CustomerId};
pub use customer_input::{parse_customer_patch, parse_new_customer, CustomerFields, CustomerPatch};
pub use email::{skeleton as email_skeleton, Email, EMAIL_MESSAGE};
pub use person_name::PersonName;
pub use phone::Phone;
pub use preferences::Preferences;
pub use timestamp::Timestamp;
pub use validation::{is_bidi_control, is_default_ignorable, DomainError, FieldErrors};
