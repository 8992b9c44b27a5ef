//! Whole processes failing: `kill -9` of the service during a write load, and of the relay
//! leader among several instances. Each test owns its redis-server and service processes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use customer_service::application::{EventLog, StoreError};
use customer_service::store::{SqlStore, StoreOptions};
use serde_json::{json, Value};

use test_servers::{OrSkip, OwnRedis};

use crate::own_server::ServiceProcess;
use customer_service::config::RedisConfig;

use crate::test_app::{fresh_database, minimal, streamed_payloads, unique_redis, Backend};

crate::for_every_backend!(a_killed_process_publishes_every_committed_event_after_restart);
crate::for_shared_backends!(
    another_instance_takes_over_when_the_leader_dies,
    a_write_through_a_follower_is_published_by_the_leader_without_notify,
    a_frozen_leader_is_replaced_and_publishes_nothing_when_it_wakes,
    a_superseded_lease_epoch_can_neither_mark_nor_publish,
);

fn service_env(database_url: &str, redis: &RedisConfig) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("REDIS_URL", redis.url.clone()),
        ("REDIS_KEY_PREFIX", redis.key_prefix.clone()),
        ("EVENT_CHANNEL", redis.channel.clone()),
        ("EVENT_STREAM", redis.stream.clone()),
    ]
}

/// What the tests of several instances over one database share: a redis-server of their
/// own, a fresh database, and the environment that points a service process at both.
struct Instances {
    redis_server: OwnRedis,
    redis: RedisConfig,
    database_url: String,
    env: Vec<(&'static str, String)>,
}

impl Instances {
    /// `None` (skipped) where redis-server is not installed.
    async fn prepare(backend: Backend) -> Option<Instances> {
        let redis_server = OwnRedis::start().or_skip()?;
        let redis = unique_redis(redis_server.url());
        let (database_url, _) = fresh_database(backend).await;
        let env = service_env(&database_url, &redis);
        Some(Instances {
            redis_server,
            redis,
            database_url,
            env,
        })
    }
}

async fn wait_until_drained(process: &ServiceProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(health) = process.health().await {
            if health["checks"]["outbox"]["pending"] == 0 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "events still pending after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the stream holds every event of the log exactly once, each customer's in
/// sequence order.
///
/// A killed process's last transactions may still commit after it died (the server
/// finishes a COMMIT it received), so after a drain more events can appear in the log: the
/// stream is given a few seconds to catch up with the log before the comparison.
async fn assert_stream_matches_log(database_url: &str, redis: &RedisConfig) -> Vec<String> {
    let store = SqlStore::connect(&StoreOptions {
        url: database_url.to_owned(),
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
        create_if_missing: false,
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (logged, payloads) = loop {
        let logged = store.event_count().await.unwrap();
        let payloads = streamed_payloads(redis).await;
        if payloads.len() as i64 >= logged || Instant::now() > deadline {
            break (logged, payloads);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    store.close().await;
    let unique: HashSet<&String> = payloads.iter().collect();
    assert_eq!(unique.len(), payloads.len(), "an event was streamed twice");
    assert_eq!(
        payloads.len() as i64,
        logged,
        "streamed events differ from the log"
    );
    let mut sequences: HashMap<i64, Vec<i64>> = HashMap::new();
    for payload in &payloads {
        let envelope: Value = serde_json::from_str(payload).unwrap();
        let customer = envelope["metadata"]["aggregateId"].as_i64().unwrap();
        sequences
            .entry(customer)
            .or_default()
            .push(envelope["metadata"]["sequence"].as_i64().unwrap());
    }
    for (customer, seen) in sequences {
        assert_eq!(
            seen,
            (1..=seen.len() as i64).collect::<Vec<_>>(),
            "order of customer {customer}"
        );
    }
    payloads
}

/// The indexes of the instances whose health says they lead.
async fn leaders(instances: &[ServiceProcess]) -> Vec<usize> {
    let mut leaders = Vec::new();
    for (i, instance) in instances.iter().enumerate() {
        if instance
            .health()
            .await
            .is_some_and(|h| h["checks"]["outbox"]["isLeader"] == true)
        {
            leaders.push(i);
        }
    }
    leaders
}

/// The one leader among `instances`, once there is one (never two at once).
async fn the_leader(instances: &[ServiceProcess]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = leaders(instances).await;
        assert!(found.len() <= 1, "two leaders at once: {found:?}");
        if let [leader] = found[..] {
            return leader;
        }
        assert!(Instant::now() < deadline, "no leader emerged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_killed_process_publishes_every_committed_event_after_restart(backend: Backend) {
    let Some(redis_server) = OwnRedis::start().or_skip() else {
        return;
    };
    let redis = unique_redis(redis_server.url());
    let (database_url, _dir) = fresh_database(backend).await;
    let env = service_env(&database_url, &redis);

    let mut first = ServiceProcess::start(&env).await;
    let base = Arc::new(first.base.clone());
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let base = base.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                for n in 0.. {
                    let body = minimal(&format!("k{writer}-{n}@example.com"));
                    let Ok(response) = client
                        .post(format!("{base}/api/v1/customers"))
                        .json(&body)
                        .send()
                        .await
                    else {
                        break; // the process is gone
                    };
                    if response.status() != 201 {
                        break;
                    }
                    let id = response.json::<Value>().await.unwrap()["data"]["id"]
                        .as_i64()
                        .unwrap();
                    if client
                        .patch(format!("{base}/api/v1/customers/{id}"))
                        .json(&json!({"isActive": false}))
                        .send()
                        .await
                        .is_err()
                    {
                        break;
                    }
                    acknowledged.push(id);
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.kill();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        !acknowledged.is_empty(),
        "no write completed before the kill"
    );

    let second = ServiceProcess::start(&env).await;
    wait_until_drained(&second).await;
    let payloads = assert_stream_matches_log(&database_url, &redis).await;
    // Every acknowledged customer's creation is among them.
    let created: HashSet<i64> = payloads
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter(|e| e["eventType"] == "CustomerCreated")
        .map(|e| e["metadata"]["aggregateId"].as_i64().unwrap())
        .collect();
    assert!(acknowledged.iter().all(|id| created.contains(id)));
}

async fn another_instance_takes_over_when_the_leader_dies(backend: Backend) {
    let Some(Instances {
        redis_server: _redis_server,
        redis,
        database_url,
        env,
    }) = Instances::prepare(backend).await
    else {
        return;
    };
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(ServiceProcess::start(&env).await);
    }

    let leader = the_leader(&instances).await;

    let client = reqwest::Client::new();
    let write = |instance: &ServiceProcess, n: usize| {
        let url = instance.url("/api/v1/customers");
        let client = client.clone();
        async move {
            let response = client
                .post(url)
                .json(&minimal(&format!("l{n}@example.com")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
    };
    for n in 0..30 {
        write(&instances[n % 3], n).await;
    }
    wait_until_drained(&instances[leader]).await;

    instances[leader].kill();
    let killed_at = Instant::now();
    let survivors: Vec<ServiceProcess> = instances
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| (i != leader).then_some(p))
        .collect();
    loop {
        let found = leaders(&survivors).await;
        assert!(found.len() <= 1, "two leaders at once: {found:?}");
        if found.len() == 1 {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(2),
            "no new leader within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 30..60 {
        write(&survivors[n % 2], n).await;
    }
    wait_until_drained(&survivors[0]).await;
    let payloads = assert_stream_matches_log(&database_url, &redis).await;
    assert_eq!(payloads.len(), 60);
}

/// No NOTIFY on the commit path (it serialized every writer at commit): the leader finds a
/// write made through another instance by polling, and the database sees no notification.
async fn a_write_through_a_follower_is_published_by_the_leader_without_notify(backend: Backend) {
    let Some(Instances {
        redis_server: _redis_server,
        redis,
        database_url,
        env,
    }) = Instances::prepare(backend).await
    else {
        return;
    };
    let instances = vec![
        ServiceProcess::start(&env).await,
        ServiceProcess::start(&env).await,
    ];
    let leader = the_leader(&instances).await;
    let follower = &instances[1 - leader];
    // PostgreSQL: a listener on the channel that commits used to notify.
    let mut listener = match backend {
        Backend::Postgres => {
            let mut listener = sqlx::postgres::PgListener::connect(&database_url)
                .await
                .unwrap();
            listener.listen("customer_events").await.unwrap();
            Some(listener)
        }
        _ => None,
    };

    let client = reqwest::Client::new();
    for n in 0..20 {
        let response = client
            .post(follower.url("/api/v1/customers"))
            .json(&minimal(&format!("f{n}@example.com")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        // Published one by one, each found by the leader's poll (nothing else tells it).
        let deadline = Instant::now() + Duration::from_secs(10);
        while streamed_payloads(&redis).await.len() <= n {
            assert!(Instant::now() < deadline, "write {n} was not published");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(the_leader(&instances).await, leader);
    assert_stream_matches_log(&database_url, &redis).await;
    if let Some(listener) = &mut listener {
        let notification =
            tokio::time::timeout(Duration::from_millis(200), listener.try_recv()).await;
        assert!(
            matches!(notification, Err(_) | Ok(Ok(None))),
            "a commit notified: {notification:?}"
        );
    }
}

async fn a_frozen_leader_is_replaced_and_publishes_nothing_when_it_wakes(backend: Backend) {
    let Some(Instances {
        redis_server,
        redis,
        database_url,
        mut env,
    }) = Instances::prepare(backend).await
    else {
        return;
    };
    env.push(("RELAY_LEASE_TTL_MS", "2000".to_owned()));
    // Below the takeover time, so the backlog's age shows while the leader is frozen.
    env.push(("OUTBOX_DEGRADED_AFTER_SECS", "1".to_owned()));
    let instances = [
        ServiceProcess::start(&env).await,
        ServiceProcess::start(&env).await,
    ];
    let leader = the_leader(&instances).await;
    let survivor = &instances[1 - leader];
    let client = reqwest::Client::new();
    let write = |n: usize| {
        let url = survivor.url("/api/v1/customers");
        let client = client.clone();
        async move {
            let response = client
                .post(url)
                .json(&minimal(&format!("f{n}@example.com")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
    };
    for n in 0..10 {
        write(n).await;
    }
    wait_until_drained(&instances[leader]).await;

    // Redis not answering for longer than the lease's time to live is a sink outage, not a
    // hung leader: leadership stays put. (Paused rather than killed: this server keeps
    // nothing on disk, and the stream is checked at the end.)
    let client = redis::Client::open(redis_server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3_000)
        .arg("ALL")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    write(100).await;
    let outage_until = Instant::now() + Duration::from_millis(3_000);
    while Instant::now() < outage_until {
        assert_eq!(leaders(&instances).await, [leader], "leadership moved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until_drained(&instances[leader]).await;
    assert_eq!(leaders(&instances).await, [leader]);
    let metric = "outbox_published_events_total";
    let published_before = instances[leader].metric(metric).await.unwrap();
    assert_eq!(published_before, 11.0);

    // `kill -STOP`: the process and its database sessions stay, but it answers nothing.
    instances[leader].signal("STOP");
    let frozen_at = Instant::now();
    for n in 10..20 {
        write(n).await;
    }
    let mut saw_degraded = false;
    let took_over = loop {
        let health = survivor.health().await.unwrap();
        if health["status"] == "degraded" {
            assert_eq!(health["checks"]["outbox"]["status"], "stalled", "{health}");
            saw_degraded = true;
        }
        if health["checks"]["outbox"]["pending"] == 0 {
            break frozen_at.elapsed();
        }
        assert!(
            frozen_at.elapsed() < Duration::from_secs(5),
            "nothing published within 5 s of freezing the leader: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        saw_degraded,
        "health never turned degraded while events waited"
    );
    assert!(took_over >= Duration::from_millis(1_500), "{took_over:?}");
    let health = survivor.health().await.unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["checks"]["outbox"]["isLeader"], true);

    // The old leader wakes up: it must not publish or mark anything, nor lead again.
    instances[leader].signal("CONT");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for n in 20..30 {
        write(n).await;
    }
    wait_until_drained(survivor).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = &instances[leader];
    assert_eq!(old.metric(metric).await, Some(published_before));
    assert_eq!(
        old.health().await.unwrap()["checks"]["outbox"]["isLeader"],
        false
    );
    assert_eq!(survivor.metric(metric).await, Some(20.0));
    let payloads = assert_stream_matches_log(&database_url, &redis).await;
    assert_eq!(payloads.len(), 31);
}

async fn a_superseded_lease_epoch_can_neither_mark_nor_publish(backend: Backend) {
    use customer_service::application::RelayLease;
    use customer_service::outbox::RelayError;
    use customer_service::sinks::SinkError;
    use customer_service::store::DatabaseLease;

    let Some(url) = crate::test_app::redis_url() else {
        return;
    };
    let app = crate::test_app::spawn_app_with(backend, |c| {
        c.relay.enabled = false;
        c.redis = Some(unique_redis(url));
    })
    .await;
    let ttl = Duration::from_secs(60);
    let store_backend = app.store.backend();
    let old = DatabaseLease::new(store_backend, app.database_url.clone());
    let first = old.try_acquire(ttl).await.unwrap().expect("a free lease");
    let new = DatabaseLease::new(store_backend, app.database_url.clone());
    assert_eq!(new.try_acquire(ttl).await.unwrap(), None, "held and alive");
    assert!(old.renew(first, ttl).await.unwrap());

    // The old leader stops renewing (frozen): its lease expires, another takes it over.
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    sqlx::query("update relay_lease set expires_at_ms = 0")
        .execute(&mut db)
        .await
        .unwrap();
    let second = new
        .try_acquire(ttl)
        .await
        .unwrap()
        .expect("an expired lease");
    assert!(second > first);
    assert!(
        !old.renew(first, ttl).await.unwrap(),
        "the old epoch is over"
    );

    app.create_id(&minimal("a@example.com")).await;
    // The old leader wakes mid-batch: Redis has not seen the new epoch yet, but the mark
    // refuses it, so the batch stays pending.
    assert!(matches!(
        app.relay.step_under(Some(first)).await,
        Err(RelayError::Store(StoreError::Fenced))
    ));
    assert_eq!(app.pending_count().await, 1);
    // The new leader publishes it (once: the old one's copy is the same key) and marks it.
    app.relay.step_under(Some(second)).await.unwrap();
    assert_eq!(app.pending_count().await, 0);
    // Now Redis knows the new epoch and refuses the old one before publishing anything.
    app.create_id(&minimal("b@example.com")).await;
    assert!(matches!(
        app.relay.step_under(Some(first)).await,
        Err(RelayError::Sink(SinkError::Fenced { .. }))
    ));
    let redis = app.redis.clone().unwrap();
    assert_eq!(streamed_payloads(&redis).await.len(), 1);
    app.relay.step_under(Some(second)).await.unwrap();
    assert_eq!(streamed_payloads(&redis).await.len(), 2);
    new.release(second).await.unwrap();
    assert!(old.try_acquire(ttl).await.unwrap().is_some(), "released");
}
