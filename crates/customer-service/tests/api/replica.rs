//! Read replicas (issue #18, item 3), on each engine with a replica made by the test:
//! PostgreSQL (`pg_basebackup -R` from a test-owned primary, applying every commit 300 ms
//! late) and MariaDB (GTID replication from a test-owned primary with a binary log, applying
//! every transaction 2 s late, `MASTER_DELAY`), so that a read served by the replica is
//! visibly behind. Reads go to it; an instance reads its own writes; a `Cache-Control:
//! no-cache` read, and every read while it lags too far or is down, go to the primary.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{AnyConnection, Connection};
use test_servers::{OrSkip, OwnMariaDb, OwnPostgres};

use crate::test_app::{
    create_mysql_database, create_postgres_database, eventually, json_of, minimal, spawn_app_on,
    TestApp,
};

async fn wait_for_replica(app: &TestApp, status: &str) -> Value {
    eventually(&format!("the replica {status}"), || async {
        let health = app.health().await;
        if health["checks"]["replica"]["status"] == status {
            Ok(health)
        } else {
            Err(health.to_string())
        }
    })
    .await
}

/// Connects to `url` once the replica has the database (it replays its creation late).
async fn connect_when_replicated(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match AnyConnection::connect(url).await {
            Ok(connection) => return connection,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the database never reached the replica: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const READS_ON_REPLICA: &str = r#"database_replica_reads_total{target="replica"}"#;
const READS_ON_PRIMARY: &str = r#"database_replica_reads_total{target="primary"}"#;

/// What both engines must do while their replica runs, then pauses applying (`pause`,
/// `resume`: statements run on `replica`). Returns the id of the first customer; there are
/// three.
async fn reads_follow_the_replica(
    app: &TestApp,
    replica: &mut AnyConnection,
    pause: &str,
    resume: &str,
) -> i64 {
    let health = wait_for_replica(app, "ok").await;
    assert_eq!(health["status"], "healthy");

    // Read-your-writes: each PATCH then GET of the same customer sees its own change and
    // version, although the replica applies it later.
    let id = app.create_id(&minimal("rw@example.com")).await;
    // The premise: right after a write, the replica does not have it yet.
    let on_replica: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select version from customers where id = {id}"
    )))
    .fetch_optional(&mut *replica)
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
    let before = app.metric(READS_ON_REPLICA).await;
    app.create_id(&minimal("zebra.unique@example.com")).await;
    let search = "/api/v1/customers?search=zebra.unique";
    let fresh = json_of(app.get_with(search, "Cache-Control", "no-cache").await, 200).await;
    assert_eq!(fresh["data"]["total"], 1, "the primary has it at once");
    let page = json_of(app.get(search).await, 200).await;
    assert_eq!(
        page["data"]["customers"].as_array().unwrap().len(),
        0,
        "the replica had it at once: did the list go to the primary?"
    );
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
    assert!(app.metric(READS_ON_REPLICA).await > before);
    let events = json_of(app.get("/api/v1/events?after=0").await, 200).await;
    assert!(events["data"]["events"].as_array().is_some());
    assert_eq!(app.metric("database_replica_up").await, 1.0);

    // The replica stops applying: once it lags past DATABASE_READ_MAX_LAG_MS every read
    // goes to the primary (which has what the replica lacks), and health says degraded.
    sqlx::raw_sql(sqlx::AssertSqlSafe(pause))
        .execute(&mut *replica)
        .await
        .unwrap();
    app.create_id(&minimal("late@example.com")).await;
    let health = wait_for_replica(app, "lagging").await;
    assert_eq!(health["status"], "degraded");
    assert!(health["checks"]["replica"]["lagMs"].as_u64().unwrap() > 0);
    let primary_reads = app.metric(READS_ON_PRIMARY).await;
    let late = json_of(app.get("/api/v1/customers?search=late").await, 200).await;
    assert_eq!(late["data"]["total"], 1, "a lagging replica served a list");
    assert!(app.metric(READS_ON_PRIMARY).await > primary_reads);
    sqlx::raw_sql(sqlx::AssertSqlSafe(resume))
        .execute(&mut *replica)
        .await
        .unwrap();
    let health = wait_for_replica(app, "ok").await;
    assert_eq!(health["status"], "healthy");
    id
}

/// The replica is gone: every read falls back to the primary, health says degraded.
async fn reads_fall_back_to_the_primary(app: &TestApp, id: i64) {
    let health = wait_for_replica(app, "error").await;
    assert_eq!(health["status"], "degraded");
    let primary_reads = app.metric(READS_ON_PRIMARY).await;
    let replica_reads = app.metric(READS_ON_REPLICA).await;
    let page = json_of(app.get("/api/v1/customers?limit=5").await, 200).await;
    assert_eq!(page["data"]["total"], 3);
    let count = json_of(app.get("/api/v1/customers/count").await, 200).await;
    assert_eq!(count["data"]["count"], 3);
    let found = json_of(app.get("/api/v1/customers/email/rw@example.com").await, 200).await;
    assert_eq!(found["data"]["id"], id);
    // The page and the e-mail look-up read; the totals may come from the cache (the
    // searches above counted the customers for their plans).
    assert!(app.metric(READS_ON_PRIMARY).await >= primary_reads + 2.0);
    assert_eq!(app.metric(READS_ON_REPLICA).await, replica_reads);
    assert_eq!(app.metric("database_replica_up").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_go_to_a_lagging_replica_yet_each_instance_reads_its_own_writes() {
    let Some(primary) = OwnPostgres::start().or_skip() else {
        return;
    };
    let replica = primary.start_replica(Duration::from_millis(300));
    let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let primary_url = create_postgres_database(&primary.url(), &name).await;
    let replica_url = primary_url.replace(
        &format!(":{}/", primary.port()),
        &format!(":{}/", replica.port()),
    );
    let mut direct = connect_when_replicated(&replica_url).await;
    let app = spawn_app_on(primary_url, |c| {
        c.database.read_url = Some(replica_url.clone());
        c.database.read_max_lag = Duration::from_secs(2);
    })
    .await;
    let id = reads_follow_the_replica(
        &app,
        &mut direct,
        "select pg_wal_replay_pause()",
        "select pg_wal_replay_resume()",
    )
    .await;
    drop(direct);
    replica.stop();
    reads_fall_back_to_the_primary(&app, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_reads_go_to_a_lagging_replica_yet_each_instance_reads_its_own_writes() {
    let Some(primary) = OwnMariaDb::start_primary().or_skip() else {
        return;
    };
    let mut replica = primary.start_replica(Duration::from_secs(2));
    let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let primary_url = create_mysql_database(&primary.url(), &name).await;
    let replica_url = primary_url.replace(
        &format!(":{}/", primary.port()),
        &format!(":{}/", replica.port()),
    );
    let mut direct = connect_when_replicated(&replica_url).await;
    let app = spawn_app_on(primary_url, |c| {
        c.database.read_url = Some(replica_url.clone());
        // MASTER_DELAY counts from the second a transaction began: up to 3 s behind.
        c.database.read_max_lag = Duration::from_secs(4);
    })
    .await;
    let id =
        reads_follow_the_replica(&app, &mut direct, "stop slave sql_thread", "start slave").await;
    drop(direct);
    replica.stop();
    reads_fall_back_to_the_primary(&app, id).await;
}

/// A MySQL / MariaDB primary without a binary log cannot be followed: the service says so
/// at start instead of reading stale rows without knowing.
#[tokio::test]
async fn a_mariadb_primary_without_a_binary_log_has_no_replica() {
    let Some(server) = OwnMariaDb::start().or_skip() else {
        return;
    };
    let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let url = create_mysql_database(&server.url(), &name).await;
    let mut config = crate::test_app::test_config(url.clone());
    config.database.read_url = Some(url);
    let error = customer_service::App::build(&config)
        .await
        .err()
        .expect("a replica of a server without a binary log was accepted");
    let message = format!("{error:#}");
    assert!(
        message.starts_with("connecting to the read replica MySQL")
            && message.contains("(DATABASE_READ_URL)")
            && message.ends_with(
                "the primary writes no binary log (log_bin is OFF): a replica cannot be \
                 followed without one"
            ),
        "{message}"
    );
}
