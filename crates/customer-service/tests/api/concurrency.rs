//! Concurrent writers: uniqueness by the schema, and gapless per-customer sequences.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::test_app::{json_of, minimal, TestApp};

crate::on_every_backend!(
    fifty_concurrent_creates_of_one_email_yield_one_customer,
    twenty_concurrent_patches_of_one_customer_get_sequences_without_gaps,
);

async fn fifty_concurrent_creates_of_one_email_yield_one_customer(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            // Every variant spells the same address in another case.
            let email: String = "race.winner@example.com"
                .chars()
                .enumerate()
                .map(|(j, c)| {
                    if (i >> (j % 6)) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            tokio::spawn(async move { app.post_customer(&minimal(&email)).await.status().as_u16() })
        })
        .collect();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for task in tasks {
        *statuses.entry(task.await.unwrap()).or_default() += 1;
    }
    assert_eq!(statuses, HashMap::from([(201, 1), (409, 49)]));
    assert_eq!(app.event_count().await, 1);
    let count = json_of(app.get("/api/v1/customers/count").await, 200).await;
    assert_eq!(count["data"]["count"], 1);
}

async fn twenty_concurrent_patches_of_one_customer_get_sequences_without_gaps(app: TestApp) {
    let id = app.create_id(&minimal("hot@example.com")).await;
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let response = app
                    .patch_customer(id, &json!({"lastName": format!("Writer{i:02}")}))
                    .await;
                response.status().as_u16()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let events = app.events_of(id).await;
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["metadata"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=21).collect::<Vec<_>>());
    // Each update's previousData is the state the one before it produced: no interleaving.
    for pair in events[1..].windows(2) {
        assert_eq!(
            pair[1]["data"]["previousData"]["lastName"],
            pair[0]["data"]["lastName"]
        );
        assert_eq!(
            pair[1]["data"]["previousData"]["version"],
            pair[0]["metadata"]["sequence"]
        );
    }
    let last: &Value = &events[20]["data"];
    let current = json_of(app.get_customer(id).await, 200).await["data"].clone();
    assert_eq!(current["lastName"], last["lastName"]);
    assert_eq!(current["updatedAt"], last["updatedAt"]);
    assert_eq!(current["version"], 21);
}

/// A write that fails after its UPDATE locked the row (here on the e-mail's unique index)
/// must not hand its connection back to the pool with the transaction still open: every
/// other writer of that row would wait for it until the request timeout. (Found when one
/// of twenty concurrent PATCHes of one customer left a lock behind and three waited 30 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_leaves_no_transaction_open_behind_it() {
    use sqlx::Connection;

    if crate::test_app::postgres_url().is_none() {
        return;
    }
    let app = crate::test_app::spawn_app(crate::test_app::Backend::Postgres).await;
    app.create_id(&minimal("taken@example.com")).await;
    let other = app.create_id(&minimal("other@example.com")).await;
    let refused = json_of(
        app.patch_customer(other, &json!({"email": "taken@example.com"}))
            .await,
        409,
    )
    .await;
    assert_eq!(refused["message"], "Email already exists");
    // The relay's own mark transactions are legitimately open between their statements:
    // let it finish first, so that only a transaction left behind can show.
    app.wait_until_published().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let open: Vec<String> = sqlx::query_scalar(
        "select state from pg_stat_activity \
         where datname = current_database() and state like 'idle in transaction%'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(open, Vec::<String>::new(), "transactions left open");
    // The row is free for anyone else at once.
    sqlx::query("set lock_timeout = '2s'")
        .execute(&mut db)
        .await
        .unwrap();
    let updated = sqlx::query("update customers set last_name = 'Free' where id = $1")
        .bind(other)
        .execute(&mut db)
        .await
        .expect("the row is not locked");
    assert_eq!(updated.rows_affected(), 1);
    // The service's next write of that row goes through too.
    app.update(other, &json!({"firstName": "Next"})).await;
}
