//! What operators and orchestrators read: `/livez`, `/readyz`, `/metrics`, and the
//! `healthcheck` subcommand behind the container health check.

use serde_json::json;

use crate::test_app::{json_of, minimal, TestApp};

crate::on_every_backend!(
    probes_answer_at_the_root,
    metrics_expose_http_outbox_relay_and_pool_series_without_ids,
    the_healthcheck_subcommand_reports_the_service_on_port,
);

async fn probes_answer_at_the_root(app: TestApp) {
    let live = app.get("/livez").await;
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "ready"})
    );
}

async fn metrics_expose_http_outbox_relay_and_pool_series_without_ids(app: TestApp) {
    let id = app.create_id(&minimal("m@example.com")).await;
    json_of(app.get_customer(id).await, 200).await;
    json_of(app.get_customer(id).await, 200).await;
    json_of(app.get("/api/v1/customers/999999").await, 404).await;
    app.wait_until_published().await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    for line in [
        r#"http_requests_total{method="POST",route="/api/v1/customers",status="201"} 1"#,
        r#"http_requests_total{method="GET",route="/api/v1/customers/{id}",status="200"} 2"#,
        r#"http_requests_total{method="GET",route="/api/v1/customers/{id}",status="404"} 1"#,
        r#"http_request_duration_seconds_count{method="GET",route="/api/v1/customers/{id}",status="200"} 2"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/customers/{id}",status="200",le="+Inf"} 2"#,
        "outbox_pending_events 0",
        "outbox_oldest_pending_age_seconds 0",
        "outbox_published_events_total 1",
        "outbox_publish_failures_total 0",
        "relay_leader 1",
        "database_up 1",
    ] {
        assert!(has(line), "{line} missing in\n{text}");
    }
    for kind in [
        "# TYPE http_requests_total counter",
        "# TYPE http_request_duration_seconds histogram",
        "# TYPE outbox_pending_events gauge",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
    ] {
        assert!(has(kind), "{kind}");
    }
    // The process's own figures, read from /proc: a live process has memory and open files.
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    // Whole seconds (the crate's resolution): present and a number is what can be checked.
    value("process_cpu_seconds_total");
    assert!(
        text.lines()
            .any(|l| l.starts_with("db_pool_connections{") && l.contains("state=\"max\"")),
        "{text}"
    );
    // No ids and no personal data in labels.
    assert!(!text.contains(&format!("/{id}\"")), "{text}");
    assert!(!text.contains("/999999") && !text.contains("m@example.com"));
    assert!(!text.contains("redis_up"), "no Redis configured");
}

async fn the_healthcheck_subcommand_reports_the_service_on_port(app: TestApp) {
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let run = |port: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_customer-service"))
                .arg("healthcheck")
                .env("PORT", port)
                .env("RUST_LOG", "off")
                .output()
                .unwrap()
        })
    };
    let ok = run(port).await.unwrap();
    assert!(ok.status.success(), "{ok:?}");
    // Nothing listens on port 1.
    let down = run("1".to_owned()).await.unwrap();
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("connecting to 127.0.0.1:1"));
}
