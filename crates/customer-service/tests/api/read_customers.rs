//! The read routes: by id, by e-mail, the paged list with search, active customers, count.

use serde_json::{json, Value};

use crate::test_app::{json_of, minimal, page_ids as ids, urlencode, TestApp};

crate::on_every_backend!(
    a_customer_is_read_by_id_with_its_etag,
    an_unknown_id_is_not_found,
    a_non_numeric_or_non_positive_id_is_a_bad_request,
    a_customer_is_found_by_email_in_any_case,
    the_list_is_paged_newest_first,
    search_matches_names_and_email_case_insensitively,
    list_and_search_totals_follow_every_write_at_once,
    bad_paging_parameters_are_reported_per_field,
    active_customers_and_the_count,
);

async fn a_customer_is_read_by_id_with_its_etag(app: TestApp) {
    let id = app.create_id(&minimal("ann@example.com")).await;
    let response = app.get_customer(id).await;
    assert_eq!(response.headers()["etag"], "\"1\"");
    let body = json_of(response, 200).await;
    assert_eq!(body["message"], "Success");
    assert_eq!(body["statusCode"], 200);
    assert_eq!(body["data"]["email"], "ann@example.com");
}

async fn an_unknown_id_is_not_found(app: TestApp) {
    let body = json_of(app.get_customer(999).await, 404).await;
    assert_eq!(body["message"], "Customer not found");
    assert_eq!(body["error"], "Not Found");
    assert_eq!(body["path"], "/api/v1/customers/999");
    assert!(body.get("fieldErrors").is_none());
}

async fn a_non_numeric_or_non_positive_id_is_a_bad_request(app: TestApp) {
    let id = app.create_id(&minimal("ann@example.com")).await;
    // The original's integer pipe takes `-?digits` only: a sign, a space or a fraction is
    // not a number there, even when it would name this customer.
    for id in [
        "abc".to_owned(),
        "0".to_owned(),
        "-1".to_owned(),
        "1.5".to_owned(),
        "99999999999999999999".to_owned(),
        format!("+{id}"),
        format!("%20{id}"),
        format!("{id}%20"),
        format!("{id}.0"),
    ] {
        let body = json_of(app.get(&format!("/api/v1/customers/{id}")).await, 400).await;
        assert_eq!(
            body["message"], "Validation failed (numeric string is expected)",
            "{id}"
        );
        assert_eq!(
            body["fieldErrors"],
            json!({"id": ["Validation failed (numeric string is expected)"]})
        );
    }
    // Leading zeros are digits: accepted, as there.
    assert_eq!(
        app.get(&format!("/api/v1/customers/0{id}")).await.status(),
        200
    );
    let response = app.patch_customer(0, &json!({})).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        app.send(app.client.delete(app.url("/api/v1/customers/x")))
            .await
            .status(),
        400
    );
}

async fn a_customer_is_found_by_email_in_any_case(app: TestApp) {
    let id = app.create(&minimal("ann.lee@example.com")).await["id"].clone();
    let body = json_of(
        app.get("/api/v1/customers/email/ANN.Lee@Example.COM").await,
        200,
    )
    .await;
    assert_eq!(body["data"]["id"], id);
    let body = json_of(
        app.get("/api/v1/customers/email/nobody@example.com").await,
        404,
    )
    .await;
    assert_eq!(body["message"], "Customer not found");
}

async fn the_list_is_paged_newest_first(app: TestApp) {
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_id(&minimal(&format!("c{i}@example.com"))).await);
    }
    created.reverse(); // newest first (ids break ties within one millisecond)

    let body = json_of(app.get("/api/v1/customers?page=1&limit=2").await, 200).await;
    assert_eq!(ids(&body), created[..2]);
    assert_eq!(
        (
            &body["data"]["total"],
            &body["data"]["page"],
            &body["data"]["limit"],
            &body["data"]["totalPages"]
        ),
        (&json!(5), &json!(1), &json!(2), &json!(3))
    );
    let body = json_of(app.get("/api/v1/customers?page=3&limit=2").await, 200).await;
    assert_eq!(ids(&body), created[4..]);
    let body = json_of(app.get("/api/v1/customers?page=9&limit=2").await, 200).await;
    assert_eq!(ids(&body), Vec::<i64>::new());
    let body = json_of(app.get("/api/v1/customers").await, 200).await;
    assert_eq!(ids(&body), created);
    assert_eq!(
        (&body["data"]["page"], &body["data"]["limit"]),
        (&json!(1), &json!(10))
    );
}

async fn search_matches_names_and_email_case_insensitively(app: TestApp) {
    let zoe = app
        .create_id(&json!({"email": "zoe@alpha.io", "firstName": "Zoë", "lastName": "Ångström"}))
        .await;
    let max = app
        .create_id(&json!({"email": "max@beta.io", "firstName": "Max", "lastName": "Mustermann"}))
        .await;
    app.create(&json!({"email": "p%_c@gamma.io", "firstName": "Per", "lastName": "Cent"}))
        .await;
    for (term, expected) in [
        ("ZOË", vec![zoe]),
        ("ångSTRÖM", vec![zoe]),
        ("BETA.IO", vec![max]),
        ("muster", vec![max]),
    ] {
        let body = json_of(
            app.get(&format!("/api/v1/customers?search={}", urlencode(term)))
                .await,
            200,
        )
        .await;
        assert_eq!(ids(&body), expected, "search {term:?}");
        assert_eq!(body["data"]["total"], json!(expected.len()));
    }
    // LIKE wildcards are literal characters in a search.
    let body = json_of(app.get("/api/v1/customers?search=%25_").await, 200).await;
    assert_eq!(body["data"]["total"], 1);
    let body = json_of(app.get("/api/v1/customers?search=x_y").await, 200).await;
    assert_eq!(body["data"]["total"], 0);
    // A search never matches across the boundary of two fields.
    let body = json_of(app.get("/api/v1/customers?search=max%20must").await, 200).await;
    assert_eq!(body["data"]["total"], 0);
}

/// Totals are cached between writes: each write must show in the very next answer.
async fn list_and_search_totals_follow_every_write_at_once(app: TestApp) {
    async fn totals(app: &TestApp) -> (Value, Value) {
        let all = json_of(app.get("/api/v1/customers").await, 200).await;
        let ann = json_of(app.get("/api/v1/customers?search=ann").await, 200).await;
        (all["data"]["total"].clone(), ann["data"]["total"].clone())
    }
    assert_eq!(totals(&app).await, (json!(0), json!(0)));
    let ann = app
        .create_id(&json!({"email": "a@x.io", "firstName": "Ann", "lastName": "Lee"}))
        .await;
    assert_eq!(totals(&app).await, (json!(1), json!(1)));
    let bob = app
        .create_id(&json!({"email": "b@x.io", "firstName": "Bob", "lastName": "Lee"}))
        .await;
    assert_eq!(totals(&app).await, (json!(2), json!(1)));
    let renamed = app
        .patch_customer(bob, &json!({"firstName": "Joanna"}))
        .await;
    assert_eq!(renamed.status(), 200);
    assert_eq!(totals(&app).await, (json!(2), json!(2)));
    assert_eq!(app.delete_customer(ann).await.status(), 204);
    assert_eq!(totals(&app).await, (json!(1), json!(1)));
}

async fn bad_paging_parameters_are_reported_per_field(app: TestApp) {
    let body = json_of(app.get("/api/v1/customers?page=0&limit=101").await, 400).await;
    assert_eq!(
        body["fieldErrors"],
        json!({"page": ["page must not be less than 1"], "limit": ["limit must not be greater than 100"]})
    );
    assert_eq!(body["path"], "/api/v1/customers?page=0&limit=101");
    let body = json_of(app.get("/api/v1/customers?page=-1&limit=abc").await, 400).await;
    assert_eq!(
        body["fieldErrors"],
        json!({"page": ["page must not be less than 1"], "limit": ["limit must be an integer number"]})
    );
    let body = json_of(app.get("/api/v1/customers?limit=0").await, 400).await;
    assert_eq!(
        body["fieldErrors"],
        json!({"limit": ["limit must not be less than 1"]})
    );
}

async fn active_customers_and_the_count(app: TestApp) {
    let a = app.create_id(&minimal("a@example.com")).await;
    let mut inactive = minimal("b@example.com");
    inactive["isActive"] = json!(false);
    app.create(&inactive).await;
    let c = app.create_id(&minimal("c@example.com")).await;
    let body = json_of(app.get("/api/v1/customers/active").await, 200).await;
    let active: Vec<i64> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(active, [c, a]);
    let body = json_of(app.get("/api/v1/customers/count").await, 200).await;
    assert_eq!(body["data"], json!({"count": 3}));
}
