//! A customer's past: its events, and the customer as it was at an instant, folded from them.

use customer_events::{CustomerEvent, CustomerSnapshot, Envelope};

use crate::domain::{CustomerId, DomainError, FieldErrors, Timestamp};

use super::error::ApplicationError;
use super::ports::{CustomerStore, StoreError, StoredEvent};

/// The customer's events in sequence order, also after its deletion; `NotFound` if it never
/// existed.
#[tracing::instrument(name = "customer_history", skip_all, fields(customer.id = %id))]
pub async fn customer_history(
    store: &dyn CustomerStore,
    id: CustomerId,
) -> Result<Vec<StoredEvent>, ApplicationError> {
    let events = store.events_of(id).await?;
    if events.is_empty() {
        return Err(ApplicationError::NotFound);
    }
    Ok(events)
}

/// `asOf` as the client sent it: an RFC 3339 date-time (`2026-01-01T10:00:00Z`,
/// `2026-01-01T12:00:00.250+02:00`).
pub fn parse_as_of(raw: &str) -> Result<Timestamp, ApplicationError> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|at| Timestamp::from_datetime(at.to_utc()))
        .map_err(|_| {
            let mut errors = FieldErrors::new();
            errors.add(
                "asOf",
                "asOf must be an ISO 8601 date-time with a time zone, e.g. 2026-01-01T10:00:00Z",
            );
            DomainError::Validation(errors).into()
        })
}

/// The customer as it was at `at` (its events up to and including that millisecond);
/// `NotFound` before its creation or after its deletion.
#[tracing::instrument(name = "customer_as_of", skip_all, fields(customer.id = %id))]
pub async fn customer_as_of(
    store: &dyn CustomerStore,
    id: CustomerId,
    at: Timestamp,
) -> Result<CustomerSnapshot, ApplicationError> {
    let events = store.events_of(id).await?;
    let mut customer = None;
    for event in events.iter().take_while(|event| event.occurred_at <= at) {
        let envelope = read_envelope(event)?;
        customer = customer_events::apply(customer, &envelope.data, event.sequence);
    }
    customer.ok_or(ApplicationError::NotFound)
}

/// A stored event's envelope. One that does not read is corrupted data: a 500, logged.
pub fn read_envelope(event: &StoredEvent) -> Result<Envelope<CustomerEvent>, ApplicationError> {
    Envelope::from_json(&event.payload).map_err(|error| {
        ApplicationError::Internal(StoreError::Other(
            format!(
                "event at position {} is unreadable: {error}",
                event.position
            )
            .into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_takes_rfc_3339_with_any_offset_and_nothing_else() {
        assert_eq!(
            parse_as_of("2026-01-01T12:00:00.250+02:00").unwrap(),
            Timestamp::from_millis(1_767_261_600_250)
        );
        assert_eq!(
            parse_as_of("2026-01-01T10:00:00Z").unwrap(),
            Timestamp::from_millis(1_767_261_600_000)
        );
        for bad in ["2026-01-01", "2026-01-01T10:00:00", "yesterday", ""] {
            match parse_as_of(bad) {
                Err(ApplicationError::Domain(DomainError::Validation(errors))) => assert_eq!(
                    errors.of("asOf"),
                    ["asOf must be an ISO 8601 date-time with a time zone, e.g. 2026-01-01T10:00:00Z"]
                ),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
