//! Schema versions: every version of every event type ever published, and the chain of small
//! functions that lifts an old one to the current type.
//!
//! Rules for evolving an event type: only add fields (consumers ignore unknown ones); bump
//! the minor version; keep the old version's struct here and add one upcast step from it.
//! A consumer built against this crate then reads every event ever published.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Envelope;
use crate::event::{CustomerEvent, EventType};

/// Every `(eventType, metadata.version)` the service has ever written, oldest first per type.
pub const PUBLISHED_VERSIONS: [(EventType, &str); 10] = [
    (EventType::CustomerCreated, "1.0"),
    (EventType::CustomerUpdated, "1.0"),
    (EventType::CustomerActivated, "1.0"),
    (EventType::CustomerDeactivated, "1.0"),
    (EventType::CustomerDeactivated, "1.1"),
    (EventType::CustomerDeleted, "1.0"),
    (EventType::CustomerErased, "1.0"),
    (EventType::CustomerImported, "1.0"),
    (EventType::CustomerErasureRequested, "1.0"),
    (EventType::CustomerErasureCompleted, "1.0"),
];

/// Data structs of versions that are no longer written.
pub mod v1_0 {
    use super::*;

    /// CustomerDeactivated as published until version 1.1 added `actor`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct CustomerDeactivated {
        pub customer_id: i64,
        pub email: String,
        pub full_name: String,
        pub reason: String,
        pub deactivated_at: String,
    }

    impl From<CustomerDeactivated> for crate::event::CustomerDeactivated {
        /// 1.0 → 1.1: events of 1.0 were never authenticated, so no actor.
        fn from(old: CustomerDeactivated) -> Self {
            crate::event::CustomerDeactivated {
                customer_id: old.customer_id,
                email: old.email,
                full_name: old.full_name,
                reason: old.reason,
                deactivated_at: old.deactivated_at,
                actor: None,
            }
        }
    }
}

/// One step up the chain: `data` of `event_type` at `version`, as the next version's data.
fn step(event_type: EventType, version: &str, data: Value) -> Result<(String, Value), ReadError> {
    match (event_type, version) {
        (EventType::CustomerDeactivated, "1.0") => {
            let old: v1_0::CustomerDeactivated =
                serde_json::from_value(data).map_err(ReadError::Json)?;
            let new = crate::event::CustomerDeactivated::from(old);
            Ok((
                "1.1".to_owned(),
                serde_json::to_value(new).map_err(ReadError::Json)?,
            ))
        }
        _ => Err(ReadError::UnknownVersion {
            event_type: event_type.as_str().to_owned(),
            version: version.to_owned(),
        }),
    }
}

/// Reads `data` of `event_type` written at schema `version`, as the current type.
pub fn upcast(
    event_type: EventType,
    version: &str,
    data: Value,
) -> Result<CustomerEvent, ReadError> {
    let mut version = version.to_owned();
    let mut data = data;
    while version != event_type.schema_version() {
        (version, data) = step(event_type, &version, data)?;
    }
    CustomerEvent::from_data(event_type, data).map_err(ReadError::Json)
}

/// Why a stored or received envelope could not be read as a customer event.
#[derive(Debug)]
pub enum ReadError {
    /// Not an envelope: malformed JSON or missing keys.
    Json(serde_json::Error),
    /// An `eventType` this crate does not know.
    UnknownType(String),
    /// A schema version of a known type that this crate cannot read (newer than it).
    UnknownVersion { event_type: String, version: String },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Json(error) => write!(f, "not a customer event envelope: {error}"),
            ReadError::UnknownType(name) => write!(f, "unknown event type {name:?}"),
            ReadError::UnknownVersion {
                event_type,
                version,
            } => write!(f, "unknown version {version:?} of {event_type}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Json(error) => Some(error),
            ReadError::UnknownType(_) | ReadError::UnknownVersion { .. } => None,
        }
    }
}

impl Envelope<CustomerEvent> {
    /// Reads an envelope as published (or as stored in the service's event log), of any
    /// schema version ever published: older `data` is upcast to the current type, and
    /// `metadata.version` then names the current version.
    pub fn from_json(json: &str) -> Result<Self, ReadError> {
        // Deeper than serde_json's default limit: what the service stored, it must read.
        let raw: Envelope<serde_json::Value> =
            crate::json::from_str(json).map_err(ReadError::Json)?;
        let event_type = EventType::parse(&raw.event_type)
            .ok_or_else(|| ReadError::UnknownType(raw.event_type.clone()))?;
        let data = upcast(event_type, &raw.metadata.version, raw.data)?;
        let mut metadata = raw.metadata;
        event_type
            .schema_version()
            .clone_into(&mut metadata.version);
        Ok(Envelope {
            event_type: raw.event_type,
            event_id: raw.event_id,
            occurred_on: raw.occurred_on,
            data,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envelope::Envelope;

    /// A CustomerDeactivated envelope exactly as version 1.0 was stored and published.
    const STORED_1_0: &str = r#"{"eventType":"CustomerDeactivated","eventId":"CustomerDeactivated_1767261600000_abcdefghi","occurredOn":"2026-01-01T10:00:00.000Z","data":{"customerId":7,"email":"a@b.co","fullName":"Ann Lee","reason":"Updated by user","deactivatedAt":"2026-01-01T10:00:00.000Z"},"metadata":{"eventId":"CustomerDeactivated_1767261600000_abcdefghi","eventType":"CustomerDeactivated","occurredOn":"2026-01-01T10:00:00.000Z","version":"1.0","aggregateId":7,"sequence":3,"correlationId":"c","source":"customer-service"}}"#;

    #[test]
    fn a_stored_1_0_deactivation_reads_as_1_1_without_an_actor() {
        let envelope = Envelope::from_json(STORED_1_0).expect("1.0 reads");
        assert_eq!(
            envelope.metadata.version, "1.1",
            "upcast to the current version"
        );
        match envelope.data {
            CustomerEvent::CustomerDeactivated(event) => {
                assert_eq!(event.actor, None);
                assert_eq!(event.reason, "Updated by user");
                assert_eq!(event.customer_id, 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn current_versions_pass_through_and_unknown_ones_are_refused() {
        let data = json!({"customerId": 7, "email": "a@b.co", "fullName": "Ann Lee",
                          "reason": "r", "deactivatedAt": "t", "actor": "admin-1"});
        match upcast(EventType::CustomerDeactivated, "1.1", data.clone()).unwrap() {
            CustomerEvent::CustomerDeactivated(event) => {
                assert_eq!(event.actor.as_deref(), Some("admin-1"))
            }
            other => panic!("{other:?}"),
        }
        let refused = upcast(EventType::CustomerDeactivated, "2.0", data);
        assert!(
            matches!(&refused, Err(ReadError::UnknownVersion { version, .. }) if version == "2.0"),
            "{refused:?}"
        );
        // A 1.0 body with a field 1.0 never had is not silently accepted.
        let bad = json!({"customerId": 7, "email": "a@b.co", "fullName": "Ann Lee",
                         "reason": "r", "deactivatedAt": "t", "extra": 1});
        assert!(upcast(EventType::CustomerDeactivated, "1.0", bad).is_err());
    }

    #[test]
    fn every_published_version_is_readable_and_the_latest_is_current() {
        for event_type in EventType::ALL {
            let versions: Vec<&str> = PUBLISHED_VERSIONS
                .iter()
                .filter(|(t, _)| *t == event_type)
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(versions.last(), Some(&event_type.schema_version()));
        }
    }
}
