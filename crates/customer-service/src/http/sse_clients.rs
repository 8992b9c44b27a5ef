//! Admission of Server-Sent Events streams: at most `SSE_MAX_CLIENTS` open on this instance
//! and `SSE_MAX_CLIENTS_PER_ADDRESS` from one client address. A stream holds its connection
//! for as long as the client stays (no idle timeout applies to it), so without these caps a
//! few hosts could hold every connection the listener allows; over a cap the answer is 503
//! with `Retry-After`. A stream's slot is freed when its response body is dropped (the
//! client went away, the server closed the connection, shutdown).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;

use super::error::ApiError;

/// The seconds a refused client is told to wait.
const RETRY_AFTER_SECS: u64 = 5;

/// The open streams of this instance, per client address.
#[derive(Debug)]
pub struct SseClients {
    max: usize,
    per_address: usize,
    open: Mutex<Open>,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl SseClients {
    pub fn new(max: usize, per_address: usize) -> SseClients {
        SseClients {
            max,
            per_address,
            open: Mutex::new(Open::default()),
            refused: AtomicU64::new(0),
        }
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Streams refused so far (over either cap).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // The counts stay consistent whatever panicked while holding the lock: each change
        // is one statement.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a stream from `address`, or the 503 that refuses it.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<SseSlot, ApiError> {
        let mut open = self.lock();
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        let refused = if open.total >= self.max {
            Some("Too many event streams are open on this instance (SSE_MAX_CLIENTS)")
        } else if from_address >= self.per_address {
            Some("Too many event streams are open from this address (SSE_MAX_CLIENTS_PER_ADDRESS)")
        } else {
            None
        };
        if let Some(message) = refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::Busy {
                message: format!("{message}; retry in {RETRY_AFTER_SECS} s"),
                retry_after_secs: RETRY_AFTER_SECS,
            });
        }
        open.total += 1;
        open.by_address.insert(address, from_address + 1);
        Ok(SseSlot {
            clients: self.clone(),
            address,
        })
    }
}

/// One admitted stream; dropping it frees the slot.
#[derive(Debug)]
pub struct SseSlot {
    clients: Arc<SseClients>,
    address: IpAddr,
}

impl Drop for SseSlot {
    fn drop(&mut self) {
        let mut open = self.clients.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

impl<S> FromRequestParts<S> for SseSlot
where
    Arc<SseClients>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // The server loop puts the peer's address on every request; a router driven without
        // it (a unit test) counts as one address.
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        Arc::<SseClients>::from_ref(state).admit(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_in_all_and_per_address_and_freed_on_drop() {
        let clients = Arc::new(SseClients::new(3, 2));
        let (a, b, c) = (
            IpAddr::from([10, 0, 0, 1]),
            IpAddr::from([10, 0, 0, 2]),
            IpAddr::from([10, 0, 0, 3]),
        );
        let a1 = clients.admit(a).unwrap();
        let _a2 = clients.admit(a).unwrap();
        let refused = clients.admit(a).unwrap_err();
        assert!(
            matches!(&refused, ApiError::Busy { message, retry_after_secs: 5 } if message.contains("SSE_MAX_CLIENTS_PER_ADDRESS")),
            "{refused:?}"
        );
        let _b1 = clients.admit(b).unwrap();
        let refused = clients.admit(c).unwrap_err();
        assert!(
            matches!(&refused, ApiError::Busy { message, .. } if message.contains("(SSE_MAX_CLIENTS)")),
            "{refused:?}"
        );
        assert_eq!(clients.open(), 3);
        drop(a1);
        assert_eq!(clients.open(), 2);
        let _c1 = clients.admit(c).unwrap();
        assert!(clients.admit(a).is_err(), "the cap in all again");
        assert_eq!(clients.refused(), 3);
    }
}
