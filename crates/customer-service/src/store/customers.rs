//! [`CustomerStore`] on [`SqlStore`]: the customers table, its reads, and the writes (see
//! `writes.rs` for their transactions).

use async_trait::async_trait;
use sqlx::Row;

use crate::application::{
    Complete, CustomerStore, IdempotencyClaim, IdempotencyRecord, ListQuery, NewEvent, PoolUsage,
    Rewrite, StoreError, StoredEvent, StoredResponse,
};
use crate::domain::{Customer, CustomerDraft, CustomerId, Timestamp};

use super::count_cache::ALL_CUSTOMERS;
use super::error::classify;
use super::row::{like_pattern, read_customer, read_event};
use super::sql_store::{first_column, SqlStore};
use super::{sql, Backend};

#[async_trait]
impl CustomerStore for SqlStore {
    #[tracing::instrument(name = "store.insert", skip_all)]
    async fn insert(
        &self,
        draft: CustomerDraft,
        claim: Option<IdempotencyClaim<'_>>,
        complete: Complete<'_>,
    ) -> Result<Customer, StoreError> {
        self.on_writer(async |lease| self.insert_on(lease, draft, claim, complete).await)
            .await
    }

    #[tracing::instrument(name = "store.erase", skip_all, fields(customer.id = %id))]
    async fn erase(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        events: &[NewEvent],
        rewrites: &[Rewrite],
    ) -> Result<(), StoreError> {
        self.on_writer(async |lease| {
            self.erase_on(lease, id, expected_version, events, rewrites)
                .await
        })
        .await
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
        self.on_writer(async |lease| {
            self.update_on(lease, expected_version, customer, events)
                .await
        })
        .await
    }

    #[tracing::instrument(name = "store.delete", skip_all, fields(customer.id = %id))]
    async fn delete(
        &self,
        id: CustomerId,
        expected_version: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        self.on_writer(async |lease| self.delete_on(lease, id, expected_version, events).await)
            .await
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
