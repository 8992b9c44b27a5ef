//! The service's read models (today: `stats`, see `stats.rs`) run by `customer-events`'
//! projection runner inside the process: the settled log is their source, the store's
//! writer pool their connections (on SQLite its single writer, so a read model's
//! transaction queues with the service's own instead of failing on SQLite's lock upgrade).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use customer_events::projection::{
    self, Connections, EventSource, Options, ProjectionError, RawEvent, Runner,
};
use sqlx::{AnyConnection, Row};
use tokio::sync::watch;

use crate::application::{
    EventFilter, EventLog, ProjectionState, ReadModels, StatsRows, StoreError,
};

use super::error::classify;
use super::pool::Lease;
use super::stats::{counts_query, CustomerStatsModel, STATS};
use super::SqlStore;

/// Every read model of the service.
pub const MODELS: &[&str] = &[STATS];

/// The store's writer pool, as a runner's connections.
struct WriterConnections(Arc<SqlStore>);

#[async_trait]
impl Connections for WriterConnections {
    type Conn = Lease;

    async fn acquire(&self) -> Result<Lease, sqlx::Error> {
        self.0.writer.acquire().await
    }

    fn release(&self, conn: Lease, reusable: bool) {
        conn.settle(reusable);
    }
}

/// The settled log of this database: read by position, woken by this instance's relay
/// (`settled`) and otherwise polled.
struct SettledLog {
    store: Arc<SqlStore>,
    settled: watch::Receiver<i64>,
}

/// How often a source with no local relay moves looks for new settled events.
const POLL: Duration = Duration::from_millis(200);

#[async_trait]
impl EventSource for SettledLog {
    async fn read(
        &mut self,
        after: i64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<RawEvent>, ProjectionError> {
        let deadline = Instant::now() + wait;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        loop {
            self.settled.mark_unchanged();
            let events = self
                .store
                .settled_events(after, limit, &EventFilter::default())
                .await
                .map_err(|error| ProjectionError::Source(error.to_string()))?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !events.is_empty() || left.is_zero() {
                return Ok(events
                    .into_iter()
                    .map(|e| RawEvent {
                        position: e.position,
                        payload: e.payload,
                    })
                    .collect());
            }
            let _ = tokio::time::timeout(left.min(POLL), self.settled.changed()).await;
        }
    }

    async fn head(&mut self) -> Result<Option<i64>, ProjectionError> {
        self.store
            .watermark()
            .await
            .map(Some)
            .map_err(|error| ProjectionError::Source(error.to_string()))
    }

    fn fork(&self) -> Self {
        SettledLog {
            store: self.store.clone(),
            settled: self.settled.clone(),
        }
    }
}

impl SqlStore {
    /// Runs the service's read models until `shutdown` turns true. `on_applied` sees every
    /// committed batch (the apply-delay histogram).
    pub async fn run_read_models(
        self: Arc<Self>,
        settled: watch::Receiver<i64>,
        mut shutdown: watch::Receiver<bool>,
        on_applied: projection::OnApplied,
    ) {
        let options = Options {
            on_applied: Some(on_applied),
            ..Options::default()
        };
        let stop = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stop);
        let source = SettledLog {
            store: self.clone(),
            settled,
        };
        // Started again after a failure (say, the database down at start-up).
        let runner = loop {
            let started = Runner::start(
                CustomerStatsModel,
                source.fork(),
                WriterConnections(self.clone()),
                options.clone(),
            );
            tokio::select! {
                _ = &mut stop => return,
                started = started => match started {
                    Ok(runner) => break runner,
                    Err(error) => {
                        tracing::warn!(model = STATS, error = %error, "read model could not start; retrying");
                    }
                },
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(options.retry) => {}
            }
        };
        runner.run(stop).await;
    }
}

#[async_trait]
impl ReadModels for SqlStore {
    async fn stats_rows(&self, since_day: &str) -> Result<Option<StatsRows>, StoreError> {
        let mut lease = self.readers.acquire().await.map_err(classify)?;
        let result = stats_rows(&mut lease, since_day).await;
        lease.settle_on(result).map_err(classify)
    }

    async fn projection_states(&self) -> Result<Vec<ProjectionState>, StoreError> {
        let mut lease = self.readers.acquire().await.map_err(classify)?;
        let mut states = Vec::new();
        for model in MODELS {
            let result = projection::status(&mut lease, model).await;
            let status = match result {
                Ok(status) => status,
                Err(error) => return lease.settle_on(Err(error)).map_err(classify),
            };
            if let Some(status) = status {
                states.push(status);
            }
        }
        lease.settle(true);
        Ok(states)
    }

    async fn request_rebuild(&self, model: &str) -> Result<bool, StoreError> {
        let mut lease = self.writer.acquire().await.map_err(classify)?;
        let result = projection::request_rebuild(&mut lease, model).await;
        lease.settle_on(result).map_err(classify)
    }
}

async fn stats_rows(
    conn: &mut AnyConnection,
    since_day: &str,
) -> Result<Option<StatsRows>, sqlx::Error> {
    let Some(status) = projection::status(conn, STATS).await? else {
        return Ok(None);
    };
    let Some(tables) = projection::serving_tables(conn, STATS).await? else {
        return Ok(None);
    };
    let text = projection::portable(conn, counts_query(&tables));
    let rows = sqlx::query(sqlx::AssertSqlSafe(text))
        .bind(since_day.to_owned())
        .fetch_all(&mut *conn)
        .await?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in rows {
        counts.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
    }
    Ok(Some(StatsRows {
        counts,
        state: status,
    }))
}
