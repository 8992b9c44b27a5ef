//! `DELETE /customers/:id?erase=true`: the customer's personal data gone from the database,
//! the event log (rewritten, shape kept), the idempotency store and Redis; CustomerErased
//! published; history shows the redacted events.

use serde_json::{json, Value};
use sqlx::Connection;

use crate::test_app::{json_of, minimal, redis_url, spawn_app_with, unique_redis, Backend};

crate::for_every_backend!(
    erasure_leaves_no_trace_of_the_customer_in_the_database_or_redis,
    a_customer_deleted_earlier_can_still_be_erased_once,
);

const EMAIL: &str = "Erase.Me@Example.com";

async fn count(db: &mut sqlx::AnyConnection, sql: &str) -> i64 {
    let row: (i64,) = sqlx::query_as(sql).fetch_one(db).await.unwrap();
    row.0
}

async fn erasure_leaves_no_trace_of_the_customer_in_the_database_or_redis(backend: Backend) {
    let Some(url) = redis_url() else {
        eprintln!("TEST_REDIS_URL is not set: not run");
        return;
    };
    let app = spawn_app_with(backend, |c| c.redis = Some(unique_redis(url.clone()))).await;
    let body = json!({"email": EMAIL, "firstName": "Erasmus", "lastName": "Forgetson",
                      "phone": "+1-555-010-4242", "dateOfBirth": "1980-02-29",
                      "address": {"street": "7 Hidden Way", "city": "Nowhere", "country": "ZZ"}});
    let created = app
        .send(
            app.client
                .post(app.url("/api/v1/customers"))
                .header("Idempotency-Key", "erase-key")
                .json(&body),
        )
        .await;
    let id = json_of(created, 201).await["data"]["id"].as_i64().unwrap();
    app.update(
        id,
        &json!({"email": "erase.me.too@example.com", "lastName": "Forgotten"}),
    )
    .await;
    app.update(id, &json!({"isActive": false})).await;
    let other = app.create_id(&minimal("keep.me@example.com")).await;
    app.wait_until_published().await;

    let erased = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/customers/{id}?erase=true"))),
        )
        .await;
    assert_eq!(erased.status(), 204);
    app.wait_until_published().await;

    // The database.
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.database_url)
        .await
        .unwrap();
    for needle in [
        "erase.me",
        "erasmus",
        "forget",
        "forgotten",
        "555-010-4242",
        "1980-02-29",
        "hidden way",
    ] {
        for (table, column) in [
            ("customers", "search_text"),
            ("customers", "email"),
            ("customer_events", "payload"),
            ("idempotency_keys", "body"),
            ("idempotency_keys", "request"),
        ] {
            let sql =
                format!("select count(*) from {table} where lower({column}) like '%{needle}%'");
            assert_eq!(
                count(&mut db, &sql).await,
                0,
                "{needle} in {table}.{column}"
            );
        }
    }
    assert_eq!(
        count(
            &mut db,
            "select count(*) from customer_events where lower(payload) like '%keep.me%'"
        )
        .await,
        1,
        "other customers are untouched"
    );

    // Redis: keys and stream.
    let redis = app.redis.clone().unwrap();
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:events:*", redis.key_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut values = String::new();
    for key in &keys {
        let value: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        values.push_str(&value.unwrap_or_default());
    }
    let stream = crate::test_app::streamed_payloads(&redis).await.join("\n");
    for needle in [
        "erase.me",
        "Erasmus",
        "Forgetson",
        "Forgotten",
        "4242",
        "Hidden Way",
    ] {
        assert!(!values.contains(needle), "{needle} in a Redis key");
        assert!(!stream.contains(needle), "{needle} in the stream");
    }
    assert!(stream.contains("keep.me@example.com"));
    assert!(stream.contains(r#""eventType":"CustomerErased""#));

    // History shows the redacted events (stored_events_of also validates them against the
    // catalog: erasure keeps each event's shape).
    let stored = app.stored_events_of(id).await;
    let types: Vec<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "CustomerCreated",
            "CustomerUpdated",
            "CustomerUpdated",
            "CustomerDeactivated",
            "CustomerDeleted",
            "CustomerErased"
        ]
    );
    let history = json_of(
        app.get(&format!("/api/v1/customers/{id}/history")).await,
        200,
    )
    .await;
    let first = &history["data"]["events"][0]["event"]["data"];
    assert_eq!(first["email"], "[erased]");
    assert_eq!(first["firstName"], "[erased]");
    assert_eq!(first["address"], Value::Null);
    assert_eq!(first["isActive"], true, "what is not personal stays");
    // Once is enough; the other customer is still there.
    json_of(
        app.send(
            app.client
                .delete(app.url(&format!("/api/v1/customers/{id}?erase=true"))),
        )
        .await,
        404,
    )
    .await;
    json_of(app.get_customer(other).await, 200).await;
}

async fn a_customer_deleted_earlier_can_still_be_erased_once(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let id = app.create_id(&minimal("gone@example.com")).await;
    assert_eq!(app.delete_customer(id).await.status(), 204);
    let erase = |query: &'static str| {
        app.send(
            app.client
                .delete(app.url(&format!("/api/v1/customers/{id}?{query}"))),
        )
    };
    let body = json_of(erase("erase=maybe").await, 400).await;
    assert_eq!(
        body["fieldErrors"],
        json!({"erase": ["erase must be true or false"]})
    );
    assert_eq!(erase("erase=true").await.status(), 204);
    let events = app.events_of(id).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["CustomerCreated", "CustomerDeleted", "CustomerErased"]
    );
    assert_eq!(
        events[2]["data"],
        json!({"customerId": id, "erasedAt": events[2]["occurredOn"]})
    );
    assert_eq!(events[2]["metadata"]["sequence"], 3);
    assert!(!serde_json::to_string(&events)
        .unwrap()
        .contains("gone@example.com"));
    assert_eq!(erase("erase=true").await.status(), 404);
    assert_eq!(
        app.send(
            app.client
                .delete(app.url("/api/v1/customers/999?erase=true"))
        )
        .await
        .status(),
        404
    );
}
