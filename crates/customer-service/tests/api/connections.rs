//! Connections that hold the server's resources: a half-sent request, an idle connection, an
//! idle keep-alive connection, and more connections than the cap. None may starve a normal
//! client; an SSE stream is never cut for being quiet.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::test_app::{spawn_app_with, Backend, TestApp};

async fn app(max_connections: usize) -> TestApp {
    spawn_app_with(Backend::Sqlite, |c| {
        c.http.header_timeout = Duration::from_secs(1);
        c.http.idle_timeout = Duration::from_secs(3);
        c.http.max_connections = max_connections;
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// How long until the server closes `stream` (reads to EOF, discarding what it sends); `None`
/// if it is still open after `at_most`.
async fn closed_after(stream: &mut TcpStream, at_most: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + at_most).into(), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

const LIVEZ: &[u8] = b"GET /livez HTTP/1.1\r\nHost: test\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_line_is_cut_at_the_header_timeout_while_others_are_served() {
    let app = app(10_000).await;
    let mut half = connect(&app).await;
    half.write_all(b"GET /api/v1/cust").await.unwrap();
    let mut silent = connect(&app).await;
    // Meanwhile a normal client is served.
    assert_eq!(app.get("/livez").await.status(), 200);
    let half_closed = closed_after(&mut half, Duration::from_secs(5)).await;
    let silent_closed = closed_after(&mut silent, Duration::from_secs(5)).await;
    assert!(
        half_closed.is_some_and(|d| d < Duration::from_secs(3)),
        "half request still open: {half_closed:?}"
    );
    assert!(
        silent_closed.is_some_and(|d| d < Duration::from_secs(3)),
        "silent connection still open: {silent_closed:?}"
    );
    assert_eq!(app.get("/livez").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_lives_until_the_idle_timeout_and_sse_is_never_cut() {
    let app = app(10_000).await;
    let mut sse = app
        .send(app.client.get(app.url("/api/v1/events/stream")))
        .await;
    assert_eq!(sse.status(), 200);
    let mut keep_alive = connect(&app).await;
    keep_alive.write_all(LIVEZ).await.unwrap();
    let mut buffer = [0u8; 1024];
    let n = keep_alive.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
    // Past the header timeout, the idle keep-alive connection still serves.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    keep_alive.write_all(LIVEZ).await.unwrap();
    let n = keep_alive.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "closed too early");
    // Idle for longer than the idle timeout: closed.
    let closed = closed_after(&mut keep_alive, Duration::from_secs(8)).await;
    assert!(
        closed.is_some_and(|d| d >= Duration::from_secs(2)),
        "idle keep-alive: {closed:?}"
    );
    // The SSE stream, quiet all along, is still open and still delivers.
    app.create_id(&crate::test_app::minimal("sse@example.com"))
        .await;
    let chunk = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = sse
                .chunk()
                .await
                .expect("the stream is open")
                .expect("not ended");
            if String::from_utf8_lossy(&chunk).contains("CustomerCreated") {
                return;
            }
        }
    })
    .await;
    assert!(chunk.is_ok(), "no event on the SSE stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_closes() {
    let app = app(3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&app).await);
    }
    // Give the server time to accept all three.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = connect(&app).await;
    fourth.write_all(LIVEZ).await.unwrap();
    let mut buffer = [0u8; 1024];
    // Not served while three idle connections fill the cap…
    assert!(
        tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buffer))
            .await
            .is_err(),
        "served over the cap"
    );
    // …and served once the header timeout has closed them.
    let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buffer))
        .await
        .expect("served after the idle connections closed")
        .unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
}
