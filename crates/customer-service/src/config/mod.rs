//! The one typed [`Config`], read once from the environment at start-up. Nothing else in
//! the service reads environment variables.
//!
//! Every variable is declared once, in the `settings!` table (`settings.rs`): its type (which says what
//! a valid value is), its default and its help line. Reading, defaults, the error for a bad
//! value ("PORT must be a port number between 1 and 65535, got 'abc'") and the `--help`
//! section ([`environment_help`]) all come from that one line.
//!
//! - `sections.rs`: the typed sections ([`HttpConfig`], [`RedisConfig`], …) the rest of the
//!   service reads;
//! - `values.rs`: the value types of the table and how each is parsed;
//! - `settings.rs`: the table itself, and `--help`;
//! - `builders.rs`: the sections built from the table's values, with the checks that span
//!   several variables.

mod builders;
mod sections;
mod settings;
mod values;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

pub use sections::*;
pub use settings::{environment_help, SETTINGS};

use builders::*;
use settings::Settings;
use values::*;

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
