//! The `customer-service` binary itself: help, configuration errors, `migrate`, and `serve`
//! with JSON logs that carry correlation ids but no personal data, stopped by SIGTERM.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_customer-service");

fn temp_db() -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("cs_cli_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("cli.db").display());
    (dir, url)
}

#[test]
fn help_documents_the_subcommands_and_every_variable() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for word in [
        "serve",
        "migrate",
        "PORT",
        "DATABASE_URL",
        "FRONTEND_URL",
        "LOG_FORMAT",
        "RUST_LOG",
        "DATABASE_POOL_SIZE",
        "REQUEST_TIMEOUT_SECS",
        "BODY_LIMIT_BYTES",
        "HOST",
        "healthcheck",
        "events",
        "RELAY_GAP_GRACE_MS",
        "AUTH_JWT_SECRET",
        "AUTH_JWT_PUBLIC_KEY_FILE",
        "AUTH_PROTECT_READS",
        "RATE_LIMIT_WRITES_PER_MINUTE",
        "IDEMPOTENCY_TTL_HOURS",
        "HTTP_HEADER_TIMEOUT_SECS",
        "HTTP_IDLE_TIMEOUT_SECS",
        "HTTP_MAX_CONNECTIONS",
        "RELAY_LEASE_TTL_MS",
        "OUTBOX_DEGRADED_AFTER_SECS",
        "REDIS_CA_FILE",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let output = Command::new(BIN)
        .env("PORT", "not-a-port")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("PORT"), "{stderr}");
}

#[test]
fn a_database_error_names_the_server_says_its_cause_once_and_never_the_password() {
    let output = Command::new(BIN)
        .arg("migrate")
        .env(
            "DATABASE_URL",
            "postgres://user:hunter2@127.0.0.1:1/customers",
        )
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "customer-service: connecting to PostgreSQL at 127.0.0.1:1, database customers \
         (DATABASE_URL): database unavailable: error communicating with database: Connection \
         refused (os error 111)\n"
    );
}

/// An unreachable Redis at start-up is said at once, in one warning naming the host (and
/// not the password); the service starts all the same.
#[test]
fn an_unreachable_redis_at_start_up_is_one_clear_warning() {
    use std::io::BufRead;
    let (dir, url) = temp_db();
    let port = test_servers::free_port();
    let mut child = Command::new(BIN)
        .env("DATABASE_URL", &url)
        .env("PORT", port.to_string())
        .env("REDIS_URL", "redis://:hunter2@127.0.0.1:1")
        .env("RUST_LOG", "warn")
        .env(
            "AUTH_JWT_SECRET",
            "a-secret-long-enough-for-hs256-0123456789",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_out, lines_in) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_out.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(line) = lines_in.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
        if seen.iter().any(|l| l.contains("does not answer")) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
    let warnings: Vec<_> = seen
        .iter()
        .filter(|l| l.contains("Redis at 127.0.0.1:1 does not answer (REDIS_URL)"))
        .collect();
    assert_eq!(warnings.len(), 1, "{seen:#?}");
    assert!(!seen.iter().any(|l| l.contains("hunter2")), "{seen:#?}");
}

#[test]
fn a_sqlite_file_whose_folder_is_missing_says_so() {
    let output = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", "sqlite:///no/such/folder/customers.db")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "customer-service: connecting to the SQLite file /no/such/folder/customers.db \
             (DATABASE_URL): the folder /no/such/folder does not exist: "
        ),
        "{stderr}"
    );
}

#[test]
fn migrate_creates_the_sqlite_file_and_its_schema() {
    let (dir, url) = temp_db();
    let output = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.join("cli.db").exists());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "applied 10 migrations\n"
    );
    // Running it again is a no-op, and says nothing.
    let again = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout), "");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn serve_logs_json_without_personal_data_or_tokens_and_stops_on_sigterm_despite_a_live_stream(
) {
    let (dir, url) = temp_db();
    let secret = "log-test-secret-value-0123456789";
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "log-tester", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    let port = test_servers::free_port();
    let mut child = Command::new(BIN)
        .env("DATABASE_URL", &url)
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env("AUTH_JWT_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read as it is written: a debug log fills a pipe's 64 KiB soon, and a service blocked
    // writing its log would never get to exit.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<_>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<_>));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the service did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = serde_json::json!({"email": "Private.Person@Example.com", "firstName": "Privatus",
                                  "lastName": "Secretson", "phone": "+1 555 010 9999"});
    let created = client
        .post(format!("{base}/api/v1/customers"))
        .header("X-Correlation-ID", "cli-log-check")
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["data"]["id"]
        .as_i64()
        .unwrap();
    let patched = client
        .patch(format!("{base}/api/v1/customers/{id}"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"lastName": "Hiddenberg"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let forged = format!("{token}x");
    let refused = client
        .delete(format!("{base}/api/v1/customers/{id}"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let deleted = client
        .delete(format!("{base}/api/v1/customers/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    // An open live stream must not hold the shutdown open.
    let live = client
        .get(format!("{base}/api/v1/events/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
    drop(live);

    // Logs on stderr, stdout is the tools' output; no colour codes off a terminal.
    assert_eq!(String::from_utf8_lossy(&stdout.join().unwrap()), "");
    let logs = String::from_utf8(stderr.join().unwrap()).unwrap();
    assert!(!logs.contains('\u{1b}'), "colour codes in the logs");
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(lines
        .iter()
        .any(|l| l["span"]["correlation_id"] == "cli-log-check"
            && l["fields"]["message"] == "request completed"));
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "SIGTERM received, shutting down"));
    // The first line says what starts, in a line a reader takes in: the database as
    // configured (a SQLite path is not a secret), then that the migrations were applied.
    let start = &lines[0]["fields"];
    assert_eq!(start["message"], "starting customer-service", "{logs}");
    let file = url.trim_start_matches("sqlite://");
    assert_eq!(start["database"], format!("the SQLite file {file}"));
    assert_eq!(start["redis"], false);
    assert!(lines[0].to_string().len() < 400, "{}", lines[0]);
    assert!(
        lines.iter().any(
            |l| l["fields"]["message"] == "applied the database migrations"
                && l["fields"]["migrations"].as_u64().is_some_and(|n| n > 0)
        ),
        "{logs}"
    );
    // Where to go, once bound.
    let here = format!("http://localhost:{port}");
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            == format!(
                "listening on {here}: dashboard {here}/dashboard, API docs {here}/api/docs"
            )),
        "{logs}"
    );
    // Neither the token (nor the forged one, nor any part of its signature) nor the secret.
    let signature = token.rsplit('.').next().unwrap();
    for credential in [token.as_str(), signature, secret] {
        assert!(!logs.contains(credential), "the logs contain a credential");
    }
    assert!(!logs.contains("authentication is off"));
    let lower = logs.to_lowercase();
    for secret in [
        "private.person",
        "privatus",
        "secretson",
        "hiddenberg",
        "555 010 9999",
    ] {
        assert!(!lower.contains(secret), "the logs contain {secret:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

crate::for_every_backend!(seed_creates_valid_customers_each_with_its_created_event);

/// On every backend: each takes its bulk insert's ids another way (see `store/writes.rs`).
async fn seed_creates_valid_customers_each_with_its_created_event(
    backend: crate::test_app::Backend,
) {
    use customer_service::application::{CustomerStore, EventLog};
    use futures_util::StreamExt;
    let (url, _dir) = crate::test_app::fresh_database(backend).await;
    let output = Command::new(BIN)
        .args(["seed", "--count", "2500", "--updates-per-customer", "2"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A summary line (the progress bar is on stderr, and drawn only on a terminal).
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|line| line.starts_with("seeded 2500 customers and 7500 events in ")),
        "{stdout}"
    );
    let store =
        customer_service::store::SqlStore::connect(&customer_service::store::StoreOptions {
            url: url.clone(),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
            create_if_missing: false,
        })
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 2500);
    // The ids are 1..=2500 on a fresh database, whichever way the backend assigned them.
    let mut ids: Vec<i64> = store
        .stream_active(Default::default())
        .map(|c| c.unwrap().id.get())
        .collect()
        .await;
    ids.sort_unstable();
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids.iter().all(|id| (1..=2500).contains(id)));
    assert_eq!(store.event_count().await.unwrap(), 7500);
    // Varied: some inactive, some without optional fields.
    let active: Vec<_> = store
        .stream_active(Default::default())
        .map(Result::unwrap)
        .collect()
        .await;
    assert!(
        active.len() > 2000 && active.len() < 2500,
        "{} active",
        active.len()
    );
    // Each created, then updated twice: version 3, the last update's phone.
    assert!(active.iter().all(|c| c.version == 3), "{:?}", active[0]);
    assert_eq!(
        active[0].fields.phone.as_ref().map(|p| p.as_str()),
        Some("+1-555-900-0001")
    );
    store.close().await;
    // The log is whole: every customer's events fold to its row.
    let verify = Command::new(BIN)
        .args(["events", "verify"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn the_log_tools_never_create_a_database() {
    // Without DATABASE_URL the default is a SQLite file in the current folder: `events
    // verify` there must say it has no database, not create an empty one and then fail on a
    // missing table.
    let (dir, _) = temp_db();
    for tool in [
        &["events", "verify"][..],
        &["events", "tail", "--after", "0"][..],
    ] {
        let output = Command::new(BIN)
            .args(tool)
            .current_dir(&dir)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{tool:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("DATABASE_URL") && stderr.contains("existing"),
            "{tool:?}: {stderr}"
        );
        assert!(!stderr.contains("no such table"), "{tool:?}: {stderr}");
        assert_eq!(
            stderr.matches("customer-service: ").count(),
            1,
            "the error is said once: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "{tool:?} left {left:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The tools' command lines behave alike: a bad argument is a usage error (exit 2, clap's
/// message), `projections list` is `projections status`, and `seed` says what it will add
/// before adding it.
#[test]
fn the_tools_answer_usage_errors_alike_and_say_what_they_do() {
    let (dir, url) = temp_db();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    };
    assert!(run(&["migrate"]).status.success());
    for args in [
        &["sagas", "list", "--state", "bogus"][..],
        &["sagas", "list", "--limit", "0"],
        &["projections", "lst"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
    let list = run(&["projections", "list"]);
    let status = run(&["projections", "status"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert_eq!(list.stdout, status.stdout);

    let seeded = run(&["seed", "--count", "3"]);
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let stderr = String::from_utf8_lossy(&seeded.stderr);
    assert!(
        stderr.starts_with(&format!(
            "adding 3 customers to the SQLite file {}\n",
            url.trim_start_matches("sqlite://")
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A database that does not exist, or a role that does not: the server's own message, without
/// sqlx's prefix or PostgreSQL's source line, and how to create the database.
#[test]
fn a_missing_database_or_role_is_said_plainly_with_how_to_create_it() {
    let name = format!("cs_test_missing_{}", uuid::Uuid::new_v4().simple());
    let with_database = |url: &str, database: &str| {
        let base = url.split_once('?').map_or(url, |(base, _)| base);
        let base = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
        format!("{base}/{database}")
    };
    let stderr_of = |url: &str| {
        let output = Command::new(BIN)
            .arg("migrate")
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{url}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    if let Some(url) = test_servers::Server::Postgres.url_or_skip() {
        let said = stderr_of(&with_database(&url, &name));
        assert!(
            said.ends_with(&format!(
                "(DATABASE_URL): database \"{name}\" does not exist; create it first: psql -c \
                 'create database \"{name}\"' (or createdb {name})\n"
            )),
            "{said}"
        );
        let rest = url.split_once("://").map_or(&*url, |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let no_role = format!("postgres://nobody_here@{host}/{name}");
        let said = stderr_of(&no_role);
        assert!(
            said.ends_with("role \"nobody_here\" does not exist\n"),
            "{said}"
        );
        assert!(!said.contains("at line"), "{said}");
    }
    if let Some(url) = test_servers::Server::MariaDb.url_or_skip() {
        let said = stderr_of(&with_database(&url, &name));
        assert!(
            said.ends_with(&format!(
                "(DATABASE_URL): Unknown database '{name}'; create it first: mysql -e 'create \
                 database `{name}`'\n"
            )),
            "{said}"
        );
    }
}

#[test]
fn serve_exits_non_zero_naming_a_worker_that_failed() {
    let (dir, url) = temp_db();
    let port = test_servers::free_port();
    let mut child = Command::new(BIN)
        .env("DATABASE_URL", &url)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "error")
        .env("CUSTOMER_SERVICE_FAIL_WORKER", "live log")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not stop after its worker failed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the live log worker panicked before the instance was stopped"),
        "{stderr}"
    );
    assert!(stderr.contains("worker=\"live log\""), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
