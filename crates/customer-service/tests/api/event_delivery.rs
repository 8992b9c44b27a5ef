//! The relay and its sinks: the Redis wire format, idempotent re-publication, no skipped
//! events under concurrent writers, the live SSE stream, and the relay step itself.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use customer_service::application::EventLog;
use customer_service::outbox::StepOutcome;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::test_app::{
    minimal, redis_url, spawn_app_with, stream_entries, unique_redis, Backend, TestApp,
};

crate::for_every_backend!(
    the_relay_step_publishes_in_log_order_and_marks_what_it_published,
    every_event_type_reaches_redis_in_the_contract_wire_format,
    a_relay_that_crashed_before_marking_duplicates_nothing,
    concurrent_writers_lose_no_event_and_keep_per_customer_order,
    the_live_stream_shows_each_event_as_it_is_published,
    compacting_the_pending_table_keeps_pending_events,
);

/// An app with Redis (unique names) and the relay as asked; `None` (the test recorded as
/// skipped) where no Redis can be had.
async fn app_with_redis(backend: Backend, relay_enabled: bool) -> Option<TestApp> {
    let url = redis_url()?;
    Some(
        spawn_app_with(backend, |c| {
            c.redis = Some(unique_redis(url));
            c.relay.enabled = relay_enabled;
        })
        .await,
    )
}

async fn redis_connection(app: &TestApp) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(app.redis.as_ref().unwrap().url.as_str()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn stream_of(app: &TestApp) -> Vec<(String, Vec<String>)> {
    stream_entries(app.redis.as_ref().unwrap()).await
}

/// Every stored payload of the log, in log order.
async fn log_payloads(app: &TestApp, ids: &[i64]) -> Vec<(i64, String)> {
    let mut all = Vec::new();
    for id in ids {
        for event in app.stored_events_of(*id).await {
            all.push((event.position, event.payload));
        }
    }
    all.sort();
    all
}

async fn the_relay_step_publishes_in_log_order_and_marks_what_it_published(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.relay.enabled = false;
        c.relay.batch_size = 3;
    })
    .await;
    let a = app.create_id(&minimal("a@example.com")).await;
    let b = app.create_id(&minimal("b@example.com")).await;
    app.update(a, &json!({"isActive": false})).await;
    assert_eq!(app.pending_count().await, 4);

    assert_eq!(app.relay.step().await.unwrap(), StepOutcome::Published(3));
    assert_eq!(app.pending_count().await, 1);
    // The one left is the newest.
    let last = app.stored_events_of(a).await.pop().unwrap();
    let status = app.store.outbox_status().await.unwrap();
    assert_eq!(status.oldest_pending_at, Some(last.occurred_at));
    assert_eq!(app.relay.step().await.unwrap(), StepOutcome::Published(1));
    assert_eq!(app.relay.step().await.unwrap(), StepOutcome::Idle);
    assert_eq!(app.pending_count().await, 0);
    assert_eq!(app.event_count().await, 4);
    assert_eq!(app.stored_events_of(b).await.len(), 1);
}

async fn every_event_type_reaches_redis_in_the_contract_wire_format(backend: Backend) {
    let Some(app) = app_with_redis(backend, false).await else {
        return;
    };
    let settings = app.redis.clone().unwrap();
    let client = redis::Client::open(settings.url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&settings.channel).await.unwrap();

    let id = app.create_id(&crate::test_app::john()).await;
    app.update(id, &json!({"isActive": false})).await;
    app.update(id, &json!({"isActive": true})).await;
    assert_eq!(app.delete_customer(id).await.status(), 204);
    assert_eq!(app.relay.drain().await.unwrap(), 6);

    let stored = app.stored_events_of(id).await;
    let types: Vec<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "CustomerCreated",
            "CustomerUpdated",
            "CustomerDeactivated",
            "CustomerUpdated",
            "CustomerActivated",
            "CustomerDeleted"
        ]
    );

    // Pub/Sub: byte for byte the stored envelope, in order.
    let mut messages = pubsub.on_message();
    for event in &stored {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a message within 5 s")
            .unwrap();
        assert_eq!(message.get_channel_name(), settings.channel);
        assert_eq!(message.get_payload::<String>().unwrap(), event.payload);
    }

    let mut redis = redis_connection(&app).await;
    for event in &stored {
        // The contract's envelope: compact, keys in order, id pattern, millisecond times.
        let envelope: Value = serde_json::from_str(&event.payload).unwrap();
        let keys: Vec<&String> = envelope.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5);
        assert!(event.payload.starts_with(&format!(
            r#"{{"eventType":"{}","eventId":"{}","occurredOn":""#,
            event.event_type, event.event_id
        )));
        assert!(event.payload.contains(r#"},"metadata":{"eventId":""#));
        assert_eq!(
            serde_json::to_string(&envelope).unwrap().len(),
            event.payload.len(),
            "compact JSON"
        );
        let (prefix, suffix) = event.event_id.rsplit_once('_').unwrap();
        assert_eq!(suffix.len(), 9);
        assert!(suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert!(prefix.starts_with(&format!("{}_", event.event_type)));
        assert!(crate::test_app::is_iso_millis(&envelope["occurredOn"]));
        assert_eq!(envelope["metadata"]["sequence"], event.sequence);
        assert_eq!(envelope["metadata"]["aggregateId"], id);

        // The 24 h key: identical bytes, TTL set.
        let key = format!(
            "{}:events:{}:{}",
            settings.key_prefix, event.event_type, event.event_id
        );
        let value: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(value, event.payload);
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!((86_300..=86_400).contains(&ttl), "ttl {ttl}");
    }

    // The stream: one entry per event, in order, with type / id / event fields.
    let entries = stream_of(&app).await;
    assert_eq!(entries.len(), stored.len());
    for ((_, fields), event) in entries.iter().zip(&stored) {
        assert_eq!(
            fields,
            &vec![
                "type".to_owned(),
                event.event_type.to_string(),
                "id".to_owned(),
                event.event_id.clone(),
                "event".to_owned(),
                event.payload.clone()
            ]
        );
    }
}

async fn a_relay_that_crashed_before_marking_duplicates_nothing(backend: Backend) {
    let Some(app) = app_with_redis(backend, false).await else {
        return;
    };
    let settings = app.redis.clone().unwrap();
    let client = redis::Client::open(settings.url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&settings.channel).await.unwrap();
    for i in 0..3 {
        app.create(&minimal(&format!("c{i}@example.com"))).await;
    }

    assert_eq!(app.relay.step_crashing_before_mark().await.unwrap(), 3);
    assert_eq!(app.pending_count().await, 3, "nothing was marked");
    // The restarted relay publishes the same batch again, and marks it.
    assert_eq!(app.relay.drain().await.unwrap(), 3);
    assert_eq!(app.pending_count().await, 0);

    assert_eq!(stream_of(&app).await.len(), 3);
    let mut messages = pubsub.on_message();
    let mut received = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), messages.next()).await
    {
        received.push(message.get_payload::<String>().unwrap());
    }
    assert_eq!(
        received.len(),
        3,
        "each event published once on the channel"
    );
}

async fn concurrent_writers_lose_no_event_and_keep_per_customer_order(backend: Backend) {
    let Some(app) = app_with_redis(backend, true).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    // 8 writers × 250 writes: 50 creates and 4 updates of each created customer.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..50 {
                    let email = format!("w{writer}-{n}@example.com");
                    let id = app.create_id(&minimal(&email)).await;
                    for round in 0..4 {
                        let body = json!({"lastName": format!("Round{round}")});
                        assert_eq!(app.patch_customer(id, &body).await.status(), 200);
                    }
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for writer in writers {
        ids.extend(writer.await.unwrap());
    }
    app.wait_until_published().await;

    let log = log_payloads(&app, &ids).await;
    assert_eq!(log.len(), 2000);
    let entries = stream_of(&app).await;
    let streamed: Vec<&String> = entries.iter().map(|(_, fields)| &fields[5]).collect();
    assert_eq!(
        streamed.len(),
        2000,
        "every event exactly once in the stream"
    );
    let unique: HashSet<&String> = streamed.iter().copied().collect();
    assert_eq!(unique.len(), 2000);
    let logged: HashSet<&String> = log.iter().map(|(_, p)| p).collect();
    assert_eq!(unique, logged);
    // Per customer, the stream holds sequences 1..=5 in order.
    let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
    for payload in streamed {
        let envelope: Value = serde_json::from_str(payload).unwrap();
        let customer = envelope["metadata"]["aggregateId"].as_i64().unwrap();
        seen.entry(customer)
            .or_default()
            .push(envelope["metadata"]["sequence"].as_i64().unwrap());
    }
    assert_eq!(seen.len(), 400);
    assert!(
        seen.values().all(|s| s == &[1, 2, 3, 4, 5]),
        "per-customer order"
    );
}

async fn the_live_stream_shows_each_event_as_it_is_published(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let mut response = app.get("/api/v1/events/stream").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let id = app.create_id(&minimal("live@example.com")).await;
    app.update(id, &json!({"isActive": false})).await;

    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while text.matches("\n\n").count() < 3 {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("3 events within 10 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let stored = app.stored_events_of(id).await;
    let expected: String = stored
        .iter()
        .map(|e| {
            format!(
                "event: {}\nid: {}\ndata: {}\n\n",
                e.event_type, e.position, e.payload
            )
        })
        .collect();
    assert_eq!(text, expected);
}

async fn compacting_the_pending_table_keeps_pending_events(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.relay.enabled = false).await;
    for i in 0..3 {
        app.create(&minimal(&format!("c{i}@example.com"))).await;
    }
    app.relay.step_crashing_before_mark().await.unwrap();
    // VACUUM on PostgreSQL must run outside a transaction; this proves the statement runs.
    app.store.compact().await.unwrap();
    assert_eq!(app.pending_count().await, 3);
    assert_eq!(app.relay.drain().await.unwrap(), 3);
    app.store.compact().await.unwrap();
    assert_eq!(app.pending_count().await, 0);
}
