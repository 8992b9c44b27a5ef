//! The customer aggregate: its state, and what each change to it does — the new state and
//! the events to commit with it, in the contract's order.

use customer_events::{
    Changes, CustomerActivated, CustomerCreated, CustomerDeactivated, CustomerDeleted,
    CustomerEvent, CustomerImported, CustomerSnapshot, CustomerUpdated, FieldChange,
};
use serde_json::Value;

use super::birth_date::BirthDate;
use super::customer_input::{CustomerFields, CustomerPatch, CUSTOMER_FIELDS};
use super::phone::Phone;
use super::preferences::Preferences;
use super::timestamp::Timestamp;

/// `reason` of a CustomerDeactivated caused by a PATCH.
const DEACTIVATED_BY_PATCH: &str = "Updated by user";

/// A customer's id, assigned by the database: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomerId(i64);

impl CustomerId {
    /// `None` unless `raw` is a positive integer.
    pub fn new(raw: i64) -> Option<CustomerId> {
        (raw > 0).then_some(CustomerId(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for CustomerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A customer as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: CustomerId,
    pub fields: CustomerFields,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Number of events this customer has had; the `sequence` of the latest one.
    pub version: i64,
}

/// A validated new customer that has no id yet; the store assigns one on insert.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerDraft {
    pub fields: CustomerFields,
    pub created_at: Timestamp,
}

/// What a change decided: the customer's new state and the events that record it.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerChange {
    pub customer: Customer,
    pub events: Vec<CustomerEvent>,
}

impl CustomerDraft {
    pub fn new(fields: CustomerFields, now: Timestamp) -> Self {
        CustomerDraft {
            fields,
            created_at: now,
        }
    }

    /// The customer once the store has assigned `id`, with its CustomerCreated event.
    pub fn into_created(self, id: CustomerId) -> CustomerChange {
        let customer = Customer {
            id,
            fields: self.fields,
            created_at: self.created_at,
            updated_at: self.created_at,
            version: 1,
        };
        let s = customer.snapshot();
        let event = CustomerEvent::CustomerCreated(CustomerCreated {
            customer_id: s.id,
            email: s.email,
            first_name: s.first_name,
            last_name: s.last_name,
            full_name: s.full_name,
            phone: s.phone,
            is_active: s.is_active,
            date_of_birth: s.date_of_birth,
            address: s.address,
            preferences: s.preferences,
            created_at: s.created_at,
        });
        CustomerChange {
            customer,
            events: vec![event],
        }
    }
}

impl Customer {
    /// A customer brought over from another system with the id and times it had there, and
    /// its CustomerImported event (version 1).
    pub fn imported(
        id: CustomerId,
        fields: CustomerFields,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> CustomerChange {
        let customer = Customer {
            id,
            fields,
            created_at,
            updated_at,
            version: 1,
        };
        let s = customer.snapshot();
        let event = CustomerEvent::CustomerImported(CustomerImported {
            customer_id: s.id,
            email: s.email,
            first_name: s.first_name,
            last_name: s.last_name,
            full_name: s.full_name,
            phone: s.phone,
            is_active: s.is_active,
            date_of_birth: s.date_of_birth,
            address: s.address,
            preferences: s.preferences,
            created_at: s.created_at,
            updated_at: s.updated_at,
        });
        CustomerChange {
            customer,
            events: vec![event],
        }
    }

    /// `firstName + " " + lastName`, trimmed.
    pub fn full_name(&self) -> String {
        let (first, last) = (
            self.fields.first_name.as_str(),
            self.fields.last_name.as_str(),
        );
        let mut name = String::with_capacity(first.len() + 1 + last.len());
        name.push_str(first);
        name.push(' ');
        name.push_str(last);
        if name.trim().len() != name.len() {
            name = name.trim().to_owned();
        }
        name
    }

    /// The API representation (also `previousData` in events).
    pub fn snapshot(&self) -> CustomerSnapshot {
        self.clone().into_snapshot()
    }

    /// [`Customer::snapshot`] of a customer no longer needed: its values move into the
    /// snapshot rather than being copied (a read answers with one).
    pub fn into_snapshot(self) -> CustomerSnapshot {
        let full_name = self.full_name();
        let CustomerFields {
            email,
            first_name,
            last_name,
            phone,
            is_active,
            date_of_birth,
            address,
            preferences,
        } = self.fields;
        CustomerSnapshot {
            id: self.id.get(),
            email: email.into_string(),
            first_name: first_name.into_string(),
            last_name: last_name.into_string(),
            phone: phone.map(Phone::into_string),
            is_active,
            date_of_birth: date_of_birth.map(BirthDate::to_iso),
            address: address.map(|a| customer_events::Address {
                street: a.street,
                city: a.city,
                state: a.state,
                zip_code: a.zip_code,
                country: a.country,
            }),
            preferences: preferences.map(Preferences::into_map),
            created_at: self.created_at.to_iso(),
            updated_at: self.updated_at.to_iso(),
            full_name,
            version: self.version,
        }
    }

    /// Applies `patch` at `now`. `None` when no value would change: no event, and
    /// `updatedAt` stays as it was.
    /// `actor` is who made the change (a token's subject), recorded where an event type has
    /// a field for it.
    pub fn update(
        &self,
        patch: &CustomerPatch,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Option<CustomerChange> {
        let mut next = self.clone();
        if let Some(email) = &patch.email {
            next.fields.email = email.clone();
        }
        if let Some(name) = &patch.first_name {
            next.fields.first_name = name.clone();
        }
        if let Some(name) = &patch.last_name {
            next.fields.last_name = name.clone();
        }
        if let Some(phone) = &patch.phone {
            next.fields.phone = phone.clone();
        }
        if let Some(is_active) = patch.is_active {
            next.fields.is_active = is_active;
        }
        if let Some(date) = patch.date_of_birth {
            next.fields.date_of_birth = date;
        }
        if let Some(address) = &patch.address {
            next.fields.address = address.clone();
        }
        if let Some(preferences) = &patch.preferences {
            next.fields.preferences = preferences.clone();
        }

        let before = self.snapshot();
        let changes = changes_between(&before, &next.snapshot());
        if changes.is_empty() {
            return None;
        }
        next.updated_at = now;
        let after = next.snapshot();
        let mut events = vec![CustomerEvent::CustomerUpdated(CustomerUpdated {
            customer_id: after.id,
            email: after.email.clone(),
            first_name: after.first_name.clone(),
            last_name: after.last_name.clone(),
            full_name: after.full_name.clone(),
            phone: after.phone.clone(),
            is_active: after.is_active,
            date_of_birth: after.date_of_birth.clone(),
            address: after.address.clone(),
            preferences: after.preferences.clone(),
            updated_at: after.updated_at.clone(),
            previous_data: before,
            changes,
        })];
        if next.fields.is_active != self.fields.is_active {
            events.push(if next.fields.is_active {
                CustomerEvent::CustomerActivated(CustomerActivated {
                    customer_id: after.id,
                    email: after.email,
                    full_name: after.full_name,
                    activated_at: now.to_iso(),
                })
            } else {
                CustomerEvent::CustomerDeactivated(CustomerDeactivated {
                    customer_id: after.id,
                    email: after.email,
                    full_name: after.full_name,
                    reason: DEACTIVATED_BY_PATCH.to_owned(),
                    deactivated_at: now.to_iso(),
                    actor: actor.map(str::to_owned),
                })
            });
        }
        next.version += events.len() as i64;
        Some(CustomerChange {
            customer: next,
            events,
        })
    }

    /// The event that records this customer's deletion at `now`.
    pub fn delete(&self, now: Timestamp) -> CustomerEvent {
        CustomerEvent::CustomerDeleted(CustomerDeleted {
            customer_id: self.id.get(),
            email: self.fields.email.as_str().to_owned(),
            full_name: self.full_name(),
            deleted_at: now.to_iso(),
        })
    }
}

/// The changeable fields whose JSON value differs between two snapshots.
fn changes_between(before: &CustomerSnapshot, after: &CustomerSnapshot) -> Changes {
    let as_object = |s: &CustomerSnapshot| match serde_json::to_value(s) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("a snapshot serializes to a JSON object"),
    };
    let (old, new) = (as_object(before), as_object(after));
    Changes(
        CUSTOMER_FIELDS
            .iter()
            .filter(|field| old.get(**field) != new.get(**field))
            .map(|field| FieldChange {
                field: (*field).to_owned(),
                old: old.get(*field).cloned().unwrap_or(Value::Null),
                new: new.get(*field).cloned().unwrap_or(Value::Null),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer_input::{parse_customer_patch, parse_new_customer};
    use chrono::NaiveDate;
    use customer_events::EventType;
    use serde_json::json;

    const CREATED_MS: i64 = 1_767_261_600_000; // 2026-01-01T10:00:00.000Z
    const LATER_MS: i64 = CREATED_MS + 60_000;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
    }

    fn created(body: Value) -> CustomerChange {
        let fields = parse_new_customer(body.as_object().unwrap(), today()).unwrap();
        CustomerDraft::new(fields, Timestamp::from_millis(CREATED_MS))
            .into_created(CustomerId::new(7).unwrap())
    }

    fn john() -> Customer {
        created(
            json!({"email": "john.doe@example.com", "firstName": "John", "lastName": "Doe",
                       "phone": "+1-555-010-0100", "dateOfBirth": "1990-01-15"}),
        )
        .customer
    }

    fn patch(body: Value) -> CustomerPatch {
        parse_customer_patch(body.as_object().unwrap(), today()).unwrap()
    }

    #[test]
    fn creating_emits_customer_created_with_the_contract_data() {
        let change = created(
            json!({"email": "John.Doe@Example.com", "firstName": " John ",
                                    "lastName": "Doe"}),
        );
        assert_eq!(change.customer.version, 1);
        assert_eq!(change.customer.updated_at, change.customer.created_at);
        let [event] = change.events.as_slice() else {
            panic!()
        };
        assert_eq!(
            serde_json::to_value(event).unwrap(),
            json!({"customerId": 7, "email": "john.doe@example.com", "firstName": "John",
                   "lastName": "Doe", "fullName": "John Doe", "phone": null, "isActive": true,
                   "dateOfBirth": null, "address": null, "preferences": null,
                   "createdAt": "2026-01-01T10:00:00.000Z"})
        );
    }

    #[test]
    fn an_update_carries_previous_data_and_exactly_the_changed_fields() {
        let john = john();
        let change = john
            .update(
                &patch(json!({"lastName": "Roe", "firstName": "John", "phone": null})),
                Timestamp::from_millis(LATER_MS),
                None,
            )
            .unwrap();
        assert_eq!(change.customer.version, 2);
        assert_eq!(change.customer.updated_at.millis(), LATER_MS);
        let [CustomerEvent::CustomerUpdated(updated)] = change.events.as_slice() else {
            panic!()
        };
        assert_eq!(updated.previous_data, john.snapshot());
        assert_eq!(updated.updated_at, "2026-01-01T10:01:00.000Z");
        assert_eq!(
            serde_json::to_value(&updated.changes).unwrap(),
            json!({"lastName": {"old": "Doe", "new": "Roe"},
                   "phone": {"old": "+1-555-010-0100", "new": null}})
        );
        assert_eq!(updated.full_name, "John Roe");
    }

    #[test]
    fn a_patch_that_changes_nothing_emits_nothing() {
        let john = john();
        let same = patch(
            json!({"email": "JOHN.DOE@example.com", "firstName": "John ",
                                "isActive": true, "dateOfBirth": "1990-01-15T00:00:00Z"}),
        );
        assert_eq!(
            john.update(&same, Timestamp::from_millis(LATER_MS), None),
            None
        );
        assert_eq!(
            john.update(
                &CustomerPatch::default(),
                Timestamp::from_millis(LATER_MS),
                None
            ),
            None
        );
    }

    #[test]
    fn deactivating_adds_customer_deactivated_after_the_update() {
        let change = john()
            .update(
                &patch(json!({"isActive": false})),
                Timestamp::from_millis(LATER_MS),
                Some("admin-7"),
            )
            .unwrap();
        let types: Vec<_> = change
            .events
            .iter()
            .map(CustomerEvent::event_type)
            .collect();
        assert_eq!(
            types,
            [EventType::CustomerUpdated, EventType::CustomerDeactivated]
        );
        assert_eq!(change.customer.version, 3);
        assert_eq!(
            serde_json::to_value(&change.events[1]).unwrap(),
            json!({"customerId": 7, "email": "john.doe@example.com", "fullName": "John Doe",
                   "reason": "Updated by user", "deactivatedAt": "2026-01-01T10:01:00.000Z",
                   "actor": "admin-7"})
        );
    }

    #[test]
    fn reactivating_adds_customer_activated() {
        let inactive = john()
            .update(
                &patch(json!({"isActive": false})),
                Timestamp::from_millis(LATER_MS),
                None,
            )
            .unwrap()
            .customer;
        let change = inactive
            .update(
                &patch(json!({"isActive": true})),
                Timestamp::from_millis(LATER_MS + 1),
                None,
            )
            .unwrap();
        assert_eq!(
            serde_json::to_value(&change.events[1]).unwrap(),
            json!({"customerId": 7, "email": "john.doe@example.com", "fullName": "John Doe",
                   "activatedAt": "2026-01-01T10:01:00.001Z"})
        );
        assert_eq!(change.customer.version, 5);
    }

    #[test]
    fn deleting_emits_customer_deleted() {
        assert_eq!(
            serde_json::to_value(john().delete(Timestamp::from_millis(LATER_MS))).unwrap(),
            json!({"customerId": 7, "email": "john.doe@example.com", "fullName": "John Doe",
                   "deletedAt": "2026-01-01T10:01:00.000Z"})
        );
    }

    #[test]
    fn ids_must_be_positive() {
        assert_eq!(CustomerId::new(0), None);
        assert_eq!(CustomerId::new(-3), None);
        assert_eq!(CustomerId::new(1).map(CustomerId::get), Some(1));
    }
}
