//! [`EventLog`] on [`SqlStore`]: the event log as the relay and cursor readers see it.

use async_trait::async_trait;
use sqlx::Row;

use crate::application::{EventFilter, EventLog, OutboxStatus, StoreError, StoredEvent};
use crate::domain::{CustomerId, Timestamp};

use super::error::classify;
use super::row::read_event;
use super::sql;
use super::sql_store::{first_column, SqlStore};
use super::{postgres, Backend};

#[async_trait]
impl EventLog for SqlStore {
    #[tracing::instrument(name = "store.pending", skip_all)]
    async fn pending(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .fetch_all(self.query(sql::PENDING_EVENTS).bind(limit))
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
        self.on_writer(async |lease| {
            self.mark_published_on(lease, positions, watermark, fence)
                .await
        })
        .await
    }

    async fn load_watermark(&self) -> Result<(i64, Vec<i64>), StoreError> {
        let settled: i64 = self.fetch_scalar(self.query(sql::WATERMARK)).await?;
        let rows = self
            .fetch_all(self.query(sql::PUBLISHED_ABOVE).bind(settled))
            .await?;
        Ok((settled, first_column(rows)?))
    }

    async fn settled_events(
        &self,
        after: i64,
        limit: i64,
        filter: &EventFilter,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let query = self
            .query(sql::SETTLED_EVENTS)
            .bind(after)
            .bind(filter.event_type.map(|t| t.as_str()))
            .bind(filter.event_type.map(|t| t.as_str()))
            .bind(filter.customer_id.map(|id| id.get()))
            .bind(filter.customer_id.map(|id| id.get()))
            .bind(limit);
        let rows = self.fetch_all(query).await?;
        rows.iter().map(read_event).collect()
    }

    async fn watermark(&self) -> Result<i64, StoreError> {
        self.fetch_scalar(self.query(sql::WATERMARK)).await
    }

    async fn first_position_at(&self, at: Timestamp) -> Result<Option<i64>, StoreError> {
        let query = self.query(sql::FIRST_POSITION_AT).bind(at.millis());
        self.fetch_scalar(query).await
    }

    async fn last_position_at(&self, at: Timestamp) -> Result<Option<i64>, StoreError> {
        let query = self.query(sql::LAST_POSITION_AT).bind(at.millis());
        self.fetch_scalar(query).await
    }

    async fn event_at_or_after(
        &self,
        position: i64,
    ) -> Result<Option<(i64, Timestamp)>, StoreError> {
        let row = self
            .fetch_optional(self.query(sql::EVENT_AT_OR_AFTER).bind(position))
            .await?;
        row.map(|row| {
            let position: i64 = row.try_get(0).map_err(classify)?;
            let at: i64 = row.try_get(1).map_err(classify)?;
            Ok((position, Timestamp::from_millis(at)))
        })
        .transpose()
    }

    async fn events_per_second(
        &self,
        from: i64,
        to: i64,
        since: Timestamp,
    ) -> Result<Vec<(String, Timestamp, i64)>, StoreError> {
        let query = self
            .query(sql::EVENTS_PER_SECOND)
            .bind(from)
            .bind(to)
            .bind(since.millis());
        let rows = self.fetch_all(query).await?;
        rows.iter()
            .map(|row| {
                let event_type: String = row.try_get(0).map_err(classify)?;
                let second: i64 = row.try_get(1).map_err(classify)?;
                let count: i64 = row.try_get(2).map_err(classify)?;
                Ok((event_type, Timestamp::from_millis(second), count))
            })
            .collect()
    }

    async fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let row = self.fetch_one(self.query(sql::OUTBOX_STATUS)).await?;
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
            .fetch_all(self.query(sql::EVENTS_OF_CUSTOMER).bind(customer_id.get()))
            .await?;
        rows.iter().map(read_event).collect()
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        self.fetch_scalar(self.query(sql::COUNT_EVENTS)).await
    }
}
