//! The JetStream consumer against a real NATS server (`TEST_NATS_URL`, or a `nats-server`
//! this run starts): a stream per test, events published as the service's NATS sink does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use customer_events::jetstream::{JetStreamConfig, JetStreamConsumer};
use customer_events::outcome::Outcome;
use customer_events::{new_event_id, CustomerDeleted, CustomerEvent, Envelope, EventType};

struct Stream {
    client: async_nats::Client,
    context: jetstream::Context,
    name: String,
    prefix: String,
}

impl Stream {
    /// A stream of its own on the test server; `None` (skipped) without NATS.
    async fn create() -> Option<Stream> {
        let url = test_servers::Server::Nats.url_or_skip()?;
        let client = async_nats::connect(url).await.unwrap();
        let context = jetstream::new(client.clone());
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (name, prefix) = (
            format!("CS_TEST_{}", id.to_uppercase()),
            format!("cs_test_{id}.events"),
        );
        context
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{prefix}.>")],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .unwrap();
        Some(Stream {
            client,
            context,
            name,
            prefix,
        })
    }

    fn config(&self, durable: &str) -> JetStreamConfig {
        let mut config = JetStreamConfig::new(&self.name, &self.prefix, durable);
        config.max_attempts = 3;
        config.backoff = Duration::from_millis(1);
        config.block = Duration::from_millis(200);
        config
    }

    async fn consumer(&self, durable: &str) -> JetStreamConsumer {
        JetStreamConsumer::new(self.client.clone(), self.config(durable))
            .await
            .unwrap()
    }

    /// Publishes `payload` as the service's sink does (`msg_id` as `Nats-Msg-Id`).
    async fn publish(&self, event_type: &str, customer: i64, payload: &str, msg_id: &str) {
        self.publish_on(&format!("{event_type}.{customer}"), payload, msg_id)
            .await;
    }

    /// Publishes `payload` on `<prefix>.<subject>`.
    async fn publish_on(&self, subject: &str, payload: &str, msg_id: &str) {
        self.context
            .send_publish(
                format!("{}.{subject}", self.prefix),
                PublishMessage::build()
                    .payload(payload.to_owned().into())
                    .message_id(msg_id),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn publish_deleted(&self, customer: i64) -> String {
        let envelope = deleted(customer);
        let id = serde_json::from_str::<serde_json::Value>(&envelope).unwrap()["eventId"]
            .as_str()
            .unwrap()
            .to_owned();
        self.publish("CustomerDeleted", customer, &envelope, &id)
            .await;
        envelope
    }

    /// Every message on `subject`: (headers as text, payload).
    async fn messages_on(&self, subject: &str) -> Vec<(String, String)> {
        let stream = self.context.get_stream(&self.name).await.unwrap();
        let info = stream.get_info().await.unwrap();
        let mut found = Vec::new();
        for sequence in info.state.first_sequence..=info.state.last_sequence {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                if message.subject.as_str() == subject {
                    found.push((
                        format!("{:?}", message.headers),
                        String::from_utf8(message.payload.to_vec()).unwrap(),
                    ));
                }
            }
        }
        found
    }

    async fn delete(self) {
        let _ = self.context.delete_stream(&self.name).await;
        let _ = self
            .context
            .delete_stream(format!("{}_workers_SEEN", self.name))
            .await;
    }
}

/// An envelope of customer `customer` (its CustomerDeleted, the smallest type).
fn deleted(customer: i64) -> String {
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

#[tokio::test]
async fn events_arrive_typed_in_order_once_and_a_restarted_consumer_resumes() {
    let Some(stream) = Stream::create().await else {
        return;
    };
    for customer in 1..=3 {
        stream.publish_deleted(customer).await;
    }
    // Not events: answers and dead letters under the prefix are filtered out.
    stream.publish_on("erasure-replies", "{}", "reply-1").await;
    let seen = Mutex::new(Vec::new());
    let consumer = stream.consumer("workers").await;
    let outcomes = consumer
        .poll_once(|envelope| {
            seen.lock().unwrap().push(envelope.metadata.aggregate_id);
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [Outcome::Handled, Outcome::Handled, Outcome::Handled]
    );
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);

    // Another process of the same durable sees only what is new.
    stream.publish_deleted(4).await;
    let restarted = stream.consumer("workers").await;
    let outcomes = restarted
        .poll_once(|envelope| {
            seen.lock().unwrap().push(envelope.metadata.aggregate_id);
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::Handled]);
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4]);
    stream.delete().await;
}

#[tokio::test]
async fn a_repeated_event_id_is_skipped_and_an_unknown_type_acknowledged() {
    let Some(stream) = Stream::create().await else {
        return;
    };
    let envelope = stream.publish_deleted(7).await;
    // The same event again under another message id (past the stream's de-duplication).
    stream
        .publish("CustomerDeleted", 7, &envelope, "another-id")
        .await;
    let unknown = envelope.replace("CustomerDeleted", "CustomerMerged");
    stream
        .publish("CustomerMerged", 7, &unknown, "merged")
        .await;
    let calls = AtomicUsize::new(0);
    let consumer = stream.consumer("workers").await;
    let outcomes = consumer
        .poll_once(|_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Handled,
            Outcome::Duplicate,
            Outcome::Skipped {
                event_type: "CustomerMerged".into()
            }
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let again = consumer
        .poll_once(|_| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert_eq!(again, [], "everything was acknowledged");
    stream.delete().await;
}

#[tokio::test]
async fn a_poison_event_is_retried_then_dead_lettered_without_blocking_the_rest() {
    let Some(stream) = Stream::create().await else {
        return;
    };
    stream.publish_deleted(1).await;
    stream.publish_deleted(2).await;
    stream
        .publish("CustomerDeleted", 3, "not json", "broken")
        .await;
    let calls = Mutex::new(Vec::new());
    let consumer = stream.consumer("workers").await;
    let outcomes = consumer
        .poll_once(|envelope| {
            let customer = envelope.metadata.aggregate_id;
            calls.lock().unwrap().push(customer);
            async move {
                if customer == 1 {
                    Err(format!("customer {customer} cannot be handled"))
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::DeadLettered { attempts: 3 },
            Outcome::Handled,
            Outcome::DeadLettered { attempts: 1 },
        ]
    );
    assert_eq!(*calls.lock().unwrap(), [1, 1, 1, 2]);
    let dead = stream
        .messages_on(&format!("{}.dead-letters", stream.prefix))
        .await;
    assert_eq!(dead.len(), 2);
    assert!(
        dead[0].0.contains("customer 1 cannot be handled"),
        "{}",
        dead[0].0
    );
    assert!(dead[0].0.contains("workers"), "{}", dead[0].0);
    assert_eq!(dead[1].1, "not json");
    // The dead letters are not delivered as events.
    let again = consumer
        .poll_once(|_| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert_eq!(again, []);
    stream.delete().await;
}

#[tokio::test]
async fn an_event_a_dead_process_left_unacknowledged_is_delivered_again() {
    let Some(stream) = Stream::create().await else {
        return;
    };
    stream.publish_deleted(5).await;
    let mut config = stream.config("workers");
    config.ack_wait = Duration::from_secs(1);
    let crashed = JetStreamConsumer::new(stream.client.clone(), config.clone())
        .await
        .unwrap();
    // The handler never finishes: the process "dies" with the message unacknowledged.
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        crashed.poll_once(|_| std::future::pending::<Result<(), String>>()),
    )
    .await;
    assert!(hung.is_err());
    drop(crashed);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let survivor = JetStreamConsumer::new(stream.client.clone(), config)
        .await
        .unwrap();
    let seen = Mutex::new(Vec::new());
    let outcomes = survivor
        .poll_once(|envelope| {
            seen.lock().unwrap().push(envelope.metadata.aggregate_id);
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::Handled]);
    assert_eq!(*seen.lock().unwrap(), [5]);
    stream.delete().await;
}
