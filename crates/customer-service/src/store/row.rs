//! Between rows and domain values: the written columns of a customer, and reading customers
//! and events back from `AnyRow`s.

use serde_json::Value;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use customer_events::EventType;

use crate::application::{Aggregate, StoreError, StoredEvent};
use crate::domain::{
    Address, BirthDate, Customer, CustomerFields, CustomerId, Email, PersonName, Phone,
    Preferences, Timestamp,
};

use super::error::classify;

/// Separates the fields of `search_text`, so that a search cannot match across two of them.
pub(super) const SEARCH_SEPARATOR: char = '\u{1f}';

/// A row of `position, event_id, event_type, customer_id, sequence, occurred_at_ms, payload`.
pub(super) fn read_event(row: &AnyRow) -> Result<StoredEvent, StoreError> {
    let event_type: String = row.try_get(2).map_err(classify)?;
    let customer_id: i64 = row.try_get(3).map_err(classify)?;
    let read = || -> Result<StoredEvent, sqlx::Error> {
        Ok(StoredEvent {
            position: row.try_get(0)?,
            event_id: row.try_get(1)?,
            event_type: EventType::parse(&event_type).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown event type {event_type:?}").into())
            })?,
            aggregate: Aggregate::from_log_key(customer_id).ok_or_else(|| {
                sqlx::Error::Decode(format!("log key {customer_id} names no aggregate").into())
            })?,
            sequence: row.try_get(4)?,
            occurred_at: Timestamp::from_millis(row.try_get(5)?),
            payload: row.try_get(6)?,
        })
    };
    read().map_err(classify)
}

/// The stored key of an e-mail's skeleton ([`Email::skeleton`]): its SHA-256 in hex. Of one
/// length whatever the address (a skeleton may outgrow MySQL's index key), so one unique
/// index serves every engine; and not a second copy of the address in clear.
pub(super) fn email_key(email: &Email) -> String {
    key_of_skeleton(&email.skeleton())
}

/// [`email_key`] of an address as typed into a lookup (invalid ones simply match nothing).
pub(super) fn lookup_key(raw: &str) -> String {
    key_of_skeleton(&crate::domain::email_skeleton(
        &Email::normalize_for_lookup(raw),
    ))
}

pub(super) fn key_of_skeleton(skeleton: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(skeleton.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The written columns of a customer, bound as `$1..$13` in [`sql::INSERT_CUSTOMER`] and
/// [`sql::UPDATE_CUSTOMER`].
pub(super) struct Columns {
    email: String,
    first_name: String,
    last_name: String,
    phone: Option<String>,
    is_active: bool,
    date_of_birth: Option<String>,
    address: Option<String>,
    preferences: Option<String>,
    search_text: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
    email_key: String,
}

impl Columns {
    pub(super) fn new(
        f: &CustomerFields,
        created_at_ms: i64,
        updated_at_ms: i64,
        version: i64,
    ) -> Columns {
        Columns {
            email: f.email.as_str().to_owned(),
            first_name: f.first_name.as_str().to_owned(),
            last_name: f.last_name.as_str().to_owned(),
            phone: f.phone.as_ref().map(|p| p.as_str().to_owned()),
            is_active: f.is_active,
            date_of_birth: f.date_of_birth.map(BirthDate::to_iso),
            address: f.address.as_ref().map(|a| a.to_json().to_string()),
            preferences: f
                .preferences
                .as_ref()
                .map(|p| Value::Object(p.as_map().clone()).to_string()),
            search_text: search_text(f),
            created_at_ms,
            updated_at_ms,
            version,
            email_key: email_key(&f.email),
        }
    }

    pub(super) fn bind<'q>(
        self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Query<'q, Any, AnyArguments> {
        query
            .bind(self.email)
            .bind(self.first_name)
            .bind(self.last_name)
            .bind(self.phone)
            .bind(self.is_active)
            .bind(self.date_of_birth)
            .bind(self.address)
            .bind(self.preferences)
            .bind(self.search_text)
            .bind(self.created_at_ms)
            .bind(self.updated_at_ms)
            .bind(self.version)
            .bind(self.email_key)
    }
}

fn search_text(f: &CustomerFields) -> String {
    format!(
        "{}{SEARCH_SEPARATOR}{}{SEARCH_SEPARATOR}{}",
        f.first_name.as_str(),
        f.last_name.as_str(),
        f.email.as_str()
    )
    .to_lowercase()
}

/// `%term%` with LIKE's wildcards in `term` escaped, so "50%" finds a literal "50%".
pub(super) fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A boolean column: PostgreSQL `boolean`, SQLite `integer` 0/1 (see the SQLite migration).
fn read_flag(row: &AnyRow, index: usize) -> Result<bool, StoreError> {
    row.try_get::<bool, _>(index)
        .or_else(|_| row.try_get::<i64, _>(index).map(|flag| flag != 0))
        .map_err(classify)
}

/// A row of `customer_columns!()` as a customer.
pub(super) fn read_customer(row: &AnyRow) -> Result<Customer, StoreError> {
    let corrupt =
        |what: &str| StoreError::Other(format!("stored customer has an invalid {what}").into());
    let id: i64 = row.try_get(0).map_err(classify)?;
    let date_of_birth: Option<String> = row.try_get(6).map_err(classify)?;
    let address: Option<String> = row.try_get(7).map_err(classify)?;
    let preferences: Option<String> = row.try_get(8).map_err(classify)?;
    let fields = CustomerFields {
        email: Email::from_stored(row.try_get(1).map_err(classify)?),
        first_name: PersonName::from_stored(row.try_get(2).map_err(classify)?),
        last_name: PersonName::from_stored(row.try_get(3).map_err(classify)?),
        phone: row
            .try_get::<Option<String>, _>(4)
            .map_err(classify)?
            .map(Phone::from_stored),
        is_active: read_flag(row, 5)?,
        date_of_birth: date_of_birth
            .map(|d| BirthDate::from_stored(&d).ok_or_else(|| corrupt("date of birth")))
            .transpose()?,
        address: address
            .map(|a| Address::from_stored(&a).ok_or_else(|| corrupt("address")))
            .transpose()?,
        preferences: preferences
            .map(|p| {
                serde_json::from_str::<serde_json::Map<String, Value>>(&p)
                    .map(Preferences::from_stored)
                    .map_err(|_| corrupt("preferences"))
            })
            .transpose()?,
    };
    Ok(Customer {
        id: CustomerId::new(id).ok_or_else(|| corrupt("id"))?,
        fields,
        created_at: Timestamp::from_millis(row.try_get(9).map_err(classify)?),
        updated_at: Timestamp::from_millis(row.try_get(10).map_err(classify)?),
        version: row.try_get(11).map_err(classify)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_a_search_term_are_escaped() {
        assert_eq!(like_pattern("50%_a\\b"), r"%50\%\_a\\b%");
    }
}
