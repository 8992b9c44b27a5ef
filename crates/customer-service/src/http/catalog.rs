//! The event catalog (`GET /api/v1/events/catalog`: every event type and schema version with
//! its JSON Schema and an example) and an AsyncAPI 3 document of where events go
//! (`GET /api/v1/events/asyncapi.json`).

use std::sync::OnceLock;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use customer_events::catalog::{catalog, CatalogEntry};
use serde_json::{json, Map, Value};

use super::envelope;
use super::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/events/catalog", get(event_catalog))
        .route("/events/asyncapi.json", get(asyncapi))
}

/// Built once: the schemas are derived from the Rust types at first use.
fn entries() -> &'static [CatalogEntry] {
    static ENTRIES: OnceLock<Vec<CatalogEntry>> = OnceLock::new();
    ENTRIES.get_or_init(catalog)
}

/// Every event type at every schema version ever published.
#[utoipa::path(get, path = "/api/v1/events/catalog", tag = "events",
    summary = "Event catalog",
    description = "Every event type at every schema version ever published: a description, the JSON Schema (2020-12) of its envelope and an example.",
    responses((status = 200, description = "[{eventType, version, current, description, schema (JSON Schema 2020-12 of the envelope), example}]",
               body = Object)))]
pub(crate) async fn event_catalog() -> impl IntoResponse {
    envelope::ok(entries())
}

/// AsyncAPI 3.0 document of the channels this instance publishes to.
#[utoipa::path(get, path = "/api/v1/events/asyncapi.json", tag = "events",
    summary = "AsyncAPI document",
    description = "The channels this instance publishes events to (Redis Pub/Sub and Stream, NATS JetStream, when configured; Server-Sent Events always) as an AsyncAPI 3.0 document.",
    responses((status = 200, description = "AsyncAPI 3.0.0 document", body = Object)))]
pub(crate) async fn asyncapi(State(state): State<AppState>) -> impl IntoResponse {
    let current: Vec<&CatalogEntry> = entries().iter().filter(|e| e.current).collect();
    let mut messages = Map::new();
    let mut message_refs = Map::new();
    let mut definitions = SharedDefinitions::default();
    for entry in &current {
        let schema = definitions.hoist(&entry.schema, entry.event_type);
        messages.insert(
            entry.event_type.to_owned(),
            json!({
                "name": entry.event_type,
                "title": entry.event_type,
                "summary": entry.description,
                "contentType": "application/json",
                "payload": {
                    "schemaFormat": "application/schema+json;version=draft-2020-12",
                    "schema": schema
                },
                "examples": [{"name": "example", "payload": entry.example}]
            }),
        );
        message_refs.insert(
            entry.event_type.to_owned(),
            json!({"$ref": format!("#/components/messages/{}", entry.event_type)}),
        );
    }
    let operation_messages = |channel: &str| -> Vec<Value> {
        current
            .iter()
            .map(|e| json!({"$ref": format!("#/channels/{channel}/messages/{}", e.event_type)}))
            .collect()
    };
    let mut servers = Map::new();
    let mut channels = Map::new();
    let mut operations = Map::new();
    servers.insert(
        "http".into(),
        json!({"host": "customer-service", "protocol": "http",
               "description": "This service; the path is the channel address."}),
    );
    channels.insert(
        "sse".into(),
        json!({
            "address": "/api/v1/events/stream",
            "description": "Server-Sent Events: event = eventType, id = log position, data = envelope. Resume with Last-Event-ID.",
            "servers": [{"$ref": "#/servers/http"}],
            "messages": message_refs
        }),
    );
    operations.insert(
        "streamOverSse".into(),
        json!({"action": "send", "channel": {"$ref": "#/channels/sse"},
               "messages": operation_messages("sse")}),
    );
    if let Some(redis) = &state.redis {
        let settings = redis.settings();
        servers.insert(
            "redis".into(),
            json!({"host": redis.address(), "protocol": "redis",
                   "description": "Events are published here by the relay, in log order, at least once."}),
        );
        channels.insert(
            "pubsub".into(),
            json!({
                "address": settings.channel,
                "description": "Redis Pub/Sub: PUBLISH <channel> <envelope>. Fire and forget.",
                "servers": [{"$ref": "#/servers/redis"}],
                "messages": message_refs
            }),
        );
        channels.insert(
            "stream".into(),
            json!({
                "address": settings.stream,
                "description": "Redis Stream (XADD MAXLEN ~): fields type, id, event (the envelope). For consumer groups and replay.",
                "servers": [{"$ref": "#/servers/redis"}],
                "messages": message_refs
            }),
        );
        operations.insert(
            "publishOnPubSub".into(),
            json!({"action": "send", "channel": {"$ref": "#/channels/pubsub"},
                   "messages": operation_messages("pubsub")}),
        );
        operations.insert(
            "appendToStream".into(),
            json!({"action": "send", "channel": {"$ref": "#/channels/stream"},
                   "messages": operation_messages("stream")}),
        );
    }
    if let Some(nats) = &state.nats {
        let config = nats.config();
        servers.insert(
            "nats".into(),
            json!({"host": nats.address(), "protocol": "nats",
                   "description": format!("JetStream stream {}: events are published here by the relay, in log order, each with Nats-Msg-Id = eventId (de-duplicated within {} s).", config.stream, config.duplicate_window.as_secs())}),
        );
        channels.insert(
            "jetstream".into(),
            json!({
                "address": format!("{}.{{eventType}}.{{customerId}}", config.subject_prefix),
                "description": "NATS JetStream subject per event: the event type and the customer id (a saga's events: its id negated). Subscribe to <prefix>.> or filter by type or customer; CustomerErased purges the customer's earlier messages.",
                "parameters": {
                    "eventType": {"description": "The envelope's eventType."},
                    "customerId": {"description": "metadata.aggregateId: the customer's id, or a saga's id negated."}
                },
                "servers": [{"$ref": "#/servers/nats"}],
                "messages": message_refs
            }),
        );
        operations.insert(
            "publishToJetStream".into(),
            json!({"action": "send", "channel": {"$ref": "#/channels/jetstream"},
                   "messages": operation_messages("jetstream")}),
        );
    }
    Json(json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "customer-service events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every change to a customer, as an event envelope. See GET /api/v1/events/catalog for every schema version."
        },
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": definitions.schemas}
    }))
}

const SCHEMA_FORMAT: &str = "application/schema+json;version=draft-2020-12";

/// `components.schemas` of the AsyncAPI document, filled from the catalog's schemas.
#[derive(Default)]
struct SharedDefinitions {
    /// Each definition as the catalog's schema had it, by the plain name it is shared under.
    originals: Map<String, Value>,
    /// The Multi Format Schema Objects the document carries, by name.
    schemas: Map<String, Value>,
}

impl SharedDefinitions {
    /// `schema` (a catalog entry's JSON Schema) made to stand inside the AsyncAPI document:
    /// an AsyncAPI parser resolves a `$ref` of `#/…` against the document's root, so the
    /// schema's own `$defs` move to `components.schemas` (each a Multi Format Schema Object of
    /// the same draft) and its references are rewritten to point there. When every definition
    /// of the schema is identical to one already there under its name, they are shared;
    /// otherwise all of them are added as `<eventType><Name>`, so a definition never refers
    /// to another event's variant of its neighbours. The catalog keeps its schemas as they are.
    fn hoist(&mut self, schema: &Value, event_type: &str) -> Value {
        let mut schema = schema.clone();
        let definitions = match schema.as_object_mut().and_then(|s| s.remove("$defs")) {
            Some(Value::Object(definitions)) => definitions,
            _ => Map::new(),
        };
        let shared = definitions
            .iter()
            .all(|(name, definition)| self.originals.get(name).is_none_or(|d| d == definition));
        let prefix = if shared { "" } else { event_type };
        for (name, definition) in definitions {
            if shared {
                self.originals.insert(name.clone(), definition.clone());
            }
            let mut definition = definition;
            rewrite_refs(&mut definition, prefix);
            self.schemas
                .entry(format!("{prefix}{name}"))
                .or_insert_with(|| json!({"schemaFormat": SCHEMA_FORMAT, "schema": definition}));
        }
        rewrite_refs(&mut schema, prefix);
        schema
    }
}

/// Every `$ref` of `#/$defs/<Name>` in `value` becomes
/// `#/components/schemas/<prefix><Name>/schema`.
fn rewrite_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match child.as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
                    Some(name) if key == "$ref" => {
                        *child =
                            Value::String(format!("#/components/schemas/{prefix}{name}/schema"));
                    }
                    _ => rewrite_refs(child, prefix),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, prefix)),
        _ => {}
    }
}
