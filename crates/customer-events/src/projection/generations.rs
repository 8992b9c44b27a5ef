//! Blue/green generations: a model's tables registered, prepared, swapped in and retired.

use sqlx::{AnyConnection, Connection};

use super::control::*;
use super::db::{Db, Tables};
use super::{ProjectionError, ReadModel};

/// Registers `name` if it is new; its control row.
pub(super) async fn register(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Control, ProjectionError> {
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
pub(super) async fn prepare<M: ReadModel>(
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
pub(super) async fn retire<M: ReadModel>(
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
pub(super) async fn start_rebuild(
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
pub(super) async fn swap(
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

/// Drops the tables of one generation (missing ones are fine).
pub(super) async fn drop_tables(
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
