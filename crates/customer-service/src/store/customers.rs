//! [`CustomerStore`] on [`SqlStore`]: the customers table, its reads, and the writes (see
//! `writes.rs` for their transactions).

use std::time::Duration;

use async_trait::async_trait;
use customer_events::EventType;
use sqlx::Row;

use crate::application::{
    read_scope, ActiveQuery, Complete, CompleteBulk, CustomerStore, CustomerStream,
    IdempotencyClaim, IdempotencyRecord, ListQuery, NewEvent, PoolUsage, ReadScope, ReplicaStatus,
    Rewrite, SagaStart, SearchQueries, StoreError, StoredEvent, StoredResponse,
};
use crate::domain::{Customer, CustomerDraft, CustomerId, Email, Timestamp};

use super::count_cache::ALL_CUSTOMERS;
use super::error::classify;
use super::row::{like_pattern, read_customer, read_event};
use super::sql::Filter;
use super::sql_store::{first_column, SqlStore};
use super::{sql, Backend};

impl SqlStore {
    /// The page of `query` narrowed by `filter` (its statement kept prepared if `keep`).
    async fn page(
        &self,
        query: &ListQuery,
        filter: &Filter,
        keep: bool,
    ) -> Result<Vec<Customer>, StoreError> {
        let statement = sql::list_page(
            self.backend,
            filter,
            query.after.is_some(),
            query.offset > 0,
        );
        let mut page = filter.bind(self.query(statement)).persistent(keep);
        if let Some(after) = query.after {
            page = sql::bind_keyset(self.backend, page, after);
        }
        page = page.bind(query.limit);
        if query.offset > 0 {
            page = page.bind(query.offset);
        }
        self.fetch_customers(page).await
    }

    /// `prefix` followed by `(…)` with `n` placeholders.
    fn in_list(&self, prefix: &str, n: usize) -> String {
        sql::values_sql(prefix, 1, n, self.backend != Backend::Postgres)
    }

    /// The customers whose column (named by `prefix`, `… where <column> in `) is one of
    /// `values`, a few thousand per query.
    async fn customers_in<T>(&self, prefix: &str, values: &[T]) -> Result<Vec<Customer>, StoreError>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Clone + Send + 'static,
    {
        let mut found = Vec::with_capacity(values.len());
        for chunk in values.chunks(sql::CUSTOMER_ROWS_PER_INSERT) {
            let mut query = self.query(self.in_list(prefix, chunk.len()));
            for value in chunk {
                query = query.bind(value.clone());
            }
            found.extend(self.fetch_customers(query).await?);
        }
        Ok(found)
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
        let customer = self
            .on_writer(async |lease| self.insert_on(lease, draft, claim, complete).await)
            .await?;
        self.note_write(customer.id.get()).await;
        Ok(customer)
    }

    #[tracing::instrument(name = "store.insert_many", skip_all, fields(count = drafts.len()))]
    async fn insert_many(
        &self,
        drafts: Vec<CustomerDraft>,
        complete: CompleteBulk<'_>,
    ) -> Result<(), StoreError> {
        self.on_writer(async |lease| self.insert_many_on(lease, drafts, complete).await)
            .await
    }

    #[tracing::instrument(name = "store.insert_existing", skip_all, fields(count = customers.len()))]
    async fn insert_existing(
        &self,
        customers: &[(Customer, Vec<NewEvent>)],
    ) -> Result<(), StoreError> {
        // `import` applies several batches at once. On MariaDB two of them can deadlock in
        // the unique indexes' gap locks (the e-mail key's order is random): seen when a
        // re-run inserted the rows of a killed run's transaction that was still rolling
        // back. The batch is one transaction, rolled back whole, so it is tried again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .on_writer(async |lease| self.insert_existing_on(lease, customers).await)
                .await
            {
                Err(StoreError::Unavailable(error)) if attempt < 5 => {
                    tracing::info!(%error, attempt, "an import batch failed; trying it again");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                result => return result,
            }
        }
    }

    #[tracing::instrument(name = "store.erase", skip_all, fields(customer.id = %id))]
    async fn erase(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        events: &[NewEvent],
        rewrites: &[Rewrite],
        saga: Option<SagaStart<'_>>,
    ) -> Result<(), StoreError> {
        self.on_writer(async |lease| {
            self.erase_on(lease, id, expected_version, events, rewrites, saga)
                .await
        })
        .await?;
        self.note_write(id.get()).await;
        Ok(())
    }

    async fn find_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(row) = self
            .fetch_optional(self.query(sql::FIND_IDEMPOTENCY).bind(key))
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
        self.on_writer(async |lease| {
            self.update_on(lease, expected_version, customer, events)
                .await
        })
        .await?;
        self.note_write(customer.id.get()).await;
        Ok(())
    }

    #[tracing::instrument(name = "store.delete", skip_all, fields(customer.id = %id))]
    async fn delete(
        &self,
        id: CustomerId,
        expected_version: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        self.on_writer(async |lease| self.delete_on(lease, id, expected_version, events).await)
            .await?;
        self.note_write(id.get()).await;
        Ok(())
    }

    async fn find_by_id(&self, id: CustomerId) -> Result<Option<Customer>, StoreError> {
        let row = self
            .fetch_optional(self.query(sql::CUSTOMER_BY_ID).bind(id.get()))
            .await?;
        row.as_ref().map(read_customer).transpose()
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<Customer>, StoreError> {
        let query = self
            .query(sql::CUSTOMER_BY_EMAIL)
            .bind(super::row::lookup_key(email))
            .bind(email.to_owned())
            .bind(email.to_owned());
        let row = self.fetch_optional(query).await?;
        row.as_ref().map(read_customer).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<(Vec<Customer>, i64), StoreError> {
        // A search is planned for its own term on PostgreSQL: a prepared statement's generic
        // plan would pick one of "walk the list order" and "look the term up in the trigram
        // index" for every term, and each is very wrong for some. So its statements are not
        // kept there. SQLite and MySQL plan every execution with its values, and on MySQL a
        // statement not kept costs a COM_STMT_CLOSE, which gets no answer: without
        // TCP_NODELAY (sqlx sets none) the next command on that connection waited for the
        // server's delayed ACK, 36 ms on every search request (measured on MariaDB).
        let keep_search = self.backend != Backend::Postgres;
        let Some(term) = query.search.as_deref() else {
            let total = self.count().await?;
            if total == 0 {
                return Ok((Vec::new(), 0));
            }
            return Ok((self.page(query, &Filter::All, true).await?, total));
        };
        let key = like_pattern(term);
        let cached = read_scope::current() != Some(ReadScope::Primary);
        if cached && self.count_cache.fresh(&key) == Some(0) {
            // Known to match nothing: no plan, no query (a term nobody matches is a common
            // search, and a frequent one in the benchmarks).
            return Ok((Vec::new(), 0));
        }
        let generation = self.count_cache.generation();
        let plan = self.search_plan(term).await?;
        let total = match plan.known_total {
            Some(total) => {
                self.search.counted(true);
                if cached {
                    self.count_cache
                        .put(&key, total, generation, Duration::ZERO);
                }
                total
            }
            None => {
                let count = plan
                    .count
                    .bind(self.query(sql::count(&plan.count)))
                    .persistent(keep_search);
                self.cached_count(&key, count, Some(plan.count_by_index))
                    .await?
            }
        };
        if total == 0 {
            // Nothing to page through: the page query would only find out the slow way
            // (walking the whole list order, or every candidate of a posting list).
            return Ok((Vec::new(), 0));
        }
        let (filter, by_index) = match plan.index {
            Some(index)
                if !self
                    .walk_is_cheaper(query, total, plan.index_candidates)
                    .await? =>
            {
                (index, true)
            }
            _ => (plan.walk, false),
        };
        self.search.paged(by_index);
        Ok((self.page(query, &filter, keep_search).await?, total))
    }

    fn stream_active(&self, query: ActiveQuery) -> CustomerStream {
        let statement =
            sql::active_customers(self.backend, query.after.is_some(), query.limit.is_some());
        let mut select = self.query(statement);
        if let Some(after) = query.after {
            select = sql::bind_keyset(self.backend, select, after);
        }
        if let Some(limit) = query.limit {
            select = select.bind(limit);
        }
        self.stream_customers(select)
    }

    async fn count(&self) -> Result<i64, StoreError> {
        let statement = match self.backend {
            Backend::Postgres => sql::COUNT_CUSTOMERS_POSTGRES,
            Backend::Sqlite | Backend::MySql => sql::COUNT_CUSTOMERS,
        };
        self.cached_count(ALL_CUSTOMERS, self.query(statement), None)
            .await
    }

    async fn events_of(&self, id: CustomerId) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .fetch_all(self.query(sql::EVENTS_OF_CUSTOMER).bind(id.get()))
            .await?;
        rows.iter().map(read_event).collect()
    }

    async fn logged_customer_ids(&self, after: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let query = self.query(sql::LOGGED_CUSTOMER_IDS).bind(after).bind(limit);
        first_column(self.fetch_all(query).await?)
    }

    async fn customers_without_events(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        let query = self.query(sql::CUSTOMERS_WITHOUT_EVENTS).bind(limit);
        first_column(self.fetch_all(query).await?)
    }

    fn pool_usage(&self) -> Vec<(&'static str, PoolUsage)> {
        let mut pools = match self.backend {
            // One pool serves both.
            Backend::Postgres | Backend::MySql => vec![("main", self.readers.usage())],
            Backend::Sqlite => vec![
                ("readers", self.readers.usage()),
                ("writer", self.writer.usage()),
            ],
        };
        if let Some(replica) = &self.replica {
            pools.push(("replica", replica.pool.usage()));
        }
        pools
    }

    fn replica_status(&self) -> Option<ReplicaStatus> {
        self.replica.as_ref().map(|replica| replica.status())
    }

    fn search_queries(&self) -> SearchQueries {
        self.search.queries()
    }

    async fn find_many(&self, ids: &[CustomerId]) -> Result<Vec<Customer>, StoreError> {
        let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        self.customers_in(sql::CUSTOMERS_BY_IDS_PREFIX, &ids).await
    }

    async fn find_by_emails(&self, emails: &[Email]) -> Result<Vec<Customer>, StoreError> {
        let keys: Vec<String> = emails.iter().map(super::row::email_key).collect();
        self.customers_in(sql::CUSTOMERS_BY_EMAIL_KEYS_PREFIX, &keys)
            .await
    }

    async fn first_event_types(
        &self,
        ids: &[CustomerId],
    ) -> Result<Vec<(CustomerId, EventType)>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(sql::CUSTOMER_ROWS_PER_INSERT) {
            let mut query = self.query(self.in_list(sql::FIRST_EVENT_TYPES_PREFIX, chunk.len()));
            for id in chunk {
                query = query.bind(id.get());
            }
            for row in self.fetch_all(query).await? {
                let id: i64 = row.try_get(0).map_err(classify)?;
                let event_type: String = row.try_get(1).map_err(classify)?;
                if let (Some(id), Some(event_type)) =
                    (CustomerId::new(id), EventType::parse(&event_type))
                {
                    found.push((id, event_type));
                }
            }
        }
        Ok(found)
    }

    async fn customer_ids(&self, after: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let query = self.query(sql::CUSTOMER_IDS).bind(after).bind(limit);
        first_column(self.fetch_all(query).await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.fetch_all(self.query(sql::PING)).await.map(drop)
    }
}
