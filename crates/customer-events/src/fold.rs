//! Rebuilding a customer from its events: every CustomerCreated and CustomerUpdated carries the
//! whole customer after the change, so the state after any event follows from the state
//! before it and the event alone. The service uses this for `?asOf=` and `events verify`; a
//! consumer can use it to keep its own copy of customers.

use crate::envelope::Envelope;
use crate::event::CustomerEvent;
use crate::snapshot::CustomerSnapshot;

/// The customer after `event` (the customer's event number `sequence`), given the customer
/// before it: `None` before its creation and after its deletion.
pub fn apply(
    before: Option<CustomerSnapshot>,
    event: &CustomerEvent,
    sequence: i64,
) -> Option<CustomerSnapshot> {
    match event {
        CustomerEvent::CustomerCreated(created) => Some(CustomerSnapshot {
            id: created.customer_id,
            email: created.email.clone(),
            first_name: created.first_name.clone(),
            last_name: created.last_name.clone(),
            phone: created.phone.clone(),
            is_active: created.is_active,
            date_of_birth: created.date_of_birth.clone(),
            address: created.address.clone(),
            preferences: created.preferences.clone(),
            created_at: created.created_at.clone(),
            updated_at: created.created_at.clone(),
            full_name: created.full_name.clone(),
            version: sequence,
        }),
        // A creation with the customer's original times.
        CustomerEvent::CustomerImported(imported) => Some(CustomerSnapshot {
            id: imported.customer_id,
            email: imported.email.clone(),
            first_name: imported.first_name.clone(),
            last_name: imported.last_name.clone(),
            phone: imported.phone.clone(),
            is_active: imported.is_active,
            date_of_birth: imported.date_of_birth.clone(),
            address: imported.address.clone(),
            preferences: imported.preferences.clone(),
            created_at: imported.created_at.clone(),
            updated_at: imported.updated_at.clone(),
            full_name: imported.full_name.clone(),
            version: sequence,
        }),
        CustomerEvent::CustomerUpdated(updated) => Some(CustomerSnapshot {
            id: updated.customer_id,
            email: updated.email.clone(),
            first_name: updated.first_name.clone(),
            last_name: updated.last_name.clone(),
            phone: updated.phone.clone(),
            is_active: updated.is_active,
            date_of_birth: updated.date_of_birth.clone(),
            address: updated.address.clone(),
            preferences: updated.preferences.clone(),
            created_at: updated.previous_data.created_at.clone(),
            updated_at: updated.updated_at.clone(),
            full_name: updated.full_name.clone(),
            version: sequence,
        }),
        // Both follow the CustomerUpdated of the same change, which already holds the flag;
        // they only count as one more event.
        CustomerEvent::CustomerActivated(_) => before.map(|customer| CustomerSnapshot {
            is_active: true,
            version: sequence,
            ..customer
        }),
        CustomerEvent::CustomerDeactivated(_) => before.map(|customer| CustomerSnapshot {
            is_active: false,
            version: sequence,
            ..customer
        }),
        CustomerEvent::CustomerDeleted(_) | CustomerEvent::CustomerErased(_) => None,
        // A saga's events, never in a customer's own sequence: nothing changes.
        CustomerEvent::CustomerErasureRequested(_) | CustomerEvent::CustomerErasureCompleted(_) => {
            before
        }
    }
}

/// The customer after all of `events`, which must be one customer's, in sequence order.
pub fn fold<'a>(
    events: impl IntoIterator<Item = &'a Envelope<CustomerEvent>>,
) -> Option<CustomerSnapshot> {
    events.into_iter().fold(None, |customer, envelope| {
        apply(customer, &envelope.data, envelope.metadata.sequence)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::versions::ReadError;

    fn envelope(event_type: &str, sequence: i64, data: serde_json::Value) -> String {
        json!({
            "eventType": event_type, "eventId": format!("{event_type}_1_abcdefghi"),
            "occurredOn": "2026-01-01T10:00:00.000Z", "data": data,
            "metadata": {"eventId": format!("{event_type}_1_abcdefghi"), "eventType": event_type,
                         "occurredOn": "2026-01-01T10:00:00.000Z", "version": "1.0",
                         "aggregateId": 7, "sequence": sequence, "correlationId": "c",
                         "source": "customer-service"}
        })
        .to_string()
    }

    fn created() -> serde_json::Value {
        json!({"customerId": 7, "email": "a@b.co", "firstName": "Ann", "lastName": "Lee",
               "fullName": "Ann Lee", "phone": null, "isActive": true, "dateOfBirth": null,
               "address": null, "preferences": null, "createdAt": "2026-01-01T10:00:00.000Z"})
    }

    fn read(json: &str) -> Envelope<CustomerEvent> {
        Envelope::from_json(json).expect("envelope")
    }

    #[test]
    fn a_customer_is_rebuilt_through_every_kind_of_event() {
        let snapshot_before: serde_json::Value = json!({
            "id": 7, "email": "a@b.co", "firstName": "Ann", "lastName": "Lee", "phone": null,
            "isActive": true, "dateOfBirth": null, "address": null, "preferences": null,
            "createdAt": "2026-01-01T10:00:00.000Z", "updatedAt": "2026-01-01T10:00:00.000Z",
            "fullName": "Ann Lee", "version": 1});
        let events = [
            read(&envelope("CustomerCreated", 1, created())),
            read(&envelope(
                "CustomerUpdated",
                2,
                json!({"customerId": 7, "email": "a@b.co", "firstName": "Ann", "lastName": "Lim",
                       "fullName": "Ann Lim", "phone": null, "isActive": false, "dateOfBirth": null,
                       "address": null, "preferences": null, "updatedAt": "2026-01-02T10:00:00.000Z",
                       "previousData": snapshot_before,
                       "changes": {"lastName": {"old": "Lee", "new": "Lim"},
                                   "isActive": {"old": true, "new": false}}}),
            )),
            read(&envelope(
                "CustomerDeactivated",
                3,
                json!({"customerId": 7, "email": "a@b.co", "fullName": "Ann Lim",
                       "reason": "Updated by user", "deactivatedAt": "2026-01-02T10:00:00.000Z"}),
            )),
        ];
        let after_create = fold(&events[..1]).expect("created");
        assert_eq!(
            serde_json::to_value(&after_create).unwrap(),
            snapshot_before,
            "the created customer is exactly its API representation"
        );
        let now = fold(&events).expect("still there");
        assert_eq!(
            (now.last_name.as_str(), now.is_active, now.version),
            ("Lim", false, 3)
        );
        assert_eq!(now.created_at, "2026-01-01T10:00:00.000Z");
        assert_eq!(now.updated_at, "2026-01-02T10:00:00.000Z");

        let deleted = read(&envelope(
            "CustomerDeleted",
            4,
            json!({"customerId": 7, "email": "a@b.co", "fullName": "Ann Lim",
                   "deletedAt": "2026-01-03T10:00:00.000Z"}),
        ));
        assert_eq!(fold(events.iter().chain([&deleted])), None);
    }

    #[test]
    fn unreadable_envelopes_say_why() {
        assert!(matches!(Envelope::from_json("{}"), Err(ReadError::Json(_))));
        let unknown = envelope("CustomerMerged", 1, json!({}));
        match Envelope::from_json(&unknown) {
            Err(ReadError::UnknownType(name)) => assert_eq!(name, "CustomerMerged"),
            other => panic!("{other:?}"),
        }
    }
}
