//! Connections that hold the server's resources: a half-sent request, an idle connection, an
//! idle keep-alive connection, more connections than the cap, event streams by the hundred,
//! a client that stops reading. None may starve a normal client or the probes; an SSE stream
//! is never cut for being quiet, only for not taking what it is sent.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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

const STREAM: &[u8] = b"GET /api/v1/events/stream HTTP/1.1\r\nHost: test\r\n\r\n";

/// A connection to `app` from the loopback address `from` (127.0.0.x).
async fn connect_from(app: &TestApp, from: [u8; 4], receive_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    socket
        .connect(app.address.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap()
}

/// Sends `request` on `stream` and reads the answer's head (and what came with it).
async fn head_of(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&read).contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed before an answer");
        read.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&read).into_owned()
}

/// The body of a refusal (a `Content-Length` answer) read to its end.
async fn refusal(stream: &mut TcpStream) -> (String, serde_json::Value) {
    let mut text = head_of(stream, STREAM).await;
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.parse().unwrap())
        })
        .expect("a Content-Length");
    let head = head.to_owned();
    let mut buffer = [0u8; 4096];
    while text.split_once("\r\n\r\n").unwrap().1.len() < length {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0);
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (head, serde_json::from_str(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_and_the_probes_answer_on_their_own_port() {
    let probe_port = test_servers::free_port();
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.http.header_timeout = Duration::from_secs(2);
        c.http.max_connections = 8;
        c.http.sse_max_clients = 4;
        c.http.sse_max_clients_per_address = 3;
        c.http.probe_port = Some(probe_port);
    })
    .await;
    // Three streams from one address; the fourth from it is refused.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from(&app, [127, 0, 0, 1], None).await;
        let head = head_of(&mut stream, STREAM).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        streams.push(stream);
    }
    let mut fourth = connect_from(&app, [127, 0, 0, 1], None).await;
    let (head, body) = refusal(&mut fourth).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: 5"),
        "{head}"
    );
    assert_eq!(
        body["message"],
        "Too many event streams are open from this address (SSE_MAX_CLIENTS_PER_ADDRESS); retry in 5 s"
    );
    assert_eq!(body["statusCode"], 503);
    assert_eq!(body["error"], "Service Unavailable");
    // Another address has room until the instance's cap (4).
    let mut other = connect_from(&app, [127, 0, 0, 2], None).await;
    assert!(head_of(&mut other, STREAM)
        .await
        .starts_with("HTTP/1.1 200"));
    streams.push(other);
    let mut third = connect_from(&app, [127, 0, 0, 3], None).await;
    let (head, body) = refusal(&mut third).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("(SSE_MAX_CLIENTS)"),
        "{body}"
    );
    drop((fourth, third));

    // Every other connection taken (4 streams + 4 silent sockets = HTTP_MAX_CONNECTIONS):
    // the main port makes new clients wait, the probe port answers.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(connect(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = connect(&app).await;
    waiting.write_all(LIVEZ).await.unwrap();
    let mut buffer = [0u8; 1024];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buffer))
            .await
            .is_err(),
        "the main port is full"
    );
    let probes = format!("http://127.0.0.1:{probe_port}");
    for path in [
        "/livez",
        "/readyz",
        "/api/v1/health",
        "/api/v1/customers/health",
        "/metrics",
    ] {
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            app.client.get(format!("{probes}{path}")).send(),
        )
        .await
        .expect("the probe port answers at once")
        .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    let metrics = app
        .client
        .get(format!("{probes}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("\nevents_streams_open 4\n"), "{metrics}");
    assert!(
        metrics.contains("\nevents_streams_refused_total 2\n"),
        "{metrics}"
    );
    // It serves nothing else.
    let answer = app
        .client
        .get(format!("{probes}/api/v1/customers"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);

    // A stream's slot is freed when its client goes away.
    drop(streams.pop());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut again = connect_from(&app, [127, 0, 0, 4], None).await;
        let head = head_of(&mut again, STREAM).await;
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never freed: {head}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_client_takes_nothing_is_closed_after_the_send_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.http.send_timeout = Duration::from_secs(1);
    })
    .await;
    // A client with a small receive buffer that never reads after the head.
    let mut stuck = connect_from(&app, [127, 0, 0, 1], Some(4096)).await;
    let head = head_of(&mut stuck, STREAM).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A reading client beside it, on the same address.
    let mut reader = app
        .send(app.client.get(app.url("/api/v1/events/stream")))
        .await;
    assert_eq!(reader.status(), 200);
    // Each update carries the preferences four times (current, previous, old and new):
    // ~9 KB an event, 600 of them, more than the kernel's largest send buffer (4 MB) and
    // hyper's own buffer together.
    const UPDATES: usize = 600;
    let mut body = crate::test_app::minimal("fill@example.com");
    body["preferences"] = serde_json::json!({"company": "a".repeat(1900)});
    let id = app.create_id(&body).await;
    for i in 0..UPDATES {
        let company = if i % 2 == 0 { "b" } else { "a" }.repeat(1900);
        let patch = serde_json::json!({"preferences": {"company": company}});
        assert_eq!(app.patch_customer(id, &patch).await.status(), 200);
    }
    // The reader gets every event.
    let mut seen = 0;
    let mut text = String::new();
    while seen < UPDATES {
        let chunk = tokio::time::timeout(Duration::from_secs(10), reader.chunk())
            .await
            .expect("the reading client is served")
            .unwrap()
            .expect("its stream is open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        // Count across chunk boundaries: only complete lines.
        seen = text.matches("event: CustomerUpdated\n").count();
    }
    // The stuck one is closed: reading now drains what was buffered, then ends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let closed = closed_after(&mut stuck, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the stuck stream is still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_cannot_parse_get_the_contracts_error_body() {
    let app = app(10_000).await;
    let many_headers: Vec<u8> = (0..120)
        .map(|i| format!("X-Header-{i}: 1\r\n"))
        .fold(
            b"GET /livez HTTP/1.1\r\nHost: test\r\n".to_vec(),
            |mut r, h| {
                r.extend_from_slice(h.as_bytes());
                r
            },
        )
        .into_iter()
        .chain(*b"\r\n")
        .collect();
    let mut huge_header = b"GET /livez HTTP/1.1\r\nHost: test\r\nX-Big: ".to_vec();
    huge_header.extend(std::iter::repeat_n(b'a', 500_000));
    huge_header.extend_from_slice(b"\r\n\r\n");
    for (request, status, message) in [
        (
            many_headers,
            "431 Request Header Fields Too Large",
            "Request header fields are too large",
        ),
        (
            huge_header,
            "431 Request Header Fields Too Large",
            "Request header fields are too large",
        ),
        (
            b"GARBAGE\r\n\r\n".to_vec(),
            "400 Bad Request",
            "Malformed HTTP request",
        ),
        (
            b"GET /li vez HTTP/1.1\r\nHost: test\r\n\r\n".to_vec(),
            "400 Bad Request",
            "Malformed HTTP request",
        ),
    ] {
        let mut stream = connect(&app).await;
        // The server may answer and close before it has read all of a huge head.
        let request_len = request.len();
        let _ = stream.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| {
            panic!(
                "a whole answer to {status}, got {} bytes: {answer:?}",
                answer.len()
            )
        });
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "expected {status} for a request of {} bytes: {head}",
            request_len
        );
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        assert!(
            lower.contains("\r\nx-content-type-options: nosniff"),
            "{head}"
        );
        let id = lower
            .lines()
            .find_map(|l| l.strip_prefix("x-correlation-id: "))
            .expect("a correlation id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["message"], message);
        assert_eq!(body["statusCode"].as_u64(), status[..3].parse().ok());
        assert_eq!(body["error"], status[4..]);
        assert_eq!(body["path"], "");
        assert!(crate::test_app::is_iso_millis(&body["timestamp"]), "{body}");
    }
    // Well-formed requests are untouched.
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with(r#"{"status":"ok"}"#) || answer.contains("\"status\":\"ok\""),
        "{answer}"
    );
}
