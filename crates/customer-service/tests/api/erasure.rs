//! `DELETE /customers/:id?erase=true`: the customer's personal data gone from the database,
//! the event log (rewritten, shape kept), the idempotency store and Redis; CustomerErased
//! published; history shows the redacted events.

use serde_json::{json, Value};

use crate::idempotency::post as post_with_key;
use crate::test_app::{json_of, minimal, redis_url, spawn_app_with, unique_redis, Backend};

crate::for_every_backend!(
    erasure_leaves_no_trace_of_the_customer_in_the_database_or_redis,
    a_customer_deleted_earlier_can_still_be_erased_once,
    erased_envelopes_keep_the_contract_key_order_byte_for_byte,
    an_over_deep_or_unreadable_event_is_read_verified_and_erased,
);

const EMAIL: &str = "Erase.Me@Example.com";

/// `DELETE /api/v1/customers/{id}?erase=true`.
async fn erase(app: &crate::test_app::TestApp, id: i64) -> reqwest::Response {
    app.send(
        app.client
            .delete(app.url(&format!("/api/v1/customers/{id}?erase=true"))),
    )
    .await
}

async fn count(db: &mut sqlx::AnyConnection, sql: &str) -> i64 {
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db)
        .await
        .unwrap();
    row.0
}

async fn erasure_leaves_no_trace_of_the_customer_in_the_database_or_redis(backend: Backend) {
    let Some(url) = redis_url() else {
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

    let erased = erase(&app, id).await;
    assert_eq!(erased.status(), 204);
    app.wait_until_published().await;

    // The database.
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
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
        // The whole phone: a bare "4242" can occur in an event id's milliseconds.
        "555-010-4242",
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
    json_of(erase(&app, id).await, 404).await;
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

/// The app of these tests: with Redis names of its own when a Redis is configured.
async fn app_with_redis_if_any(backend: Backend) -> crate::test_app::TestApp {
    let redis = crate::test_app::redis_url_if_any().map(unique_redis);
    spawn_app_with(backend, |c| c.redis = redis).await
}

async fn erased_envelopes_keep_the_contract_key_order_byte_for_byte(backend: Backend) {
    let app = app_with_redis_if_any(backend).await;
    let body = json!({"email": "order@example.com", "firstName": "Ada", "lastName": "Order",
                      "phone": "+1-555-010-7777", "dateOfBirth": "1990-01-15",
                      "address": {"street": "1 Key St", "city": "Sort", "country": "ZZ"}});
    let created = post_with_key(&app, "order-key", &body).await;
    let id = json_of(created, 201).await["data"]["id"].as_i64().unwrap();
    let erased = erase(&app, id).await;
    assert_eq!(erased.status(), 204);
    app.wait_until_published().await;

    let events = app.events_of(id).await;
    let stored = app.stored_events_of(id).await;
    let expected: Vec<String> = events
        .iter()
        .map(|e| {
            let (m, d) = (&e["metadata"], &e["data"]);
            let metadata = format!(
                r#"{{"eventId":"{}","eventType":"{}","occurredOn":"{}","version":"1.0","aggregateId":{id},"sequence":{},"correlationId":"{}","source":"customer-service"}}"#,
                m["eventId"].as_str().unwrap(),
                m["eventType"].as_str().unwrap(),
                m["occurredOn"].as_str().unwrap(),
                m["sequence"],
                m["correlationId"].as_str().unwrap(),
            );
            let data = match e["eventType"].as_str().unwrap() {
                "CustomerCreated" => format!(
                    r#"{{"customerId":{id},"email":"[erased]","firstName":"[erased]","lastName":"[erased]","fullName":"[erased]","phone":"[erased]","isActive":true,"dateOfBirth":"[erased]","address":null,"preferences":null,"createdAt":"{}"}}"#,
                    d["createdAt"].as_str().unwrap()
                ),
                "CustomerDeleted" => format!(
                    r#"{{"customerId":{id},"email":"[erased]","fullName":"[erased]","deletedAt":"{}"}}"#,
                    d["deletedAt"].as_str().unwrap()
                ),
                "CustomerErased" => format!(
                    r#"{{"customerId":{id},"erasedAt":"{}"}}"#,
                    d["erasedAt"].as_str().unwrap()
                ),
                other => panic!("unexpected {other}"),
            };
            format!(
                r#"{{"eventType":"{}","eventId":"{}","occurredOn":"{}","data":{data},"metadata":{metadata}}}"#,
                e["eventType"].as_str().unwrap(),
                e["eventId"].as_str().unwrap(),
                e["occurredOn"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(expected.len(), 3);
    // The log, byte for byte.
    let payloads: Vec<&str> = stored.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(payloads, expected);
    // /history and /api/v1/events pass the stored bytes through.
    let history = app
        .get(&format!("/api/v1/customers/{id}/history"))
        .await
        .text()
        .await
        .unwrap();
    let page = app.get("/api/v1/events").await.text().await.unwrap();
    for envelope in &expected {
        assert!(history.contains(envelope.as_str()), "{history}");
        assert!(page.contains(envelope.as_str()), "{page}");
    }
    // Redis keeps only the CustomerErased, as stored.
    if let Some(redis) = &app.redis {
        let streamed = crate::test_app::streamed_payloads(redis).await;
        assert_eq!(streamed.last(), expected.last());
        assert!(!streamed.join("").contains("order@example.com"));
    }

    // The key is a tombstone: its retry would create the person again, and is refused.
    let retry = post_with_key(&app, "order-key", &body).await;
    let refused = json_of(retry, 410).await;
    assert_eq!(refused["message"], "This request's customer was erased");
    assert_eq!(refused["error"], "Gone");
    assert_eq!(app.event_count().await, 3, "nothing was created");
    // It keeps the key and the customer id, nothing of the request or its answer.
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    let (key, customer, request, answer, location, etag): (
        String,
        Option<i64>,
        String,
        String,
        Option<String>,
        Option<String>,
    ) =
        sqlx::query_as(app.sql(
            r#"select "key", customer_id, request, body, location, etag from idempotency_keys"#,
        ))
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(key.ends_with("order-key"), "{key}");
    assert_eq!(
        (customer, request.as_str(), answer.as_str(), location, etag),
        (Some(id), "", "", None, None)
    );
    // A tombstone outlives the key's time to live (expiry skips it).
    sqlx::query("update idempotency_keys set created_at_ms = 0")
        .execute(&mut db)
        .await
        .unwrap();
    let late = post_with_key(&app, "order-key", &body).await;
    assert_eq!(late.status(), 410);
    // Another key creates normally.
    let other = post_with_key(&app, "another-key", &minimal("new@example.com")).await;
    assert_eq!(other.status(), 201);
}

/// `{"n":{"n":…{"leaf":true}…}}`, `levels` objects deep.
fn nested(levels: usize) -> String {
    format!(
        "{}{{\"leaf\":true}}{}",
        r#"{"n":"#.repeat(levels - 1),
        "}".repeat(levels - 1)
    )
}

async fn an_over_deep_or_unreadable_event_is_read_verified_and_erased(backend: Backend) {
    let app = app_with_redis_if_any(backend).await;
    // Written as an older build could: a PATCH stored `preferences` 126 levels deep (its
    // event nests 130 levels, past serde_json's default 128).
    let id = app.create_id(&minimal("deep@example.com")).await;
    let shallow = nested(3);
    app.update(
        id,
        &json!({"preferences": serde_json::from_str::<Value>(&shallow).unwrap()}),
    )
    .await;
    let deep = nested(126);
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    let payload: String = sqlx::query_scalar(
        app.sql("select payload from customer_events where customer_id = $1 and sequence = 2"),
    )
    .bind(id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(payload.contains(&shallow));
    sqlx::query(
        app.sql("update customer_events set payload = $1 where customer_id = $2 and sequence = 2"),
    )
    .bind(payload.replace(&shallow, &deep))
    .bind(id)
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query(app.sql("update customers set preferences = $1 where id = $2"))
        .bind(&deep)
        .bind(id)
        .execute(&mut db)
        .await
        .unwrap();
    // A second customer whose event is not JSON at all (damaged by hand).
    let broken = app.create_id(&minimal("broken@example.com")).await;
    sqlx::query(app.sql("update customer_events set payload = $1 where customer_id = $2"))
        .bind(r#"{"eventType":"CustomerCreated","data":{"email":"broken@example.com""#)
        .bind(broken)
        .execute(&mut db)
        .await
        .unwrap();
    app.wait_until_published().await;

    // asOf folds it, history passes it through (both too deep for a default parser here).
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let as_of = app.get(&format!("/api/v1/customers/{id}?asOf={at}")).await;
    assert_eq!(as_of.status(), 200);
    assert!(as_of.text().await.unwrap().contains(&deep));
    let history = app.get(&format!("/api/v1/customers/{id}/history")).await;
    assert_eq!(history.status(), 200);
    assert!(history.text().await.unwrap().contains(&deep));
    // verify reads the deep one, reports the broken one and goes on.
    let (ok, report) = app.run_cli(&["events", "verify"]).await;
    assert!(!ok, "{report}");
    assert_eq!(
        report.lines().collect::<Vec<_>>(),
        [
            format!("customer {broken}: the event at position 3 cannot be read").as_str(),
            "checked 2 customers and 3 events: 1 mismatch",
        ],
        "{report}"
    );

    // Erasure leaves no personal value behind, whatever the events' state.
    for customer in [id, broken] {
        let erased = erase(&app, customer).await;
        assert_eq!(erased.status(), 204);
    }
    app.wait_until_published().await;
    for (table, column) in [
        ("customers", "email"),
        ("customers", "search_text"),
        ("customer_events", "payload"),
        ("idempotency_keys", "request"),
    ] {
        for needle in ["deep@", "broken@", "ann", "lee"] {
            let sql =
                format!("select count(*) from {table} where lower({column}) like '%{needle}%'");
            assert_eq!(
                count(&mut db, &sql).await,
                0,
                "{needle} in {table}.{column}"
            );
        }
    }
    let whole: String = sqlx::query_scalar(
        app.sql("select payload from customer_events where customer_id = $1 and sequence = 1"),
    )
    .bind(broken)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(
        whole.starts_with(r#"{"eventType":"CustomerCreated","eventId":"CustomerCreated_"#)
            && whole.contains(r#""data":"[erased]","metadata":{"#),
        "{whole}"
    );
    if let Some(redis) = &app.redis {
        let stream = crate::test_app::streamed_payloads(redis).await.join("\n");
        assert!(
            !stream.contains("deep@") && !stream.contains("broken@"),
            "{stream}"
        );
    }
    // Erased customers agree with their (erased) events.
    let (ok, report) = app.run_cli(&["events", "verify"]).await;
    assert!(ok, "{report}");
}
