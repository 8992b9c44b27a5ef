//! [`App`]: connect, migrate, bind, wire the relay — the one start-up path shared by `main`
//! and the tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::application::{
    CustomerStore, ErasureSaga, EventLog, SagaStore, Sagas, StoreError, SystemClock,
};
use crate::config::{Config, RelayConfig};
use crate::domain::saga::RetryPolicy;
use crate::http::{
    self, AppState, Authenticator, HttpMetrics, RateLimiter, RouterOptions, SagaContext,
    ServerLimits, Services,
};
use crate::orchestrator::{Orchestrator, OrchestratorStatus};
use crate::outbox::{self, Leadership, LeaseKeeper, Relay, RelayTiming};
use crate::sinks::{
    EventSink, NatsReplies, NatsSink, RedisReplies, RedisSettings, RedisSink, ReplySource,
};
use crate::store::{
    describe_url, sqlite_folder_problem, Backend, DatabaseLease, SqlStore, StoreOptions,
};
use crate::workers::{until_stopped, Lifetime, WorkerHealth, Workers, FAILURE_DRAIN};

/// A built application: database connected and migrated, listener bound, relay wired.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    store: Arc<SqlStore>,
    relay: Arc<Relay>,
    /// The relay's watermark moves: wakes the read models.
    settled: watch::Receiver<i64>,
    relay_config: RelayConfig,
    /// Whether this process keeps the read models (`READ_MODELS_ENABLED`).
    read_models: bool,
    /// The app's registry (the read models record their apply delays in it).
    metrics: Arc<HttpMetrics>,
    server_limits: ServerLimits,
    /// `PROBE_PORT`'s listener and its router (probes, health and metrics only).
    probes: Option<(TcpListener, axum::Router)>,
    database_url: String,
    /// The Redis sink and where it points, checked once at start-up.
    redis: Option<(Arc<RedisSink>, String)>,
    /// The NATS sink, checked once at start-up.
    nats: Option<Arc<NatsSink>>,
    /// Set to true to stop everything; created at build so the router can watch it.
    stop: Arc<watch::Sender<bool>>,
    /// The sagas this configuration runs (none without `ERASURE_PARTICIPANTS`).
    sagas: SagaContext,
    /// Where their answers arrive (Redis, NATS); none without any saga.
    replies: Vec<Arc<dyn ReplySource>>,
    /// The live tail of the log for the SSE streams; its worker runs from `run_until_stopped`.
    live: Arc<crate::http::LiveLog>,
    /// Which worker failed (read by `/readyz`).
    worker_health: Arc<WorkerHealth>,
    /// Test hook: see `Config::fail_worker`.
    fail_worker: Option<String>,
}

/// The sagas `config` asks for: the erasure saga when `ERASURE_PARTICIPANTS` is set.
pub fn saga_definitions(config: &Config) -> Sagas {
    let Some(erasure) = &config.erasure else {
        return Sagas::default();
    };
    Sagas::new(vec![Arc::new(ErasureSaga {
        participants: erasure.participants.clone(),
        deadline: erasure.deadline,
        policy: RetryPolicy {
            first: erasure.retry_after,
            max: erasure.retry_after.max(MAX_REMINDER_GAP),
        },
    })])
}

/// Reminders to a silent participant are at most a day apart (unless the first is later).
const MAX_REMINDER_GAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How long start-up waits for Redis to answer its first `PING` before it warns.
const REDIS_START_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a Redis URL points, without credentials: `host:port`.
fn redis_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

/// Connects to the configured database (without migrating); a missing SQLite file is
/// created. For `serve`, `migrate` and `seed`.
pub async fn connect_store(config: &Config) -> anyhow::Result<SqlStore> {
    SqlStore::connect(&store_options(config, true))
        .await
        .map_err(|error| with_folder_problem(error, &config.database.url))
        .with_context(|| {
            format!(
                "connecting to {} (DATABASE_URL)",
                describe_url(&config.database.url)
            )
        })
}

/// Connects to the configured database, which must exist already: for the tools that read
/// the event log, which must not leave an empty database behind.
pub async fn connect_existing_store(config: &Config) -> anyhow::Result<SqlStore> {
    SqlStore::connect(&store_options(config, false))
        .await
        .with_context(|| {
            format!(
                "opening {} (DATABASE_URL); this command needs an existing database: set \
                 DATABASE_URL, or run `customer-service migrate` first",
                describe_url(&config.database.url)
            )
        })
}

/// `error`, with what is wrong with a SQLite file's folder first when something is (it
/// says more than SQLite's "unable to open database file").
fn with_folder_problem(error: StoreError, url: &str) -> anyhow::Error {
    if let Some(problem) = sqlite_folder_problem(url) {
        return anyhow::Error::new(error).context(problem);
    }
    match database_says(&error, url) {
        Some(said) => anyhow::anyhow!(said),
        None => anyhow::Error::new(error),
    }
}

/// What the database server answered, as a user reads it: its message alone (sqlx adds
/// "error returned from database:" and PostgreSQL's own source line, "at line 768"), and for
/// a database that does not exist, how to create it.
fn database_says(error: &StoreError, url: &str) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let database = std::iter::from_fn(|| {
        let current = source?;
        source = current.source();
        Some(current)
    })
    .find_map(|e| e.downcast_ref::<sqlx::Error>())?
    .as_database_error()?;
    let message = database.message();
    let name = crate::store::database_name(url);
    let hint = match database.code().as_deref() {
        // PostgreSQL's invalid_catalog_name, MySQL's ER_BAD_DB_ERROR.
        Some("3D000") => {
            format!("; create it first: psql -c 'create database \"{name}\"' (or createdb {name})")
        }
        Some("1049") | Some("42000") if message.starts_with("Unknown database") => {
            format!("; create it first: mysql -e 'create database `{name}`'")
        }
        _ => String::new(),
    };
    Some(format!("{message}{hint}"))
}

fn store_options(config: &Config, create_if_missing: bool) -> StoreOptions {
    StoreOptions {
        url: config.database.url.clone(),
        max_connections: config.database.max_connections,
        acquire_timeout: config.database.acquire_timeout,
        create_if_missing,
    }
}

impl App {
    /// Connects the store, applies pending migrations, binds `HOST:PORT` (port 0: any free
    /// port) and builds the relay with its sink: Redis, when configured.
    pub async fn build(config: &Config) -> anyhow::Result<App> {
        let started_at = Instant::now();
        let mut store = connect_store(config).await?;
        if let Some(url) = &config.database.read_url {
            let options = StoreOptions {
                url: url.clone(),
                create_if_missing: false,
                ..store_options(config, false)
            };
            store = store
                .with_read_replica(&options, config.database.read_max_lag)
                .await
                .with_context(|| {
                    format!(
                        "connecting to the read replica {} (DATABASE_READ_URL)",
                        describe_url(url)
                    )
                })?;
        }
        let store = Arc::new(store);
        let applied = store
            .migrate()
            .await
            .context("applying database migrations")?;
        if applied > 0 {
            tracing::info!(migrations = applied, "applied the database migrations");
        }
        // The customer count, once, before the first request: every list page needs it, and
        // at a million customers each of the first concurrent pages counted it itself (p99
        // 768 ms over the first 10 s on PostgreSQL, issue #29). From here on the count cache
        // keeps it (`store/count_cache.rs`).
        let counting = Instant::now();
        match store.count().await {
            Ok(customers) => tracing::info!(
                customers,
                elapsed_ms = counting.elapsed().as_millis() as u64,
                "counted the customers"
            ),
            Err(error) => tracing::warn!(%error, "counting the customers at start failed"),
        }

        let redis = match &config.redis {
            Some(redis) => Some(Arc::new(RedisSink::from_config(
                redis,
                RedisSettings {
                    key_prefix: redis.key_prefix.clone(),
                    channel: redis.channel.clone(),
                    stream: redis.stream.clone(),
                    ttl_secs: redis.ttl_secs,
                    stream_max_len: redis.stream_max_len,
                },
            )?)),
            None => None,
        };
        let redis_check = redis
            .clone()
            .zip(config.redis.as_ref().map(|r| redis_host(&r.url)));
        let nats = config
            .nats
            .clone()
            .map(|nats| Arc::new(NatsSink::new(nats)));
        let mut sinks: Vec<Arc<dyn EventSink>> = Vec::new();
        if let Some(redis) = &redis {
            sinks.push(redis.clone());
        }
        if let Some(nats) = &nats {
            sinks.push(nats.clone());
        }
        let definitions = saga_definitions(config);
        let mut replies: Vec<Arc<dyn ReplySource>> = Vec::new();
        if let (Some(redis), false) = (&config.redis, definitions.is_empty()) {
            let streams = definitions
                .definitions()
                .map(|d| format!("{}:{}", redis.stream, d.reply_suffix()))
                .collect();
            replies.push(Arc::new(RedisReplies::new(
                crate::sinks::target(redis)?,
                streams,
            )));
        }
        if let (Some(nats), false) = (&nats, definitions.is_empty()) {
            let suffixes = definitions
                .definitions()
                .map(|d| d.reply_suffix())
                .collect();
            replies.push(Arc::new(NatsReplies::new(nats.clone(), suffixes)));
        }
        let sagas = SagaContext {
            store: store.clone() as Arc<dyn SagaStore>,
            definitions,
            status: Arc::new(OrchestratorStatus::default()),
        };
        let log: Arc<dyn EventLog> = store.clone();
        let relay = Arc::new(
            Relay::new(log.clone(), sinks, config.relay.batch_size)
                .with_gap_grace(config.relay.gap_grace),
        );

        let address = SocketAddr::new(config.http.host, config.http.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address} (PORT / HOST)"))?;
        let (stop, stopped) = watch::channel(false);
        let metrics: Arc<HttpMetrics> = Arc::default();
        let live = crate::http::LiveLog::new(log.clone());
        let worker_health: Arc<WorkerHealth> = Arc::default();
        let state = AppState::new(Services {
            store: store.clone(),
            models: store.clone(),
            live: live.clone(),
            workers: worker_health.clone(),
            events: log,
            clock: Arc::new(SystemClock),
            started_at,
            relay: relay.status(),
            redis,
            nats: nats.clone(),
            metrics: metrics.clone(),
            idempotency_ttl: config.http.idempotency_ttl,
            outbox_degraded_after: config.relay.degraded_after,
            shutdown: stopped,
            sagas: sagas.clone(),
            sse: Arc::new(http::SseClients::new(
                config.http.sse_max_clients,
                config.http.sse_max_clients_per_address,
            )),
        });
        let authenticator = Authenticator::from_config(&config.auth)?.map(Arc::new);
        if authenticator.is_none() {
            tracing::warn!(
                "authentication is off: anyone who reaches this service can change customers \
                 (set AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY_FILE)"
            );
        }
        let options = RouterOptions {
            cors_origins: config.http.cors_origins.clone(),
            request_timeout: config.http.request_timeout,
            body_limit_bytes: config.http.body_limit_bytes,
            authenticator,
            rate_limiter: RateLimiter::new(
                config.http.write_rate_per_minute,
                config.http.write_burst,
            )
            .map(Arc::new),
        };
        let probes = match config.http.probe_port {
            None => None,
            Some(port) => {
                let address = SocketAddr::new(config.http.host, port);
                let listener = TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding {address} (PROBE_PORT / HOST)"))?;
                Some((listener, http::probe_router(state.clone(), &options)))
            }
        };
        Ok(App {
            listener,
            router: http::router(state, &options),
            store,
            settled: relay.settled(),
            relay,
            relay_config: config.relay.clone(),
            read_models: config.read_models,
            metrics,
            server_limits: ServerLimits {
                header_timeout: config.http.header_timeout,
                idle_timeout: config.http.idle_timeout,
                send_timeout: config.http.send_timeout,
                max_connections: config.http.max_connections,
            },
            probes,
            database_url: config.database.url.clone(),
            redis: redis_check,
            nats,
            stop: Arc::new(stop),
            sagas,
            replies,
            live,
            worker_health,
            fail_worker: config.fail_worker.clone(),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Where a browser on this machine reaches the service: `http://localhost:PORT` when
    /// it listens on every address (or loopback), else the address it listens on.
    fn base_url(&self) -> String {
        match self.listener.local_addr() {
            Ok(address) if address.ip().is_unspecified() || address.ip().is_loopback() => {
                format!("http://localhost:{}", address.port())
            }
            Ok(address) => format!("http://{address}"),
            Err(_) => format!("http://localhost:{}", self.port()),
        }
    }

    /// The store, for tests and CLI commands that inspect the event log.
    pub fn store(&self) -> Arc<SqlStore> {
        self.store.clone()
    }

    /// The relay, so tests can drive [`Relay::step`] themselves (with `RELAY_ENABLED=false`).
    pub fn relay(&self) -> Arc<Relay> {
        self.relay.clone()
    }

    /// Serves (and relays, unless disabled) until `shutdown` completes; then stops accepting
    /// connections, lets in-flight requests finish (each bounded by the request timeout),
    /// stops the relay after its current batch and closes the database pools.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let base = self.base_url();
        tracing::info!(
            port = self.port(),
            "listening on {base}: dashboard {base}/dashboard, API docs {base}/api/docs"
        );
        let stop = self.stop.clone();
        let stopped = stop.subscribe();
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = trigger.send(true);
        });

        let wake = self.store.commit_signal();
        let mut workers = Workers::new(self.worker_health.clone(), self.fail_worker.clone());
        workers.spawn(
            "live log",
            Lifetime::UntilStop,
            self.live.clone().run(self.settled.clone(), stopped.clone()),
        );
        if self.store.has_replica() {
            workers.spawn(
                "replica watch",
                Lifetime::UntilStop,
                self.store.clone().watch_replica(stopped.clone()),
            );
        } else {
            tracing::debug!("no replica configured (DATABASE_READ_URL): no replica watch");
        }
        // The e-mail keys of customers from before the key (store/email_keys.rs): in the
        // background, so that start-up never waits for them.
        let store = self.store.clone();
        let keyed = async move {
            if let Err(error) = store.key_emails().await {
                tracing::warn!(%error, "writing the e-mail keys of earlier customers failed; the next start tries again");
            }
        };
        workers.spawn(
            "e-mail keys",
            Lifetime::MayEnd,
            until_stopped(keyed, stopped.clone()),
        );
        if self.read_models {
            let metrics = self.metrics.clone();
            workers.spawn(
                "read models",
                Lifetime::UntilStop,
                self.store.clone().run_read_models(
                    self.settled.clone(),
                    stopped.clone(),
                    Arc::new(move |batch| metrics.observe_projection(batch)),
                ),
            );
        } else {
            tracing::debug!("read models kept elsewhere (READ_MODELS_ENABLED=false)");
        }
        if let Some((redis, host)) = self.redis.clone() {
            // Said at once, rather than by the relay's retries later: writes still succeed,
            // their events wait in the database.
            let probe = async move {
                let answered = tokio::time::timeout(REDIS_START_CHECK, redis.ping()).await;
                if !matches!(answered, Ok(Ok(()))) {
                    tracing::warn!(
                        "Redis at {host} does not answer (REDIS_URL): events wait in the \
                         database and are published when it does; health says degraded until then"
                    );
                }
            };
            let probe = until_stopped(probe, stopped.clone());
            workers.spawn("Redis start-up probe", Lifetime::MayEnd, probe);
        }
        if let Some(nats) = self.nats.clone() {
            let probe = async move {
                let answered = tokio::time::timeout(REDIS_START_CHECK * 3, nats.ping()).await;
                if !matches!(answered, Ok(Ok(()))) {
                    tracing::warn!(
                        "NATS at {} does not answer (NATS_URL), or its JetStream stream {} \
                         cannot be created: events wait in the database and are published \
                         when it does; health says degraded until then",
                        nats.address(),
                        nats.config().stream
                    );
                }
            };
            let probe = until_stopped(probe, stopped.clone());
            workers.spawn("NATS start-up probe", Lifetime::MayEnd, probe);
        }
        if self.relay_config.enabled {
            let timing = RelayTiming {
                poll_interval: self.relay_config.poll_interval,
                ..RelayTiming::default()
            };
            let leadership = match self.store.backend() {
                backend @ (Backend::Postgres | Backend::MySql) => {
                    let keeper = Arc::new(LeaseKeeper::new(
                        Arc::new(DatabaseLease::new(backend, self.database_url.clone())),
                        self.relay_config.lease_ttl,
                        timing.lease_retry,
                    ));
                    workers.spawn(
                        "relay lease",
                        Lifetime::UntilStop,
                        keeper.clone().run(stopped.clone()),
                    );
                    Leadership::Lease(keeper)
                }
                Backend::Sqlite => Leadership::Sole,
            };
            if self.replies.is_empty() {
                tracing::debug!("no saga configured (ERASURE_PARTICIPANTS): no orchestrator");
            } else {
                let orchestrator = Orchestrator {
                    store: self.sagas.store.clone(),
                    sagas: self.sagas.definitions.clone(),
                    replies: self.replies.clone(),
                    clock: Arc::new(SystemClock),
                    status: self.sagas.status.clone(),
                };
                workers.spawn(
                    "orchestrator",
                    Lifetime::UntilStop,
                    orchestrator.run(leadership.clone(), stopped.clone()),
                );
            }
            workers.spawn(
                "relay",
                Lifetime::UntilStop,
                outbox::run(
                    self.relay.clone(),
                    leadership,
                    wake,
                    timing,
                    stopped.clone(),
                ),
            );
        } else {
            tracing::debug!("relay off (RELAY_ENABLED=false): no relay, lease or orchestrator");
        }
        let supervisor = tokio::spawn(workers.supervise(stop.clone(), FAILURE_DRAIN));

        let main = http::serve(
            self.listener,
            self.router,
            self.server_limits,
            stopped.clone(),
        );
        match self.probes {
            None => main.await,
            Some((listener, router)) => {
                let limits = ServerLimits {
                    max_connections: http::PROBE_CONNECTIONS,
                    ..self.server_limits
                };
                tokio::join!(main, http::serve(listener, router, limits, stopped.clone()));
            }
        }
        stop.send_replace(true);
        let supervised = supervisor.await;
        self.store.close().await;
        match supervised {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failed)) => Err(failed.into()),
            Err(error) => Err(anyhow::anyhow!("the workers' supervisor failed: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redis_host;

    #[test]
    fn a_redis_url_is_shown_as_its_host_without_credentials() {
        assert_eq!(
            redis_host("redis://:secret@cache.example:6380/2"),
            "cache.example:6380"
        );
        assert_eq!(redis_host("rediss://user:pw@h:6379"), "h:6379");
        assert_eq!(redis_host("redis://127.0.0.1:6379"), "127.0.0.1:6379");
    }
}
