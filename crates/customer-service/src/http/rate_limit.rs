//! Per-client rate limit on writes: a token bucket per client — the authenticated subject
//! when there is one, else the peer's IP address. Over the limit: 429 with `Retry-After`.
//! Reads are never limited (they are cheap and idempotent; the pool bounds them anyway).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Actor;
use super::error::ApiError;

/// Buckets kept before idle (full) ones are dropped.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limiter: `burst` writes at once, refilled at `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    clients: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `None` when `per_minute` is 0 (no limit).
    pub fn new(per_minute: u32, burst: u32) -> Option<RateLimiter> {
        (per_minute > 0).then(|| RateLimiter {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_minute) / 60.0,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token for `client`; if there is none, the whole seconds until there is.
    fn take(&self, client: &str, now: Instant) -> Result<(), u64> {
        let Ok(mut clients) = self.clients.lock() else {
            return Ok(()); // never turn a poisoned lock into refusals
        };
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(client) {
            let (burst, per_second) = (self.burst, self.per_second);
            clients.retain(|_, bucket| refill(*bucket, now, burst, per_second) < burst);
        }
        let bucket = clients.entry(client.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = refill(*bucket, now, self.burst, self.per_second);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            Err(((1.0 - tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

fn refill(bucket: Bucket, now: Instant, burst: f64, per_second: f64) -> f64 {
    let elapsed = now.duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(burst)
}

/// The middleware: counts writes per client.
pub(crate) async fn limit_writes(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if write {
        let client = match request.extensions().get::<Actor>() {
            Some(Actor(subject)) => format!("sub:{subject}"),
            None => request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(
                    || "ip:unknown".to_owned(),
                    |info| format!("ip:{}", info.0.ip()),
                ),
        };
        if let Err(retry_after_secs) = limiter.take(&client, Instant::now()) {
            return ApiError::TooManyRequests { retry_after_secs }.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate_per_client() {
        let limiter = RateLimiter::new(60, 3).unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("a", t), Ok(()));
        }
        assert_eq!(limiter.take("a", t), Err(1));
        assert_eq!(
            limiter.take("b", t),
            Ok(()),
            "another client has its own bucket"
        );
        assert_eq!(limiter.take("a", t + Duration::from_millis(1_000)), Ok(()));
        assert_eq!(limiter.take("a", t + Duration::from_millis(1_000)), Err(1));
        assert!(RateLimiter::new(0, 10).is_none(), "0 turns it off");
        let slow = RateLimiter::new(6, 1).unwrap();
        assert_eq!(slow.take("c", t), Ok(()));
        assert_eq!(slow.take("c", t), Err(10), "one write per 10 s");
    }
}
