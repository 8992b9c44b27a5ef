//! Where published events go. Sinks move envelopes; they never look inside them.
//!
//! - [`RedisSink`]: `PUBLISH` + 24 h key + stream entry, idempotently, one script per batch.
//! - [`NatsSink`]: a JetStream stream, `Nats-Msg-Id` = eventId, acknowledged per batch.
//!
//! The SSE stream is not a sink: it reads the settled log (see `outbox/watermark.rs`), so it
//! can resume from any position and works on every instance, not only the leader's.

mod nats;
mod redis;
mod replies;

pub use nats::{NatsReplies, NatsSink};
pub use redis::{append_to_stream, client, connection_config, target, RedisSettings, RedisSink};
pub use replies::{RedisReplies, ReplyMessage, ReplySource, REPLY_GROUP};

use async_trait::async_trait;

use crate::application::StoredEvent;

/// Why a sink could not take a batch. The relay keeps the batch and retries.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination cannot be reached or did not answer in time.
    #[error("{sink} unavailable")]
    Unavailable {
        sink: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A relay with a newer lease epoch has published here: this one must stop.
    #[error("{sink} refused a superseded relay leader")]
    Fenced { sink: &'static str },
}

/// A destination of published events.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Short name for logs and health ("redis").
    fn name(&self) -> &'static str;

    /// Delivers `batch` (log order) or fails as a whole. Must be idempotent per event: the
    /// relay re-delivers a batch whose marking failed. With a `fence` (the relay lease's
    /// epoch), refuses with [`SinkError::Fenced`] once a newer epoch has published.
    async fn publish(&self, batch: &[StoredEvent], fence: Option<i64>) -> Result<(), SinkError>;

    /// Removes what the sink keeps of `events` (one erased customer's, already redacted in
    /// the log). Idempotent; nothing to do for sinks that keep nothing.
    async fn erase(&self, _events: &[StoredEvent]) -> Result<(), SinkError> {
        Ok(())
    }
}
