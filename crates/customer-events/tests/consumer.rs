//! The consumer against a real Redis: `TEST_REDIS_URL`, or a `redis-server` this run starts
//! (see the `test-servers` crate). Each test uses its own stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use customer_events::consumer::{Consumer, ConsumerConfig, Outcome};
use customer_events::{new_event_id, CustomerDeleted, CustomerEvent, Envelope, EventType};
use redis::aio::MultiplexedConnection;

/// `TEST_REDIS_URL`, or this run's own `redis-server`; `None` (the test recorded as skipped)
/// where Redis is not installed.
fn redis_url() -> Option<String> {
    test_servers::Server::Redis.url_or_skip()
}

fn unique_stream() -> String {
    format!("cs_test_{}:stream", uuid::Uuid::new_v4().simple())
}

fn config(stream: &str, consumer: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(stream, "tests", consumer);
    config.max_attempts = 3;
    config.backoff = Duration::from_millis(1);
    config.block = Duration::from_millis(50);
    config
}

/// An envelope of customer `customer` (its CustomerDeleted, the smallest type).
fn envelope(customer: i64) -> String {
    let event = CustomerEvent::CustomerDeleted(CustomerDeleted {
        customer_id: customer,
        email: format!("c{customer}@example.com"),
        full_name: "Ann Lee".into(),
        deleted_at: "2026-01-01T10:00:00.000Z".into(),
    });
    Envelope::new(
        event,
        new_event_id(EventType::CustomerDeleted, 1_767_261_600_000),
        "2026-01-01T10:00:00.000Z".into(),
        customer,
        1,
        "corr".into(),
    )
    .to_json()
}

async fn connection(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// XADD as the service's relay does.
async fn publish(conn: &mut MultiplexedConnection, stream: &str, envelope: &str) {
    let parsed: serde_json::Value = serde_json::from_str(envelope).unwrap();
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("type")
        .arg(parsed["eventType"].as_str().unwrap())
        .arg("id")
        .arg(parsed["eventId"].as_str().unwrap())
        .arg("event")
        .arg(envelope)
        .query_async(conn)
        .await
        .unwrap();
}

async fn pending_count(conn: &mut MultiplexedConnection, stream: &str) -> i64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg("tests")
        .query_async(conn)
        .await
        .unwrap();
    match summary {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => panic!("{parts:?}"),
        },
        other => panic!("{other:?}"),
    }
}

async fn cleanup(conn: &mut MultiplexedConnection, stream: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{stream}*"))
        .query_async(conn)
        .await
        .unwrap();
    for key in keys {
        let _: i64 = redis::cmd("DEL").arg(key).query_async(conn).await.unwrap();
    }
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dead_letter_stream_and_the_rest_are_handled() {
    let Some(url) = redis_url() else { return };
    let stream = unique_stream();
    let mut conn = connection(&url).await;
    let first = envelope(1);
    publish(&mut conn, &stream, &first).await;
    for customer in [2, 3] {
        publish(&mut conn, &stream, &envelope(customer)).await;
    }
    let consumer = Consumer::new(&url, config(&stream, "c1")).unwrap();
    let calls = AtomicUsize::new(0);
    let handled = Mutex::new(Vec::new());
    let outcomes = consumer
        .poll_once(|envelope| {
            let (calls, handled) = (&calls, &handled);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if envelope.metadata.aggregate_id == 1 {
                    return Err("the mail server said no".to_owned());
                }
                handled.lock().unwrap().push(envelope.metadata.aggregate_id);
                Ok(())
            }
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::DeadLettered { attempts: 3 },
            Outcome::Handled,
            Outcome::Handled
        ]
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3 + 2,
        "three attempts, then the others"
    );
    assert_eq!(*handled.lock().unwrap(), [2, 3]);
    assert_eq!(
        pending_count(&mut conn, &stream).await,
        0,
        "all acknowledged"
    );

    let dlq: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(format!("{stream}:dlq"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dlq.len(), 1);
    let fields = &dlq[0].1;
    let field = |name: &str| {
        let i = fields.iter().position(|f| f == name).unwrap();
        fields[i + 1].clone()
    };
    assert_eq!(field("event"), first, "the envelope unchanged");
    assert_eq!(field("attempts"), "3");
    assert_eq!(field("error"), "the mail server said no");
    assert_eq!(field("consumer"), "c1");
    assert_eq!(field("group"), "tests");
    cleanup(&mut conn, &stream).await;
}

#[tokio::test]
async fn a_message_left_by_a_dead_consumer_is_taken_over_and_handled_once() {
    let Some(url) = redis_url() else { return };
    let stream = unique_stream();
    let mut conn = connection(&url).await;
    publish(&mut conn, &stream, &envelope(7)).await;
    // "dead" reads the message and dies before acknowledging it.
    let dead = Consumer::new(&url, config(&stream, "dead")).unwrap();
    let never = dead.poll_once(|_| async {
        std::future::pending::<()>().await;
        Ok::<(), String>(())
    });
    assert!(tokio::time::timeout(Duration::from_millis(200), never)
        .await
        .is_err());
    assert_eq!(pending_count(&mut conn, &stream).await, 1);

    let mut survivor_config = config(&stream, "survivor");
    survivor_config.claim_idle = Duration::from_millis(100);
    let survivor = Consumer::new(&url, survivor_config).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let handled = AtomicUsize::new(0);
    let outcomes = survivor
        .poll_once(|envelope| {
            let handled = &handled;
            async move {
                assert_eq!(envelope.metadata.aggregate_id, 7);
                handled.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::Handled]);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(pending_count(&mut conn, &stream).await, 0);
    cleanup(&mut conn, &stream).await;
}

#[tokio::test]
async fn a_repeated_event_is_handled_once() {
    let Some(url) = redis_url() else { return };
    let stream = unique_stream();
    let mut conn = connection(&url).await;
    let once = envelope(9);
    publish(&mut conn, &stream, &once).await;
    publish(&mut conn, &stream, &envelope(10)).await;
    publish(&mut conn, &stream, &once).await; // a replay, or a retry after the 24 h key
    let consumer = Consumer::new(&url, config(&stream, "c1")).unwrap();
    let seen = Mutex::new(Vec::new());
    let outcomes = consumer
        .poll_once(|envelope| {
            let seen = &seen;
            async move {
                seen.lock().unwrap().push(envelope.metadata.aggregate_id);
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [Outcome::Handled, Outcome::Handled, Outcome::Duplicate]
    );
    assert_eq!(*seen.lock().unwrap(), [9, 10]);
    assert_eq!(pending_count(&mut conn, &stream).await, 0);
    cleanup(&mut conn, &stream).await;
}

#[tokio::test]
async fn run_handles_until_shutdown() {
    let Some(url) = redis_url() else { return };
    let stream = unique_stream();
    let mut conn = connection(&url).await;
    let consumer = Consumer::new(&url, config(&stream, "c1")).unwrap();
    let handled = AtomicUsize::new(0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = consumer.run(
        |_| {
            let handled = &handled;
            async move {
                handled.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        },
        async {
            let _ = stopped.await;
        },
    );
    let feeding = async {
        for customer in 0..5 {
            publish(&mut conn, &stream, &envelope(customer)).await;
        }
        while handled.load(Ordering::SeqCst) < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(running, feeding)
    })
    .await
    .expect("stops after shutdown");
    result.unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 5);
    cleanup(&mut conn, &stream).await;
}

/// A consumer built before an event type existed (here one this crate does not know, as
/// CustomerImported was to consumers built before it): the event is acknowledged and skipped,
/// never dead-lettered, and the handler only sees the events it knows.
#[tokio::test]
async fn an_event_of_an_unknown_type_is_acknowledged_and_skipped_not_dead_lettered() {
    let Some(url) = redis_url() else { return };
    let stream = unique_stream();
    let mut conn = connection(&url).await;
    let newer = envelope(1)
        .replace("CustomerDeleted", "CustomerMerged")
        .replace("\"deletedAt\"", "\"mergedAt\"");
    publish(&mut conn, &stream, &newer).await;
    publish(&mut conn, &stream, &envelope(2)).await;
    let consumer = Consumer::new(&url, config(&stream, "c1")).unwrap();
    let handled = Mutex::new(Vec::new());
    let outcomes = consumer
        .poll_once(|envelope| {
            let handled = &handled;
            async move {
                handled.lock().unwrap().push(envelope.metadata.aggregate_id);
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Skipped {
                event_type: "CustomerMerged".into()
            },
            Outcome::Handled
        ]
    );
    assert_eq!(*handled.lock().unwrap(), [2]);
    assert_eq!(
        pending_count(&mut conn, &stream).await,
        0,
        "both acknowledged"
    );
    let dead: i64 = redis::cmd("XLEN")
        .arg(consumer.config().dead_letter_stream())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dead, 0);
    cleanup(&mut conn, &stream).await;
}
