//! The runner: batches from a source, applied with their checkpoint in one transaction, and
//! the blue/green rebuild.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row};

use crate::versions::ReadError;
use crate::{CustomerEvent, Envelope};

use super::db::{placeholders, positional, Db, Tables};
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

const CREATE_PROJECTIONS: &str = "create table if not exists projections (
    name varchar(64) not null primary key,
    serving_generation bigint not null,
    building_generation bigint,
    rebuild_requested_at_ms bigint,
    retired_generation bigint,
    retired_at_ms bigint
)";

const CREATE_CHECKPOINTS: &str = "create table if not exists projection_checkpoints (
    name varchar(64) not null,
    generation bigint not null,
    position bigint not null,
    event_at_ms bigint,
    updated_at_ms bigint not null,
    primary key (name, generation)
)";

const REGISTER: &str = "insert into projections (name, serving_generation) values ($1, 1)";

const CONTROL: &str = "select serving_generation, building_generation, rebuild_requested_at_ms, \
     retired_generation, retired_at_ms from projections where name = $1";

const STATUS: &str = "select p.serving_generation, p.building_generation, \
     p.rebuild_requested_at_ms, s.position, s.event_at_ms, s.updated_at_ms, b.position \
     from projections p \
     join projection_checkpoints s on s.name = p.name and s.generation = p.serving_generation \
     left join projection_checkpoints b on b.name = p.name and b.generation = p.building_generation \
     where p.name = $1";

const CHECKPOINT: &str = "select position from projection_checkpoints \
     where name = $1 and generation = $2";

const NEW_CHECKPOINT: &str = "insert into projection_checkpoints \
     (name, generation, position, event_at_ms, updated_at_ms) values ($1, $2, 0, null, $3)";

/// The compare-and-set that makes a batch count once.
const MOVE_CHECKPOINT: &str = "update projection_checkpoints \
     set position = $1, event_at_ms = $2, updated_at_ms = $3 \
     where name = $4 and generation = $5 and position = $6";

const DELETE_CHECKPOINT: &str =
    "delete from projection_checkpoints where name = $1 and generation = $2";

const REQUEST_REBUILD: &str = "update projections set rebuild_requested_at_ms = $1 where name = $2";

const START_REBUILD: &str = "update projections \
     set building_generation = $1, rebuild_requested_at_ms = null \
     where name = $2 and serving_generation = $3 and building_generation is null";

const SWAP: &str = "update projections \
     set serving_generation = $1, building_generation = null, \
         retired_generation = $2, retired_at_ms = $3 \
     where name = $4 and serving_generation = $5 and building_generation = $6";

const FORGET_RETIRED: &str = "update projections \
     set retired_generation = null, retired_at_ms = null \
     where name = $1 and retired_generation = $2";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn query(
    conn: &AnyConnection,
    text: &'static str,
) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(
        placeholders(positional(conn), text.into()).into_owned(),
    ))
}

/// Creates the runner's own tables (`projections`, `projection_checkpoints`) if missing. A
/// runner does so when it starts; a reader that may look before any runner started calls it
/// first (or creates them with its migrations, as the service does).
pub async fn ensure_tables(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute(CREATE_PROJECTIONS).await?;
    conn.execute(CREATE_CHECKPOINTS).await?;
    Ok(())
}

/// The serving tables of `model`, for readers; `None` until its runner has created them.
pub async fn serving_tables(
    conn: &mut AnyConnection,
    model: &str,
) -> Result<Option<Tables>, sqlx::Error> {
    Ok(status(conn, model)
        .await?
        .map(|status| Tables::new(model, status.generation)))
}

/// What `model`'s runner has stored; `None` until it has created its serving tables (their
/// checkpoint is written in the transaction that creates them).
pub async fn status(conn: &mut AnyConnection, model: &str) -> Result<Option<Status>, sqlx::Error> {
    // One statement, so one snapshot on every backend: read apart, the control row and the
    // checkpoints could straddle a swap (the serving generation read before it, its
    // checkpoint after it was retired), and a reader would see no model at all.
    let row = query(conn, STATUS)
        .bind(model)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| {
        let building: Option<i64> = row.try_get(1)?;
        let building_position: Option<i64> = row.try_get(6)?;
        Ok(Status {
            model: model.to_owned(),
            generation: row.try_get(0)?,
            position: row.try_get(3)?,
            event_at_ms: row.try_get(4)?,
            updated_at_ms: row.try_get(5)?,
            rebuild: building.zip(building_position),
            rebuild_requested: row.try_get::<Option<i64>, _>(2)?.is_some(),
        })
    })
    .transpose()
}

/// Asks `model`'s runner (in whichever process runs it) to rebuild it from position 0
/// beside the serving copy. `false` when no runner of that model ever started here.
pub async fn request_rebuild(conn: &mut AnyConnection, model: &str) -> Result<bool, sqlx::Error> {
    ensure_tables(conn).await?;
    let done = query(conn, REQUEST_REBUILD)
        .bind(now_ms())
        .bind(model)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    serving: i64,
    building: Option<i64>,
    rebuild_requested: bool,
    retired: Option<(i64, i64)>,
}

async fn read_control(
    conn: &mut AnyConnection,
    model: &str,
) -> Result<Option<Control>, sqlx::Error> {
    let row = query(conn, CONTROL)
        .bind(model)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| {
        let retired: Option<i64> = row.try_get(3)?;
        let retired_at: Option<i64> = row.try_get(4)?;
        Ok(Control {
            serving: row.try_get(0)?,
            building: row.try_get(1)?,
            rebuild_requested: row.try_get::<Option<i64>, _>(2)?.is_some(),
            retired: retired.zip(retired_at),
        })
    })
    .transpose()
}

struct Checkpoint {
    position: i64,
}

async fn read_checkpoint(
    conn: &mut AnyConnection,
    model: &str,
    generation: i64,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row = query(conn, CHECKPOINT)
        .bind(model)
        .bind(generation)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| {
        Ok(Checkpoint {
            position: row.try_get(0)?,
        })
    })
    .transpose()
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

/// Registers `name` if it is new; its control row.
async fn register(conn: &mut AnyConnection, name: &str) -> Result<Control, ProjectionError> {
    ensure_tables(conn).await?;
    if read_control(conn, name).await?.is_none() {
        // Another process may register it at the same moment: then its row stands.
        let _ = query(conn, REGISTER).bind(name).execute(&mut *conn).await;
    }
    read_control(conn, name)
        .await?
        .ok_or_else(|| ProjectionError::Model(format!("read model {name} could not be registered")))
}

/// The checkpoint of `tables`' generation, its tables created (empty) first if it has none.
async fn prepare<M: ReadModel>(
    conn: &mut AnyConnection,
    model: &M,
    tables: &Tables,
) -> Result<i64, ProjectionError> {
    let name = model.name();
    let generation = tables.generation();
    if let Some(checkpoint) = read_checkpoint(conn, name, generation).await? {
        return Ok(checkpoint.position);
    }
    // Never dropped here: another process may have prepared this generation a moment ago.
    // Tables without a checkpoint (MySQL commits DDL at once, so a start that died in
    // between leaves them) are empty, as nothing is applied before the checkpoint exists,
    // and `create` keeps them (`if not exists`).
    let mut tx = conn.begin().await?;
    model.create(&mut Db::new(&mut tx), tables).await?;
    let inserted = query(&tx, NEW_CHECKPOINT)
        .bind(name)
        .bind(generation)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
    match inserted {
        Ok(_) => tx.commit().await?,
        // Another process prepared it meanwhile: use theirs.
        Err(_) => tx.rollback().await?,
    }
    Ok(read_checkpoint(conn, name, generation)
        .await?
        .map_or(0, |c| c.position))
}

/// Drops a replaced generation's tables and checkpoint.
async fn retire<M: ReadModel>(
    conn: &mut AnyConnection,
    model: &M,
    tables: &Tables,
) -> Result<(), ProjectionError> {
    drop_tables(conn, model.tables(), tables).await?;
    query(conn, DELETE_CHECKPOINT)
        .bind(model.name())
        .bind(tables.generation())
        .execute(&mut *conn)
        .await?;
    query(conn, FORGET_RETIRED)
        .bind(model.name())
        .bind(tables.generation())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Starts building generation `next` of `name` if `serving` still serves and no rebuild
/// runs; the rows changed.
async fn start_rebuild(
    conn: &mut AnyConnection,
    name: &str,
    next: i64,
    serving: i64,
) -> Result<u64, ProjectionError> {
    let done = query(conn, START_REBUILD)
        .bind(next)
        .bind(name.to_owned())
        .bind(serving)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Makes `new` serve instead of `old` (retired now) if the control row is still so; the
/// rows changed.
async fn swap(
    conn: &mut AnyConnection,
    name: &str,
    old: i64,
    new: i64,
) -> Result<u64, ProjectionError> {
    let done = query(conn, SWAP)
        .bind(new)
        .bind(old)
        .bind(now_ms())
        .bind(name.to_owned())
        .bind(old)
        .bind(new)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
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

/// Drops the tables of one generation (missing ones are fine).
async fn drop_tables(
    conn: &mut AnyConnection,
    names: &[&str],
    tables: &Tables,
) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    for table in names {
        conn.execute(sqlx::AssertSqlSafe(format!(
            "drop table if exists {}",
            tables.name(table)
        )))
        .await?;
    }
    Ok(())
}

/// Whether an error came from a server that answered (the connection is still usable).
fn answered(error: &sqlx::Error) -> bool {
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
