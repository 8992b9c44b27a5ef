//! The one typed [`Config`], read once from the environment at start-up. Nothing else in
//! the service reads environment variables.
//!
//! Every variable is declared once, in the `settings!` table below: its type (which says what
//! a valid value is), its default and its help line. Reading, defaults, the error for a bad
//! value ("PORT must be a port number between 1 and 65535, got 'abc'") and the `--help`
//! section ([`environment_help`]) all come from that one line.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Everything the service can be configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    /// `None` when neither `REDIS_URL` nor `REDIS_HOST` is set: events then go to the log
    /// only (and from there to `/api/v1/events` and the SSE stream).
    pub redis: Option<RedisConfig>,
    /// `None` unless `NATS_URL` is set: events then also go to a JetStream stream.
    pub nats: Option<NatsConfig>,
    pub relay: RelayConfig,
    /// `READ_MODELS_ENABLED`: run the read models' runner (customer statistics) in this
    /// process. Off on an instance that should only serve; another instance (or several)
    /// keeps them.
    pub read_models: bool,
    /// `None` unless `ERASURE_PARTICIPANTS` names at least one participant.
    pub erasure: Option<ErasureConfig>,
    pub log: LogConfig,
    pub auth: AuthConfig,
    /// A test hook, not a setting (so not in the settings table):
    /// `CUSTOMER_SERVICE_FAIL_WORKER=<name>` makes the background worker of that name panic
    /// as it starts ("relay", "live log", …; see `workers.rs`), so that tests can watch what
    /// a failed worker does to readiness and to the exit status.
    pub fail_worker: Option<String>,
}

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

/// A variable with a value the service cannot use. The message names the variable and what
/// it expects in plain English; it shows the value only where that cannot leak a secret.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn invalid(var: &'static str, expectation: &str) -> ConfigError {
    ConfigError {
        var,
        message: format!("{var} {expectation}"),
    }
}

/// One environment variable as `--help` lists it.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub var: &'static str,
    /// The value used when the variable is unset or blank; `None`: unset.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// A type a setting can have: how to read it and what a valid value is.
trait Value: Sized {
    /// Completes "<VAR> must be …".
    const EXPECTED: &'static str;
    /// Whether a rejected value may be shown in the error (not for URLs with passwords).
    const SHOW: bool = true;
    fn parse(raw: &str) -> Option<Self>;
    /// The value of an unset setting without a default: only `Option`s have one.
    fn unset() -> Option<Self> {
        None
    }
}

fn value<T: Value>(
    var: &'static str,
    lookup: &dyn Fn(&str) -> Option<String>,
    default: Option<&str>,
) -> Result<T, ConfigError> {
    let given = lookup(var).filter(|v| !v.trim().is_empty());
    let Some(raw) = given.as_deref().or(default) else {
        return T::unset().ok_or_else(|| invalid(var, "must be set"));
    };
    T::parse(raw.trim()).ok_or_else(|| {
        let mut message = format!("{var} must be {}", T::EXPECTED);
        if T::SHOW {
            message.push_str(&format!(", got '{raw}'"));
        }
        ConfigError { var, message }
    })
}

impl<T: Value> Value for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    const SHOW: bool = T::SHOW;
    fn parse(raw: &str) -> Option<Self> {
        T::parse(raw).map(Some)
    }
    fn unset() -> Option<Self> {
        Some(None)
    }
}

impl Value for String {
    const EXPECTED: &'static str = "text";
    fn parse(raw: &str) -> Option<Self> {
        Some(raw.to_owned())
    }
}

/// Text that is never shown: passwords, secrets, header values.
#[derive(Clone)]
struct Secret(String);

impl Value for Secret {
    const EXPECTED: &'static str = "text";
    const SHOW: bool = false;
    fn parse(raw: &str) -> Option<Self> {
        Some(Secret(raw.to_owned()))
    }
}

impl Value for std::path::PathBuf {
    const EXPECTED: &'static str = "a file path";
    fn parse(raw: &str) -> Option<Self> {
        Some(raw.into())
    }
}

impl Value for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        }
    }
}

impl Value for IpAddr {
    const EXPECTED: &'static str = "an IP address such as 0.0.0.0, 127.0.0.1 or ::";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

impl Value for u32 {
    const EXPECTED: &'static str = "a whole number (0 or more)";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

/// A TCP port, 1 to 65535.
#[derive(Clone, Copy)]
struct Port(u16);

impl Value for Port {
    const EXPECTED: &'static str = "a port number between 1 and 65535";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|port| *port > 0).map(Port)
    }
}

/// A whole number greater than zero.
#[derive(Clone, Copy)]
struct Positive<T>(T);

impl<T: std::str::FromStr + PartialOrd + Default> Value for Positive<T> {
    const EXPECTED: &'static str = "a whole number greater than zero";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|n| *n > T::default()).map(Positive)
    }
}

/// A duration such as `720h`, `30s`, `15m` or `1h 30m` (humantime's syntax), above zero.
#[derive(Clone, Copy)]
struct Span(Duration);

impl Value for Span {
    const EXPECTED: &'static str = "a duration such as 720h, 30s or 1h 30m";
    fn parse(raw: &str) -> Option<Self> {
        humantime::parse_duration(raw)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Span)
    }
}

/// `ERASURE_PARTICIPANTS`: comma-separated names of lower-case letters, digits, `-` and `_`
/// (they are stream consumer groups and parts of key names), each once.
struct Participants(Vec<String>);

impl Value for Participants {
    const EXPECTED: &'static str = "names of lower-case letters, digits, - and _ (at most 64 \
         characters each), separated by commas, each once";
    fn parse(raw: &str) -> Option<Self> {
        let names: Vec<String> = raw
            .split(',')
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        let valid = names.iter().all(|name| {
            name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
        let unique = names
            .iter()
            .enumerate()
            .all(|(i, name)| !names[..i].contains(name));
        (valid && unique).then_some(Participants(names))
    }
}

/// A share, 0 to 1.
#[derive(Clone, Copy)]
struct Ratio(f64);

impl Value for Ratio {
    const EXPECTED: &'static str = "a number between 0 and 1";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse()
            .ok()
            .filter(|r: &f64| (0.0..=1.0).contains(r))
            .map(Ratio)
    }
}

impl Value for LogFormat {
    const EXPECTED: &'static str = "pretty or json";
    fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "pretty" => Some(LogFormat::Pretty),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// `FRONTEND_URL`: comma-separated origins, a trailing slash dropped.
struct Origins(Vec<String>);

impl Value for Origins {
    const EXPECTED: &'static str = "origins such as https://admin.example.com, separated by commas";
    fn parse(raw: &str) -> Option<Self> {
        Some(Origins(
            raw.split(',')
                .map(|origin| origin.trim().trim_end_matches('/').to_owned())
                .filter(|origin| !origin.is_empty())
                .collect(),
        ))
    }
}

/// A URL whose scheme is one of a few; never shown (it may carry a password).
struct Url<const KIND: u8>(String);
const DATABASE: u8 = 0;
const REDIS: u8 = 1;
const NATS: u8 = 2;

impl<const KIND: u8> Value for Url<KIND> {
    const EXPECTED: &'static str = match KIND {
        DATABASE => "a sqlite:, postgres:// or mysql:// URL",
        REDIS => "a redis:// or rediss:// URL",
        _ => "nats:// or tls:// URLs, separated by commas",
    };
    const SHOW: bool = false;
    fn parse(raw: &str) -> Option<Self> {
        let schemes: &[&str] = match KIND {
            DATABASE => &["sqlite:", "postgres://", "postgresql://", "mysql://"],
            REDIS => &["redis://", "rediss://"],
            _ => &["nats://", "tls://"],
        };
        let one = |url: &str| schemes.iter().any(|scheme| url.trim().starts_with(scheme));
        let valid = if KIND == NATS {
            raw.split(',').all(one)
        } else {
            one(raw)
        };
        valid.then(|| Url(raw.to_owned()))
    }
}

macro_rules! settings {
    ($( $field:ident: $ty:ty = $var:literal, $default:expr, $help:literal; )*) => {
        /// Every environment variable, typed.
        struct Settings { $( $field: $ty, )* }

        /// Every environment variable, in `--help` order.
        pub const SETTINGS: &[Setting] = &[$( Setting { var: $var, default: $default, help: $help }, )*];

        impl Settings {
            fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
                Ok(Settings { $( $field: value::<$ty>($var, lookup, $default)?, )* })
            }
        }
    };
}

settings! {
    port: Port = "PORT", Some("3004"), "HTTP port";
    host: IpAddr = "HOST", Some("0.0.0.0"), "address to listen on";
    database_url: Url<DATABASE> = "DATABASE_URL", Some("sqlite://customer-service.db"),
        "sqlite://PATH (created if missing), postgres://USER:PASSWORD@HOST:PORT/DB or mysql://USER:PASSWORD@HOST:PORT/DB";
    database_pool_size: Positive<u32> = "DATABASE_POOL_SIZE", Some("10"), "database connections";
    database_acquire_timeout_ms: Positive<u64> = "DATABASE_ACQUIRE_TIMEOUT_MS", Some("3000"),
        "wait for a connection before answering 503";
    database_read_url: Option<Url<DATABASE>> = "DATABASE_READ_URL", None,
        "postgres://… or mysql://… of a replica of DATABASE_URL: reads that may lag go there \
         [default: none: every read on the primary]";
    database_read_max_lag_ms: Positive<u64> = "DATABASE_READ_MAX_LAG_MS", Some("1000"),
        "reads fall back to the primary while the replica lags more";
    frontend_url: Option<Origins> = "FRONTEND_URL", None,
        "CORS origin(s), comma-separated [default: none: no CORS headers]";
    request_timeout_secs: Positive<u64> = "REQUEST_TIMEOUT_SECS", Some("30"),
        "per-request time limit (then 503)";
    body_limit_bytes: Positive<usize> = "BODY_LIMIT_BYTES", Some("65536"),
        "largest accepted request body (then 413)";
    rate_limit_writes_per_minute: u32 = "RATE_LIMIT_WRITES_PER_MINUTE", Some("0"),
        "writes per client (token subject, else IP) and minute; 0: no limit";
    rate_limit_write_burst: Positive<u32> = "RATE_LIMIT_WRITE_BURST", Some("60"),
        "writes a client may send at once";
    idempotency_ttl_hours: Positive<u64> = "IDEMPOTENCY_TTL_HOURS", Some("24"),
        "how long an Idempotency-Key's answer is kept";
    http_header_timeout_secs: Positive<u64> = "HTTP_HEADER_TIMEOUT_SECS", Some("10"),
        "close a connection whose request head is not complete by then";
    http_idle_timeout_secs: Positive<u64> = "HTTP_IDLE_TIMEOUT_SECS", Some("60"),
        "close a keep-alive connection idle this long (never an SSE stream)";
    http_max_connections: Positive<usize> = "HTTP_MAX_CONNECTIONS", Some("10000"),
        "open connections at most; more wait in the backlog";
    http_send_timeout_secs: Positive<u64> = "HTTP_SEND_TIMEOUT_SECS", Some("30"),
        "close a connection whose client has taken nothing of its answer (an SSE stream too) \
         for this long";
    sse_max_clients: Option<Positive<usize>> = "SSE_MAX_CLIENTS", None,
        "event streams open at once on this instance, below HTTP_MAX_CONNECTIONS; more get 503 \
         [default: half of HTTP_MAX_CONNECTIONS]";
    sse_max_clients_per_address: Positive<usize> = "SSE_MAX_CLIENTS_PER_ADDRESS", Some("16"),
        "event streams open at once from one client address; more get 503";
    probe_port: Option<Port> = "PROBE_PORT", None,
        "a second port serving only /livez, /readyz, the health routes and /metrics, with \
         connections of its own [default: none]";
    redis_url: Option<Url<REDIS>> = "REDIS_URL", None,
        "redis[s]://[:PASSWORD@]HOST:PORT[/DB] (rediss: TLS) [default: none: events go to the \
         log and GET /api/v1/events/stream only]";
    redis_host: Option<String> = "REDIS_HOST", None, "the original's form: Redis host, instead of REDIS_URL";
    redis_port: Port = "REDIS_PORT", Some("6379"), "with REDIS_HOST: Redis port";
    redis_password: Option<Secret> = "REDIS_PASSWORD", None, "with REDIS_HOST: Redis password";
    redis_ca_file: Option<std::path::PathBuf> = "REDIS_CA_FILE", None,
        "PEM CA certificate for rediss:// to a private CA [default: the system's roots]";
    redis_cluster_nodes: Option<String> = "REDIS_CLUSTER_NODES", None,
        "host:port,host:port,… seed nodes of a Redis Cluster, instead of REDIS_URL (password: \
         REDIS_PASSWORD, or redis[s]://… entries) [default: none]";
    redis_min_replicas: Option<u32> = "REDIS_MIN_REPLICAS", None,
        "with a cluster: replicas that must have a batch before it counts as published \
         [default: 1 when the cluster has replicas]";
    redis_key_prefix: String = "REDIS_KEY_PREFIX", Some("customer"), "prefix of the event keys";
    event_channel: String = "EVENT_CHANNEL", Some("customer-service-events"), "Redis Pub/Sub channel";
    event_stream: String = "EVENT_STREAM", Some("customer-service-events:stream"), "Redis stream";
    event_ttl_seconds: Positive<u64> = "EVENT_TTL_SECONDS", Some("86400"), "lifetime of the event keys";
    event_stream_maxlen: Positive<u64> = "EVENT_STREAM_MAXLEN", Some("1000000"),
        "approximate cap of the stream";
    nats_url: Option<Url<NATS>> = "NATS_URL", None,
        "nats://[USER:PASSWORD@]HOST:PORT (tls:// for TLS; several separated by commas): \
         publish to a JetStream stream too [default: none]";
    nats_creds_file: Option<std::path::PathBuf> = "NATS_CREDS_FILE", None,
        "a NATS .creds file to authenticate with";
    nats_ca_file: Option<std::path::PathBuf> = "NATS_CA_FILE", None,
        "PEM CA certificate for TLS to a private CA [default: the system's roots]";
    nats_subject_prefix: String = "NATS_SUBJECT_PREFIX", Some("customer-service.events"),
        "subjects are <prefix>.<eventType>.<customerId>";
    nats_stream: String = "NATS_STREAM", Some("CUSTOMER_EVENTS"), "JetStream stream (created if missing)";
    nats_stream_replicas: Positive<usize> = "NATS_STREAM_REPLICAS", Some("1"), "replicas of a created stream";
    nats_stream_max_age: Span = "NATS_STREAM_MAX_AGE", Some("720h"), "how long the stream keeps a message";
    nats_duplicate_window: Span = "NATS_DUPLICATE_WINDOW", Some("10m"),
        "JetStream drops a repeated Nats-Msg-Id within this (at least 1m: longer than the \
         relay's longest retry)";
    relay_enabled: bool = "RELAY_ENABLED", Some("true"), "publish the event log";
    relay_batch_size: Positive<i64> = "RELAY_BATCH_SIZE", Some("1000"), "events per publish round trip";
    relay_poll_interval_ms: Positive<u64> = "RELAY_POLL_INTERVAL_MS", Some("10"),
        "how often an idle leader looks for events committed elsewhere";
    relay_gap_grace_ms: Positive<u64> = "RELAY_GAP_GRACE_MS", Some("5000"),
        "how long a missing log position holds readers back";
    relay_lease_ttl_ms: Positive<u64> = "RELAY_LEASE_TTL_MS", Some("3000"),
        "a relay leader not renewing its lease this long is replaced";
    read_models_enabled: bool = "READ_MODELS_ENABLED", Some("true"),
        "keep the read models (customer statistics) up to date in this process";
    outbox_degraded_after_secs: Positive<u64> = "OUTBOX_DEGRADED_AFTER_SECS", Some("10"),
        "health is degraded while the oldest unpublished event is older";
    erasure_participants: Option<Participants> = "ERASURE_PARTICIPANTS", None,
        "services that must confirm every erasure, e.g. billing,email (needs REDIS_URL or NATS_URL) \
         [default: none: no erasure saga]";
    erasure_deadline: Span = "ERASURE_DEADLINE", Some("720h"),
        "an erasure saga not confirmed by every participant by then fails";
    erasure_retry_after: Span = "ERASURE_RETRY_AFTER", Some("15m"),
        "first reminder to a silent participant; then doubling, at most a day apart";
    auth_jwt_secret: Option<Secret> = "AUTH_JWT_SECRET", None,
        "HS256 secret, at least 32 bytes: writes need a bearer token [default: none: no \
         authentication]";
    auth_jwt_public_key_file: Option<std::path::PathBuf> = "AUTH_JWT_PUBLIC_KEY_FILE", None,
        "PEM RSA or EC public key (RS256 / ES256), instead of the secret";
    auth_jwt_issuer: Option<String> = "AUTH_JWT_ISSUER", None, "required token issuer (iss) [default: any]";
    auth_jwt_audience: Option<String> = "AUTH_JWT_AUDIENCE", None,
        "required token audience (aud) [default: any]";
    auth_protect_reads: bool = "AUTH_PROTECT_READS", Some("false"), "reads and /metrics need a token too";
    log_format: LogFormat = "LOG_FORMAT", Some("pretty"), "pretty | json";
    rust_log: String = "RUST_LOG", Some("info"), "log filter, e.g. info,sqlx=warn";
    otel_endpoint: Option<String> = "OTEL_EXPORTER_OTLP_ENDPOINT", None,
        "http[s]://HOST:PORT of an OTLP collector: export request traces (HTTP: to its \
         /v1/traces) [default: none: no export]";
    otel_traces_endpoint: Option<String> = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None,
        "the full traces URL instead";
    otel_protocol: OtlpProtocol = "OTEL_EXPORTER_OTLP_PROTOCOL", Some("http/protobuf"),
        "http/protobuf | http/json | grpc";
    otel_traces_protocol: Option<OtlpProtocol> = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", None,
        "the same, for traces only";
    otel_headers: Option<Secret> = "OTEL_EXPORTER_OTLP_HEADERS", None, "key=value,… sent with every export";
    otel_service_name: String = "OTEL_SERVICE_NAME", Some("customer-service"), "service.name of the traces";
    otel_resource_attributes: Option<String> = "OTEL_RESOURCE_ATTRIBUTES", None,
        "key=value,… describing this instance (e.g. deployment.environment=prod)";
    otel_sampler: Option<String> = "OTEL_TRACES_SAMPLER", None,
        "[parentbased_]always_on|always_off|traceidratio [default: parentbased_always_on]";
    otel_sampler_arg: Ratio = "OTEL_TRACES_SAMPLER_ARG", Some("1"), "the ratio of traceidratio, 0 to 1";
    otel_sdk_disabled: bool = "OTEL_SDK_DISABLED", Some("false"), "true: no export even with an endpoint";
}

/// The `--help` section listing every variable, from [`SETTINGS`].
pub fn environment_help() -> String {
    let mut help = String::from("Environment variables:\n");
    for setting in SETTINGS {
        let default = setting
            .default
            .map_or_else(String::new, |d| format!(" [default: {d}]"));
        help.push_str(&format!(
            "  {:<35} {}{default}\n",
            setting.var, setting.help
        ));
    }
    help
}

/// See [`Config::fail_worker`].
const FAIL_WORKER: &str = "CUSTOMER_SERVICE_FAIL_WORKER";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let s = Settings::read(&lookup)?;
        let (redis, auth, otlp) = (redis_config(&s)?, auth_config(&s)?, otlp_config(&s)?);
        let nats = nats_config(&s)?;
        let erasure = erasure_config(&s, redis.is_some() || nats.is_some())?;
        let read_url = read_replica_url(&s)?;
        let sse_max_clients = sse_max_clients(&s)?;
        let secs = |Positive(n): Positive<u64>| Duration::from_secs(n);
        let millis = |Positive(n): Positive<u64>| Duration::from_millis(n);
        Ok(Config {
            http: HttpConfig {
                host: s.host,
                port: s.port.0,
                cors_origins: s.frontend_url.map(|o| o.0).unwrap_or_default(),
                request_timeout: secs(s.request_timeout_secs),
                body_limit_bytes: s.body_limit_bytes.0,
                write_rate_per_minute: s.rate_limit_writes_per_minute,
                write_burst: s.rate_limit_write_burst.0,
                idempotency_ttl: Duration::from_secs(3600 * s.idempotency_ttl_hours.0),
                header_timeout: secs(s.http_header_timeout_secs),
                idle_timeout: secs(s.http_idle_timeout_secs),
                max_connections: s.http_max_connections.0,
                send_timeout: secs(s.http_send_timeout_secs),
                sse_max_clients,
                sse_max_clients_per_address: s.sse_max_clients_per_address.0,
                probe_port: s.probe_port.map(|p| p.0),
            },
            database: DatabaseConfig {
                read_url,
                read_max_lag: millis(s.database_read_max_lag_ms),
                url: s.database_url.0,
                max_connections: s.database_pool_size.0,
                acquire_timeout: millis(s.database_acquire_timeout_ms),
            },
            redis,
            nats,
            relay: RelayConfig {
                enabled: s.relay_enabled,
                batch_size: s.relay_batch_size.0,
                poll_interval: millis(s.relay_poll_interval_ms),
                gap_grace: millis(s.relay_gap_grace_ms),
                lease_ttl: millis(s.relay_lease_ttl_ms),
                degraded_after: secs(s.outbox_degraded_after_secs),
            },
            read_models: s.read_models_enabled,
            erasure,
            auth,
            log: LogConfig {
                format: s.log_format,
                filter: s.rust_log,
                otlp,
            },
            fail_worker: lookup(FAIL_WORKER),
        })
    }
}

/// `SSE_MAX_CLIENTS`, below `HTTP_MAX_CONNECTIONS` (else streams could hold every
/// connection); half of it when unset.
fn sse_max_clients(s: &Settings) -> Result<usize, ConfigError> {
    let connections = s.http_max_connections.0;
    match s.sse_max_clients {
        None => Ok((connections / 2).max(1)),
        Some(Positive(n)) if n < connections => Ok(n),
        Some(Positive(n)) => Err(invalid(
            "SSE_MAX_CLIENTS",
            &format!(
                "must be below HTTP_MAX_CONNECTIONS ({connections}), so that event streams never \
                 hold every connection (got {n})"
            ),
        )),
    }
}

fn read_replica_url(s: &Settings) -> Result<Option<String>, ConfigError> {
    let Some(url) = &s.database_read_url else {
        return Ok(None);
    };
    let engine = |u: &str| {
        if u.starts_with("postgres://") || u.starts_with("postgresql://") {
            Some("postgres")
        } else if u.starts_with("mysql://") {
            Some("mysql")
        } else {
            None
        }
    };
    if engine(&url.0).is_none() || engine(&url.0) != engine(&s.database_url.0) {
        return Err(invalid(
            "DATABASE_READ_URL",
            "must be a PostgreSQL replica of a PostgreSQL DATABASE_URL, or a MySQL / MariaDB \
             replica of a MySQL DATABASE_URL",
        ));
    }
    Ok(Some(url.0.clone()))
}

fn nats_config(s: &Settings) -> Result<Option<NatsConfig>, ConfigError> {
    let Some(url) = &s.nats_url else {
        return Ok(None);
    };
    let duplicate_window = s.nats_duplicate_window.0;
    if duplicate_window < MIN_NATS_DUPLICATE_WINDOW {
        return Err(invalid(
            "NATS_DUPLICATE_WINDOW",
            "must be at least 1m: it has to outlast the relay's longest retry of a batch, or \
             a repeated publish is stored twice",
        ));
    }
    if s.nats_stream.is_empty() || s.nats_stream.contains(['.', '*', '>', ' ']) {
        return Err(invalid(
            "NATS_STREAM",
            "must be a stream name without '.', '*', '>' or spaces",
        ));
    }
    let prefix = s.nats_subject_prefix.trim_matches('.');
    if prefix.is_empty() || prefix.contains(['*', '>', ' ']) || prefix.contains("..") {
        return Err(invalid(
            "NATS_SUBJECT_PREFIX",
            "must be subject tokens separated by dots, without wildcards or spaces",
        ));
    }
    Ok(Some(NatsConfig {
        url: url.0.clone(),
        creds_file: s.nats_creds_file.clone(),
        ca_file: s.nats_ca_file.clone(),
        subject_prefix: prefix.to_owned(),
        stream: s.nats_stream.clone(),
        replicas: s.nats_stream_replicas.0,
        max_age: s.nats_stream_max_age.0,
        duplicate_window,
    }))
}

fn erasure_config(s: &Settings, broker: bool) -> Result<Option<ErasureConfig>, ConfigError> {
    let Some(Participants(participants)) = &s.erasure_participants else {
        return Ok(None);
    };
    if participants.is_empty() {
        return Ok(None);
    }
    if !broker {
        return Err(invalid(
            "ERASURE_PARTICIPANTS",
            "needs a message broker: participants get their erasure requests with the \
             events and answer on <EVENT_STREAM>:erasure-replies (Redis) or \
             <NATS_SUBJECT_PREFIX>.erasure-replies (NATS). Set REDIS_URL (or REDIS_HOST) or \
             NATS_URL, or unset ERASURE_PARTICIPANTS",
        ));
    }
    Ok(Some(ErasureConfig {
        participants: participants.clone(),
        deadline: s.erasure_deadline.0,
        retry_after: s.erasure_retry_after.0,
    }))
}

fn redis_config(s: &Settings) -> Result<Option<RedisConfig>, ConfigError> {
    let auth = || {
        s.redis_password
            .as_ref()
            .map_or_else(String::new, |p| format!(":{}@", percent_encode(&p.0)))
    };
    let cluster_nodes: Vec<String> = match &s.redis_cluster_nodes {
        None => Vec::new(),
        Some(_) if s.redis_url.is_some() || s.redis_host.is_some() => {
            return Err(invalid(
                "REDIS_CLUSTER_NODES",
                "and REDIS_URL (or REDIS_HOST) cannot both be set: a cluster or one server",
            ))
        }
        Some(nodes) => nodes
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(|node| {
                if node.starts_with("redis://") || node.starts_with("rediss://") {
                    node.to_owned()
                } else {
                    format!("redis://{}{node}", auth())
                }
            })
            .collect(),
    };
    let url = match (&s.redis_url, &s.redis_host, cluster_nodes.first()) {
        (_, _, Some(first)) => first.clone(),
        (Some(url), _, None) => url.0.clone(),
        (None, Some(host), None) => format!("redis://{}{host}:{}", auth(), s.redis_port.0),
        (None, None, None) => return Ok(None),
    };
    Ok(Some(RedisConfig {
        url,
        key_prefix: s.redis_key_prefix.clone(),
        channel: s.event_channel.clone(),
        stream: s.event_stream.clone(),
        ttl_secs: s.event_ttl_seconds.0,
        stream_max_len: s.event_stream_maxlen.0,
        ca_file: s.redis_ca_file.clone(),
        cluster_nodes,
        min_replicas: s.redis_min_replicas,
    }))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for a URL password).
fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;

fn auth_config(s: &Settings) -> Result<AuthConfig, ConfigError> {
    let key = match (&s.auth_jwt_secret, &s.auth_jwt_public_key_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "AUTH_JWT_SECRET",
                "and AUTH_JWT_PUBLIC_KEY_FILE cannot both be set: choose one",
            ))
        }
        (Some(secret), None) if secret.0.len() < MIN_SECRET_BYTES => {
            return Err(invalid(
                "AUTH_JWT_SECRET",
                &format!(
                    "must be at least {MIN_SECRET_BYTES} bytes (HS256 is only as strong as its \
                     secret), got {} bytes",
                    secret.0.len()
                ),
            ))
        }
        (Some(secret), None) => Some(JwtKeySource::Secret(secret.0.clone())),
        (None, Some(path)) => Some(JwtKeySource::PublicKeyFile(path.clone())),
        (None, None) => None,
    };
    Ok(AuthConfig {
        key,
        issuer: s.auth_jwt_issuer.clone(),
        audience: s.auth_jwt_audience.clone(),
        protect_reads: s.auth_protect_reads,
    })
}

fn otlp_config(s: &Settings) -> Result<Option<OtlpConfig>, ConfigError> {
    if s.otel_sdk_disabled {
        return Ok(None);
    }
    let protocol = s.otel_traces_protocol.unwrap_or(s.otel_protocol);
    let (name, url, own_path) = match (&s.otel_traces_endpoint, &s.otel_endpoint) {
        (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url, true),
        (None, Some(url)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", url, false),
        (None, None) => return Ok(None),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            invalid(
                name,
                "must be an http:// or https:// URL (not shown: it may hold credentials)",
            )
        })?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid(name, "must name a host (without credentials)"));
    }
    let url = url.trim_end_matches('/');
    let endpoint = if own_path || protocol == OtlpProtocol::Grpc {
        url.to_owned()
    } else {
        format!("{url}/v1/traces")
    };
    let headers = match &s.otel_headers {
        None => Vec::new(),
        Some(Secret(list)) => key_values(list, true).ok_or_else(|| {
            invalid(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "must be key=value pairs separated by commas (values percent-encoded)",
            )
        })?,
    };
    let resource_attributes = match &s.otel_resource_attributes {
        None => Vec::new(),
        Some(list) => key_values(list, false).ok_or_else(|| {
            invalid(
                "OTEL_RESOURCE_ATTRIBUTES",
                &format!("must be key=value pairs separated by commas, got '{list}'"),
            )
        })?,
    };
    let ratio = s.otel_sampler_arg.0;
    let (parent_based, ratio) = match s.otel_sampler.as_deref() {
        None | Some("parentbased_always_on") => (true, 1.0),
        Some("parentbased_always_off") => (true, 0.0),
        Some("parentbased_traceidratio") => (true, ratio),
        Some("always_on") => (false, 1.0),
        Some("always_off") => (false, 0.0),
        Some("traceidratio") => (false, ratio),
        Some(other) => {
            return Err(invalid(
                "OTEL_TRACES_SAMPLER",
                &format!(
                    "must be always_on, always_off, traceidratio or their parentbased_ forms, \
                     got '{other}'"
                ),
            ))
        }
    };
    Ok(Some(OtlpConfig {
        endpoint,
        protocol,
        headers,
        service_name: s.otel_service_name.clone(),
        resource_attributes,
        sampler: Sampler {
            parent_based,
            ratio,
        },
    }))
}

/// `key=value,…` with percent-decoded values; `None` if malformed. `header`: keys and values
/// must also be valid in an HTTP header.
fn key_values(list: &str, header: bool) -> Option<Vec<(String, String)>> {
    list.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            let value = percent_decode(value.trim())?;
            let valid = !key.is_empty()
                && (!header
                    || (key.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                        && value
                            .bytes()
                            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))));
            valid.then(|| (key.to_owned(), value))
        })
        .collect()
}

/// `%XX` escapes decoded; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_match_the_original_service() {
        let c = config(&[]).unwrap();
        assert_eq!(c.http.port, 3004);
        assert_eq!(c.database.url, "sqlite://customer-service.db");
        assert_eq!(c.http.body_limit_bytes, 65536);
        assert!(c.http.cors_origins.is_empty());
        assert_eq!(c.log.format, LogFormat::Pretty);
    }

    #[test]
    fn frontend_url_may_list_several_origins() {
        let c = config(&[("FRONTEND_URL", "http://a.test, https://b.test/")]).unwrap();
        assert_eq!(c.http.cors_origins, ["http://a.test", "https://b.test"]);
    }

    #[test]
    fn a_bad_value_gets_a_plain_english_message_naming_its_variable() {
        let message = |vars: &[(&str, &str)]| config(vars).unwrap_err().to_string();
        assert_eq!(
            message(&[("PORT", "abc")]),
            "PORT must be a port number between 1 and 65535, got 'abc'"
        );
        assert_eq!(
            message(&[("REQUEST_TIMEOUT_SECS", "0")]),
            "REQUEST_TIMEOUT_SECS must be a whole number greater than zero, got '0'"
        );
        assert_eq!(
            message(&[("RELAY_ENABLED", "maybe")]),
            "RELAY_ENABLED must be true or false, got 'maybe'"
        );
        assert_eq!(
            message(&[("DATABASE_URL", "mariadb://u:secret@h/db")]),
            "DATABASE_URL must be a sqlite:, postgres:// or mysql:// URL",
            "a URL may carry a password: never shown"
        );
        assert_eq!(
            message(&[("REDIS_URL", "http://:secret@h")]),
            "REDIS_URL must be a redis:// or rediss:// URL"
        );
    }

    #[test]
    fn help_lists_every_setting_once_with_its_default() {
        let help = environment_help();
        for setting in SETTINGS {
            let line = help
                .lines()
                .find(|l| l.split_whitespace().next() == Some(setting.var))
                .unwrap_or_else(|| panic!("{} missing from\n{help}", setting.var));
            if let Some(default) = setting.default {
                assert!(line.ends_with(&format!("[default: {default}]")), "{line}");
            }
        }
        let mut vars: Vec<&str> = SETTINGS.iter().map(|s| s.var).collect();
        vars.sort_unstable();
        vars.dedup();
        assert_eq!(vars.len(), SETTINGS.len(), "a variable declared twice");
    }

    #[test]
    fn the_configuration_page_lists_every_setting_with_the_default_declared_here() {
        let readme = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ));
        for setting in SETTINGS {
            let name = format!("`{}`", setting.var);
            assert!(
                readme.contains(&name),
                "{} missing from docs/configuration.md",
                setting.var
            );
            // A row of this variable alone: its second cell is the default.
            let row = format!("| {name} | ");
            if let (Some(line), Some(default)) = (
                readme.lines().find(|l| l.starts_with(&row)),
                setting.default,
            ) {
                let cell = line[row.len()..].split(" | ").next().unwrap_or_default();
                assert!(
                    cell.starts_with(&format!("`{default}`")),
                    "docs/configuration.md says {cell} for {}, the code {default}",
                    setting.var
                );
            }
        }
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        assert_eq!(config(&[("PORT", "http")]).unwrap_err().var, "PORT");
        assert_eq!(config(&[("PORT", "70000")]).unwrap_err().var, "PORT");
        assert_eq!(
            config(&[("LOG_FORMAT", "xml")]).unwrap_err().var,
            "LOG_FORMAT"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "oracle://x")]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            config(&[("DATABASE_POOL_SIZE", "0")]).unwrap_err().var,
            "DATABASE_POOL_SIZE"
        );
    }

    #[test]
    fn the_erasure_saga_needs_a_broker_and_valid_names() {
        assert!(config(&[]).unwrap().erasure.is_none());
        let refused = config(&[("ERASURE_PARTICIPANTS", "billing,email")]).unwrap_err();
        assert_eq!(refused.var, "ERASURE_PARTICIPANTS");
        assert!(
            refused.message.starts_with(
                "ERASURE_PARTICIPANTS needs a message broker: participants get their erasure \
                 requests with the events"
            ),
            "{}",
            refused.message
        );
        assert!(refused
            .message
            .contains("Set REDIS_URL (or REDIS_HOST) or NATS_URL"));
        let nats_only = config(&[
            ("ERASURE_PARTICIPANTS", "billing"),
            ("NATS_URL", "nats://a:4222"),
        ]);
        assert!(nats_only.unwrap().erasure.is_some());
        let redis = ("REDIS_URL", "redis://cache:6379");
        let c = config(&[redis, ("ERASURE_PARTICIPANTS", " billing , email-v2,")]).unwrap();
        let erasure = c.erasure.unwrap();
        assert_eq!(erasure.participants, ["billing", "email-v2"]);
        assert_eq!(erasure.deadline, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(erasure.retry_after, Duration::from_secs(15 * 60));
        let c = config(&[
            redis,
            ("ERASURE_PARTICIPANTS", "billing"),
            ("ERASURE_DEADLINE", "30s"),
            ("ERASURE_RETRY_AFTER", "1h 30m"),
        ])
        .unwrap();
        let erasure = c.erasure.unwrap();
        assert_eq!(erasure.deadline, Duration::from_secs(30));
        assert_eq!(erasure.retry_after, Duration::from_secs(5400));
        for (var, value) in [
            ("ERASURE_PARTICIPANTS", "Billing"),
            ("ERASURE_PARTICIPANTS", "billing,billing"),
            ("ERASURE_PARTICIPANTS", "bill ing"),
            ("ERASURE_DEADLINE", "30"),
            ("ERASURE_DEADLINE", "0s"),
            ("ERASURE_RETRY_AFTER", "soon"),
        ] {
            let error =
                config(&[(var, value), redis, ("ERASURE_PARTICIPANTS", "billing")]).unwrap_err();
            assert_eq!(error.var, var, "{value}");
        }
        assert!(config(&[("ERASURE_PARTICIPANTS", " , ")])
            .unwrap()
            .erasure
            .is_none());
    }

    #[test]
    fn a_read_replica_is_of_the_primarys_engine() {
        let primary = ("DATABASE_URL", "postgres://u:p@primary/db");
        let c = config(&[primary, ("DATABASE_READ_URL", "postgres://u:p@replica/db")]).unwrap();
        assert_eq!(
            c.database.read_url.as_deref(),
            Some("postgres://u:p@replica/db")
        );
        assert_eq!(c.database.read_max_lag, Duration::from_secs(1));
        assert!(!format!("{:?}", c.database).contains("replica/db"));
        let mysql = config(&[
            ("DATABASE_URL", "mysql://root@primary/db"),
            ("DATABASE_READ_URL", "mysql://root@replica/db"),
        ])
        .unwrap();
        assert_eq!(
            mysql.database.read_url.as_deref(),
            Some("mysql://root@replica/db")
        );
        for vars in [
            vec![("DATABASE_READ_URL", "postgres://u:p@replica/db")],
            vec![
                ("DATABASE_URL", "mysql://root@primary/db"),
                ("DATABASE_READ_URL", "postgres://u:p@replica/db"),
            ],
            vec![primary, ("DATABASE_READ_URL", "mysql://root@replica/db")],
            vec![primary, ("DATABASE_READ_URL", "redis://replica")],
        ] {
            assert_eq!(
                config(&vars).unwrap_err().var,
                "DATABASE_READ_URL",
                "{vars:?}"
            );
        }
        assert!(config(&[]).unwrap().database.read_url.is_none());
    }

    #[test]
    fn nats_settings_are_checked() {
        assert!(config(&[]).unwrap().nats.is_none());
        let c = config(&[("NATS_URL", "nats://a:4222, tls://b:4223")]).unwrap();
        let nats = c.nats.unwrap();
        assert_eq!(nats.subject_prefix, "customer-service.events");
        assert_eq!(nats.stream, "CUSTOMER_EVENTS");
        assert_eq!(nats.duplicate_window, Duration::from_secs(600));
        assert_eq!(nats.max_age, Duration::from_secs(720 * 3600));
        for (var, value) in [
            ("NATS_URL", "http://a:4222"),
            ("NATS_URL", "nats://a:4222,redis://b"),
            ("NATS_DUPLICATE_WINDOW", "30s"),
            ("NATS_STREAM", "CUSTOMER.EVENTS"),
            ("NATS_SUBJECT_PREFIX", "events.>"),
            ("NATS_STREAM_REPLICAS", "0"),
        ] {
            let error = config(&[(var, value), ("NATS_URL", "nats://a:4222")]).unwrap_err();
            assert_eq!(error.var, var, "{value}");
        }
        let error = config(&[
            ("NATS_URL", "nats://u:secret@a:4222"),
            ("NATS_DUPLICATE_WINDOW", "5s"),
        ])
        .unwrap_err();
        assert!(error.message.contains("at least 1m"), "{}", error.message);
        assert!(!format!(
            "{:?}",
            config(&[("NATS_URL", "nats://u:secret@a")]).unwrap()
        )
        .contains("secret"));
    }

    #[test]
    fn redis_is_off_unless_configured() {
        assert!(config(&[]).unwrap().redis.is_none());
    }

    #[test]
    fn redis_can_be_configured_the_original_way() {
        let c = config(&[("REDIS_HOST", "cache"), ("REDIS_PASSWORD", "p@ss:w/rd")]).unwrap();
        let redis = c.redis.unwrap();
        assert_eq!(redis.url, "redis://:p%40ss%3Aw%2Frd@cache:6379");
        assert_eq!(redis.key_prefix, "customer");
        assert_eq!(redis.channel, "customer-service-events");
        assert_eq!(redis.stream, "customer-service-events:stream");
        assert_eq!(redis.ttl_secs, 86400);
        assert!(!format!("{redis:?}").contains("p%40ss"));
    }

    #[test]
    fn redis_url_wins_and_is_checked() {
        let c = config(&[
            ("REDIS_URL", "redis://127.0.0.1:6380/2"),
            ("REDIS_HOST", "x"),
        ])
        .unwrap();
        assert_eq!(c.redis.unwrap().url, "redis://127.0.0.1:6380/2");
        assert_eq!(
            config(&[("REDIS_URL", "http://x")]).unwrap_err().var,
            "REDIS_URL"
        );
        assert_eq!(
            config(&[("REDIS_HOST", "x"), ("REDIS_PORT", "-1")])
                .unwrap_err()
                .var,
            "REDIS_PORT"
        );
    }

    #[test]
    fn the_database_url_is_redacted_in_debug_output() {
        let c = config(&[("DATABASE_URL", "postgres://u:secret@h/db")]).unwrap();
        let shown = format!("{:?}", c.database);
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn an_hs256_secret_shorter_than_32_bytes_is_refused() {
        let error = config(&[("AUTH_JWT_SECRET", &"s".repeat(31))]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("AUTH_JWT_SECRET"), "{message}");
        assert!(message.contains("at least 32 bytes"), "{message}");
        assert!(
            !message.contains(&"s".repeat(31)),
            "shows the secret: {message}"
        );
        let c = config(&[("AUTH_JWT_SECRET", &"s".repeat(32))]).unwrap();
        assert!(matches!(c.auth.key, Some(JwtKeySource::Secret(_))));
    }

    #[test]
    fn otlp_export_is_off_unless_an_endpoint_is_set() {
        assert!(config(&[]).unwrap().log.otlp.is_none());
        let disabled = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(disabled.unwrap().log.otlp.is_none());
    }

    #[test]
    fn otlp_endpoints_headers_and_samplers_follow_the_sdk_variables() {
        let otlp = |vars: &[(&str, &str)]| config(vars).map(|c| c.log.otlp.unwrap());
        let c = otlp(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).unwrap();
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.service_name, "customer-service");
        assert_eq!(
            c.sampler,
            Sampler {
                parent_based: true,
                ratio: 1.0
            }
        );
        let c = otlp(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector/otlp/")]).unwrap();
        assert_eq!(c.endpoint, "https://collector/otlp/v1/traces");
        let c = otlp(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.protocol),
            ("https://collector:4317", OtlpProtocol::Grpc)
        );
        let c = otlp(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://[::1]:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%3Dcret, x-tenant = blue",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,region=eu%2Dwest",
            ),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_SERVICE_NAME", "customers-eu"),
        ])
        .unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.protocol),
            ("http://[::1]:9999/custom", OtlpProtocol::HttpJson)
        );
        assert_eq!(
            c.headers,
            [
                ("api-key".into(), "s=cret".into()),
                ("x-tenant".into(), "blue".into())
            ]
        );
        assert_eq!(
            c.resource_attributes,
            [
                ("deployment.environment".into(), "prod".into()),
                ("region".into(), "eu-west".into())
            ]
        );
        assert_eq!(
            c.sampler,
            Sampler {
                parent_based: false,
                ratio: 0.25
            }
        );
        assert_eq!(c.service_name, "customers-eu");
        assert!(
            !format!("{c:?}").contains("s=cret"),
            "header values are never shown"
        );

        for (vars, var) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://c:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:p@c")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                ],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_RESOURCE_ATTRIBUTES", "=x"),
                ],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_TRACES_SAMPLER", "sometimes"),
                ],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
        ] {
            assert_eq!(config(&vars).unwrap_err().var, var, "{vars:?}");
        }
    }
}
