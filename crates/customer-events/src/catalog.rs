//! The event catalog (feature `schema`): for every event type and every schema version ever
//! published, a description, the JSON Schema (draft 2020-12) of its whole envelope, and an
//! example envelope.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{json, Value};

use crate::envelope::{Envelope, Metadata, SOURCE};
use crate::event::{
    Changes, CustomerActivated, CustomerCreated, CustomerDeactivated, CustomerDeleted,
    CustomerErased, CustomerErasureCompleted, CustomerErasureRequested, CustomerImported,
    CustomerUpdated, ErasureConfirmation, EventType, FieldChange,
};
use crate::snapshot::{Address, CustomerSnapshot};
use crate::versions::{v1_0, PUBLISHED_VERSIONS};

/// One event type at one schema version.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    pub event_type: &'static str,
    pub version: &'static str,
    /// Whether the service writes this version now (older ones are upcast when read).
    pub current: bool,
    pub description: &'static str,
    /// JSON Schema of the envelope with this type's `data`.
    pub schema: Value,
    /// An envelope of this type and version.
    pub example: Value,
}

fn description(event_type: EventType, version: &str) -> &'static str {
    match (event_type, version) {
        (EventType::CustomerCreated, _) => {
            "A customer was created (POST). data: the whole customer, with createdAt."
        }
        (EventType::CustomerImported, _) => {
            "A customer was brought over from the original service's database \
             (customer-service import): its first event, instead of CustomerCreated, so that \
             sign-up reactions (welcome e-mails) are not set off for customers who signed up \
             long ago. data: the whole customer as CustomerCreated carries it, with its \
             original createdAt and updatedAt; occurredOn is the import's time. Treat it as a \
             creation when keeping a copy of customers."
        }
        (EventType::CustomerUpdated, _) => {
            "A customer was changed (PATCH). data: the whole customer after the change, with \
             updatedAt, previousData (the customer before) and changes (exactly the changed \
             fields, old and new)."
        }
        (EventType::CustomerActivated, _) => {
            "isActive turned true in a PATCH; follows that change's CustomerUpdated."
        }
        (EventType::CustomerDeactivated, "1.0") => {
            "isActive turned false in a PATCH; follows that change's CustomerUpdated. \
             Superseded by 1.1."
        }
        (EventType::CustomerDeactivated, _) => {
            "isActive turned false in a PATCH; follows that change's CustomerUpdated. 1.1 \
             added actor: who deactivated (the authenticated subject), null without \
             authentication."
        }
        (EventType::CustomerDeleted, _) => {
            "A customer was deleted (DELETE); only CustomerErased can follow."
        }
        (EventType::CustomerErased, _) => {
            "The customer's personal data was erased (DELETE ?erase=true): in every stored \
             event of it, e-mail, names, phone, date of birth and address now read \
             \"[erased]\" (address: null). Erase your copy too. Carries no personal data."
        }
        (EventType::CustomerErasureRequested, _) => {
            "The erasure saga asks one participant service to erase a customer (sent after \
             the customer's erasure here committed). Only the participant named in data \
             acts: it erases its copy of customerId and answers on the reply stream \
             (<EVENT_STREAM>:erasure-replies) with sagaId, participant, token and outcome \
             erased | failed. Repeated with the same token (attempt + 1) until answered. A \
             saga's event: metadata.aggregateId is the saga's id negated, aggregateType \
             ErasureSaga. Carries no personal data."
        }
        (EventType::CustomerErasureCompleted, _) => {
            "Every participant confirmed a customer's erasure: the record that it is erased \
             everywhere, with each confirmation's time. A saga's event (see \
             CustomerErasureRequested). Carries no personal data."
        }
    }
}

fn schema_of<D: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(Envelope<D>)).unwrap_or(Value::Null)
}

/// The JSON Schema of `event_type`'s envelope at `version`: the derived schema, with the
/// type and version pinned (top-level `eventType`, `metadata.eventType`, `metadata.version`).
fn schema(event_type: EventType, version: &str) -> Value {
    let mut schema = derived_schema(event_type, version);
    let name = event_type.as_str();
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("eventType".into(), json!({"const": name}));
        properties.insert(
            "metadata".into(),
            json!({
                "$ref": "#/$defs/Metadata",
                "properties": {"eventType": {"const": name}, "version": {"const": version}}
            }),
        );
    }
    schema
}

fn derived_schema(event_type: EventType, version: &str) -> Value {
    match (event_type, version) {
        (EventType::CustomerCreated, _) => schema_of::<CustomerCreated>(),
        (EventType::CustomerImported, _) => schema_of::<CustomerImported>(),
        (EventType::CustomerUpdated, _) => schema_of::<CustomerUpdated>(),
        (EventType::CustomerActivated, _) => schema_of::<CustomerActivated>(),
        (EventType::CustomerDeactivated, "1.0") => schema_of::<v1_0::CustomerDeactivated>(),
        (EventType::CustomerDeactivated, _) => schema_of::<CustomerDeactivated>(),
        (EventType::CustomerDeleted, _) => schema_of::<CustomerDeleted>(),
        (EventType::CustomerErased, _) => schema_of::<CustomerErased>(),
        (EventType::CustomerErasureRequested, _) => schema_of::<CustomerErasureRequested>(),
        (EventType::CustomerErasureCompleted, _) => schema_of::<CustomerErasureCompleted>(),
    }
}

const AT: &str = "2026-01-01T10:00:00.000Z";
const LATER: &str = "2026-01-02T09:30:00.000Z";

fn example_customer() -> CustomerSnapshot {
    CustomerSnapshot {
        id: 42,
        email: "ada@example.com".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        phone: Some("+44-20-7946-0000".into()),
        is_active: true,
        date_of_birth: Some("1990-12-10".into()),
        address: Some(Address {
            street: "12 St James's Square".into(),
            city: "London".into(),
            state: None,
            zip_code: Some("SW1Y 4JH".into()),
            country: "UK".into(),
        }),
        preferences: json!({"newsletter": true, "preferredContact": "email"})
            .as_object()
            .cloned(),
        created_at: AT.into(),
        updated_at: AT.into(),
        full_name: "Ada Lovelace".into(),
        version: 1,
    }
}

fn example_data(event_type: EventType, version: &str) -> Value {
    let ada = example_customer();
    let value = match (event_type, version) {
        (EventType::CustomerCreated, _) => serde_json::to_value(CustomerCreated {
            customer_id: ada.id,
            email: ada.email,
            first_name: ada.first_name,
            last_name: ada.last_name,
            full_name: ada.full_name,
            phone: ada.phone,
            is_active: ada.is_active,
            date_of_birth: ada.date_of_birth,
            address: ada.address,
            preferences: ada.preferences,
            created_at: ada.created_at,
        }),
        (EventType::CustomerImported, _) => serde_json::to_value(CustomerImported {
            customer_id: ada.id,
            email: ada.email,
            first_name: ada.first_name,
            last_name: ada.last_name,
            full_name: ada.full_name,
            phone: ada.phone,
            is_active: ada.is_active,
            date_of_birth: ada.date_of_birth,
            address: ada.address,
            preferences: ada.preferences,
            created_at: "2019-03-14T08:21:07.114Z".into(),
            updated_at: "2024-11-02T17:45:51.020Z".into(),
        }),
        (EventType::CustomerUpdated, _) => serde_json::to_value(CustomerUpdated {
            customer_id: ada.id,
            email: ada.email.clone(),
            first_name: ada.first_name.clone(),
            last_name: "King".into(),
            full_name: "Ada King".into(),
            phone: ada.phone.clone(),
            is_active: ada.is_active,
            date_of_birth: ada.date_of_birth.clone(),
            address: ada.address.clone(),
            preferences: ada.preferences.clone(),
            updated_at: LATER.into(),
            changes: Changes(vec![FieldChange {
                field: "lastName".into(),
                old: json!("Lovelace"),
                new: json!("King"),
            }]),
            previous_data: ada,
        }),
        (EventType::CustomerActivated, _) => serde_json::to_value(CustomerActivated {
            customer_id: ada.id,
            email: ada.email,
            full_name: ada.full_name,
            activated_at: LATER.into(),
        }),
        (EventType::CustomerDeactivated, "1.0") => {
            serde_json::to_value(v1_0::CustomerDeactivated {
                customer_id: ada.id,
                email: ada.email,
                full_name: ada.full_name,
                reason: "Updated by user".into(),
                deactivated_at: LATER.into(),
            })
        }
        (EventType::CustomerDeactivated, _) => serde_json::to_value(CustomerDeactivated {
            customer_id: ada.id,
            email: ada.email,
            full_name: ada.full_name,
            reason: "Updated by user".into(),
            deactivated_at: LATER.into(),
            actor: Some("admin@example.com".into()),
        }),
        (EventType::CustomerErased, _) => serde_json::to_value(CustomerErased {
            customer_id: ada.id,
            erased_at: LATER.into(),
        }),
        (EventType::CustomerDeleted, _) => serde_json::to_value(CustomerDeleted {
            customer_id: ada.id,
            email: ada.email,
            full_name: ada.full_name,
            deleted_at: LATER.into(),
        }),
        (EventType::CustomerErasureRequested, _) => {
            serde_json::to_value(CustomerErasureRequested {
                saga_id: 7,
                customer_id: ada.id,
                participant: "billing".into(),
                token: "5f0c9a3e8b7d4c21a6e2f1b0d9c8e7a6".into(),
                attempt: 1,
                requested_at: AT.into(),
                deadline: "2026-01-31T10:00:00.000Z".into(),
            })
        }
        (EventType::CustomerErasureCompleted, _) => {
            serde_json::to_value(CustomerErasureCompleted {
                saga_id: 7,
                customer_id: ada.id,
                requested_at: AT.into(),
                completed_at: LATER.into(),
                confirmations: vec![
                    ErasureConfirmation {
                        participant: "billing".into(),
                        confirmed_at: "2026-01-01T10:00:02.000Z".into(),
                    },
                    ErasureConfirmation {
                        participant: "email".into(),
                        confirmed_at: LATER.into(),
                    },
                ],
            })
        }
    };
    value.unwrap_or(Value::Null)
}

fn example(event_type: EventType, version: &'static str) -> Value {
    let event_id = format!("{}_1767261600000_k3x9q2m7a", event_type.as_str());
    let envelope = Envelope {
        event_type: event_type.as_str().to_owned(),
        event_id: event_id.clone(),
        occurred_on: AT.to_owned(),
        data: example_data(event_type, version),
        metadata: Metadata {
            event_id,
            event_type: event_type.as_str().to_owned(),
            occurred_on: AT.to_owned(),
            version: version.to_owned(),
            aggregate_id: if event_type.aggregate_type().is_some() {
                -7
            } else {
                42
            },
            aggregate_type: event_type.aggregate_type().map(str::to_owned),
            sequence: 1,
            correlation_id: "9f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b".to_owned(),
            source: SOURCE.to_owned(),
            // A saga's events are caused by no request: no actor.
            actor: event_type
                .aggregate_type()
                .is_none()
                .then(|| "admin@example.com".to_owned()),
        },
    };
    serde_json::to_value(envelope).unwrap_or(Value::Null)
}

/// Every event type at every version ever published, oldest version first per type.
pub fn catalog() -> Vec<CatalogEntry> {
    PUBLISHED_VERSIONS
        .iter()
        .map(|&(event_type, version)| CatalogEntry {
            event_type: event_type.as_str(),
            version,
            current: event_type.schema_version() == version,
            description: description(event_type, version),
            schema: schema(event_type, version),
            example: example(event_type, version),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_version_has_a_2020_12_schema_and_an_example_that_reads_back() {
        let entries = catalog();
        assert_eq!(entries.len(), PUBLISHED_VERSIONS.len());
        for entry in &entries {
            assert_eq!(
                entry.schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{}",
                entry.event_type
            );
            assert_eq!(entry.example["metadata"]["version"], entry.version);
            let read = Envelope::from_json(&entry.example.to_string());
            assert!(
                read.is_ok(),
                "{} {}: {read:?}",
                entry.event_type,
                entry.version
            );
        }
        let current: Vec<_> = entries.iter().filter(|e| e.current).collect();
        assert_eq!(current.len(), EventType::ALL.len());
    }
}
