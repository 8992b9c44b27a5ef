//! `Idempotency-Key` on POST /customers: a retry gets the identical answer and creates
//! nothing; another body under the same key is refused; concurrent retries create one
//! customer; keys expire.

use std::sync::Arc;

use reqwest::Response;
use serde_json::{json, Value};

use crate::test_app::{json_of, minimal, TestApp};

crate::on_every_backend!(
    a_retry_gets_the_identical_answer_and_creates_nothing,
    the_same_key_with_another_body_is_refused,
    concurrent_retries_create_one_customer,
    an_expired_key_can_be_used_again,
    a_malformed_key_is_a_bad_request,
);

/// `POST /api/v1/customers` with `Idempotency-Key: key`.
pub(crate) async fn post(app: &TestApp, key: &str, body: &Value) -> Response {
    app.send(
        app.client
            .post(app.url("/api/v1/customers"))
            .header("Idempotency-Key", key)
            .json(body),
    )
    .await
}

/// (status, Location, ETag, body bytes)
pub(crate) async fn answer(response: Response) -> (u16, String, String, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (location, etag) = (header("location"), header("etag"));
    (
        response.status().as_u16(),
        location,
        etag,
        response.text().await.unwrap(),
    )
}

async fn a_retry_gets_the_identical_answer_and_creates_nothing(app: TestApp) {
    let body = minimal("once@example.com");
    let first = answer(post(&app, "key-1", &body).await).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = answer(post(&app, "key-1", &body).await).await;
    assert_eq!(first.0, 201);
    assert_eq!(again, first, "status, headers and body byte for byte");
    let created: Value = serde_json::from_str(&first.3).unwrap();
    let id = created["data"]["id"].as_i64().unwrap();
    assert_eq!(first.1, format!("/api/v1/customers/{id}"));
    assert_eq!(first.2, "\"1\"");
    assert_eq!(app.event_count().await, 1);
    let count = json_of(app.get("/api/v1/customers/count").await, 200).await;
    assert_eq!(count["data"]["count"], 1);
    // Key order in the body does not make it another request.
    let reordered = json!({"lastName": "Lee", "firstName": "Ann", "email": "once@example.com"});
    assert_eq!(answer(post(&app, "key-1", &reordered).await).await, first);
}

async fn the_same_key_with_another_body_is_refused(app: TestApp) {
    assert_eq!(
        post(&app, "k", &minimal("a@example.com")).await.status(),
        201
    );
    let body = json_of(post(&app, "k", &minimal("b@example.com")).await, 422).await;
    assert_eq!(
        body["message"],
        "Idempotency-Key was already used with a different request"
    );
    assert_eq!(body["error"], "Unprocessable Entity");
    assert_eq!(app.event_count().await, 1);
    // Another key is another request.
    assert_eq!(
        post(&app, "k2", &minimal("b@example.com")).await.status(),
        201
    );
}

async fn concurrent_retries_create_one_customer(app: TestApp) {
    let app = Arc::new(app);
    let body = minimal("race@example.com");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { answer(post(&app, "race", &body).await).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers.iter().all(|a| a.0 == 201), "{answers:?}");
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "identical answers"
    );
    assert_eq!(app.event_count().await, 1);
}

async fn an_expired_key_can_be_used_again(app: TestApp) {
    assert_eq!(
        post(&app, "old", &minimal("a@example.com")).await.status(),
        201
    );
    // Age the record past the 24 h default.
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    sqlx::query("update idempotency_keys set created_at_ms = created_at_ms - 90000000")
        .execute(&mut db)
        .await
        .unwrap();
    let reused = post(&app, "old", &minimal("b@example.com")).await;
    assert_eq!(reused.status(), 201, "the expired key is free again");
    assert_eq!(app.event_count().await, 2);
}

async fn a_malformed_key_is_a_bad_request(app: TestApp) {
    for key in ["", &"x".repeat(256), "with space"] {
        let body = json_of(post(&app, key, &minimal("a@example.com")).await, 400).await;
        assert_eq!(
            body["fieldErrors"],
            json!({"Idempotency-Key": ["Idempotency-Key must be 1 to 255 visible ASCII characters"]}),
            "{key:?}"
        );
    }
    assert_eq!(app.event_count().await, 0);
}
