//! The event catalog and the AsyncAPI document; every kind of event checked against its
//! schema.

use serde_json::{json, Value};

use crate::test_app::{
    assert_matches_catalog, john, json_of, minimal, redis_url, spawn_app_with, unique_redis,
    Backend, TestApp,
};

crate::on_every_backend!(every_kind_of_event_matches_its_catalog_schema,);

#[tokio::test]
async fn the_catalog_lists_every_version_with_a_schema_its_example_satisfies() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let body = json_of(app.get("/api/v1/events/catalog").await, 200).await;
    let entries = body["data"].as_array().expect("a list");
    let listed: Vec<(&str, &str, bool)> = entries
        .iter()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap(),
                e["version"].as_str().unwrap(),
                e["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("CustomerCreated", "1.0", true),
            ("CustomerUpdated", "1.0", true),
            ("CustomerActivated", "1.0", true),
            ("CustomerDeactivated", "1.0", false),
            ("CustomerDeactivated", "1.1", true),
            ("CustomerDeleted", "1.0", true),
            ("CustomerErased", "1.0", true),
            ("CustomerImported", "1.0", true),
            ("CustomerErasureRequested", "1.0", true),
            ("CustomerErasureCompleted", "1.0", true),
        ]
    );
    for entry in entries {
        assert_eq!(
            entry["schema"]["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(!entry["description"].as_str().unwrap().is_empty());
        let validator = jsonschema::validator_for(&entry["schema"]).expect("a valid schema");
        assert!(validator.is_valid(&entry["example"]), "{entry}");
        assert_matches_catalog(&entry["example"].to_string());
    }
    // The schemas are strict enough to catch a broken event.
    let mut broken = entries[0]["example"].clone();
    broken["data"].as_object_mut().unwrap().remove("email");
    let validator = jsonschema::validator_for(&entries[0]["schema"]).unwrap();
    assert!(!validator.is_valid(&broken), "missing data.email");
    let mut wrong_version = entries[4]["example"].clone();
    wrong_version["metadata"]["version"] = json!("1.0");
    assert!(!jsonschema::validator_for(&entries[4]["schema"])
        .unwrap()
        .is_valid(&wrong_version));
    let mut extra = entries[3]["example"].clone();
    extra["data"]["actor"] = json!("x");
    assert!(
        !jsonschema::validator_for(&entries[3]["schema"])
            .unwrap()
            .is_valid(&extra),
        "1.0 had no actor"
    );
}

async fn every_kind_of_event_matches_its_catalog_schema(app: TestApp) {
    let full = app.create_id(&john()).await;
    let bare = app.create_id(&minimal("bare@example.com")).await;
    for (id, change) in [
        (
            full,
            json!({"phone": null, "address": null, "preferences": null, "dateOfBirth": null}),
        ),
        (full, json!({"isActive": false})),
        (full, json!({"isActive": true, "email": "new@example.com"})),
        (
            bare,
            json!({"address": {"street": "1 A St", "city": "B", "country": "C"},
                      "preferences": {"newsletter": false, "custom": [1, {"x": null}]}}),
        ),
    ] {
        app.update(id, &change).await;
    }
    assert_eq!(app.delete_customer(bare).await.status(), 204);
    // stored_events_of checks every event against the catalog.
    let mut types: Vec<String> = Vec::new();
    for id in [full, bare] {
        for event in app.stored_events_of(id).await {
            types.push(event.event_type.to_string());
        }
    }
    types.sort();
    types.dedup();
    assert_eq!(
        types,
        [
            "CustomerActivated",
            "CustomerCreated",
            "CustomerDeactivated",
            "CustomerDeleted",
            "CustomerUpdated"
        ]
    );
}

#[tokio::test]
async fn the_asyncapi_document_describes_the_configured_channels() {
    let without = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let doc = json_of_plain(&without, "/api/v1/events/asyncapi.json").await;
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(channel_names(&doc), ["sse"]);

    let Some(url) = redis_url() else {
        return;
    };
    let redis = unique_redis(url);
    let with = spawn_app_with(Backend::Sqlite, |c| c.redis = Some(redis.clone())).await;
    let doc = json_of_plain(&with, "/api/v1/events/asyncapi.json").await;
    assert_eq!(channel_names(&doc), ["pubsub", "sse", "stream"]);
    assert_eq!(doc["channels"]["pubsub"]["address"], json!(redis.channel));
    assert_eq!(doc["channels"]["stream"]["address"], json!(redis.stream));
    assert_eq!(doc["servers"]["redis"]["protocol"], "redis");
    assert!(
        !doc.to_string().contains("password"),
        "no credentials in the document"
    );
    let messages: Vec<&String> = doc["components"]["messages"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(messages.len(), 9);
    // Every reference in the document resolves in the document (AsyncAPI reads `#/…` from
    // its root): none is left pointing at an embedded schema's own `$defs`.
    let references = references_in(&doc);
    assert!(references.len() > 30, "{references:?}");
    for reference in &references {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference}: not local"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
    // The schemas it carries are the catalog's, but for where their definitions live.
    let created = &doc["components"]["messages"]["CustomerCreated"]["payload"]["schema"];
    assert_eq!(
        created["properties"]["metadata"]["$ref"],
        "#/components/schemas/Metadata/schema"
    );
    assert_eq!(
        doc["components"]["schemas"]["Metadata"]["schemaFormat"],
        "application/schema+json;version=draft-2020-12"
    );
    for (_, op) in doc["operations"].as_object().unwrap() {
        for message in op["messages"].as_array().unwrap() {
            let path = message["$ref"].as_str().unwrap().trim_start_matches("#/");
            let target = path.split('/').fold(&doc, |node, key| &node[key]);
            let resolved = target["$ref"].as_str().unwrap().trim_start_matches("#/");
            let message = resolved.split('/').fold(&doc, |node, key| &node[key]);
            assert!(message["payload"]["schema"].is_object(), "{path}");
        }
    }
}

async fn json_of_plain(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Every `$ref` in `value`, depth first.
fn references_in(value: &Value) -> Vec<String> {
    match value {
        Value::Object(object) => object
            .iter()
            .flat_map(|(key, child)| match (key.as_str(), child.as_str()) {
                ("$ref", Some(reference)) => vec![reference.to_owned()],
                _ => references_in(child),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(references_in).collect(),
        _ => Vec::new(),
    }
}

fn channel_names(doc: &Value) -> Vec<String> {
    let mut names: Vec<String> = doc["channels"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}
