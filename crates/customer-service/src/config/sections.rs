//! The typed sections of [`Config`](super::Config).

use super::*;

/// The NATS JetStream sink (see docs/architecture.md, "The NATS JetStream sink").
#[derive(Clone)]
pub struct NatsConfig {
    /// `NATS_URL`: `nats://[USER:PASSWORD@]HOST:PORT` or `tls://…`; several servers
    /// separated by commas.
    pub url: String,
    /// `NATS_CREDS_FILE`: a `.creds` file (JWT and nkey seed) to authenticate with.
    pub creds_file: Option<std::path::PathBuf>,
    /// `NATS_CA_FILE`: a PEM CA certificate to trust for TLS (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
    /// `NATS_SUBJECT_PREFIX`: subjects are `<prefix>.<eventType>.<customerId>`.
    pub subject_prefix: String,
    /// `NATS_STREAM`: the JetStream stream, created if missing.
    pub stream: String,
    /// `NATS_STREAM_REPLICAS`.
    pub replicas: usize,
    /// `NATS_STREAM_MAX_AGE`: how long the stream keeps a message.
    pub max_age: Duration,
    /// `NATS_DUPLICATE_WINDOW`: JetStream drops a message whose `Nats-Msg-Id` it stored
    /// this recently; longer than the relay's longest retry.
    pub duplicate_window: Duration,
}

/// Never shows the URL (it may carry a password).
impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("subject_prefix", &self.subject_prefix)
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("max_age", &self.max_age)
            .field("duplicate_window", &self.duplicate_window)
            .finish_non_exhaustive()
    }
}

/// The shortest `NATS_DUPLICATE_WINDOW`: a batch is published again after a failed mark
/// (at once), a relay failure (back-off up to 5 s), a leader change (the lease's 3 s) or a
/// restart; a minute covers all of them with room.
pub const MIN_NATS_DUPLICATE_WINDOW: Duration = Duration::from_secs(60);

/// The erasure saga (see docs/architecture.md, "Sagas").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureConfig {
    /// `ERASURE_PARTICIPANTS`: the services asked to erase each erased customer too, in order.
    pub participants: Vec<String>,
    /// `ERASURE_DEADLINE`: how long they have to confirm before the saga fails.
    pub deadline: Duration,
    /// `ERASURE_RETRY_AFTER`: the first reminder to a silent participant; then twice as long
    /// each time, at most a day apart.
    pub retry_after: Duration,
}

/// Bearer-token authentication: off unless a key is configured.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// `AUTH_JWT_SECRET` (HS256) or `AUTH_JWT_PUBLIC_KEY_FILE` (PEM RSA or EC public key:
    /// RS256 or ES256); at most one of them.
    pub key: Option<JwtKeySource>,
    /// `AUTH_JWT_ISSUER`: when set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// `AUTH_JWT_AUDIENCE`: when set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// `AUTH_PROTECT_READS`: reads (and `/metrics`) need a token too.
    pub protect_reads: bool,
}

#[derive(Clone)]
pub enum JwtKeySource {
    Secret(String),
    PublicKeyFile(std::path::PathBuf),
}

/// Never shows the secret.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match &self.key {
            None => "off".to_owned(),
            Some(JwtKeySource::Secret(_)) => "HS256 secret".to_owned(),
            Some(JwtKeySource::PublicKeyFile(path)) => format!("public key {}", path.display()),
        };
        f.debug_struct("AuthConfig")
            .field("key", &key)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("protect_reads", &self.protect_reads)
            .finish()
    }
}

#[derive(Clone)]
pub struct RedisConfig {
    /// `REDIS_URL` (`redis://[:password@]host:port[/db]`), or built from the original's
    /// `REDIS_HOST`, `REDIS_PORT` and `REDIS_PASSWORD`.
    pub url: String,
    /// `REDIS_KEY_PREFIX`: keys are `<prefix>:events:<type>:<id>`.
    pub key_prefix: String,
    /// `EVENT_CHANNEL`: the Pub/Sub channel.
    pub channel: String,
    /// `EVENT_STREAM`.
    pub stream: String,
    /// `EVENT_TTL_SECONDS`: lifetime of the per-event keys.
    pub ttl_secs: u64,
    /// `EVENT_STREAM_MAXLEN`: approximate cap of the stream.
    pub stream_max_len: u64,
    /// `REDIS_CA_FILE`: a PEM file of the CA that signed the server's certificate, for a
    /// `rediss://` URL to a server with a private CA; without it, the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// `REDIS_CLUSTER_NODES`: the seed nodes of a Redis Cluster, as URLs (`url` is the
    /// first); empty for a single server.
    pub cluster_nodes: Vec<String>,
    /// `REDIS_MIN_REPLICAS`: replicas that must acknowledge a batch's writes (`WAIT`) before
    /// it is marked published; `None`: 1 when the cluster has replicas, else 0.
    pub min_replicas: Option<u32>,
}

/// The URL may carry a password: show only where it points.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self
            .url
            .rsplit_once('@')
            .map_or(self.url.as_str(), |(_, host)| host);
        f.debug_struct("RedisConfig")
            .field(
                "url",
                &format_args!("redis://<redacted>@{}", host.trim_start_matches("redis://")),
            )
            .field("key_prefix", &self.key_prefix)
            .field("channel", &self.channel)
            .field("stream", &self.stream)
            .field("ttl_secs", &self.ttl_secs)
            .field("stream_max_len", &self.stream_max_len)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `RELAY_ENABLED`: run the relay that publishes the event log. Off only
    /// for tests and maintenance: events then stay pending.
    pub enabled: bool,
    /// `RELAY_BATCH_SIZE`: events per publish round trip. Larger drains a
    /// backlog faster (measured: 500 → ~25k, 1000 → ~31k, 2000 → ~40k events/s) but holds Redis
    /// longer inside one script call.
    pub batch_size: i64,
    /// `RELAY_POLL_INTERVAL_MS`: how often an idle leader looks for events committed
    /// through other instances (its own commits wake it at once).
    pub poll_interval: Duration,
    /// `RELAY_GAP_GRACE_MS`: how long a missing log position holds back
    /// cursor readers before it counts as rolled back (see `outbox/watermark.rs`).
    pub gap_grace: Duration,
    /// `RELAY_LEASE_TTL_MS`: how long the relay leader's lease lasts without
    /// a renewal: a frozen or cut-off leader is replaced this long after its last one.
    pub lease_ttl: Duration,
    /// `OUTBOX_DEGRADED_AFTER_SECS`: health turns `degraded` on every instance
    /// once the oldest unpublished event is older than this.
    pub degraded_after: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `HOST`: the address to listen on.
    pub host: IpAddr,
    /// `PORT`. Tests set 0: any free port.
    pub port: u16,
    /// `FRONTEND_URL`: origins allowed by CORS, comma-separated. Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// `REQUEST_TIMEOUT_SECS`: a request still running after this gets a 503.
    pub request_timeout: Duration,
    /// `BODY_LIMIT_BYTES`: larger request bodies get a 413.
    pub body_limit_bytes: usize,
    /// `RATE_LIMIT_WRITES_PER_MINUTE`: sustained writes per client
    /// (the token's subject, else the IP address); more get 429. Off by default: behind a
    /// gateway every client has the gateway's address, and a drop-in replacement must not
    /// start refusing the writes the original accepted.
    pub write_rate_per_minute: u32,
    /// `RATE_LIMIT_WRITE_BURST`: writes a client may send at once.
    pub write_burst: u32,
    /// `IDEMPOTENCY_TTL_HOURS`: how long a POST's `Idempotency-Key` and its
    /// answer are kept.
    pub idempotency_ttl: Duration,
    /// `HTTP_HEADER_TIMEOUT_SECS`: a connection that does not complete a
    /// request head this long after it began (or after connecting) is closed.
    pub header_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_SECS`: a keep-alive connection idle this long after
    /// its last response is closed. Requests in flight, SSE streams included, never are.
    pub idle_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: open connections at most; more wait in the
    /// listen backlog. The soft open-file limit is raised to the hard one at start.
    pub max_connections: usize,
    /// `HTTP_SEND_TIMEOUT_SECS`: a connection whose answer (an SSE stream too) the client
    /// has taken nothing of for this long — its send buffer full — is closed.
    pub send_timeout: Duration,
    /// `SSE_MAX_CLIENTS`: event streams (`/api/v1/events/stream`, `/api/v1/health/stream`)
    /// open at once on this instance; default half of `HTTP_MAX_CONNECTIONS`, and always
    /// below it, so that streams never hold every connection. More get 503.
    pub sse_max_clients: usize,
    /// `SSE_MAX_CLIENTS_PER_ADDRESS`: event streams open at once from one client address.
    pub sse_max_clients_per_address: usize,
    /// `PROBE_PORT`: a second listener serving only `/livez`, `/readyz`, the health routes
    /// and `/metrics`, with connections of its own, so that the platform's probes are
    /// answered however many connections the main port holds. `None`: no such listener.
    pub probe_port: Option<u16>,
}

#[derive(Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`: a SQLite file (created if missing by `serve`, `migrate` and `seed`;
    /// the `events` tools need an existing one), a
    /// `postgres://user:password@host:port/database` URL, or a
    /// `mysql://user:password@host:port/database` URL (MySQL 8 or MariaDB 10.11+).
    pub url: String,
    /// `DATABASE_POOL_SIZE`: connections in the pool (SQLite: readers; it
    /// always has one writer connection besides).
    pub max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_MS`: how long a request waits for a
    /// connection before it gets a 503 while the database is down or saturated.
    pub acquire_timeout: Duration,
    /// `DATABASE_READ_URL`: a replica of `url` (PostgreSQL streaming, or MySQL / MariaDB
    /// with GTIDs) for the reads that may lag (see docs/architecture.md, "Read replicas").
    pub read_url: Option<String>,
    /// `DATABASE_READ_MAX_LAG_MS`: reads fall back to the primary while the replica lags more.
    pub read_max_lag: Duration,
}

/// The URL may carry a password: show only its scheme.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.url.split_once(':').map_or("?", |(s, _)| s);
        f.debug_struct("DatabaseConfig")
            .field("url", &format_args!("{scheme}://<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("read_replica", &self.read_url.is_some())
            .field("read_max_lag", &self.read_max_lag)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `LOG_FORMAT`.
    pub format: LogFormat,
    /// `RUST_LOG`: a tracing filter, e.g. `info,sqlx=warn`.
    pub filter: String,
    /// Trace export, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set.
    pub otlp: Option<OtlpConfig>,
}

/// Where and what to export as OTLP traces, from the OpenTelemetry SDK's standard variables.
#[derive(Clone)]
pub struct OtlpConfig {
    /// The URL exported to: for HTTP `<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is; for gRPC the endpoint itself.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: OtlpProtocol,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,…`, values percent-decoded), sent with
    /// every export (often a collector's API key).
    pub headers: Vec<(String, String)>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`, values percent-decoded).
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: Sampler,
}

/// The OTLP transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

impl Value for OtlpProtocol {
    const EXPECTED: &'static str = "http/protobuf, http/json or grpc";
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            "http/json" => Some(OtlpProtocol::HttpJson),
            "grpc" => Some(OtlpProtocol::Grpc),
            _ => None,
        }
    }
}

/// Header values may be credentials: never shown.
impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("header_names", &header_names)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("sampler", &self.sampler)
            .finish()
    }
}

/// Which traces are exported. A trace starts at an HTTP request: with a `traceparent`
/// header a parent-based sampler follows the caller's decision; otherwise (and always for
/// a plain ratio sampler) the trace id decides, so every service of a trace decides alike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    pub parent_based: bool,
    /// Share of traces kept, 0 to 1 (`always_on` is 1, `always_off` 0).
    pub ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable lines.
    Pretty,
}
