//! A customer's past: `GET /customers/:id/history` and `GET /customers/:id?asOf=`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::test_app::{john, json_of, minimal, TestApp};

crate::on_every_backend!(
    history_lists_every_event_as_logged_also_after_deletion,
    as_of_returns_exactly_what_a_read_returned_at_that_time,
    history_and_as_of_reject_bad_input_and_unknown_customers,
    events_verify_passes_on_a_healthy_log_and_names_what_was_altered,
    events_stored_at_an_older_schema_version_still_fold,
);

/// Writes with a pause between them, so that no two land in the same millisecond.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

async fn life_of_a_customer(app: &TestApp) -> i64 {
    let id = app.create_id(&john()).await;
    pause().await;
    app.update(id, &json!({"lastName": "Smith"})).await;
    pause().await;
    app.update(id, &json!({"isActive": false})).await;
    pause().await;
    id
}

async fn history_lists_every_event_as_logged_also_after_deletion(app: TestApp) {
    let id = life_of_a_customer(&app).await;
    assert_eq!(app.delete_customer(id).await.status(), 204);

    let response = app.get(&format!("/api/v1/customers/{id}/history")).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["data"]["customerId"], json!(id));
    let events = body["data"]["events"].as_array().expect("events");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "CustomerCreated",
            "CustomerUpdated",
            "CustomerUpdated",
            "CustomerDeactivated",
            "CustomerDeleted"
        ]
    );
    // Exactly the log: positions and envelopes, byte for byte.
    let stored = app.stored_events_of(id).await;
    assert_eq!(events.len(), stored.len());
    for (event, stored) in events.iter().zip(&stored) {
        assert_eq!(event["position"], json!(stored.position));
        let verbatim = format!(
            r#"{{"position":{},"event":{}}}"#,
            stored.position, stored.payload
        );
        assert!(text.contains(&verbatim), "{verbatim} not in {text}");
    }
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["event"]["metadata"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
}

async fn as_of(app: &TestApp, id: i64, at: &str) -> reqwest::Response {
    app.get(&format!("/api/v1/customers/{id}?asOf={at}")).await
}

async fn read(app: &TestApp, id: i64) -> Value {
    json_of(app.get_customer(id).await, 200).await["data"].clone()
}

async fn as_of_returns_exactly_what_a_read_returned_at_that_time(app: TestApp) {
    let id = app.create_id(&john()).await;
    let mut reads: Vec<Value> = vec![read(&app, id).await];
    for change in [
        json!({"lastName": "Smith", "phone": null}),
        json!({"isActive": false}),
        json!({"address": null, "preferences": {"newsletter": false}}),
    ] {
        pause().await;
        app.update(id, &change).await;
        reads.push(read(&app, id).await);
    }
    pause().await;
    assert_eq!(app.delete_customer(id).await.status(), 204);

    for expected in &reads {
        // The instant of the write that produced this state, and every later one until the
        // next write, show this state.
        let at = expected["updatedAt"].as_str().unwrap();
        let body = json_of(as_of(&app, id, at).await, 200).await;
        assert_eq!(&body["data"], expected, "asOf={at}");
        assert!(
            as_of(&app, id, at).await.headers().get("etag").is_none(),
            "a past state has no ETag"
        );
    }
    // A millisecond before its creation, and once deleted: not found.
    let created =
        chrono::DateTime::parse_from_rfc3339(reads[0]["createdAt"].as_str().unwrap()).unwrap();
    let before = (created - chrono::Duration::milliseconds(1))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json_of(as_of(&app, id, &before).await, 404).await;
    let later = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json_of(as_of(&app, id, &later).await, 404).await;
    // Any offset names the same instant.
    let at = chrono::DateTime::parse_from_rfc3339(reads[1]["updatedAt"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
        .replace('+', "%2B");
    let body = json_of(as_of(&app, id, &at).await, 200).await;
    assert_eq!(body["data"], reads[1]);
}

async fn history_and_as_of_reject_bad_input_and_unknown_customers(app: TestApp) {
    let body = json_of(app.get("/api/v1/customers/999/history").await, 404).await;
    assert_eq!(body["message"], "Customer not found");
    let body = json_of(app.get("/api/v1/customers/abc/history").await, 400).await;
    assert_eq!(
        body["fieldErrors"],
        json!({"id": ["Validation failed (numeric string is expected)"]})
    );
    let id = app.create_id(&john()).await;
    for bad in ["yesterday", "2026-01-01", "2026-01-01T10:00:00"] {
        let body = json_of(
            app.get(&format!("/api/v1/customers/{id}?asOf={bad}")).await,
            400,
        )
        .await;
        assert_eq!(
            body["fieldErrors"],
            json!({"asOf": ["asOf must be an ISO 8601 date-time with a time zone, e.g. 2026-01-01T10:00:00Z"]}),
            "{bad}"
        );
    }
    json_of(
        app.get("/api/v1/customers/999?asOf=2026-01-01T10:00:00Z")
            .await,
        404,
    )
    .await;
}

/// `customer-service events verify` against the app's database: (exit success, stdout).
async fn verify(app: &TestApp) -> (bool, String) {
    app.run_cli(&["events", "verify"]).await
}

async fn events_verify_passes_on_a_healthy_log_and_names_what_was_altered(app: TestApp) {
    let kept = life_of_a_customer(&app).await;
    let gone = app.create_id(&minimal("gone@example.com")).await;
    assert_eq!(app.delete_customer(gone).await.status(), 204);
    let last = app.create_id(&minimal("last@example.com")).await;

    let (ok, out) = verify(&app).await;
    assert!(ok, "{out}");
    assert_eq!(out, "checked 3 customers and 7 events: 0 mismatches\n");

    // Behind the service's back: a renamed customer, a lost row, a resurrected one.
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .expect("connect");
    for (sql, id) in [
        (
            "update customers set last_name = 'Tampered' where id = $1",
            kept,
        ),
        ("delete from customers where id = $1", last),
    ] {
        sqlx::query(app.sql(sql))
            .bind(id)
            .execute(&mut db)
            .await
            .expect(sql);
    }
    let (ok, out) = verify(&app).await;
    assert!(!ok, "{out}");
    assert_eq!(
        out,
        format!(
            "customer {kept}: differs from its events in fullName, lastName\n\
             customer {last}: its events say it exists, but it has no row\n\
             checked 3 customers and 7 events: 2 mismatches\n"
        )
    );
    assert!(
        !out.contains("Tampered") && !out.contains('@'),
        "no values: {out}"
    );
}

/// A CustomerDeactivated stored at schema 1.0 (before `actor`), as a database that ran an
/// older release holds it: history shows it as stored, `asOf` and `verify` read it upcast.
async fn events_stored_at_an_older_schema_version_still_fold(app: TestApp) {
    let id = app.create_id(&john()).await;
    pause().await;
    app.update(id, &json!({"isActive": false})).await;
    let current = read(&app, id).await;
    let stored = app.stored_events_of(id).await;
    let deactivated = &stored[2];
    let mut old: Value = serde_json::from_str(&deactivated.payload).unwrap();
    old["data"].as_object_mut().unwrap().remove("actor");
    old["metadata"]["version"] = json!("1.0");
    let old = old.to_string();
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    sqlx::query(app.sql("update customer_events set payload = $1 where position = $2"))
        .bind(&old)
        .bind(deactivated.position)
        .execute(&mut db)
        .await
        .unwrap();

    let history = app.get(&format!("/api/v1/customers/{id}/history")).await;
    assert!(
        history.text().await.unwrap().contains(&old),
        "history shows it as stored"
    );
    let at = current["updatedAt"].as_str().unwrap();
    let body = json_of(as_of(&app, id, at).await, 200).await;
    assert_eq!(body["data"], current);
    let (ok, out) = verify(&app).await;
    assert!(ok, "{out}");
}
