//! The read model a consumer team would write (customer-events'
//! `examples/customer_directory`), started against a service that already has history:
//! through the HTTP API alone it catches up and then follows live, converging to the
//! service's own list — erased and deleted customers gone, changes applied.

use std::time::{Duration, Instant};

use customer_events::projection::{http::HttpSource, Options, Runner};
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;

use crate::test_app::{json_of, minimal, spawn_app, Backend, TestApp};

#[path = "../../../customer-events/examples/customer_directory/directory.rs"]
mod directory;

/// `(id, full name, e-mail, country, active)` of every customer the API lists.
async fn listed(app: &TestApp) -> Vec<(i64, String, String, Option<String>, bool)> {
    let mut all = Vec::new();
    let mut page = 1;
    loop {
        let body = json_of(
            app.get(&format!("/api/v1/customers?limit=100&page={page}"))
                .await,
            200,
        )
        .await;
        let customers = body["data"]["customers"].as_array().unwrap().clone();
        for c in &customers {
            all.push((
                c["id"].as_i64().unwrap(),
                c["fullName"].as_str().unwrap().to_owned(),
                c["email"].as_str().unwrap().to_owned(),
                c["address"]["country"].as_str().map(str::to_owned),
                c["isActive"].as_bool().unwrap(),
            ));
        }
        if page >= body["data"]["totalPages"].as_i64().unwrap() {
            break;
        }
        page += 1;
    }
    all.sort();
    all
}

async fn history(app: &TestApp, from: usize, to: usize) {
    for n in from..to {
        let mut body = minimal(&format!("dir{n}@example.com"));
        let country = ["UK", "France"][n % 2];
        body["address"] = json!({"street": "1 Main St", "city": "Town", "country": country});
        let id = app.create_id(&body).await;
        match n % 5 {
            0 => {
                app.update(id, &json!({"lastName": "Renamed", "isActive": false}))
                    .await;
            }
            1 => {
                app.delete_customer(id).await;
            }
            2 => {
                let url = app.url(&format!("/api/v1/customers/{id}?erase=true"));
                assert_eq!(app.send(app.client.delete(url)).await.status(), 204);
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_example_catches_up_then_follows_live_to_the_apis_list() {
    let app = spawn_app(Backend::Sqlite).await;
    history(&app, 0, 1200).await;
    app.wait_until_published().await;

    sqlx::any::install_default_drivers();
    let dir = std::env::temp_dir().join(format!("cs_directory_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("directory.db").display());
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let options = Options {
        live_wait: Duration::from_millis(100),
        ..Options::default()
    };
    let mut runner = Runner::start(
        directory::Directory,
        HttpSource::new(&app.address, None),
        pool.clone(),
        options,
    )
    .await
    .unwrap();

    let converge = async |runner: &mut Runner<_, _, _>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            runner.step().await.unwrap();
            let events: Value = json_of(
                app.get(&format!(
                    "/api/v1/events?after={}&limit=1",
                    runner.position()
                ))
                .await,
                200,
            )
            .await;
            if events["data"]["events"].as_array().unwrap().is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "the directory did not catch up");
        }
        let mut conn = pool.acquire().await.unwrap();
        let people: Vec<_> = directory::search(&mut conn, "", None)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.id, p.name, p.email, p.country, p.active))
            .collect();
        assert_eq!(people, listed(&app).await);
        people.len()
    };
    // Behind before the first step: the whole history.
    let head = customer_service::application::EventLog::watermark(&*app.store)
        .await
        .unwrap();
    let lag = runner.lag().await.unwrap();
    assert_eq!((lag.position, lag.events), (0, Some(head)));
    // Catch-up over pages (1,200 customers and their changes: more than one page).
    let first = converge(&mut runner).await;
    let lag = runner.lag().await.unwrap();
    assert_eq!((lag.events, lag.ms), (Some(0), 0), "{lag:?}");
    assert_eq!(first, 720, "2 in 5 of 1,200 deleted or erased");
    // Then live, over the event stream.
    history(&app, 1200, 1300).await;
    app.wait_until_published().await;
    let second = converge(&mut runner).await;
    assert_eq!(second, 780);
    // The team's search: name or e-mail fragment, by country.
    let mut conn = pool.acquire().await.unwrap();
    let found = directory::search(&mut conn, "DIR123", Some("France"))
        .await
        .unwrap();
    let ids: Vec<String> = found.iter().map(|p| p.email.clone()).collect();
    assert_eq!(
        ids,
        [
            "dir123@example.com",
            "dir1233@example.com",
            "dir1235@example.com",
            "dir1239@example.com"
        ]
    );
    drop(conn);
    pool.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
