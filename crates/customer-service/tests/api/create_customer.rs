//! POST /api/v1/customers: the representation, the envelope, validation and the event log.

use serde_json::{json, Value};

use crate::test_app::{is_iso_millis, john, json_of, minimal, TestApp};

crate::on_every_backend!(
    a_customer_is_created_with_every_field,
    a_minimal_customer_gets_defaults,
    creation_appends_exactly_one_customer_created_event,
    a_duplicate_email_in_another_case_is_a_conflict,
    every_validation_rule_is_reported_per_field,
    a_rejected_request_appends_no_event,
    unknown_properties_are_rejected,
    blank_and_short_names_are_rejected_after_trimming,
    a_date_of_birth_is_stored_as_its_utc_date,
);

async fn a_customer_is_created_with_every_field(app: TestApp) {
    let response = app.post_customer(&john()).await;
    assert_eq!(response.headers()["etag"], "\"1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body = json_of(response, 201).await;
    assert_eq!(body["message"], "Created successfully");
    assert_eq!(body["statusCode"], 201);
    assert_eq!(body["success"], true);
    assert!(is_iso_millis(&body["timestamp"]));
    let data = &body["data"];
    let id = data["id"].as_i64().unwrap();
    assert!(id > 0);
    assert_eq!(location, format!("/api/v1/customers/{id}"));
    assert!(is_iso_millis(&data["createdAt"]));
    assert_eq!(data["createdAt"], data["updatedAt"]);
    assert_eq!(
        *data,
        json!({
            "id": id, "email": "john.doe@example.com", "firstName": "John", "lastName": "Doe",
            "phone": "+1-555-010-0100", "isActive": true, "dateOfBirth": "1990-01-15",
            "address": {"street": "1 Main St", "city": "Springfield", "state": "IL",
                        "zipCode": "62701", "country": "USA"},
            "preferences": {"company": "Acme", "industry": "Retail",
                            "preferredContact": "email", "newsletter": true},
            "createdAt": data["createdAt"], "updatedAt": data["createdAt"],
            "fullName": "John Doe", "version": 1
        })
    );
    // What was written is what is read back.
    let read = json_of(app.get_customer(id).await, 200).await;
    assert_eq!(read["data"], *data);
}

async fn a_minimal_customer_gets_defaults(app: TestApp) {
    let data = app.create(&minimal("ann@example.com")).await;
    assert_eq!(data["isActive"], true);
    for key in ["phone", "dateOfBirth", "address", "preferences"] {
        assert_eq!(data[key], Value::Null, "{key}");
        assert!(
            data.as_object().unwrap().contains_key(key),
            "{key} must be present"
        );
    }
    assert_eq!(data["fullName"], "Ann Lee");
}

async fn creation_appends_exactly_one_customer_created_event(app: TestApp) {
    let response = app
        .send(
            app.client
                .post(app.url("/api/v1/customers"))
                .header("X-Correlation-ID", "create-corr-1")
                .json(&john()),
        )
        .await;
    let data = json_of(response, 201).await["data"].clone();
    let id = data["id"].as_i64().unwrap();
    let events = app.events_of(id).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    let event_id = event["eventId"].as_str().unwrap();
    assert!(event_id.starts_with("CustomerCreated_"), "{event_id}");
    assert_eq!(event["occurredOn"], data["createdAt"]);
    assert_eq!(
        event["data"],
        json!({
            "customerId": id, "email": "john.doe@example.com", "firstName": "John",
            "lastName": "Doe", "fullName": "John Doe", "phone": "+1-555-010-0100",
            "isActive": true, "dateOfBirth": "1990-01-15", "address": data["address"],
            "preferences": data["preferences"], "createdAt": data["createdAt"]
        })
    );
    assert_eq!(
        event["metadata"],
        json!({
            "eventId": event_id, "eventType": "CustomerCreated", "occurredOn": data["createdAt"],
            "version": "1.0", "aggregateId": id, "sequence": 1,
            "correlationId": "create-corr-1", "source": "customer-service"
        })
    );
    // The stored payload is compact JSON with the contract's key order.
    let stored = &app.stored_events_of(id).await[0];
    assert!(stored
        .payload
        .starts_with(r#"{"eventType":"CustomerCreated","eventId":""#));
    assert!(!stored.payload.contains(": "));
    assert_eq!(stored.sequence, 1);
}

async fn a_duplicate_email_in_another_case_is_a_conflict(app: TestApp) {
    app.create(&minimal("ann@example.com")).await;
    let body = json_of(app.post_customer(&minimal("  ANN@Example.COM ")).await, 409).await;
    assert_eq!(body["message"], "Email already exists");
    assert_eq!(body["error"], "Conflict");
    assert_eq!(body["statusCode"], 409);
    assert_eq!(body["path"], "/api/v1/customers");
    assert_eq!(app.event_count().await, 1);
}

async fn every_validation_rule_is_reported_per_field(app: TestApp) {
    let body = json_of(
        app.post_customer(&json!({
            "email": "not-an-email", "firstName": "J", "lastName": 42,
            "phone": "123", "isActive": "yes", "dateOfBirth": "2020-01-01",
            "address": {"street": "", "city": "Springfield"},
            "preferences": {"note": "x".repeat(2001)}
        }))
        .await,
        400,
    )
    .await;
    assert_eq!(body["error"], "Bad Request");
    assert_eq!(
        body["fieldErrors"],
        json!({
            "email": ["email must be an email"],
            "firstName": ["First name must be at least 2 characters"],
            "lastName": ["lastName must be a string"],
            "phone": ["Phone number format is invalid"],
            "isActive": ["isActive must be a boolean value"],
            "dateOfBirth": ["Date of birth must be a valid date and customer must be at least 13 years old"],
            "address.street": ["Address format is invalid"],
            "address.country": ["Address format is invalid"],
            "preferences": ["Preferences must not exceed 2000 characters"]
        })
    );
    assert_eq!(
        body["message"],
        "email must be an email, First name must be at least 2 characters, lastName must be a string, \
         Phone number format is invalid, isActive must be a boolean value, \
         Date of birth must be a valid date and customer must be at least 13 years old, \
         Address format is invalid, Address format is invalid, Preferences must not exceed 2000 characters"
    );
    let body = json_of(
        app.post_customer(&json!({"email": "a@b.co", "firstName": "Ann",
        "lastName": "Lee", "dateOfBirth": "15/01/1990"}))
            .await,
        400,
    )
    .await;
    assert_eq!(
        body["fieldErrors"],
        json!({"dateOfBirth": ["dateOfBirth must be a valid ISO 8601 date string"]})
    );
}

async fn a_rejected_request_appends_no_event(app: TestApp) {
    json_of(app.post_customer(&json!({"email": "bad"})).await, 400).await;
    assert_eq!(app.event_count().await, 0);
    let count = json_of(app.get("/api/v1/customers/count").await, 200).await;
    assert_eq!(count["data"], json!({"count": 0}));
}

async fn unknown_properties_are_rejected(app: TestApp) {
    let mut body = minimal("a@b.co");
    body["id"] = json!(99);
    body["role"] = json!("admin");
    let body = json_of(app.post_customer(&body).await, 400).await;
    assert_eq!(
        body["fieldErrors"],
        json!({"id": ["property id should not exist"], "role": ["property role should not exist"]})
    );
}

async fn blank_and_short_names_are_rejected_after_trimming(app: TestApp) {
    let body = json!({"email": "a@b.co", "firstName": "   ", "lastName": " L "});
    let body = json_of(app.post_customer(&body).await, 400).await;
    assert_eq!(
        body["fieldErrors"],
        json!({"firstName": ["First name must be at least 2 characters"],
               "lastName": ["Last name must be at least 2 characters"]})
    );
    let data = app
        .create(&json!({"email": "a@b.co", "firstName": "  Jo ", "lastName": "Li"}))
        .await;
    assert_eq!(
        (data["firstName"].as_str(), data["fullName"].as_str()),
        (Some("Jo"), Some("Jo Li"))
    );
}

async fn a_date_of_birth_is_stored_as_its_utc_date(app: TestApp) {
    let mut body = minimal("a@b.co");
    body["dateOfBirth"] = json!("1990-01-15T23:30:00.000-05:00");
    let data = app.create(&body).await;
    assert_eq!(data["dateOfBirth"], "1990-01-16");
}
