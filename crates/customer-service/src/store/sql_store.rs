//! [`SqlStore`]: customers and their event log on PostgreSQL or SQLite, every write one
//! transaction holding the customer row and its events.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Connection, Row};
use tokio::sync::Notify;

use crate::application::{
    Complete, CustomerStore, EventFilter, EventLog, IdempotencyClaim, IdempotencyRecord, ListQuery,
    NewEvent, OutboxStatus, PoolUsage, Rewrite, StoreError, StoredEvent, StoredResponse,
};
use crate::domain::{Customer, CustomerDraft, CustomerId, Timestamp};

use super::count_cache::{CountCache, ALL_CUSTOMERS};
use super::error::{
    classify, classify_append, classify_customer_write, classify_idempotency_claim,
};
use super::pool::{Lease, Pool};
use super::row::{like_pattern, read_customer, read_event, Columns};
use super::{postgres, sql, sqlite, Backend, StoreOptions};

/// The store over one database. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
    /// Runs queries. On PostgreSQL the same pool as `writer`.
    readers: Pool,
    /// Runs write transactions: on SQLite a single connection (see `sqlite.rs`).
    writer: Pool,
    /// Signalled after every commit that appended events: wakes this process's relay.
    committed: Arc<Notify>,
    /// The customer count, shared by every list page until the next local commit.
    count_cache: Arc<CountCache>,
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
        };
        Ok(SqlStore {
            backend,
            readers,
            writer,
            committed: Arc::new(Notify::new()),
            count_cache: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Notified after every commit that appended events.
    pub fn commit_signal(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    async fn commit(&self, tx: sqlx::Transaction<'_, Any>) -> Result<(), StoreError> {
        let committed = tx.commit().await.map_err(classify);
        // Invalidate even if the commit's outcome is unknown (an error after sending it).
        self.count_cache.invalidate();
        committed?;
        self.committed.notify_one();
        Ok(())
    }

    /// Applies the embedded migrations of this backend that have not run yet.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let migrator = match self.backend {
            Backend::Postgres => &postgres::MIGRATOR,
            Backend::Sqlite => &sqlite::MIGRATOR,
        };
        let mut connection = self.writer.acquire().await?;
        let result = migrator.run(&mut *connection).await;
        connection.settle(result.is_ok());
        result
    }

    /// Closes every connection (at shutdown, after the last request).
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    async fn append(
        tx: &mut sqlx::Transaction<'_, Any>,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        for event in events {
            sqlx::query(sql::APPEND_EVENT)
                .bind(&event.event_id)
                .bind(event.event_type.as_str())
                .bind(event.customer_id.get())
                .bind(event.sequence)
                .bind(event.occurred_at.millis())
                .bind(&event.payload)
                .execute(&mut **tx)
                .await
                .map_err(classify_append)?;
        }
        Ok(())
    }

    async fn fetch_customers<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<Vec<Customer>, StoreError> {
        let rows = self.fetch_all(query).await?;
        rows.iter().map(read_customer).collect()
    }

    /// Runs `query` on a reader connection; the helpers below are its other shapes.
    async fn fetch_all<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut connection = self.readers.acquire().await.map_err(classify)?;
        let result = query.fetch_all(&mut *connection).await;
        connection.settle_on(result).map_err(classify)
    }

    async fn fetch_optional<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<Option<AnyRow>, StoreError> {
        let mut connection = self.readers.acquire().await.map_err(classify)?;
        let result = query.fetch_optional(&mut *connection).await;
        connection.settle_on(result).map_err(classify)
    }

    /// The count `query` returns, from the cache under `key` while no commit happened.
    async fn cached_count<'q>(
        &self,
        key: &str,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<i64, StoreError> {
        if let Some(count) = self.count_cache.get(key) {
            return Ok(count);
        }
        let generation = self.count_cache.generation();
        let count = self.fetch_scalar(query).await?;
        self.count_cache.put(key, count, generation);
        Ok(count)
    }

    /// The one row `query` returns (a query that returns none is a bug here: counts,
    /// aggregates and the like).
    async fn fetch_one<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<AnyRow, StoreError> {
        self.fetch_optional(query)
            .await?
            .ok_or_else(|| StoreError::Other("a single-row query returned no row".into()))
    }

    /// The first column of the one row `query` returns.
    async fn fetch_scalar<'q, T>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Result<T, StoreError>
    where
        T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
    {
        self.fetch_one(query).await?.try_get(0).map_err(classify)
    }
}

fn first_column(rows: Vec<AnyRow>) -> Result<Vec<i64>, StoreError> {
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

/// The transactions of the writes, each on a leased writer connection.
impl SqlStore {
    async fn insert_on(
        &self,
        connection: &mut AnyConnection,
        draft: CustomerDraft,
        claim: Option<IdempotencyClaim<'_>>,
        complete: Complete<'_>,
    ) -> Result<Customer, StoreError> {
        let at = draft.created_at.millis();
        let columns = Columns::new(&draft.fields, at, at, 1);
        let mut tx = connection.begin().await.map_err(classify)?;
        if let Some(claim) = &claim {
            sqlx::query(sql::EXPIRE_IDEMPOTENCY)
                .bind(claim.expired_before.millis())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            sqlx::query(sql::CLAIM_IDEMPOTENCY)
                .bind(claim.key)
                .bind(claim.request)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(classify_idempotency_claim)?;
        }
        let row = columns
            .bind(sqlx::query(sql::INSERT_CUSTOMER))
            .fetch_one(&mut *tx)
            .await
            .map_err(classify_customer_write)?;
        let id: i64 = row.try_get(0).map_err(classify)?;
        let id = CustomerId::new(id)
            .ok_or_else(|| StoreError::Other(format!("database assigned id {id}").into()))?;
        let change = draft.into_created(id);
        let created = complete(&change);
        Self::append(&mut tx, &created.events).await?;
        if let Some(claim) = &claim {
            let response = created.answer.ok_or_else(|| {
                StoreError::Other("an idempotent create without an answer to keep".into())
            })?;
            sqlx::query(sql::FILL_IDEMPOTENCY)
                .bind(claim.key)
                .bind(i32::from(response.status))
                .bind(response.body)
                .bind(response.location)
                .bind(response.etag)
                .bind(change.customer.id.get())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        self.commit(tx).await?;
        Ok(change.customer)
    }

    async fn update_on(
        &self,
        connection: &mut AnyConnection,
        expected_version: i64,
        customer: &Customer,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let columns = Columns::new(
            &customer.fields,
            customer.created_at.millis(),
            customer.updated_at.millis(),
            customer.version,
        );
        let mut tx = connection.begin().await.map_err(classify)?;
        let updated = columns
            .bind(sqlx::query(sql::UPDATE_CUSTOMER))
            .bind(customer.id.get())
            .bind(expected_version)
            .execute(&mut *tx)
            .await
            .map_err(classify_customer_write)?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::VersionConflict);
        }
        Self::append(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn delete_on(
        &self,
        connection: &mut AnyConnection,
        id: CustomerId,
        expected_version: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let mut tx = connection.begin().await.map_err(classify)?;
        let deleted = sqlx::query(sql::DELETE_CUSTOMER)
            .bind(id.get())
            .bind(expected_version)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if deleted.rows_affected() != 1 {
            return Err(StoreError::VersionConflict);
        }
        Self::append(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn erase_on(
        &self,
        connection: &mut AnyConnection,
        id: CustomerId,
        expected_version: Option<i64>,
        events: &[NewEvent],
        rewrites: &[Rewrite],
    ) -> Result<(), StoreError> {
        let mut tx = connection.begin().await.map_err(classify)?;
        if let Some(version) = expected_version {
            let deleted = sqlx::query(sql::DELETE_CUSTOMER)
                .bind(id.get())
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            if deleted.rows_affected() != 1 {
                return Err(StoreError::VersionConflict);
            }
        }
        Self::append(&mut tx, events).await?;
        for rewrite in rewrites {
            sqlx::query(sql::REWRITE_PAYLOAD)
                .bind(&rewrite.payload)
                .bind(rewrite.position)
                .bind(id.get())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        sqlx::query(sql::TOMBSTONE_IDEMPOTENCY_OF_CUSTOMER)
            .bind(id.get())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        self.commit(tx).await
    }

    async fn mark_published_on(
        &self,
        connection: &mut AnyConnection,
        positions: &[i64],
        watermark: Option<i64>,
        fence: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = connection.begin().await.map_err(classify)?;
        if let Some(epoch) = fence {
            // Locks the lease row until commit: a takeover waits for this mark, and a mark
            // after a takeover finds another epoch.
            let held = sqlx::query(sql::FENCE_RELAY_LEASE)
                .bind(epoch)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            if held.rows_affected() != 1 {
                return Err(StoreError::Fenced);
            }
        }
        if self.backend == Backend::Postgres {
            // A mark lost in a crash only means the batch is published again, which the
            // sinks absorb (idempotent), so it need not wait for its WAL flush.
            sqlx::query(postgres::RELAXED_COMMIT)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        if !positions.is_empty() {
            let statement = sql::mark_published_sql(positions.len());
            // Only numbered placeholders are added to a constant prefix: no data in the text.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for position in positions {
                query = query.bind(*position);
            }
            query.execute(&mut *tx).await.map_err(classify)?;
        }
        if let Some(watermark) = watermark {
            sqlx::query(sql::SAVE_WATERMARK)
                .bind(watermark)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }
}

#[async_trait]
impl CustomerStore for SqlStore {
    #[tracing::instrument(name = "store.insert", skip_all)]
    async fn insert(
        &self,
        draft: CustomerDraft,
        claim: Option<IdempotencyClaim<'_>>,
        complete: Complete<'_>,
    ) -> Result<Customer, StoreError> {
        let mut lease = self.writer.acquire().await.map_err(classify)?;
        let result = self.insert_on(&mut lease, draft, claim, complete).await;
        settle_write(lease, result).await
    }

    #[tracing::instrument(name = "store.erase", skip_all, fields(customer.id = %id))]
    async fn erase(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        events: &[NewEvent],
        rewrites: &[Rewrite],
    ) -> Result<(), StoreError> {
        let mut lease = self.writer.acquire().await.map_err(classify)?;
        let result = self
            .erase_on(&mut lease, id, expected_version, events, rewrites)
            .await;
        settle_write(lease, result).await
    }

    async fn find_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(row) = self
            .fetch_optional(sqlx::query(sql::FIND_IDEMPOTENCY).bind(key))
            .await?
        else {
            return Ok(None);
        };
        let status: i32 = row.try_get(1).map_err(classify)?;
        let created_at: i64 = row.try_get(5).map_err(classify)?;
        Ok(Some(IdempotencyRecord {
            // TOMBSTONE_IDEMPOTENCY_OF_CUSTOMER's mark.
            erased: status == 410,
            request: row.try_get(0).map_err(classify)?,
            response: StoredResponse {
                status: u16::try_from(status).unwrap_or(500),
                body: row.try_get(2).map_err(classify)?,
                location: row.try_get(3).map_err(classify)?,
                etag: row.try_get(4).map_err(classify)?,
            },
            created_at: Timestamp::from_millis(created_at),
        }))
    }

    #[tracing::instrument(name = "store.update", skip_all, fields(customer.id = %customer.id))]
    async fn update(
        &self,
        expected_version: i64,
        customer: &Customer,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let mut lease = self.writer.acquire().await.map_err(classify)?;
        let result = self
            .update_on(&mut lease, expected_version, customer, events)
            .await;
        settle_write(lease, result).await
    }

    #[tracing::instrument(name = "store.delete", skip_all, fields(customer.id = %id))]
    async fn delete(
        &self,
        id: CustomerId,
        expected_version: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let mut lease = self.writer.acquire().await.map_err(classify)?;
        let result = self
            .delete_on(&mut lease, id, expected_version, events)
            .await;
        settle_write(lease, result).await
    }

    async fn find_by_id(&self, id: CustomerId) -> Result<Option<Customer>, StoreError> {
        let row = self
            .fetch_optional(sqlx::query(sql::CUSTOMER_BY_ID).bind(id.get()))
            .await?;
        row.as_ref().map(read_customer).transpose()
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<Customer>, StoreError> {
        let row = self
            .fetch_optional(sqlx::query(sql::CUSTOMER_BY_EMAIL).bind(email))
            .await?;
        row.as_ref().map(read_customer).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<(Vec<Customer>, i64), StoreError> {
        match &query.search {
            None => {
                let page = sqlx::query(sql::CUSTOMER_PAGE)
                    .bind(query.limit)
                    .bind(query.offset);
                let customers = self.fetch_customers(page).await?;
                Ok((customers, self.count().await?))
            }
            Some(search) => {
                let pattern = like_pattern(search);
                let page = sqlx::query(sql::CUSTOMER_SEARCH_PAGE)
                    .bind(pattern.clone())
                    .bind(query.limit)
                    .bind(query.offset);
                let customers = self.fetch_customers(page).await?;
                let count = sqlx::query(sql::COUNT_SEARCH).bind(pattern.clone());
                let total = self.cached_count(&pattern, count).await?;
                Ok((customers, total))
            }
        }
    }

    async fn list_active(&self) -> Result<Vec<Customer>, StoreError> {
        self.fetch_customers(sqlx::query(sql::ACTIVE_CUSTOMERS))
            .await
    }

    async fn count(&self) -> Result<i64, StoreError> {
        self.cached_count(ALL_CUSTOMERS, sqlx::query(sql::COUNT_CUSTOMERS))
            .await
    }

    async fn events_of(&self, id: CustomerId) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .fetch_all(sqlx::query(sql::EVENTS_OF_CUSTOMER).bind(id.get()))
            .await?;
        rows.iter().map(read_event).collect()
    }

    async fn logged_customer_ids(&self, after: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let query = sqlx::query(sql::LOGGED_CUSTOMER_IDS)
            .bind(after)
            .bind(limit);
        first_column(self.fetch_all(query).await?)
    }

    async fn customers_without_events(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        let query = sqlx::query(sql::CUSTOMERS_WITHOUT_EVENTS).bind(limit);
        first_column(self.fetch_all(query).await?)
    }

    fn pool_usage(&self) -> Vec<(&'static str, PoolUsage)> {
        match self.backend {
            // One pool serves both.
            Backend::Postgres => vec![("main", self.readers.usage())],
            Backend::Sqlite => vec![
                ("readers", self.readers.usage()),
                ("writer", self.writer.usage()),
            ],
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.fetch_all(sqlx::query(sql::PING)).await.map(drop)
    }
}

#[async_trait]
impl EventLog for SqlStore {
    #[tracing::instrument(name = "store.pending", skip_all)]
    async fn pending(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .fetch_all(sqlx::query(sql::PENDING_EVENTS).bind(limit))
            .await?;
        rows.iter().map(read_event).collect()
    }

    #[tracing::instrument(name = "store.mark_published", skip_all, fields(outbox.batch_size = positions.len()))]
    async fn mark_published(
        &self,
        positions: &[i64],
        watermark: Option<i64>,
        fence: Option<i64>,
    ) -> Result<(), StoreError> {
        if positions.is_empty() && watermark.is_none() {
            return Ok(());
        }
        let mut lease = self.writer.acquire().await.map_err(classify)?;
        let result = self
            .mark_published_on(&mut lease, positions, watermark, fence)
            .await;
        settle_write(lease, result).await
    }

    async fn load_watermark(&self) -> Result<(i64, Vec<i64>), StoreError> {
        let settled: i64 = self.fetch_scalar(sqlx::query(sql::WATERMARK)).await?;
        let rows = self
            .fetch_all(sqlx::query(sql::PUBLISHED_ABOVE).bind(settled))
            .await?;
        Ok((settled, first_column(rows)?))
    }

    async fn settled_events(
        &self,
        after: i64,
        limit: i64,
        filter: &EventFilter,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let query = sqlx::query(sql::SETTLED_EVENTS)
            .bind(after)
            .bind(filter.event_type.map(|t| t.as_str()))
            .bind(filter.customer_id.map(|id| id.get()))
            .bind(limit);
        let rows = self.fetch_all(query).await?;
        rows.iter().map(read_event).collect()
    }

    async fn watermark(&self) -> Result<i64, StoreError> {
        self.fetch_scalar(sqlx::query(sql::WATERMARK)).await
    }

    async fn first_position_at(&self, at: Timestamp) -> Result<Option<i64>, StoreError> {
        let query = sqlx::query(sql::FIRST_POSITION_AT).bind(at.millis());
        self.fetch_scalar(query).await
    }

    async fn last_position_at(&self, at: Timestamp) -> Result<Option<i64>, StoreError> {
        let query = sqlx::query(sql::LAST_POSITION_AT).bind(at.millis());
        self.fetch_scalar(query).await
    }

    async fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let row = self.fetch_one(sqlx::query(sql::OUTBOX_STATUS)).await?;
        let pending: i64 = row.try_get(0).map_err(classify)?;
        let oldest: Option<i64> = row.try_get(1).map_err(classify)?;
        Ok(OutboxStatus {
            pending,
            oldest_pending_at: oldest.map(Timestamp::from_millis),
        })
    }

    async fn compact(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            let mut lease = self.writer.acquire().await.map_err(classify)?;
            let result = sqlx::query(postgres::VACUUM_PENDING)
                .execute(&mut *lease)
                .await;
            lease.settle_on(result).map_err(classify)?;
        }
        Ok(())
    }

    async fn customer_events(
        &self,
        customer_id: CustomerId,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .fetch_all(sqlx::query(sql::EVENTS_OF_CUSTOMER).bind(customer_id.get()))
            .await?;
        rows.iter().map(read_event).collect()
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        self.fetch_scalar(sqlx::query(sql::COUNT_EVENTS)).await
    }
}
