//! The relay: takes pending events from the log in log order, hands each batch to every
//! sink, and only then marks them published (and moves the watermark of the settled log,
//! see `watermark.rs`). A failed sink keeps the batch pending; nothing is skipped or
//! dropped, and no HTTP request ever waits for it.
//!
//! [`Relay::step`] is one batch and the unit the tests drive; [`run`] loops it with wake-ups,
//! back-off and the leader lease.

mod leader;
mod runner;
mod watermark;

pub use leader::{Leadership, LeaseKeeper};
pub use runner::{run, RelayTiming};
pub use watermark::{Watermark, GAP_GRACE};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use customer_events::EventType;

use crate::application::{EventLog, StoreError, StoredEvent};
use crate::sinks::{EventSink, SinkError};

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// This many events were published and marked.
    Published(usize),
    /// Nothing was pending.
    Idle,
}

/// Why a step failed; the batch stays pending.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading or marking the event log failed")]
    Store(#[from] StoreError),
    #[error("publishing failed")]
    Sink(#[from] SinkError),
}

impl RelayError {
    /// What failed, without driver text: "redis unavailable", "database unavailable", …
    /// (safe to show in the health answer; the full cause goes to the log).
    pub fn summary(&self) -> String {
        match self {
            RelayError::Store(error) => error.to_string(),
            RelayError::Sink(error) => error.to_string(),
        }
    }
}

/// What the health check shows of the relay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelaySnapshot {
    /// Whether this instance holds the leader lease (publishes).
    pub is_leader: bool,
    /// The error of the current failure streak, if the last step failed.
    pub last_error: Option<String>,
    /// Events this instance published since it started.
    pub published_total: u64,
    /// Relay steps that failed (and were retried) since it started.
    pub failures_total: u64,
}

/// Shared, cheap-to-read relay state.
#[derive(Debug, Default)]
pub struct RelayStatus(Mutex<RelaySnapshot>);

impl RelayStatus {
    pub fn snapshot(&self) -> RelaySnapshot {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, change: impl FnOnce(&mut RelaySnapshot)) {
        if let Ok(mut snapshot) = self.0.lock() {
            change(&mut snapshot);
        }
    }
}

/// Published events after which an idle relay compacts the pending table (see
/// `EventLog::compact`): small enough that dead rows never slow the oldest-first scan, large
/// enough that the vacuum's cost is spread over thousands of events.
const COMPACT_AFTER_EVENTS: u64 = 5_000;

/// Moves pending events from the log to the sinks.
pub struct Relay {
    log: Arc<dyn EventLog>,
    /// In delivery order (today: Redis, when configured). A batch counts as published once
    /// every sink took it.
    sinks: Vec<Arc<dyn EventSink>>,
    batch_size: i64,
    status: Arc<RelayStatus>,
    /// Events published since the pending table was last compacted.
    since_compact: std::sync::atomic::AtomicU64,
    /// The settled prefix while this instance leads; `None` until loaded (again).
    watermark: Mutex<Option<Watermark>>,
    /// Announces each new watermark to this process's cursor readers (the SSE streams).
    settled: watch::Sender<i64>,
    /// How long a missing position may hold the watermark back.
    gap_grace: Duration,
}

impl Relay {
    pub fn new(log: Arc<dyn EventLog>, sinks: Vec<Arc<dyn EventSink>>, batch_size: i64) -> Relay {
        Relay {
            log,
            sinks,
            batch_size,
            status: Arc::new(RelayStatus::default()),
            since_compact: std::sync::atomic::AtomicU64::new(0),
            watermark: Mutex::new(None),
            settled: watch::Sender::new(0),
            gap_grace: GAP_GRACE,
        }
    }

    /// Overrides [`GAP_GRACE`] (`RELAY_GAP_GRACE_MS`).
    pub fn with_gap_grace(mut self, grace: Duration) -> Relay {
        self.gap_grace = grace;
        self
    }

    /// Changes whenever this instance's relay moves the watermark. Readers on an instance
    /// that does not lead see no changes here and poll instead.
    pub fn settled(&self) -> watch::Receiver<i64> {
        self.settled.subscribe()
    }

    /// Drops the in-memory watermark; the next step reloads it from the database. Called
    /// when this instance (re)gains the lease, since another leader may have moved it.
    pub fn forget_watermark(&self) {
        if let Ok(mut watermark) = self.watermark.lock() {
            *watermark = None;
        }
    }

    async fn load_watermark_if_needed(&self) -> Result<(), RelayError> {
        let loaded = self.watermark.lock().map(|w| w.is_some()).unwrap_or(false);
        if !loaded {
            let (settled, above) = self.log.load_watermark().await?;
            if let Ok(mut watermark) = self.watermark.lock() {
                *watermark = Some(Watermark::new(settled, above));
            }
            self.settled.send_replace(settled);
        }
        Ok(())
    }

    /// Records `positions` as published and moves the watermark if it can; the new value.
    fn advance_watermark(&self, positions: &[i64]) -> Option<i64> {
        let mut guard = self.watermark.lock().ok()?;
        let watermark = guard.as_mut()?;
        let late = watermark.published(positions);
        if !late.is_empty() {
            tracing::warn!(
                outbox.late_positions = ?late,
                "events committed long after later ones: published, but readers of the \
                 settled log (events API, SSE) have passed them"
            );
        }
        watermark.advance(Instant::now(), self.gap_grace)
    }

    pub fn status(&self) -> Arc<RelayStatus> {
        self.status.clone()
    }

    /// Publishes the oldest pending batch to every sink, then marks it published (the sole
    /// relay, unfenced: SQLite, and tests that drive the relay).
    pub async fn step(&self) -> Result<StepOutcome, RelayError> {
        self.step_under(None).await
    }

    /// [`Relay::step`] as the holder of the lease epoch `fence`, if given: the sinks and the
    /// mark refuse it once a newer epoch exists.
    #[tracing::instrument(name = "relay.step", skip_all)]
    pub async fn step_under(&self, fence: Option<i64>) -> Result<StepOutcome, RelayError> {
        self.load_watermark_if_needed().await?;
        let positions = self.publish_pending(fence).await?.unwrap_or_default();
        // Counted as soon as the sinks have them (before the mark), so whoever sees the
        // events marked published also sees them counted; a batch whose mark fails is
        // published again later, and counted again, as it is.
        let published = positions.len() as u64;
        if published > 0 {
            self.status.update(|s| s.published_total += published);
        }
        let watermark = self.advance_watermark(&positions);
        if let Err(error) = self.log.mark_published(&positions, watermark, fence).await {
            // The in-memory watermark may now be ahead of the stored one: reload it.
            self.forget_watermark();
            return Err(error.into());
        }
        if let Some(watermark) = watermark {
            self.settled.send_replace(watermark);
        }
        if positions.is_empty() {
            self.compact_if_due().await?;
            return Ok(StepOutcome::Idle);
        }
        self.since_compact
            .fetch_add(published, std::sync::atomic::Ordering::Relaxed);
        // Also mid-drain: each oldest-first read walks past the entries of rows already
        // deleted, so a long drain slows down as it goes unless they are cleared.
        self.compact_if_due().await?;
        Ok(StepOutcome::Published(positions.len()))
    }

    /// Compacts the pending table once enough events went through it.
    async fn compact_if_due(&self) -> Result<(), RelayError> {
        use std::sync::atomic::Ordering;
        if self.since_compact.load(Ordering::Relaxed) >= COMPACT_AFTER_EVENTS {
            self.log.compact().await?;
            self.since_compact.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Steps until nothing is pending; returns how many events were published.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        while let StepOutcome::Published(n) = self.step().await? {
            total += n;
        }
        Ok(total)
    }

    /// A failpoint for tests: publishes the oldest pending batch and "crashes" before
    /// marking it, exactly like a relay killed between the two.
    #[doc(hidden)]
    pub async fn step_crashing_before_mark(&self) -> Result<usize, RelayError> {
        Ok(self.publish_pending(None).await?.map_or(0, |p| p.len()))
    }

    /// Reads a batch and delivers it to every sink; the published positions, or `None` if
    /// nothing was pending.
    async fn publish_pending(&self, fence: Option<i64>) -> Result<Option<Vec<i64>>, RelayError> {
        let batch = self.log.pending(self.batch_size).await?;
        if batch.is_empty() {
            return Ok(None);
        }
        for sink in &self.sinks {
            sink.publish(&batch, fence).await?;
        }
        self.erase_published(&batch).await?;
        Ok(Some(batch.iter().map(|e| e.position).collect()))
    }

    /// For each CustomerErased in `batch` (published, so every earlier event of that
    /// customer is too): the sinks drop what they keep of the customer's events. Before the
    /// batch is marked, so a failure retries it.
    async fn erase_published(&self, batch: &[StoredEvent]) -> Result<(), RelayError> {
        let erased = batch
            .iter()
            .filter(|e| e.event_type == EventType::CustomerErased)
            .filter_map(|e| e.aggregate.customer());
        for customer in erased {
            // CustomerErased itself stays: it carries no personal data, and consumers that
            // were away need it to erase their own copies. So do the erasure saga's
            // requests (a saga's events, not the customer's): participants act on them.
            let mut events = self.log.customer_events(customer).await?;
            events.retain(|e| e.event_type != EventType::CustomerErased);
            for sink in &self.sinks {
                sink.erase(&events).await?;
            }
        }
        Ok(())
    }
}
