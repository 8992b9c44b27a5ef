//! OTLP trace export: the binary, with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a collector
//! this test runs, sends each request's spans as OTLP/HTTP JSON, continuing the caller's
//! W3C trace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::own_server::ServiceProcess;
use crate::test_app::{fresh_database, minimal, Backend};

/// What the collector received: the `x-tenant` header and the body of each export.
type Received = Arc<Mutex<Vec<(Option<String>, String)>>>;

/// A collector on a free port that answers every export with 200.
async fn collector() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(received): State<Received>, headers: HeaderMap, body: String| async move {
                    let tenant = headers
                        .get("x-tenant")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    received.lock().unwrap().push((tenant, body));
                    "{}"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), received)
}

/// Every span received so far.
fn spans(received: &Received) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, body)| {
            let request: Value = serde_json::from_str(body).unwrap();
            request["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_over_otlp_continuing_the_callers_trace() {
    let (endpoint, received) = collector().await;
    let (database_url, _dir) = fresh_database(Backend::Sqlite).await;
    let service = ServiceProcess::start(&[
        ("DATABASE_URL", database_url),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=blue".to_owned()),
    ])
    .await;
    let client = reqwest::Client::new();

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let created = client
        .post(service.url("/api/v1/customers"))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&minimal("traced@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let found = client
        .get(service.url("/api/v1/customers/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    // The caller decided not to sample this one: a parent-based sampler follows it.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let skipped = client
        .get(service.url("/api/v1/customers/count"))
        .header("traceparent", format!("00-{unsampled}-b7ad6b7169203331-00"))
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(15);
    let exported = loop {
        let exported = spans(&received);
        let servers = exported.iter().filter(|s| s["kind"] == 2).count();
        if servers >= 2 {
            break exported;
        }
        assert!(
            Instant::now() < deadline,
            "no request spans within 15 s: {exported:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let post = exported
        .iter()
        .find(|s| s["name"] == "POST /api/v1/customers")
        .unwrap_or_else(|| panic!("no POST span in {exported:?}"));
    assert_eq!(post["kind"], 2);
    assert_eq!(post["traceId"], trace);
    assert_eq!(post["parentSpanId"], caller);
    assert_eq!(
        attribute(post, "http.request.method"),
        Some(&json!({"stringValue": "POST"}))
    );
    assert_eq!(
        attribute(post, "http.route"),
        Some(&json!({"stringValue": "/api/v1/customers"}))
    );
    assert_eq!(
        attribute(post, "http.response.status_code"),
        Some(&json!({"intValue": "201"}))
    );
    assert!(attribute(post, "correlation_id").is_some());
    assert!(post.get("status").is_none(), "a 201 is no error");
    let start: u128 = post["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = post["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start < end && end - start < 10_000_000_000, "{post}");

    // The application's spans are its children, in the same trace.
    let create = exported
        .iter()
        .find(|s| s["name"] == "create_customer")
        .unwrap_or_else(|| panic!("no create_customer span in {exported:?}"));
    assert_eq!(create["traceId"], trace);
    assert_eq!(create["parentSpanId"], post["spanId"]);
    assert_eq!(create["kind"], 1);
    let insert = exported
        .iter()
        .find(|s| s["name"] == "store.insert")
        .unwrap_or_else(|| panic!("no store.insert span in {exported:?}"));
    assert_eq!(insert["traceId"], trace);
    assert_eq!(insert["parentSpanId"], create["spanId"]);

    // Without a traceparent a request starts its own trace.
    let get = exported
        .iter()
        .find(|s| s["name"] == "GET /api/v1/customers/{id}")
        .unwrap_or_else(|| panic!("no GET span in {exported:?}"));
    assert_ne!(get["traceId"], trace);
    assert_eq!(get["traceId"].as_str().unwrap().len(), 32);
    assert!(get.get("parentSpanId").is_none());

    assert!(
        exported.iter().all(|s| s["traceId"] != unsampled),
        "the unsampled trace was exported: {exported:?}"
    );
    let received = received.lock().unwrap();
    for (tenant, body) in received.iter() {
        assert_eq!(
            tenant.as_deref(),
            Some("blue"),
            "OTEL_EXPORTER_OTLP_HEADERS"
        );
        let request: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            request["resourceSpans"][0]["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "customer-service"}})
        );
        assert!(
            !body.contains("traced@example.com"),
            "personal data in a span: {body}"
        );
    }
    drop(service);
}
