//! The HTTP/1.1 server loop: hyper connections with a connection cap, a header timeout and
//! an idle timeout, and graceful shutdown.
//!
//! `axum::serve` has no timeouts at all, and hyper 1's `header_read_timeout` starts whenever
//! a connection waits for a request head, so it would also close idle keep-alive connections
//! at the header timeout. Each connection here has a small watchdog instead: the connection's
//! IO and requests keep a few atomics current, and the watchdog looks at them on a coarse
//! tick (half the shorter timeout, so a deadline is enforced at most that late). Waking it on
//! every state change cost a fifth of the HTTP floor's throughput (two timer re-arms per
//! request); the tick costs 10,000 connections 2,000 cheap wake-ups a second. The deadline:
//! - a request in flight (an SSE stream included): none — requests have their own timeout —
//!   unless writing its answer has been blocked (the socket's send buffer full: the client
//!   reads nothing) since `HTTP_SEND_TIMEOUT_SECS` ago;
//! - a request head begun (bytes read while idle), or nothing received yet on a new
//!   connection: `HTTP_HEADER_TIMEOUT_SECS` after that began;
//! - idle after a response (keep-alive): `HTTP_IDLE_TIMEOUT_SECS` after it ended.
//!
//! At the deadline the connection is dropped (closed); nothing is in flight on it.
//!
//! A request hyper cannot parse (a head over its limits: 431; a malformed one: 400) never
//! reaches the router: hyper answers it itself with an empty body. The connection's IO
//! recognises that answer — written while no request is in flight, exactly hyper's head and
//! nothing else — and writes the contract's error body in its place (see [`hyper_error`]).

use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// The limits of [`serve`] (`HTTP_HEADER_TIMEOUT_SECS`, `HTTP_IDLE_TIMEOUT_SECS`,
/// `HTTP_SEND_TIMEOUT_SECS`, `HTTP_MAX_CONNECTIONS`).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `stop` turns true; then stops accepting, lets every
/// connection finish its requests, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut at_cap = false;
    let mut accept_failing = false;
    loop {
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !at_cap {
                    // Once per burst: until the open connections fall below 90 % of the cap.
                    tracing::warn!(
                        http.max_connections = limits.max_connections,
                        "HTTP_MAX_CONNECTIONS reached: new connections wait in the listen \
                         backlog until others close"
                    );
                    at_cap = true;
                }
                tokio::select! {
                    permit = connections.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = stop.wait_for(|stop| *stop) => break,
                }
            }
        };
        if at_cap && connections.available_permits() > limits.max_connections / 10 {
            at_cap = false;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => {
                accept_failing = false;
                accepted
            }
            Err(error) => {
                // EMFILE and the like: wait a little rather than spin; log once per streak.
                if !accept_failing {
                    tracing::warn!(%error, "accepting a connection failed; retrying");
                    accept_failing = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, remote, router, limits, stop).await;
            drop(permit);
        });
    }
    // Every connection holds a permit until it closes.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = connections.acquire_many(all).await;
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WatchedIo {
        inner: Some(stream),
        activity: activity.clone(),
        replacing: None,
        answered_error: false,
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let in_flight = InFlight::begin(activity.clone());
            request.extensions_mut().insert(ConnectInfo(remote));
            let answer = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = answer.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(TrackedBody {
                        inner: body,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    let mut connection = pin!(http1::Builder::new().serve_connection(io, service));
    let shortest = limits
        .header_timeout
        .min(limits.idle_timeout)
        .min(limits.send_timeout);
    let period = (shortest / 2).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval_at((Instant::now() + period).into(), period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if activity.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("closing an HTTP connection: header, idle or send timeout");
                    return;
                }
            }
        }
    }
}

/// No time recorded, in [`Activity`]'s millisecond fields.
const NONE: u64 = u64::MAX;

/// What a connection's watchdog needs to know, updated by its IO, its requests and their
/// response bodies.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Whether any request reached the service on this connection.
    served: AtomicBool,
    /// When the first byte of a request head was read while idle (ms since `start`).
    head_started: AtomicU64,
    /// When the last response ended (ms since `start`).
    idle_since: AtomicU64,
    /// Since when a write has been waiting for room in the socket's send buffer (ms since
    /// `start`); [`NONE`] while writes go through.
    write_blocked_since: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            head_started: AtomicU64::new(NONE),
            idle_since: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(NONE),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// When the connection must be closed if nothing changes; `None` while a request is in
    /// flight and its answer is being taken.
    fn deadline(&self, limits: &ServerLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            let blocked = self.write_blocked_since.load(Ordering::Acquire);
            return (blocked != NONE).then(|| self.at(blocked) + limits.send_timeout);
        }
        let head_started = self.head_started.load(Ordering::Acquire);
        if head_started != NONE {
            return Some(self.at(head_started) + limits.header_timeout);
        }
        if !self.served.load(Ordering::Acquire) {
            return Some(self.start + limits.header_timeout);
        }
        Some(self.at(self.idle_since.load(Ordering::Acquire)) + limits.idle_timeout)
    }

    /// Bytes arrived: if the connection was idle, a request head has begun.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == NONE
        {
            let _ = self.head_started.compare_exchange(
                NONE,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// A write went through (`true`) or found the send buffer full.
    fn wrote(&self, through: bool) {
        if through {
            if self.write_blocked_since.load(Ordering::Relaxed) != NONE {
                self.write_blocked_since.store(NONE, Ordering::Release);
            }
        } else if self.write_blocked_since.load(Ordering::Acquire) == NONE {
            let _ = self.write_blocked_since.compare_exchange(
                NONE,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// A request between its head and the end (or drop) of its response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.served.store(true, Ordering::Release);
        activity.head_started.store(NONE, Ordering::Release);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .idle_since
            .store(activity.now_ms(), Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is done (or dropped).
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = <Body as hyper::body::Body>::Data;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, reporting reads and writes to the connection's [`Activity`], and
/// replacing hyper's own bare error answers.
struct WatchedIo {
    /// `None` only once dropped (see `Drop`).
    inner: Option<TcpStream>,
    activity: Arc<Activity>,
    /// The contract's answer being written in place of hyper's bare one.
    replacing: Option<Replacement>,
    /// Whether such an answer was written: the peer may still be sending the request hyper
    /// refused, so the connection is closed lingering (see [`linger`]).
    answered_error: bool,
}

/// How long, and for how many bytes, a connection answered with an error before its request
/// was read keeps reading (and discarding) after the answer: closing a socket with unread
/// input sends a reset, and a client still sending (a 500 kB header) then loses the answer
/// it had not read yet (the kernel drops it). As nginx's `lingering_close`.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Ends the write side (the client reads the answer, then end of stream), then reads and
/// discards what the client still sends, for at most [`LINGER`] and [`LINGER_BYTES`],
/// before the socket is closed.
async fn linger(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut buf = vec![0u8; 16 * 1024];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => break,
        }
    }
}

impl Drop for WatchedIo {
    fn drop(&mut self) {
        if !self.answered_error {
            return;
        }
        if let (Some(stream), Ok(runtime)) =
            (self.inner.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(linger(stream));
        }
    }
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// How many bytes of hyper's to report written once ours are.
    answers: usize,
}

impl WatchedIo {
    /// Polls the stream with `poll` (an error once the stream is gone, see `Drop`).
    fn poll_stream<T>(
        &mut self,
        poll: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match self.inner.as_mut() {
            Some(inner) => poll(Pin::new(inner)),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn write_one(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() && self.activity.in_flight.load(Ordering::Acquire) == 0 {
            self.replacing = hyper_error(buf).map(|bytes| Replacement {
                bytes,
                written: 0,
                answers: buf.len(),
            });
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let Some(replacement) = &mut self.replacing else {
            let polled = Pin::new(inner).poll_write(cx, buf);
            self.activity.wrote(polled.is_ready());
            return polled;
        };
        while replacement.written < replacement.bytes.len() {
            let rest = &replacement.bytes[replacement.written..];
            match Pin::new(&mut *inner).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => replacement.written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    self.activity.wrote(false);
                    return Poll::Pending;
                }
            }
        }
        self.activity.wrote(true);
        let answered = replacement.answers.min(buf.len());
        self.replacing = None;
        self.answered_error = true;
        Poll::Ready(Ok(answered))
    }
}

/// The contract's answer in place of `written`, when that is one of hyper's own answers to a
/// request it could not parse: its whole head (`HTTP/1.1 4xx …`, `connection: close`,
/// `content-length: 0`) in one write, with no request in flight. Its status line and `date`
/// stay; the body is the contract's error body, whose `path` is empty (the request line may
/// be what could not be read) and the connection gets a new correlation id.
fn hyper_error(written: &[u8]) -> Option<Vec<u8>> {
    if written.len() > 256 || !written.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(written).ok()?;
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let status = axum::http::StatusCode::from_u16(code).ok()?;
    let (mut close, mut empty, mut date) = (false, false, None);
    for line in lines {
        match line.split_once(": ") {
            Some(("connection", "close")) => close = true,
            Some(("content-length", "0")) => empty = true,
            Some(("date", value)) => date = Some(value),
            _ => return None,
        }
    }
    if !(status.is_client_error() || status.is_server_error()) || !close || !empty {
        return None;
    }
    let message = match status {
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            "Request header fields are too large"
        }
        axum::http::StatusCode::URI_TOO_LONG => "Request URI is too long",
        axum::http::StatusCode::BAD_REQUEST => "Malformed HTTP request",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let body = serde_json::to_vec(&super::error::ErrorBody {
        message: message.to_owned(),
        status_code: code,
        error: status.canonical_reason().unwrap_or("Error").to_owned(),
        timestamp: super::envelope::now_iso(),
        path: String::new(),
        field_errors: None,
        correlation_id: status.is_server_error().then(|| id.clone()),
    })
    .ok()?;
    let mut answer = format!(
        "{status_line}\r\nconnection: close\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nx-correlation-id: {id}\r\nx-content-type-options: nosniff\r\n",
        body.len()
    );
    if let Some(date) = date {
        answer.push_str(&format!("date: {date}\r\n"));
    }
    answer.push_str("\r\n");
    let mut bytes = answer.into_bytes();
    bytes.extend_from_slice(&body);
    Some(bytes)
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = this.poll_stream(|inner| inner.poll_read(cx, buf));
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_one(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // A head alone (hyper's own answers are) may be one of hyper's bare errors.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if this.replacing.is_some() || this.activity.in_flight.load(Ordering::Acquire) == 0 {
                return this.write_one(cx, only);
            }
        }
        let polled = this.poll_stream(|inner| inner.poll_write_vectored(cx, bufs));
        this.activity.wrote(polled.is_ready());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_stream(|inner| inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_stream(|inner| inner.poll_shutdown(cx))
    }
}

/// Raises this process's soft open-file limit to its hard limit, so that the connection cap,
/// not the default 1,024 descriptors, bounds the connections; the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_connections: 10,
        }
    }

    #[test]
    fn hypers_bare_error_answers_get_the_contracts_body() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                     content-length: 0\r\ndate: Mon, 07 Dec 2026 08:36:07 GMT\r\n\r\n";
        let answer = String::from_utf8(hyper_error(bare).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\ncontent-type: application/json\r\n"));
        assert!(head.contains("\r\ndate: Mon, 07 Dec 2026 08:36:07 GMT"));
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["message"], "Request header fields are too large");
        assert_eq!(body["statusCode"], 431);
        assert_eq!(body["error"], "Request Header Fields Too Large");
        assert_eq!(body["path"], "");
        // Anything else passes untouched: a real answer's head, a body chunk.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\nx: y\r\n\r\n",
            b"{\"data\": 1}",
        ] {
            assert_eq!(
                hyper_error(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn the_deadline_follows_the_connections_state() {
        let activity = Arc::new(Activity::new());
        let start = activity.start;
        // New: the header timeout from the accept.
        assert_eq!(
            activity.deadline(&limits()),
            Some(start + Duration::from_secs(10))
        );
        // A request in flight: none, whatever it reads (a body) meanwhile.
        let request = InFlight::begin(activity.clone());
        activity.bytes_read();
        assert_eq!(activity.deadline(&limits()), None);
        drop(request);
        // Idle after a response: the idle timeout from its end.
        let idle = activity.deadline(&limits()).unwrap();
        assert!(idle >= start + Duration::from_secs(60));
        // The next request's first bytes: the header timeout from them.
        activity.bytes_read();
        let header = activity.deadline(&limits()).unwrap();
        assert!(header < idle && header >= start + Duration::from_secs(10));
        // A request whose answer cannot be written: the send timeout from the first blocked
        // write; a write that goes through lifts it.
        let request = InFlight::begin(activity.clone());
        assert_eq!(activity.deadline(&limits()), None);
        activity.wrote(false);
        let blocked = activity.deadline(&limits()).unwrap();
        assert!(blocked >= start + Duration::from_secs(30));
        activity.wrote(false);
        assert_eq!(
            activity.deadline(&limits()),
            Some(blocked),
            "from the first"
        );
        activity.wrote(true);
        assert_eq!(activity.deadline(&limits()), None);
        drop(request);
    }
}
