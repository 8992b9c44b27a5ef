//! The wire envelope: `{"eventType","eventId","occurredOn","data","metadata"}`, compact JSON
//! with keys in exactly this order (struct field order is serialization order).

use serde::{Deserialize, Serialize};

use crate::event::{CustomerEvent, EventType};

/// `metadata.source` of every event this service emits.
pub const SOURCE: &str = "customer-service";

/// One event as published. `D` is the payload: a [`CustomerEvent`] when producing, or
/// `serde_json::Value` for a consumer that dispatches on `event_type` itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct Envelope<D> {
    pub event_type: String,
    pub event_id: String,
    pub occurred_on: String,
    pub data: D,
    pub metadata: Metadata,
}

/// The envelope's `metadata`. `event_id`, `event_type` and `occurred_on` repeat the top-level
/// values (the original's subscribers read them from either place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub event_id: String,
    pub event_type: String,
    pub occurred_on: String,
    /// Schema version of this event type's `data`.
    pub version: String,
    /// The customer id; for a saga's events (those with `aggregate_type`), the saga's id
    /// negated (saga 7: -7), so that it never equals a customer's.
    pub aggregate_id: i64,
    /// Absent for a customer's events; the saga's kind (`ErasureSaga`) for a saga's, whose
    /// `aggregate_id` and `sequence` are then the saga's own numbering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_type: Option<String>,
    /// The aggregate's event number: 1 for CustomerCreated, then +1 per event, no gaps.
    pub sequence: i64,
    /// The `X-Correlation-ID` of the request that caused the event.
    pub correlation_id: String,
    pub source: String,
    /// Who caused the event (the authenticated subject); absent when the service runs
    /// without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl Envelope<CustomerEvent> {
    /// Wraps `event` of customer `aggregate_id` in its envelope.
    pub fn new(
        event: CustomerEvent,
        event_id: String,
        occurred_on: String,
        aggregate_id: i64,
        sequence: i64,
        correlation_id: String,
    ) -> Self {
        let event_type = event.event_type().as_str().to_owned();
        Envelope {
            metadata: Metadata {
                event_id: event_id.clone(),
                event_type: event_type.clone(),
                occurred_on: occurred_on.clone(),
                version: event.event_type().schema_version().to_owned(),
                aggregate_id,
                aggregate_type: event.event_type().aggregate_type().map(str::to_owned),
                sequence,
                correlation_id,
                source: SOURCE.to_owned(),
                actor: None,
            },
            event_type,
            event_id,
            occurred_on,
            data: event,
        }
    }

    /// Records who caused the event in `metadata.actor`.
    pub fn with_actor(mut self, actor: Option<String>) -> Self {
        self.metadata.actor = actor;
        self
    }
}

impl<D: Serialize> Envelope<D> {
    /// The compact JSON text that every sink carries unchanged.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope holds only strings, numbers and maps")
    }
}

/// A new `eventId`: `<eventType>_<unix ms>_<9 chars of [0-9a-z]>`.
///
/// The suffix takes 9 base-36 digits (~46 bits) of a random v4 UUID, so two events of one
/// type in the same millisecond collide with negligible probability; the event log's unique
/// index on `event_id` turns even that into a retried write rather than a duplicate.
pub fn new_event_id(event_type: EventType, unix_ms: i64) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut random = uuid::Uuid::new_v4().as_u128();
    let mut suffix = [0u8; 9];
    for slot in &mut suffix {
        *slot = ALPHABET[(random % 36) as usize];
        random /= 36;
    }
    let suffix = std::str::from_utf8(&suffix).expect("the alphabet is ASCII");
    format!("{}_{unix_ms}_{suffix}", event_type.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CustomerDeleted;

    #[test]
    fn an_event_id_has_the_contract_shape() {
        let id = new_event_id(EventType::CustomerCreated, 1_729_267_200_000);
        let (prefix, suffix) = id.rsplit_once('_').unwrap();
        assert_eq!(prefix, "CustomerCreated_1729267200000");
        assert_eq!(suffix.len(), 9);
        assert!(suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
    }

    #[test]
    fn event_ids_do_not_repeat() {
        let ids: std::collections::HashSet<_> = (0..10_000)
            .map(|_| new_event_id(EventType::CustomerDeleted, 1))
            .collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn the_envelope_is_compact_json_with_keys_in_contract_order() {
        let event = CustomerEvent::CustomerDeleted(CustomerDeleted {
            customer_id: 7,
            email: "a@b.co".into(),
            full_name: "Ann Lee".into(),
            deleted_at: "2026-01-01T10:00:00.000Z".into(),
        });
        let json = Envelope::new(
            event,
            "CustomerDeleted_1_abcdefghi".into(),
            "2026-01-01T10:00:00.000Z".into(),
            7,
            3,
            "corr-1".into(),
        )
        .to_json();
        assert_eq!(
            json,
            r#"{"eventType":"CustomerDeleted","eventId":"CustomerDeleted_1_abcdefghi","occurredOn":"2026-01-01T10:00:00.000Z","data":{"customerId":7,"email":"a@b.co","fullName":"Ann Lee","deletedAt":"2026-01-01T10:00:00.000Z"},"metadata":{"eventId":"CustomerDeleted_1_abcdefghi","eventType":"CustomerDeleted","occurredOn":"2026-01-01T10:00:00.000Z","version":"1.0","aggregateId":7,"sequence":3,"correlationId":"corr-1","source":"customer-service"}}"#
        );
    }
}
