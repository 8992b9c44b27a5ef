//! PATCH /api/v1/customers/:id: changes, events, no-ops, conflicts and If-Match.

use serde_json::{json, Value};

use crate::test_app::{is_iso_millis, john, json_of, minimal, TestApp};

crate::on_every_backend!(
    preferences_deeper_than_32_levels_are_refused_on_create_and_update,
    an_update_records_previous_data_and_exactly_the_changes,
    a_patch_that_changes_nothing_keeps_updated_at_and_emits_nothing,
    deactivating_and_reactivating_emit_their_events_in_order,
    null_clears_optional_fields,
    an_email_taken_by_another_customer_is_a_conflict,
    a_stale_if_match_is_a_precondition_failure,
    patching_an_unknown_customer_is_not_found,
    invalid_patches_are_reported_per_field,
);

async fn an_update_records_previous_data_and_exactly_the_changes(app: TestApp) {
    let before = app.create(&john()).await;
    let id = before["id"].as_i64().unwrap();
    let response = app
        .send(
            app.client
                .patch(app.url(&format!("/api/v1/customers/{id}")))
                .header("X-Correlation-ID", "patch-corr")
                .json(&json!({"lastName": "Roe", "email": "JOHN.ROE@example.com",
                              "address": {"street": "2 Side St", "city": "Springfield", "country": "USA"}})),
        )
        .await;
    assert_eq!(response.headers()["etag"], "\"2\"");
    let body = json_of(response, 200).await;
    assert_eq!(body["message"], "Updated successfully");
    let after = &body["data"];
    assert_eq!(after["lastName"], "Roe");
    assert_eq!(after["email"], "john.roe@example.com");
    assert_eq!(after["fullName"], "John Roe");
    assert_eq!(after["version"], 2);
    assert_eq!(after["createdAt"], before["createdAt"]);
    assert!(is_iso_millis(&after["updatedAt"]));

    let events = app.events_of(id).await;
    assert_eq!(events.len(), 2);
    let updated = &events[1];
    assert_eq!(updated["eventType"], "CustomerUpdated");
    assert_eq!(updated["metadata"]["sequence"], 2);
    assert_eq!(updated["metadata"]["correlationId"], "patch-corr");
    assert_eq!(updated["occurredOn"], after["updatedAt"]);
    let data = &updated["data"];
    assert_eq!(data["previousData"], before);
    assert_eq!(
        data["changes"],
        json!({
            "email": {"old": "john.doe@example.com", "new": "john.roe@example.com"},
            "lastName": {"old": "Doe", "new": "Roe"},
            "address": {"old": before["address"], "new": after["address"]}
        })
    );
    let mut current = after.as_object().unwrap().clone();
    for key in ["id", "createdAt", "version"] {
        current.remove(key);
    }
    let mut data_fields = data.as_object().unwrap().clone();
    assert_eq!(data_fields.remove("customerId"), Some(json!(id)));
    data_fields.remove("previousData");
    data_fields.remove("changes");
    assert_eq!(data_fields, current);
    // The stored payload lists changes in field order.
    let payload = &app.stored_events_of(id).await[1].payload;
    let order: Vec<usize> = [
        "\"email\":{\"old\"",
        "\"lastName\":{\"old\"",
        "\"address\":{\"old\"",
    ]
    .iter()
    .map(|k| payload.find(k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{payload}");
}

async fn a_patch_that_changes_nothing_keeps_updated_at_and_emits_nothing(app: TestApp) {
    let before = app.create(&john()).await;
    let id = before["id"].as_i64().unwrap();
    for body in [
        json!({}),
        json!({"email": " JOHN.DOE@EXAMPLE.COM", "firstName": "John ", "isActive": true,
                                   "dateOfBirth": "1990-01-15T12:00:00Z"}),
    ] {
        let after = app.update(id, &body).await;
        assert_eq!(after, before);
    }
    assert_eq!(app.events_of(id).await.len(), 1);
}

async fn deactivating_and_reactivating_emit_their_events_in_order(app: TestApp) {
    let id = app.create_id(&minimal("ann@example.com")).await;
    let off = app.update(id, &json!({"isActive": false})).await;
    assert_eq!(off["version"], 3);
    let on = app
        .update(id, &json!({"isActive": true, "firstName": "Anna"}))
        .await;
    assert_eq!(on["version"], 5);

    let events = app.events_of(id).await;
    let kinds: Vec<(&str, i64)> = events
        .iter()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap(),
                e["metadata"]["sequence"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("CustomerCreated", 1),
            ("CustomerUpdated", 2),
            ("CustomerDeactivated", 3),
            ("CustomerUpdated", 4),
            ("CustomerActivated", 5)
        ]
    );
    assert_eq!(
        events[2]["data"],
        json!({"customerId": id, "email": "ann@example.com", "fullName": "Ann Lee",
               "reason": "Updated by user", "deactivatedAt": off["updatedAt"], "actor": null})
    );
    // Schema 1.1 of CustomerDeactivated (it added `actor`); the others are at 1.0.
    let versions: Vec<&str> = events
        .iter()
        .map(|e| e["metadata"]["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0", "1.0", "1.1", "1.0", "1.0"]);
    assert_eq!(
        events[1]["data"]["changes"],
        json!({"isActive": {"old": true, "new": false}})
    );
    assert_eq!(
        events[4]["data"],
        json!({"customerId": id, "email": "ann@example.com", "fullName": "Anna Lee",
               "activatedAt": on["updatedAt"]})
    );
    // Events of one change share its correlation id and time.
    assert_eq!(
        events[1]["metadata"]["correlationId"],
        events[2]["metadata"]["correlationId"]
    );
    assert_eq!(events[1]["occurredOn"], events[2]["occurredOn"]);
}

async fn null_clears_optional_fields(app: TestApp) {
    let id = app.create_id(&john()).await;
    let body = json!({"phone": null, "dateOfBirth": null, "address": null, "preferences": null});
    let data = app.update(id, &body).await;
    for key in ["phone", "dateOfBirth", "address", "preferences"] {
        assert_eq!(data[key], Value::Null, "{key}");
    }
    let changes = &app.events_of(id).await[1]["data"]["changes"];
    assert_eq!(changes.as_object().unwrap().keys().count(), 4);
    assert_eq!(
        changes["phone"],
        json!({"old": "+1-555-010-0100", "new": null})
    );
}

async fn an_email_taken_by_another_customer_is_a_conflict(app: TestApp) {
    app.create(&minimal("taken@example.com")).await;
    let id = app.create_id(&minimal("mine@example.com")).await;
    let body = json_of(
        app.patch_customer(id, &json!({"email": "TAKEN@example.com"}))
            .await,
        409,
    )
    .await;
    assert_eq!(body["message"], "Email already exists");
    assert_eq!(app.events_of(id).await.len(), 1);
    // Its own address in another case is not a conflict (and changes nothing).
    app.update(id, &json!({"email": "MINE@Example.com"})).await;
    assert_eq!(app.events_of(id).await.len(), 1);
}

async fn a_stale_if_match_is_a_precondition_failure(app: TestApp) {
    let id = app.create_id(&minimal("ann@example.com")).await;
    let patch = |tag: &'static str, body: Value| {
        app.client
            .patch(app.url(&format!("/api/v1/customers/{id}")))
            .header("If-Match", tag)
            .json(&body)
    };
    let response = app.send(patch("\"1\"", json!({"lastName": "Two"}))).await;
    assert_eq!(response.status(), 200);
    let body = json_of(
        app.send(patch("\"1\"", json!({"lastName": "Three"}))).await,
        412,
    )
    .await;
    assert_eq!(body["error"], "Precondition Failed");
    assert_eq!(body["statusCode"], 412);
    json_of(
        app.send(patch("W/\"2\"", json!({"lastName": "Three"})))
            .await,
        412,
    )
    .await;
    json_of(
        app.send(patch("*", json!({"lastName": "Three"}))).await,
        200,
    )
    .await;
    assert_eq!(app.events_of(id).await.len(), 3);

    let delete = |tag: &'static str| {
        app.client
            .delete(app.url(&format!("/api/v1/customers/{id}")))
            .header("If-Match", tag)
    };
    json_of(app.send(delete("\"2\"")).await, 412).await;
    assert_eq!(app.send(delete("\"3\"")).await.status(), 204);
}

async fn patching_an_unknown_customer_is_not_found(app: TestApp) {
    let body = json_of(
        app.patch_customer(4242, &json!({"lastName": "Roe"})).await,
        404,
    )
    .await;
    assert_eq!(body["message"], "Customer not found");
}

async fn invalid_patches_are_reported_per_field(app: TestApp) {
    let id = app.create_id(&minimal("ann@example.com")).await;
    let body = json_of(
        app.patch_customer(
            id,
            &json!({"email": null, "isActive": null, "address": {"city": "X", "zip": "1"},
                                       "createdAt": "2020-01-01T00:00:00.000Z"}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(
        body["fieldErrors"],
        json!({
            "email": ["email must be an email"],
            "isActive": ["isActive must be a boolean value"],
            "address.zip": ["property zip should not exist"],
            "address.street": ["Address format is invalid"],
            "address.country": ["Address format is invalid"],
            "createdAt": ["property createdAt should not exist"]
        })
    );
    assert_eq!(app.events_of(id).await.len(), 1);
}

/// `levels` objects nested in each other.
fn nested_preferences(levels: usize) -> Value {
    (1..levels).fold(json!({"leaf": true}), |inner, _| json!({ "n": inner }))
}

async fn preferences_deeper_than_32_levels_are_refused_on_create_and_update(app: TestApp) {
    let message = "Preferences must not be nested more than 32 levels deep";
    // 126 levels was accepted once, and made events that no reader could parse.
    for levels in [33, 126] {
        let mut body = minimal("deep@example.com");
        body["preferences"] = nested_preferences(levels);
        let refused = json_of(app.post_customer(&body).await, 400).await;
        assert_eq!(refused["fieldErrors"], json!({ "preferences": [message] }));
        assert_eq!(refused["message"], message);
    }
    assert_eq!(app.event_count().await, 0);
    let mut body = minimal("deep@example.com");
    body["preferences"] = nested_preferences(32);
    let id = app.create_id(&body).await;
    let refused = json_of(
        app.patch_customer(id, &json!({ "preferences": nested_preferences(33) }))
            .await,
        400,
    )
    .await;
    assert_eq!(refused["fieldErrors"], json!({ "preferences": [message] }));
    assert_eq!(app.event_count().await, 1);
    let kept = json_of(app.get_customer(id).await, 200).await;
    assert_eq!(kept["data"]["preferences"], nested_preferences(32));
}
