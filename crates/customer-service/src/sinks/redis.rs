//! The Redis sink: for each event, `SET <prefix>:events:<type>:<id> <envelope> EX ttl NX`,
//! and only if that key was new, `PUBLISH` on the channel and `XADD` to the capped stream.
//! One Lua script runs a whole batch atomically, so a relay that crashed after publishing and
//! before marking re-runs it without duplicating anything in Redis.
//!
//! On a Redis Cluster (`REDIS_CLUSTER_NODES`) no script may touch keys of two slots, and the
//! 24 h keys are spread over every slot. There the script runs in the stream's slot only:
//! its keys are the stream, `{<stream>}:relay-epoch` and `{<stream>}:published` (the hash
//! tag `{<stream>}` puts them in the stream's own slot), and the last holds the event ids
//! published in the last 24 h (a sorted set by time): an event is `XADD`ed and `PUBLISH`ed
//! only if `ZADD NX` of its id added it — atomically with the `XADD`, so a batch run again
//! after a crash adds nothing to the stream or the channel. The 24 h keys are then set one
//! by one with `NX` (idempotent by themselves), and `WAIT` on every master makes the batch
//! count only once `REDIS_MIN_REPLICAS` replicas have it. See docs/architecture.md.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use customer_events::redis_target::RedisTarget;
use customer_events::EventType;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncConnectionConfig, Cmd, Value};
use tokio::sync::Mutex;

use crate::application::StoredEvent;
use crate::config::RedisConfig;

use super::{EventSink, SinkError};

/// The batch scripts (Lua, in `redis/`), each after the relay lease's fence: KEYS[2] holds
/// the newest epoch that published, ARGV[4] is this relay's (empty: unfenced); a superseded
/// epoch gets a `FENCED` error before anything is published.
///
/// Single server: KEYS[1] = stream, KEYS[2] = the relay's fence, KEYS[3..] = one event key
/// per event; ARGV[1] = ttl, ARGV[2] = channel, ARGV[3] = stream max length, ARGV[4] = the
/// relay lease's epoch (empty: unfenced), then per event three values: type, id, envelope.
/// Returns how many events were new.
const PUBLISH_BATCH: &str = concat!(
    include_str!("redis/fence.lua"),
    include_str!("redis/publish_batch.lua")
);

/// Redis Cluster (see the module's documentation): KEYS[1] = stream, KEYS[2] = the relay's
/// fence, KEYS[3] = the ids published in the last 24 h; ARGV as on a single server. Returns
/// how many events were new.
const PUBLISH_BATCH_CLUSTER: &str = concat!(
    include_str!("redis/fence.lua"),
    include_str!("redis/publish_batch_cluster.lua")
);

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
    target: &RedisTarget,
    stream: &str,
    max_len: u64,
    events: &[StoredEvent],
) -> Result<(), SinkError> {
    let mut connection = tokio::time::timeout(REDIS_TIMEOUT, target.connect(REDIS_TIMEOUT))
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

/// A connection to one server or to a cluster (which routes each command to its slot's
/// master, following slot moves and failovers by itself): the consumer crate's.
pub use customer_events::redis_target::RedisConnection as Connection;

pub struct RedisSink {
    /// One server, or a Redis Cluster.
    target: RedisTarget,
    /// A cluster's seed nodes, `host:port` each (for documents and logs); none for a server.
    seeds: Vec<String>,
    settings: RedisSettings,
    script: redis::Script,
    cluster_script: redis::Script,
    /// `REDIS_MIN_REPLICAS` (cluster); `None`: 1 for each master that has a replica.
    min_replicas: Option<u32>,
    /// The live connection, dropped after any failure and re-made on the next call, so the
    /// sink reconnects by itself after Redis restarts.
    connection: Mutex<Option<Connection>>,
}

/// How long `WAIT` waits for the replicas of a batch's masters.
const REPLICATION_WAIT: Duration = Duration::from_millis(1000);

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

/// Where `config` points: its server ([`client`]) or, with `REDIS_CLUSTER_NODES`, its
/// cluster (the same TLS settings).
pub fn target(config: &RedisConfig) -> anyhow::Result<RedisTarget> {
    if config.cluster_nodes.is_empty() {
        return Ok(RedisTarget::Single(client(config)?));
    }
    let mut builder = redis::cluster::ClusterClientBuilder::new(config.cluster_nodes.clone())
        .connection_timeout(REDIS_TIMEOUT)
        .response_timeout(REDIS_TIMEOUT);
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading REDIS_CA_FILE {}", path.display()))?;
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        });
    }
    let cluster = builder
        .build()
        .context("REDIS_CLUSTER_NODES (or REDIS_CA_FILE) cannot be used")?;
    Ok(RedisTarget::Cluster(cluster))
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
        RedisSink::with_target(RedisTarget::Single(client), Vec::new(), settings, None)
    }

    /// The sink of `config`: its cluster (`REDIS_CLUSTER_NODES`) or its server.
    pub fn from_config(config: &RedisConfig, settings: RedisSettings) -> anyhow::Result<RedisSink> {
        let cluster = match target(config)? {
            RedisTarget::Single(client) => return Ok(RedisSink::new(client, settings)),
            RedisTarget::Cluster(cluster) => cluster,
        };
        let seeds = config
            .cluster_nodes
            .iter()
            .map(|url| {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                rest.rsplit_once('@')
                    .map_or(rest, |(_, host)| host)
                    .to_owned()
            })
            .collect();
        Ok(RedisSink::with_target(
            RedisTarget::Cluster(cluster),
            seeds,
            settings,
            config.min_replicas,
        ))
    }

    fn with_target(
        target: RedisTarget,
        seeds: Vec<String>,
        settings: RedisSettings,
        min_replicas: Option<u32>,
    ) -> Self {
        RedisSink {
            target,
            seeds,
            settings,
            script: redis::Script::new(PUBLISH_BATCH),
            cluster_script: redis::Script::new(PUBLISH_BATCH_CLUSTER),
            min_replicas,
            connection: Mutex::new(None),
        }
    }

    /// Whether it writes to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, RedisTarget::Cluster(_))
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// `host:port` of the server (a cluster's seed nodes), without credentials (for
    /// documents and logs).
    pub fn address(&self) -> String {
        match &self.target {
            RedisTarget::Single(client) => client.get_connection_info().addr().to_string(),
            RedisTarget::Cluster(_) => self.seeds.join(", "),
        }
    }

    /// The newest relay lease epoch that published to this stream: `<stream>:relay-epoch`;
    /// on a cluster `{<stream>}:relay-epoch`, in the stream's slot.
    pub fn fence_key(&self) -> String {
        if self.is_cluster() {
            format!("{{{}}}:relay-epoch", self.settings.stream)
        } else {
            format!("{}:relay-epoch", self.settings.stream)
        }
    }

    /// On a cluster, the ids of the events published in the last 24 h, in the stream's slot.
    fn published_key(&self) -> String {
        format!("{{{}}}:published", self.settings.stream)
    }

    /// The event key of one event.
    pub fn event_key(&self, event_type: EventType, event_id: &str) -> String {
        format!(
            "{}:events:{event_type}:{event_id}",
            self.settings.key_prefix
        )
    }

    async fn connection(&self) -> Result<Connection, SinkError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = tokio::time::timeout(REDIS_TIMEOUT, self.target.connect(REDIS_TIMEOUT))
            .await
            .map_err(|_| unavailable("connecting timed out"))?
            .map_err(unavailable)?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `command` on the connection within [`REDIS_TIMEOUT`]; forgets the connection on
    /// failure.
    async fn run<T, F>(&self, command: impl FnOnce(Connection) -> F) -> Result<T, SinkError>
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

impl RedisSink {
    /// The arguments both scripts take: the 24 h keys' TTL, the channel, the stream's
    /// maximum length and the fence epoch (empty without one), then type, id and envelope
    /// of each event.
    fn batch_arguments(
        &self,
        invocation: &mut redis::ScriptInvocation<'_>,
        batch: &[StoredEvent],
        fence: Option<i64>,
    ) {
        invocation
            .arg(self.settings.ttl_secs)
            .arg(&self.settings.channel)
            .arg(self.settings.stream_max_len)
            .arg(fence.map(|epoch| epoch.to_string()).unwrap_or_default());
        for event in batch {
            invocation
                .arg(event.event_type.as_str())
                .arg(&event.event_id)
                .arg(&event.payload);
        }
    }

    /// A batch on a cluster (see the module's documentation): the script in the stream's
    /// slot, the 24 h keys one by one, then `WAIT` on every master.
    async fn publish_to_cluster(
        &self,
        batch: &[StoredEvent],
        fence: Option<i64>,
    ) -> Result<(), SinkError> {
        let mut invocation = self.cluster_script.prepare_invoke();
        invocation
            .key(&self.settings.stream)
            .key(self.fence_key())
            .key(self.published_key());
        self.batch_arguments(&mut invocation, batch, fence);
        let published: i64 = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        // One command per key, all in flight at once (a cluster pipeline must stay in one
        // slot; the keys are spread over all of them).
        let sets: Vec<Cmd> = batch
            .iter()
            .map(|event| {
                let mut set = redis::cmd("SET");
                set.arg(self.event_key(event.event_type, &event.event_id))
                    .arg(&event.payload)
                    .arg("EX")
                    .arg(self.settings.ttl_secs)
                    .arg("NX");
                set
            })
            .collect();
        self.run(|connection| async move {
            futures_util::future::try_join_all(sets.into_iter().map(|set| {
                let mut connection = connection.clone();
                async move { set.query_async::<Value>(&mut connection).await }
            }))
            .await
            .map(drop)
        })
        .await?;
        self.wait_for_replicas().await?;
        tracing::debug!(
            outbox.batch_size = batch.len(),
            redis.new_events = published,
            "published to the Redis Cluster"
        );
        Ok(())
    }

    /// `WAIT <n> <ms>` on every master, each on the connection that carried this batch's
    /// writes to it: those writes reached `n` replicas, or the batch is not published yet.
    /// `n` is `REDIS_MIN_REPLICAS` when set (a master with fewer replicas holds publishing
    /// up), else 1 for a master that has a replica and nothing for one that has none (a
    /// replica promoted after its master died, until a new one joins).
    async fn wait_for_replicas(&self) -> Result<(), SinkError> {
        let configured = self.min_replicas;
        let nodes: String = self
            .run(
                |mut c| async move { redis::cmd("CLUSTER").arg("NODES").query_async(&mut c).await },
            )
            .await?;
        let waits: Vec<(String, u16, u32)> = masters_and_replicas(&nodes)
            .into_iter()
            .filter_map(|(host, port, replicas)| {
                let wanted = configured.unwrap_or(u32::from(replicas > 0));
                (wanted > 0).then_some((host, port, wanted))
            })
            .collect();
        if waits.is_empty() {
            return Ok(());
        }
        let timeout = u64::try_from(REPLICATION_WAIT.as_millis()).unwrap_or(u64::MAX);
        let short = self
            .run(|connection| async move {
                let Connection::Cluster(cluster) = connection else {
                    return Ok(Vec::new());
                };
                let acknowledged = futures_util::future::try_join_all(waits.into_iter().map(
                    |(host, port, wanted)| {
                        let mut cluster = cluster.clone();
                        let mut wait = redis::cmd("WAIT");
                        wait.arg(wanted).arg(timeout);
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        async move {
                            let value = cluster.route_command(wait, routing).await?;
                            Ok::<_, redis::RedisError>((format!("{host}:{port}"), wanted, value))
                        }
                    },
                ))
                .await?;
                Ok(acknowledged
                    .into_iter()
                    .filter(|(_, wanted, value)| {
                        !matches!(value, Value::Int(n) if *n >= i64::from(*wanted))
                    })
                    .map(|(node, wanted, value)| format!("{node} (WAIT {wanted}: {value:?})"))
                    .collect::<Vec<_>>())
            })
            .await?;
        if short.is_empty() {
            Ok(())
        } else {
            Err(unavailable(format!(
                "replicas did not acknowledge the batch in time: {}",
                short.join(", ")
            )))
        }
    }
}

/// Each master of `CLUSTER NODES` that is not failing: its host, port and how many replicas
/// that are not failing follow it.
fn masters_and_replicas(nodes: &str) -> Vec<(String, u16, usize)> {
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|line| line.split(' ').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 8)
        .collect();
    let healthy = |flags: &str| !flags.split(',').any(|f| f == "fail" || f == "fail?");
    lines
        .iter()
        .filter(|f| f[2].split(',').any(|flag| flag == "master") && healthy(f[2]))
        .filter_map(|master| {
            let address = master[1].split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            let replicas = lines
                .iter()
                .filter(|f| f[3] == master[0] && healthy(f[2]))
                .count();
            Some((host.to_owned(), port.parse().ok()?, replicas))
        })
        .collect()
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
        if self.is_cluster() {
            return self.publish_to_cluster(batch, fence).await;
        }
        let mut invocation = self.script.prepare_invoke();
        invocation.key(&self.settings.stream).key(self.fence_key());
        for event in batch {
            invocation.key(self.event_key(event.event_type, &event.event_id));
        }
        self.batch_arguments(&mut invocation, batch, fence);
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
        // One DEL per key: on a cluster the keys live in different slots.
        self.run(|connection| async move {
            futures_util::future::try_join_all(keys.iter().map(|key| {
                let mut connection = connection.clone();
                let mut delete = redis::cmd("DEL");
                delete.arg(key);
                async move { delete.query_async::<i64>(&mut connection).await }
            }))
            .await
            .map(drop)
        })
        .await?;
        self.delete_entries(stream, &ids).await?;
        self.delete_entries(&format!("{stream}:dlq"), &ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::masters_and_replicas;

    #[test]
    fn masters_are_counted_with_their_healthy_replicas() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b1 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
c1 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected
r1 127.0.0.1:7004@17004 slave a1 0 0 1 connected
r2 127.0.0.1:7005@17005 slave,fail b1 0 0 2 disconnected
r3 127.0.0.1:7006@17006 master - 0 0 4 connected 10923-16383
";
        assert_eq!(
            masters_and_replicas(nodes),
            [
                ("127.0.0.1".to_owned(), 7001, 1),
                ("127.0.0.1".to_owned(), 7002, 0),
                ("127.0.0.1".to_owned(), 7006, 0),
            ]
        );
    }
}
