//! The Redis sink: for each event, `SET <prefix>:events:<type>:<id> <envelope> EX ttl NX`,
//! and only if that key was new, `PUBLISH` on the channel and `XADD` to the capped stream.
//! One Lua script runs a whole batch atomically, so a relay that crashed after publishing and
//! before marking re-runs it without duplicating anything in Redis.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use customer_events::EventType;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Mutex;

use crate::application::StoredEvent;
use crate::config::RedisConfig;

use super::{EventSink, SinkError};

/// KEYS[1] = stream, KEYS[2] = the relay's fence, KEYS[3..] = one event key per event.
/// ARGV[1] = ttl, ARGV[2] = channel, ARGV[3] = stream max length, ARGV[4] = the relay lease's
/// epoch (empty: unfenced), then per event three values: type, id, envelope. Returns how many
/// events were new; a `FENCED` error, publishing nothing, if a newer epoch has published.
const PUBLISH_BATCH: &str = r"
local epoch = tonumber(ARGV[4])
if epoch then
  local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
  if epoch < newest then
    return redis.error_reply('FENCED relay lease epoch ' .. ARGV[4] .. ' is superseded')
  end
  if epoch > newest then
    redis.call('SET', KEYS[2], ARGV[4])
  end
end
local published = 0
for i = 3, #KEYS do
  local base = 4 + (i - 3) * 3
  local event_type, event_id, envelope = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  if redis.call('SET', KEYS[i], envelope, 'EX', ARGV[1], 'NX') then
    redis.call('PUBLISH', ARGV[2], envelope)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*',
               'type', event_type, 'id', event_id, 'event', envelope)
    published = published + 1
  end
end
return published
";

/// How long one Redis round trip (or a connection attempt) may take before the batch is
/// retried later: short, so an outage is noticed quickly and never stalls the relay.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Names and limits of what the sink writes.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `<key_prefix>:events:<eventType>:<eventId>`.
    pub key_prefix: String,
    pub channel: String,
    pub stream: String,
    pub ttl_secs: u64,
    /// Approximate cap of the stream (`MAXLEN ~`).
    pub stream_max_len: u64,
}

/// Appends `events` to `stream` exactly as the relay does (fields `type`, `id`, `event`, the
/// envelope unchanged), in order, one pipeline per call: `events replay`.
pub async fn append_to_stream(
    client: &redis::Client,
    stream: &str,
    max_len: u64,
    events: &[StoredEvent],
) -> Result<(), SinkError> {
    let mut connection = tokio::time::timeout(
        REDIS_TIMEOUT,
        client.get_multiplexed_async_connection_with_config(&connection_config(REDIS_TIMEOUT)),
    )
    .await
    .map_err(unavailable)?
    .map_err(unavailable)?;
    let mut pipeline = redis::pipe();
    for event in events {
        pipeline
            .cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len)
            .arg("*")
            .arg("type")
            .arg(event.event_type.as_str())
            .arg("id")
            .arg(&event.event_id)
            .arg("event")
            .arg(&event.payload)
            .ignore();
    }
    pipeline
        .query_async::<()>(&mut connection)
        .await
        .map_err(unavailable)
}

pub struct RedisSink {
    client: redis::Client,
    settings: RedisSettings,
    script: redis::Script,
    /// The live connection, dropped after any failure and re-made on the next call, so the
    /// sink reconnects by itself after Redis restarts.
    connection: Mutex<Option<MultiplexedConnection>>,
}

/// A client for `config`'s server: `redis://`, or `rediss://` (TLS) verified against the
/// system's roots or, with `REDIS_CA_FILE`, that CA alone.
pub fn client(config: &RedisConfig) -> anyhow::Result<redis::Client> {
    let client = match &config.ca_file {
        None => redis::Client::open(config.url.as_str()),
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading REDIS_CA_FILE {}", path.display()))?;
            redis::Client::build_with_tls(
                config.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
    };
    client.context("REDIS_URL (or REDIS_CA_FILE) cannot be used")
}

/// Multiplexed connections that give up connecting, or waiting for an answer, after
/// `timeout` (redis-rs' own defaults are 1 s and 500 ms).
pub fn connection_config(timeout: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
}

fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SinkError {
    SinkError::Unavailable {
        sink: "redis",
        source: source.into(),
    }
}

impl RedisSink {
    /// A sink for `client`'s server (see [`client`]). Connects lazily.
    pub fn new(client: redis::Client, settings: RedisSettings) -> RedisSink {
        RedisSink {
            client,
            settings,
            script: redis::Script::new(PUBLISH_BATCH),
            connection: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// `host:port` of the server, without credentials (for documents and logs).
    pub fn address(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    /// The newest relay lease epoch that published to this stream: `<stream>:relay-epoch`.
    pub fn fence_key(&self) -> String {
        format!("{}:relay-epoch", self.settings.stream)
    }

    /// The event key of one event.
    pub fn event_key(&self, event_type: EventType, event_id: &str) -> String {
        format!(
            "{}:events:{event_type}:{event_id}",
            self.settings.key_prefix
        )
    }

    async fn connection(&self) -> Result<MultiplexedConnection, SinkError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = tokio::time::timeout(
            REDIS_TIMEOUT,
            self.client
                .get_multiplexed_async_connection_with_config(&connection_config(REDIS_TIMEOUT)),
        )
        .await
        .map_err(|_| unavailable("connecting timed out"))?
        .map_err(unavailable)?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `command` on the connection within [`REDIS_TIMEOUT`]; forgets the connection on
    /// failure.
    async fn run<T, F>(
        &self,
        command: impl FnOnce(MultiplexedConnection) -> F,
    ) -> Result<T, SinkError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        let result = match tokio::time::timeout(REDIS_TIMEOUT, command(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if error.code() == Some("FENCED") => {
                return Err(SinkError::Fenced { sink: "redis" });
            }
            Ok(Err(error)) => Err(unavailable(error)),
            Err(_) => Err(unavailable("Redis did not answer in time")),
        };
        if result.is_err() {
            *self.connection.lock().await = None;
        }
        result
    }

    /// `PING`, for the health check.
    pub async fn ping(&self) -> Result<(), SinkError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    /// Entries in the dead-letter stream (`<stream>:dlq`) that consumers fill with events
    /// their handlers kept failing on: the dashboard's DLQ depth.
    pub async fn dead_letter_depth(&self) -> Result<u64, SinkError> {
        let dlq = customer_events::consumer::dead_letter_stream(&self.settings.stream);
        self.run(
            |mut c| async move { redis::cmd("XLEN").arg(dlq).query_async::<u64>(&mut c).await },
        )
        .await
    }
}

/// Stream entries read per round trip while looking for an erased customer's entries.
const ERASE_SCAN: usize = 1000;

impl RedisSink {
    /// XDELs the entries of `stream` whose `id` field is one of `event_ids`. Each round trip
    /// has the sink's timeout, like publishing.
    async fn delete_entries(
        &self,
        stream: &str,
        event_ids: &std::collections::HashSet<&str>,
    ) -> Result<(), SinkError> {
        let mut start = "-".to_owned();
        loop {
            let mut range = redis::cmd("XRANGE");
            range
                .arg(stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(ERASE_SCAN);
            let entries: Vec<(String, Vec<String>)> = self
                .run(|mut c| async move { range.query_async(&mut c).await })
                .await?;
            let doomed: Vec<&String> = entries
                .iter()
                .filter(|(_, fields)| {
                    fields.chunks(2).any(|pair| {
                        pair[0] == "id"
                            && pair
                                .get(1)
                                .is_some_and(|id| event_ids.contains(id.as_str()))
                    })
                })
                .map(|(id, _)| id)
                .collect();
            if !doomed.is_empty() {
                let mut delete = redis::cmd("XDEL");
                delete.arg(stream).arg(&doomed);
                self.run(|mut c| async move { delete.query_async::<i64>(&mut c).await })
                    .await?;
            }
            match entries.last() {
                Some((last, _)) if entries.len() == ERASE_SCAN => start = format!("({last}"),
                _ => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl EventSink for RedisSink {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn publish(&self, batch: &[StoredEvent], fence: Option<i64>) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut invocation = self.script.prepare_invoke();
        invocation.key(&self.settings.stream).key(self.fence_key());
        invocation
            .arg(self.settings.ttl_secs)
            .arg(&self.settings.channel)
            .arg(self.settings.stream_max_len)
            .arg(fence.map(|epoch| epoch.to_string()).unwrap_or_default());
        for event in batch {
            invocation.key(self.event_key(event.event_type, &event.event_id));
            invocation
                .arg(event.event_type.as_str())
                .arg(&event.event_id)
                .arg(&event.payload);
        }
        let published: i64 = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        tracing::debug!(
            outbox.batch_size = batch.len(),
            redis.new_events = published,
            "published to Redis"
        );
        Ok(())
    }

    /// Deletes the events' 24 h keys and their entries in the stream and its dead-letter
    /// stream (found by scanning: erasure is rare, and the stream is capped).
    async fn erase(&self, events: &[StoredEvent]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = events
            .iter()
            .map(|e| self.event_key(e.event_type, &e.event_id))
            .collect();
        let ids: std::collections::HashSet<&str> =
            events.iter().map(|e| e.event_id.as_str()).collect();
        let stream = &self.settings.stream;
        let mut delete = redis::cmd("DEL");
        delete.arg(&keys);
        self.run(|mut c| async move { delete.query_async::<i64>(&mut c).await })
            .await?;
        self.delete_entries(stream, &ids).await?;
        self.delete_entries(&format!("{stream}:dlq"), &ids).await
    }
}
