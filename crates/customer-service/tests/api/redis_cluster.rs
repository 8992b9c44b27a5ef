//! Redis Cluster (issue #18, item 1): three masters with a replica each, started by the test.
//! The relay publishes the same wire format as to one server (24 h key, channel, stream),
//! each event exactly once in the stream and per customer in order, also when the master of
//! the stream's slot is killed mid-load and its replica takes over.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use customer_service::application::{EventLog, StoredEvent};
use customer_service::config::RedisConfig;
use serde_json::{json, Value};
use test_servers::{OrSkip, OwnRedisCluster};

use crate::test_app::{minimal, spawn_app_with, unique_redis, Backend, TestApp};

fn cluster_config(cluster: &OwnRedisCluster) -> RedisConfig {
    let urls = cluster.urls();
    let mut config = unique_redis(urls[0].clone());
    config.cluster_nodes = urls;
    config
}

async fn cluster_connection(config: &RedisConfig) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(config.cluster_nodes.clone())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// `(type, id, event)` of every stream entry, in stream order.
async fn stream(config: &RedisConfig) -> Vec<(String, String, String)> {
    let mut connection = cluster_connection(config).await;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&config.stream)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(names, ["type", "id", "event"], "the stream's field layout");
            let mut values = fields.into_iter().map(|(_, value)| value);
            (
                values.next().unwrap(),
                values.next().unwrap(),
                values.next().unwrap(),
            )
        })
        .collect()
}

async fn logged(app: &TestApp) -> Vec<StoredEvent> {
    app.store
        .settled_events(0, 100_000, &Default::default())
        .await
        .unwrap()
}

/// The stream holds every logged event exactly once, and each customer's in order; every
/// event's 24 h key holds its envelope byte for byte.
async fn assert_stream_is_the_log(app: &TestApp, config: &RedisConfig) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (log, entries) = loop {
        app.wait_until_published().await;
        let log = logged(app).await;
        let entries = stream(config).await;
        if entries.len() >= log.len() || Instant::now() > deadline {
            break (log, entries);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ids: HashSet<&str> = entries.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), entries.len(), "an event was streamed twice");
    assert_eq!(entries.len(), log.len(), "the stream differs from the log");
    let by_id: HashMap<&str, &StoredEvent> = log.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let mut sequences: HashMap<i64, Vec<i64>> = HashMap::new();
    for (event_type, id, envelope) in &entries {
        let event = by_id[id.as_str()];
        assert_eq!(event_type, event.event_type.as_str());
        assert_eq!(envelope, &event.payload);
        let parsed: Value = serde_json::from_str(envelope).unwrap();
        sequences
            .entry(parsed["metadata"]["aggregateId"].as_i64().unwrap())
            .or_default()
            .push(parsed["metadata"]["sequence"].as_i64().unwrap());
    }
    for (customer, seen) in sequences {
        assert_eq!(
            seen,
            (1..=seen.len() as i64).collect::<Vec<_>>(),
            "order of {customer}"
        );
    }
    let mut connection = cluster_connection(config).await;
    for event in &log {
        let key = format!(
            "{}:events:{}:{}",
            config.key_prefix, event.event_type, event.event_id
        );
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(event.payload.as_str()), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_format_on_a_cluster_is_the_single_servers() {
    let Some(cluster) = OwnRedisCluster::start().or_skip() else {
        return;
    };
    let config = cluster_config(&cluster);
    // The channel: PUBLISH reaches every node's subscribers.
    let client = redis::Client::open(config.cluster_nodes[3].as_str()).unwrap();
    let (mut sink, mut messages) = client.get_async_pubsub().await.unwrap().split();
    sink.subscribe(&config.channel).await.unwrap();
    let app = spawn_app_with(Backend::Sqlite, |c| c.redis = Some(config.clone())).await;
    let id = app.create_id(&minimal("wire@example.com")).await;
    app.update(id, &json!({"lastName": "Wire", "isActive": false}))
        .await;
    assert_eq!(app.delete_customer(id).await.status(), 204);
    assert_stream_is_the_log(&app, &config).await;
    use futures_util::StreamExt;
    let log = logged(&app).await;
    for event in &log {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("a message on the channel")
            .unwrap();
        assert_eq!(message.get_payload::<String>().unwrap(), event.payload);
    }
    let health = app
        .get("/api/v1/health")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(health["data"]["checks"]["redis"]["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_put_every_event_once_in_order_and_a_killed_master_loses_nothing() {
    let Some(mut cluster) = OwnRedisCluster::start().or_skip() else {
        return;
    };
    let config = cluster_config(&cluster);
    let app = Arc::new(spawn_app_with(Backend::Postgres, |c| c.redis = Some(config.clone())).await);
    let write = |app: Arc<TestApp>, writer: usize, rounds: usize| async move {
        for n in 0..rounds {
            let id = app
                .create_id(&minimal(&format!(
                    "w{writer}-{n}-{}@example.com",
                    uuid::Uuid::new_v4().simple()
                )))
                .await;
            app.update(id, &json!({"firstName": format!("N{n}")})).await;
        }
    };
    let writers: Vec<_> = (0..6)
        .map(|w| tokio::spawn(write(app.clone(), w, 15)))
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    assert_stream_is_the_log(&app, &config).await;

    // The master of the stream's slot dies while writes go on: its replica takes over, and
    // the relay's batches, marked only once a replica had them, are all there once.
    let master = cluster
        .master_of(&config.stream)
        .expect("a master serves the stream");
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(write(app.clone(), 10 + w, 20)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(master);
    for writer in writers {
        writer.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster
        .master_of(&config.stream)
        .is_none_or(|port| port == master)
    {
        assert!(Instant::now() < deadline, "no replica took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_until_ok();
    assert_stream_is_the_log(&app, &config).await;
}

/// The stream's slot (with its `{stream}` keys: the fence and the published ids) moves to
/// another master while writers go on, as a resharding does: the relay follows the `ASK`
/// and `MOVED` answers and waits out `TRYAGAIN`, and every event is in the stream once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_slot_moves_to_another_master_under_load_and_nothing_is_lost_or_repeated() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(cluster) = OwnRedisCluster::start().or_skip() else {
        return;
    };
    let config = cluster_config(&cluster);
    let app = Arc::new(spawn_app_with(Backend::Postgres, |c| c.redis = Some(config.clone())).await);
    let moved = Arc::new(AtomicBool::new(false));
    // Writes until the slot has moved, then five rounds more.
    let write = |app: Arc<TestApp>, moved: Arc<AtomicBool>, writer: usize| async move {
        let mut after = 0;
        let mut n = 0;
        while after < 5 {
            let id = app
                .create_id(&minimal(&format!(
                    "m{writer}-{n}-{}@example.com",
                    uuid::Uuid::new_v4().simple()
                )))
                .await;
            app.update(id, &json!({"firstName": format!("N{n}")})).await;
            n += 1;
            after += usize::from(moved.load(Ordering::SeqCst));
        }
        n
    };
    // The slot holds the stream and its keys before it moves.
    app.create_id(&minimal("first@example.com")).await;
    app.wait_until_published().await;
    let from = cluster
        .master_of(&config.stream)
        .expect("a master serves the stream");
    let to = *cluster
        .masters()
        .iter()
        .find(|port| **port != from)
        .expect("another master");
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(write(app.clone(), moved.clone(), w)))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mover = {
        let (stream, moved) = (config.stream.clone(), moved.clone());
        tokio::task::spawn_blocking(move || {
            cluster.move_slot(&stream, to, Duration::from_millis(500));
            moved.store(true, Ordering::SeqCst);
            cluster
        })
    };
    let cluster = mover.await.unwrap();
    for writer in writers {
        assert!(
            writer.await.unwrap() > 5,
            "the writers stopped before the move"
        );
    }
    assert_eq!(cluster.master_of(&config.stream), Some(to));
    assert_stream_is_the_log(&app, &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_crash_between_publishing_and_marking_repeats_nothing_on_a_cluster() {
    let Some(cluster) = OwnRedisCluster::start().or_skip() else {
        return;
    };
    let config = cluster_config(&cluster);
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.redis = Some(config.clone());
        c.relay.enabled = false;
    })
    .await;
    for n in 0..5 {
        app.create_id(&minimal(&format!("crash{n}@example.com")))
            .await;
    }
    // Published, then "killed" before the mark; the next relay publishes the batch again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.relay.step_crashing_before_mark().await.is_err() {
        // Right after the cluster's creation its replicas may still be syncing (WAIT).
        assert!(Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.pending_count().await, 5);
    assert_eq!(app.relay.drain().await.unwrap(), 5);
    assert_stream_is_the_log(&app, &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_and_the_erasure_saga_work_on_a_cluster() {
    use customer_events::consumer::{Consumer, ConsumerConfig, Outcome};
    use customer_events::participant::{Participant, ParticipantConfig};
    let Some(cluster) = OwnRedisCluster::start().or_skip() else {
        return;
    };
    let config = cluster_config(&cluster);
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.redis = Some(config.clone());
        c.erasure = Some(customer_service::config::ErasureConfig {
            participants: vec!["billing".into()],
            deadline: Duration::from_secs(3600),
            retry_after: Duration::from_secs(3600),
        });
    })
    .await;
    let poison = app.create_id(&minimal("poison@example.com")).await;
    app.create_id(&minimal("fine@example.com")).await;
    assert_stream_is_the_log(&app, &config).await;

    // The consumer: every event handled, a failing one dead-lettered (two slots: no MULTI).
    let mut consumer_config = ConsumerConfig::new(config.stream.clone(), "tests", "c1");
    consumer_config.max_attempts = 2;
    consumer_config.backoff = Duration::from_millis(1);
    consumer_config.block = Duration::from_millis(100);
    let consumer = Consumer::cluster(config.cluster_nodes.clone(), consumer_config).unwrap();
    let outcomes = consumer
        .poll_once(|envelope| async move {
            if envelope.metadata.aggregate_id == poison {
                Err("cannot".to_owned())
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [Outcome::DeadLettered { attempts: 2 }, Outcome::Handled]
    );
    let mut connection = cluster_connection(&config).await;
    let dead: i64 = redis::cmd("XLEN")
        .arg(format!("{}:dlq", config.stream))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(dead, 1);
    let nodes = config.cluster_nodes.join(",");
    let (database, stream_name) = (app.database_url.clone(), config.stream.clone());
    let listed = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_customer-service"))
            .args(["events", "dlq", "list"])
            .env("DATABASE_URL", database)
            .env("REDIS_CLUSTER_NODES", nodes)
            .env("EVENT_STREAM", stream_name)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{text}");
    assert!(
        text.contains("cannot"),
        "events dlq list on a cluster: {text}"
    );

    // The erasure saga: its participant on the cluster, answers read from the cluster.
    let mut participant_config =
        ParticipantConfig::new(config.stream.clone(), "billing", "billing-1");
    participant_config.consumer.block = Duration::from_millis(100);
    let participant =
        Participant::cluster(config.cluster_nodes.clone(), participant_config).unwrap();
    let erased = app.create_id(&minimal("erase@example.com")).await;
    let response = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/customers/{erased}?erase=true"))),
        )
        .await;
    assert_eq!(response.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        participant
            .poll_once(|_| async { Ok::<(), String>(()) })
            .await
            .unwrap();
        let record = app
            .get(&format!("/api/v1/customers/{erased}/erasure"))
            .await
            .json::<Value>()
            .await
            .unwrap();
        if record["data"]["state"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {record}");
    }
    // The erasure's clean-up on the cluster: the customer's earlier events are gone from
    // their 24 h keys (in other slots) and from the stream; its CustomerErased stays.
    let history = app.events_of(erased).await;
    let created = history[0]["eventId"].as_str().unwrap().to_owned();
    let key = format!("{}:events:CustomerCreated:{created}", config.key_prefix);
    let left: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(left, None, "{key} survived the erasure");
    let streamed = stream(&config).await;
    assert!(!streamed.iter().any(|(_, id, _)| *id == created));
    assert!(streamed
        .iter()
        .any(|(kind, _, envelope)| kind == "CustomerErased"
            && envelope.contains(&format!("\"customerId\":{erased}"))));
}
