//! What the use cases need from outside: the customer store and a clock.

use std::time::Duration;

use async_trait::async_trait;
use customer_events::EventType;

use crate::domain::saga::{Saga, SagaState};
use crate::domain::{Customer, CustomerChange, CustomerDraft, CustomerId, Email, Timestamp};

/// The time, as the use cases see it. A port so tests can pin "now".
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system clock, truncated to milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(chrono::Utc::now())
    }
}

/// Whose event a log row is. The log's `customer_id` column holds a customer's id, or the
/// negated id of a saga (see [`Aggregate::log_key`]): customer ids are positive, so no
/// customer's history, sequence or erasure ever meets a saga's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Customer(CustomerId),
    /// A saga's id (positive).
    Saga(i64),
}

impl Aggregate {
    /// The value of the log's `customer_id` column.
    pub fn log_key(self) -> i64 {
        match self {
            Aggregate::Customer(id) => id.get(),
            Aggregate::Saga(id) => -id,
        }
    }

    pub fn from_log_key(key: i64) -> Option<Aggregate> {
        match key {
            key if key > 0 => CustomerId::new(key).map(Aggregate::Customer),
            key if key < 0 => key.checked_neg().map(Aggregate::Saga),
            _ => None,
        }
    }

    /// The customer, for a customer's event.
    pub fn customer(self) -> Option<CustomerId> {
        match self {
            Aggregate::Customer(id) => Some(id),
            Aggregate::Saga(_) => None,
        }
    }
}

/// An event ready to append to the log: everything but its log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: String,
    pub event_type: EventType,
    pub aggregate: Aggregate,
    /// The aggregate's event number (1, 2, 3 … without gaps).
    pub sequence: i64,
    pub occurred_at: Timestamp,
    /// The compact envelope JSON every sink carries unchanged.
    pub payload: String,
}

/// An event as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Global position in commit order.
    pub position: i64,
    pub event_id: String,
    pub event_type: EventType,
    pub aggregate: Aggregate,
    pub sequence: i64,
    pub occurred_at: Timestamp,
    pub payload: String,
}

/// One stored event's new payload (erasure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub position: i64,
    pub payload: String,
}

/// What a new customer's insert writes besides its row, once the database has given it an
/// id: its events and, for a create under an idempotency key, the answer kept with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub events: Vec<NewEvent>,
    pub answer: Option<StoredResponse>,
}

/// The insert's one callback: from the created customer (with its id), the plain data to
/// write in the same transaction. The id exists only inside that transaction.
pub type Complete<'a> = &'a (dyn Fn(&CustomerChange) -> Created + Send + Sync);

/// The bulk insert's callback: from a created customer (with its id), its final state and
/// every event to append for it.
pub type CompleteBulk<'a> = &'a (dyn Fn(CustomerChange) -> (Customer, Vec<NewEvent>) + Send + Sync);

/// A page of the customer list, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub offset: i64,
    pub limit: i64,
    /// Lower-cased substring of first name, last name or e-mail.
    pub search: Option<String>,
    /// Start after this customer in list order (keyset paging) rather than at `offset`.
    pub after: Option<ListPosition>,
}

/// A customer's place in the list order (newest first, id breaking ties): what a keyset
/// cursor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListPosition {
    pub created_at_ms: i64,
    pub id: i64,
}

/// Active customers in list order, optionally from a position and at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActiveQuery {
    pub after: Option<ListPosition>,
    pub limit: Option<i64>,
}

/// Customers read one at a time as the database sends them (memory stays flat however many).
pub type CustomerStream = futures_util::stream::BoxStream<'static, Result<Customer, StoreError>>;

/// An HTTP answer as stored for an idempotent request, to be sent again byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub etag: Option<String>,
}

/// A stored idempotent request and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The key's customer was erased: only this tombstone remains (no request, no answer),
    /// and it does not expire.
    pub erased: bool,
    /// The request body as canonical JSON.
    pub request: String,
    pub response: StoredResponse,
    pub created_at: Timestamp,
}

/// Turns the created customer into the answer to store with its idempotency key.
pub type Responder<'a> = &'a (dyn Fn(&Customer) -> StoredResponse + Send + Sync);

/// The idempotency key [`CustomerStore::insert`] claims before the insert, in the same
/// transaction; [`Created::answer`] is kept with it.
pub struct IdempotencyClaim<'a> {
    pub key: &'a str,
    pub request: &'a str,
    /// Records older than this are expired: removed, and their keys free again.
    pub expired_before: Timestamp,
}

/// What health and metrics show of the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// It answered the last check.
    pub up: bool,
    /// How far it is behind the primary.
    pub lag: Duration,
    /// Reads may go to it (up, and not lagging more than allowed).
    pub serving: bool,
    pub max_lag: Duration,
    /// Reads served by it and, of those that could have been, by the primary, since start.
    pub reads_replica: u64,
    pub reads_primary: u64,
}

/// A connection pool's state, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub in_use: usize,
    pub idle: usize,
    pub max: usize,
}

/// Search queries so far, by what served them (for metrics and tests): totals counted
/// through an index or by a scan, pages found through an index or by walking the list order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchQueries {
    pub count_index: u64,
    pub count_scan: u64,
    pub page_index: u64,
    pub page_walk: u64,
}

/// Which settled events to read (every filter optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Option<EventType>,
    pub customer_id: Option<CustomerId>,
}

/// Events appended but not yet published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStatus {
    pub pending: i64,
    /// When the oldest pending event occurred, if any is pending.
    pub oldest_pending_at: Option<Timestamp>,
}

/// Why a store call failed, in meanings rather than driver terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another customer already has this e-mail.
    #[error("email already exists")]
    EmailTaken,
    /// A concurrent request holds (or just stored) this idempotency key.
    #[error("idempotency key taken")]
    IdempotencyKeyTaken,
    /// The customer's version is no longer the one the change was decided on (or the
    /// customer is gone).
    #[error("customer version changed concurrently")]
    VersionConflict,
    /// The database cannot be reached or is overloaded; worth retrying later.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The relay leader's lease has passed to another instance (its epoch is past): this
    /// instance must not mark anything published.
    #[error("the relay lease was taken over")]
    Fenced,
    /// Anything else: a bug or corrupted data.
    #[error("database error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Customers and their event log. Every write is one transaction: the customer row and its
/// events commit together or not at all.
#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// In one transaction: claims `claim`'s key (if any), inserts `draft`, and writes what
    /// `complete` makes of the customer with its assigned id: its events, and the answer to
    /// keep with the key.
    async fn insert(
        &self,
        draft: CustomerDraft,
        claim: Option<IdempotencyClaim<'_>>,
        complete: Complete<'_>,
    ) -> Result<Customer, StoreError>;
    /// Many customers in one transaction (bulk loads: `seed`): ids are assigned first, then
    /// `complete` gives each customer's final row and events, written a few thousand rows
    /// per statement.
    async fn insert_many(
        &self,
        drafts: Vec<CustomerDraft>,
        complete: CompleteBulk<'_>,
    ) -> Result<(), StoreError>;
    /// Customers brought over with the ids and times they had elsewhere (`import`), each
    /// with its events, in one transaction. New customers get ids above all of them.
    async fn insert_existing(
        &self,
        customers: &[(Customer, Vec<NewEvent>)],
    ) -> Result<(), StoreError>;
    /// Erasure, in one transaction: deletes the customer's row if `expected_version` is
    /// given (compare-and-set), appends `events` (a sequence taken meanwhile is a
    /// [`StoreError::VersionConflict`]), replaces the payloads of `rewrites` (the customer's
    /// earlier events, erased), and tombstones its idempotency keys: a retry of the request
    /// that created it is answered 410, never replayed or re-run. With `saga`, also starts
    /// that saga (its requests go out if and only if the erasure committed).
    async fn erase(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        events: &[NewEvent],
        rewrites: &[Rewrite],
        saga: Option<SagaStart<'_>>,
    ) -> Result<(), StoreError>;
    /// The stored request and answer of an idempotency key, if any.
    async fn find_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Stores `customer` and appends `events` if the stored version is still
    /// `expected_version`, else [`StoreError::VersionConflict`].
    async fn update(
        &self,
        expected_version: i64,
        customer: &Customer,
        events: &[NewEvent],
    ) -> Result<(), StoreError>;

    /// Deletes the customer and appends `events` if its version is still `expected_version`.
    async fn delete(
        &self,
        id: CustomerId,
        expected_version: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError>;

    async fn find_by_id(&self, id: CustomerId) -> Result<Option<Customer>, StoreError>;
    async fn find_by_email(&self, email: &str) -> Result<Option<Customer>, StoreError>;
    /// One page and the total number of matches.
    async fn list(&self, query: &ListQuery) -> Result<(Vec<Customer>, i64), StoreError>;
    /// The active customers `query` selects, streamed.
    fn stream_active(&self, query: ActiveQuery) -> CustomerStream;
    async fn count(&self) -> Result<i64, StoreError>;

    /// The customer's events in sequence order (kept after deletion).
    async fn events_of(&self, id: CustomerId) -> Result<Vec<StoredEvent>, StoreError>;
    /// Ids of customers that have events, ascending, after `after`: at most `limit`.
    async fn logged_customer_ids(&self, after: i64, limit: i64) -> Result<Vec<i64>, StoreError>;
    /// Ids of customer rows without a single event (there should be none): at most `limit`.
    async fn customers_without_events(&self, limit: i64) -> Result<Vec<i64>, StoreError>;
    /// Those of `ids` that exist (any order).
    async fn find_many(&self, ids: &[CustomerId]) -> Result<Vec<Customer>, StoreError>;
    /// The customers whose e-mails are these or look like them (the same
    /// [`crate::domain::Email::skeleton`]), in any order.
    async fn find_by_emails(&self, emails: &[Email]) -> Result<Vec<Customer>, StoreError>;
    /// The type of the first event of each of `ids` that has one (deleted customers too).
    async fn first_event_types(
        &self,
        ids: &[CustomerId],
    ) -> Result<Vec<(CustomerId, EventType)>, StoreError>;
    /// Ids of existing customers, ascending, after `after`: at most `limit`.
    async fn customer_ids(&self, after: i64, limit: i64) -> Result<Vec<i64>, StoreError>;
    /// A cheap round trip proving the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Each connection pool by name, for metrics (none by default).
    fn pool_usage(&self) -> Vec<(&'static str, PoolUsage)> {
        Vec::new()
    }
    /// The read replica's state, when one is configured.
    fn replica_status(&self) -> Option<ReplicaStatus> {
        None
    }
    /// Search queries so far, by path (none by default).
    fn search_queries(&self) -> SearchQueries {
        SearchQueries::default()
    }
}

/// The relay leader's lease, shared by the instances on one database (PostgreSQL). Each
/// operation is one round trip on the lease's own connection.
#[async_trait]
pub trait RelayLease: Send + Sync {
    /// Takes the lease for `ttl` if it is free or its holder is gone: the new epoch.
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<i64>, StoreError>;
    /// Extends the lease of `epoch` by `ttl`; `false` if another instance took it over.
    async fn renew(&self, epoch: i64, ttl: Duration) -> Result<bool, StoreError>;
    /// Gives the lease of `epoch` up (at shutdown).
    async fn release(&self, epoch: i64) -> Result<(), StoreError>;
    /// Drops the lease's connection after an operation that timed out.
    async fn abandon_connection(&self);
}

/// The event log seen as an outbox: what the relay reads and marks.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Up to `limit` events not yet published, in log (position) order.
    async fn pending(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError>;
    /// Removes exactly these positions from the pending set and, if given, stores the new
    /// watermark (see `outbox/watermark.rs`), in one transaction. With a `fence` (the relay
    /// lease's epoch), only while that epoch still holds the lease, else
    /// [`StoreError::Fenced`]; a takeover waits for this transaction.
    async fn mark_published(
        &self,
        positions: &[i64],
        watermark: Option<i64>,
        fence: Option<i64>,
    ) -> Result<(), StoreError>;
    /// The stored watermark, and the positions above it that are already published.
    async fn load_watermark(&self) -> Result<(i64, Vec<i64>), StoreError>;
    /// Up to `limit` events after position `after` and at or below the watermark, in
    /// position order: the log as cursor readers may see it.
    async fn settled_events(
        &self,
        after: i64,
        limit: i64,
        filter: &EventFilter,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// The watermark: where a reader that wants only new events starts.
    async fn watermark(&self) -> Result<i64, StoreError>;
    /// The first position whose event occurred at or after `at`, if any.
    async fn first_position_at(&self, at: Timestamp) -> Result<Option<i64>, StoreError>;
    /// The last position whose event occurred at or before `at`, if any.
    async fn last_position_at(&self, at: Timestamp) -> Result<Option<i64>, StoreError>;
    /// The first event at or after `position`: its position and when it occurred (a
    /// primary-key seek).
    async fn event_at_or_after(
        &self,
        position: i64,
    ) -> Result<Option<(i64, Timestamp)>, StoreError>;
    /// How many events of each type occurred in each second, among the positions
    /// `from..=to` that occurred at or after `since`: `(type, second, count)`, the second as
    /// the time of its first millisecond.
    async fn events_per_second(
        &self,
        from: i64,
        to: i64,
        since: Timestamp,
    ) -> Result<Vec<(String, Timestamp, i64)>, StoreError>;
    async fn outbox_status(&self) -> Result<OutboxStatus, StoreError>;
    /// Events ever appended.
    async fn event_count(&self) -> Result<i64, StoreError>;
    /// The events of one customer, in sequence order (the relay erases its published
    /// copies when it publishes a CustomerErased).
    async fn customer_events(
        &self,
        customer_id: CustomerId,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Reclaims the space of published pending rows (PostgreSQL: `VACUUM` of the pending
    /// table; SQLite reuses deleted pages by itself).
    async fn compact(&self) -> Result<(), StoreError>;
}

/// A read model's stored state: its serving generation, checkpoint and any rebuild.
pub use customer_events::projection::Status as ProjectionState;

/// What the stats read model holds: `(kind, name, n)` counts and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRows {
    pub counts: Vec<(String, String, i64)>,
    pub state: ProjectionState,
}

/// The service's read models, maintained from the settled log.
#[async_trait]
pub trait ReadModels: Send + Sync {
    /// The stats model's counts, days from `since_day` (`YYYY-MM-DD`) on; `None` before its
    /// runner first started.
    async fn stats_rows(&self, since_day: &str) -> Result<Option<StatsRows>, StoreError>;
    /// Every read model's state.
    async fn projection_states(&self) -> Result<Vec<ProjectionState>, StoreError>;
    /// Asks the running service to rebuild `model`; `false` for a model never started.
    async fn request_rebuild(&self, model: &str) -> Result<bool, StoreError>;
}

/// A saga started inside another write's transaction (the erasure's): its row and steps,
/// and its first events, which need the id the database gives it.
pub struct SagaStart<'a> {
    /// Stored as it is (its `id` is assigned).
    pub saga: &'a Saga,
    /// The saga's first events, given its id.
    pub events: &'a (dyn Fn(i64) -> Vec<NewEvent> + Send + Sync),
}

/// What the metrics and the health check show of the sagas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SagaSummary {
    /// Every state, with 0 where none is.
    pub by_state: Vec<(SagaState, i64)>,
    /// When the oldest open saga began.
    pub oldest_open_started_at: Option<Timestamp>,
    /// Open sagas with more than half of the time to their deadline gone.
    pub past_half_deadline: i64,
}

/// Sagas and their steps, in the service's database.
#[async_trait]
pub trait SagaStore: Send + Sync {
    async fn find_saga(&self, id: i64) -> Result<Option<Saga>, StoreError>;
    /// The newest saga of `kind` about `subject_id`.
    async fn find_saga_of(&self, kind: &str, subject_id: i64) -> Result<Option<Saga>, StoreError>;
    /// Newest first, with ids below `before` if given; at most `limit`.
    async fn list_sagas(
        &self,
        state: Option<SagaState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Saga>, StoreError>;
    /// Ids of open sagas whose next reminder or deadline is due at `now`; at most `limit`.
    async fn due_sagas(&self, now: Timestamp, limit: i64) -> Result<Vec<i64>, StoreError>;
    /// Stores `saga`, read at `saga.version` ([`StoreError::VersionConflict`] if it changed
    /// since), and appends its `events`, in one transaction.
    async fn save_saga(&self, saga: &Saga, events: &[NewEvent]) -> Result<(), StoreError>;
    async fn saga_summary(&self, now: Timestamp) -> Result<SagaSummary, StoreError>;
}
