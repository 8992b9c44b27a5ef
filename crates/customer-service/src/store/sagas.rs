//! [`SagaStore`] on the `sagas` and `saga_steps` tables (migration 7), and the start of a
//! saga inside another write's transaction. Every change of a saga is one transaction: the
//! row by compare-and-set on `version`, its steps, and its events appended to the log under
//! the log key `-id` (see `Aggregate::log_key`), so the relay publishes them in log order
//! with everything else.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Connection, Row};

use crate::application::{NewEvent, SagaStart, SagaStore, SagaSummary, StoreError};
use crate::domain::saga::{Saga, SagaState, Step, StepState};
use crate::domain::Timestamp;

use super::error::classify;
use super::sql_store::SqlStore;
use super::Backend;

macro_rules! saga_columns {
    () => {
        "id, kind, subject_id, state, reason, sequence, started_at_ms, deadline_at_ms, \
         updated_at_ms, ended_at_ms, version"
    };
}

const INSERT_SAGA: &str = "insert into sagas (kind, subject_id, state, reason, sequence, \
     started_at_ms, deadline_at_ms, updated_at_ms, ended_at_ms, next_due_at_ms, version) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const INSERT_SAGA_RETURNING_ID: &str = "insert into sagas (kind, subject_id, state, reason, \
     sequence, started_at_ms, deadline_at_ms, updated_at_ms, ended_at_ms, next_due_at_ms, \
     version) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id";
const INSERT_STEP: &str = "insert into saga_steps (saga_id, ordinal, name, state, token, \
     attempts, first_asked_at_ms, last_asked_at_ms, next_ask_at_ms, answered_at_ms, reason) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const UPDATE_SAGA: &str = "update sagas set state = $1, reason = $2, sequence = $3, \
     deadline_at_ms = $4, updated_at_ms = $5, ended_at_ms = $6, next_due_at_ms = $7, \
     version = version + 1 where id = $8 and version = $9";
const UPDATE_STEP: &str = "update saga_steps set state = $1, token = $2, attempts = $3, \
     last_asked_at_ms = $4, next_ask_at_ms = $5, answered_at_ms = $6, reason = $7 \
     where saga_id = $8 and name = $9";
const SAGA_BY_ID: &str = concat!("select ", saga_columns!(), " from sagas where id = $1");
const SAGA_OF_SUBJECT: &str = concat!(
    "select ",
    saga_columns!(),
    " from sagas where kind = $1 and subject_id = $2 order by id desc limit 1"
);
const LIST_SAGAS: &str = concat!(
    "select ",
    saga_columns!(),
    " from sagas where ($1 is null or state = $2) and ($3 is null or id < $4) \
     order by id desc limit $5"
);
const STEPS_OF_PREFIX: &str = "select saga_id, name, state, token, attempts, \
     first_asked_at_ms, last_asked_at_ms, next_ask_at_ms, answered_at_ms, reason \
     from saga_steps where saga_id in ";
const DUE_SAGAS: &str =
    "select id from sagas where next_due_at_ms <= $1 order by next_due_at_ms limit $2";
const SAGAS_BY_STATE: &str = "select state, count(*) from sagas group by state";
const OLDEST_OPEN: &str = "select min(started_at_ms) from sagas where state = 'open'";
const PAST_HALF_DEADLINE: &str = "select count(*) from sagas where state = 'open' \
     and ($1 - started_at_ms) * 2 > deadline_at_ms - started_at_ms";

fn millis(at: Option<Timestamp>) -> Option<i64> {
    at.map(Timestamp::millis)
}

fn timestamp(row: &AnyRow, index: usize) -> Result<Timestamp, sqlx::Error> {
    Ok(Timestamp::from_millis(row.try_get(index)?))
}

fn optional_timestamp(row: &AnyRow, index: usize) -> Result<Option<Timestamp>, sqlx::Error> {
    Ok(row
        .try_get::<Option<i64>, _>(index)?
        .map(Timestamp::from_millis))
}

fn bad(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(what.to_owned().into())
}

/// A row of [`saga_columns!`], without its steps.
fn read_saga(row: &AnyRow) -> Result<Saga, StoreError> {
    let read = || -> Result<Saga, sqlx::Error> {
        let state: String = row.try_get(3)?;
        Ok(Saga {
            id: row.try_get(0)?,
            kind: row.try_get(1)?,
            subject_id: row.try_get(2)?,
            state: SagaState::parse(&state).ok_or_else(|| bad("unknown saga state"))?,
            reason: row.try_get(4)?,
            sequence: row.try_get(5)?,
            started_at: timestamp(row, 6)?,
            deadline: timestamp(row, 7)?,
            updated_at: timestamp(row, 8)?,
            ended_at: optional_timestamp(row, 9)?,
            version: row.try_get(10)?,
            steps: Vec::new(),
        })
    };
    read().map_err(classify)
}

fn read_step(row: &AnyRow) -> Result<(i64, Step), StoreError> {
    let read = || -> Result<(i64, Step), sqlx::Error> {
        let state: String = row.try_get(2)?;
        Ok((
            row.try_get(0)?,
            Step {
                name: row.try_get(1)?,
                state: StepState::parse(&state).ok_or_else(|| bad("unknown step state"))?,
                token: row.try_get(3)?,
                attempts: row.try_get(4)?,
                first_asked_at: timestamp(row, 5)?,
                last_asked_at: timestamp(row, 6)?,
                next_ask_at: timestamp(row, 7)?,
                answered_at: optional_timestamp(row, 8)?,
                reason: row.try_get(9)?,
            },
        ))
    };
    read().map_err(classify)
}

impl SqlStore {
    /// Inserts `start`'s saga and steps and appends its first events, inside `tx`.
    pub(super) async fn insert_saga(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        start: &SagaStart<'_>,
    ) -> Result<i64, StoreError> {
        let saga = start.saga;
        let insert = |text| {
            self.query(text)
                .bind(saga.kind.clone())
                .bind(saga.subject_id)
                .bind(saga.state.as_str())
                .bind(saga.reason.clone())
                .bind(saga.sequence)
                .bind(saga.started_at.millis())
                .bind(saga.deadline.millis())
                .bind(saga.updated_at.millis())
                .bind(millis(saga.ended_at))
                .bind(millis(saga.next_due()))
                .bind(saga.version)
        };
        let id: i64 = if self.backend() == Backend::MySql {
            let inserted = insert(INSERT_SAGA)
                .execute(&mut **tx)
                .await
                .map_err(classify)?;
            inserted
                .last_insert_id()
                .ok_or_else(|| StoreError::Other("MySQL reported no inserted id".into()))?
        } else {
            let row = insert(INSERT_SAGA_RETURNING_ID)
                .fetch_one(&mut **tx)
                .await
                .map_err(classify)?;
            row.try_get(0).map_err(classify)?
        };
        for (ordinal, step) in saga.steps.iter().enumerate() {
            self.query(INSERT_STEP)
                .bind(id)
                .bind(i32::try_from(ordinal).unwrap_or(i32::MAX))
                .bind(step.name.clone())
                .bind(step.state.as_str())
                .bind(step.token.clone())
                .bind(step.attempts)
                .bind(step.first_asked_at.millis())
                .bind(step.last_asked_at.millis())
                .bind(step.next_ask_at.millis())
                .bind(millis(step.answered_at))
                .bind(step.reason.clone())
                .execute(&mut **tx)
                .await
                .map_err(classify)?;
        }
        self.append(tx, &(start.events)(id)).await?;
        Ok(id)
    }

    /// `sagas` with their steps.
    async fn with_steps(&self, mut sagas: Vec<Saga>) -> Result<Vec<Saga>, StoreError> {
        if sagas.is_empty() {
            return Ok(sagas);
        }
        let placeholders: Vec<String> = (1..=sagas.len()).map(|n| format!("${n}")).collect();
        let statement = format!(
            "{STEPS_OF_PREFIX}({}) order by saga_id, ordinal",
            placeholders.join(", ")
        );
        let mut query = self.query(statement);
        for saga in &sagas {
            query = query.bind(saga.id);
        }
        for row in self.fetch_all(query).await? {
            let (saga_id, step) = read_step(&row)?;
            if let Some(saga) = sagas.iter_mut().find(|s| s.id == saga_id) {
                saga.steps.push(step);
            }
        }
        Ok(sagas)
    }

    async fn one_saga(
        &self,
        query: sqlx::query::Query<'static, Any, sqlx::any::AnyArguments>,
    ) -> Result<Option<Saga>, StoreError> {
        let Some(row) = self.fetch_optional(query).await? else {
            return Ok(None);
        };
        Ok(self.with_steps(vec![read_saga(&row)?]).await?.pop())
    }
}

#[async_trait]
impl SagaStore for SqlStore {
    async fn find_saga(&self, id: i64) -> Result<Option<Saga>, StoreError> {
        self.one_saga(self.query(SAGA_BY_ID).bind(id)).await
    }

    async fn find_saga_of(&self, kind: &str, subject_id: i64) -> Result<Option<Saga>, StoreError> {
        self.one_saga(
            self.query(SAGA_OF_SUBJECT)
                .bind(kind.to_owned())
                .bind(subject_id),
        )
        .await
    }

    async fn list_sagas(
        &self,
        state: Option<SagaState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Saga>, StoreError> {
        let state = state.map(SagaState::as_str);
        let rows = self
            .fetch_all(
                self.query(LIST_SAGAS)
                    .bind(state)
                    .bind(state)
                    .bind(before)
                    .bind(before)
                    .bind(limit),
            )
            .await?;
        let sagas = rows.iter().map(read_saga).collect::<Result<Vec<_>, _>>()?;
        self.with_steps(sagas).await
    }

    async fn due_sagas(&self, now: Timestamp, limit: i64) -> Result<Vec<i64>, StoreError> {
        let rows = self
            .fetch_all(self.query(DUE_SAGAS).bind(now.millis()).bind(limit))
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(classify))
            .collect()
    }

    #[tracing::instrument(name = "store.save_saga", skip_all, fields(saga.id = saga.id))]
    async fn save_saga(&self, saga: &Saga, events: &[NewEvent]) -> Result<(), StoreError> {
        self.on_writer(async |lease| {
            let connection: &mut AnyConnection = lease;
            let mut tx = connection.begin().await.map_err(classify)?;
            let updated = self
                .query(UPDATE_SAGA)
                .bind(saga.state.as_str())
                .bind(saga.reason.clone())
                .bind(saga.sequence)
                .bind(saga.deadline.millis())
                .bind(saga.updated_at.millis())
                .bind(millis(saga.ended_at))
                .bind(millis(saga.next_due()))
                .bind(saga.id)
                .bind(saga.version)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::VersionConflict);
            }
            for step in &saga.steps {
                self.query(UPDATE_STEP)
                    .bind(step.state.as_str())
                    .bind(step.token.clone())
                    .bind(step.attempts)
                    .bind(step.last_asked_at.millis())
                    .bind(step.next_ask_at.millis())
                    .bind(millis(step.answered_at))
                    .bind(step.reason.clone())
                    .bind(saga.id)
                    .bind(step.name.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
            }
            self.append(&mut tx, events).await?;
            self.commit(tx).await
        })
        .await
    }

    async fn saga_summary(&self, now: Timestamp) -> Result<SagaSummary, StoreError> {
        let mut by_state: Vec<(SagaState, i64)> =
            SagaState::ALL.into_iter().map(|s| (s, 0)).collect();
        for row in self.fetch_all(self.query(SAGAS_BY_STATE)).await? {
            let state: String = row.try_get(0).map_err(classify)?;
            let count: i64 = row.try_get(1).map_err(classify)?;
            if let Some(slot) = by_state
                .iter_mut()
                .find(|(s, _)| Some(*s) == SagaState::parse(&state))
            {
                slot.1 = count;
            }
        }
        let oldest: Option<i64> = self
            .fetch_one(self.query(OLDEST_OPEN))
            .await?
            .try_get(0)
            .map_err(classify)?;
        let past_half: i64 = self
            .fetch_one(self.query(PAST_HALF_DEADLINE).bind(now.millis()))
            .await?
            .try_get(0)
            .map_err(classify)?;
        Ok(SagaSummary {
            by_state,
            oldest_open_started_at: oldest.map(Timestamp::from_millis),
            past_half_deadline: past_half,
        })
    }
}
