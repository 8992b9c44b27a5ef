//! Per-client rate limit on writes, on `governor` (GCRA): the authenticated subject when there
//! is one, else the peer's IP address. Over the limit: 429 with `Retry-After`.
//! Reads are never limited (they are cheap and idempotent; the pool bounds them anyway).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::auth::Actor;
use super::error::ApiError;

/// Clients tracked before those back at a full allowance are forgotten.
const MAX_CLIENTS: usize = 10_000;

/// The limiter: `burst` writes at once, refilled at `per_minute`.
#[derive(Debug)]
pub struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl RateLimiter {
    /// `None` when `per_minute` is 0 (no limit).
    pub fn new(per_minute: u32, burst: u32) -> Option<RateLimiter> {
        let per_minute = NonZeroU32::new(per_minute)?;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Some(RateLimiter {
            limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
        })
    }

    /// Takes a write for `client`; if it has none left, the whole seconds until it has.
    fn take(&self, client: &String) -> Result<(), u64> {
        if self.limiter.len() > MAX_CLIENTS {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(client).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }
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
        if let Err(retry_after_secs) = limiter.take(&client) {
            return ApiError::TooManyRequests { retry_after_secs }.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_client_then_the_seconds_until_the_next_write() {
        let limiter = RateLimiter::new(60, 3).unwrap();
        let a = "a".to_owned();
        for _ in 0..3 {
            assert_eq!(limiter.take(&a), Ok(()));
        }
        assert_eq!(limiter.take(&a), Err(1));
        assert_eq!(
            limiter.take(&"b".to_owned()),
            Ok(()),
            "another client has its own allowance"
        );
        assert!(RateLimiter::new(0, 10).is_none(), "0 turns it off");
        let slow = RateLimiter::new(6, 1).unwrap();
        let c = "c".to_owned();
        assert_eq!(slow.take(&c), Ok(()));
        assert_eq!(slow.take(&c), Err(10), "one write per 10 s");
    }
}
