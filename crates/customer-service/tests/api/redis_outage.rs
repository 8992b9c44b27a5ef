//! Redis going away: writes keep answering 201 at once, health says "degraded", and after
//! Redis returns every event arrives exactly once, in order. The test owns its redis-server.

use std::time::{Duration, Instant};

use serde_json::json;

use test_servers::{OrSkip, OwnRedis};

use crate::test_app::{json_of, minimal, spawn_app_with, streamed_payloads, unique_redis, Backend};

crate::for_every_backend!(a_redis_outage_delays_events_and_loses_none);

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
