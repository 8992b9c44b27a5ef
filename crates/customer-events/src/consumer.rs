//! A Redis Streams consumer of customer events (feature `consumer`).
//!
//! - Reads the service's stream (`EVENT_STREAM`) as one consumer of a consumer group, so
//!   several processes share the work and nothing published while they were down is missed.
//! - Hands each event, typed and upcast to the current schema, to your handler, and
//!   acknowledges it only after the handler succeeded.
//! - Retries a failing event with exponential back-off; after `max_attempts` it moves the
//!   event to the dead-letter stream `<stream>:dlq` (with the error, the attempt count and the
//!   consumer) and acknowledges it, so one poison message never blocks the rest.
//! - Takes over messages a dead consumer of the group left unacknowledged for `claim_idle`
//!   (`XAUTOCLAIM`).
//! - Skips an event whose `eventId` it already handled (a key per event, `SET NX` with a
//!   TTL), since delivery is at least once.
//! - Acknowledges and skips (and logs) an event of a type this crate does not know: the
//!   service adds event types over time ([`crate::EventType`] is `#[non_exhaustive]`), and a
//!   consumer built before one existed has nothing to do with it. Never dead-lettered.
//! - Stops between events when the shutdown future completes.
//!
//! ```no_run
//! # async fn example() -> Result<(), customer_events::consumer::ConsumerError> {
//! use customer_events::consumer::{Consumer, ConsumerConfig};
//! use customer_events::CustomerEvent;
//!
//! let config = ConsumerConfig::new("customer-service-events:stream", "welcome-emails", "worker-1");
//! let consumer = Consumer::new("redis://127.0.0.1:6379", config)?;
//! consumer
//!     .run(
//!         |envelope| async move {
//!             if let CustomerEvent::CustomerCreated(created) = &envelope.data {
//!                 println!("welcome, {}", created.full_name);
//!             }
//!             Ok::<(), String>(())
//!         },
//!         async { let _ = tokio::signal::ctrl_c().await; },
//!     )
//!     .await
//! # }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use redis::{RedisError, Value};

use crate::envelope::Envelope;
use crate::event::CustomerEvent;
use crate::versions::ReadError;

/// How a consumer behaves; [`ConsumerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The service's stream (`EVENT_STREAM`, default `customer-service-events:stream`).
    pub stream: String,
    /// The consumer group: one per application; its consumers share the events.
    pub group: String,
    /// This consumer's name within the group (unique per process).
    pub consumer: String,
    /// Where a new group starts: `0` (everything the stream retains) or `$` (new only).
    pub start_at: String,
    /// Handler calls per event before it goes to the dead-letter stream.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles per attempt, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A message unacknowledged by its consumer for this long is taken over.
    pub claim_idle: Duration,
    /// How long a handled `eventId` is remembered (duplicates are skipped within it).
    pub dedupe_ttl: Duration,
    /// Messages per read.
    pub batch: usize,
    /// How long one read waits for new messages.
    pub block: Duration,
}

impl ConsumerConfig {
    pub fn new(
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> ConsumerConfig {
        ConsumerConfig {
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            start_at: "0".to_owned(),
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            claim_idle: Duration::from_secs(30),
            dedupe_ttl: Duration::from_secs(24 * 3600),
            batch: 10,
            block: Duration::from_secs(1),
        }
    }

    /// `<stream>:dlq`.
    pub fn dead_letter_stream(&self) -> String {
        dead_letter_stream(&self.stream)
    }

    fn seen_key(&self, event_id: &str) -> String {
        format!("{}:{}:seen:{event_id}", self.stream, self.group)
    }
}

/// The dead-letter stream of `stream`.
pub fn dead_letter_stream(stream: &str) -> String {
    format!("{stream}:dlq")
}

#[derive(Debug)]
pub enum ConsumerError {
    Redis(RedisError),
}

impl Display for ConsumerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsumerError::Redis(error) => write!(f, "redis: {error}"),
        }
    }
}

impl std::error::Error for ConsumerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConsumerError::Redis(error) => Some(error),
        }
    }
}

impl From<RedisError> for ConsumerError {
    fn from(error: RedisError) -> Self {
        ConsumerError::Redis(error)
    }
}

pub use crate::outcome::Outcome;
pub use crate::redis_target::{RedisConnection, RedisTarget};

/// One stream message: its id and field/value pairs.
struct Message {
    id: String,
    fields: Vec<(String, String)>,
}

impl Message {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Consumer {
    target: RedisTarget,
    config: ConsumerConfig,
}

impl Consumer {
    pub fn new(redis_url: &str, config: ConsumerConfig) -> Result<Consumer, ConsumerError> {
        Ok(Consumer {
            target: RedisTarget::single(redis_url)?,
            config,
        })
    }

    /// A consumer of a Redis Cluster's stream (`nodes`: seed nodes, `redis://host:port`).
    /// Dead letters are then added and acknowledged in two steps (a transaction cannot span
    /// the two streams' slots): a crash between them dead-letters the event twice.
    pub fn cluster(nodes: Vec<String>, config: ConsumerConfig) -> Result<Consumer, ConsumerError> {
        Ok(Consumer {
            target: RedisTarget::cluster(nodes)?,
            config,
        })
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Handles events until `shutdown` completes (checked between events). Redis errors
    /// are retried after a pause; the handler's errors lead to retries and the DLQ.
    pub async fn run<F, Fut, E>(
        &self,
        handler: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ConsumerError>
    where
        F: Fn(Envelope<CustomerEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        tokio::pin!(shutdown);
        let mut connection: Option<RedisConnection> = None;
        loop {
            let result = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                result = self.round(&mut connection, &handler) => result,
            };
            if result.is_err() {
                // Reconnect after a pause; the group keeps our unacknowledged messages.
                connection = None;
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    async fn round<F, Fut, E>(
        &self,
        connection: &mut Option<RedisConnection>,
        handler: &F,
    ) -> Result<Vec<Outcome>, ConsumerError>
    where
        F: Fn(Envelope<CustomerEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let connection = match connection {
            Some(connection) => connection,
            None => connection.insert(self.connect().await?),
        };
        self.poll(connection, handler).await
    }

    /// One round: takes over messages idle too long in the group, then reads new ones, and
    /// handles them all. Returns each message's outcome (for tests and tools).
    pub async fn poll_once<F, Fut, E>(&self, handler: F) -> Result<Vec<Outcome>, ConsumerError>
    where
        F: Fn(Envelope<CustomerEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let mut connection = self.connect().await?;
        self.poll(&mut connection, &handler).await
    }

    async fn connect(&self) -> Result<RedisConnection, ConsumerError> {
        // Every read blocks up to `block`: answers may take that long (redis-rs' default
        // response timeout is 500 ms).
        let patience = self.config.block + Duration::from_secs(5);
        let mut connection = self.target.connect(patience).await?;
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&self.config.start_at)
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        match created {
            Err(error) if error.code() == Some("BUSYGROUP") => {}
            other => other?,
        }
        Ok(connection)
    }

    async fn poll<F, Fut, E>(
        &self,
        connection: &mut RedisConnection,
        handler: &F,
    ) -> Result<Vec<Outcome>, ConsumerError>
    where
        F: Fn(Envelope<CustomerEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let mut messages = self.claim_idle(connection).await?;
        if messages.is_empty() {
            messages = self.read_new(connection).await?;
        }
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            outcomes.push(self.handle(connection, handler, &message).await?);
        }
        Ok(outcomes)
    }

    async fn claim_idle(
        &self,
        connection: &mut RedisConnection,
    ) -> Result<Vec<Message>, ConsumerError> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg(millis(self.config.claim_idle))
            .arg("0-0")
            .arg("COUNT")
            .arg(self.config.batch)
            .query_async(connection)
            .await?;
        // [next-start, [[id, [field, value, …]], …], deleted-ids]
        Ok(match reply {
            Value::Array(parts) => parts.into_iter().nth(1).map(messages).unwrap_or_default(),
            _ => Vec::new(),
        })
    }

    async fn read_new(
        &self,
        connection: &mut RedisConnection,
    ) -> Result<Vec<Message>, ConsumerError> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(self.config.batch)
            .arg("BLOCK")
            .arg(millis(self.config.block))
            .arg("STREAMS")
            .arg(&self.config.stream)
            .arg(">")
            .query_async(connection)
            .await?;
        // nil on timeout, else [[stream, [[id, fields], …]]] (RESP2) or a map (RESP3).
        let streams = match reply {
            Value::Array(streams) => streams,
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(k, v)| Value::Array(vec![k, v]))
                .collect(),
            _ => return Ok(Vec::new()),
        };
        Ok(streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(parts) => parts.into_iter().nth(1),
                _ => None,
            })
            .flat_map(messages)
            .collect())
    }

    async fn handle<F, Fut, E>(
        &self,
        connection: &mut RedisConnection,
        handler: &F,
        message: &Message,
    ) -> Result<Outcome, ConsumerError>
    where
        F: Fn(Envelope<CustomerEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let payload = message.field("event").unwrap_or_default();
        let envelope = match Envelope::from_json(payload) {
            Ok(envelope) => envelope,
            Err(ReadError::UnknownType(event_type)) => {
                tracing::info!(
                    event_type,
                    message_id = message.id,
                    "skipped an event of a type this consumer does not know"
                );
                self.ack(connection, message).await?;
                return Ok(Outcome::Skipped { event_type });
            }
            // Unreadable: no retry can help.
            Err(error) => {
                return self
                    .dead_letter(connection, message, &error.to_string(), 1)
                    .await
            }
        };
        let seen = self.config.seen_key(&envelope.event_id);
        let handled_before: bool = redis::cmd("EXISTS")
            .arg(&seen)
            .query_async(connection)
            .await?;
        if handled_before {
            self.ack(connection, message).await?;
            return Ok(Outcome::Duplicate);
        }
        let mut attempt = 1;
        let mut backoff = self.config.backoff;
        loop {
            match handler(envelope.clone()).await {
                Ok(()) => {
                    let _: Value = redis::cmd("SET")
                        .arg(&seen)
                        .arg(&message.id)
                        .arg("NX")
                        .arg("PX")
                        .arg(millis(self.config.dedupe_ttl))
                        .query_async(connection)
                        .await?;
                    self.ack(connection, message).await?;
                    return Ok(Outcome::Handled);
                }
                Err(error) if attempt >= self.config.max_attempts => {
                    return self
                        .dead_letter(connection, message, &error.to_string(), attempt)
                        .await;
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    attempt += 1;
                }
            }
        }
    }

    async fn ack(
        &self,
        connection: &mut RedisConnection,
        message: &Message,
    ) -> Result<(), ConsumerError> {
        let _: i64 = redis::cmd("XACK")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&message.id)
            .query_async(connection)
            .await?;
        Ok(())
    }

    /// Adds the message to `<stream>:dlq` with why, then acknowledges it, atomically.
    async fn dead_letter(
        &self,
        connection: &mut RedisConnection,
        message: &Message,
        error: &str,
        attempts: u32,
    ) -> Result<Outcome, ConsumerError> {
        let mut entry = redis::cmd("XADD");
        entry.arg(self.config.dead_letter_stream()).arg("*");
        for (name, value) in &message.fields {
            entry.arg(name).arg(value);
        }
        entry
            .arg("messageId")
            .arg(&message.id)
            .arg("group")
            .arg(&self.config.group)
            .arg("consumer")
            .arg(&self.config.consumer)
            .arg("attempts")
            .arg(attempts)
            .arg("error")
            .arg(error);
        let mut ack = redis::cmd("XACK");
        ack.arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&message.id);
        if connection.is_cluster() {
            // Two slots: first the dead letter, then the acknowledgement (see
            // `Consumer::cluster`).
            let _: Value = entry.query_async(connection).await?;
            let _: Value = ack.query_async(connection).await?;
        } else {
            let _: Value = redis::pipe()
                .atomic()
                .add_command(entry)
                .add_command(ack)
                .query_async(connection)
                .await?;
        }
        Ok(Outcome::DeadLettered { attempts })
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// `[[id, [field, value, …]], …]` → messages (entries deleted meanwhile come back nil).
fn messages(value: Value) -> Vec<Message> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(mut parts) = entry else {
                return None;
            };
            if parts.len() != 2 {
                return None;
            }
            let fields = parts.pop()?;
            let id = text(parts.pop()?)?;
            let flat: Vec<String> = match fields {
                Value::Array(values) => values.into_iter().filter_map(text).collect(),
                Value::Map(pairs) => pairs
                    .into_iter()
                    .flat_map(|(k, v)| [text(k), text(v)])
                    .flatten()
                    .collect(),
                _ => return None,
            };
            let fields = flat
                .chunks(2)
                .filter_map(|pair| match pair {
                    [name, value] => Some((name.clone(), value.clone())),
                    _ => None,
                })
                .collect();
            Some(Message { id, fields })
        })
        .collect()
}
