//! Redis going away: writes keep answering 201 at once, health says "degraded", and after
//! Redis returns every event arrives exactly once, in order. A Redis that answers pings but
//! refuses writes degrades the health of every instance once the backlog is old enough. The
//! tests own their redis-server.

use std::time::{Duration, Instant};

use serde_json::json;

use test_servers::{OrSkip, OwnRedis};

use crate::test_app::{
    fresh_database, json_of, minimal, spawn_app_on, spawn_app_with, streamed_payloads,
    unique_redis, Backend,
};

crate::for_every_backend!(
    a_redis_outage_delays_events_and_loses_none,
    a_redis_that_refuses_writes_degrades_every_instance,
);

async fn a_redis_outage_delays_events_and_loses_none(backend: Backend) {
    let Some(mut redis) = OwnRedis::start().or_skip() else {
        return;
    };
    let settings = unique_redis(redis.url());
    let app = spawn_app_with(backend, |c| c.redis = Some(settings.clone())).await;
    app.create(&minimal("before@example.com")).await;
    app.wait_until_published().await;

    redis.stop();
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..100 {
        let response = app
            .post_customer(&minimal(&format!("during{i}@example.com")))
            .await;
        assert_eq!(response.status(), 201);
        ids.push(
            response.json::<serde_json::Value>().await.unwrap()["data"]["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // Not a speed target: the original hung ~30 s per write while Redis was down.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "writes blocked on Redis"
    );

    let health = json_of(app.get("/api/v1/health").await, 200).await["data"].clone();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["checks"]["redis"]["status"], "error");
    assert_eq!(health["checks"]["database"], json!({"status": "ok"}));
    assert!(health["checks"]["outbox"]["pending"].as_i64().unwrap() > 0);
    assert_eq!(health["checks"]["outbox"]["lastError"], "redis unavailable");
    assert_eq!(health["checks"]["outbox"]["status"], "error");

    redis.restart();
    app.wait_until_published().await;
    let health = json_of(app.get("/api/v1/health").await, 200).await["data"].clone();
    assert_eq!(health["status"], "healthy");
    assert_eq!(
        health["checks"]["outbox"]["lastError"],
        serde_json::Value::Null
    );

    // The restarted server kept nothing, so its stream holds exactly the outage's events.
    let mut expected = Vec::new();
    for id in &ids {
        expected.push(app.stored_events_of(*id).await.remove(0).payload);
    }
    let streamed = streamed_payloads(&settings).await;
    assert_eq!(streamed, expected, "every event once, in commit order");
}

async fn a_redis_that_refuses_writes_degrades_every_instance(backend: Backend) {
    let Some(redis) = OwnRedis::start().or_skip() else {
        return;
    };
    let settings = unique_redis(redis.url());
    let (url, _dir) = fresh_database(backend).await;
    let adjust = |c: &mut customer_service::config::Config| {
        c.redis = Some(settings.clone());
        c.relay.degraded_after = Duration::from_secs(1);
    };
    let first = spawn_app_on(url.clone(), adjust).await;
    // SQLite serves one process; PostgreSQL and MariaDB two instances, one of them leading.
    let second = if backend == Backend::Sqlite {
        None
    } else {
        Some(spawn_app_on(url, adjust).await)
    };
    let instances: Vec<&crate::test_app::TestApp> =
        std::iter::once(&first).chain(second.as_ref()).collect();
    first.create(&minimal("before@example.com")).await;
    first.wait_until_published().await;

    // Pings still answer; every write is refused ("OOM command not allowed").
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let set_maxmemory = |bytes: &'static str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .to_owned()
    };
    let _: () = set_maxmemory("1").query_async(&mut admin).await.unwrap();
    instances[instances.len() - 1]
        .create(&minimal("refused@example.com"))
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut leaders = 0;
    for app in &instances {
        let health = json_of(app.get("/api/v1/health").await, 200).await["data"].clone();
        assert_eq!(health["status"], "degraded", "{health}");
        assert_eq!(health["checks"]["redis"]["status"], "ok", "{health}");
        let outbox = &health["checks"]["outbox"];
        assert_eq!(outbox["pending"], 1, "{health}");
        assert!(
            outbox["oldestPendingAgeMs"].as_i64().unwrap() > 1_000,
            "{health}"
        );
        assert!(
            outbox["message"]
                .as_str()
                .is_some_and(|m| m.contains("OUTBOX_DEGRADED_AFTER_SECS")),
            "{health}"
        );
        // The leader says why it cannot publish; the other instance sees the backlog's age.
        if outbox["isLeader"] == true {
            leaders += 1;
            assert_eq!(outbox["status"], "error", "{health}");
            assert!(outbox["lastError"].is_string(), "{health}");
        } else {
            assert_eq!(outbox["status"], "stalled", "{health}");
        }
    }
    assert_eq!(leaders, 1);

    let _: () = set_maxmemory("0").query_async(&mut admin).await.unwrap();
    first.wait_until_published().await;
    for app in &instances {
        let health = json_of(app.get("/api/v1/health").await, 200).await["data"].clone();
        assert_eq!(health["status"], "healthy", "{health}");
    }
}
