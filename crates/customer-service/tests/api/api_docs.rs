//! The OpenAPI document as a newcomer meets it in Swagger UI: every operation summarised,
//! the write bodies described field by field, the limits of ids and paging declared, and
//! every example it documents answered with success by the running service. Swagger UI's
//! "Try it out" creates a customer in headless Chromium.

use chrono::Datelike;
use serde_json::{json, Value};

use crate::dashboard::Browser;
use crate::test_app::{json_of, spawn_app, Backend, TestApp};

crate::on_every_backend!(every_documented_example_request_succeeds);

async fn document(app: &TestApp) -> Value {
    serde_json::from_str(&document_text(app).await).unwrap()
}

async fn document_text(app: &TestApp) -> String {
    let response = app.get("/api/docs/openapi.json").await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// `schema` with a `$ref` followed into the document's components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The example of a schema or parameter (`example`, or the first of `examples`).
fn example_of(value: &Value) -> Option<&Value> {
    value
        .get("example")
        .or_else(|| value.get("examples").and_then(|e| e.get(0)))
        .or_else(|| value["schema"].get("example"))
        .or_else(|| value["schema"].get("examples").and_then(|e| e.get(0)))
}

/// Every operation as `(method, path template, operation)`, writes of new customers first
/// and deletes last, so that each example finds the customer the create example made.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    let rank = |method: &str| match method {
        "post" => 0,
        "delete" => 3,
        "patch" => 2,
        _ => 1,
    };
    operations.sort_by_key(|(method, path, _)| (rank(method), path.clone()));
    operations
}

fn is_event_stream(operation: &Value) -> bool {
    operation["responses"]["200"]["content"]
        .get("text/event-stream")
        .is_some()
}

async fn every_documented_example_request_succeeds(app: TestApp) {
    let doc = document(&app).await;
    let mut sent = 0;
    for (method, template, operation) in operations(&doc) {
        if is_event_stream(&operation) {
            continue;
        }
        let mut path = template.clone();
        let mut query = Vec::new();
        let mut headers = Vec::new();
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap();
            let example = example_of(parameter);
            match (parameter["in"].as_str().unwrap(), example) {
                ("path", Some(example)) => {
                    let text = example.as_str().map_or(example.to_string(), str::to_owned);
                    path = path.replace(&format!("{{{name}}}"), &text);
                }
                ("path", None) => {
                    panic!("{method} {template}: path parameter {name} has no example")
                }
                ("query", Some(example)) => query.push((
                    name.to_owned(),
                    example.as_str().map_or(example.to_string(), str::to_owned),
                )),
                ("header", Some(example)) => {
                    headers.push((name.to_owned(), example.as_str().unwrap().to_owned()))
                }
                _ => {}
            }
        }
        let mut request = app
            .client
            .request(method.to_uppercase().parse().unwrap(), app.url(&path))
            .query(&query);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        if let Some(content) = operation["requestBody"]["content"]["application/json"].as_object() {
            let schema = resolve(&doc, &content["schema"]);
            let body = example_of(schema)
                .unwrap_or_else(|| panic!("{method} {template}: the body has no example"));
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        // A customer's erasure saga exists only after an erasure with ERASURE_PARTICIPANTS
        // set (the examples delete without erasing): its documented 404 here, its 200 in
        // sagas.rs.
        let expected = if template == "/api/v1/customers/{id}/erasure" {
            "4"
        } else {
            "2"
        };
        let documented: Vec<&String> = operation["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|code| code.starts_with(expected))
            .collect();
        let text = response.text().await.unwrap();
        assert!(
            documented.contains(&&status.to_string()),
            "{method} {path}?{query:?} answered {status}, documented {documented:?}: {text}"
        );
        sent += 1;
    }
    assert!(sent >= 15, "only {sent} operations were tried");
    // The create example made a customer and the delete example removed it.
    let count = json_of(app.get("/api/v1/customers/count").await, 200).await;
    assert_eq!(count["data"]["count"], 0);
    let history = json_of(app.get("/api/v1/customers/1/history").await, 200).await;
    let types: Vec<&str> = history["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["CustomerCreated", "CustomerUpdated", "CustomerDeleted"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_every_body_field_limit_and_operation() {
    let app = spawn_app(Backend::Sqlite).await;
    let text = document_text(&app).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    for (method, path, operation) in operations(&doc) {
        let summary = operation["summary"].as_str().unwrap_or_default();
        assert!(
            !summary.is_empty() && !summary.starts_with("Contract"),
            "{method} {path}: summary {summary:?}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let create = &schemas["CreateCustomerRequest"];
    assert_eq!(
        create["required"],
        json!(["email", "firstName", "lastName"])
    );
    assert_eq!(create["additionalProperties"], false);
    let fields = create["properties"].as_object().unwrap();
    // Swagger UI lists the fields in the document's order: the contract's.
    let order = [
        "email",
        "firstName",
        "lastName",
        "phone",
        "isActive",
        "dateOfBirth",
        "address",
        "preferences",
    ];
    assert_eq!(fields.len(), order.len(), "{create}");
    let section = &text[text.find("\"CreateCustomerRequest\":{").unwrap()..];
    let at: Vec<usize> = order
        .iter()
        .map(|name| section.find(&format!("\"{name}\":{{")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "field order: {at:?}");
    assert_eq!(fields["email"]["format"], "email");
    assert_eq!(fields["email"]["maxLength"], 254);
    // Names, phones, address fields and dates of birth carry the domain's rules as patterns
    // (checked against the service below).
    for name in ["firstName", "lastName", "phone", "dateOfBirth"] {
        assert!(
            fields[name]["pattern"].is_string(),
            "{name}: {}",
            fields[name]
        );
    }
    assert_eq!(fields["dateOfBirth"]["format"], "date");
    let address = resolve(&doc, address_schema(&fields["address"]));
    assert_eq!(address["required"], json!(["street", "city", "country"]));
    assert_eq!(address["additionalProperties"], false);
    let patch = &schemas["UpdateCustomerRequest"];
    assert!(patch.get("required").is_none(), "{patch}");

    let get = &doc["paths"]["/api/v1/customers/{id}"]["get"];
    let id = parameter(get, "id");
    assert_eq!(id["schema"]["minimum"], 1);
    assert_eq!(id["schema"]["maximum"], i64::MAX);
    let list = &doc["paths"]["/api/v1/customers"]["get"];
    assert_eq!(parameter(list, "page")["schema"]["minimum"], 1);
    assert_eq!(parameter(list, "limit")["schema"]["minimum"], 1);
    assert_eq!(parameter(list, "limit")["schema"]["maximum"], 100);
    // A header is a plain string, not "string or null".
    let post = &doc["paths"]["/api/v1/customers"]["post"];
    assert_eq!(
        parameter(post, "Idempotency-Key")["schema"]["type"],
        "string"
    );
    // Examples look like customers, not generated placeholders.
    let customer = example_of(&schemas["Customer"]).expect("a Customer example");
    assert_eq!(customer["email"], "ada.lovelace@example.com");
    let text = doc.to_string();
    assert!(!text.contains("9007199254740991"), "placeholder ids");
}

/// The object schema of a nullable field (`oneOf: [null, $ref]` or a plain `$ref`).
fn address_schema(field: &Value) -> &Value {
    field["oneOf"]
        .as_array()
        .and_then(|options| options.iter().find(|o| o.get("$ref").is_some()))
        .unwrap_or(field)
}

fn parameter<'a>(operation: &'a Value, name: &str) -> &'a Value {
    operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("parameter {name}: {operation}"))
}

/// The documented rules are the service's, both ways: for values at and around every rule
/// (lengths counted after trimming, white space around a value, control characters in and
/// around it, a phone's digits, the 13-year age limit), a create succeeds exactly when the
/// field's schema in the document accepts the value, and otherwise is refused on that field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_rules_are_the_ones_the_service_applies() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = document(&app).await;
    let create = &doc["components"]["schemas"]["CreateCustomerRequest"];
    let address = resolve(&doc, address_schema(&create["properties"]["address"]));
    let example = example_of(create).unwrap().clone();
    let today = chrono::Utc::now().date_naive();
    // Today's month and day 13 years ago; on 29 February of a leap year, the 28th then.
    let latest = today
        .with_year(today.year() - 13)
        .unwrap_or_else(|| chrono::NaiveDate::from_ymd_opt(today.year() - 13, 2, 28).unwrap());
    let names = [
        "a".to_owned(),
        "a".repeat(2),
        "a".repeat(100),
        "a".repeat(101),
        format!(" {} \u{3000}", "é".repeat(100)),
        "\tAda\n".into(),
        "Ada\u{85}".into(),
        "A\tda".into(),
        "\u{1c}Ada".into(),
        "Ada\u{7f}".into(),
        "   ".into(),
        "\u{2003}A\u{2003}".into(),
    ];
    let phones = [
        "+000000000",
        "+0000000000",
        " +1 (555) 010-0100 ",
        "55555555555555555555555555555555",
        "555555555555555555555555555555555",
        " 55555555555555555555555555555555\t",
        "555\t010\u{3000}0100",
        "+ 5550100100",
        "5550100100+",
        "++5550100100",
        "\u{ff15}550100100",
        "555-010-0100 x",
    ];
    let addresses = [
        String::new(),
        " ".into(),
        "a".into(),
        "a".repeat(200),
        "a".repeat(201),
        format!(" {} ", "a".repeat(200)),
        "\ta".into(),
        "a\u{85}".into(),
        "\u{a0}a b\u{a0}".into(),
        "a\u{1f}b".into(),
    ];
    let optional_addresses = ["", " ", "\t", "\t\n", "a\t", "x", "\u{2028}"];
    let dates = [
        "1990-12-10".to_owned(),
        latest.to_string(),
        (latest + chrono::Days::new(1)).to_string(),
        (latest - chrono::Days::new(1)).to_string(),
        (latest - chrono::Days::new(40)).to_string(),
        (latest + chrono::Days::new(40)).to_string(),
        (latest - chrono::Days::new(400)).to_string(),
        (latest + chrono::Days::new(400)).to_string(),
        format!("{latest}T23:59:59Z"),
        today.to_string(),
        format!(" {}", latest),
        "2896-07-04".into(),
        "0001-01-01".into(),
    ];
    let mut cases: Vec<(&str, Value)> = Vec::new();
    for name in &names {
        cases.push(("firstName", json!(name)));
        cases.push(("lastName", json!(name)));
    }
    cases.extend(phones.iter().map(|p| ("phone", json!(p))));
    cases.extend(dates.iter().map(|d| ("dateOfBirth", json!(d))));
    for value in &addresses {
        for key in ["street", "city", "country"] {
            cases.push((key, json!(value)));
        }
    }
    for value in optional_addresses {
        cases.push(("state", json!(value)));
        cases.push(("zipCode", json!(value)));
    }
    let (mut accepted, mut refused) = (0, 0);
    for (n, (field, value)) in cases.into_iter().enumerate() {
        let mut body = example.as_object().unwrap().clone();
        body.insert("email".into(), json!(format!("rule{n}@example.com")));
        let (schema, error_key) = if address["properties"].get(field).is_some() {
            body["address"][field] = value.clone();
            (&address["properties"][field], format!("address.{field}"))
        } else {
            body.insert(field.into(), value.clone());
            (&create["properties"][field], field.to_owned())
        };
        let documented = jsonschema::validator_for(schema)
            .unwrap_or_else(|e| panic!("{field}: {e}: {schema}"))
            .is_valid(&value);
        let response = app.post_customer(&Value::Object(body)).await;
        if documented {
            accepted += 1;
            json_of(response, 201).await;
        } else {
            refused += 1;
            let body = json_of(response, 400).await;
            assert!(
                body["fieldErrors"][&error_key].is_array(),
                "{field} = {value}: the document refuses it, the service {body}"
            );
        }
    }
    // Both sides of every rule were tried.
    assert!(
        accepted > 30 && refused > 30,
        "{accepted} accepted, {refused} refused"
    );

    let max = create["properties"]["email"]["maxLength"].as_u64().unwrap() as usize;
    for (length, status) in [(max, 201), (max + 1, 400)] {
        let local = "e".repeat(length - "@example.com".len());
        let mut body = example.as_object().unwrap().clone();
        body.insert("email".into(), json!(format!("{local}@example.com")));
        json_of(app.post_customer(&Value::Object(body)).await, status).await;
    }
}

/// What schemathesis and the AsyncAPI parser check in CI (`tools/validate-docs.sh`), as far as
/// the test command can without them: closed sets are enums, accepted `null`s are declared,
/// every status the layers can answer is listed, and the links never lead from a delete or
/// to the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_declares_closed_sets_nulls_statuses_and_links() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = document(&app).await;
    let events = &doc["paths"]["/api/v1/events"]["get"];
    let types = parameter(events, "type")["schema"]["enum"]
        .as_array()
        .unwrap();
    assert_eq!(types.len(), 9, "{types:?}");
    assert!(types.contains(&json!("CustomerCreated")));
    let sagas = &doc["paths"]["/api/v1/sagas"]["get"];
    assert_eq!(
        parameter(sagas, "state")["schema"]["enum"],
        json!(["open", "completed", "failed", "cancelled"])
    );
    for path in ["/api/v1/events?type=Nope", "/api/v1/sagas?state=nope"] {
        assert_eq!(app.get(path).await.status(), 400, "{path}");
    }
    let preferences = &doc["components"]["schemas"]["PreferencesInput"]["properties"];
    for key in ["company", "industry", "preferredContact", "newsletter"] {
        assert!(
            preferences[key]["type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("null"))),
            "{key}: {}",
            preferences[key]
        );
    }
    let post = &doc["paths"]["/api/v1/customers"]["post"]["responses"];
    for status in [
        "201", "400", "401", "409", "410", "413", "422", "429", "503",
    ] {
        assert!(post.get(status).is_some(), "POST: {status}");
    }
    for method in ["patch", "delete"] {
        let responses = &doc["paths"]["/api/v1/customers/{id}"][method]["responses"];
        for status in ["401", "404", "412", "429", "503"] {
            assert!(responses.get(status).is_some(), "{method}: {status}");
        }
        assert!(responses.get("204").or(responses.get("200")).is_some());
    }
    // Reads are 401 only with AUTH_PROTECT_READS; the probes never.
    let get = &doc["paths"]["/api/v1/customers/{id}"]["get"]["responses"];
    assert!(get.get("401").is_some() && get.get("429").is_none());
    assert!(doc["paths"]["/livez"]["get"]["responses"]
        .get("401")
        .is_none());

    let created = &post["201"]["links"];
    assert_eq!(
        created["GetCustomer"]["parameters"]["id"],
        "$response.body#/data/id"
    );
    assert_eq!(
        created["UpdateCustomer"]["parameters"]["header.If-Match"],
        "$response.header.ETag"
    );
    let operations = operations(&doc);
    let targets: Vec<&Value> = operations
        .iter()
        .flat_map(|(_, _, operation)| operation["responses"].as_object().unwrap().values())
        .filter_map(|response| response["links"].as_object())
        .flat_map(|links| links.values().map(|link| &link["operationId"]))
        .collect();
    assert_eq!(targets.len(), 9, "{targets:?}");
    assert!(
        !targets.contains(&&json!("customer_history")),
        "{targets:?}"
    );
    let delete = &doc["paths"]["/api/v1/customers/{id}"]["delete"]["responses"]["204"];
    assert!(delete.get("links").is_none(), "{delete}");
    // An event stream's schema is one event, its data the documented JSON as text.
    let stream = &doc["paths"]["/api/v1/health/stream"]["get"]["responses"]["200"]["content"]
        ["text/event-stream"]["schema"];
    assert_eq!(
        stream["properties"]["data"]["contentMediaType"],
        "application/json"
    );
    assert_eq!(
        stream["properties"]["data"]["contentSchema"]["$ref"],
        "#/components/schemas/Status"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_try_it_out_creates_a_customer_in_headless_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await;
    browser.open(&app.url("/api/docs/")).await;
    browser
        .wait_for(
            "the POST /api/v1/customers operation shown",
            "return document.getElementById('operations-customers-create_customer') || null",
        )
        .await;
    browser
        .run(
            "document.querySelector('#operations-customers-create_customer .opblock-summary-control').click()",
        )
        .await;
    browser
        .wait_for(
            "Try it out offered",
            "const b = document.querySelector('#operations-customers-create_customer .try-out__btn'); \
             if (!b) return null; b.click(); return true",
        )
        .await;
    browser
        .wait_for(
            "Execute offered",
            "const b = document.querySelector('#operations-customers-create_customer .execute'); \
             if (!b) return null; b.click(); return true",
        )
        .await;
    let status = browser
        .wait_for(
            "the answer shown",
            "const c = document.querySelector('#operations-customers-create_customer \
             .live-responses-table tbody .response-col_status'); \
             return c && c.textContent.trim() !== '' ? c.textContent.trim() : null",
        )
        .await;
    assert!(
        status.as_str().unwrap().starts_with("201"),
        "Swagger UI got {status}"
    );
    let customer = json_of(
        app.get("/api/v1/customers/email/ada.lovelace@example.com")
            .await,
        200,
    )
    .await;
    assert_eq!(customer["data"]["fullName"], "Ada Lovelace");
    assert!(
        browser.errors().await.is_empty(),
        "{:?}",
        browser.errors().await
    );
    browser.close().await;
}
