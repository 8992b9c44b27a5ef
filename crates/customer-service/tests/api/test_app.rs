//! `spawn_app`: the application under test, and one method per endpoint.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use customer_service::application::{CustomerStore, EventLog, StoredEvent};
use customer_service::config::{Config, RedisConfig};
use customer_service::domain::CustomerId;
use customer_service::outbox::Relay;
use customer_service::store::SqlStore;
use customer_service::App;
use reqwest::{RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::Connection;
use test_servers::Server;

/// Which database a test runs against: the store's own.
pub use customer_service::store::Backend;

/// Whether a backend's server is there for the tests.
pub trait Available {
    /// Whether this backend's server is there (SQLite needs none); when it is not, the
    /// calling test is recorded as skipped.
    fn available(self) -> bool;
}

impl Available for Backend {
    fn available(self) -> bool {
        match self {
            Backend::Sqlite => true,
            Backend::Postgres => postgres_url().is_some(),
            Backend::MySql => mysql_url().is_some(),
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<SqlStore>,
    pub relay: Arc<Relay>,
    /// Redis names of this test, when it has Redis.
    pub redis: Option<RedisConfig>,
    /// The app's `DATABASE_URL`, for tests that run the binary or SQL beside it.
    pub database_url: String,
    /// Removed on drop (SQLite file and its WAL).
    _dir: Option<TempDir>,
}

/// A directory removed on drop: a test's SQLite database.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs each listed `async fn name(app: TestApp)` once per backend, as `sqlite::name`,
/// `postgres::name` and `mysql::name`, each with a freshly spawned app.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $crate::backend_matrix!($crate::test_app::with_app; $($name),*);
    };
}

/// Like [`on_every_backend`], for tests that build their own app: each listed
/// `async fn name(backend: Backend)` runs once per backend.
#[macro_export]
macro_rules! for_every_backend {
    ($($name:ident),* $(,)?) => {
        $crate::backend_matrix!($crate::test_app::with_backend; $($name),*);
    };
}

/// Runs each listed `async fn name(backend: Backend)` on the backends that several
/// processes share (their relays elect a leader): `shared_postgres::name` and
/// `shared_mysql::name`.
#[macro_export]
macro_rules! for_shared_backends {
    ($($name:ident),* $(,)?) => {
        $crate::backend_module!(shared_postgres, Postgres, $crate::test_app::with_backend; $($name),*);
        $crate::backend_module!(shared_mysql, MySql, $crate::test_app::with_backend; $($name),*);
    };
}

/// The matrix behind both: `sqlite::name`, `postgres::name` and `mysql::name` call
/// `$run(backend, name)`.
#[macro_export]
macro_rules! backend_matrix {
    ($run:path; $($name:ident),*) => {
        $crate::backend_module!(sqlite, Sqlite, $run; $($name),*);
        $crate::backend_module!(postgres, Postgres, $run; $($name),*);
        $crate::backend_module!(mysql, MySql, $run; $($name),*);
    };
}

/// `mod $module` with one test per name on `Backend::$backend`. Where the backend's server
/// cannot be had (not installed, no `TEST_*_URL`) the test is recorded as skipped; an
/// unreachable server named by a `TEST_*_URL` fails it.
#[macro_export]
macro_rules! backend_module {
    ($module:ident, $backend:ident, $run:path; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    use $crate::test_app::Available as _;
                    let backend = $crate::test_app::Backend::$backend;
                    if !backend.available() {
                        return;
                    }
                    $run(backend, super::$name).await
                }
            )*
        }
    };
}

/// Runs `test` against a freshly spawned app on `backend`.
pub async fn with_app<F: std::future::Future<Output = ()>>(
    backend: Backend,
    test: impl FnOnce(TestApp) -> F,
) {
    test(spawn_app(backend).await).await
}

/// Runs `test`, which builds its own app, for `backend`.
pub async fn with_backend<F: std::future::Future<Output = ()>>(
    backend: Backend,
    test: impl FnOnce(Backend) -> F,
) {
    test(backend).await
}

/// The server that per-test PostgreSQL databases are created on: `TEST_DATABASE_URL`, or
/// this run's own throwaway cluster. `None` (the calling test recorded as skipped) where
/// PostgreSQL is not installed.
pub fn postgres_url() -> Option<String> {
    Server::Postgres.url_or_skip()
}

/// The MySQL / MariaDB server that per-test MySQL databases are created on: `TEST_MYSQL_URL`
/// or this run's own throwaway MariaDB, as [`postgres_url`].
pub fn mysql_url() -> Option<String> {
    Server::MariaDb.url_or_skip()
}

/// The Redis server that tests with Redis use (each with its own key prefix and names):
/// `TEST_REDIS_URL` or this run's own `redis-server`, as [`postgres_url`].
pub fn redis_url() -> Option<String> {
    Server::Redis.url_or_skip()
}

/// [`redis_url`] for tests that also run without Redis: nothing is recorded as skipped.
pub fn redis_url_if_any() -> Option<String> {
    Server::Redis.url().ok()
}

/// Redis settings with names no other test uses.
pub fn unique_redis(url: String) -> RedisConfig {
    let prefix = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    RedisConfig {
        url,
        channel: format!("{prefix}:events"),
        stream: format!("{prefix}:stream"),
        key_prefix: prefix,
        ttl_secs: 86_400,
        stream_max_len: 1_000_000,
        ca_file: None,
        cluster_nodes: Vec::new(),
        min_replicas: None,
    }
}

/// `(entry id, [field, value, …])` of every entry of the stream `redis` names.
pub async fn stream_entries(redis: &RedisConfig) -> Vec<(String, Vec<String>)> {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("XRANGE")
        .arg(&redis.stream)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// The envelopes (the `event` field) of the stream `redis` names, in stream order.
pub async fn streamed_payloads(redis: &RedisConfig) -> Vec<String> {
    stream_entries(redis)
        .await
        .into_iter()
        .map(|(_, mut fields)| fields.remove(5))
        .collect()
}

/// A configuration as `customer-service` would read from an empty environment, on port 0.
pub fn test_config(database_url: String) -> Config {
    let mut config = Config::from_lookup(|_| None).expect("the defaults are valid");
    config.http.port = 0;
    config.http.host = "127.0.0.1".parse().unwrap();
    config.database.url = database_url;
    config.database.max_connections = 5;
    config
}

/// A URL of a new, empty database of `backend`, and the temp dir holding it (SQLite),
/// removed when dropped.
pub async fn fresh_database(backend: Backend) -> (String, Option<TempDir>) {
    let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            (
                format!("sqlite://{}", dir.join("customers.db").display()),
                Some(TempDir(dir)),
            )
        }
        Backend::Postgres => {
            let server = Server::Postgres
                .url()
                .expect("PostgreSQL is there (available())");
            (create_postgres_database(&server, &name).await, None)
        }
        Backend::MySql => {
            let server = Server::MariaDb
                .url()
                .expect("MariaDB is there (available())");
            (create_mysql_database(&server, &name).await, None)
        }
    }
}

/// Creates database `name` on the MySQL server of `server_url`; returns its URL.
pub async fn create_mysql_database(server_url: &str, name: &str) -> String {
    let mut conn = sqlx::MySqlConnection::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("MySQL at {server_url} is unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("create database `{name}`")))
        .execute(&mut conn)
        .await
        .expect("creating the test database");
    with_database(server_url, name)
}

/// Creates database `name` on the server of `server_url`; returns its URL.
pub async fn create_postgres_database(server_url: &str, name: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {server_url} is unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!(r#"create database "{name}""#)))
        .execute(&mut conn)
        .await
        .expect("creating the test database");
    with_database(server_url, name)
}

/// `server_url` naming database `name` instead of its own.
fn with_database(server_url: &str, name: &str) -> String {
    let (base, query) = server_url
        .split_once('?')
        .map_or((server_url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Spawns the app after `adjust` has edited its configuration.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let (url, dir) = fresh_database(backend).await;
    spawn_app_at(url, dir, adjust).await
}

/// Spawns the app on the database at `url` (of a server the test made) after `adjust` has
/// edited its configuration.
pub async fn spawn_app_on(url: String, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_at(url, None, adjust).await
}

async fn spawn_app_at(
    url: String,
    dir: Option<TempDir>,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(url);
    adjust(&mut config);
    let app = App::build(&config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let relay = app.relay();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        store,
        relay,
        redis: config.redis.clone(),
        database_url: config.database.url.clone(),
        _dir: dir,
    }
}

/// A valid create body with every field.
pub fn john() -> Value {
    json!({
        "email": "John.Doe@Example.com",
        "firstName": "John",
        "lastName": "Doe",
        "phone": "+1-555-010-0100",
        "isActive": true,
        "dateOfBirth": "1990-01-15",
        "address": {"street": "1 Main St", "city": "Springfield", "state": "IL",
                    "zipCode": "62701", "country": "USA"},
        "preferences": {"company": "Acme", "industry": "Retail",
                        "preferredContact": "email", "newsletter": true}
    })
}

/// A minimal valid create body for e-mail `email`.
pub fn minimal(email: &str) -> Value {
    json!({"email": email, "firstName": "Ann", "lastName": "Lee"})
}

impl TestApp {
    /// A handle on an app the test built and spawned itself.
    pub fn attach(address: String, app: &App, database_url: String) -> TestApp {
        TestApp {
            address,
            client: reqwest::Client::new(),
            store: app.store(),
            relay: app.relay(),
            redis: None,
            database_url,
            _dir: None,
        }
    }

    /// `text` (with `$n` placeholders) as this app's database takes it.
    pub fn sql(&self, text: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(customer_service::store::statement_for(
            self.store.backend(),
            text,
        ))
    }

    /// A series' value in `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        metric_at(&self.address, series).await
    }

    /// The `data` of `/api/v1/health`.
    pub async fn health(&self) -> Value {
        health_at(&self.address).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: RequestBuilder) -> Response {
        request.send().await.expect("the request reaches the app")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(self.client.get(self.url(path))).await
    }

    /// A GET with one request header.
    pub async fn get_with(&self, path: &str, header: &str, value: impl AsRef<str>) -> Response {
        self.send(
            self.client
                .get(self.url(path))
                .header(header, value.as_ref()),
        )
        .await
    }

    pub async fn post_customer(&self, body: &Value) -> Response {
        self.send(self.client.post(self.url("/api/v1/customers")).json(body))
            .await
    }

    /// Creates a customer that must succeed; returns its `data`.
    pub async fn create(&self, body: &Value) -> Value {
        let response = self.post_customer(body).await;
        assert_eq!(response.status(), 201, "create failed");
        response.json::<Value>().await.unwrap()["data"].clone()
    }

    /// Creates a customer that must succeed; returns its id.
    pub async fn create_id(&self, body: &Value) -> i64 {
        self.create(body).await["id"]
            .as_i64()
            .expect("a created customer has an id")
    }

    pub async fn get_customer(&self, id: i64) -> Response {
        self.get(&format!("/api/v1/customers/{id}")).await
    }

    pub async fn patch_customer(&self, id: i64, body: &Value) -> Response {
        self.send(
            self.client
                .patch(self.url(&format!("/api/v1/customers/{id}")))
                .json(body),
        )
        .await
    }

    /// Updates a customer with a PATCH that must succeed; returns its `data`.
    pub async fn update(&self, id: i64, body: &Value) -> Value {
        json_of(self.patch_customer(id, body).await, 200).await["data"].clone()
    }

    pub async fn delete_customer(&self, id: i64) -> Response {
        self.send(
            self.client
                .delete(self.url(&format!("/api/v1/customers/{id}"))),
        )
        .await
    }

    /// Runs `customer-service <args>` against this app's database (and Redis names):
    /// (exit success, stdout).
    pub async fn run_cli(&self, args: &[&str]) -> (bool, String) {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_customer-service"));
        command
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "off");
        if let Some(redis) = &self.redis {
            command
                .env("REDIS_URL", &redis.url)
                .env("EVENT_STREAM", &redis.stream)
                .env("REDIS_KEY_PREFIX", &redis.key_prefix)
                .env("EVENT_CHANNEL", &redis.channel);
        }
        tokio::task::spawn_blocking(move || {
            let output = command.output().expect("the binary runs");
            if !output.status.success() {
                // Shown with the test's output if it fails.
                eprintln!(
                    "customer-service exited with {}; its stderr:\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
            )
        })
        .await
        .expect("join")
    }

    /// The customer's event log, payloads parsed.
    pub async fn events_of(&self, id: i64) -> Vec<Value> {
        self.stored_events_of(id)
            .await
            .iter()
            .map(|e| serde_json::from_str(&e.payload).expect("payloads are JSON"))
            .collect()
    }

    /// The customer's events as stored; each is checked against its catalog schema.
    pub async fn stored_events_of(&self, id: i64) -> Vec<StoredEvent> {
        let events = self
            .store
            .events_of(CustomerId::new(id).unwrap())
            .await
            .expect("reading the event log");
        for event in &events {
            assert_matches_catalog(&event.payload);
        }
        events
    }

    /// Every event ever appended.
    pub async fn event_count(&self) -> i64 {
        self.store.event_count().await.unwrap()
    }

    /// Events not yet published.
    pub async fn pending_count(&self) -> i64 {
        self.store.outbox_status().await.unwrap().pending
    }

    /// Waits (bounded) until the running relay has published everything.
    pub async fn wait_until_published(&self) {
        eventually("every event published", || async {
            match self.pending_count().await {
                0 => Ok(()),
                pending => Err(format!("{pending} pending")),
            }
        })
        .await
    }
}

/// How long [`eventually`] waits.
pub const EVENTUALLY: Duration = Duration::from_secs(30);

/// Polls `probe` every 20 ms until it gives `Ok`, for at most [`EVENTUALLY`]; then fails the
/// test with `what` and the state the probe last described (its `Err`).
pub async fn eventually<T, F: std::future::Future<Output = Result<T, String>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + EVENTUALLY;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(state) => assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {EVENTUALLY:?}; last seen: {state}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A series' value in the `/metrics` of the service at `base` (0 when absent).
pub async fn metric_at(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The `data` of the service at `base`'s `/api/v1/health`.
pub async fn health_at(base: &str) -> Value {
    let response = reqwest::get(format!("{base}/api/v1/health")).await.unwrap();
    response.json::<Value>().await.unwrap()["data"].clone()
}

/// Validators of every (eventType, version) of the event catalog, compiled once.
fn catalog_validators() -> &'static HashMap<(String, String), jsonschema::Validator> {
    static VALIDATORS: OnceLock<HashMap<(String, String), jsonschema::Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        customer_events::catalog::catalog()
            .into_iter()
            .map(|entry| {
                let validator = jsonschema::validator_for(&entry.schema).unwrap_or_else(|e| {
                    panic!("{} {}: bad schema: {e}", entry.event_type, entry.version)
                });
                (
                    (entry.event_type.to_owned(), entry.version.to_owned()),
                    validator,
                )
            })
            .collect()
    })
}

/// Panics unless `payload` is an envelope that matches the catalog schema of its type and
/// version. Every event a test reads through [`TestApp::stored_events_of`] passes here.
pub fn assert_matches_catalog(payload: &str) {
    let envelope: Value = serde_json::from_str(payload).expect("an envelope is JSON");
    let key = (
        envelope["eventType"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        envelope["metadata"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    let validator = catalog_validators()
        .get(&key)
        .unwrap_or_else(|| panic!("no catalog schema for {key:?}: {payload}"));
    if let Err(error) = validator.validate(&envelope) {
        panic!(
            "event does not match its catalog schema ({error}) at {}: {payload}",
            error.instance_path
        );
    }
}

/// Reads a response body as JSON, with the status checked first.
pub async fn json_of(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body}"))
}

/// `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`
pub fn is_iso_millis(value: &Value) -> bool {
    let Some(s) = value.as_str() else {
        return false;
    };
    s.len() == 24
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            23 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

/// `term` percent-encoded for a query string (every byte but ASCII letters, digits and `.`).
pub fn urlencode(term: &str) -> String {
    term.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The customer ids of a list page (`data.customers`), in page order.
pub fn page_ids(body: &Value) -> Vec<i64> {
    body["data"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}
