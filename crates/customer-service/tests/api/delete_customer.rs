//! DELETE /api/v1/customers/:id.

use serde_json::json;

use crate::test_app::{json_of, minimal, TestApp};

crate::on_every_backend!(
    deleting_answers_204_and_appends_customer_deleted,
    deleting_an_unknown_customer_is_not_found,
    a_deleted_customers_email_can_be_used_again_with_a_new_history,
);

async fn deleting_answers_204_and_appends_customer_deleted(app: TestApp) {
    let id = app.create_id(&minimal("ann@example.com")).await;
    app.update(id, &json!({"lastName": "Roe"})).await;
    let response = app.delete_customer(id).await;
    assert_eq!(response.status(), 204);
    assert_eq!(response.text().await.unwrap(), "");

    let events = app.events_of(id).await;
    assert_eq!(events.len(), 3);
    let deleted = &events[2];
    assert_eq!(deleted["eventType"], "CustomerDeleted");
    assert_eq!(deleted["metadata"]["sequence"], 3);
    assert_eq!(
        deleted["data"],
        json!({"customerId": id, "email": "ann@example.com", "fullName": "Ann Roe",
               "deletedAt": deleted["occurredOn"]})
    );
    json_of(app.get_customer(id).await, 404).await;
    json_of(app.delete_customer(id).await, 404).await;
    assert_eq!(app.events_of(id).await.len(), 3);
}

async fn deleting_an_unknown_customer_is_not_found(app: TestApp) {
    let body = json_of(app.delete_customer(777).await, 404).await;
    assert_eq!(body["message"], "Customer not found");
    assert_eq!(app.event_count().await, 0);
}

async fn a_deleted_customers_email_can_be_used_again_with_a_new_history(app: TestApp) {
    let first = app.create_id(&minimal("ann@example.com")).await;
    app.delete_customer(first).await;
    let second = app.create_id(&minimal("ann@example.com")).await;
    assert_ne!(first, second);
    assert_eq!(app.events_of(second).await[0]["metadata"]["sequence"], 1);
    assert_eq!(app.events_of(first).await.len(), 2);
}
