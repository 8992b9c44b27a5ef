//! The leader lease: exactly one instance publishes at a time.
//!
//! On PostgreSQL the lease is a session advisory lock held on a dedicated connection: if the
//! leader dies, its connection closes, the lock is released and another instance's next
//! attempt (every half second) takes over. SQLite is single-process: always the leader.

use std::time::Duration;

use sqlx::{AnyConnection, Connection};

/// The advisory lock key: "customer" as ASCII digits, unlikely to collide with other users
/// of advisory locks in a shared database.
const LEASE_KEY: i64 = 0x637573746f6d6572;
/// Each lease operation gives up after this, so a hung database cannot stall the relay.
const LEASE_TIMEOUT: Duration = Duration::from_secs(2);

pub enum Leadership {
    /// The only possible publisher (SQLite).
    Sole,
    /// Competing for an advisory lock on the database at `url`.
    PostgresLock {
        url: String,
        /// The connection that holds the lock while we are leader.
        connection: Option<AnyConnection>,
    },
}

impl Leadership {
    pub fn postgres(url: String) -> Leadership {
        Leadership::PostgresLock {
            url,
            connection: None,
        }
    }

    /// Whether we hold the lease now: keeps it (after checking its connection is alive) or
    /// tries once to take it.
    pub async fn acquire(&mut self) -> bool {
        match self {
            Leadership::Sole => true,
            Leadership::PostgresLock { url, connection } => {
                if let Some(held) = connection.as_mut() {
                    if matches!(
                        tokio::time::timeout(LEASE_TIMEOUT, held.ping()).await,
                        Ok(Ok(()))
                    ) {
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
                    true
                } else {
                    let _ = candidate.close().await;
                    false
                }
            }
        }
    }
}
