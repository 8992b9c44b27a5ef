//! [`SqlStore`]: customers and their event log on PostgreSQL, SQLite or MySQL, every write one
//! transaction holding the customer row and its events. This file holds the store itself
//! and its query helpers; `writes.rs` the write transactions, `customers.rs` and
//! `event_log.rs` the two ports it implements.

use std::sync::Arc;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Connection, Executor, Row};
use tokio::sync::Notify;

use crate::application::{read_scope, CustomerStream, NewEvent, ReadScope, StoreError};
use crate::domain::Customer;

use super::count_cache::{CountCache, FirstCount, Lookup};
use super::error::{classify, classify_append};
use super::pool::{Lease, Pool};
use super::replica::{self, Replica};
use super::row::read_customer;
use super::search::SearchState;
use super::{mysql, postgres, sql, sqlite, Backend, StoreOptions};

/// The store over one database. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) backend: Backend,
    /// Runs queries. On PostgreSQL the same pool as `writer`.
    pub(super) readers: Pool,
    /// Runs write transactions: on SQLite a single connection (see `sqlite.rs`).
    pub(super) writer: Pool,
    /// Signalled after every commit that appended events: wakes this process's relay.
    committed: Arc<Notify>,
    /// The customer count, shared by every list page until the next local commit.
    pub(super) count_cache: Arc<CountCache>,
    /// A streaming replica for the reads that allow one (`DATABASE_READ_URL`).
    pub(super) replica: Option<Arc<Replica>>,
    /// Posting-list sizes for planning searches, and the paths searches took.
    pub(super) search: Arc<SearchState>,
}

impl SqlStore {
    /// Connects to the database `options.url` names. Does not migrate: see [`Self::migrate`].
    pub async fn connect(options: &StoreOptions) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(&options.url).ok_or_else(|| {
            StoreError::Other(
                format!(
                    "unsupported database URL scheme in {:?}",
                    scheme(&options.url)
                )
                .into(),
            )
        })?;
        let (readers, writer) = match backend {
            Backend::Postgres => {
                let pool = postgres::connect(options).await.map_err(classify)?;
                (pool.clone(), pool)
            }
            Backend::Sqlite => sqlite::connect(options).await.map_err(classify)?,
            Backend::MySql => {
                let pool = mysql::connect(options).await.map_err(classify)?;
                (pool.clone(), pool)
            }
        };
        Ok(SqlStore {
            backend,
            readers,
            writer,
            committed: Arc::new(Notify::new()),
            count_cache: Arc::default(),
            replica: None,
            search: Arc::default(),
        })
    }

    /// Sends the reads that allow it (see `application::read_scope`) to the replica at
    /// `options.url` (PostgreSQL streaming, or MySQL / MariaDB with GTIDs) while it lags at
    /// most `max_lag`.
    pub async fn with_read_replica(
        mut self,
        options: &StoreOptions,
        max_lag: std::time::Duration,
    ) -> Result<SqlStore, StoreError> {
        let pool = match (self.backend, Backend::of_url(&options.url)) {
            (Backend::Postgres, Some(Backend::Postgres)) => postgres::connect(options).await,
            (Backend::MySql, Some(Backend::MySql)) => mysql::connect(options).await,
            _ => {
                return Err(StoreError::Other(
                    "a read replica is a PostgreSQL or MySQL server of the primary's engine".into(),
                ))
            }
        }
        .map_err(classify)?;
        let positions = replica::Positions::of(self.backend, &self.writer)
            .await
            .map_err(|why| StoreError::Other(why.into()))?;
        self.replica = Some(Arc::new(Replica::new(pool, positions, max_lag)));
        Ok(self)
    }

    /// Compares the replica's position with the primary's every 100 ms until `stop`
    /// (nothing to do without a replica).
    /// Whether reads may go to a replica (`DATABASE_READ_URL`): then [`Self::watch_replica`]
    /// runs until stop.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    pub async fn watch_replica(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(replica) = self.replica.clone() else {
            return;
        };
        // Started after the migrations: the replica serves once it has them.
        while let Err(error) = replica.start_at_primary(&self.writer).await {
            tracing::warn!(%error, "reading the primary's replication position failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
        while !*stop.borrow() {
            replica.check(&self.writer).await;
            tokio::select! {
                () = tokio::time::sleep(replica::POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Where a read goes: the replica when one is configured, the running read's scope
    /// allows it and the replica serves it; else the primary's readers.
    pub(super) fn read_pool(&self) -> &Pool {
        if let (Some(replica), Some(scope)) = (&self.replica, read_scope::current()) {
            if replica.serves(&scope) {
                return &replica.pool;
            }
        }
        &self.readers
    }

    /// After a committed write of customer `id`: its reads by id stay on the primary until
    /// the replica has replayed it (read-your-writes on this instance).
    pub(super) async fn note_write(&self, id: i64) {
        if let Some(replica) = &self.replica {
            match replica.primary_position(&self.writer).await {
                Ok(Some(position)) => replica.wrote(id, position),
                // Unknown: the replica may not have it; keep this customer on the primary
                // until it has replayed everything there is now and later.
                _ => replica.wrote(id, u64::MAX),
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The query of a statement of `sql.rs` (or one put together there) on this backend.
    pub(super) fn query(
        &self,
        text: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Query<'static, Any, AnyArguments> {
        sql::query(self.backend, text)
    }

    /// Notified after every commit that appended events.
    pub fn commit_signal(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    pub(super) async fn commit(&self, tx: sqlx::Transaction<'_, Any>) -> Result<(), StoreError> {
        let committed = tx.commit().await.map_err(classify);
        // Invalidate even if the commit's outcome is unknown (an error after sending it).
        self.count_cache.invalidate();
        committed?;
        self.committed.notify_one();
        Ok(())
    }

    /// Applies the embedded migrations of this backend that have not run yet. Returns how
    /// many it applied. Rows from before `email_key` are keyed by [`Self::key_emails`].
    pub async fn migrate(&self) -> Result<usize, sqlx::migrate::MigrateError> {
        use sqlx::migrate::Migrate;
        let migrator = match self.backend {
            Backend::Postgres => &postgres::MIGRATOR,
            Backend::Sqlite => &sqlite::MIGRATOR,
            Backend::MySql => &mysql::MIGRATOR,
        };
        let table = migrator.table_name.as_ref();
        let mut connection = self.writer.acquire().await?;
        let result = async {
            connection.ensure_migrations_table(table).await?;
            let before = connection.list_applied_migrations(table).await?.len();
            migrator.run(&mut *connection).await?;
            let after = connection.list_applied_migrations(table).await?.len();
            Ok(after.saturating_sub(before))
        }
        .await;
        connection.settle(result.is_ok());
        result
    }

    /// Refreshes the planner's statistics of the customers table after `import`, which
    /// otherwise plans searches of the imported customers with empty statistics until
    /// autovacuum analyzes, a minute or more later (never on SQLite). Measured right after
    /// importing 200,000 customers into PostgreSQL: search at 106 req/s (p99 870 ms), and
    /// 2,196 req/s (p99 17 ms) analyzed. Not after `seed`: a benchmark that seeds and then
    /// creates tens of thousands of customers searched them with statistics that said the
    /// term matched nothing, 138 req/s against 4,660 without them (bench/MYSQL.md's run).
    pub async fn analyze(&self) -> Result<(), StoreError> {
        let statement = match self.backend {
            Backend::Postgres => postgres::ANALYZE,
            Backend::Sqlite => sqlite::ANALYZE,
            Backend::MySql => mysql::ANALYZE,
        };
        let mut lease = self.writer.acquire().await.map_err(classify)?;
        let result = lease.execute(statement).await.map(drop);
        lease.settle_on(result).map_err(classify)
    }

    /// Closes every connection (at shutdown, after the last request).
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
        if let Some(replica) = &self.replica {
            replica.pool.close().await;
        }
    }

    pub(super) async fn append(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        for event in events {
            self.query(sql::APPEND_EVENT)
                .bind(&event.event_id)
                .bind(event.event_type.as_str())
                .bind(event.aggregate.log_key())
                .bind(event.sequence)
                .bind(event.occurred_at.millis())
                .bind(&event.payload)
                .execute(&mut **tx)
                .await
                .map_err(classify_append)?;
        }
        Ok(())
    }

    pub(super) async fn fetch_customers<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<Vec<Customer>, StoreError> {
        let rows = self.fetch_all(query).await?;
        rows.iter().map(read_customer).collect()
    }

    /// The customers `query` selects, read as the database sends them by a task of their
    /// own that holds one reader connection until the last row or until the stream is
    /// dropped (a client that went away): memory holds a few rows, not the result.
    pub(super) fn stream_customers(
        &self,
        query: Query<'static, Any, AnyArguments>,
    ) -> CustomerStream {
        use futures_util::StreamExt;
        // A few dozen rows in flight: enough to keep the connection busy while the
        // response is written, small enough to keep memory flat.
        let (rows_out, rows_in) = tokio::sync::mpsc::channel(64);
        // Chosen here: the task below runs outside the read's scope.
        let readers = self.read_pool().clone();
        tokio::spawn(async move {
            let mut connection = match readers.acquire().await {
                Ok(connection) => connection,
                Err(error) => {
                    let _ = rows_out.send(Err(classify(error))).await;
                    return;
                }
            };
            let mut rows = query.fetch(&mut *connection);
            let mut complete = false;
            loop {
                let item = match rows.next().await {
                    None => {
                        complete = true;
                        break;
                    }
                    Some(Ok(row)) => read_customer(&row),
                    Some(Err(error)) => Err(classify(error)),
                };
                let failed = item.is_err();
                if rows_out.send(item).await.is_err() || failed {
                    break;
                }
            }
            drop(rows);
            // A query abandoned half-way may leave its rows unread on the connection.
            connection.settle(complete);
        });
        futures_util::stream::unfold(rows_in, |mut rows_in| async move {
            rows_in.recv().await.map(|item| (item, rows_in))
        })
        .boxed()
    }

    /// Runs a write transaction's `work` on the writer connection, then settles the
    /// connection by how the work ended (see [`settle_write`]).
    pub(super) async fn on_writer<T>(
        &self,
        work: impl AsyncFnOnce(&mut Lease) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lease = self.writer.acquire().await.map_err(classify)?;
        let result = work(&mut lease).await;
        settle_write(lease, result).await
    }

    /// Runs `query` on a reader connection; the helpers below are its other shapes.
    pub(super) async fn fetch_all<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut connection = self.read_pool().acquire().await.map_err(classify)?;
        let result = query.fetch_all(&mut *connection).await;
        connection.settle_on(result).map_err(classify)
    }

    pub(super) async fn fetch_optional<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<Option<AnyRow>, StoreError> {
        let mut connection = self.read_pool().acquire().await.map_err(classify)?;
        let result = query.fetch_optional(&mut *connection).await;
        connection.settle_on(result).map_err(classify)
    }

    /// The count `query` returns, from the cache under `key` while no commit happened (see
    /// `count_cache.rs` for who recounts when).
    pub(super) async fn cached_count(
        &self,
        key: &str,
        query: Query<'static, Any, AnyArguments>,
        search_by_index: Option<bool>,
    ) -> Result<i64, StoreError> {
        if read_scope::current() == Some(ReadScope::Primary) {
            // The client asked for the primary: no total counted elsewhere or earlier.
            if let Some(by_index) = search_by_index {
                self.search.counted(by_index);
            }
            return self.fetch_scalar(query).await;
        }
        loop {
            let generation = match self.count_cache.lookup(key) {
                Lookup::Fresh(count) | Lookup::Previous(count) => return Ok(count),
                Lookup::Refresh {
                    previous,
                    generation,
                } => {
                    let (store, key) = (self.clone(), key.to_owned());
                    tokio::spawn(async move {
                        // A failure was handed on by `recount`; the next request tries again.
                        let _ = store
                            .recount(&key, query, generation, search_by_index)
                            .await;
                    });
                    return Ok(previous);
                }
                Lookup::Recount(generation) => generation,
                Lookup::First(generation) => match self.count_cache.first_count(key) {
                    FirstCount::Count(_counting) => {
                        // `_counting` wakes the waiting requests once the count is put (or
                        // failed, or this request was cancelled: then they count).
                        return self.recount(key, query, generation, search_by_index).await;
                    }
                    FirstCount::Wait(mut counted) => {
                        // Woken when the counter is done, whatever its outcome.
                        let _ = counted.changed().await;
                        continue;
                    }
                },
            };
            return self.recount(key, query, generation, search_by_index).await;
        }
    }

    async fn recount(
        &self,
        key: &str,
        query: Query<'static, Any, AnyArguments>,
        generation: u64,
        search_by_index: Option<bool>,
    ) -> Result<i64, StoreError> {
        if let Some(by_index) = search_by_index {
            self.search.counted(by_index);
        }
        let started = std::time::Instant::now();
        match self.fetch_scalar(query).await {
            Ok(count) => {
                self.count_cache
                    .put(key, count, generation, started.elapsed());
                Ok(count)
            }
            Err(error) => {
                self.count_cache.abandon(key);
                Err(error)
            }
        }
    }

    /// The one row `query` returns (a query that returns none is a bug here: counts,
    /// aggregates and the like).
    pub(super) async fn fetch_one<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<AnyRow, StoreError> {
        self.fetch_optional(query)
            .await?
            .ok_or_else(|| StoreError::Other("a single-row query returned no row".into()))
    }

    /// The first column of the one row `query` returns.
    pub(super) async fn fetch_scalar<'q, T>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<T, StoreError>
    where
        T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
    {
        self.fetch_one(query).await?.try_get(0).map_err(classify)
    }
}

pub(super) fn first_column(rows: Vec<AnyRow>) -> Result<Vec<i64>, StoreError> {
    rows.iter()
        .map(|row| row.try_get(0).map_err(classify))
        .collect()
}

/// Ends a write's lease: the connection goes back to the pool unless the write failed for a
/// reason that may have left it unusable.
///
/// A write that failed with an answered error (a version conflict, a taken e-mail) dropped
/// its transaction, and sqlx only queues the ROLLBACK until the connection's next use. Until
/// then the transaction keeps its row locks (on PostgreSQL, an UPDATE that waited for a
/// concurrent writer and then matched nothing still holds the row). If the connection sat
/// idle in the pool meanwhile, every other writer of that row would wait on it, holding
/// their own connections, until the request timeout. So the rollback is sent here, before
/// the connection is shared again; if that fails, the connection is closed instead.
async fn settle_write<T>(mut lease: Lease, result: Result<T, StoreError>) -> Result<T, StoreError> {
    let reusable = match &result {
        Ok(_) => true,
        Err(
            StoreError::EmailTaken
            | StoreError::VersionConflict
            | StoreError::IdempotencyKeyTaken
            | StoreError::Fenced,
        ) => lease.ping().await.is_ok(),
        Err(StoreError::Unavailable(_) | StoreError::Other(_)) => false,
    };
    lease.settle(reusable);
    result
}

/// The scheme of a URL, for error messages that must not echo credentials.
fn scheme(url: &str) -> &str {
    url.split_once(':').map_or("", |(scheme, _)| scheme)
}
