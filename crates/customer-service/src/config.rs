//! The one typed [`Config`], read once from the environment at start-up. Nothing else in
//! the service reads environment variables. Each field documents its variable and default;
//! [`ENVIRONMENT_HELP`] repeats them for `--help`.

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
    pub relay: RelayConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
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
    /// `AUTH_PROTECT_READS` (default `false`): reads (and `/metrics`) need a token too.
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
    /// `REDIS_HOST`, `REDIS_PORT` (default `6379`) and `REDIS_PASSWORD`.
    pub url: String,
    /// `REDIS_KEY_PREFIX` (default `customer`): keys are `<prefix>:events:<type>:<id>`.
    pub key_prefix: String,
    /// `EVENT_CHANNEL` (default `customer-service-events`): the Pub/Sub channel.
    pub channel: String,
    /// `EVENT_STREAM` (default `customer-service-events:stream`).
    pub stream: String,
    /// `EVENT_TTL_SECONDS` (default `86400`): lifetime of the per-event keys.
    pub ttl_secs: u64,
    /// `EVENT_STREAM_MAXLEN` (default `1000000`): approximate cap of the stream.
    pub stream_max_len: u64,
    /// `REDIS_CA_FILE`: a PEM file of the CA that signed the server's certificate, for a
    /// `rediss://` URL to a server with a private CA; without it, the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
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
    /// `RELAY_ENABLED` (default `true`): run the relay that publishes the event log. Off only
    /// for tests and maintenance: events then stay pending.
    pub enabled: bool,
    /// `RELAY_BATCH_SIZE` (default `1000`): events per publish round trip. Larger drains a
    /// backlog faster (measured: 500 → ~25k, 1000 → ~31k, 2000 → ~40k events/s) but holds Redis
    /// longer inside one script call.
    pub batch_size: i64,
    /// `RELAY_POLL_INTERVAL_MS` (default `1000`): the fallback when no wake-up arrives.
    pub poll_interval: Duration,
    /// `RELAY_GAP_GRACE_MS` (default `5000`): how long a missing log position holds back
    /// cursor readers before it counts as rolled back (see `outbox/watermark.rs`).
    pub gap_grace: Duration,
    /// `RELAY_LEASE_TTL_MS` (default `3000`): how long the relay leader's lease lasts without
    /// a renewal: a frozen or cut-off leader is replaced this long after its last one.
    pub lease_ttl: Duration,
    /// `OUTBOX_DEGRADED_AFTER_SECS` (default `10`): health turns `degraded` on every instance
    /// once the oldest unpublished event is older than this.
    pub degraded_after: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `HOST` (default `0.0.0.0`): the address to listen on.
    pub host: IpAddr,
    /// `PORT` (default `3004`, the original's port). `0` picks a free port (tests).
    pub port: u16,
    /// `FRONTEND_URL`: origins allowed by CORS, comma-separated. Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// `REQUEST_TIMEOUT_SECS` (default `30`): a request still running after this gets a 503.
    pub request_timeout: Duration,
    /// `BODY_LIMIT_BYTES` (default `65536`): larger request bodies get a 413.
    pub body_limit_bytes: usize,
    /// `RATE_LIMIT_WRITES_PER_MINUTE` (default `0`: no limit): sustained writes per client
    /// (the token's subject, else the IP address); more get 429. Off by default: behind a
    /// gateway every client has the gateway's address, and a drop-in replacement must not
    /// start refusing the writes the original accepted.
    pub write_rate_per_minute: u32,
    /// `RATE_LIMIT_WRITE_BURST` (default `60`): writes a client may send at once.
    pub write_burst: u32,
    /// `IDEMPOTENCY_TTL_HOURS` (default `24`): how long a POST's `Idempotency-Key` and its
    /// answer are kept.
    pub idempotency_ttl: Duration,
    /// `HTTP_HEADER_TIMEOUT_SECS` (default `10`): a connection that does not complete a
    /// request head this long after it began (or after connecting) is closed.
    pub header_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_SECS` (default `60`): a keep-alive connection idle this long after
    /// its last response is closed. Requests in flight, SSE streams included, never are.
    pub idle_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS` (default `10000`): open connections at most; more wait in the
    /// listen backlog. The soft open-file limit is raised to the hard one at start.
    pub max_connections: usize,
}

#[derive(Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL` (default `sqlite://customer-service.db`, created if missing by `serve`,
    /// `migrate` and `seed`; the `events` tools need an existing one), or a
    /// `postgres://user:password@host:port/database` URL.
    pub url: String,
    /// `DATABASE_POOL_SIZE` (default `10`): connections in the pool (SQLite: readers; it
    /// always has one writer connection besides).
    pub max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_MS` (default `3000`): how long a request waits for a
    /// connection before it gets a 503 while the database is down or saturated.
    pub acquire_timeout: Duration,
}

/// The URL may carry a password: show only its scheme.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.url.split_once(':').map_or("?", |(s, _)| s);
        f.debug_struct("DatabaseConfig")
            .field("url", &format_args!("{scheme}://<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `LOG_FORMAT` (`pretty` default, or `json`).
    pub format: LogFormat,
    /// `RUST_LOG` (default `info`): a tracing filter, e.g. `info,sqlx=warn`.
    pub filter: String,
    /// Trace export, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set.
    pub otlp: Option<OtlpConfig>,
}

/// Where and what to export as OTLP traces (OTLP/HTTP with JSON bodies), from the
/// OpenTelemetry SDK's standard variables.
#[derive(Clone)]
pub struct OtlpConfig {
    /// `host:port` of the collector.
    pub authority: String,
    /// The request path: `<endpoint path>/v1/traces`, or the traces endpoint's own path.
    pub path: String,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,…`, values percent-decoded), sent with
    /// every export (often a collector's API key).
    pub headers: Vec<(String, String)>,
    /// `OTEL_SERVICE_NAME` (default `customer-service`).
    pub service_name: String,
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: Sampler,
}

/// Header values may be credentials: never shown.
impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OtlpConfig")
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("header_names", &header_names)
            .field("service_name", &self.service_name)
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

/// A variable with a value the service cannot use. Names the variable, never echoes a value
/// that might be secret.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

/// The `--help` section listing every variable.
pub const ENVIRONMENT_HELP: &str = "\
Environment variables:
  PORT                         HTTP port [default: 3004]
  HOST                         address to listen on [default: 0.0.0.0]
  DATABASE_URL                 sqlite://PATH (created if missing) or postgres://USER:PASSWORD@HOST:PORT/DB
                               [default: sqlite://customer-service.db]
  DATABASE_POOL_SIZE           database connections [default: 10]
  DATABASE_ACQUIRE_TIMEOUT_MS  wait for a connection before answering 503 [default: 3000]
  FRONTEND_URL                 CORS origin(s), comma-separated [default: none]
  REQUEST_TIMEOUT_SECS         per-request time limit [default: 30]
  BODY_LIMIT_BYTES             largest accepted request body [default: 65536]
  RATE_LIMIT_WRITES_PER_MINUTE writes per client (token subject, else IP) and minute [default: 0: no limit]
  RATE_LIMIT_WRITE_BURST       writes a client may send at once [default: 60]
  IDEMPOTENCY_TTL_HOURS        how long an Idempotency-Key's answer is kept [default: 24]
  HTTP_HEADER_TIMEOUT_SECS     close a connection whose request head is not complete by then [default: 10]
  HTTP_IDLE_TIMEOUT_SECS       close a keep-alive connection idle this long (never an SSE stream) [default: 60]
  HTTP_MAX_CONNECTIONS         open connections at most; more wait in the backlog [default: 10000]
  REDIS_URL                    redis[s]://[:PASSWORD@]HOST:PORT[/DB] (rediss: TLS); or REDIS_HOST, REDIS_PORT, REDIS_PASSWORD
                               [default: none: events go to the log and GET /api/v1/events/stream only]
  REDIS_CA_FILE                PEM CA certificate for rediss:// to a private CA [default: the system's roots]
  REDIS_KEY_PREFIX             prefix of the 24 h event keys [default: customer]
  EVENT_CHANNEL                Redis Pub/Sub channel [default: customer-service-events]
  EVENT_STREAM                 Redis stream [default: customer-service-events:stream]
  EVENT_TTL_SECONDS            lifetime of the event keys [default: 86400]
  EVENT_STREAM_MAXLEN          approximate cap of the stream [default: 1000000]
  RELAY_ENABLED                publish the event log [default: true]
  RELAY_BATCH_SIZE             events per publish round trip [default: 1000]
  RELAY_POLL_INTERVAL_MS       relay polling fallback [default: 1000]
  RELAY_GAP_GRACE_MS           how long a missing log position holds readers back [default: 5000]
  RELAY_LEASE_TTL_MS           a relay leader not renewing its lease this long is replaced [default: 3000]
  OUTBOX_DEGRADED_AFTER_SECS   health is degraded while the oldest unpublished event is older [default: 10]
  AUTH_JWT_SECRET              HS256 secret, at least 32 bytes: writes need a bearer token [default: none: no authentication]
  AUTH_JWT_PUBLIC_KEY_FILE     PEM RSA or EC public key (RS256 / ES256), instead of the secret
  AUTH_JWT_ISSUER              required token issuer (iss) [default: any]
  AUTH_JWT_AUDIENCE            required token audience (aud) [default: any]
  AUTH_PROTECT_READS           reads and /metrics need a token too [default: false]
  LOG_FORMAT                   pretty | json [default: pretty]
  RUST_LOG                     log filter [default: info]
  OTEL_EXPORTER_OTLP_ENDPOINT  http://HOST:PORT of an OTLP collector: export request traces
                               (OTLP/HTTP, JSON) to its /v1/traces [default: none: no export]
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  the full traces URL instead
  OTEL_EXPORTER_OTLP_HEADERS   key=value,… sent with every export
  OTEL_SERVICE_NAME            service.name of the traces [default: customer-service]
  OTEL_TRACES_SAMPLER          [parentbased_]always_on|always_off|traceidratio [default: parentbased_always_on]
  OTEL_TRACES_SAMPLER_ARG      the ratio of traceidratio, 0 to 1 [default: 1]
  OTEL_SDK_DISABLED            true: no export even with an endpoint [default: false]";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = var("DATABASE_URL").unwrap_or_else(|| "sqlite://customer-service.db".to_owned());
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                var: "DATABASE_URL",
                reason: "must start with sqlite:, postgres:// or postgresql://".to_owned(),
            });
        }
        Ok(Config {
            http: HttpConfig {
                host: parse(&var, "HOST", "0.0.0.0")?,
                port: parse(&var, "PORT", "3004")?,
                cors_origins: var("FRONTEND_URL")
                    .map(|list| {
                        list.split(',')
                            .map(|origin| origin.trim().trim_end_matches('/').to_owned())
                            .filter(|origin| !origin.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                request_timeout: Duration::from_secs(positive(&var, "REQUEST_TIMEOUT_SECS", "30")?),
                body_limit_bytes: positive(&var, "BODY_LIMIT_BYTES", "65536")?,
                write_rate_per_minute: parse(&var, "RATE_LIMIT_WRITES_PER_MINUTE", "0")?,
                write_burst: positive(&var, "RATE_LIMIT_WRITE_BURST", "60")?,
                idempotency_ttl: Duration::from_secs(
                    3600 * positive::<u64>(&var, "IDEMPOTENCY_TTL_HOURS", "24")?,
                ),
                header_timeout: Duration::from_secs(positive(
                    &var,
                    "HTTP_HEADER_TIMEOUT_SECS",
                    "10",
                )?),
                idle_timeout: Duration::from_secs(positive(&var, "HTTP_IDLE_TIMEOUT_SECS", "60")?),
                max_connections: positive(&var, "HTTP_MAX_CONNECTIONS", "10000")?,
            },
            database: DatabaseConfig {
                url,
                max_connections: positive(&var, "DATABASE_POOL_SIZE", "10")?,
                acquire_timeout: Duration::from_millis(positive(
                    &var,
                    "DATABASE_ACQUIRE_TIMEOUT_MS",
                    "3000",
                )?),
            },
            redis: redis_config(&var)?,
            relay: RelayConfig {
                enabled: parse(&var, "RELAY_ENABLED", "true")?,
                batch_size: positive(&var, "RELAY_BATCH_SIZE", "1000")?,
                poll_interval: Duration::from_millis(positive(
                    &var,
                    "RELAY_POLL_INTERVAL_MS",
                    "1000",
                )?),
                gap_grace: Duration::from_millis(positive(&var, "RELAY_GAP_GRACE_MS", "5000")?),
                lease_ttl: Duration::from_millis(positive(&var, "RELAY_LEASE_TTL_MS", "3000")?),
                degraded_after: Duration::from_secs(positive(
                    &var,
                    "OUTBOX_DEGRADED_AFTER_SECS",
                    "10",
                )?),
            },
            auth: auth_config(&var)?,
            log: LogConfig {
                format: match var("LOG_FORMAT")
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("pretty") => LogFormat::Pretty,
                    Some("json") => LogFormat::Json,
                    Some(_) => {
                        return Err(ConfigError {
                            var: "LOG_FORMAT",
                            reason: "must be json or pretty".to_owned(),
                        })
                    }
                },
                filter: var("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
                otlp: otlp_config(&var)?,
            },
        })
    }
}

fn redis_config(
    var: &impl Fn(&'static str) -> Option<String>,
) -> Result<Option<RedisConfig>, ConfigError> {
    let url = match (var("REDIS_URL"), var("REDIS_HOST")) {
        (Some(url), _) => {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError {
                    var: "REDIS_URL",
                    reason: "must start with redis:// or rediss://".to_owned(),
                });
            }
            url
        }
        (None, Some(host)) => {
            let port: u16 = parse(var, "REDIS_PORT", "6379")?;
            let auth = var("REDIS_PASSWORD")
                .map_or_else(String::new, |p| format!(":{}@", percent_encode(&p)));
            format!("redis://{auth}{host}:{port}")
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(RedisConfig {
        url,
        key_prefix: var("REDIS_KEY_PREFIX").unwrap_or_else(|| "customer".to_owned()),
        channel: var("EVENT_CHANNEL").unwrap_or_else(|| "customer-service-events".to_owned()),
        stream: var("EVENT_STREAM").unwrap_or_else(|| "customer-service-events:stream".to_owned()),
        ttl_secs: positive(var, "EVENT_TTL_SECONDS", "86400")?,
        stream_max_len: positive(var, "EVENT_STREAM_MAXLEN", "1000000")?,
        ca_file: var("REDIS_CA_FILE").map(Into::into),
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

fn auth_config(var: &impl Fn(&'static str) -> Option<String>) -> Result<AuthConfig, ConfigError> {
    let key = match (var("AUTH_JWT_SECRET"), var("AUTH_JWT_PUBLIC_KEY_FILE")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError {
                var: "AUTH_JWT_SECRET",
                reason: "set either it or AUTH_JWT_PUBLIC_KEY_FILE, not both".to_owned(),
            })
        }
        (Some(secret), None) if secret.len() < MIN_SECRET_BYTES => {
            return Err(ConfigError {
                var: "AUTH_JWT_SECRET",
                reason: format!(
                    "must be at least {MIN_SECRET_BYTES} bytes (HS256 is only as strong as its \
                     secret), got {}",
                    secret.len()
                ),
            })
        }
        (Some(secret), None) => Some(JwtKeySource::Secret(secret)),
        (None, Some(path)) => Some(JwtKeySource::PublicKeyFile(path.into())),
        (None, None) => None,
    };
    Ok(AuthConfig {
        key,
        issuer: var("AUTH_JWT_ISSUER"),
        audience: var("AUTH_JWT_AUDIENCE"),
        protect_reads: parse(var, "AUTH_PROTECT_READS", "false")?,
    })
}

fn otlp_config(
    var: &impl Fn(&'static str) -> Option<String>,
) -> Result<Option<OtlpConfig>, ConfigError> {
    if parse(var, "OTEL_SDK_DISABLED", "false")? {
        return Ok(None);
    }
    let (name, url, own_path) = match (
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        var("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url, true),
        (None, Some(url)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", url, false),
        (None, None) => return Ok(None),
    };
    let invalid = |var: &'static str, reason: &str| ConfigError {
        var,
        reason: reason.to_owned(),
    };
    if let Some(protocol) = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .filter(|p| p.trim() != "http/json")
    {
        return Err(invalid(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            &format!("{protocol:?} is not supported: this service exports http/json"),
        ));
    }
    let rest = url.trim().strip_prefix("http://").ok_or_else(|| {
        invalid(
            name,
            "must be an http:// URL (https is not supported: export to a collector or \
             agent beside the service, e.g. http://localhost:4318)",
        )
    })?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid(name, "must name a host (without credentials)"));
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let path = path.trim_end_matches('/');
    let path = if own_path {
        format!("/{path}")
    } else if path.is_empty() {
        "/v1/traces".to_owned()
    } else {
        format!("/{path}/v1/traces")
    };
    let headers = match var("OTEL_EXPORTER_OTLP_HEADERS") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .filter(|pair| !pair.trim().is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=')?;
                let key = key.trim();
                let value = percent_decode(value.trim())?;
                let valid = !key.is_empty()
                    && key.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    && value
                        .bytes()
                        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
                valid.then(|| (key.to_owned(), value))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                invalid(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "must be key=value pairs separated by commas (values percent-encoded)",
                )
            })?,
    };
    let ratio = match var("OTEL_TRACES_SAMPLER_ARG") {
        None => 1.0,
        Some(_) => parse::<f64>(var, "OTEL_TRACES_SAMPLER_ARG", "1")?,
    };
    if !(0.0..=1.0).contains(&ratio) {
        return Err(invalid(
            "OTEL_TRACES_SAMPLER_ARG",
            "must be between 0 and 1",
        ));
    }
    let sampler = match var("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => Sampler {
            parent_based: true,
            ratio: 1.0,
        },
        Some("parentbased_always_off") => Sampler {
            parent_based: true,
            ratio: 0.0,
        },
        Some("parentbased_traceidratio") => Sampler {
            parent_based: true,
            ratio,
        },
        Some("always_on") => Sampler {
            parent_based: false,
            ratio: 1.0,
        },
        Some("always_off") => Sampler {
            parent_based: false,
            ratio: 0.0,
        },
        Some("traceidratio") => Sampler {
            parent_based: false,
            ratio,
        },
        Some(_) => {
            return Err(invalid(
                "OTEL_TRACES_SAMPLER",
                "must be always_on, always_off, traceidratio or their parentbased_ forms",
            ))
        }
    };
    Ok(Some(OtlpConfig {
        authority,
        path,
        headers,
        service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "customer-service".to_owned()),
        sampler,
    }))
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

fn parse<T: std::str::FromStr>(
    var: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    let raw = var(name).unwrap_or_else(|| default.to_owned());
    raw.trim().parse().map_err(|e: T::Err| ConfigError {
        var: name,
        reason: format!("{raw:?}: {e}"),
    })
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    var: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    let value: T = parse(var, name, default)?;
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError {
            var: name,
            reason: "must be greater than zero".to_owned(),
        })
    }
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
    fn a_bad_value_names_its_variable() {
        assert_eq!(config(&[("PORT", "http")]).unwrap_err().var, "PORT");
        assert_eq!(config(&[("PORT", "70000")]).unwrap_err().var, "PORT");
        assert_eq!(
            config(&[("LOG_FORMAT", "xml")]).unwrap_err().var,
            "LOG_FORMAT"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "mysql://x")]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            config(&[("DATABASE_POOL_SIZE", "0")]).unwrap_err().var,
            "DATABASE_POOL_SIZE"
        );
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
        assert_eq!(
            (c.authority.as_str(), c.path.as_str()),
            ("collector:4318", "/v1/traces")
        );
        assert_eq!(c.service_name, "customer-service");
        assert_eq!(
            c.sampler,
            Sampler {
                parent_based: true,
                ratio: 1.0
            }
        );
        let c = otlp(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector/otlp/")]).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.path.as_str()),
            ("collector:80", "/otlp/v1/traces")
        );
        let c = otlp(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://[::1]:9999/custom",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%3Dcret, x-tenant = blue",
            ),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_SERVICE_NAME", "customers-eu"),
        ])
        .unwrap();
        assert_eq!(
            (c.authority.as_str(), c.path.as_str()),
            ("[::1]:9999", "/custom")
        );
        assert_eq!(
            c.headers,
            [
                ("api-key".into(), "s=cret".into()),
                ("x-tenant".into(), "blue".into())
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
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:p@c")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
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
