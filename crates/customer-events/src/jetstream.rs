//! A NATS JetStream consumer of customer events (feature `jetstream`), with the guarantees of
//! the Redis one ([`crate::consumer`]):
//!
//! - A durable pull consumer (`durable`) on the service's stream (`NATS_STREAM`): several
//!   processes with one durable name share the work; events published while none ran are
//!   delivered when one starts; a message a dead process left unacknowledged is delivered
//!   again after `ack_wait`.
//! - Each event typed and upcast to the current schema; acknowledged only after the handler
//!   succeeded.
//! - A failing event is retried in place with exponential back-off (its acknowledgement
//!   deadline extended meanwhile); after `max_attempts` it is published to the dead-letter
//!   subject `<prefix>.dead-letters` (stored in the same stream; headers name the durable,
//!   the error, the attempts and the original subject and sequence) and acknowledged.
//! - An `eventId` handled before is skipped: a stream of its own (`<stream>_<durable>_SEEN`,
//!   one message per handled id on `<prefix>-seen.<durable>.<eventId>`, kept `dedupe_ttl`)
//!   remembers handled events across restarts and processes. (A key-value bucket is the same
//!   thing underneath; async-nats 0.51 cannot create one on the NATS 2.9 servers tested here.)
//! - An event of a type this crate does not know is acknowledged, logged and skipped.
//!
//! Only the events' subjects are read (`<prefix>.<eventType>.<customerId>`, filter
//! `<prefix>.*.*`): dead letters and the erasure saga's answers, on one-token subjects under
//! the prefix, are not events.

use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self, AckKind, Message};
use futures_util::StreamExt;

use crate::envelope::Envelope;
use crate::event::CustomerEvent;
use crate::outcome::Outcome;
use crate::versions::ReadError;

/// How a consumer behaves; [`JetStreamConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// The service's stream (`NATS_STREAM`, default `CUSTOMER_EVENTS`).
    pub stream: String,
    /// The service's subject prefix (`NATS_SUBJECT_PREFIX`, default
    /// `customer-service.events`).
    pub subject_prefix: String,
    /// The durable consumer's name: one per application; its processes share the events.
    pub durable: String,
    /// The subjects read [default: `<prefix>.*.*`, every event].
    pub filter_subject: Option<String>,
    /// Handler calls per event before it goes to the dead-letter subject.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles per attempt, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A message unacknowledged this long is delivered again (to any process).
    pub ack_wait: Duration,
    /// How long a handled `eventId` is remembered.
    pub dedupe_ttl: Duration,
    /// Messages per fetch.
    pub batch: usize,
    /// How long one fetch waits for messages.
    pub block: Duration,
}

impl JetStreamConfig {
    pub fn new(
        stream: impl Into<String>,
        subject_prefix: impl Into<String>,
        durable: impl Into<String>,
    ) -> JetStreamConfig {
        JetStreamConfig {
            stream: stream.into(),
            subject_prefix: subject_prefix.into(),
            durable: durable.into(),
            filter_subject: None,
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            dedupe_ttl: Duration::from_secs(24 * 3600),
            batch: 10,
            block: Duration::from_secs(1),
        }
    }

    /// `<prefix>.dead-letters`.
    pub fn dead_letter_subject(&self) -> String {
        format!("{}.dead-letters", self.subject_prefix)
    }

    /// The stream of handled event ids.
    pub fn seen_stream(&self) -> String {
        format!("{}_{}_SEEN", self.stream, self.durable)
    }

    /// The subject recording `key` (an event id, or another token of the application's).
    fn seen_subject(&self, key: &str) -> String {
        format!("{}-seen.{}.{key}", self.subject_prefix, self.durable)
    }
}

/// A NATS failure (connecting, fetching, acknowledging, dead-lettering).
#[derive(Debug)]
pub struct JetStreamError(pub String);

impl Display for JetStreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nats: {}", self.0)
    }
}

impl std::error::Error for JetStreamError {}

fn failed(error: impl Display) -> JetStreamError {
    JetStreamError(error.to_string())
}

pub struct JetStreamConsumer {
    context: jetstream::Context,
    consumer: PullConsumer,
    seen: stream::Stream,
    config: JetStreamConfig,
}

impl JetStreamConsumer {
    /// Connects to `client`'s JetStream, creates the durable consumer and the bucket of
    /// handled ids if missing.
    pub async fn new(
        client: async_nats::Client,
        config: JetStreamConfig,
    ) -> Result<JetStreamConsumer, JetStreamError> {
        let context = jetstream::new(client);
        let stream = context
            .get_stream(&config.stream)
            .await
            .map_err(|e| failed(format!("stream {}: {e}", config.stream)))?;
        let consumer = stream
            .get_or_create_consumer(
                &config.durable,
                pull::Config {
                    durable_name: Some(config.durable.clone()),
                    filter_subject: config
                        .filter_subject
                        .clone()
                        .unwrap_or_else(|| format!("{}.*.*", config.subject_prefix)),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed(format!("durable consumer {}: {e}", config.durable)))?;
        let seen = context
            .get_or_create_stream(stream::Config {
                name: config.seen_stream(),
                subjects: vec![format!(
                    "{}-seen.{}.>",
                    config.subject_prefix, config.durable
                )],
                max_age: config.dedupe_ttl,
                max_messages_per_subject: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(format!("stream {}: {e}", config.seen_stream())))?;
        Ok(JetStreamConsumer {
            context,
            consumer,
            seen,
            config,
        })
    }

    pub fn config(&self) -> &JetStreamConfig {
        &self.config
    }

    pub(crate) fn context(&self) -> &jetstream::Context {
        &self.context
    }

    /// Handles events until `shutdown` completes (checked between fetches and events).
    /// NATS errors are retried after a pause; the handler's lead to retries and the
    /// dead-letter subject.
    pub async fn run<F, Fut, E>(
        &self,
        handler: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), JetStreamError>
    where
        F: Fn(Envelope<CustomerEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        tokio::pin!(shutdown);
        loop {
            let round = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                round = self.poll_once(&handler) => round,
            };
            if let Err(error) = round {
                tracing::warn!(%error, "jetstream consumer: retrying after a failure");
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    /// One fetch (up to `batch` messages, waiting up to `block`), each handled; their
    /// outcomes.
    pub async fn poll_once<F, Fut, E>(&self, handler: F) -> Result<Vec<Outcome>, JetStreamError>
    where
        F: Fn(Envelope<CustomerEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let mut messages = self
            .consumer
            .fetch()
            .max_messages(self.config.batch)
            .expires(self.config.block)
            .messages()
            .await
            .map_err(failed)?;
        let mut outcomes = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(failed)?;
            outcomes.push(self.handle(&handler, &message).await?);
        }
        Ok(outcomes)
    }

    async fn handle<F, Fut, E>(
        &self,
        handler: &F,
        message: &Message,
    ) -> Result<Outcome, JetStreamError>
    where
        F: Fn(Envelope<CustomerEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let payload = std::str::from_utf8(&message.payload).unwrap_or_default();
        let envelope = match Envelope::from_json(payload) {
            Ok(envelope) => envelope,
            Err(ReadError::UnknownType(event_type)) => {
                tracing::info!(
                    event_type,
                    subject = %message.subject,
                    "skipped an event of a type this consumer does not know"
                );
                message.ack().await.map_err(failed)?;
                return Ok(Outcome::Skipped { event_type });
            }
            // Unreadable: no retry can help.
            Err(error) => return self.dead_letter(message, &error.to_string(), 1).await,
        };
        if self.recorded(&envelope.event_id).await? {
            message.ack().await.map_err(failed)?;
            return Ok(Outcome::Duplicate);
        }
        let mut attempt = 1;
        let mut backoff = self.config.backoff;
        loop {
            match handler(envelope.clone()).await {
                Ok(()) => {
                    self.record(&envelope.event_id).await?;
                    message.ack().await.map_err(failed)?;
                    return Ok(Outcome::Handled);
                }
                Err(error) if attempt >= self.config.max_attempts => {
                    return self.dead_letter(message, &error.to_string(), attempt).await;
                }
                Err(_) => {
                    // Still ours: keep the server from delivering it elsewhere meanwhile.
                    message.ack_with(AckKind::Progress).await.map_err(failed)?;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    attempt += 1;
                }
            }
        }
    }

    /// Remembers `key` (subject-safe: letters, digits, `-`, `_`) for `dedupe_ttl`.
    pub(crate) async fn record(&self, key: &str) -> Result<(), JetStreamError> {
        self.context
            .publish(self.config.seen_subject(key), "".into())
            .await
            .map_err(failed)?
            .into_future()
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Whether `key` was recorded (within `dedupe_ttl`).
    pub(crate) async fn recorded(&self, key: &str) -> Result<bool, JetStreamError> {
        match self
            .seen
            .get_last_raw_message_by_subject(&self.config.seen_subject(key))
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
            Err(error) => Err(failed(error)),
        }
    }

    /// Publishes the message to the dead-letter subject (acknowledged by the stream), then
    /// acknowledges it.
    async fn dead_letter(
        &self,
        message: &Message,
        error: &str,
        attempts: u32,
    ) -> Result<Outcome, JetStreamError> {
        let sequence = message
            .info()
            .map(|info| info.stream_sequence)
            .map_err(failed)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Customer-Events-Durable", self.config.durable.as_str());
        headers.insert("Customer-Events-Subject", message.subject.as_str());
        headers.insert("Customer-Events-Sequence", sequence.to_string().as_str());
        headers.insert("Customer-Events-Attempts", attempts.to_string().as_str());
        let error: String = error
            .chars()
            .filter(|c| !c.is_control())
            .take(500)
            .collect();
        headers.insert("Customer-Events-Error", error.as_str());
        let publish = PublishMessage::build()
            .payload(message.payload.clone())
            .headers(headers)
            // A crash between the two steps publishes it again: stored once.
            .message_id(format!("{}-dlq-{sequence}", self.config.durable));
        self.context
            .send_publish(self.config.dead_letter_subject(), publish)
            .await
            .map_err(failed)?
            .into_future()
            .await
            .map_err(failed)?;
        message.ack().await.map_err(failed)?;
        Ok(Outcome::DeadLettered { attempts })
    }
}
