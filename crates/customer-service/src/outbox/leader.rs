//! The leader lease: exactly one instance publishes at a time.
//!
//! On PostgreSQL the lease is a session advisory lock held on a dedicated connection: if the
//! leader dies, its connection closes, the lock is released and another instance's next
//! attempt (every half second) takes over. SQLite is single-process: always the leader.

use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Connection};

/// The advisory lock key: "customer" as ASCII digits, unlikely to collide with other users
/// of advisory locks in a shared database.
const LEASE_KEY: i64 = 0x637573746f6d6572;
/// Each lease operation gives up after this, so a hung database cannot stall the relay.
const LEASE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a leader re-checks that its lease connection is alive. Not before every batch:
/// that round trip would sit on every event's path. A leader that lost its lease unnoticed
/// for this long can only race the new leader on events both read as pending; the sinks'
/// per-event `NX` keeps each published once and both read the log in order.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(250);

pub enum Leadership {
    /// The only possible publisher (SQLite).
    Sole,
    /// Competing for an advisory lock on the database at `url`.
    PostgresLock {
        url: String,
        /// The connection that holds the lock while we are leader.
        connection: Option<AnyConnection>,
        /// When the held lease was last seen alive.
        checked_at: Instant,
    },
}

impl Leadership {
    pub fn postgres(url: String) -> Leadership {
        Leadership::PostgresLock {
            url,
            connection: None,
            checked_at: Instant::now(),
        }
    }

    /// Whether we hold the lease now: keeps it (after checking its connection is alive) or
    /// tries once to take it.
    pub async fn acquire(&mut self) -> bool {
        match self {
            Leadership::Sole => true,
            Leadership::PostgresLock {
                url,
                connection,
                checked_at,
            } => {
                if let Some(held) = connection.as_mut() {
                    if checked_at.elapsed() < LEASE_CHECK_INTERVAL {
                        return true;
                    }
                    if matches!(
                        tokio::time::timeout(LEASE_TIMEOUT, held.ping()).await,
                        Ok(Ok(()))
                    ) {
                        *checked_at = Instant::now();
                        return true;
                    }
                    // The connection is gone, and the lock with it.
                    tracing::warn!("lost the relay leader lease");
                    *connection = None;
                }
                let Ok(Ok(mut candidate)) =
                    tokio::time::timeout(LEASE_TIMEOUT, AnyConnection::connect(url)).await
                else {
                    return false;
                };
                let locked = tokio::time::timeout(
                    LEASE_TIMEOUT,
                    sqlx::query_scalar::<_, bool>("select pg_try_advisory_lock($1)")
                        .bind(LEASE_KEY)
                        .fetch_one(&mut candidate),
                )
                .await;
                if matches!(locked, Ok(Ok(true))) {
                    tracing::info!("became the relay leader");
                    *connection = Some(candidate);
                    *checked_at = Instant::now();
                    true
                } else {
                    let _ = candidate.close().await;
                    false
                }
            }
        }
    }
}
