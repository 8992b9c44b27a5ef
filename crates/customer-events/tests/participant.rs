//! The erasure participant helper against a real Redis (`TEST_REDIS_URL`, or a
//! `redis-server` this run starts), playing the service's part by hand: requests written to
//! the stream as the relay writes them, answers read from `<stream>:erasure-replies`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use customer_events::consumer::Outcome;
use customer_events::participant::{
    reply_stream, Participant, ParticipantConfig, MAX_REASON_CHARS,
};
use customer_events::{new_event_id, CustomerErasureRequested, CustomerEvent, Envelope, EventType};
use redis::aio::MultiplexedConnection;

fn redis_url() -> Option<String> {
    test_servers::Server::Redis.url_or_skip()
}

async fn connection(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Writes a CustomerErasureRequested to `stream` as the relay does.
async fn request(
    conn: &mut MultiplexedConnection,
    stream: &str,
    participant: &str,
    token: &str,
    attempt: i64,
) {
    let event = CustomerEvent::CustomerErasureRequested(CustomerErasureRequested {
        saga_id: 7,
        customer_id: 42,
        participant: participant.into(),
        token: token.into(),
        attempt,
        requested_at: "2026-01-01T10:00:00.000Z".into(),
        deadline: "2026-01-31T10:00:00.000Z".into(),
    });
    let event_id = new_event_id(EventType::CustomerErasureRequested, 1_767_261_600_000);
    let envelope = Envelope::new(
        event,
        event_id.clone(),
        "2026-01-01T10:00:00.000Z".into(),
        -7,
        attempt,
        "saga-7".into(),
    )
    .to_json();
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("type")
        .arg("CustomerErasureRequested")
        .arg("id")
        .arg(event_id)
        .arg("event")
        .arg(envelope)
        .query_async(conn)
        .await
        .unwrap();
}

/// Every answer so far: its fields as (name, value) pairs.
async fn replies(conn: &mut MultiplexedConnection, stream: &str) -> Vec<Vec<(String, String)>> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(reply_stream(stream))
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    entries.into_iter().map(|(_, fields)| fields).collect()
}

fn field<'a>(reply: &'a [(String, String)], name: &str) -> &'a str {
    reply
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
}

fn participant(url: &str, stream: &str, name: &str) -> Participant {
    let mut config = ParticipantConfig::new(stream, name, format!("{name}-1"));
    config.consumer.block = Duration::from_millis(50);
    config.max_attempts = 3;
    config.backoff = Duration::from_millis(1);
    Participant::new(url, config).unwrap()
}

#[tokio::test]
async fn it_erases_once_per_token_answers_every_request_and_ignores_the_others() {
    let Some(url) = redis_url() else { return };
    let stream = format!("cs_test_{}:stream", uuid::Uuid::new_v4().simple());
    let mut conn = connection(&url).await;
    request(&mut conn, &stream, "billing", "t1", 1).await;
    request(&mut conn, &stream, "email", "t2", 1).await;
    // A reminder of the same request (its answer was lost, or billing was down).
    request(&mut conn, &stream, "billing", "t1", 2).await;

    let calls = Arc::new(Mutex::new(Vec::new()));
    let billing = participant(&url, &stream, "billing");
    let recorded = calls.clone();
    let outcomes = billing
        .poll_once(|customer_id| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push(customer_id);
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [Outcome::Handled, Outcome::Handled, Outcome::Handled]
    );
    assert_eq!(
        *calls.lock().unwrap(),
        [42],
        "erased once, for billing's token only"
    );
    let answers = replies(&mut conn, &stream).await;
    assert_eq!(
        answers.len(),
        2,
        "each request to billing answered: {answers:?}"
    );
    for answer in &answers {
        assert_eq!(field(answer, "sagaId"), "7");
        assert_eq!(field(answer, "participant"), "billing");
        assert_eq!(field(answer, "token"), "t1");
        assert_eq!(field(answer, "outcome"), "erased");
        assert_eq!(field(answer, "reason"), "");
    }
}

#[tokio::test]
async fn an_erase_that_keeps_failing_is_answered_failed_with_the_reason() {
    let Some(url) = redis_url() else { return };
    let stream = format!("cs_test_{}:stream", uuid::Uuid::new_v4().simple());
    let mut conn = connection(&url).await;
    request(&mut conn, &stream, "email", "t9", 1).await;
    let calls = Arc::new(Mutex::new(0));
    let email = participant(&url, &stream, "email");
    let counted = calls.clone();
    email
        .poll_once(|_| {
            let counted = counted.clone();
            async move {
                *counted.lock().unwrap() += 1;
                Err::<(), String>(format!("mail store down {}", "!".repeat(600)))
            }
        })
        .await
        .unwrap();
    assert_eq!(*calls.lock().unwrap(), 3, "max_attempts calls");
    let answers = replies(&mut conn, &stream).await;
    assert_eq!(answers.len(), 1);
    assert_eq!(field(&answers[0], "outcome"), "failed");
    let reason = field(&answers[0], "reason");
    assert!(reason.starts_with("mail store down !!!"));
    assert_eq!(reason.chars().count(), MAX_REASON_CHARS);

    // A later request with the same token is tried again: only success is remembered.
    request(&mut conn, &stream, "email", "t9", 2).await;
    email
        .poll_once(|_| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    let answers = replies(&mut conn, &stream).await;
    assert_eq!(field(&answers[1], "outcome"), "erased");
}
