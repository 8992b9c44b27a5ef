//! The erasure saga (issue #17): after `DELETE ?erase=true`, every configured participant is
//! asked (through the outbox, on the event stream) to erase the customer too, and the saga
//! follows their answers on `<stream>:erasure-replies` to completed, failed or cancelled.
//! Participants here are the consumer crate's helper (`customer_events::participant`) with a
//! recording `erase` function, against the test's Redis names.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use customer_events::participant::{reply_stream, Participant, ParticipantConfig};
use customer_service::config::{Config, ErasureConfig, RedisConfig};
use serde_json::{json, Value};
use test_servers::{OrSkip, OwnRedis};
use tokio::sync::watch;

use crate::own_server::ServiceProcess;
use crate::test_app::{
    assert_matches_catalog, eventually, fresh_database, health_at, john, json_of, metric_at,
    redis_url, spawn_app_with, streamed_payloads, unique_redis, Backend, TestApp,
};

crate::for_every_backend!(
    every_participant_confirms_and_the_saga_completes_without_touching_the_customer,
    a_participant_that_was_down_is_asked_again_and_erases_once,
    a_failed_answer_fails_the_saga_and_a_retry_asks_again_with_a_new_token,
    duplicate_late_forged_and_unknown_replies_change_nothing,
    the_deadline_fails_the_saga_visibly,
    a_killed_orchestrator_resumes_where_it_was_without_asking_twice,
    a_cancelled_saga_refuses_answers,
);

const PARTICIPANTS: [&str; 2] = ["billing", "email"];
const DAY: Duration = Duration::from_secs(24 * 3600);

fn with_sagas(config: &mut Config, redis: &RedisConfig, deadline: Duration, retry: Duration) {
    config.redis = Some(redis.clone());
    config.erasure = Some(ErasureConfig {
        participants: PARTICIPANTS.iter().map(|p| (*p).to_owned()).collect(),
        deadline,
        retry_after: retry,
    });
}

/// A participant team running the crate's helper in this process.
struct Team {
    /// Customer ids `erase` was called with (failures included).
    calls: Arc<Mutex<Vec<i64>>>,
    /// While true, `erase` fails with "ledger locked".
    failing: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Team {
    fn start(redis: &RedisConfig, name: &str) -> Team {
        let mut config = ParticipantConfig::new(redis.stream.clone(), name, format!("{name}-1"));
        config.consumer.block = Duration::from_millis(100);
        config.max_attempts = 2;
        config.backoff = Duration::from_millis(10);
        let participant = Participant::new(&redis.url, config).unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let (stop, mut stopped) = watch::channel(false);
        let (recorded, fail) = (calls.clone(), failing.clone());
        let task = tokio::spawn(async move {
            participant
                .run(
                    |customer_id| {
                        let (recorded, fail) = (recorded.clone(), fail.clone());
                        async move {
                            recorded.lock().unwrap().push(customer_id);
                            if fail.load(Ordering::SeqCst) {
                                Err("ledger locked".to_owned())
                            } else {
                                Ok(())
                            }
                        }
                    },
                    async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    },
                )
                .await
                .unwrap();
        });
        Team {
            calls,
            failing,
            stop,
            task,
        }
    }

    fn calls(&self) -> Vec<i64> {
        self.calls.lock().unwrap().clone()
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn erase(base: &str, id: i64) -> u16 {
    reqwest::Client::new()
        .delete(format!("{base}/api/v1/customers/{id}?erase=true"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn erasure_record(base: &str, id: i64) -> Value {
    let response = reqwest::get(format!("{base}/api/v1/customers/{id}/erasure"))
        .await
        .unwrap();
    json_of(response, 200).await["data"].clone()
}

/// The customer's erasure saga once `done` holds for it (bounded wait).
async fn wait_for(base: &str, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("the saga {what}"), || async {
        let record = erasure_record(base, id).await;
        if done(&record) {
            Ok(record)
        } else {
            Err(record.to_string())
        }
    })
    .await
}

async fn wait_for_state(base: &str, id: i64, state: &str) -> Value {
    wait_for(base, id, state, |r| r["state"] == state).await
}

fn participant<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no participant {name} in {record}"))
}

/// The saga events on the stream, parsed, in stream order (each checked against the catalog).
async fn saga_events(redis: &RedisConfig) -> Vec<Value> {
    streamed_payloads(redis)
        .await
        .iter()
        .filter(|payload| payload.contains("\"aggregateType\""))
        .map(|payload| {
            assert_matches_catalog(payload);
            serde_json::from_str(payload).unwrap()
        })
        .collect()
}

/// The requests on the stream for `participant`.
fn requests_for<'a>(events: &'a [Value], participant: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["eventType"] == "CustomerErasureRequested")
        .filter(|e| e["data"]["participant"] == participant)
        .collect()
}

/// Waits until the stream holds `n` saga events.
async fn wait_for_saga_events(redis: &RedisConfig, n: usize) -> Vec<Value> {
    eventually(&format!("{n} saga events streamed"), || async {
        let events = saga_events(redis).await;
        if events.len() >= n {
            Ok(events)
        } else {
            Err(format!("{} streamed", events.len()))
        }
    })
    .await
}

/// `XADD <stream>:erasure-replies * field value …`.
async fn send_reply(redis: &RedisConfig, fields: &[(&str, &str)]) {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut command = redis::cmd("XADD");
    command.arg(reply_stream(&redis.stream)).arg("*");
    for (field, value) in fields {
        command.arg(*field).arg(*value);
    }
    let _: String = command.query_async(&mut connection).await.unwrap();
}

/// Runs `customer-service <args>` against `app` with the saga settings: (success, stdout).
async fn saga_cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let redis = app.redis.clone().expect("saga tests have Redis");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_customer-service"));
    command
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("REDIS_URL", &redis.url)
        .env("EVENT_STREAM", &redis.stream)
        .env("REDIS_KEY_PREFIX", &redis.key_prefix)
        .env("EVENT_CHANNEL", &redis.channel)
        .env("ERASURE_PARTICIPANTS", PARTICIPANTS.join(","))
        .env("RUST_LOG", "off");
    tokio::task::spawn_blocking(move || {
        let output = command.output().expect("the binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), format!("{stdout}{stderr}"))
    })
    .await
    .unwrap()
}

async fn every_participant_confirms_and_the_saga_completes_without_touching_the_customer(
    backend: Backend,
) {
    let Some(url) = redis_url() else { return };
    let redis = unique_redis(url);
    let app = spawn_app_with(backend, |c| with_sagas(c, &redis, 30 * DAY, DAY)).await;
    let base = app.address.clone();
    let id = app.create_id(&john()).await;
    let bystander = app
        .create_id(
            &json!({"email": "bystander@example.com", "firstName": "Bo", "lastName": "Stand"}),
        )
        .await;
    let (billing, email) = (Team::start(&redis, "billing"), Team::start(&redis, "email"));

    assert_eq!(erase(&base, id).await, 204);
    let record = wait_for_state(&base, id, "completed").await;
    let saga_id = record["sagaId"].as_i64().unwrap();
    assert_eq!(record["kind"], "erasure");
    assert_eq!(record["customerId"], id);
    assert_eq!(record["reason"], Value::Null);
    let names: Vec<&Value> = record["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert_eq!(names, [&json!("billing"), &json!("email")]);
    for name in PARTICIPANTS {
        let p = participant(&record, name);
        assert_eq!(p["state"], "confirmed", "{record}");
        assert_eq!(p["attempts"], 1);
        assert_eq!(p["nextAskAt"], Value::Null);
        assert_eq!(p["reason"], Value::Null);
        assert!(crate::test_app::is_iso_millis(&p["answeredAt"]), "{p}");
    }
    assert!(crate::test_app::is_iso_millis(&record["endedAt"]));
    assert!(record.get("token").is_none() && !record.to_string().contains("token"));

    // One request per participant, then the completion: the saga's own numbering (-id),
    // never the customer's.
    let events = wait_for_saga_events(&redis, 3).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "CustomerErasureRequested",
            "CustomerErasureRequested",
            "CustomerErasureCompleted"
        ]
    );
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["metadata"]["aggregateType"], "ErasureSaga");
        assert_eq!(event["metadata"]["aggregateId"], -saga_id);
        assert_eq!(event["metadata"]["sequence"], index as i64 + 1);
        assert_eq!(event["data"]["sagaId"], saga_id);
        assert_eq!(event["data"]["customerId"], id);
        assert!(event["metadata"].get("actor").is_none());
    }
    for (event, name) in events.iter().zip(PARTICIPANTS) {
        assert_eq!(event["data"]["participant"], name);
        assert_eq!(event["data"]["attempt"], 1);
        let token = event["data"]["token"].as_str().unwrap();
        assert!(
            token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "{token}"
        );
        assert_eq!(event["data"]["requestedAt"], record["startedAt"]);
        assert_eq!(event["data"]["deadline"], record["deadline"]);
    }
    let completed = &events[2]["data"];
    assert_eq!(completed["requestedAt"], record["startedAt"]);
    assert_eq!(completed["completedAt"], record["endedAt"]);
    assert_eq!(
        completed["confirmations"],
        json!([
            {"participant": "billing", "confirmedAt": participant(&record, "billing")["answeredAt"]},
            {"participant": "email", "confirmedAt": participant(&record, "email")["answeredAt"]},
        ])
    );
    assert_eq!(billing.calls(), [id]);
    assert_eq!(email.calls(), [id]);

    // The customer's own log is untouched: sequence 1..3, no saga event in its history, and
    // its CustomerErased went out before the requests.
    let history: Vec<String> = app
        .events_of(id)
        .await
        .iter()
        .map(|e| e["eventType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        history,
        ["CustomerCreated", "CustomerDeleted", "CustomerErased"]
    );
    let body = json_of(
        app.get(&format!("/api/v1/customers/{id}/history")).await,
        200,
    )
    .await;
    let sequences: Vec<i64> = body["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["metadata"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3]);
    let streamed = streamed_payloads(&redis).await;
    let erased_at = streamed
        .iter()
        .position(|p| p.contains("\"CustomerErased\""))
        .unwrap();
    let first_request = streamed
        .iter()
        .position(|p| p.contains("\"CustomerErasureRequested\""))
        .unwrap();
    assert!(erased_at < first_request);
    let missing = app
        .get(&format!("/api/v1/customers/{bystander}/erasure"))
        .await;
    assert_eq!(
        json_of(missing, 404).await["message"],
        "No erasure saga for this customer"
    );

    // The list, the metrics and the health note.
    let list = json_of(app.get("/api/v1/sagas?state=completed").await, 200).await;
    assert_eq!(list["data"]["sagas"][0]["sagaId"], saga_id);
    assert_eq!(list["data"]["nextBefore"], Value::Null);
    let open = json_of(app.get("/api/v1/sagas?state=open").await, 200).await;
    assert_eq!(open["data"]["sagas"], json!([]));
    assert_eq!(metric_at(&base, r#"sagas{state="completed"}"#).await, 1.0);
    assert_eq!(metric_at(&base, r#"sagas{state="open"}"#).await, 0.0);
    assert_eq!(metric_at(&base, "saga_oldest_open_age_seconds").await, 0.0);
    let note = &health_at(&base).await["checks"]["sagas"];
    assert_eq!(note["status"], "ok", "{note}");
    assert_eq!(note["open"], 0);

    // No personal value in the saga's tables or events.
    assert_no_personal_data(&app, &streamed).await;
    billing.stop().await;
    email.stop().await;
}

/// John's values (see `john()`), none of which may appear in a saga table, event or log.
const PERSONAL: [&str; 9] = [
    "John",
    "Doe",
    "john.doe@example.com",
    "John.Doe@Example.com",
    "+1-555-010-0100",
    "1990-01-15",
    "1 Main St",
    "Springfield",
    "Acme",
];

async fn assert_no_personal_data(app: &TestApp, streamed: &[String]) {
    let mut texts: Vec<String> = Vec::new();
    sqlx::any::install_default_drivers();
    let store = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
    for statement in [
        "select kind || '|' || state || '|' || coalesce(reason, '') from sagas",
        "select name || '|' || state || '|' || token || '|' || coalesce(reason, '') from saga_steps",
        "select payload from customer_events where customer_id < 0",
    ] {
        let statement = if app.store.backend() == customer_service::store::Backend::MySql {
            // MySQL's `||` is OR; concat() is the one spelling it knows.
            statement
                .replace("kind || '|' || state || '|' || coalesce(reason, '')", "concat(kind, '|', state, '|', coalesce(reason, ''))")
                .replace(
                    "name || '|' || state || '|' || token || '|' || coalesce(reason, '')",
                    "concat(name, '|', state, '|', token, '|', coalesce(reason, ''))",
                )
        } else {
            statement.to_owned()
        };
        let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
            .fetch_all(&store)
            .await
            .unwrap();
        assert!(!rows.is_empty());
        texts.extend(rows.into_iter().map(|(text,)| text));
    }
    store.close().await;
    texts.extend(
        streamed
            .iter()
            .filter(|p| p.contains("\"aggregateType\""))
            .cloned(),
    );
    for text in &texts {
        for value in PERSONAL {
            assert!(!text.contains(value), "{value:?} in {text}");
        }
    }
}

async fn a_participant_that_was_down_is_asked_again_and_erases_once(backend: Backend) {
    let Some(url) = redis_url() else { return };
    let redis = unique_redis(url);
    let app = spawn_app_with(backend, |c| {
        with_sagas(c, &redis, 30 * DAY, Duration::from_millis(500));
    })
    .await;
    let base = app.address.clone();
    let id = app.create_id(&john()).await;
    let billing = Team::start(&redis, "billing");

    assert_eq!(erase(&base, id).await, 204);
    // e-mail is down: reminded after 0.5 s, then 1 s later (back-off).
    let record = wait_for(&base, id, "a third request to email", |r| {
        participant(r, "email")["attempts"] == 3
    })
    .await;
    assert_eq!(record["state"], "open");
    assert_eq!(participant(&record, "billing")["state"], "confirmed");
    let email_state = participant(&record, "email");
    assert_eq!(email_state["state"], "requested");
    assert!(crate::test_app::is_iso_millis(&email_state["nextAskAt"]));
    let events = wait_for_saga_events(&redis, 4).await;
    let asked = requests_for(&events, "email");
    let attempts: Vec<i64> = asked
        .iter()
        .map(|e| e["data"]["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let tokens: HashSet<&str> = asked
        .iter()
        .map(|e| e["data"]["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 1, "a reminder repeats the request's token");
    let first = asked[0]["occurredOn"].as_str().unwrap().to_owned();
    let second = asked[1]["occurredOn"].as_str().unwrap().to_owned();
    let third = asked[2]["occurredOn"].as_str().unwrap().to_owned();
    let gap = |a: &str, b: &str| {
        chrono::DateTime::parse_from_rfc3339(b).unwrap()
            - chrono::DateTime::parse_from_rfc3339(a).unwrap()
    };
    assert!(gap(&first, &second) >= chrono::Duration::milliseconds(500));
    assert!(gap(&second, &third) >= chrono::Duration::milliseconds(1000));

    // E-mail comes back: it reads all three requests, erases once, answers each.
    let email = Team::start(&redis, "email");
    let record = wait_for_state(&base, id, "completed").await;
    assert_eq!(participant(&record, "email")["state"], "confirmed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_at(&base, "saga_replies_recorded_total").await < 4.0 {
        assert!(
            Instant::now() < deadline,
            "the repeated answers never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(email.calls(), [id], "erased once for three requests");
    assert_eq!(metric_at(&base, "saga_replies_refused_total").await, 0.0);
    let completions = saga_events(&redis)
        .await
        .into_iter()
        .filter(|e| e["eventType"] == "CustomerErasureCompleted")
        .count();
    assert_eq!(completions, 1);
    billing.stop().await;
    email.stop().await;
}

async fn a_failed_answer_fails_the_saga_and_a_retry_asks_again_with_a_new_token(backend: Backend) {
    let Some(url) = redis_url() else { return };
    let redis = unique_redis(url);
    let app = spawn_app_with(backend, |c| with_sagas(c, &redis, 30 * DAY, DAY)).await;
    let base = app.address.clone();
    let id = app.create_id(&john()).await;
    let (billing, email) = (Team::start(&redis, "billing"), Team::start(&redis, "email"));
    billing.failing.store(true, Ordering::SeqCst);

    assert_eq!(erase(&base, id).await, 204);
    let record = wait_for_state(&base, id, "failed").await;
    let saga_id = record["sagaId"].as_i64().unwrap();
    assert_eq!(record["reason"], "billing answered failed: ledger locked");
    let failed = participant(&record, "billing");
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["reason"], "ledger locked");
    assert_eq!(
        billing.calls(),
        [id, id],
        "the helper tried twice before answering"
    );
    // (e-mail's confirmation counts if it came before the failure; after it, it is refused
    // and the retry asks e-mail again too.)
    let note = &health_at(&base).await["checks"]["sagas"];
    assert_eq!(note["status"], "attention");
    assert_eq!(note["failed"], 1);
    assert_eq!(
        health_at(&base).await["status"],
        "healthy",
        "a note, not a degradation"
    );
    let (ok, listed) = saga_cli(&app, &["sagas", "list", "--state", "failed"]).await;
    assert!(ok, "{listed}");
    assert!(listed.contains("billing failed"), "{listed}");
    assert!(
        listed.contains("(billing answered failed: ledger locked)"),
        "{listed}"
    );

    billing.failing.store(false, Ordering::SeqCst);
    let (ok, said) = saga_cli(&app, &["sagas", "retry", &saga_id.to_string()]).await;
    assert!(ok, "{said}");
    assert!(
        said.starts_with(&format!("saga {saga_id}: asked billing")),
        "{said}"
    );
    let record = wait_for_state(&base, id, "completed").await;
    assert_eq!(participant(&record, "billing")["state"], "confirmed");
    assert_eq!(participant(&record, "billing")["attempts"], 1);
    assert_eq!(billing.calls(), [id, id, id]);
    let events = saga_events(&redis).await;
    let asked = requests_for(&events, "billing");
    assert_eq!(asked.len(), 2);
    assert_ne!(
        asked[0]["data"]["token"], asked[1]["data"]["token"],
        "a retry is a new request"
    );
    assert_eq!(asked[1]["data"]["attempt"], 1);
    assert!(asked[1]["data"]["deadline"].as_str() > asked[0]["data"]["deadline"].as_str());

    // Nothing left to retry or cancel.
    let (ok, said) = saga_cli(&app, &["sagas", "retry", &saga_id.to_string()]).await;
    assert!(!ok);
    assert!(
        said.contains(&format!("saga {saga_id} is completed: nothing to retry")),
        "{said}"
    );
    let (ok, said) = saga_cli(&app, &["sagas", "cancel", &saga_id.to_string()]).await;
    assert!(!ok);
    assert!(said.contains("nothing to cancel"), "{said}");
    let (ok, said) = saga_cli(&app, &["sagas", "retry", "999999"]).await;
    assert!(!ok);
    assert!(said.contains("no saga 999999"), "{said}");
    billing.stop().await;
    email.stop().await;
}

async fn duplicate_late_forged_and_unknown_replies_change_nothing(backend: Backend) {
    let Some(url) = redis_url() else { return };
    let redis = unique_redis(url);
    let app = spawn_app_with(backend, |c| with_sagas(c, &redis, 30 * DAY, DAY)).await;
    let base = app.address.clone();
    let id = app.create_id(&john()).await;
    assert_eq!(erase(&base, id).await, 204);
    let events = wait_for_saga_events(&redis, 2).await;
    let saga_id = events[0]["data"]["sagaId"].as_i64().unwrap().to_string();
    let token = |name: &str| {
        requests_for(&events, name)[0]["data"]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (billing_token, email_token) = (token("billing"), token("email"));
    let before = erasure_record(&base, id).await;

    let refused = [
        vec![
            ("sagaId", "999999"),
            ("participant", "billing"),
            ("token", billing_token.as_str()),
            ("outcome", "erased"),
        ],
        vec![
            ("sagaId", saga_id.as_str()),
            ("participant", "crm"),
            ("token", billing_token.as_str()),
            ("outcome", "erased"),
        ],
        vec![
            ("sagaId", saga_id.as_str()),
            ("participant", "billing"),
            ("token", email_token.as_str()),
            ("outcome", "erased"),
        ],
        vec![
            ("sagaId", saga_id.as_str()),
            ("participant", "billing"),
            ("token", billing_token.as_str()),
            ("outcome", "done"),
        ],
        vec![
            ("participant", "billing"),
            ("token", billing_token.as_str()),
            ("outcome", "erased"),
        ],
    ];
    for fields in &refused {
        send_reply(&redis, fields).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_at(&base, "saga_replies_refused_total").await < 5.0 {
        assert!(
            Instant::now() < deadline,
            "the forged replies were not all refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        erasure_record(&base, id).await,
        before,
        "refused replies changed the saga"
    );

    // A real answer, then the same answer again.
    let billing_erased = [
        ("sagaId", saga_id.as_str()),
        ("participant", "billing"),
        ("token", billing_token.as_str()),
        ("outcome", "erased"),
        ("reason", ""),
    ];
    send_reply(&redis, &billing_erased).await;
    let after_billing = wait_for(&base, id, "billing's confirmation", |r| {
        participant(r, "billing")["state"] == "confirmed"
    })
    .await;
    send_reply(&redis, &billing_erased).await;
    let email_erased = [
        ("sagaId", saga_id.as_str()),
        ("participant", "email"),
        ("token", email_token.as_str()),
        ("outcome", "erased"),
    ];
    send_reply(&redis, &email_erased).await;
    let completed = wait_for_state(&base, id, "completed").await;
    assert_eq!(
        participant(&completed, "billing"),
        participant(&after_billing, "billing"),
        "the repeated answer changed billing's record"
    );
    // Late: billing now says it failed; e-mail repeats itself.
    send_reply(
        &redis,
        &[
            ("sagaId", saga_id.as_str()),
            ("participant", "billing"),
            ("token", billing_token.as_str()),
            ("outcome", "failed"),
            ("reason", "changed its mind"),
        ],
    )
    .await;
    send_reply(&redis, &email_erased).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_at(&base, "saga_replies_refused_total").await < 6.0
        || metric_at(&base, "saga_replies_recorded_total").await < 4.0
    {
        assert!(
            Instant::now() < deadline,
            "the late replies were not handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(erasure_record(&base, id).await, completed);
    assert_eq!(metric_at(&base, "saga_replies_refused_total").await, 6.0);
    let completions = saga_events(&redis)
        .await
        .into_iter()
        .filter(|e| e["eventType"] == "CustomerErasureCompleted")
        .count();
    assert_eq!(completions, 1);
}

async fn the_deadline_fails_the_saga_visibly(backend: Backend) {
    let Some(url) = redis_url() else { return };
    let redis = unique_redis(url);
    let app = spawn_app_with(backend, |c| {
        with_sagas(c, &redis, Duration::from_secs(3), DAY);
    })
    .await;
    let base = app.address.clone();
    let id = app.create_id(&john()).await;
    let email = Team::start(&redis, "email");
    assert_eq!(erase(&base, id).await, 204);

    // Past half its deadline: a note in health, not a degradation.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = health_at(&base).await;
        let note = &report["checks"]["sagas"];
        if note["pastHalfDeadline"] == 1 {
            assert_eq!(note["status"], "attention");
            assert_eq!(note["open"], 1);
            assert!(
                note["message"]
                    .as_str()
                    .unwrap()
                    .contains("1 open saga past half its deadline"),
                "{note}"
            );
            assert_eq!(report["status"], "healthy");
            assert_eq!(metric_at(&base, "sagas_past_half_deadline").await, 1.0);
            assert!(metric_at(&base, "saga_oldest_open_age_seconds").await >= 1.5);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never past half its deadline: {note}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let record = wait_for_state(&base, id, "failed").await;
    assert_eq!(
        record["reason"],
        "the deadline passed before billing confirmed"
    );
    assert_eq!(participant(&record, "email")["state"], "confirmed");
    assert_eq!(participant(&record, "billing")["state"], "requested");
    assert_eq!(participant(&record, "billing")["nextAskAt"], Value::Null);
    assert!(crate::test_app::is_iso_millis(&record["endedAt"]));
    assert!(record["endedAt"].as_str() >= record["deadline"].as_str());
    assert_eq!(metric_at(&base, r#"sagas{state="failed"}"#).await, 1.0);
    assert_eq!(metric_at(&base, r#"sagas{state="open"}"#).await, 0.0);
    let report = health_at(&base).await;
    assert_eq!(report["checks"]["sagas"]["failed"], 1);
    assert_eq!(report["checks"]["sagas"]["pastHalfDeadline"], 0);
    assert_eq!(report["status"], "healthy");
    let failed = json_of(app.get("/api/v1/sagas?state=failed").await, 200).await;
    assert_eq!(failed["data"]["sagas"][0]["customerId"], id);

    // The API's parameters.
    let bad = json_of(
        app.get("/api/v1/sagas?state=stuck&limit=0&before=x").await,
        400,
    )
    .await;
    assert_eq!(
        bad["fieldErrors"],
        json!({
            "state": ["state must be one of open, failed, completed, cancelled"],
            "limit": ["limit must be a whole number from 1 to 100"],
            "before": ["before must be a saga id (a positive whole number)"],
        })
    );
    email.stop().await;
}

async fn a_cancelled_saga_refuses_answers(backend: Backend) {
    let Some(url) = redis_url() else { return };
    let redis = unique_redis(url);
    let app = spawn_app_with(backend, |c| with_sagas(c, &redis, 30 * DAY, DAY)).await;
    let base = app.address.clone();
    let mut ids = Vec::new();
    for n in 0..3 {
        let body =
            json!({"email": format!("c{n}@example.com"), "firstName": "Ann", "lastName": "Lee"});
        let id = app.create_id(&body).await;
        assert_eq!(erase(&base, id).await, 204);
        ids.push(id);
    }
    let events = wait_for_saga_events(&redis, 6).await;
    let saga_of = |id: i64| {
        events
            .iter()
            .find(|e| e["data"]["customerId"] == id)
            .unwrap()["data"]["sagaId"]
            .as_i64()
            .unwrap()
    };
    let saga_id = saga_of(ids[1]);
    let (ok, said) = saga_cli(
        &app,
        &[
            "sagas",
            "cancel",
            &saga_id.to_string(),
            "--reason",
            "asked twice by mistake",
        ],
    )
    .await;
    assert!(ok, "{said}");
    assert_eq!(said, format!("saga {saga_id} cancelled\n"));
    let record = erasure_record(&base, ids[1]).await;
    assert_eq!(record["state"], "cancelled");
    assert_eq!(record["reason"], "asked twice by mistake");

    // Its participants answer anyway: refused, nothing changes.
    let token = requests_for(&events, "billing")
        .into_iter()
        .find(|e| e["data"]["sagaId"] == saga_id)
        .unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    send_reply(
        &redis,
        &[
            ("sagaId", &saga_id.to_string()),
            ("participant", "billing"),
            ("token", &token),
            ("outcome", "erased"),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_at(&base, "saga_replies_refused_total").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the answer to a cancelled saga was not refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(erasure_record(&base, ids[1]).await, record);

    // Paging: newest first, two per page.
    let first = json_of(app.get("/api/v1/sagas?limit=2").await, 200).await;
    let page: Vec<i64> = first["data"]["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["customerId"].as_i64().unwrap())
        .collect();
    assert_eq!(page, [ids[2], ids[1]]);
    let before = first["data"]["nextBefore"].as_i64().unwrap();
    let second = json_of(
        app.get(&format!("/api/v1/sagas?limit=2&before={before}"))
            .await,
        200,
    )
    .await;
    assert_eq!(second["data"]["sagas"][0]["customerId"], ids[0]);
    assert_eq!(second["data"]["nextBefore"], Value::Null);
    let cancelled = json_of(app.get("/api/v1/sagas?state=cancelled").await, 200).await;
    assert_eq!(cancelled["data"]["sagas"].as_array().unwrap().len(), 1);
    let (ok, listed) = saga_cli(&app, &["sagas", "list"]).await;
    assert!(ok);
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(listed.contains("cancelled"), "{listed}");
}

/// The service killed mid-saga — and, on the databases several instances share, a leader
/// change — then the saga goes on from where it was: one request per participant, no more.
async fn a_killed_orchestrator_resumes_where_it_was_without_asking_twice(backend: Backend) {
    let Some(redis_server) = OwnRedis::start().or_skip() else {
        return;
    };
    let redis = unique_redis(redis_server.url());
    let (database_url, _dir) = fresh_database(backend).await;
    let log_dir = std::env::temp_dir().join(format!("cs_test_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&log_dir).unwrap();
    let _log_dir = crate::test_app::TempDir(log_dir.clone());
    let log = log_dir.join("service.log");
    let env = vec![
        ("DATABASE_URL", database_url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("REDIS_KEY_PREFIX", redis.key_prefix.clone()),
        ("EVENT_CHANNEL", redis.channel.clone()),
        ("EVENT_STREAM", redis.stream.clone()),
        ("ERASURE_PARTICIPANTS", PARTICIPANTS.join(",")),
        ("RELAY_LEASE_TTL_MS", "1500".to_owned()),
    ];
    let shared = backend != Backend::Sqlite;
    let mut first = ServiceProcess::start_logging(&env, Some(&log)).await;
    let mut second = if shared {
        Some(ServiceProcess::start_logging(&env, Some(&log)).await)
    } else {
        None
    };
    let client = reqwest::Client::new();
    let created = client
        .post(first.url("/api/v1/customers"))
        .json(&john())
        .send()
        .await
        .unwrap();
    let id = json_of(created, 201).await["data"]["id"].as_i64().unwrap();
    let billing = Team::start(&redis, "billing");
    assert_eq!(erase(&first.base, id).await, 204);
    wait_for(&first.base, id, "billing's confirmation", |r| {
        participant(r, "billing")["state"] == "confirmed"
    })
    .await;

    // Kill whoever leads (on SQLite the only instance, started again afterwards).
    let first_leads = first.metric("relay_leader").await == Some(1.0);
    let survivor = match second.as_mut() {
        Some(second) if first_leads => {
            first.kill();
            &*second
        }
        Some(second) => {
            second.kill();
            &first
        }
        None => {
            first.kill();
            first = ServiceProcess::start_logging(&env, Some(&log)).await;
            &first
        }
    };
    let email = Team::start(&redis, "email");
    let record = wait_for_state(&survivor.base, id, "completed").await;
    assert_eq!(participant(&record, "billing")["attempts"], 1);
    assert_eq!(participant(&record, "email")["attempts"], 1);
    let events = wait_for_saga_events(&redis, 3).await;
    assert_eq!(
        events.len(),
        3,
        "one request per participant, one completion"
    );
    assert_eq!(requests_for(&events, "billing").len(), 1);
    assert_eq!(requests_for(&events, "email").len(), 1);
    assert_eq!(billing.calls(), [id]);
    assert_eq!(email.calls(), [id]);

    // A forged reply is refused and logged; the log names no personal value.
    send_reply(
        &redis,
        &[
            ("sagaId", "424242"),
            ("participant", "billing"),
            ("token", "x"),
            ("outcome", "erased"),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("refused a saga reply") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the refusal was not logged:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("saga orchestrator active"), "{text}");
    assert!(text.contains("no such saga"), "{text}");
    for value in PERSONAL {
        assert!(!text.contains(value), "{value:?} in the log:\n{text}");
    }
    billing.stop().await;
    email.stop().await;
    drop(second);
    drop(first);
}

#[tokio::test]
async fn participants_without_a_broker_stop_the_service_at_start_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("cs_test_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = crate::test_app::TempDir(dir.clone());
    let database = format!("sqlite://{}", dir.join("customers.db").display());
    let port = test_servers::free_port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_customer-service"))
            .env("DATABASE_URL", database)
            .env("PORT", port)
            .env("ERASURE_PARTICIPANTS", "billing,email")
            .env_remove("REDIS_URL")
            .env_remove("REDIS_HOST")
            .env_remove("NATS_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        // A service that started after all would serve forever: give it 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "ERASURE_PARTICIPANTS needs a message broker: participants get their erasure \
             requests with the events and answer on <EVENT_STREAM>:erasure-replies (Redis) or \
             <NATS_SUBJECT_PREFIX>.erasure-replies (NATS). Set REDIS_URL (or REDIS_HOST) or \
             NATS_URL, or unset ERASURE_PARTICIPANTS"
        ),
        "{stderr}"
    );
    assert!(!dir.join("customers.db").exists(), "nothing was started");
}
