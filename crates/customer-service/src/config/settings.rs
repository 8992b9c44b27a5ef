//! The settings table: every environment variable, once, with its type, default and help.

use super::*;

macro_rules! settings {
    ($( $field:ident: $ty:ty = $var:literal, $default:expr, $help:literal; )*) => {
        /// Every environment variable, typed.
        pub(super) struct Settings { $( pub(super) $field: $ty, )* }

        /// Every environment variable, in `--help` order.
        pub const SETTINGS: &[Setting] = &[$( Setting { var: $var, default: $default, help: $help }, )*];

        impl Settings {
            pub(super) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
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
