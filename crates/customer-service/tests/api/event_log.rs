//! The settled event log as cursor readers see it: `GET /api/v1/events`, the SSE stream's
//! resume, and the watermark that keeps a late-committing transaction from slipping behind a
//! reader's cursor.

use std::time::Duration;

use customer_events::EventType;
use customer_service::application::StoredEvent;
use customer_service::config::RedisConfig;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::test_app::{
    json_of, minimal, redis_url, spawn_app, spawn_app_with, stream_entries, streamed_payloads,
    unique_redis, Backend, TestApp,
};

crate::for_every_backend!(
    the_events_api_pages_every_published_event_in_position_order_with_filters,
    events_appear_only_once_published,
    sse_resumes_after_last_event_id_without_gap_or_duplicate_under_concurrent_writes,
    many_sse_clients_share_one_reader_of_the_log,
    replay_appends_exactly_the_original_envelopes_from_a_position_or_a_time,
    tail_prints_each_new_event_as_a_json_line,
    dead_letters_are_listed_re_delivered_and_purged,
    rates_count_the_settled_events_of_the_window_by_type_and_second,
);
crate::for_shared_backends!(
    a_rolled_back_position_holds_readers_back_only_for_the_grace_period,
    a_late_commit_never_slips_behind_a_readers_cursor,
);

/// Three customers' worth of every event type; returns the ids.
async fn some_history(app: &TestApp) -> Vec<i64> {
    let a = app.create_id(&minimal("a@example.com")).await;
    let b = app.create_id(&minimal("b@example.com")).await;
    let c = app.create_id(&minimal("c@example.com")).await;
    app.update(b, &json!({"isActive": false})).await;
    assert_eq!(app.delete_customer(c).await.status(), 204);
    vec![a, b, c]
}

/// The stored events of these customers, in log (position) order.
async fn log_of(app: &TestApp, ids: &[i64]) -> Vec<StoredEvent> {
    let mut stored = Vec::new();
    for id in ids {
        stored.extend(app.stored_events_of(*id).await);
    }
    stored.sort_by_key(|e| e.position);
    stored
}

/// Every event of the log through the API, `limit` at a time: (position, raw envelope).
async fn page_through(app: &TestApp, query: &str, limit: i64) -> Vec<(i64, String)> {
    let mut after = 0;
    let mut all = Vec::new();
    loop {
        let response = app
            .get(&format!(
                "/api/v1/events?after={after}&limit={limit}{query}"
            ))
            .await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        let events = body["data"]["events"].as_array().unwrap().clone();
        assert!(events.len() as i64 <= limit);
        for event in &events {
            let position = event["position"].as_i64().unwrap();
            // The envelope exactly as stored, whatever the key order of a JSON parser.
            let start = text
                .find(&format!(r#"{{"position":{position},"event":"#))
                .unwrap();
            let rest = &text[start..];
            let raw = &rest[rest.find(r#""event":"#).unwrap() + 8..];
            all.push((position, raw.to_owned()));
        }
        if events.is_empty() {
            assert_eq!(body["data"]["nextAfter"], json!(after));
            return all;
        }
        after = body["data"]["nextAfter"].as_i64().unwrap();
        assert_eq!(Some(after), all.last().map(|(p, _)| *p));
    }
}

async fn the_events_api_pages_every_published_event_in_position_order_with_filters(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |_| {}).await;
    let ids = some_history(&app).await;
    app.wait_until_published().await;
    let stored = log_of(&app, &ids).await;
    assert_eq!(stored.len(), 6);

    let all = page_through(&app, "", 2).await;
    assert_eq!(all.len(), stored.len());
    for ((position, raw), stored) in all.iter().zip(&stored) {
        assert_eq!(*position, stored.position);
        assert!(raw.starts_with(&stored.payload), "verbatim envelope");
    }
    let deleted = page_through(&app, "&type=CustomerDeleted", 10).await;
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0]
        .1
        .starts_with(r#"{"eventType":"CustomerDeleted""#));
    let of_b = page_through(&app, &format!("&customerId={}", ids[1]), 10).await;
    let expected: Vec<i64> = stored
        .iter()
        .filter(|e| e.aggregate.customer().map(|c| c.get()) == Some(ids[1]))
        .map(|e| e.position)
        .collect();
    assert_eq!(of_b.iter().map(|(p, _)| *p).collect::<Vec<_>>(), expected);
    assert_eq!(expected.len(), 3, "created, updated, deactivated");

    let body = json_of(
        app.get("/api/v1/events?after=-1&limit=0&type=Nope&customerId=0")
            .await,
        400,
    )
    .await;
    assert_eq!(
        body["fieldErrors"],
        json!({
            "after": ["after must not be less than 0"],
            "limit": ["limit must not be less than 1"],
            "type": ["type must be one of the following values: CustomerCreated, CustomerImported, CustomerUpdated, CustomerActivated, CustomerDeactivated, CustomerDeleted, CustomerErased, CustomerErasureRequested, CustomerErasureCompleted"],
            "customerId": ["customerId must not be less than 1"]
        })
    );
}

async fn events_appear_only_once_published(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.relay.enabled = false).await;
    app.create(&minimal("a@example.com")).await;
    app.create(&minimal("b@example.com")).await;
    let body = json_of(app.get("/api/v1/events").await, 200).await;
    assert_eq!(
        body["data"]["events"],
        json!([]),
        "pending events are not settled"
    );
    app.relay.step().await.unwrap();
    let body = json_of(app.get("/api/v1/events").await, 200).await;
    assert_eq!(body["data"]["events"].as_array().unwrap().len(), 2);
}

/// Reads SSE events from `response` until `count` arrived: `(id, data)`s (more read in the
/// same chunk are dropped).
async fn read_sse(response: &mut reqwest::Response, count: usize) -> Vec<(i64, String)> {
    read_sse_within(response, count, Duration::from_secs(20)).await
}

/// [`read_sse`] with a deadline of `wait`: parses each block as it completes (a client of
/// tens of thousands of events must not rescan what it read).
async fn read_sse_within(
    response: &mut reqwest::Response,
    count: usize,
    wait: Duration,
) -> Vec<(i64, String)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pending = Vec::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the events in time")
            .unwrap()
            .expect("the stream stays open");
        pending.extend_from_slice(&chunk);
        events.extend(
            complete_blocks(&mut pending)
                .iter()
                .filter_map(|b| sse_event(b)),
        );
    }
    events.truncate(count);
    events
}

/// Takes every complete SSE block (up to its blank line) out of `pending`. Bytes, not text:
/// a chunk may end inside a multi-byte character (the seed's names have é and ü), but never
/// inside a block's closing blank line.
fn complete_blocks(pending: &mut Vec<u8>) -> Vec<String> {
    let mut blocks = Vec::new();
    while let Some(end) = pending.windows(2).position(|pair| pair == b"\n\n") {
        let block: Vec<u8> = pending.drain(..end + 2).collect();
        blocks.push(String::from_utf8(block).expect("an SSE block is UTF-8"));
    }
    blocks
}

/// `(id, data)` of one SSE block, if it is an event (not a comment or keep-alive).
fn sse_event(block: &str) -> Option<(i64, String)> {
    let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name));
    Some((field("id: ")?.parse().unwrap(), field("data: ")?.to_owned()))
}

async fn sse_resumes_after_last_event_id_without_gap_or_duplicate_under_concurrent_writes(
    backend: Backend,
) {
    let app = std::sync::Arc::new(spawn_app_with(backend, |_| {}).await);
    let mut first = app.get("/api/v1/events/stream?after=0").await;
    assert_eq!(first.status(), 200);
    // 4 writers × 15 customers × (create + update) = 120 events, while the client reads,
    // drops the connection and resumes.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..15 {
                    let id = app
                        .create_id(&minimal(&format!("w{w}-{i}@example.com")))
                        .await;
                    app.update(id, &json!({"lastName": "Next"})).await;
                }
            })
        })
        .collect();
    let mut received = read_sse(&mut first, 37).await;
    drop(first);
    let last = received.last().unwrap().0;
    let mut resumed = app
        .get_with("/api/v1/events/stream", "Last-Event-ID", last.to_string())
        .await;
    assert_eq!(resumed.status(), 200);
    let bad = app
        .get_with("/api/v1/events/stream", "Last-Event-ID", "yesterday")
        .await;
    assert_eq!(
        json_of(bad, 400).await["fieldErrors"],
        json!({"Last-Event-ID": ["Last-Event-ID must be a log position (an integer of 0 or more)"]})
    );
    for writer in writers {
        writer.await.unwrap();
    }
    received.extend(read_sse(&mut resumed, 120 - 37).await);

    app.wait_until_published().await;
    let mut stored = Vec::new();
    for id in 1..=200 {
        stored.extend(app.stored_events_of(id).await);
    }
    stored.sort_by_key(|e| e.position);
    assert_eq!(stored.len(), 120);
    let expected: Vec<(i64, String)> = stored
        .into_iter()
        .map(|e| (e.position, e.payload))
        .collect();
    assert_eq!(received, expected, "every event once, in position order");
}

/// The log queries made for live streams so far (`/metrics`).
async fn stream_log_reads(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("events_stream_log_reads_total "))
        .unwrap_or_else(|| panic!("no events_stream_log_reads_total in\n{text}"))
        .parse()
        .unwrap()
}

/// Fifty live streams cost the database what one does: the instance reads the log once per
/// move and fans the events out in memory (queries counted, not timed).
async fn many_sse_clients_share_one_reader_of_the_log(backend: Backend) {
    const CLIENTS: usize = 50;
    const EVENTS: usize = 10;
    // All from this one address: above SSE_MAX_CLIENTS_PER_ADDRESS's default.
    let app = spawn_app_with(backend, |c| c.http.sse_max_clients_per_address = CLIENTS).await;
    let mut streams = Vec::new();
    for _ in 0..CLIENTS {
        let stream = app.get("/api/v1/events/stream").await;
        assert_eq!(stream.status(), 200);
        streams.push(stream);
    }
    // Two events every client receives: after the second, each has handed over from its
    // own catch-up to the shared reader.
    let mut received = vec![Vec::new(); CLIENTS];
    for i in 0..2 {
        app.create_id(&minimal(&format!("sync{i}@example.com")))
            .await;
        for (stream, got) in streams.iter_mut().zip(&mut received) {
            got.extend(read_sse(stream, 1).await);
        }
    }
    let before = stream_log_reads(&app).await;
    for i in 0..EVENTS {
        app.create_id(&minimal(&format!("live{i}@example.com")))
            .await;
    }
    for (stream, got) in streams.iter_mut().zip(&mut received) {
        got.extend(read_sse(stream, EVENTS).await);
    }
    let reads = stream_log_reads(&app).await - before;
    // One reader: a query per relay move (at most one per event) and per idle poll, whatever
    // the number of clients; a reader per client would have made at least CLIENTS × EVENTS.
    assert!(
        reads <= (2 * EVENTS + 10) as u64,
        "{reads} log queries for {EVENTS} events to {CLIENTS} clients"
    );
    let first = &received[0];
    assert_eq!(first.len(), EVENTS + 2);
    assert!(
        first.windows(2).all(|w| w[0].0 < w[1].0),
        "in position order"
    );
    assert!(
        received.iter().all(|got| got == first),
        "every client got the same events"
    );
}

/// The SSE body of `response` until the server ends it (or `wait` passes): `(id, data)`s.
async fn read_sse_to_end(response: &mut reqwest::Response, wait: Duration) -> Vec<(i64, String)> {
    let mut pending = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Some(chunk) = tokio::time::timeout_at(deadline, response.chunk())
        .await
        .expect("the stream ends in time")
        .expect("the body reads")
    {
        pending.extend_from_slice(&chunk);
    }
    complete_blocks(&mut pending)
        .iter()
        .filter_map(|b| sse_event(b))
        .collect()
}

/// Reads `count` events from `stream`, and when the server ends it (the client fell too far
/// behind), goes on as an `EventSource` would: reconnects with `Last-Event-ID`. Returns the
/// events and how many times it reconnected.
async fn read_resuming(
    app: &TestApp,
    mut stream: reqwest::Response,
    mut events: Vec<(i64, String)>,
    count: usize,
) -> (Vec<(i64, String)>, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut reconnects = 0;
    let mut pending = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("every event in time")
            .unwrap();
        let Some(chunk) = chunk else {
            let last = events.last().map_or(0, |e| e.0);
            stream = app
                .get_with("/api/v1/events/stream", "Last-Event-ID", last.to_string())
                .await;
            pending.clear();
            reconnects += 1;
            continue;
        };
        pending.extend_from_slice(&chunk);
        events.extend(
            complete_blocks(&mut pending)
                .iter()
                .filter_map(|b| sse_event(b)),
        );
    }
    (events, reconnects)
}

/// A client that stops reading falls behind the instance's one reader; past 4,096 events it
/// is ended, and resumes from the log with `Last-Event-ID` without gap or repeat. Meanwhile
/// a reading client gets every event: the reader never waits for the slow one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sse_client_is_dropped_resumably_and_never_slows_the_others() {
    const CUSTOMERS: usize = 10_000;
    const UPDATES: usize = 3;
    // Far more than the per-client buffer (4,096 events) plus what the sockets between the
    // two hold (~30 MB of events against a few MB of buffers).
    const EVENTS: usize = 1 + CUSTOMERS * (1 + UPDATES);
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let mut reading = app.get("/api/v1/events/stream").await;
    let mut slow = app.get("/api/v1/events/stream").await;
    // Both live: each has read the first event.
    app.create_id(&minimal("sync@example.com")).await;
    let reading_got = read_sse(&mut reading, 1).await;
    let mut slow_got = read_sse(&mut slow, 1).await;
    assert_eq!(reading_got, slow_got);
    let (ok, out) = app
        .run_cli(&[
            "seed",
            "--count",
            &CUSTOMERS.to_string(),
            "--updates-per-customer",
            &UPDATES.to_string(),
        ])
        .await;
    assert!(ok, "{out}");
    // The reading client gets them all, in order, once, while the slow one reads nothing.
    // (A burst this size may outrun even it; then it resumes, as browsers do.)
    let (all, _) = read_resuming(&app, reading, reading_got, EVENTS).await;
    assert_eq!(all.len(), EVENTS);
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "in log order, once"
    );
    // The slow one was ended part-way: what it holds is a prefix, then the stream ends.
    slow_got.extend(read_sse_to_end(&mut slow, Duration::from_secs(60)).await);
    assert!(
        slow_got.len() < EVENTS,
        "the slow client was not dropped ({} events)",
        slow_got.len()
    );
    assert_eq!(slow_got[..], all[..slow_got.len()]);
    // It resumes where it stopped and gets exactly the rest.
    let last = slow_got.last().unwrap().0;
    let resumed = app
        .get_with("/api/v1/events/stream", "Last-Event-ID", last.to_string())
        .await;
    let (slow_got, _) = read_resuming(&app, resumed, slow_got, EVENTS).await;
    assert_eq!(slow_got, all);
}

/// PostgreSQL and MySQL (a rolled-back SQLite transaction gives its AUTOINCREMENT value back): a
/// transaction takes a log position and rolls back; readers wait for it no longer than the
/// grace period, then go on.
async fn a_rolled_back_position_holds_readers_back_only_for_the_grace_period(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.relay.enabled = false;
        c.relay.gap_grace = Duration::from_millis(300);
    })
    .await;
    let first = app.create_id(&minimal("a@example.com")).await;
    burn_a_position(&app, first).await;
    app.create(&minimal("b@example.com")).await;
    app.relay.step().await.unwrap();
    let visible = |body: Value| body["data"]["events"].as_array().unwrap().len();
    assert_eq!(
        visible(json_of(app.get("/api/v1/events").await, 200).await),
        1,
        "the second event waits behind the missing position"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    app.relay.step().await.unwrap();
    assert_eq!(
        visible(json_of(app.get("/api/v1/events").await, 200).await),
        2,
        "after the grace period the missing position counts as rolled back"
    );
}

/// Inserts an event in a transaction that rolls back: its position is used up.
async fn burn_a_position(app: &TestApp, customer: i64) {
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    sqlx::query(app.sql(
        "insert into customer_events (event_id, event_type, customer_id, sequence, \
         occurred_at_ms, payload) values ('burnt', 'CustomerDeleted', $1, 99, 0, '{}')",
    ))
    .bind(customer)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
}

/// PostgreSQL and MySQL (SQLite has one writer, so commits happen in position order): an event
/// committed while an earlier position's transaction is still open stays invisible to
/// readers until that one commits — then both appear, in position order.
async fn a_late_commit_never_slips_behind_a_readers_cursor(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.relay.enabled = false).await;
    let first = app.create_id(&minimal("a@example.com")).await;
    app.relay.step().await.unwrap();

    // An open transaction holding the next position.
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    let payload = app.stored_events_of(first).await[0]
        .payload
        .replace("\"sequence\":1", "\"sequence\":2");
    sqlx::query(app.sql(
        "insert into customer_events (event_id, event_type, customer_id, sequence, \
         occurred_at_ms, payload) values ('late_one', 'CustomerCreated', $1, 2, 0, $2)",
    ))
    .bind(first)
    .bind(&payload)
    .execute(&mut *tx)
    .await
    .unwrap();

    let second = app.create_id(&minimal("b@example.com")).await;
    app.relay.step().await.unwrap();
    let positions = |body: Value| -> Vec<i64> {
        body["data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["position"].as_i64().unwrap())
            .collect()
    };
    let seen = positions(json_of(app.get("/api/v1/events").await, 200).await);
    assert_eq!(
        seen.len(),
        1,
        "the second create waits behind the open transaction"
    );
    let cursor = seen[0];

    tx.commit().await.unwrap();
    app.relay.step().await.unwrap();
    let after = positions(
        json_of(
            app.get(&format!("/api/v1/events?after={cursor}")).await,
            200,
        )
        .await,
    );
    let late = app.stored_events_of(first).await[1].position;
    let second_position = app.stored_events_of(second).await[0].position;
    assert!(late < second_position);
    assert_eq!(after, [late, second_position], "nothing skipped, in order");
}

/// `customer-service events replay <args> --stream <target's stream>`.
async fn replay_to(app: &TestApp, target: &RedisConfig, args: &[&str]) -> (bool, String) {
    let mut all = vec!["events", "replay"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--stream", &target.stream]);
    app.run_cli(&all).await
}

async fn replay_appends_exactly_the_original_envelopes_from_a_position_or_a_time(backend: Backend) {
    let Some(url) = redis_url() else {
        return;
    };
    let app = spawn_app_with(backend, |c| c.redis = Some(unique_redis(url))).await;
    let ids = some_history(&app).await;
    app.wait_until_published().await;
    let stored = log_of(&app, &ids).await;
    let redis = app.redis.clone().unwrap();
    // What the relay published is what the log holds.
    let published = streamed_payloads(&redis).await;
    let payloads: Vec<String> = stored.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(published, payloads);

    let replayed = |name: &str| {
        let mut target = redis.clone();
        target.stream = format!("{}:{name}", redis.stream);
        target
    };
    // From a position (inclusive), to the end.
    let from = stored[2].position.to_string();
    let target = replayed("from-position");
    let (ok, out) = replay_to(&app, &target, &["--from", &from]).await;
    assert!(ok, "{out}");
    assert_eq!(out, format!("replayed 4 events to {}\n", target.stream));
    let entries = stream_entries(&target).await;
    let expected: Vec<Vec<String>> = stored[2..]
        .iter()
        .map(|e| {
            vec![
                "type".into(),
                e.event_type.to_string(),
                "id".into(),
                e.event_id.clone(),
                "event".into(),
                e.payload.clone(),
            ]
        })
        .collect();
    assert_eq!(
        entries.into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
        expected
    );

    // From a time: every event that occurred at or after it; up to a position; by type.
    let at = chrono::DateTime::from_timestamp_millis(stored[3].occurred_at.millis())
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let first = stored
        .iter()
        .position(|e| e.occurred_at.millis() >= stored[3].occurred_at.millis())
        .unwrap();
    let target = replayed("from-time");
    let (ok, out) = replay_to(&app, &target, &["--from", &at]).await;
    assert!(ok, "{out}");
    assert_eq!(streamed_payloads(&target).await, payloads[first..]);

    let to = stored[1].position.to_string();
    let target = replayed("range");
    let (ok, _) = replay_to(&app, &target, &["--from", "0", "--to", &to]).await;
    assert!(ok);
    assert_eq!(streamed_payloads(&target).await, payloads[..2]);

    let target = replayed("typed");
    let (ok, _) = replay_to(&app, &target, &["--from", "0", "--type", "CustomerCreated"]).await;
    assert!(ok);
    let created: Vec<String> = stored
        .iter()
        .filter(|e| e.event_type == EventType::CustomerCreated)
        .map(|e| e.payload.clone())
        .collect();
    assert_eq!(streamed_payloads(&target).await, created);
}

async fn tail_prints_each_new_event_as_a_json_line(backend: Backend) {
    use std::io::BufRead;

    let app = spawn_app_with(backend, |_| {}).await;
    let before = app.create_id(&minimal("before@example.com")).await;
    app.wait_until_published().await;
    // Started after the first customer's event, however late the process gets going.
    let after = app.stored_events_of(before).await[0].position.to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_customer-service"))
        .args(["events", "tail", "--after", &after])
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .collect::<Result<Vec<String>, _>>()
    });
    let id = app.create_id(&minimal("after@example.com")).await;
    app.update(id, &json!({"lastName": "Tailed"})).await;
    let lines = tokio::time::timeout(Duration::from_secs(20), lines)
        .await
        .expect("two lines within 20 s")
        .unwrap()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let expected: Vec<String> = app
        .stored_events_of(id)
        .await
        .iter()
        .map(|e| format!(r#"{{"position":{},"event":{}}}"#, e.position, e.payload))
        .collect();
    assert_eq!(lines, expected);
}

async fn dead_letters_are_listed_re_delivered_and_purged(backend: Backend) {
    use customer_events::consumer::{Consumer, ConsumerConfig, Outcome};

    let Some(url) = redis_url() else {
        return;
    };
    let app = spawn_app_with(backend, |c| c.redis = Some(unique_redis(url.clone()))).await;
    let stream = app.redis.as_ref().unwrap().stream.clone();
    let poison = app.create_id(&minimal("poison@example.com")).await;
    app.create(&minimal("fine@example.com")).await;
    app.wait_until_published().await;

    let mut config = ConsumerConfig::new(&stream, "billing", "worker-1");
    config.max_attempts = 2;
    config.backoff = Duration::from_millis(1);
    config.block = Duration::from_millis(50);
    let consumer = Consumer::new(&url, config).unwrap();
    let failing = |envelope: customer_events::Envelope<customer_events::CustomerEvent>| async move {
        if envelope.metadata.aggregate_id == poison {
            Err("billing system down".to_owned())
        } else {
            Ok(())
        }
    };
    let outcomes = consumer.poll_once(failing).await.unwrap();
    assert_eq!(
        outcomes,
        [Outcome::DeadLettered { attempts: 2 }, Outcome::Handled]
    );

    let (ok, out) = app.run_cli(&["events", "dlq", "list"]).await;
    assert!(ok, "{out}");
    let event_id = &app.stored_events_of(poison).await[0].event_id;
    let line = out.lines().next().unwrap();
    assert!(
        line.contains(&format!("eventId={event_id} type=CustomerCreated group=billing consumer=worker-1 attempts=2 error=\"billing system down\"")),
        "{out}"
    );
    assert!(
        !out.contains("poison@example.com"),
        "no personal data: {out}"
    );
    assert!(
        out.ends_with(&format!("1 dead letter in {stream}:dlq\n")),
        "{out}"
    );

    let (ok, out) = app.run_cli(&["events", "dlq", "retry", "--all"]).await;
    assert!(ok, "{out}");
    assert_eq!(out, format!("re-delivered 1 dead letter to {stream}\n"));
    // The group gets it again; this time the handler succeeds.
    let outcomes = consumer
        .poll_once(|_| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::Handled]);
    let (_, out) = app.run_cli(&["events", "dlq", "list"]).await;
    assert!(out.starts_with("0 dead letters"), "{out}");

    // Purge: fill it again, then empty it.
    app.create(&minimal("late@example.com")).await;
    app.wait_until_published().await;
    let outcomes = consumer
        .poll_once(|_| async { Err::<(), String>("no".into()) })
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::DeadLettered { attempts: 2 }]);
    let (ok, out) = app.run_cli(&["events", "dlq", "purge"]).await;
    assert!(ok);
    assert_eq!(out, format!("purged 1 dead letter from {stream}:dlq\n"));
    // `--all` with nothing to retry has nothing to fail at; a missing id is an error.
    let (ok, out) = app.run_cli(&["events", "dlq", "retry", "--all"]).await;
    assert!(ok, "{out}");
    assert_eq!(out, format!("nothing to retry: {stream}:dlq is empty\n"));
    let (ok, _) = app.run_cli(&["events", "dlq", "retry", "1-0"]).await;
    assert!(!ok, "no such dead letter");
}

async fn rates_count_the_settled_events_of_the_window_by_type_and_second(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(
            app.create_id(&minimal(&format!("rate{n}@example.com")))
                .await,
        );
    }
    app.update(ids[0], &json!({"lastName": "Counted"})).await;
    app.update(ids[1], &json!({"isActive": false})).await;
    // The first two events an hour old: outside the window. (Older events come first in a
    // real log; the window's start is searched by position.)
    sqlx::any::install_default_drivers();
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    let hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
    sqlx::query(app.sql(
        "update customer_events set occurred_at_ms = $1 where customer_id = $2 and sequence = 1",
    ))
    .bind(hour_ago)
    .bind(ids[0])
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query(app.sql(
        "update customer_events set occurred_at_ms = $1 where customer_id = $2 and sequence = 1",
    ))
    .bind(hour_ago + 1)
    .bind(ids[1])
    .execute(&mut db)
    .await
    .unwrap();
    app.wait_until_published().await;

    let body = json_of(app.get("/api/v1/events/rates").await, 200).await;
    let data = &body["data"];
    let watermark = customer_service::application::EventLog::watermark(&*app.store)
        .await
        .unwrap();
    assert_eq!(data["upTo"], watermark);
    let mut totals = std::collections::BTreeMap::<String, i64>::new();
    let mut previous = String::new();
    for second in data["perSecond"].as_array().unwrap() {
        let at = second["at"].as_str().unwrap().to_owned();
        assert!(
            at.ends_with(".000Z") && at > previous,
            "seconds ascending: {at}"
        );
        previous = at;
        for (event_type, n) in second["counts"].as_object().unwrap() {
            *totals.entry(event_type.clone()).or_default() += n.as_i64().unwrap();
        }
    }
    let expected: std::collections::BTreeMap<String, i64> = [
        ("CustomerCreated", 4),
        ("CustomerDeactivated", 1),
        ("CustomerUpdated", 2),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_owned(), n))
    .collect();
    assert_eq!(totals, expected, "{body}");
    let since = chrono::DateTime::parse_from_rfc3339(data["since"].as_str().unwrap()).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(data["until"].as_str().unwrap()).unwrap();
    assert_eq!((until - since).num_seconds(), 120);

    // The longest window (10 minutes) still leaves the hour-old ones out.
    let body = json_of(app.get("/api/v1/events/rates?seconds=600").await, 200).await;
    let counted: i64 = body["data"]["perSecond"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["counts"].as_object().unwrap().values())
        .map(|n| n.as_i64().unwrap())
        .sum();
    assert_eq!(counted, 7, "{body}");

    for bad in ["0", "601", "x"] {
        let body = json_of(
            app.get(&format!("/api/v1/events/rates?seconds={bad}"))
                .await,
            400,
        )
        .await;
        assert!(body["fieldErrors"]["seconds"].is_array(), "{bad}: {body}");
    }
}
