//! Every operation of the service's own OpenAPI document (`/api/docs/openapi.json`),
//! called with generated parameters, headers and bodies — valid, invalid and odd: never a
//! 5xx, and only statuses the document lists for that operation. The Rust stand-in for a
//! bounded schemathesis run (no Python in the test command).

use serde_json::{json, Value};

use crate::robustness::FIELDS;
use crate::test_app::{minimal, TestApp};

crate::on_every_backend!(generated_requests_to_every_documented_operation_get_documented_answers,);

/// Requests per operation.
const CALLS: usize = 40;

/// Values a parameter or field may get: typical, boundary and hostile.
fn pick_scalar(rng: &mut fastrand::Rng, known_id: i64) -> String {
    let pool = [
        known_id.to_string(),
        "1".into(),
        "0".into(),
        "-1".into(),
        "999999999999999999999".into(),
        "abc".into(),
        String::new(),
        "true".into(),
        "2026-01-01T10:00:00Z".into(),
        "CustomerCreated".into(),
        "%00".into(),
        "ü🦀".into(),
        "x".repeat(300),
        "a@b.co".into(),
    ];
    pool[rng.usize(..pool.len())].clone()
}

fn pick_json(rng: &mut fastrand::Rng, depth: u32) -> Value {
    match rng.u8(..if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(rng.f64() * 1e6),
        4 => json!(pick_scalar(rng, 1)),
        5 => json!("1990-01-15"),
        6 => Value::Array(
            (0..rng.usize(..3))
                .map(|_| pick_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "street",
                "city",
                "state",
                "zipCode",
                "country",
                "newsletter",
                "x",
            ];
            Value::Object(
                (0..rng.usize(..4))
                    .map(|_| {
                        (
                            keys[rng.usize(..keys.len())].to_owned(),
                            pick_json(rng, depth + 1),
                        )
                    })
                    .collect(),
            )
        }
    }
}

/// A body for a write: sometimes valid, mostly mutated.
fn pick_body(rng: &mut fastrand::Rng, n: usize) -> Value {
    let mut body = minimal(&format!("gen{n}@example.com"));
    for _ in 0..rng.usize(..4) {
        let field = FIELDS[rng.usize(..FIELDS.len())];
        body[field] = pick_json(rng, 0);
    }
    if rng.u8(..10) == 0 {
        return pick_json(rng, 0);
    }
    body
}

/// A path segment: unreserved characters as they are, everything else `%XX`.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn generated_requests_to_every_documented_operation_get_documented_answers(app: TestApp) {
    let known_id = app.create_id(&minimal("known@example.com")).await;
    let doc: Value = app
        .get("/api/docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut calls = 0;
    let mut n = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if path.ends_with("/stream") {
            continue; // endless streams; covered by their own tests
        }
        for (method, operation) in operations.as_object().unwrap() {
            let documented: Vec<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .filter_map(|code| code.parse().ok())
                .collect();
            let params: Vec<&Value> = operation["parameters"]
                .as_array()
                .map(|p| p.iter().collect())
                .unwrap_or_default();
            for _ in 0..CALLS {
                n += 1;
                let mut url = path.clone();
                let mut query = Vec::new();
                let mut headers = Vec::new();
                for param in &params {
                    let name = param["name"].as_str().unwrap();
                    let value = pick_scalar(&mut rng, known_id);
                    match param["in"].as_str().unwrap() {
                        "path" => {
                            let encoded = percent_encode(&value);
                            let encoded = if encoded.is_empty() {
                                "x".to_owned()
                            } else {
                                encoded
                            };
                            url = url.replace(&format!("{{{name}}}"), &encoded);
                        }
                        "query" if rng.bool() => query.push((name.to_owned(), value)),
                        "header" if rng.bool() => headers.push((name.to_owned(), value)),
                        _ => {}
                    }
                }
                let mut request = app
                    .client
                    .request(method.to_uppercase().parse().unwrap(), app.url(&url))
                    .query(&query);
                for (name, value) in headers {
                    if let Ok(value) = reqwest::header::HeaderValue::from_str(&value) {
                        request = request.header(name, value);
                    }
                }
                if operation.get("requestBody").is_some() {
                    request = request.json(&pick_body(&mut rng, n));
                }
                let response = app.send(request).await;
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                assert!(status < 500, "{method} {url} {query:?} → {status}: {text}");
                assert!(
                    documented.contains(&status),
                    "{method} {url} {query:?} → {status} is not in the document ({documented:?}): {text}"
                );
                calls += 1;
            }
        }
    }
    assert!(calls > 200, "only {calls} calls");
}
