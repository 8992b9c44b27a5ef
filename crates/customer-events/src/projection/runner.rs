//! The runner: batches from a source, applied with their checkpoint in one transaction, and
//! the blue/green rebuild (its steps in `generations.rs`; the control tables and the reader
//! API in `control.rs`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};

use crate::versions::ReadError;
use crate::{CustomerEvent, Envelope};

use super::db::{Db, Tables};
use super::{EventSource, LogEvent, ProjectionError, RawEvent, ReadModel};

/// Where a runner gets the connection it writes with.
#[async_trait]
pub trait Connections: Send + Sync {
    type Conn: std::ops::DerefMut<Target = AnyConnection> + Send;
    /// A connection for one transaction.
    async fn acquire(&self) -> Result<Self::Conn, sqlx::Error>;
    /// Hands it back; `reusable` is false after an error of the connection itself.
    fn release(&self, conn: Self::Conn, reusable: bool) {
        let _ = reusable;
        drop(conn);
    }
}

#[async_trait]
impl Connections for AnyPool {
    type Conn = PoolConnection<Any>;
    async fn acquire(&self) -> Result<Self::Conn, sqlx::Error> {
        AnyPool::acquire(self).await
    }
}

/// A callback for every committed batch.
pub type OnApplied = Arc<dyn Fn(&AppliedBatch) + Send + Sync>;

/// How a runner works; [`Options::default`] suits most models.
#[derive(Clone)]
pub struct Options {
    /// Events per transaction.
    pub batch: usize,
    /// How long a read of the live end waits for new events.
    pub live_wait: Duration,
    /// The pause after a failed step before the next.
    pub retry: Duration,
    /// How long the tables of a replaced generation stay, for readers that looked the
    /// serving generation up just before the swap.
    pub retire_after: Duration,
    /// Called after every committed batch (metrics, tests).
    pub on_applied: Option<OnApplied>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            batch: 1000,
            live_wait: Duration::from_millis(500),
            retry: Duration::from_secs(1),
            retire_after: Duration::from_secs(10),
            on_applied: None,
        }
    }
}

/// One committed batch.
#[derive(Debug, Clone)]
pub struct AppliedBatch {
    pub model: &'static str,
    pub generation: i64,
    /// Whether it went to the serving copy (else to a rebuild).
    pub serving: bool,
    /// The checkpoint after it.
    pub position: i64,
    /// When each event of it occurred (Unix ms), and when the batch committed.
    pub occurred_ms: Vec<i64>,
    pub committed_ms: i64,
}

/// How far a runner's serving copy is behind the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// The checkpoint.
    pub position: i64,
    /// Events after it that the source says exist (`None` when it cannot tell).
    pub events: Option<i64>,
    /// How long ago the last event applied occurred while more were waiting; 0 once the
    /// last read found nothing more.
    pub ms: i64,
}

use super::control::*;
use super::generations::*;

/// A model's state as stored: what readers and `status` commands see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub model: String,
    /// The serving generation and its checkpoint.
    pub generation: i64,
    pub position: i64,
    /// When the event at `position` occurred, and when the checkpoint last moved (Unix ms).
    pub event_at_ms: Option<i64>,
    pub updated_at_ms: i64,
    /// A rebuild under way: its generation and checkpoint.
    pub rebuild: Option<(i64, i64)>,
    /// A rebuild asked for and not yet started.
    pub rebuild_requested: bool,
}

/// One generation being written: its tables, checkpoint and reader of the log.
struct Cursor<S> {
    tables: Tables,
    position: i64,
    source: S,
}

/// Feeds one read model from one source. See the module docs.
pub struct Runner<M, S, C> {
    model: M,
    connections: C,
    options: Options,
    serving: Cursor<S>,
    building: Option<Cursor<S>>,
    /// `occurredOn` (ms) of the last event applied to the serving copy while its read was a
    /// full batch (more waiting); `None` once a read came back short.
    behind_since: Option<i64>,
}

impl<M: ReadModel, S: EventSource, C: Connections> Runner<M, S, C> {
    /// Registers the model if it is new (generation 1, position 0, its tables created) and
    /// resumes from its stored checkpoint.
    pub async fn start(
        model: M,
        source: S,
        connections: C,
        options: Options,
    ) -> Result<Self, ProjectionError> {
        let name = model.name();
        if name.is_empty()
            || name.len() > 40
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(ProjectionError::Model(format!(
                "a read model's name is [a-z0-9_], 1 to 40 characters: {name:?}"
            )));
        }
        let mut runner = Runner {
            serving: Cursor {
                tables: Tables::new(name, 1),
                position: 0,
                source,
            },
            model,
            connections,
            options,
            building: None,
            behind_since: None,
        };
        let mut conn = runner.connections.acquire().await?;
        let result = register(&mut conn, name).await;
        runner.release(conn, &result);
        let control = result?;
        runner.serving.tables = Tables::new(name, control.serving);
        runner.serving.position = runner.prepare(control.serving).await?;
        runner.follow(control).await?;
        Ok(runner)
    }

    fn release<T>(&self, conn: C::Conn, result: &Result<T, ProjectionError>) {
        let reusable = !matches!(result, Err(ProjectionError::Database(e)) if !answered(e));
        self.connections.release(conn, reusable);
    }

    /// The checkpoint of `generation`, its tables created first if it has none.
    async fn prepare(&self, generation: i64) -> Result<i64, ProjectionError> {
        let tables = Tables::new(self.model.name(), generation);
        let mut conn = self.connections.acquire().await?;
        let result = prepare(&mut conn, &self.model, &tables).await;
        self.release(conn, &result);
        result
    }

    async fn control(&self) -> Result<Control, ProjectionError> {
        let name = self.model.name();
        let mut conn = self.connections.acquire().await?;
        let result = read_control(&mut conn, name)
            .await
            .map_err(ProjectionError::from);
        self.release(conn, &result);
        result?.ok_or_else(|| {
            ProjectionError::Model(format!("read model {name} is no longer registered"))
        })
    }

    /// Brings this runner in line with the stored control row: a rebuild asked for is
    /// started, one started elsewhere is joined, a swap made elsewhere is followed, and
    /// retired tables past their time are dropped.
    async fn follow(&mut self, mut control: Control) -> Result<(), ProjectionError> {
        let name = self.model.name();
        if control.rebuild_requested && control.building.is_none() {
            let next = control.serving.max(control.retired.map_or(0, |(g, _)| g)) + 1;
            let mut conn = self.connections.acquire().await?;
            let result = start_rebuild(&mut conn, name, next, control.serving).await;
            self.release(conn, &result);
            result?;
            control = self.control().await?;
            if control.building == Some(next) {
                tracing::info!(
                    model = name,
                    generation = next,
                    "rebuilding from position 0"
                );
            }
        }
        if control.serving != self.serving.tables.generation() {
            // A swap: the copy this runner was building (if it was) now serves.
            let source = match self.building.take() {
                Some(building) => building.source,
                None => self.serving.source.fork(),
            };
            self.serving = Cursor {
                tables: Tables::new(name, control.serving),
                position: self.prepare(control.serving).await?,
                source,
            };
        }
        match (control.building, &self.building) {
            (Some(generation), Some(building)) if building.tables.generation() == generation => {}
            (Some(generation), _) => {
                self.building = Some(Cursor {
                    tables: Tables::new(name, generation),
                    position: self.prepare(generation).await?,
                    source: self.serving.source.fork(),
                });
            }
            (None, _) => self.building = None,
        }
        if let Some((retired, at)) = control.retired {
            let grace = i64::try_from(self.options.retire_after.as_millis()).unwrap_or(i64::MAX);
            if now_ms().saturating_sub(at) >= grace {
                let tables = Tables::new(name, retired);
                let mut conn = self.connections.acquire().await?;
                let result = retire(&mut conn, &self.model, &tables).await;
                self.release(conn, &result);
                result?;
            }
        }
        Ok(())
    }

    /// One round: follows the control row, applies a batch to the serving copy (waiting up
    /// to `live_wait` for one) and, during a rebuild, one to the new copy, swapping the two
    /// once the new one has caught up. Returns the events applied.
    pub async fn step(&mut self) -> Result<usize, ProjectionError> {
        let control = self.control().await?;
        self.follow(control).await?;
        let rebuilding = self.building.is_some();
        let wait = if rebuilding {
            Duration::ZERO
        } else {
            self.options.live_wait
        };
        let mut applied = self.step_cursor(true, wait).await?;
        if rebuilding {
            applied += self.step_cursor(false, Duration::ZERO).await?;
            self.swap_if_caught_up().await?;
        }
        Ok(applied)
    }

    /// Steps until `shutdown` completes; a failed step is logged and retried after
    /// `options.retry`. Cancelling a step mid-transaction rolls it back.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                result = self.step() => {
                    if let Err(error) = result {
                        tracing::warn!(model = self.model.name(), error = %error, "read model step failed; retrying");
                        tokio::select! {
                            _ = &mut shutdown => return,
                            _ = tokio::time::sleep(self.options.retry) => {}
                        }
                    }
                }
            }
        }
    }

    /// The serving copy's checkpoint as this runner last saw it.
    pub fn position(&self) -> i64 {
        self.serving.position
    }

    /// How far the serving copy is behind the log (asks the source for its head).
    pub async fn lag(&mut self) -> Result<Lag, ProjectionError> {
        let head = self.serving.source.head().await?;
        let position = self.serving.position;
        Ok(Lag {
            position,
            events: head.map(|head| (head - position).max(0)),
            ms: self
                .behind_since
                .map_or(0, |occurred| (now_ms() - occurred).max(0)),
        })
    }

    fn cursor(&mut self, serving: bool) -> Option<&mut Cursor<S>> {
        if serving {
            Some(&mut self.serving)
        } else {
            self.building.as_mut()
        }
    }

    async fn step_cursor(
        &mut self,
        serving: bool,
        wait: Duration,
    ) -> Result<usize, ProjectionError> {
        let batch = self.options.batch;
        let Some(cursor) = self.cursor(serving) else {
            return Ok(0);
        };
        let raw = cursor.source.read(cursor.position, batch, wait).await?;
        let full = raw.len() >= batch;
        let Some(last) = raw.last().map(|e| e.position) else {
            if serving {
                self.behind_since = None;
            }
            return Ok(0);
        };
        let after = cursor.position;
        let tables = cursor.tables.clone();
        let events = typed(after, &raw)?;
        let last_at = events
            .last()
            .and_then(|e| super::iso_to_unix_ms(&e.envelope.occurred_on));
        let mut conn = self.connections.acquire().await?;
        let result = apply(
            &mut conn,
            &self.model,
            &tables,
            &events,
            after,
            last,
            last_at,
        )
        .await;
        let result = match result {
            // Another runner applied this batch first: continue from where it got.
            Ok(false) => read_checkpoint(&mut conn, self.model.name(), tables.generation())
                .await
                .map(|c| c.map_or(after, |c| c.position))
                .map_err(ProjectionError::from),
            Ok(true) => Ok(last),
            Err(error) => {
                // The stored checkpoint is the truth whatever failed: another runner may have
                // moved it, and the next step must read from there.
                let stored = match &error {
                    ProjectionError::Database(e) if !answered(e) => None,
                    _ => read_checkpoint(&mut conn, self.model.name(), tables.generation())
                        .await
                        .ok()
                        .flatten(),
                };
                if let (Some(stored), Some(cursor)) = (stored, self.cursor(serving)) {
                    cursor.position = stored.position;
                }
                Err(error)
            }
        };
        self.release(conn, &result);
        let position = result?;
        if let Some(cursor) = self.cursor(serving) {
            cursor.position = position;
        }
        if position != last {
            return Ok(0);
        }
        if serving {
            self.behind_since = if full { last_at } else { None };
        }
        if let Some(hook) = &self.options.on_applied {
            hook(&AppliedBatch {
                model: self.model.name(),
                generation: tables.generation(),
                serving,
                position: last,
                occurred_ms: events
                    .iter()
                    .filter_map(|e| super::iso_to_unix_ms(&e.envelope.occurred_on))
                    .collect(),
                committed_ms: now_ms(),
            });
        }
        Ok(events.len())
    }

    async fn swap_if_caught_up(&mut self) -> Result<(), ProjectionError> {
        let Some(building) = &self.building else {
            return Ok(());
        };
        if building.position < self.serving.position {
            return Ok(());
        }
        let (old, new, at) = (
            self.serving.tables.generation(),
            building.tables.generation(),
            building.position,
        );
        let mut conn = self.connections.acquire().await?;
        let result = swap(&mut conn, self.model.name(), old, new).await;
        self.release(conn, &result);
        let swapped = result?;
        if swapped == 1 {
            tracing::info!(
                model = self.model.name(),
                generation = new,
                position = at,
                "the rebuilt copy now serves"
            );
        }
        let control = self.control().await?;
        self.follow(control).await
    }
}

/// Moves the checkpoint from `after` to `last` and applies one batch, in one transaction;
/// `false` (nothing changed) when the checkpoint was no longer at `after`.
///
/// The compare-and-set comes first: its update locks the checkpoint row (PostgreSQL,
/// MariaDB) or the database (SQLite) until the commit, so a runner that lost the race never
/// runs the model on a batch another runner applied — where the model's own writes (a row
/// inserted per customer) would fail on the other's rows before the compare-and-set could
/// say the batch was taken. Runners of one model therefore apply batches one at a time.
async fn apply<M: ReadModel>(
    conn: &mut AnyConnection,
    model: &M,
    tables: &Tables,
    events: &[LogEvent],
    after: i64,
    last: i64,
    last_at: Option<i64>,
) -> Result<bool, ProjectionError> {
    let mut tx = conn.begin().await?;
    let moved = query(&tx, MOVE_CHECKPOINT)
        .bind(last)
        .bind(last_at)
        .bind(now_ms())
        .bind(model.name())
        .bind(tables.generation())
        .bind(after)
        .execute(&mut *tx)
        .await?;
    if moved.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    model.apply(&mut Db::new(&mut tx), tables, events).await?;
    tx.commit().await?;
    Ok(true)
}

/// The batch typed and upcast; events of types newer than this crate are left out (the
/// checkpoint moves past them). Positions must follow `after` in increasing order.
fn typed(after: i64, raw: &[RawEvent]) -> Result<Vec<LogEvent>, ProjectionError> {
    let mut previous = after;
    let mut events = Vec::with_capacity(raw.len());
    for event in raw {
        if event.position <= previous {
            return Err(ProjectionError::Source(format!(
                "position {} after {previous}: the source is out of order",
                event.position
            )));
        }
        previous = event.position;
        match Envelope::<CustomerEvent>::from_json(&event.payload) {
            Ok(envelope) => events.push(LogEvent {
                position: event.position,
                envelope,
            }),
            Err(ReadError::UnknownType(name)) => {
                tracing::debug!(position = event.position, event_type = %name, "skipped: unknown event type");
            }
            Err(error) => {
                return Err(ProjectionError::BadEvent {
                    position: event.position,
                    reason: describe(&error),
                })
            }
        }
    }
    Ok(events)
}

/// Why an event cannot be read, without any of its values (they may be personal data, and
/// this ends up in logs): serde's messages quote the offending value.
fn describe(error: &ReadError) -> String {
    match error {
        ReadError::Json(error) => format!(
            "not a customer event envelope ({:?} error at line {}, column {})",
            error.classify(),
            error.line(),
            error.column()
        ),
        other => other.to_string(),
    }
}

/// Whether an error came from a server that answered (the connection is still usable).
pub(super) fn answered(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Database(_)
            | sqlx::Error::RowNotFound
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_event_is_described_without_its_values() {
        let payload = r#"{"eventType":"CustomerCreated","eventId":"e","occurredOn":"t","data":{"customerId":"ann@example.com"},"metadata":{}}"#;
        let raw = [RawEvent {
            position: 7,
            payload: payload.to_owned(),
        }];
        match typed(6, &raw) {
            Err(ProjectionError::BadEvent { position, reason }) => {
                assert_eq!(position, 7);
                assert!(
                    reason.starts_with("not a customer event envelope"),
                    "{reason}"
                );
                assert!(!reason.contains("ann@"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let deleted = Envelope::new(
            CustomerEvent::CustomerDeleted(crate::CustomerDeleted {
                customer_id: 1,
                email: "ann@example.com".into(),
                full_name: "Ann Lee".into(),
                deleted_at: "2026-01-01T10:00:00.000Z".into(),
            }),
            "e".into(),
            "2026-01-01T10:00:00.000Z".into(),
            1,
            2,
            "c".into(),
        )
        .to_json();
        let unknown = deleted.replace("CustomerDeleted", "CustomerMerged");
        let raw = [RawEvent {
            position: 7,
            payload: unknown,
        }];
        assert!(
            typed(6, &raw).unwrap().is_empty(),
            "unknown types are passed over"
        );
        assert!(
            matches!(typed(7, &raw), Err(ProjectionError::Source(_))),
            "out of order"
        );
    }
}
