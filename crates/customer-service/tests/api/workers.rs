//! The background workers' supervisor (issue #30): a worker meant to run until stop that
//! fails turns `/readyz` to 503 naming it, the instance stops after the drain, and
//! `run_until_stopped` returns an error naming the worker (`cli.rs` checks `serve`'s exit).

use std::time::{Duration, Instant};

use customer_service::App;
use serde_json::{json, Value};

use crate::test_app::{fresh_database, test_config, Backend};

#[tokio::test]
async fn a_failed_worker_makes_the_instance_not_ready_and_stops_it_with_an_error_naming_it() {
    let (url, _dir) = fresh_database(Backend::Sqlite).await;
    let mut config = test_config(url);
    config.fail_worker = Some("relay".into());
    let app = App::build(&config).await.expect("the app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let started = Instant::now();
    let running = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let client = reqwest::Client::new();

    // Not ready at once, naming the worker; still alive and serving meanwhile (the drain).
    let readyz = loop {
        let response = client.get(format!("{base}/readyz")).send().await.unwrap();
        if response.status() == 503 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "/readyz stayed {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        readyz,
        json!({"status": "not ready", "reason": "worker failed: relay"})
    );
    let livez = client.get(format!("{base}/livez")).send().await.unwrap();
    assert_eq!(livez.status(), 200);
    let list = client
        .get(format!("{base}/api/v1/customers"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);

    // Then it stops by itself, with the worker's name in the error.
    let stopped = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the instance stops after the drain")
        .unwrap();
    let error = stopped.expect_err("a failed worker is an error");
    assert_eq!(
        error.to_string(),
        "the relay worker panicked before the instance was stopped"
    );
    assert!(
        started.elapsed() >= customer_service::workers::FAILURE_DRAIN,
        "stopped before the drain: {:?}",
        started.elapsed()
    );
    assert!(
        client.get(format!("{base}/livez")).send().await.is_err(),
        "still listening"
    );
}

#[tokio::test]
async fn workers_that_end_by_design_fail_nothing_and_stop_ends_cleanly() {
    // No replica, no Redis, no NATS, no saga: several workers are not started at all, and the
    // e-mail keys' back-fill ends at once; the instance stays ready.
    let (url, _dir) = fresh_database(Backend::Sqlite).await;
    let config = test_config(url);
    let app = App::build(&config).await.expect("the app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let readyz = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    assert_eq!(
        readyz.json::<Value>().await.unwrap(),
        json!({"status": "ready"})
    );
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
