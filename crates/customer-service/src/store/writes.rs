//! The write transactions of [`SqlStore`], each on a leased writer connection: one
//! transaction holds a customer row change and its events (or a batch's mark).

use sqlx::{AnyConnection, Connection, Row};

use crate::application::{
    Complete, CompleteBulk, IdempotencyClaim, NewEvent, Rewrite, SagaStart, StoreError,
};
use crate::domain::{Customer, CustomerDraft, CustomerId};

use super::error::{classify, classify_customer_write, classify_idempotency_claim};
use super::row::Columns;
use super::sql_store::SqlStore;
use super::{postgres, sql, Backend};

impl SqlStore {
    pub(super) async fn insert_on(
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
            self.query(sql::EXPIRE_IDEMPOTENCY)
                .bind(claim.expired_before.millis())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            self.query(sql::CLAIM_IDEMPOTENCY)
                .bind(claim.key)
                .bind(claim.request)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(classify_idempotency_claim)?;
        }
        let id: i64 = if self.backend == Backend::MySql {
            let inserted = columns
                .bind(self.query(sql::INSERT_CUSTOMER))
                .execute(&mut *tx)
                .await
                .map_err(classify_customer_write)?;
            inserted
                .last_insert_id()
                .ok_or_else(|| StoreError::Other("MySQL reported no inserted id".into()))?
        } else {
            let row = columns
                .bind(self.query(sql::INSERT_CUSTOMER_RETURNING_ID))
                .fetch_one(&mut *tx)
                .await
                .map_err(classify_customer_write)?;
            row.try_get(0).map_err(classify)?
        };
        let change = draft.into_created(assigned_id(id)?);
        let created = complete(&change);
        self.append(&mut tx, &created.events).await?;
        if let Some(claim) = &claim {
            let response = created.answer.ok_or_else(|| {
                StoreError::Other("an idempotent create without an answer to keep".into())
            })?;
            self.query(sql::FILL_IDEMPOTENCY)
                .bind(i32::from(response.status))
                .bind(response.body)
                .bind(response.location)
                .bind(response.etag)
                .bind(change.customer.id.get())
                .bind(claim.key)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        self.commit(tx).await?;
        Ok(change.customer)
    }

    pub(super) async fn insert_many_on(
        &self,
        connection: &mut AnyConnection,
        drafts: Vec<CustomerDraft>,
        complete: CompleteBulk<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = match self.backend {
            Backend::Postgres | Backend::MySql => connection.begin().await,
            // The ids are read before any row is written: take the write lock first, or a
            // commit of another process in between fails the first write with
            // SQLITE_BUSY_SNAPSHOT, which no busy timeout retries (`seed` beside `serve`).
            Backend::Sqlite => connection.begin_with("begin immediate").await,
        }
        .map_err(classify)?;
        let events = if self.backend == Backend::MySql {
            self.insert_drafts_mysql(&mut tx, drafts, complete).await?
        } else {
            let ids = self.reserve_ids(&mut tx, drafts.len()).await?;
            let mut rows = Vec::with_capacity(drafts.len());
            let mut events = Vec::with_capacity(drafts.len());
            for (draft, id) in drafts.into_iter().zip(ids) {
                let (customer, customer_events) = complete(draft.into_created(id));
                rows.push(customer);
                events.extend(customer_events);
            }
            self.insert_rows_with_ids(&mut tx, rows.iter()).await?;
            events
        };
        self.append_many(&mut tx, &events).await?;
        self.commit(tx).await
    }

    /// Customers with the ids and times they had elsewhere, and their events (`import`).
    /// PostgreSQL's id sequence is then moved past them, so that new customers get ids
    /// above every imported one (SQLite's and MySQL's counters follow explicit ids
    /// themselves).
    pub(super) async fn insert_existing_on(
        &self,
        connection: &mut AnyConnection,
        customers: &[(Customer, Vec<NewEvent>)],
    ) -> Result<(), StoreError> {
        let mut tx = connection.begin().await.map_err(classify)?;
        self.insert_rows_with_ids(&mut tx, customers.iter().map(|(customer, _)| customer))
            .await?;
        let events: Vec<NewEvent> = customers
            .iter()
            .flat_map(|(_, events)| events.iter().cloned())
            .collect();
        self.append_many(&mut tx, &events).await?;
        if self.backend == Backend::Postgres {
            self.query(sql::ALIGN_ID_SEQUENCE_POSTGRES)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        self.commit(tx).await
    }

    /// Inserts `rows` with their ids, a few thousand per statement.
    async fn insert_rows_with_ids(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        rows: impl ExactSizeIterator<Item = &Customer>,
    ) -> Result<(), StoreError> {
        let rows: Vec<&Customer> = rows.collect();
        let anonymous = self.backend != Backend::Postgres;
        for chunk in rows.chunks(sql::CUSTOMER_ROWS_PER_INSERT) {
            let statement =
                sql::values_sql(sql::INSERT_CUSTOMERS_WITH_IDS, chunk.len(), 14, anonymous);
            let mut insert = self.query(statement);
            for customer in chunk {
                let columns = Columns::new(
                    &customer.fields,
                    customer.created_at.millis(),
                    customer.updated_at.millis(),
                    customer.version,
                );
                insert = columns.bind(insert.bind(customer.id.get()));
            }
            insert
                .execute(&mut **tx)
                .await
                .map_err(classify_customer_write)?;
        }
        Ok(())
    }

    /// Appends `events`, a few thousand per statement.
    async fn append_many(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let anonymous = self.backend != Backend::Postgres;
        for chunk in events.chunks(sql::EVENT_ROWS_PER_INSERT) {
            let statement = sql::values_sql(sql::APPEND_EVENTS, chunk.len(), 6, anonymous);
            let mut append = self.query(statement);
            for event in chunk {
                append = append
                    .bind(event.event_id.clone())
                    .bind(event.event_type.as_str())
                    .bind(event.aggregate.log_key())
                    .bind(event.sequence)
                    .bind(event.occurred_at.millis())
                    .bind(event.payload.clone());
            }
            append
                .execute(&mut **tx)
                .await
                .map_err(super::error::classify_append)?;
        }
        Ok(())
    }

    /// `count` customer ids, free for this transaction to insert: PostgreSQL draws them from
    /// the identity's sequence, as single inserts do (so concurrent writers never collide
    /// with a bulk load); on SQLite the writer connection is the only writer, so the ids
    /// above the last one handed out are free until its transaction commits.
    async fn reserve_ids(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        count: usize,
    ) -> Result<Vec<CustomerId>, StoreError> {
        let count = i64::try_from(count)
            .map_err(|_| StoreError::Other("too many customers for one insert".into()))?;
        let ids: Vec<i64> = if self.backend == Backend::Postgres {
            let rows = self
                .query(sql::RESERVE_IDS_POSTGRES)
                .bind(count)
                .fetch_all(&mut **tx)
                .await
                .map_err(classify)?;
            super::sql_store::first_column(rows)?
        } else {
            let last: i64 = self
                .query(sql::LAST_ID_SQLITE)
                .fetch_one(&mut **tx)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(classify)?;
            (last + 1..=last + count).collect()
        };
        ids.into_iter().map(assigned_id).collect()
    }

    /// MySQL's bulk insert: it has no sequence to reserve ids from, and the auto-increment
    /// hands a multi-row insert consecutive ids only in some lock modes. So the rows go in
    /// without ids, as single inserts do, and the ids are read back by e-mail (unique).
    ///
    /// A row's content does not depend on its id, but `complete` may change it (`seed`'s
    /// updates): each customer's final row is computed first under a stand-in id, and its
    /// events then under its real one.
    async fn insert_drafts_mysql(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        drafts: Vec<CustomerDraft>,
        complete: CompleteBulk<'_>,
    ) -> Result<Vec<NewEvent>, StoreError> {
        let stand_in = assigned_id(i64::MAX)?;
        let rows: Vec<Customer> = drafts
            .iter()
            .map(|draft| complete(draft.clone().into_created(stand_in)).0)
            .collect();
        let mut ids = std::collections::HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(sql::CUSTOMER_ROWS_PER_INSERT) {
            let statement = sql::values_sql(sql::INSERT_CUSTOMERS, chunk.len(), 13, true);
            let mut insert = self.query(statement);
            for customer in chunk {
                insert = Columns::new(
                    &customer.fields,
                    customer.created_at.millis(),
                    customer.updated_at.millis(),
                    customer.version,
                )
                .bind(insert);
            }
            insert
                .execute(&mut **tx)
                .await
                .map_err(classify_customer_write)?;
            let statement = sql::values_sql(sql::IDS_BY_EMAIL_PREFIX, 1, chunk.len(), true);
            let mut select = self.query(statement);
            for customer in chunk {
                select = select.bind(customer.fields.email.as_str().to_owned());
            }
            for row in select.fetch_all(&mut **tx).await.map_err(classify)? {
                let id: i64 = row.try_get(0).map_err(classify)?;
                let email: String = row.try_get(1).map_err(classify)?;
                ids.insert(email, id);
            }
        }
        let mut events = Vec::with_capacity(drafts.len());
        for (draft, row) in drafts.into_iter().zip(&rows) {
            let id = ids
                .get(row.fields.email.as_str())
                .copied()
                .ok_or_else(|| StoreError::Other("an inserted customer was not found".into()))?;
            let (_, customer_events) = complete(draft.into_created(assigned_id(id)?));
            events.extend(customer_events);
        }
        Ok(events)
    }

    pub(super) async fn update_on(
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
            .bind(self.query(sql::UPDATE_CUSTOMER))
            .bind(customer.id.get())
            .bind(expected_version)
            .execute(&mut *tx)
            .await
            .map_err(classify_customer_write)?;
        one_row(updated.rows_affected())?;
        self.append(&mut tx, events).await?;
        self.commit(tx).await
    }

    pub(super) async fn delete_on(
        &self,
        connection: &mut AnyConnection,
        id: CustomerId,
        expected_version: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let mut tx = connection.begin().await.map_err(classify)?;
        self.delete_row(&mut tx, id, expected_version).await?;
        self.append(&mut tx, events).await?;
        self.commit(tx).await
    }

    pub(super) async fn erase_on(
        &self,
        connection: &mut AnyConnection,
        id: CustomerId,
        expected_version: Option<i64>,
        events: &[NewEvent],
        rewrites: &[Rewrite],
        saga: Option<SagaStart<'_>>,
    ) -> Result<(), StoreError> {
        let mut tx = connection.begin().await.map_err(classify)?;
        if let Some(version) = expected_version {
            self.delete_row(&mut tx, id, version).await?;
        }
        self.append(&mut tx, events).await?;
        if let Some(saga) = &saga {
            self.insert_saga(&mut tx, saga).await?;
        }
        for rewrite in rewrites {
            self.query(sql::REWRITE_PAYLOAD)
                .bind(&rewrite.payload)
                .bind(rewrite.position)
                .bind(id.get())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        self.query(sql::TOMBSTONE_IDEMPOTENCY_OF_CUSTOMER)
            .bind(id.get())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        self.commit(tx).await
    }

    pub(super) async fn mark_published_on(
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
            let held = self
                .query(sql::FENCE_RELAY_LEASE)
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
            let mut query = self.query(statement);
            for position in positions {
                query = query.bind(*position);
            }
            query.execute(&mut *tx).await.map_err(classify)?;
        }
        if let Some(watermark) = watermark {
            self.query(sql::SAVE_WATERMARK)
                .bind(watermark)
                .bind(watermark)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }
}

impl SqlStore {
    /// Deletes the customer's row if it is still at `version` (compare-and-set).
    async fn delete_row(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        id: CustomerId,
        version: i64,
    ) -> Result<(), StoreError> {
        let deleted = self
            .query(sql::DELETE_CUSTOMER)
            .bind(id.get())
            .bind(version)
            .execute(&mut **tx)
            .await
            .map_err(classify)?;
        one_row(deleted.rows_affected())
    }
}

/// An id the database assigned, as a customer id.
fn assigned_id(id: i64) -> Result<CustomerId, StoreError> {
    CustomerId::new(id)
        .ok_or_else(|| StoreError::Other(format!("database assigned id {id}").into()))
}

/// A compare-and-set write changed its row, or the row moved on: a version conflict.
fn one_row(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::VersionConflict)
    }
}
