//! Read replicas (issue #18, item 3): a streaming replica made by the test (`pg_basebackup
//! -R` from a test-owned primary) that applies every commit 300 ms late, so that a read
//! served by it is visibly behind. Reads go to it; an instance reads its own writes; a
//! `Cache-Control: no-cache` read and every read while it is down go to the primary.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;
use test_servers::{OrSkip, OwnPostgres};

use crate::test_app::{
    create_postgres_database, json_of, minimal, spawn_app_with, Backend, TestApp,
};

const APPLY_DELAY: Duration = Duration::from_millis(300);

/// A series' value in `/metrics` (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn replica_check(app: &TestApp) -> Value {
    let health = app
        .get("/api/v1/health")
        .await
        .json::<Value>()
        .await
        .unwrap();
    health["data"].clone()
}

async fn wait_for_replica(app: &TestApp, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = replica_check(app).await;
        if health["checks"]["replica"]["status"] == status {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "replica never {status}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_a_lagging_replica_yet_each_instance_reads_its_own_writes() {
    let Some(primary) = OwnPostgres::start().or_skip() else {
        return;
    };
    let replica = primary.start_replica(APPLY_DELAY);
    let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let primary_url = create_postgres_database(&primary.url(), &name).await;
    let replica_url = primary_url.replace(
        &format!(":{}/", primary.port()),
        &format!(":{}/", replica.port()),
    );
    // The replica has the new database once it has replayed its creation.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqlx::PgConnection::connect(&replica_url).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the database never reached the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.database.url = primary_url.clone();
        c.database.read_url = Some(replica_url.clone());
        c.database.read_max_lag = Duration::from_secs(5);
    })
    .await;
    let health = wait_for_replica(&app, "ok").await;
    assert_eq!(health["status"], "healthy");

    // Read-your-writes: each PATCH then GET of the same customer sees its own change and
    // version, although the replica applies it 300 ms later.
    let id = app.create_id(&minimal("rw@example.com")).await;
    // The premise: right after a write, the replica does not have it yet.
    let mut direct = sqlx::PgConnection::connect(&replica_url).await.unwrap();
    let on_replica: Option<i64> = sqlx::query_scalar("select version from customers where id = $1")
        .bind(id)
        .fetch_optional(&mut direct)
        .await
        .unwrap();
    assert_eq!(on_replica, None, "the replica applied the create at once");
    for n in 0..20 {
        let name = format!("Name{n}");
        app.update(id, &json!({"firstName": name})).await;
        let response = app.get_customer(id).await;
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let body = json_of(response, 200).await;
        assert_eq!(
            body["data"]["firstName"], name,
            "read {n} did not see its write"
        );
        assert_eq!(etag, format!("\"{}\"", n + 2));
        let history = json_of(
            app.get(&format!("/api/v1/customers/{id}/history")).await,
            200,
        )
        .await;
        assert_eq!(history["data"]["events"].as_array().unwrap().len(), n + 2);
    }

    // Lists are served by the replica, and lag by its delay; `no-cache` reads the primary.
    let before = metric(&app, r#"database_replica_reads_total{target="replica"}"#).await;
    app.create_id(&minimal("zebra.unique@example.com")).await;
    let search = "/api/v1/customers?search=zebra.unique";
    let fresh = json_of(app.get_with(search, "Cache-Control", "no-cache").await, 200).await;
    assert_eq!(fresh["data"]["total"], 1, "the primary has it at once");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = json_of(app.get(search).await, 200).await;
        if page["data"]["customers"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never caught up: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(&app, r#"database_replica_reads_total{target="replica"}"#).await > before);
    let events = json_of(app.get("/api/v1/events?after=0").await, 200).await;
    assert!(events["data"]["events"].as_array().is_some());
    assert!(metric(&app, "database_replica_up").await == 1.0);

    // The replica goes away: every read falls back to the primary, health says degraded.
    replica.stop();
    let health = wait_for_replica(&app, "error").await;
    assert_eq!(health["status"], "degraded");
    let primary_reads = metric(&app, r#"database_replica_reads_total{target="primary"}"#).await;
    let page = json_of(app.get("/api/v1/customers?limit=5").await, 200).await;
    assert_eq!(page["data"]["total"], 2);
    let count = json_of(app.get("/api/v1/customers/count").await, 200).await;
    assert_eq!(count["data"]["count"], 2);
    let found = json_of(app.get("/api/v1/customers/email/rw@example.com").await, 200).await;
    assert_eq!(found["data"]["id"], id);
    assert!(
        metric(&app, r#"database_replica_reads_total{target="primary"}"#).await
            >= primary_reads + 3.0
    );
    assert_eq!(metric(&app, "database_replica_up").await, 0.0);
}
