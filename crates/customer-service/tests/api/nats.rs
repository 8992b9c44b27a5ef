//! The NATS JetStream sink (issue #18, item 2): every event in the stream exactly once with
//! `Nats-Msg-Id = eventId`, on `<prefix>.<eventType>.<customerId>`; a relay crash before
//! marking stores nothing twice; a NATS outage loses nothing; Redis and NATS together; an
//! erasure purges the customer's earlier messages; a creds file gets the relay into a server
//! in operator mode. Tests on the shared server use their own subject prefix and stream, and
//! delete the stream afterwards.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use customer_service::application::EventLog;
use customer_service::config::{Config, NatsConfig};
use serde_json::{json, Value};
use test_servers::{OrSkip, OwnNats, Server};

use crate::test_app::{
    json_of, minimal, redis_url, spawn_app_with, streamed_payloads, unique_redis, Backend, TestApp,
};

crate::for_every_backend!(
    every_event_reaches_the_stream_once_with_its_message_id,
    the_erasure_saga_runs_with_nats_as_its_only_broker,
);

/// NATS settings no other test uses, on the server at `url`.
fn unique_nats(url: &str) -> NatsConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    NatsConfig {
        url: url.to_owned(),
        creds_file: None,
        ca_file: None,
        subject_prefix: format!("cs_test_{id}.events"),
        stream: format!("CS_TEST_{}", id.to_uppercase()),
        replicas: 1,
        max_age: Duration::from_secs(3600),
        duplicate_window: Duration::from_secs(600),
    }
}

fn with_nats(nats: &NatsConfig) -> impl FnOnce(&mut Config) + '_ {
    move |config| config.nats = Some(nats.clone())
}

/// One message of the stream.
#[derive(Debug)]
struct Stored {
    subject: String,
    msg_id: Option<String>,
    payload: String,
}

/// Every message the stream holds, in stream order.
async fn stream_messages(nats: &NatsConfig) -> Vec<Stored> {
    let client = async_nats::connect(nats.url.as_str()).await.unwrap();
    let context = jetstream::new(client);
    let stream = context.get_stream(&nats.stream).await.unwrap();
    let info = stream.get_info().await.unwrap();
    let mut messages = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            messages.push(Stored {
                subject: message.subject.to_string(),
                msg_id: message
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|value| value.to_string()),
                payload: String::from_utf8(message.payload.to_vec()).unwrap(),
            });
        }
    }
    messages
}

async fn delete_stream(nats: &NatsConfig) {
    if let Ok(client) = async_nats::connect(nats.url.as_str()).await {
        let _ = jetstream::new(client).delete_stream(&nats.stream).await;
    }
}

/// Every envelope of the log, in position order.
async fn logged(app: &TestApp) -> Vec<String> {
    app.store
        .settled_events(0, 10_000, &Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect()
}

/// Waits until the stream holds `n` messages.
async fn wait_for_messages(nats: &NatsConfig, n: usize) -> Vec<Stored> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let messages = stream_messages(nats).await;
        if messages.len() >= n {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "{} messages in the stream, waiting for {n}",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the stream is exactly the log: same envelopes in the same order, each on its
/// subject with its eventId as `Nats-Msg-Id`.
fn assert_stream_is_the_log(nats: &NatsConfig, messages: &[Stored], log: &[String]) {
    let payloads: Vec<&str> = messages.iter().map(|m| m.payload.as_str()).collect();
    let expected: Vec<&str> = log.iter().map(String::as_str).collect();
    assert_eq!(payloads, expected, "the stream differs from the log");
    for message in messages {
        let envelope: Value = serde_json::from_str(&message.payload).unwrap();
        assert_eq!(message.msg_id.as_deref(), envelope["eventId"].as_str());
        assert_eq!(
            message.subject,
            format!(
                "{}.{}.{}",
                nats.subject_prefix,
                envelope["eventType"].as_str().unwrap(),
                envelope["metadata"]["aggregateId"]
            )
        );
    }
}

async fn every_event_reaches_the_stream_once_with_its_message_id(backend: Backend) {
    let Some(url) = Server::Nats.url_or_skip() else {
        return;
    };
    let nats = unique_nats(&url);
    let app = spawn_app_with(backend, with_nats(&nats)).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.create_id(&minimal(&format!("n{n}@example.com"))).await);
    }
    app.update(ids[0], &json!({"firstName": "Nora", "isActive": false}))
        .await;
    assert_eq!(app.delete_customer(ids[1]).await.status(), 204);
    app.wait_until_published().await;
    let log = logged(&app).await;
    assert_eq!(log.len(), 8, "5 created, updated + deactivated, deleted");
    let messages = wait_for_messages(&nats, log.len()).await;
    assert_stream_is_the_log(&nats, &messages, &log);
    let health = json_of(app.get("/api/v1/health").await, 200).await;
    assert_eq!(health["data"]["checks"]["nats"]["status"], "ok");
    delete_stream(&nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_crash_before_marking_stores_nothing_twice() {
    let Some(url) = Server::Nats.url_or_skip() else {
        return;
    };
    let nats = unique_nats(&url);
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.nats = Some(nats.clone());
        c.relay.enabled = false;
    })
    .await;
    for n in 0..4 {
        app.create_id(&minimal(&format!("c{n}@example.com"))).await;
    }
    // Published, then "killed" before the mark: the batch is still pending …
    assert_eq!(app.relay.step_crashing_before_mark().await.unwrap(), 4);
    assert_eq!(app.pending_count().await, 4);
    // … and a new relay publishes it again: JetStream keeps each message once.
    assert_eq!(app.relay.drain().await.unwrap(), 4);
    let log = logged(&app).await;
    let messages = stream_messages(&nats).await;
    assert_stream_is_the_log(&nats, &messages, &log);
    delete_stream(&nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_and_a_nats_outage_nothing_is_lost_or_repeated_on_either() {
    let Some(redis) = redis_url() else { return };
    let Some(mut server) = OwnNats::start().or_skip() else {
        return;
    };
    let nats = unique_nats(&server.url());
    let redis = unique_redis(redis);
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.nats = Some(nats.clone());
        c.redis = Some(redis.clone());
    })
    .await;
    for n in 0..5 {
        app.create_id(&minimal(&format!("a{n}@example.com"))).await;
    }
    app.wait_until_published().await;

    server.stop();
    for n in 0..5 {
        app.create_id(&minimal(&format!("b{n}@example.com"))).await;
    }
    // Writes keep working; their events wait, and health says why.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health = json_of(app.get("/api/v1/health").await, 200).await;
        if health["data"]["checks"]["nats"]["status"] == "error" {
            assert_eq!(health["data"]["status"], "degraded");
            assert_eq!(health["data"]["checks"]["redis"]["status"], "ok");
            break;
        }
        assert!(Instant::now() < deadline, "health never noticed: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.pending_count().await,
        5,
        "a batch counts only once every sink has it"
    );

    server.restart();
    app.wait_until_published().await;
    let log = logged(&app).await;
    assert_eq!(log.len(), 10);
    let messages = wait_for_messages(&nats, 10).await;
    assert_stream_is_the_log(&nats, &messages, &log);
    // Redis took the second batch on every retry; its keys kept each event once.
    assert_eq!(streamed_payloads(&redis).await, log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_purges_the_customers_earlier_messages() {
    let Some(url) = Server::Nats.url_or_skip() else {
        return;
    };
    let nats = unique_nats(&url);
    let app = spawn_app_with(Backend::Sqlite, with_nats(&nats)).await;
    let erased = app.create_id(&minimal("gone@example.com")).await;
    let kept = app.create_id(&minimal("kept@example.com")).await;
    app.update(erased, &json!({"lastName": "Leigh"})).await;
    let response = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/customers/{erased}?erase=true"))),
        )
        .await;
    assert_eq!(response.status(), 204);
    app.wait_until_published().await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let messages = loop {
        let messages = stream_messages(&nats).await;
        let of_erased = messages
            .iter()
            .filter(|m| m.subject.ends_with(&format!(".{erased}")))
            .count();
        if of_erased == 1 {
            break messages;
        }
        assert!(Instant::now() < deadline, "not purged: {messages:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_subject: HashMap<String, usize> =
        messages.iter().fold(HashMap::new(), |mut counts, m| {
            *counts.entry(m.subject.clone()).or_default() += 1;
            counts
        });
    let prefix = &nats.subject_prefix;
    assert_eq!(
        by_subject,
        HashMap::from([
            (format!("{prefix}.CustomerErased.{erased}"), 1),
            (format!("{prefix}.CustomerCreated.{kept}"), 1),
        ])
    );
    assert!(!messages
        .iter()
        .any(|m| m.payload.contains("gone@example.com")));
    delete_stream(&nats).await;
}

#[tokio::test]
async fn the_asyncapi_document_lists_the_jetstream_channel_when_configured() {
    let nats = unique_nats("nats://user:secret@127.0.0.1:4222");
    let app = spawn_app_with(Backend::Sqlite, with_nats(&nats)).await;
    let doc: Value = app
        .get("/api/v1/events/asyncapi.json")
        .await
        .json()
        .await
        .unwrap();
    let channel = &doc["channels"]["jetstream"];
    assert_eq!(
        channel["address"],
        format!("{}.{{eventType}}.{{customerId}}", nats.subject_prefix)
    );
    assert_eq!(doc["servers"]["nats"]["host"], "127.0.0.1:4222");
    assert_eq!(doc["servers"]["nats"]["protocol"], "nats");
    assert_eq!(
        channel["messages"].as_object().unwrap().len(),
        customer_events::EventType::ALL.len()
    );
    assert!(doc["operations"]["publishToJetStream"].is_object());
    assert!(!doc.to_string().contains("secret"));
}

/// A NATS participant in this process: the customer ids its `erase` was called with.
fn nats_participant(
    nats: &NatsConfig,
    client: async_nats::Client,
    name: &str,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    use customer_events::participant::nats::{NatsParticipant, NatsParticipantConfig};
    let mut config = NatsParticipantConfig::new(&nats.stream, &nats.subject_prefix, name);
    config.consumer.block = Duration::from_millis(100);
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let recorded = calls.clone();
    let task = tokio::spawn(async move {
        let participant = NatsParticipant::new(client, config).await.unwrap();
        participant
            .run(
                |customer_id| {
                    recorded.lock().unwrap().push(customer_id);
                    async { Ok::<(), String>(()) }
                },
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )
            .await
            .unwrap();
    });
    (calls, stop, task)
}

async fn the_erasure_saga_runs_with_nats_as_its_only_broker(backend: Backend) {
    let Some(url) = Server::Nats.url_or_skip() else {
        return;
    };
    let nats = unique_nats(&url);
    let app = spawn_app_with(backend, |c| {
        c.nats = Some(nats.clone());
        c.redis = None;
        c.erasure = Some(customer_service::config::ErasureConfig {
            participants: vec!["billing".into(), "email".into()],
            deadline: Duration::from_secs(3600),
            retry_after: Duration::from_secs(3600),
        });
    })
    .await;
    let id = app.create_id(&minimal("erase.me@example.com")).await;
    let client = async_nats::connect(url.as_str()).await.unwrap();
    // The stream exists once the service published to it.
    app.wait_until_published().await;
    let (billing_calls, billing_stop, billing) = nats_participant(&nats, client.clone(), "billing");
    let (email_calls, email_stop, email) = nats_participant(&nats, client.clone(), "email");
    let response = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/customers/{id}?erase=true"))),
        )
        .await;
    assert_eq!(response.status(), 204);

    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let record = json_of(
            app.get(&format!("/api/v1/customers/{id}/erasure")).await,
            200,
        )
        .await["data"]
            .clone();
        if record["state"] == "completed" {
            break record;
        }
        assert!(Instant::now() < deadline, "never completed: {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let saga = record["sagaId"].as_i64().unwrap();
    assert_eq!(*billing_calls.lock().unwrap(), [id]);
    assert_eq!(*email_calls.lock().unwrap(), [id]);
    let messages = stream_messages(&nats).await;
    let prefix = &nats.subject_prefix;
    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    let requests = format!("{prefix}.CustomerErasureRequested.-{saga}");
    assert_eq!(subjects.iter().filter(|s| **s == requests).count(), 2);
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == format!("{prefix}.CustomerErasureCompleted.-{saga}"))
            .count(),
        1
    );
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == format!("{prefix}.erasure-replies"))
            .count(),
        2,
        "one answer each"
    );

    // A forged answer is refused (and acknowledged: it does not come back).
    let forged =
        json!({"sagaId": saga, "participant": "billing", "token": "forged", "outcome": "erased"});
    jetstream::new(client.clone())
        .publish(
            format!("{prefix}.erasure-replies"),
            forged.to_string().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.lines().any(|l| l == "saga_replies_refused_total 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the forged answer was not refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = json_of(
        app.get(&format!("/api/v1/customers/{id}/erasure")).await,
        200,
    )
    .await;
    assert_eq!(after["data"], record);
    for stop in [billing_stop, email_stop] {
        let _ = stop.send(true);
    }
    let _ = (billing.await, email.await);
    delete_stream(&nats).await;
    for durable in ["erasure-billing", "erasure-email"] {
        let _ = jetstream::new(client.clone())
            .delete_stream(format!("{}_{durable}_SEEN", nats.stream))
            .await;
    }
}

/// The JWTs of NATS's decentralised auth, made here: an operator trusted by the server, an
/// account with JetStream it signed, and a user of that account — whose JWT and seed make
/// the creds file `NATS_CREDS_FILE` names.
mod creds {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use nkeys::KeyPair;
    use serde_json::{json, Value};

    /// `header.claims.signature`, signed by `issuer` (nats-io/jwt v2's encoding).
    pub fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let claims = json!({
            "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
            "iat": 1_700_000_000,
            "iss": issuer.public_key(),
            "name": name,
            "sub": subject,
            "nats": nats,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature = issuer.sign(signed.as_bytes()).expect("signing");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    pub struct Identities {
        pub operator: KeyPair,
        pub account: KeyPair,
        pub account_jwt: String,
        /// The server's own account (JetStream needs one in operator mode).
        pub system: KeyPair,
        pub system_jwt: String,
    }

    impl Identities {
        pub fn new() -> Identities {
            let operator = KeyPair::new_operator();
            let account = KeyPair::new_account();
            let account_jwt = jwt(
                &operator,
                &account.public_key(),
                "customer-service",
                json!({
                    "limits": {
                        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                        "wildcards": true, "conn": -1, "leaf": -1,
                        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
                    },
                    "type": "account",
                    "version": 2
                }),
            );
            let system = KeyPair::new_account();
            let system_jwt = jwt(
                &operator,
                &system.public_key(),
                "SYS",
                json!({"limits": {"subs": -1, "data": -1, "payload": -1, "conn": -1},
                       "type": "account", "version": 2}),
            );
            Identities {
                operator,
                account,
                account_jwt,
                system,
                system_jwt,
            }
        }

        /// A creds file's text for a new user of the account.
        pub fn user_creds(&self) -> String {
            let user = KeyPair::new_user();
            let token = jwt(
                &self.account,
                &user.public_key(),
                "relay",
                json!({"subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}),
            );
            format!(
                "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
                user.seed().expect("a seed")
            )
        }
    }
}

/// A `nats-server` in operator mode (`trusted_keys`, accounts preloaded into a memory
/// resolver): only users with a JWT of a trusted account get in — `NATS_CREDS_FILE`'s case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_with_a_creds_file_to_a_server_in_operator_mode() {
    let Some(program) = OwnNats::installed().or_skip() else {
        return;
    };
    let identities = creds::Identities::new();
    let dir = std::env::temp_dir().join(format!("cs_nats_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = test_servers::free_port();
    let config = dir.join("server.conf");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:{port}\"\n\
             jetstream {{ store_dir: \"{}\" }}\n\
             trusted_keys: [\"{}\"]\n\
             system_account: {}\n\
             resolver: MEMORY\n\
             resolver_preload: {{ {}: \"{}\", {}: \"{}\" }}\n",
            dir.join("store").display(),
            identities.operator.public_key(),
            identities.system.public_key(),
            identities.account.public_key(),
            identities.account_jwt,
            identities.system.public_key(),
            identities.system_jwt
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new(program)
        .arg("-c")
        .arg(&config)
        .arg("-l")
        .arg(dir.join("nats.log"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = std::fs::read_to_string(dir.join("nats.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "nats-server did not start:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let creds_file = dir.join("relay.creds");
    std::fs::write(&creds_file, identities.user_creds()).unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    // Without credentials the server turns the relay away.
    assert!(async_nats::connect(url.as_str()).await.is_err());

    let mut nats = unique_nats(&url);
    nats.creds_file = Some(creds_file.clone());
    let app = spawn_app_with(Backend::Sqlite, with_nats(&nats)).await;
    let id = app.create_id(&minimal("creds@example.com")).await;
    app.wait_until_published().await;
    let client = async_nats::ConnectOptions::with_credentials_file(creds_file)
        .await
        .unwrap()
        .connect(url.as_str())
        .await
        .unwrap();
    let stream = jetstream::new(client)
        .get_stream(&nats.stream)
        .await
        .unwrap();
    let message = stream.get_raw_message(1).await.unwrap();
    assert_eq!(
        message.subject.as_str(),
        format!("{}.CustomerCreated.{id}", nats.subject_prefix)
    );
    let health = json_of(app.get("/api/v1/health").await, 200).await;
    assert_eq!(health["data"]["checks"]["nats"]["status"], "ok");

    // Another operator's user is refused: nothing is published, health says degraded.
    let mut stranger = nats.clone();
    let other = dir.join("stranger.creds");
    std::fs::write(&other, creds::Identities::new().user_creds()).unwrap();
    stranger.creds_file = Some(other);
    let app = spawn_app_with(Backend::Sqlite, with_nats(&stranger)).await;
    app.create_id(&minimal("creds@example.com")).await;
    let health = json_of(app.get("/api/v1/health").await, 200).await;
    assert_eq!(health["data"]["status"], "degraded");
    assert_eq!(health["data"]["checks"]["nats"]["status"], "error");
    assert_eq!(app.pending_count().await, 1);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
