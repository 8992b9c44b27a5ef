//! TLS to the brokers, with certificates of a CA made here: the relay publishes over
//! `rediss://` to a test-owned `redis-server`, trusted through `REDIS_CA_FILE` (without that
//! CA it is refused); to a Redis Cluster whose nodes speak only TLS and require a password;
//! and over `tls://` to a test-owned `nats-server` with JetStream, trusted through
//! `NATS_CA_FILE`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_servers::{free_port, ClusterSecurity, ClusterTls, OrSkip, OwnRedis, OwnRedisCluster};

use crate::test_app::{json_of, minimal, spawn_app_with, unique_redis, Backend, TestApp};

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a certificate it signed for `localhost` / 127.0.0.1, in `dir`.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=customer-service test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
}

/// A write's event stays pending because `sink` refuses the connection, and health says
/// so at once.
async fn assert_refused(app: &TestApp, sink: &str) {
    app.create_id(&minimal("tls@example.com")).await;
    let health = json_of(app.get("/api/v1/health").await, 200).await;
    assert_eq!(health["data"]["status"], "degraded");
    assert_eq!(health["data"]["checks"][sink]["status"], "error");
    assert_eq!(app.pending_count().await, 1);
}

/// A directory with a CA and a certificate it signed for `localhost` / 127.0.0.1 (removed on
/// drop).
struct Certificates(PathBuf);

impl Certificates {
    fn make() -> Certificates {
        let dir = std::env::temp_dir().join(format!("cs_tls_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        make_certificates(&dir);
        Certificates(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server of the test's own, serving only TLS on `port`; killed on drop.
struct TlsServer {
    port: u16,
    child: Child,
}

impl TlsServer {
    /// Runs `command` (which listens on `port`) until it accepts connections.
    fn start(command: &mut Command, port: u16) -> TlsServer {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{command:?} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsServer { port, child }
    }

    /// A `redis-server` with the certificates in `tls`.
    fn redis(tls: &Certificates) -> TlsServer {
        let port = free_port();
        let path = |name: &str| tls.path(name).display().to_string();
        TlsServer::start(
            Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--tls-cert-file", &path("server.crt")])
                .args(["--tls-key-file", &path("server.key")])
                .args(["--tls-ca-cert-file", &path("ca.crt")])
                .args(["--tls-auth-clients", "no", "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"]),
            port,
        )
    }

    /// A `nats-server` with JetStream (its store beside the certificates).
    fn nats(tls: &Certificates) -> TlsServer {
        let program = test_servers::OwnNats::installed().expect("nats-server is installed");
        let port = free_port();
        TlsServer::start(
            Command::new(program)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(tls.path("jetstream"))
                .args(["--tls", "--tlscert"])
                .arg(tls.path("server.crt"))
                .arg("--tlskey")
                .arg(tls.path("server.key")),
            port,
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_over_tls_to_a_server_of_a_private_ca() {
    if OwnRedis::installed().or_skip().is_none() {
        return;
    }
    let tls = Certificates::make();
    let server = TlsServer::redis(&tls);
    let mut redis = unique_redis(format!("rediss://localhost:{}", server.port));
    redis.ca_file = Some(tls.path("ca.crt"));

    let app = spawn_app_with(Backend::Sqlite, |c| c.redis = Some(redis.clone())).await;
    let id = app.create_id(&minimal("tls@example.com")).await;
    app.wait_until_published().await;
    let client = customer_service::sinks::client(&redis).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(&redis.stream)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].1[5].contains(&format!(r#""aggregateId":{id}"#)));
    let health = json_of(app.get("/api/v1/health").await, 200).await;
    assert_eq!(health["data"]["checks"]["redis"]["status"], "ok");

    // Without the CA, the system's roots do not know this server: no connection.
    let mut untrusted = redis.clone();
    untrusted.ca_file = None;
    let app = spawn_app_with(Backend::Sqlite, |c| c.redis = Some(untrusted)).await;
    assert_refused(&app, "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_to_a_cluster_over_tls_with_a_password() {
    if OwnRedis::installed().or_skip().is_none() {
        return;
    }
    let tls = Certificates::make();
    let cluster = OwnRedisCluster::start_secured(&ClusterSecurity {
        tls: Some(ClusterTls {
            cert: tls.path("server.crt"),
            key: tls.path("server.key"),
            ca: tls.path("ca.crt"),
        }),
        password: Some("s3cret".to_owned()),
    })
    .unwrap();
    let urls = cluster.urls();
    assert!(urls[0].starts_with("rediss://:s3cret@localhost:"));
    let mut redis = unique_redis(urls[0].clone());
    redis.cluster_nodes = urls;
    redis.ca_file = Some(tls.path("ca.crt"));

    let app = spawn_app_with(Backend::Sqlite, |c| c.redis = Some(redis.clone())).await;
    let id = app.create_id(&minimal("tls@example.com")).await;
    app.update(id, &serde_json::json!({"firstName": "Secure"}))
        .await;
    app.wait_until_published().await;
    let customer_events::consumer::RedisTarget::Cluster(client) =
        customer_service::sinks::target(&redis).unwrap()
    else {
        panic!("REDIS_CLUSTER_NODES made no cluster client");
    };
    let mut connection = client.get_async_connection().await.unwrap();
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(&redis.stream)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let types: Vec<&str> = entries.iter().map(|(_, f)| f[1].as_str()).collect();
    assert_eq!(types, ["CustomerCreated", "CustomerUpdated"]);
    assert!(entries[0].1[5].contains(&format!(r#""aggregateId":{id}"#)));
    let health = json_of(app.get("/api/v1/health").await, 200).await;
    assert_eq!(health["data"]["checks"]["redis"]["status"], "ok");

    // A wrong password: nothing is published, health says why in general terms.
    let mut refused = redis.clone();
    refused.cluster_nodes = refused
        .cluster_nodes
        .iter()
        .map(|url| url.replace(":s3cret@", ":wrong@"))
        .collect();
    refused.url = refused.cluster_nodes[0].clone();
    let app = spawn_app_with(Backend::Sqlite, |c| c.redis = Some(refused)).await;
    app.create_id(&minimal("tls@example.com")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = json_of(app.get("/api/v1/health").await, 200).await;
        if health["data"]["checks"]["redis"]["status"] == "error" {
            assert_eq!(health["data"]["status"], "degraded");
            assert!(!health.to_string().contains("wrong"), "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "a wrong password went unnoticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.pending_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_over_tls_to_nats_of_a_private_ca() {
    if test_servers::OwnNats::installed().or_skip().is_none() {
        return;
    }
    let tls = Certificates::make();
    let server = TlsServer::nats(&tls);
    let nats = customer_service::config::NatsConfig {
        url: format!("tls://localhost:{}", server.port),
        creds_file: None,
        ca_file: Some(tls.path("ca.crt")),
        subject_prefix: "tls.events".to_owned(),
        stream: "TLS_EVENTS".to_owned(),
        replicas: 1,
        max_age: Duration::from_secs(3600),
        duplicate_window: Duration::from_secs(600),
    };

    let app = spawn_app_with(Backend::Sqlite, |c| c.nats = Some(nats.clone())).await;
    let id = app.create_id(&minimal("tls@example.com")).await;
    app.wait_until_published().await;
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(tls.path("ca.crt"))
        .connect(nats.url.as_str())
        .await
        .unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("TLS_EVENTS")
        .await
        .unwrap();
    let message = stream.get_raw_message(1).await.unwrap();
    assert_eq!(
        message.subject.as_str(),
        format!("tls.events.CustomerCreated.{id}")
    );
    assert_eq!(stream.get_info().await.unwrap().state.messages, 1);
    let health = json_of(app.get("/api/v1/health").await, 200).await;
    assert_eq!(health["data"]["checks"]["nats"]["status"], "ok");

    // Without the CA, the system's roots do not know this server: nothing is published.
    let mut untrusted = nats.clone();
    untrusted.ca_file = None;
    let app = spawn_app_with(Backend::Sqlite, |c| c.nats = Some(untrusted)).await;
    assert_refused(&app, "nats").await;
}
