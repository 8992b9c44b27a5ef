//! Contract "HTTP basics": correlation ids, CORS, unknown routes, unreadable bodies, limits,
//! health and the API documents.

use serde_json::json;

use crate::test_app::{is_iso_millis, json_of, minimal, spawn_app_with, Backend, TestApp};

crate::on_every_backend!(
    a_correlation_id_is_echoed_or_generated_on_every_response,
    unusable_correlation_ids_are_replaced,
    unknown_routes_and_methods_are_404_in_the_original_wording,
    unreadable_bodies_are_400_with_a_clear_message,
    bodies_over_the_limit_are_413,
    the_openapi_document_and_swagger_ui_are_served,
    answers_of_1_kib_or_more_are_gzipped_only_when_the_client_asks,
);

fn is_uuid(value: &str) -> bool {
    uuid::Uuid::parse_str(value).is_ok()
}

async fn a_correlation_id_is_echoed_or_generated_on_every_response(app: TestApp) {
    let requests = [
        app.client.get(app.url("/api/v1/customers")),
        app.client.get(app.url("/no/such/route")),
        app.client
            .post(app.url("/api/v1/customers"))
            .header("content-type", "application/json")
            .body("{"),
        app.client.get(app.url("/api/v1/customers/abc")),
    ];
    for request in requests {
        let echoed = app
            .send(
                request
                    .try_clone()
                    .unwrap()
                    .header("X-Correlation-ID", "client-id-42"),
            )
            .await;
        assert_eq!(echoed.headers()["x-correlation-id"], "client-id-42");
        let generated = app.send(request).await;
        let id = generated.headers()["x-correlation-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(is_uuid(&id), "{id}");
    }
}

async fn unusable_correlation_ids_are_replaced(app: TestApp) {
    let spoof = "abc http.response.status_code=500} level=ERROR";
    for bad in [
        "x".repeat(129),
        "tab\tinside".to_owned(),
        String::new(),
        spoof.to_owned(),
        "a/b=c".to_owned(),
        "\"quoted\"".to_owned(),
    ] {
        let response = app
            .get_with("/api/v1/customers/count", "X-Correlation-ID", bad.as_str())
            .await;
        let id = response.headers()["x-correlation-id"].to_str().unwrap();
        assert!(is_uuid(id), "{bad:?} was not replaced: {id}");
    }
    // Nor does a write keep it in its event's metadata.
    let response = app
        .send(
            app.client
                .post(app.url("/api/v1/customers"))
                .header("X-Correlation-ID", spoof)
                .json(&minimal("spoof@example.com")),
        )
        .await;
    let id = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(is_uuid(&id), "{id}");
    let created = json_of(response, 201).await["data"]["id"].as_i64().unwrap();
    let events = app.events_of(created).await;
    assert_eq!(events[0]["metadata"]["correlationId"], id.as_str());
    let max = format!("{}.:-_Z9", "y".repeat(122));
    let response = app
        .get_with("/api/v1/customers/count", "X-Correlation-ID", max.as_str())
        .await;
    assert_eq!(response.headers()["x-correlation-id"], max.as_str());
}

async fn unknown_routes_and_methods_are_404_in_the_original_wording(app: TestApp) {
    let body = json_of(app.get("/api/v1/nothing?x=1").await, 404).await;
    assert_eq!(body["message"], "Cannot GET /api/v1/nothing");
    assert_eq!(body["error"], "Not Found");
    assert_eq!(body["statusCode"], 404);
    assert_eq!(body["path"], "/api/v1/nothing?x=1");
    assert!(is_iso_millis(&body["timestamp"]));
    let body = json_of(
        app.send(app.client.put(app.url("/api/v1/customers/1")))
            .await,
        404,
    )
    .await;
    assert_eq!(body["message"], "Cannot PUT /api/v1/customers/1");

    // `/` alone sends a browser to the dashboard; other methods on it are unknown as ever.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/dashboard");
    let body = json_of(app.send(app.client.post(app.url("/"))).await, 404).await;
    assert_eq!(body["message"], "Cannot POST /");
}

async fn unreadable_bodies_are_400_with_a_clear_message(app: TestApp) {
    let post = |content_type: &str, body: &str| {
        app.client
            .post(app.url("/api/v1/customers"))
            .header("content-type", content_type)
            .body(body.to_owned())
    };
    let body = json_of(
        app.send(post("application/json", "{\"email\": ")).await,
        400,
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Malformed JSON in request body"),
        "{body}"
    );
    for not_an_object in ["[1,2]", "\"text\"", "42", "null"] {
        let body = json_of(app.send(post("application/json", not_an_object)).await, 400).await;
        assert_eq!(body["message"], "Request body must be a JSON object");
    }
    let body = json_of(
        app.send(post("text/plain", r#"{"email":"a@b.co"}"#)).await,
        400,
    )
    .await;
    assert_eq!(body["message"], "Content-Type must be application/json");
    let body = json_of(
        app.send(app.client.post(app.url("/api/v1/customers")))
            .await,
        400,
    )
    .await;
    assert_eq!(body["message"], "Content-Type must be application/json");
    assert_eq!(app.event_count().await, 0);
}

async fn bodies_over_the_limit_are_413(app: TestApp) {
    let mut body = minimal("a@b.co");
    body["preferences"] = json!({"blob": "x".repeat(70 * 1024)});
    let response = json_of(app.post_customer(&body).await, 413).await;
    assert_eq!(response["error"], "Payload Too Large");
    assert_eq!(response["statusCode"], 413);
    assert_eq!(response["message"], "Request body is too large");
    assert_eq!(response["path"], "/api/v1/customers");

    // Without a Content-Length (chunked), the limit is found while reading: the same 413.
    let chunk = serde_json::to_string(&body).unwrap();
    let request = format!(
        "POST /api/v1/customers HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The server may answer and close before it has read everything: a failed write is fine.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#""message":"Request body is too large""#),
        "{answer}"
    );
    assert_eq!(app.event_count().await, 0);
}

async fn answers_of_1_kib_or_more_are_gzipped_only_when_the_client_asks(app: TestApp) {
    for i in 0..5 {
        app.create_id(&minimal(&format!("gzip{i}@example.com")))
            .await;
    }
    let plain = app.get("/api/v1/customers?limit=5").await;
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    let plain = plain.bytes().await.unwrap();
    assert!(plain.len() >= 1024, "{}", plain.len());

    // One customer is under 1 KiB: sent as it is, whatever the client accepts.
    let id = app.create_id(&minimal("gzip-small@example.com")).await;
    let small = app
        .get_with(
            &format!("/api/v1/customers/{id}"),
            "Accept-Encoding",
            "gzip",
        )
        .await;
    assert_eq!(small.status(), 200);
    assert!(small.headers().get("content-encoding").is_none());
    assert!(small.headers().get("vary").is_none());
    let small = small.bytes().await.unwrap();
    assert!(small.len() < 1024, "{}", small.len());
    assert_eq!(small[0], b'{');

    let gzipped = app
        .get_with("/api/v1/customers?limit=5", "Accept-Encoding", "gzip")
        .await;
    assert_eq!(gzipped.status(), 200);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert!(gzipped.headers().contains_key("x-correlation-id"));
    let body = gzipped.bytes().await.unwrap();
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(
        body.len() < plain.len(),
        "{} >= {}",
        body.len(),
        plain.len()
    );
}

#[tokio::test]
async fn health_reports_the_database_and_the_outbox() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.relay.enabled = false).await;
    app.create(&minimal("a@b.co")).await;
    let body = json_of(app.get("/api/v1/health").await, 200).await;
    assert_eq!(body["success"], true);
    let data = &body["data"];
    assert_eq!(data["status"], "healthy");
    assert_eq!(data["service"], "customer-service");
    assert_eq!(data["checks"]["database"], json!({"status": "ok"}));
    assert_eq!(data["checks"]["redis"]["status"], "disabled");
    assert_eq!(data["checks"]["outbox"]["pending"], 1);
    assert_eq!(
        data["checks"]["outbox"]["lastError"],
        serde_json::Value::Null
    );
    assert!(
        data["checks"]["outbox"]["oldestPendingAgeMs"]
            .as_i64()
            .unwrap()
            >= 0
    );
    assert!(data["uptime"].as_f64().unwrap() > 0.0);
    assert_eq!(data["version"], env!("CARGO_PKG_VERSION"));

    let body = json_of(app.get("/api/v1/customers/health").await, 200).await;
    assert_eq!(body["data"]["status"], "ok");
    assert_eq!(body["data"]["service"], "customer-service");
}

async fn the_openapi_document_and_swagger_ui_are_served(app: TestApp) {
    let doc = json_of(app.get("/api/docs/openapi.json").await, 200).await;
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/customers",
        "/api/v1/customers/{id}",
        "/api/v1/customers/email/{email}",
        "/api/v1/customers/active",
        "/api/v1/customers/count",
        "/api/v1/health",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["paths"]["/api/v1/customers/{id}"]["patch"].is_object());
    let ui = app.get("/api/docs/").await;
    assert_eq!(ui.status(), 200);
    assert!(
        ui.text().await.unwrap().contains("swagger"),
        "Swagger UI page"
    );
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.http.cors_origins = vec!["http://admin.test".into(), "http://other.test".into()];
    })
    .await;
    let response = app
        .get_with("/api/v1/customers/count", "Origin", "http://other.test")
        .await;
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://other.test"
    );
    assert_eq!(
        response.headers()["access-control-allow-credentials"],
        "true"
    );

    let response = app
        .get_with("/api/v1/customers/count", "Origin", "http://evil.test")
        .await;
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let preflight = app
        .send(
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/v1/customers/1"))
                .header("Origin", "http://admin.test")
                .header("Access-Control-Request-Method", "PATCH")
                .header("Access-Control-Request-Headers", "content-type,if-match"),
        )
        .await;
    assert_eq!(preflight.status(), 204);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "http://admin.test");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PATCH"));
    assert!(headers.contains_key("x-correlation-id"));
}
