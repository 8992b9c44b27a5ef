//! The `stats` read model: `GET /api/v1/customers/stats` equals a direct count of the
//! tables after any history, survives a `kill -9` mid-stream without counting an event twice,
//! is rebuilt blue/green while writes go on (the old copy answering throughout), and reads
//! events of older schema versions upcast.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::own_server::ServiceProcess;
use crate::test_app::{fresh_database, json_of, minimal, spawn_app, Backend, TestApp};

crate::for_every_backend!(
    stats_equal_a_direct_count_after_a_random_history,
    a_rebuild_while_writes_go_on_ends_equal_and_the_old_copy_answers_throughout,
    an_old_version_event_is_upcast_before_it_reaches_the_model,
    a_killed_process_counts_every_event_once_after_restart,
    the_projections_commands_show_the_state_and_rebuild_through_the_service,
);

/// What `GET /api/v1/customers/stats` should say, counted from the tables directly.
#[derive(Debug, PartialEq, Eq)]
struct Counted {
    active: i64,
    inactive: i64,
    deleted: i64,
    erased: i64,
    by_country: BTreeMap<String, i64>,
    signups: BTreeMap<String, i64>,
}

async fn direct_count(database_url: &str) -> Counted {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let backend = customer_service::store::Backend::of_url(database_url).unwrap();
    let sql =
        |text: &str| sqlx::AssertSqlSafe(customer_service::store::statement_for(backend, text));
    let mut db = customer_service::store::connect_one(database_url)
        .await
        .unwrap();
    let mut counted = Counted {
        active: 0,
        inactive: 0,
        deleted: 0,
        erased: 0,
        by_country: BTreeMap::new(),
        signups: BTreeMap::new(),
    };
    for (active, total) in [(true, &mut counted.active), (false, &mut counted.inactive)] {
        *total = sqlx::query_scalar(sql("select count(*) from customers where is_active = $1"))
            .bind(active)
            .fetch_one(&mut db)
            .await
            .unwrap();
    }
    let rows = sqlx::query(sql("select address, created_at_ms from customers"))
        .fetch_all(&mut db)
        .await
        .unwrap();
    for row in rows {
        let address: Option<String> = row.try_get(0).unwrap();
        let country = address
            .and_then(|a| serde_json::from_str::<Value>(&a).ok())
            .and_then(|a| a["country"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        *counted.by_country.entry(country).or_default() += 1;
        let created: i64 = row.try_get(1).unwrap();
        let day = chrono::DateTime::from_timestamp_millis(created)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string();
        *counted.signups.entry(day).or_default() += 1;
    }
    counted.deleted = sqlx::query_scalar(sql(
        "select count(distinct customer_id) from customer_events where event_type = 'CustomerDeleted'",
    ))
    .fetch_one(&mut db)
    .await
    .unwrap();
    counted.erased = sqlx::query_scalar(sql(
        "select count(*) from customer_events where event_type = 'CustomerErased'",
    ))
    .fetch_one(&mut db)
    .await
    .unwrap();
    counted
}

/// The stats as the API gives them, as [`Counted`] (sign-up days without the zeros).
fn as_counted(stats: &Value) -> Counted {
    let totals = &stats["totals"];
    let number = |v: &Value| v.as_i64().unwrap();
    assert_eq!(
        number(&totals["customers"]),
        number(&totals["active"]) + number(&totals["inactive"]),
        "{stats}"
    );
    let days = stats["signupsPerDay"].as_array().unwrap();
    assert_eq!(days.len(), 90, "{stats}");
    Counted {
        active: number(&totals["active"]),
        inactive: number(&totals["inactive"]),
        deleted: number(&totals["deleted"]),
        erased: number(&totals["erased"]),
        by_country: stats["byCountry"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), number(v)))
            .collect(),
        signups: days
            .iter()
            .filter(|d| number(&d["count"]) > 0)
            .map(|d| (d["date"].as_str().unwrap().to_owned(), number(&d["count"])))
            .collect(),
    }
}

/// The stats once they include every event of the log (bounded wait). The settled log may
/// stop short of the last event for a while (a position left by a killed transaction holds
/// the watermark for its grace period), so the mark is the log's last position.
async fn settled_stats(base: &str, client: &reqwest::Client, database_url: &str) -> Value {
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(database_url)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last: Option<i64> = sqlx::query_scalar("select max(position) from customer_events")
            .fetch_one(&mut db)
            .await
            .unwrap();
        let body: Value = client
            .get(format!("{base}/api/v1/customers/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = body["data"].clone();
        if last.is_some() && data["position"].as_i64() == last && data["lagMs"] == 0 {
            return data;
        }
        assert!(
            Instant::now() < deadline,
            "the stats did not reach position {last:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        country: Option<usize>,
        active: bool,
    },
    Update {
        pick: usize,
        country: Option<usize>,
    },
    SetActive {
        pick: usize,
        active: bool,
    },
    Delete {
        pick: usize,
    },
    Erase {
        pick: usize,
    },
}

const COUNTRIES: [&str; 4] = ["UK", "France", "Uk", "Côte d'Ivoire"];

fn op() -> impl Strategy<Value = Op> {
    let country = prop::option::of(0..COUNTRIES.len());
    prop_oneof![
        4 => (country.clone(), any::<bool>()).prop_map(|(country, active)| Op::Create { country, active }),
        2 => (any::<usize>(), country).prop_map(|(pick, country)| Op::Update { pick, country }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, active)| Op::SetActive { pick, active }),
        1 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Erase { pick }),
    ]
}

fn address(country: Option<usize>) -> Value {
    match country {
        Some(i) => json!({"street": "1 Main St", "city": "Town", "country": COUNTRIES[i]}),
        None => Value::Null,
    }
}

/// Plays `ops` through the API; ids of deleted customers stay pickable (erasing one is
/// allowed, the rest answer 404).
async fn play(app: &TestApp, ops: &[Op]) {
    let mut ids: Vec<i64> = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        let pick = |p: &usize| (!ids.is_empty()).then(|| ids[p % ids.len()]);
        match op {
            Op::Create { country, active } => {
                let mut body = minimal(&format!("p{n}@example.com"));
                body["isActive"] = json!(active);
                body["address"] = address(*country);
                ids.push(app.create_id(&body).await);
            }
            Op::Update { pick: p, country } => {
                if let Some(id) = pick(p) {
                    let status = app
                        .patch_customer(id, &json!({"address": address(*country)}))
                        .await
                        .status();
                    assert!(matches!(status.as_u16(), 200 | 404), "{status}");
                }
            }
            Op::SetActive { pick: p, active } => {
                if let Some(id) = pick(p) {
                    let status = app
                        .patch_customer(id, &json!({"isActive": active}))
                        .await
                        .status();
                    assert!(matches!(status.as_u16(), 200 | 404), "{status}");
                }
            }
            Op::Delete { pick: p } => {
                if let Some(id) = pick(p) {
                    let status = app.delete_customer(id).await.status();
                    assert!(matches!(status.as_u16(), 204 | 404), "{status}");
                }
            }
            Op::Erase { pick: p } => {
                if let Some(id) = pick(p) {
                    let url = app.url(&format!("/api/v1/customers/{id}?erase=true"));
                    let status = app.send(app.client.delete(url)).await.status();
                    assert!(matches!(status.as_u16(), 204 | 404), "{status}");
                }
            }
        }
    }
}

async fn stats_equal_a_direct_count_after_a_random_history(backend: Backend) {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};

    let cases = if backend == Backend::Sqlite { 6 } else { 3 };
    // A new seed each run (said on failure), so runs explore different histories.
    let seed: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::with_cases(cases),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let histories: Vec<Vec<Op>> = (0..cases)
        .map(|_| {
            prop::collection::vec(op(), 10..50)
                .new_tree(&mut runner)
                .unwrap()
                .current()
        })
        .collect();
    for ops in histories {
        let app = spawn_app(backend).await;
        play(&app, &ops).await;
        let stats = settled_stats(&app.address, &app.client, &app.database_url).await;
        assert_eq!(
            as_counted(&stats),
            direct_count(&app.database_url).await,
            "seed {seed:?}, after {ops:?}"
        );
    }
}

async fn a_rebuild_while_writes_go_on_ends_equal_and_the_old_copy_answers_throughout(
    backend: Backend,
) {
    use customer_service::application::ReadModels;

    let app = Arc::new(spawn_app(backend).await);
    for n in 0..300 {
        let mut body = minimal(&format!("before{n}@example.com"));
        body["address"] = address(Some(n % 2));
        app.create_id(&body).await;
    }
    let before = settled_stats(&app.address, &app.client, &app.database_url).await;
    assert_eq!(before["totals"]["customers"], 300);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = app
                    .create_id(&minimal(&format!("during{n}@example.com")))
                    .await;
                if n % 5 == 0 {
                    app.update(id, &json!({"isActive": false})).await;
                }
                n += 1;
            }
            n
        })
    };
    assert!(app.store.request_rebuild("stats").await.unwrap());
    // The old copy answers while the new one is built: never an error, never fewer
    // customers than before, until the new generation serves.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answers = 0;
    loop {
        let stats = json_of(app.get("/api/v1/customers/stats").await, 200).await;
        let customers = stats["data"]["totals"]["customers"].as_i64().unwrap();
        assert!(customers >= 300, "the serving copy went back: {stats}");
        answers += 1;
        let states = app.store.projection_states().await.unwrap();
        if states[0].generation == 2 && states[0].rebuild.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild did not finish: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(
        written > 0 && answers > 1,
        "{written} writes, {answers} answers"
    );
    let stats = settled_stats(&app.address, &app.client, &app.database_url).await;
    assert_eq!(as_counted(&stats), direct_count(&app.database_url).await);
    assert_eq!(stats["totals"]["customers"], 300 + written);
}

async fn an_old_version_event_is_upcast_before_it_reaches_the_model(backend: Backend) {
    use customer_service::application::ReadModels;

    let app = spawn_app(backend).await;
    let id = app.create_id(&minimal("old@example.com")).await;
    app.update(id, &json!({"isActive": false})).await;
    app.wait_until_published().await;
    // The deactivation as schema 1.0 stored it: no `actor`, version "1.0".
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    let payload: String = sqlx::query_scalar(app.sql(
        "select payload from customer_events where customer_id = $1 and event_type = 'CustomerDeactivated'",
    ))
    .bind(id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    let mut envelope: Value = serde_json::from_str(&payload).unwrap();
    envelope["data"].as_object_mut().unwrap().remove("actor");
    envelope["metadata"]["version"] = json!("1.0");
    sqlx::query(app.sql(
        "update customer_events set payload = $1 where customer_id = $2 and event_type = 'CustomerDeactivated'",
    ))
    .bind(envelope.to_string())
    .bind(id)
    .execute(&mut db)
    .await
    .unwrap();
    // The model has a status once its runner has created its first copy: the control row
    // is registered a moment before (on MariaDB, whose DDL is slow, long enough for a test
    // to look in between and find no model).
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.store.projection_states().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the stats model never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Replayed from position 0: the 1.0 event counts as a deactivation.
    assert!(app.store.request_rebuild("stats").await.unwrap());
    loop {
        let states = app.store.projection_states().await.unwrap();
        let state = states
            .first()
            .expect("the model keeps a status through its rebuild");
        if state.generation == 2 && state.rebuild.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild did not finish: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = settled_stats(&app.address, &app.client, &app.database_url).await;
    assert_eq!(stats["totals"]["inactive"], 1, "{stats}");
    assert_eq!(stats["totals"]["active"], 0, "{stats}");
}

async fn a_killed_process_counts_every_event_once_after_restart(backend: Backend) {
    let (database_url, _dir) = fresh_database(backend).await;
    let env = vec![("DATABASE_URL", database_url.clone())];
    let client = reqwest::Client::new();
    let mut service = ServiceProcess::start(&env).await;
    let base = Arc::new(service.base.clone());
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (base, client) = (base.clone(), client.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let body = json!({"email": format!("k{w}x{n}@example.com"),
                                      "firstName": "Kill", "lastName": "Test",
                                      "isActive": n % 3 != 0,
                                      "address": {"street": "1 St", "city": "C", "country": COUNTRIES[n % 4]}});
                    let sent = client
                        .post(format!("{base}/api/v1/customers"))
                        .json(&body)
                        .send()
                        .await;
                    if sent.is_err() {
                        return n;
                    }
                }
                unreachable!()
            })
        })
        .collect();
    // Killed at a random moment while the writes and the read model's batches run.
    tokio::time::sleep(Duration::from_millis(300 + fastrand::u64(..700))).await;
    service.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    let service = ServiceProcess::start(&env).await;
    let stats = settled_stats(&service.base, &client, &database_url).await;
    let counted = direct_count(&database_url).await;
    assert!(counted.active + counted.inactive > 0, "nothing was written");
    assert_eq!(as_counted(&stats), counted);
}

async fn the_projections_commands_show_the_state_and_rebuild_through_the_service(backend: Backend) {
    let app = spawn_app(backend).await;
    for n in 0..5 {
        app.create_id(&minimal(&format!("cli{n}@example.com")))
            .await;
    }
    let stats = settled_stats(&app.address, &app.client, &app.database_url).await;
    assert_eq!(stats["position"], 5);
    let (ok, out) = app.run_cli(&["projections", "status"]).await;
    assert!(ok, "{out}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "model",
            "generation",
            "position",
            "behind",
            "lag",
            "ms",
            "rebuild"
        ]
    );
    assert_eq!(lines[1], ["stats", "1", "5", "0", "0", "-"], "{out}");

    // Carried out by the running app; the command waits for the swap.
    let (ok, out) = app.run_cli(&["projections", "rebuild", "stats"]).await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with("rebuild of stats requested (serving: generation 1)\n"),
        "{out}"
    );
    assert!(
        out.ends_with("stats rebuilt: generation 2 serves, at position 5\n"),
        "{out}"
    );
    let (ok, out) = app.run_cli(&["projections", "status"]).await;
    assert!(
        ok && out.lines().nth(1).unwrap().starts_with("stats"),
        "{out}"
    );
    assert_eq!(
        out.lines().nth(1).unwrap().split_whitespace().nth(1),
        Some("2")
    );
    let again = settled_stats(&app.address, &app.client, &app.database_url).await;
    assert_eq!(again["totals"], stats["totals"]);

    let (ok, _) = app.run_cli(&["projections", "rebuild", "nope"]).await;
    assert!(!ok, "an unknown model fails");
}
