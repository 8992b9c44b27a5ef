//! The control tables (`projections`, `projection_checkpoints`) and the reader API over them:
//! which generation serves, its checkpoint, a rebuild asked for.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Any, AnyConnection, Row};

use super::db::{placeholders, positional, Tables};
use super::runner::Status;

pub(super) const CREATE_PROJECTIONS: &str = "create table if not exists projections (
    name varchar(64) not null primary key,
    serving_generation bigint not null,
    building_generation bigint,
    rebuild_requested_at_ms bigint,
    retired_generation bigint,
    retired_at_ms bigint
)";

pub(super) const CREATE_CHECKPOINTS: &str = "create table if not exists projection_checkpoints (
    name varchar(64) not null,
    generation bigint not null,
    position bigint not null,
    event_at_ms bigint,
    updated_at_ms bigint not null,
    primary key (name, generation)
)";

pub(super) const REGISTER: &str =
    "insert into projections (name, serving_generation) values ($1, 1)";

pub(super) const CONTROL: &str =
    "select serving_generation, building_generation, rebuild_requested_at_ms, \
     retired_generation, retired_at_ms from projections where name = $1";

pub(super) const STATUS: &str = "select p.serving_generation, p.building_generation, \
     p.rebuild_requested_at_ms, s.position, s.event_at_ms, s.updated_at_ms, b.position \
     from projections p \
     join projection_checkpoints s on s.name = p.name and s.generation = p.serving_generation \
     left join projection_checkpoints b on b.name = p.name and b.generation = p.building_generation \
     where p.name = $1";

pub(super) const CHECKPOINT: &str = "select position from projection_checkpoints \
     where name = $1 and generation = $2";

pub(super) const NEW_CHECKPOINT: &str = "insert into projection_checkpoints \
     (name, generation, position, event_at_ms, updated_at_ms) values ($1, $2, 0, null, $3)";

/// The compare-and-set that makes a batch count once.
pub(super) const MOVE_CHECKPOINT: &str = "update projection_checkpoints \
     set position = $1, event_at_ms = $2, updated_at_ms = $3 \
     where name = $4 and generation = $5 and position = $6";

pub(super) const DELETE_CHECKPOINT: &str =
    "delete from projection_checkpoints where name = $1 and generation = $2";

pub(super) const REQUEST_REBUILD: &str =
    "update projections set rebuild_requested_at_ms = $1 where name = $2";

pub(super) const START_REBUILD: &str = "update projections \
     set building_generation = $1, rebuild_requested_at_ms = null \
     where name = $2 and serving_generation = $3 and building_generation is null";

pub(super) const SWAP: &str = "update projections \
     set serving_generation = $1, building_generation = null, \
         retired_generation = $2, retired_at_ms = $3 \
     where name = $4 and serving_generation = $5 and building_generation = $6";

pub(super) const FORGET_RETIRED: &str = "update projections \
     set retired_generation = null, retired_at_ms = null \
     where name = $1 and retired_generation = $2";

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn query(
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
pub(super) struct Control {
    pub(super) serving: i64,
    pub(super) building: Option<i64>,
    pub(super) rebuild_requested: bool,
    pub(super) retired: Option<(i64, i64)>,
}

pub(super) async fn read_control(
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

pub(super) struct Checkpoint {
    pub(super) position: i64,
}

pub(super) async fn read_checkpoint(
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
