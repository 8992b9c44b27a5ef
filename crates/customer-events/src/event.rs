//! The customer event types and their `data`, field for field as the contract lists them.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::snapshot::{Address, CustomerSnapshot};

/// The wire name of an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    CustomerCreated,
    CustomerUpdated,
    CustomerActivated,
    CustomerDeactivated,
    CustomerDeleted,
    CustomerErased,
    /// A customer brought over from the original service's database (`customer-service
    /// import`): its first event, in place of CustomerCreated.
    CustomerImported,
    /// The erasure saga asks one participant (another service) to erase a customer. Not a
    /// customer's event: its `metadata.aggregateId` is the saga's id, negated.
    CustomerErasureRequested,
    /// Every participant confirmed a customer's erasure.
    CustomerErasureCompleted,
}

impl EventType {
    /// Every event type this crate knows. A service newer than the crate may publish others:
    /// the consumer acknowledges and skips those (see `consumer.rs`).
    pub const ALL: [EventType; 9] = [
        EventType::CustomerCreated,
        EventType::CustomerImported,
        EventType::CustomerUpdated,
        EventType::CustomerActivated,
        EventType::CustomerDeactivated,
        EventType::CustomerDeleted,
        EventType::CustomerErased,
        EventType::CustomerErasureRequested,
        EventType::CustomerErasureCompleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CustomerCreated => "CustomerCreated",
            EventType::CustomerUpdated => "CustomerUpdated",
            EventType::CustomerActivated => "CustomerActivated",
            EventType::CustomerDeactivated => "CustomerDeactivated",
            EventType::CustomerDeleted => "CustomerDeleted",
            EventType::CustomerErased => "CustomerErased",
            EventType::CustomerImported => "CustomerImported",
            EventType::CustomerErasureRequested => "CustomerErasureRequested",
            EventType::CustomerErasureCompleted => "CustomerErasureCompleted",
        }
    }

    /// The schema version of this type's `data` that the service writes now
    /// (`metadata.version`). Older versions are read through [`crate::versions::upcast`].
    pub fn schema_version(self) -> &'static str {
        match self {
            // 1.1 added `actor`.
            EventType::CustomerDeactivated => "1.1",
            _ => "1.0",
        }
    }

    /// The saga aggregate whose events these are (`metadata.aggregateType`), or `None` for a
    /// customer's event (whose metadata has no such key).
    pub fn aggregate_type(self) -> Option<&'static str> {
        match self {
            EventType::CustomerErasureRequested | EventType::CustomerErasureCompleted => {
                Some(ERASURE_SAGA)
            }
            _ => None,
        }
    }

    /// The type with wire name `name`, if there is one.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// `metadata.aggregateType` of the erasure saga's events.
pub const ERASURE_SAGA: &str = "ErasureSaga";

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event's `data`. Serializes as the payload alone; the type travels in the envelope.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[expect(
    clippy::large_enum_variant,
    reason = "events are built once per write and moved rarely; boxes would only add friction for consumers that match on them"
)]
#[non_exhaustive]
pub enum CustomerEvent {
    CustomerCreated(CustomerCreated),
    CustomerImported(CustomerImported),
    CustomerUpdated(CustomerUpdated),
    CustomerActivated(CustomerActivated),
    CustomerDeactivated(CustomerDeactivated),
    CustomerDeleted(CustomerDeleted),
    CustomerErased(CustomerErased),
    CustomerErasureRequested(CustomerErasureRequested),
    CustomerErasureCompleted(CustomerErasureCompleted),
}

impl CustomerEvent {
    pub fn event_type(&self) -> EventType {
        match self {
            CustomerEvent::CustomerCreated(_) => EventType::CustomerCreated,
            CustomerEvent::CustomerImported(_) => EventType::CustomerImported,
            CustomerEvent::CustomerUpdated(_) => EventType::CustomerUpdated,
            CustomerEvent::CustomerActivated(_) => EventType::CustomerActivated,
            CustomerEvent::CustomerDeactivated(_) => EventType::CustomerDeactivated,
            CustomerEvent::CustomerDeleted(_) => EventType::CustomerDeleted,
            CustomerEvent::CustomerErased(_) => EventType::CustomerErased,
            CustomerEvent::CustomerErasureRequested(_) => EventType::CustomerErasureRequested,
            CustomerEvent::CustomerErasureCompleted(_) => EventType::CustomerErasureCompleted,
        }
    }

    /// Reads the `data` of an event of type `event_type` (the envelope's `eventType`).
    pub fn from_data(event_type: EventType, data: Value) -> Result<Self, serde_json::Error> {
        Ok(match event_type {
            EventType::CustomerCreated => {
                CustomerEvent::CustomerCreated(serde_json::from_value(data)?)
            }
            EventType::CustomerUpdated => {
                CustomerEvent::CustomerUpdated(serde_json::from_value(data)?)
            }
            EventType::CustomerActivated => {
                CustomerEvent::CustomerActivated(serde_json::from_value(data)?)
            }
            EventType::CustomerDeactivated => {
                CustomerEvent::CustomerDeactivated(serde_json::from_value(data)?)
            }
            EventType::CustomerDeleted => {
                CustomerEvent::CustomerDeleted(serde_json::from_value(data)?)
            }
            EventType::CustomerErased => {
                CustomerEvent::CustomerErased(serde_json::from_value(data)?)
            }
            EventType::CustomerImported => {
                CustomerEvent::CustomerImported(serde_json::from_value(data)?)
            }
            EventType::CustomerErasureRequested => {
                CustomerEvent::CustomerErasureRequested(serde_json::from_value(data)?)
            }
            EventType::CustomerErasureCompleted => {
                CustomerEvent::CustomerErasureCompleted(serde_json::from_value(data)?)
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct CustomerCreated {
    pub customer_id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub full_name: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub date_of_birth: Option<String>,
    pub address: Option<Address>,
    pub preferences: Option<Map<String, Value>>,
    pub created_at: String,
}

/// A customer brought over from the original service's database: CustomerCreated's data,
/// with the customer's original `createdAt` and `updatedAt` (the event's `occurredOn` is the
/// import's time). Consumers that greet new sign-ups on CustomerCreated are not set off by
/// customers who signed up long ago; a consumer that keeps a copy of customers treats it as
/// a creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct CustomerImported {
    pub customer_id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub full_name: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub date_of_birth: Option<String>,
    pub address: Option<Address>,
    pub preferences: Option<Map<String, Value>>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct CustomerUpdated {
    pub customer_id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub full_name: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub date_of_birth: Option<String>,
    pub address: Option<Address>,
    pub preferences: Option<Map<String, Value>>,
    pub updated_at: String,
    /// The whole customer before the change.
    pub previous_data: CustomerSnapshot,
    /// Exactly the fields whose value changed (never `updatedAt`).
    pub changes: Changes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct CustomerActivated {
    pub customer_id: i64,
    pub email: String,
    pub full_name: String,
    pub activated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct CustomerDeactivated {
    pub customer_id: i64,
    pub email: String,
    pub full_name: String,
    /// Why: "Updated by user" for a PATCH.
    pub reason: String,
    pub deactivated_at: String,
    /// Since 1.1: who deactivated the customer (the authenticated subject), `null` when the
    /// request was not authenticated.
    pub actor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct CustomerDeleted {
    pub customer_id: i64,
    pub email: String,
    pub full_name: String,
    pub deleted_at: String,
}

/// The customer's personal data was erased (GDPR): every earlier event of it now carries
/// [`crate::erasure::ERASED`] instead. Carries no personal data itself; a consumer erases its
/// own copy on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct CustomerErased {
    pub customer_id: i64,
    pub erased_at: String,
}

/// The erasure saga asks `participant` to erase customer `customer_id` and to answer on the
/// reply stream with `sagaId`, `participant` and `token`. Asked again (same token, next
/// `attempt`) while no answer came; a new token after `customer-service sagas retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct CustomerErasureRequested {
    pub saga_id: i64,
    pub customer_id: i64,
    pub participant: String,
    /// Random; a reply must carry it back.
    pub token: String,
    /// 1 for the first request with this token, then +1 per reminder.
    pub attempt: i64,
    /// When the saga began (the customer's erasure here).
    pub requested_at: String,
    /// The saga fails if not every participant has confirmed by then.
    pub deadline: String,
}

/// Every participant of an erasure saga confirmed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct CustomerErasureCompleted {
    pub saga_id: i64,
    pub customer_id: i64,
    /// When the saga began.
    pub requested_at: String,
    pub completed_at: String,
    /// Each participant and when its confirmation arrived, in the configured order.
    pub confirmations: Vec<ErasureConfirmation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[serde(rename_all = "camelCase")]
pub struct ErasureConfirmation {
    pub participant: String,
    pub confirmed_at: String,
}

/// One changed field: its camelCase name and the value before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// `{"<field>": {"old": …, "new": …}}`, in the order the fields appear in the customer.
///
/// A list rather than a map so that the order survives serialization without pulling
/// `serde_json`'s `preserve_order` into every consumer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Changes(pub Vec<FieldChange>);

impl Changes {
    pub fn get(&self, field: &str) -> Option<&FieldChange> {
        self.0.iter().find(|c| c.field == field)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Changes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Changes".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Exactly the fields whose value changed, in customer field order: {\"<field>\": {\"old\": …, \"new\": …}}",
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"old": true, "new": true},
                "required": ["old", "new"],
                "additionalProperties": false
            }
        })
    }
}

#[derive(Serialize, Deserialize)]
struct OldNew<T> {
    old: T,
    new: T,
}

impl Serialize for Changes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for change in &self.0 {
            map.serialize_entry(
                &change.field,
                &OldNew {
                    old: &change.old,
                    new: &change.new,
                },
            )?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Changes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChangesVisitor;

        impl<'de> Visitor<'de> for ChangesVisitor {
            type Value = Changes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of field names to {\"old\", \"new\"}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Changes, A::Error> {
                let mut changes = Vec::new();
                while let Some((field, OldNew { old, new })) =
                    access.next_entry::<String, OldNew<Value>>()?
                {
                    changes.push(FieldChange { field, old, new });
                }
                Ok(Changes(changes))
            }
        }

        deserializer.deserialize_map(ChangesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_keep_their_order_through_a_round_trip() {
        let changes = Changes(vec![
            FieldChange {
                field: "lastName".into(),
                old: json!("Doe"),
                new: json!("Roe"),
            },
            FieldChange {
                field: "isActive".into(),
                old: json!(true),
                new: json!(false),
            },
        ]);
        let text = serde_json::to_string(&changes).unwrap();
        assert_eq!(
            text,
            r#"{"lastName":{"old":"Doe","new":"Roe"},"isActive":{"old":true,"new":false}}"#
        );
        assert_eq!(serde_json::from_str::<Changes>(&text).unwrap(), changes);
    }

    #[test]
    fn every_event_type_round_trips_by_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("CustomerMerged"), None);
    }
}
