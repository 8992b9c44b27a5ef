//! A database outage: writes and reads answer 503 (never 500, never a hang), health answers
//! 503 within a second, and the service recovers on its own when the database returns.
//!
//! The test owns its PostgreSQL: a cluster made with `initdb` in a temp dir on a free port,
//! stopped and started with `pg_ctl`. The shared server is never touched.

use std::time::{Duration, Instant};

use serde_json::json;
use test_servers::{OrSkip, OwnPostgres};

use crate::test_app::{create_postgres_database, json_of, minimal, test_config, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503s_and_the_service_recovers_on_its_own() {
    let Some(pg) = OwnPostgres::start().or_skip() else {
        return;
    };
    let url = create_postgres_database(&pg.url(), "outage").await;
    let mut config = test_config(url);
    config.database.acquire_timeout = Duration::from_millis(500);
    let app = customer_service::App::build(&config).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = TestApp::attach(address, &app, config.database.url.clone());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let app = handle;

    let id = app.create_id(&minimal("before@example.com")).await;
    pg.stop();

    let started = Instant::now();
    let body = json_of(app.post_customer(&minimal("during@example.com")).await, 503).await;
    assert_eq!(body["error"], "Service Unavailable");
    let text = body.to_string().to_lowercase();
    assert!(
        !text.contains("sql") && !text.contains("connection refused"),
        "leaks internals: {body}"
    );
    assert!(body["correlationId"].is_string());
    json_of(app.get_customer(id).await, 503).await;
    json_of(
        app.patch_customer(id, &json!({"lastName": "Gone"})).await,
        503,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503s must come promptly"
    );

    let started = Instant::now();
    let health = json_of(app.get("/api/v1/health").await, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "health took {:?}",
        started.elapsed()
    );
    assert_eq!(health["success"], false);
    assert_eq!(health["data"]["status"], "unhealthy");
    assert_eq!(health["data"]["checks"]["database"]["status"], "error");

    pg.restart();
    // Recovery needs no restart: poll until a write succeeds (bounded).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = app
            .post_customer(&minimal("after@example.com"))
            .await
            .status()
            .as_u16();
        if status == 201 {
            break;
        }
        assert_eq!(status, 503, "only 503 is acceptable while reconnecting");
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    json_of(app.get("/api/v1/health").await, 200).await;
    json_of(app.get_customer(id).await, 200).await;
    // The write attempted during the outage left nothing behind.
    json_of(
        app.get("/api/v1/customers/email/during@example.com").await,
        404,
    )
    .await;
}
