//! Participants' answers to sagas, read from Redis streams (`<EVENT_STREAM>:<suffix>`, one
//! per saga definition) in the consumer group `customer-service`, always as the consumer
//! `orchestrator`: whichever instance leads reads the same pending list, so answers read
//! but not acknowledged by a leader that died are read again by the next one (from id `0`)
//! before new ones (`>`). An answer is acknowledged once recorded (or refused); recording is
//! idempotent, so reading one twice changes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use customer_events::redis_target::{RedisConnection, RedisTarget};
use redis::Value;
use tokio::sync::Mutex;

use crate::application::Reply;

use super::SinkError;

/// The consumer group the service reads answers in.
pub const REPLY_GROUP: &str = "customer-service";
/// The one consumer name every instance uses (see the module comment).
const CONSUMER: &str = "orchestrator";

/// One answer as read: where it came from, to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyMessage {
    pub stream: String,
    pub id: String,
    pub reply: Reply,
}

/// Where answers come from.
#[async_trait]
pub trait ReplySource: Send + Sync {
    /// Up to `count` answers, waiting at most `block` when there are none.
    async fn read(&self, count: usize, block: Duration) -> Result<Vec<ReplyMessage>, SinkError>;
    /// Done with `message`: not read again.
    async fn ack(&self, message: &ReplyMessage) -> Result<(), SinkError>;
    /// Read what is pending (read before, never acknowledged) first again: called when
    /// this instance becomes the leader, and after a failure left answers unacknowledged.
    fn rewind(&self);
}

pub struct RedisReplies {
    target: RedisTarget,
    streams: Vec<String>,
    connection: Mutex<Option<RedisConnection>>,
    /// Whether the pending list is read through.
    caught_up: AtomicBool,
}

impl RedisReplies {
    pub fn new(target: RedisTarget, streams: Vec<String>) -> RedisReplies {
        RedisReplies {
            target,
            streams,
            connection: Mutex::new(None),
            caught_up: AtomicBool::new(false),
        }
    }

    async fn connection(&self, patience: Duration) -> Result<RedisConnection, SinkError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let mut connection = self.target.connect(patience).await.map_err(unavailable)?;
        for stream in &self.streams {
            let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(REPLY_GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut connection)
                .await;
            match created {
                Err(error) if error.code() == Some("BUSYGROUP") => {}
                other => other.map_err(unavailable)?,
            }
        }
        *slot = Some(connection.clone());
        Ok(connection)
    }

    async fn forget_connection(&self) {
        *self.connection.lock().await = None;
    }
}

fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SinkError {
    SinkError::Unavailable {
        sink: "redis",
        source: source.into(),
    }
}

#[async_trait]
impl ReplySource for RedisReplies {
    async fn read(&self, count: usize, block: Duration) -> Result<Vec<ReplyMessage>, SinkError> {
        let patience = block + Duration::from_secs(2);
        let mut connection = self.connection(patience).await?;
        let pending = !self.caught_up.load(Ordering::Relaxed);
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(REPLY_GROUP)
            .arg(CONSUMER)
            .arg("COUNT")
            .arg(count);
        if !pending {
            read.arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX));
        }
        read.arg("STREAMS").arg(&self.streams);
        for _ in &self.streams {
            read.arg(if pending { "0" } else { ">" });
        }
        let reply: Value = match read.query_async(&mut connection).await {
            Ok(reply) => reply,
            Err(error) => {
                self.forget_connection().await;
                return Err(unavailable(error));
            }
        };
        let messages = messages(reply);
        if pending && messages.is_empty() {
            self.caught_up.store(true, Ordering::Relaxed);
        }
        Ok(messages)
    }

    async fn ack(&self, message: &ReplyMessage) -> Result<(), SinkError> {
        let mut connection = self.connection(Duration::from_secs(2)).await?;
        let acked: Result<i64, _> = redis::cmd("XACK")
            .arg(&message.stream)
            .arg(REPLY_GROUP)
            .arg(&message.id)
            .query_async(&mut connection)
            .await;
        if let Err(error) = acked {
            self.forget_connection().await;
            return Err(unavailable(error));
        }
        Ok(())
    }

    fn rewind(&self) {
        self.caught_up.store(false, Ordering::Relaxed);
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// `[[stream, [[id, [field, value, …]], …]], …]` (RESP2) or a map of streams (RESP3).
fn messages(reply: Value) -> Vec<ReplyMessage> {
    let streams: Vec<(Value, Value)> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut parts) if parts.len() == 2 => {
                    let entries = parts.pop()?;
                    Some((parts.pop()?, entries))
                }
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for (name, entries) in streams {
        let Some(stream) = text(&name) else { continue };
        let Value::Array(entries) = entries else {
            continue;
        };
        for entry in entries {
            let Value::Array(parts) = entry else { continue };
            let [id, fields] = parts.as_slice() else {
                continue;
            };
            let Some(id) = text(id) else { continue };
            let flat: Vec<String> = match fields {
                Value::Array(values) => values.iter().filter_map(text).collect(),
                Value::Map(pairs) => pairs
                    .iter()
                    .flat_map(|(k, v)| [text(k), text(v)])
                    .flatten()
                    .collect(),
                // An entry deleted since it was read: nothing to record, but acknowledge it.
                _ => Vec::new(),
            };
            let field = |name: &str| {
                flat.chunks(2)
                    .find(|pair| pair.first().map(String::as_str) == Some(name))
                    .and_then(|pair| pair.get(1).cloned())
            };
            out.push(ReplyMessage {
                stream: stream.clone(),
                id,
                reply: Reply {
                    saga_id: field("sagaId").and_then(|raw| raw.trim().parse().ok()),
                    participant: field("participant").unwrap_or_default(),
                    token: field("token").unwrap_or_default(),
                    outcome: field("outcome").unwrap_or_default(),
                    reason: field("reason").filter(|r| !r.is_empty()),
                },
            });
        }
    }
    out
}
