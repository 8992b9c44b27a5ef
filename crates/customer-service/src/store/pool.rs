//! A small connection pool, used instead of sqlx's `Pool` because that one sends a `Sync`
//! round trip (a "ping") on every release of a connection. Measured with `bench/run.sh`'s get
//! scenario on the 2-core machine: 16,100 → 20,500 req/s (+27 %) without it, since the ping
//! costs PostgreSQL a wake-up per query too.
//!
//! The ping's purpose is to catch a connection left mid-conversation by a cancelled future.
//! This pool gets the same safety another way: a [`Lease`] returns its connection only when
//! told the work on it finished ([`Lease::settle`]); a lease dropped unsettled (its request
//! was cancelled, or it panicked) closes the connection instead. A statement that failed
//! with a database error leaves the connection in sync (the server answered), and a
//! transaction dropped before commit queues its `ROLLBACK`, which the connection's next use
//! sends first (sqlx's `wait_until_ready`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::application::PoolUsage;

/// Connections older than this are closed when released (server-side memory growth, DNS or
/// failover changes), like sqlx's default.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub(super) struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    /// Statements run once on every new connection.
    setup: &'static [&'static str],
    idle: Mutex<Vec<Idle>>,
    /// One permit per connection that may exist; closed by [`Pool::close`].
    permits: Arc<Semaphore>,
    /// The permits the semaphore started with.
    size: usize,
    acquire_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    connection: AnyConnection,
    opened: Instant,
}

impl Pool {
    /// A pool of at most `size` connections to `url`. Opens one now, so that a wrong URL or
    /// an unreachable server fails at start-up rather than on the first request.
    pub(super) async fn connect(
        url: &str,
        size: u32,
        setup: &'static [&'static str],
        acquire_timeout: Duration,
    ) -> Result<Pool, sqlx::Error> {
        let size = usize::try_from(size.max(1)).unwrap_or(1);
        let pool = Pool {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                setup,
                idle: Mutex::new(Vec::with_capacity(size)),
                permits: Arc::new(Semaphore::new(size)),
                size,
                acquire_timeout,
            }),
        };
        pool.acquire().await?.settle(true);
        Ok(pool)
    }

    /// A connection for one piece of work: an idle one, or a new one while fewer than the
    /// pool's size exist. Waits at most the acquire timeout (then `PoolTimedOut`).
    pub(super) async fn acquire(&self) -> Result<Lease, sqlx::Error> {
        let inner = &self.inner;
        let permit =
            tokio::time::timeout(inner.acquire_timeout, inner.permits.clone().acquire_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?
                .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = inner.lock_idle().pop();
        let idle = match idle {
            Some(idle) => idle,
            None => tokio::time::timeout(inner.acquire_timeout, inner.open())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??,
        };
        Ok(Lease {
            idle,
            pool: self.inner.clone(),
            permit,
        })
    }

    /// Connections leased, idle, and the most there may be.
    pub(super) fn usage(&self) -> PoolUsage {
        let inner = &self.inner;
        PoolUsage {
            in_use: inner.size - inner.permits.available_permits(),
            idle: inner.lock_idle().len(),
            max: inner.size,
        }
    }

    /// Refuses new leases and closes the idle connections; leased ones close when dropped.
    pub(super) async fn close(&self) {
        self.inner.permits.close();
        let idle = std::mem::take(&mut *self.inner.lock_idle());
        for idle in idle {
            // Best effort: a connection that cannot say goodbye is closed all the same.
            let _ = idle.connection.close().await;
        }
    }
}

impl Inner {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The lock guards only pushes and pops; a panic cannot leave the Vec half-changed.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn open(&self) -> Result<Idle, sqlx::Error> {
        let mut connection = AnyConnection::connect(&self.url).await?;
        for statement in self.setup {
            connection.execute(*statement).await?;
        }
        Ok(Idle {
            connection,
            opened: Instant::now(),
        })
    }
}

/// One connection, lent out. Dereferences to the connection; see [`Lease::settle`].
#[derive(Debug)]
pub(super) struct Lease {
    // Field order is drop order: an unsettled lease closes its connection before it frees
    // the permit.
    idle: Idle,
    pool: Arc<Inner>,
    permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Ends the lease: `reusable` says the work finished with the connection in a known
    /// state (success, or an error the server answered), and it goes back to the pool;
    /// otherwise it is closed.
    pub(super) fn settle(self, reusable: bool) {
        let Lease { idle, pool, permit } = self;
        if reusable && idle.opened.elapsed() < MAX_LIFETIME && !pool.permits.is_closed() {
            pool.lock_idle().push(idle);
        }
        // Only now may a waiter proceed, and it finds the connection idle.
        drop(permit);
    }

    /// Settles on a sqlx result (reusable unless the error was the connection's own) and
    /// passes it on.
    pub(super) fn settle_on<T>(self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        self.settle(result.as_ref().err().is_none_or(answered));
        result
    }
}

/// Whether an error came from a server that answered, leaving the connection in sync.
pub(super) fn answered(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Database(_)
            | sqlx::Error::RowNotFound
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::Decode(_)
    )
}

impl std::ops::Deref for Lease {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.idle.connection
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.idle.connection
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Executor;

    use super::Pool;

    /// A pool on a fresh SQLite file. Temporary tables belong to one connection, which lets
    /// a test tell whether it got the same connection back.
    async fn pool(size: u32) -> (Pool, std::path::PathBuf) {
        sqlx::any::install_default_drivers();
        let path = std::env::temp_dir().join(format!("cs-pool-{}.db", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = Pool::connect(
            &url,
            size,
            &["pragma journal_mode = wal"],
            // Also bounds the first connect: 200 ms failed now and then on a cold start.
            Duration::from_secs(1),
        )
        .await
        .expect("pool");
        (pool, path)
    }

    async fn has_marker(pool: &Pool) -> bool {
        let mut lease = pool.acquire().await.expect("lease");
        let found = lease
            .fetch_optional("select 1 from sqlite_temp_master where name = 'marker'")
            .await
            .expect("query")
            .is_some();
        lease.settle(true);
        found
    }

    async fn leave_marker(pool: &Pool) -> super::Lease {
        let mut lease = pool.acquire().await.expect("lease");
        lease
            .execute("create temp table if not exists marker (x)")
            .await
            .expect("create");
        lease
    }

    #[tokio::test]
    async fn a_settled_connection_is_reused_and_an_unsettled_one_is_closed() {
        let (pool, path) = pool(1).await;
        leave_marker(&pool).await.settle(true);
        assert!(
            has_marker(&pool).await,
            "settled: the same connection comes back"
        );

        drop(leave_marker(&pool).await);
        // The marker's connection was dropped with its lease; this one is new.
        assert!(
            !has_marker(&pool).await,
            "unsettled: the connection was closed"
        );

        leave_marker(&pool).await.settle(false);
        assert!(!has_marker(&pool).await, "settled as unusable: closed");
        pool.close().await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_transaction_dropped_before_commit_is_rolled_back_on_the_next_use() {
        let (pool, path) = pool(1).await;
        let mut lease = pool.acquire().await.expect("lease");
        lease.execute("create table t (x)").await.expect("create");
        {
            let mut tx = sqlx::Connection::begin(&mut *lease).await.expect("begin");
            tx.execute("insert into t values (1)")
                .await
                .expect("insert");
            // Dropped here, as when a write's statement fails.
        }
        lease.settle(true);
        let mut lease = pool.acquire().await.expect("lease");
        let rows = lease.fetch_all("select x from t").await.expect("select");
        assert_eq!(rows.len(), 0, "the dropped transaction did not commit");
        // And the connection is outside any transaction: a new one can begin.
        let tx = sqlx::Connection::begin(&mut *lease)
            .await
            .expect("begin again");
        tx.commit().await.expect("commit");
        lease.settle(true);
        pool.close().await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_full_pool_times_out_and_a_closed_one_refuses() {
        let (pool, path) = pool(1).await;
        let held = pool.acquire().await.expect("lease");
        let waited = pool.acquire().await;
        assert!(
            matches!(waited, Err(sqlx::Error::PoolTimedOut)),
            "{waited:?}"
        );
        held.settle(true);
        pool.acquire().await.expect("free again").settle(true);

        pool.close().await;
        let refused = pool.acquire().await;
        assert!(
            matches!(refused, Err(sqlx::Error::PoolClosed)),
            "{refused:?}"
        );
        let _ = std::fs::remove_file(path);
    }
}
