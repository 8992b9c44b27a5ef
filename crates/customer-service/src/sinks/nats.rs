//! The NATS JetStream sink: each event published to `<prefix>.<eventType>.<aggregate>` with
//! `Nats-Msg-Id = eventId`, and the batch counted as delivered only once the stream
//! acknowledged every message. A batch the relay publishes again (its mark failed, the relay
//! crashed before marking, a new leader) is absorbed by JetStream's de-duplication within
//! `NATS_DUPLICATE_WINDOW`, which is why that window must outlast the relay's longest retry.
//!
//! The stream is created if missing (subjects `<prefix>.>`), once per connection. The
//! aggregate token is the customer's id, or a saga's log key (its id negated: `-7`), so a
//! customer's messages are `<prefix>.*.<customerId>` and erasure purges them by subject.

use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::application::StoredEvent;
use crate::config::NatsConfig;

use super::{EventSink, SinkError};

/// How long a connection attempt, a publish acknowledgement or a purge may take before the
/// batch is retried later.
const NATS_TIMEOUT: Duration = Duration::from_secs(5);

pub struct NatsSink {
    config: NatsConfig,
    /// Connected and the stream ensured; `None` until the first use, and after a failure.
    context: Mutex<Option<jetstream::Context>>,
}

fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SinkError {
    SinkError::Unavailable {
        sink: "nats",
        source: source.into(),
    }
}

impl NatsSink {
    pub fn new(config: NatsConfig) -> NatsSink {
        NatsSink {
            config,
            context: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// `<prefix>.<eventType>.<customerId>` (a saga's events: its log key, `-<saga id>`).
    pub fn subject(&self, event: &StoredEvent) -> String {
        format!(
            "{}.{}.{}",
            self.config.subject_prefix,
            event.event_type.as_str(),
            event.aggregate.log_key()
        )
    }

    /// Where the service's NATS servers are, without credentials: `host:port, …`.
    pub fn address(&self) -> String {
        self.config
            .url
            .split(',')
            .map(|url| {
                let rest = url.trim().split_once("://").map_or(url, |(_, rest)| rest);
                rest.rsplit_once('@')
                    .map_or(rest, |(_, host)| host)
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn connect(&self) -> Result<jetstream::Context, SinkError> {
        let mut options = async_nats::ConnectOptions::new()
            .name("customer-service")
            .connection_timeout(NATS_TIMEOUT)
            .request_timeout(Some(NATS_TIMEOUT));
        if let Some(path) = &self.config.creds_file {
            options = options.credentials_file(path).await.map_err(unavailable)?;
        }
        if let Some(path) = &self.config.ca_file {
            options = options.add_root_certificates(path.clone());
        }
        let servers: Vec<async_nats::ServerAddr> = self
            .config
            .url
            .split(',')
            .map(|url| url.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        let client = tokio::time::timeout(NATS_TIMEOUT, options.connect(servers))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        let context = jetstream::new(client);
        context
            .get_or_create_stream(stream::Config {
                name: self.config.stream.clone(),
                subjects: vec![format!("{}.>", self.config.subject_prefix)],
                max_age: self.config.max_age,
                num_replicas: self.config.replicas,
                duplicate_window: self.config.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        Ok(context)
    }

    /// The JetStream context, connected and the stream ensured.
    pub(crate) async fn context(&self) -> Result<jetstream::Context, SinkError> {
        let mut slot = self.context.lock().await;
        if let Some(context) = slot.as_ref() {
            return Ok(context.clone());
        }
        let context = self.connect().await?;
        *slot = Some(context.clone());
        Ok(context)
    }

    async fn forget(&self) {
        *self.context.lock().await = None;
    }

    /// A round trip to the server that also proves the stream is there (health, metrics).
    pub async fn ping(&self) -> Result<(), SinkError> {
        let context = self.context().await?;
        let answered =
            tokio::time::timeout(NATS_TIMEOUT, context.get_stream(&self.config.stream)).await;
        match answered {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                self.forget().await;
                Err(unavailable(error))
            }
            Err(elapsed) => Err(unavailable(elapsed)),
        }
    }

    async fn publish_batch(&self, batch: &[StoredEvent]) -> Result<(), SinkError> {
        let context = self.context().await?;
        // Every publish is sent before the first acknowledgement is awaited: one round trip
        // for the batch, not one per event.
        let mut acks = Vec::with_capacity(batch.len());
        for event in batch {
            let publish = PublishMessage::build()
                .payload(event.payload.clone().into())
                .message_id(&event.event_id);
            let ack = context
                .send_publish(self.subject(event), publish)
                .await
                .map_err(unavailable)?;
            acks.push(ack);
        }
        for ack in acks {
            tokio::time::timeout(NATS_TIMEOUT, ack.into_future())
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn purge(&self, customer: i64) -> Result<(), SinkError> {
        let context = self.context().await?;
        let stream = context
            .get_stream(&self.config.stream)
            .await
            .map_err(unavailable)?;
        // The customer's last message is its CustomerErased, published in the batch being
        // erased: it stays, everything before it goes.
        tokio::time::timeout(
            NATS_TIMEOUT,
            stream
                .purge()
                .filter(format!("{}.*.{customer}", self.config.subject_prefix))
                .keep(1)
                .into_future(),
        )
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl EventSink for NatsSink {
    fn name(&self) -> &'static str {
        "nats"
    }

    /// Unfenced: JetStream has no compare-and-set across a batch. A superseded leader's
    /// batch is absorbed as duplicates within the window (see docs/architecture.md).
    async fn publish(&self, batch: &[StoredEvent], _fence: Option<i64>) -> Result<(), SinkError> {
        let published = self.publish_batch(batch).await;
        if published.is_err() {
            self.forget().await;
        }
        published
    }

    async fn erase(&self, events: &[StoredEvent]) -> Result<(), SinkError> {
        let Some(customer) = events.iter().find_map(|e| e.aggregate.customer()) else {
            return Ok(());
        };
        let purged = self.purge(customer.get()).await;
        if purged.is_err() {
            self.forget().await;
        }
        purged
    }
}

/// Participants' answers on NATS: `<prefix>.<suffix>` (`…erasure-replies`), JSON
/// `{"sagaId","participant","token","outcome","reason"}`, stored by the events' stream (its
/// subjects are `<prefix>.>`) and read by the durable consumer
/// `customer-service-sagas-<suffix>`. An answer not acknowledged (the orchestrator failed, or
/// died) is delivered again after [`REPLY_ACK_WAIT`]; recording is idempotent.
pub struct NatsReplies {
    sink: std::sync::Arc<NatsSink>,
    suffixes: Vec<&'static str>,
    consumers: Mutex<Vec<jetstream::consumer::PullConsumer>>,
}

/// How long an answer read but not acknowledged waits before it is delivered again.
pub const REPLY_ACK_WAIT: Duration = Duration::from_secs(5);

impl NatsReplies {
    pub fn new(sink: std::sync::Arc<NatsSink>, suffixes: Vec<&'static str>) -> NatsReplies {
        NatsReplies {
            sink,
            suffixes,
            consumers: Mutex::new(Vec::new()),
        }
    }

    async fn consumers(&self) -> Result<Vec<jetstream::consumer::PullConsumer>, SinkError> {
        let mut slot = self.consumers.lock().await;
        if slot.is_empty() {
            let context = self.sink.context().await?;
            let stream = context
                .get_stream(&self.sink.config.stream)
                .await
                .map_err(unavailable)?;
            for suffix in &self.suffixes {
                let name = format!("customer-service-sagas-{suffix}");
                let consumer = stream
                    .get_or_create_consumer(
                        &name,
                        jetstream::consumer::pull::Config {
                            durable_name: Some(name.clone()),
                            filter_subject: format!("{}.{suffix}", self.sink.config.subject_prefix),
                            ack_policy: jetstream::consumer::AckPolicy::Explicit,
                            ack_wait: REPLY_ACK_WAIT,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(unavailable)?;
                slot.push(consumer);
            }
        }
        Ok(slot.clone())
    }
}

/// A JSON answer read; anything unreadable becomes a reply without saga (refused, logged).
fn read_reply(payload: &[u8]) -> crate::application::Reply {
    let value: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let text = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
    crate::application::Reply {
        saga_id: value["sagaId"].as_i64(),
        participant: text("participant"),
        token: text("token"),
        outcome: text("outcome"),
        reason: Some(text("reason")).filter(|r| !r.is_empty()),
    }
}

#[async_trait]
impl super::ReplySource for NatsReplies {
    async fn read(
        &self,
        count: usize,
        block: Duration,
    ) -> Result<Vec<super::ReplyMessage>, SinkError> {
        use futures_util::StreamExt;
        let consumers = self.consumers().await?;
        let per_subject = block / u32::try_from(consumers.len().max(1)).unwrap_or(1);
        let mut out = Vec::new();
        for consumer in consumers {
            let fetched = consumer
                .fetch()
                .max_messages(count)
                .expires(per_subject)
                .messages()
                .await;
            let mut messages = match fetched {
                Ok(messages) => messages,
                Err(error) => {
                    self.consumers.lock().await.clear();
                    return Err(unavailable(error));
                }
            };
            while let Some(message) = messages.next().await {
                let message = message.map_err(unavailable)?;
                let Some(ack) = message.reply.clone() else {
                    continue;
                };
                out.push(super::ReplyMessage {
                    stream: message.subject.to_string(),
                    id: ack.to_string(),
                    reply: read_reply(&message.payload),
                });
            }
        }
        Ok(out)
    }

    /// An empty message to the delivery's reply subject: JetStream's acknowledgement.
    async fn ack(&self, message: &super::ReplyMessage) -> Result<(), SinkError> {
        let context = self.sink.context().await?;
        context
            .client()
            .publish(message.id.clone(), "".into())
            .await
            .map_err(unavailable)
    }

    /// Nothing to do: the server delivers an unacknowledged answer again by itself.
    fn rewind(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::Aggregate;
    use crate::domain::{CustomerId, Timestamp};
    use customer_events::EventType;

    fn config(url: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            creds_file: None,
            ca_file: None,
            subject_prefix: "customer-service.events".into(),
            stream: "CUSTOMER_EVENTS".into(),
            replicas: 1,
            max_age: Duration::from_secs(3600),
            duplicate_window: Duration::from_secs(600),
        }
    }

    #[test]
    fn subjects_name_the_type_and_the_aggregate_and_addresses_hide_credentials() {
        let sink = NatsSink::new(config("nats://u:secret@a:4222, tls://b:4223"));
        let event = |aggregate| StoredEvent {
            position: 1,
            event_id: "e".into(),
            event_type: EventType::CustomerErased,
            aggregate,
            sequence: 1,
            occurred_at: Timestamp::from_millis(0),
            payload: "{}".into(),
        };
        let customer = Aggregate::Customer(CustomerId::new(42).unwrap());
        assert_eq!(
            sink.subject(&event(customer)),
            "customer-service.events.CustomerErased.42"
        );
        assert_eq!(
            sink.subject(&event(Aggregate::Saga(7))),
            "customer-service.events.CustomerErased.-7"
        );
        assert_eq!(sink.address(), "a:4222, b:4223");
    }
}
