//! Read models fed from the service's event log (feature `projection`).
//!
//! A read model ([`ReadModel`]) says how each event changes its tables. A [`Runner`] feeds it
//! the log in position order from an [`EventSource`] — the service's HTTP API for a consumer
//! team (feature `projection-http`), the log itself inside the service — and commits each
//! batch's changes **and the model's checkpoint in one transaction** of the model's own
//! database (PostgreSQL, SQLite or MySQL/MariaDB through sqlx's `Any` driver). A crash
//! between an event and its checkpoint therefore loses nothing and applies nothing twice:
//! the next run starts from the last committed checkpoint.
//!
//! The checkpoint update is a compare-and-set on the position the batch was read after, and
//! it comes first in the transaction, before the model runs: several runners over one
//! database (several instances of a service) never apply a batch twice, and the one whose
//! update finds the position moved rolls back without running the model, then continues from
//! the stored checkpoint. A step that fails for any other reason also re-reads it.
//!
//! # Generations and rebuilds
//! A model's tables belong to a generation: [`Tables::name`] prefixes them
//! `rm_<model>_g<generation>_`. [`request_rebuild`] asks the runner (through the database,
//! so any process may ask) to build the next generation from position 0 beside the serving
//! one: the runner keeps applying live events to the serving copy and, in between, replays
//! the log into the new one; once the new copy has caught up it becomes the serving one in
//! one transaction and the old tables are dropped (blue/green). Readers look the serving
//! generation up with [`serving_tables`].
//!
//! # Events
//! Events reach the model typed and upcast to the current schema ([`Envelope::from_json`]),
//! so a model only knows the current types. Types newer than this crate are skipped (the
//! checkpoint still moves past them). `CustomerErased` is delivered like every event: a model
//! that keeps personal data removes it there.

mod control;
mod db;
mod generations;
#[cfg(feature = "projection-http")]
pub mod http;
mod runner;
mod time;

use async_trait::async_trait;

use crate::{CustomerEvent, Envelope};

pub use control::{ensure_tables, request_rebuild, serving_tables, status};
pub use db::{placeholders, portable, Db, Tables};
pub use runner::{AppliedBatch, Connections, Lag, OnApplied, Options, Runner, Status};
pub use time::iso_to_unix_ms;

/// One event of the log, typed and upcast to the current schema.
#[derive(Debug, Clone)]
pub struct LogEvent {
    /// Its position in the log (commit order across all customers).
    pub position: i64,
    pub envelope: Envelope<CustomerEvent>,
}

/// One event as a source delivers it: its position and its envelope's JSON.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub position: i64,
    pub payload: String,
}

/// Where a runner reads the log.
#[async_trait]
pub trait EventSource: Send {
    /// Up to `limit` events after position `after`, in position order. When there are none
    /// yet it may wait up to `wait` for the first (a live source), then returns what it has,
    /// possibly nothing.
    async fn read(
        &mut self,
        after: i64,
        limit: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<RawEvent>, ProjectionError>;

    /// An independent reader of the same log (a rebuild reads from position 0 while the
    /// serving copy follows the live end).
    fn fork(&self) -> Self
    where
        Self: Sized;

    /// The log's last position a reader may see now, if the source can tell (for
    /// [`Runner::lag`]).
    async fn head(&mut self) -> Result<Option<i64>, ProjectionError> {
        Ok(None)
    }
}

/// A read model: its tables and how each batch of events changes them.
#[async_trait]
pub trait ReadModel: Send + Sync {
    /// The model's name: its checkpoint's key and its tables' prefix (`[a-z0-9_]`, at most
    /// 40 characters).
    fn name(&self) -> &'static str;

    /// The names of its tables (without prefix), to drop a generation.
    fn tables(&self) -> &'static [&'static str];

    /// Creates the tables of one generation (empty), named with [`Tables::name`]. Must
    /// keep tables that already exist (`create table if not exists`): a start that died
    /// before committing its checkpoint may have left them (empty) on MySQL, whose DDL
    /// commits at once.
    async fn create(&self, db: &mut Db<'_>, tables: &Tables) -> Result<(), ProjectionError>;

    /// Applies `events`, in log order, inside the runner's transaction.
    async fn apply(
        &self,
        db: &mut Db<'_>,
        tables: &Tables,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError>;
}

/// Why a runner could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("the read model's database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("reading the event log: {0}")]
    Source(String),
    #[error("the event at position {position} cannot be read: {reason}")]
    BadEvent { position: i64, reason: String },
    #[error("{0}")]
    Model(String),
}
