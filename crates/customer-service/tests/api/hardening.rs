//! What a hostile or careless client cannot do: get an answer many times its request's size,
//! send a key twice so that a firewall and the service read different requests, or have an
//! answer with personal data cached or sniffed as another type.

use serde_json::{json, Value};

use crate::test_app::{json_of, minimal, TestApp};

crate::on_every_backend!(
    a_body_of_thousands_of_unknown_keys_gets_a_400_of_twenty_fields,
    a_key_given_twice_is_a_400_naming_it_and_nothing_is_stored,
    answers_with_personal_data_are_not_stored_nor_sniffed,
    path_parameters_that_are_not_utf8_get_the_error_body,
);

async fn post_raw(app: &TestApp, body: String) -> reqwest::Response {
    app.send(
        app.client
            .post(app.url("/api/v1/customers"))
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

async fn a_body_of_thousands_of_unknown_keys_gets_a_400_of_twenty_fields(app: TestApp) {
    let mut body = minimal("many@example.com");
    for i in 0..5_500 {
        body[format!("k{i}")] = json!(1);
    }
    let sent = body.to_string();
    let response = post_raw(&app, sent.clone()).await;
    let answer = response.text().await.unwrap();
    assert!(
        answer.len() < 4_096,
        "{} bytes answered to {} sent",
        answer.len(),
        sent.len()
    );
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["statusCode"], 400, "{answer}");
    let fields = answer["fieldErrors"].as_object().unwrap();
    assert_eq!(fields.len(), 20);
    let mut joined = Vec::new();
    for (field, messages) in fields {
        let message = format!("property {field} should not exist");
        assert_eq!(messages, &json!([message]));
        joined.push(message);
    }
    let message = answer["message"].as_str().unwrap();
    assert_eq!(message, format!("{}, …and 5480 more", joined.join(", ")));
    assert_eq!(app.event_count().await, 0);
}

async fn a_key_given_twice_is_a_400_naming_it_and_nothing_is_stored(app: TestApp) {
    let mut repeated = String::from(r#"{"firstName":"Ann","lastName":"Lee""#);
    for i in 0..2_000 {
        repeated.push_str(&format!(r#","email":"a{i}@example.com""#));
    }
    repeated.push('}');
    let nested = r#"{"email":"n@example.com","firstName":"Ann","lastName":"Lee","address":{"street":"1 Road","city":"Oslo","city":"Paris","country":"NO"}}"#;
    for (body, field) in [(repeated, "email"), (nested.to_owned(), "address.city")] {
        let answer = json_of(post_raw(&app, body).await, 400).await;
        let message = format!("property {field} is given more than once");
        assert_eq!(answer["message"], message.as_str());
        assert_eq!(answer["fieldErrors"], json!({ field: [message] }));
    }
    // The same on an update.
    let id = app.create_id(&minimal("once@example.com")).await;
    let answer = json_of(
        app.send(
            app.client
                .patch(app.url(&format!("/api/v1/customers/{id}")))
                .header("content-type", "application/json")
                .body(r#"{"lastName":"Xu","lastName":"Yi"}"#),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(
        answer["fieldErrors"]["lastName"],
        json!(["property lastName is given more than once"])
    );
    assert_eq!(app.event_count().await, 1);
}

async fn answers_with_personal_data_are_not_stored_nor_sniffed(app: TestApp) {
    let id = app.create_id(&minimal("cache@example.com")).await;
    app.wait_until_published().await;
    let personal = [
        format!("/api/v1/customers/{id}"),
        "/api/v1/customers?search=cache".to_owned(),
        "/api/v1/customers/active".to_owned(),
        "/api/v1/customers/email/cache@example.com".to_owned(),
        format!("/api/v1/customers/{id}/history"),
        "/api/v1/events".to_owned(),
        "/api/v1/customers/999999".to_owned(),
    ];
    for path in &personal {
        let response = app.get(path).await;
        assert!(response.status().as_u16() < 500, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
    let created = app.post_customer(&minimal("second@example.com")).await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["cache-control"], "no-store");
    // Everything is nosniff: documents, probes, unknown routes, errors.
    for path in [
        "/api/docs/openapi.json",
        "/livez",
        "/api/v1/health",
        "/nothing",
        "/dashboard",
    ] {
        let response = app.get(path).await;
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
}

async fn path_parameters_that_are_not_utf8_get_the_error_body(app: TestApp) {
    for (path, field, message) in [
        (
            "/api/v1/customers/email/%FF",
            "email",
            "email must be an email",
        ),
        (
            "/api/v1/customers/email/a%C3@b.co",
            "email",
            "email must be an email",
        ),
        (
            "/api/v1/customers/%FF",
            "id",
            "Validation failed (numeric string is expected)",
        ),
        (
            "/api/v1/customers/%FF/history",
            "id",
            "Validation failed (numeric string is expected)",
        ),
        (
            "/api/v1/customers/%FF/erasure",
            "id",
            "Validation failed (numeric string is expected)",
        ),
    ] {
        let response = app.get(path).await;
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        let body = json_of(response, 400).await;
        assert_eq!(body["fieldErrors"], json!({ field: [message] }), "{path}");
        assert_eq!(body["path"], path);
    }
}
