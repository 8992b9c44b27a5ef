//! Bad input never produces a 5xx: arbitrary JSON in every field, nulls everywhere, unicode,
//! odd shapes. Property-based, against the running app.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::test_app::{json_of, minimal, spawn_app, Backend, TestApp};

/// Every field of a customer body, and one it does not have.
pub(crate) const FIELDS: [&str; 9] = [
    "email",
    "firstName",
    "lastName",
    "phone",
    "isActive",
    "dateOfBirth",
    "address",
    "preferences",
    "extra",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        Just(json!("1990-01-15")),
        Just(json!("a@b.co")),
        Just(json!("+1 555 010 0100")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("street".to_owned()),
                    Just("city".to_owned()),
                    Just("country".to_owned()),
                    "[a-zA-Z]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_body() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        prop::sample::select(FIELDS.to_vec()),
        any_json(),
        0..FIELDS.len(),
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

#[test]
fn arbitrary_bodies_never_cause_a_server_error_on_sqlite() {
    arbitrary_bodies_never_cause_a_server_error(Backend::Sqlite);
}

#[test]
fn arbitrary_bodies_never_cause_a_server_error_on_postgres() {
    if crate::test_app::postgres_url().is_none() {
        return;
    }
    arbitrary_bodies_never_cause_a_server_error(Backend::Postgres);
}

fn arbitrary_bodies_never_cause_a_server_error(backend: Backend) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app(backend));
    let id = runtime.block_on(app.create(&minimal("target@example.com")))["id"]
        .as_i64()
        .unwrap();
    proptest!(ProptestConfig::with_cases(200), |(body in any_body())| {
        let body = Value::Object(body);
        let (created, patched, searched) = runtime.block_on(async {
            let search = body.get("firstName").and_then(Value::as_str).unwrap_or("%");
            let list = app.client.get(app.url("/api/v1/customers")).query(&[("search", search)]);
            (
                app.post_customer(&body).await.status(),
                app.patch_customer(id, &body).await.status(),
                app.send(list).await.status(),
            )
        });
        prop_assert!(matches!(created.as_u16(), 201 | 400 | 409), "POST {body} -> {created}");
        prop_assert!(matches!(patched.as_u16(), 200 | 400 | 409), "PATCH {body} -> {patched}");
        prop_assert!(matches!(searched.as_u16(), 200 | 400), "search {body} -> {searched}");
    });
}

crate::on_every_backend!(
    null_in_every_field_is_a_400_not_a_500,
    unicode_round_trips_exactly
);

async fn null_in_every_field_is_a_400_not_a_500(app: TestApp) {
    let body: Map<String, Value> = FIELDS[..8]
        .iter()
        .map(|f| (f.to_string(), Value::Null))
        .collect();
    let response = json_of(app.post_customer(&Value::Object(body.clone())).await, 400).await;
    assert_eq!(
        response["fieldErrors"],
        json!({"email": ["email must be an email"], "firstName": ["firstName must be a string"],
               "lastName": ["lastName must be a string"], "isActive": ["isActive must be a boolean value"]})
    );
    let id = app.create_id(&minimal("n@example.com")).await;
    json_of(app.patch_customer(id, &Value::Object(body)).await, 400).await;
}

async fn unicode_round_trips_exactly(app: TestApp) {
    let body = json!({"email": "Ünïcødé@Exämple.org", "firstName": "Zoë 🚀", "lastName": "O'Brien-Łukasz",
                      "preferences": {"note": "日本語 \u{0}\u{1f} \"quoted\""}});
    let data = app.create(&body).await;
    assert_eq!(data["email"], "ünïcødé@exämple.org");
    let nul_name = json!({"email": "x@example.org", "firstName": "Nu\u{0}ll", "lastName": "Byte"});
    let rejected = json_of(app.post_customer(&nul_name).await, 400).await;
    assert_eq!(
        rejected["fieldErrors"]["firstName"],
        json!(["First name must not contain control characters"])
    );
    json_of(
        app.get("/api/v1/customers/email/a%00b@example.org").await,
        404,
    )
    .await;
    json_of(app.get("/api/v1/customers?search=a%00b").await, 400).await;
    assert_eq!(data["firstName"], "Zoë 🚀");
    assert_eq!(data["preferences"]["note"], "日本語 \u{0}\u{1f} \"quoted\"");
    let read = json_of(app.get_customer(data["id"].as_i64().unwrap()).await, 200).await;
    assert_eq!(read["data"], data);
}
