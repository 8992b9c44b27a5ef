//! The original service's database (TypeORM over MySQL/MariaDB), read by `import`: its
//! `customers` table, as its migration made it:
//!
//! | column | type |
//! |---|---|
//! | `id` | int, auto-increment primary key |
//! | `createdAt`, `updatedAt` | datetime(6) |
//! | `email` | varchar(255), unique |
//! | `firstName`, `lastName` | varchar(255), not null |
//! | `phone` | varchar(255), null |
//! | `isActive` | tinyint |
//! | `dateOfBirth` | date, null |
//! | `address`, `preferences` | json, null |
//!
//! Every column is read as text or an integer (sqlx's `Any` driver reads no `DATETIME`,
//! `DATE`, `JSON` or `TINYINT`), and turned into a [`SourceCustomer`]: the row as a create
//! body, and its times in UTC milliseconds.

use chrono::{FixedOffset, NaiveDateTime, TimeZone};
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Connection, Row};

use crate::application::{SourceCustomer, StoreError};
use crate::domain::Timestamp;

use super::error::classify;

/// `$1` the id to read after, `$2` the page size; times as text with microseconds.
const ROWS: &str = "select id, \
     date_format(createdAt, '%Y-%m-%d %H:%i:%s.%f'), date_format(updatedAt, '%Y-%m-%d %H:%i:%s.%f'), \
     email, firstName, lastName, phone, cast(isActive as signed), \
     date_format(dateOfBirth, '%Y-%m-%d'), cast(address as char), cast(preferences as char) \
     from customers where id > ? order by id limit ?";

/// [`ROWS`] of those changed at or after `$2` (source time, as text).
const ROWS_SINCE: &str = "select id, \
     date_format(createdAt, '%Y-%m-%d %H:%i:%s.%f'), date_format(updatedAt, '%Y-%m-%d %H:%i:%s.%f'), \
     email, firstName, lastName, phone, cast(isActive as signed), \
     date_format(dateOfBirth, '%Y-%m-%d'), cast(address as char), cast(preferences as char) \
     from customers where id > ? and updatedAt >= ? order by id limit ?";

const IDS: &str = "select id from customers where id > ? order by id limit ?";

/// The source format of [`ROWS`]' times.
const SOURCE_TIME: &str = "%Y-%m-%d %H:%M:%S%.f";

/// A connection to the original's database.
pub struct OriginalDatabase {
    connection: AnyConnection,
    /// The time zone its `DATETIME`s were written in (they carry none).
    zone: FixedOffset,
}

impl OriginalDatabase {
    /// Connects to `url` (`mysql://…`): the original ran on MySQL or MariaDB only.
    pub async fn connect(url: &str, zone: FixedOffset) -> Result<OriginalDatabase, StoreError> {
        if !url.starts_with("mysql://") {
            return Err(StoreError::Other(
                "the original service's database must be a mysql:// URL".into(),
            ));
        }
        sqlx::any::install_default_drivers();
        let connection = AnyConnection::connect(url).await.map_err(classify)?;
        Ok(OriginalDatabase { connection, zone })
    }

    /// Up to `limit` rows with ids above `after`, ascending; with `since`, only rows whose
    /// `updatedAt` is at or after it.
    pub async fn rows(
        &mut self,
        after: i64,
        since: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<SourceCustomer>, StoreError> {
        let rows = match since {
            None => {
                sqlx::query(ROWS)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut self.connection)
                    .await
            }
            Some(since) => {
                sqlx::query(ROWS_SINCE)
                    .bind(after)
                    .bind(self.source_time(since))
                    .bind(limit)
                    .fetch_all(&mut self.connection)
                    .await
            }
        }
        .map_err(classify)?;
        rows.iter().map(|row| self.read(row)).collect()
    }

    /// Up to `limit` ids above `after`, ascending.
    pub async fn ids(&mut self, after: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(IDS)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut self.connection)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(classify))
            .collect()
    }

    pub async fn close(self) {
        let _ = self.connection.close().await;
    }

    /// `at` as the source's local time, in its text form.
    fn source_time(&self, at: Timestamp) -> String {
        let utc = chrono::DateTime::from_timestamp_millis(at.millis()).unwrap_or_default();
        utc.with_timezone(&self.zone)
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string()
    }

    fn read(&self, row: &sqlx::any::AnyRow) -> Result<SourceCustomer, StoreError> {
        let id: i64 = row.try_get(0).map_err(classify)?;
        let text = |index: usize| -> Result<Option<String>, StoreError> {
            row.try_get::<Option<String>, _>(index).map_err(classify)
        };
        let time = |index: usize| -> Result<Timestamp, StoreError> {
            let raw = text(index)?.unwrap_or_default();
            NaiveDateTime::parse_from_str(&raw, SOURCE_TIME)
                .ok()
                .and_then(|local| self.zone.from_local_datetime(&local).single())
                // Truncated to milliseconds, as every time here is.
                .map(|at| Timestamp::from_millis(at.timestamp_millis()))
                .ok_or_else(|| {
                    StoreError::Other(format!("customer {id}: an unreadable time").into())
                })
        };
        // JSON columns: the value itself, or the text as a string when it is not JSON (our
        // rules then refuse it with a reason, like any other wrong value).
        let json = |index: usize| -> Result<Value, StoreError> {
            Ok(match text(index)? {
                None => Value::Null,
                Some(raw) => serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
            })
        };
        let string = |index: usize| -> Result<Value, StoreError> {
            Ok(text(index)?.map_or(Value::Null, Value::String))
        };
        let is_active: Option<i64> = row.try_get(7).map_err(classify)?;
        let mut body = Map::new();
        body.insert("email".into(), string(3)?);
        body.insert("firstName".into(), string(4)?);
        body.insert("lastName".into(), string(5)?);
        body.insert("phone".into(), string(6)?);
        // TypeORM's boolean: tinyint, 1 by default.
        body.insert("isActive".into(), Value::Bool(is_active.unwrap_or(1) != 0));
        body.insert("dateOfBirth".into(), string(8)?);
        body.insert("address".into(), json(9)?);
        body.insert("preferences".into(), json(10)?);
        Ok(SourceCustomer {
            id,
            created_at: time(1)?,
            updated_at: time(2)?,
            body,
        })
    }
}
