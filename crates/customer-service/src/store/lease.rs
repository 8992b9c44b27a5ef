//! The relay leader's lease on PostgreSQL and MySQL: a row in `relay_lease` with a holder,
//! an expiry on the database's clock and an epoch (the fencing token).
//!
//! A leader renews the row every third of the lease's time to live. It loses the lease when
//! it stops renewing (frozen, cut off, its session stuck): the row expires and another
//! instance takes it with a higher epoch. A leader that dies loses it at once: its renewing
//! session is gone from `pg_stat_activity` (MySQL: `information_schema.processlist`, which
//! shows a user's own sessions without further privileges, so instances that share the
//! database user see each other's). The lease runs on its own connection, so a busy pool
//! never delays a renewal, and a Redis outage (which only fails publishing) never moves
//! leadership.
//!
//! PostgreSQL takes the lease in one `INSERT … ON CONFLICT … RETURNING`; MySQL has neither
//! form, so there the row exists from the migration and the lease is taken by a conditional
//! UPDATE and its epoch read back in the same transaction.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Connection, Row};
use tokio::sync::Mutex;

use crate::application::{RelayLease, StoreError};

use super::error::classify;
use super::{sql, Backend};

/// The database's clock in ms: every instance compares expiries on the same clock.
macro_rules! now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

/// [`now_ms!`] on MySQL.
macro_rules! mysql_now_ms {
    () => {
        "cast(unix_timestamp(now(3)) * 1000 as signed)"
    };
}

/// Takes the lease when it is free, expired, or its holder's session is gone. The new epoch
/// is above the last one and at least the current time in ms, so it also grows across a
/// recreated database (the Redis fence outlives the database).
const ACQUIRE: &str = concat!(
    "insert into relay_lease as l (name, holder, holder_pid, epoch, expires_at_ms) \
     values ('relay', $1, pg_backend_pid(), ",
    now_ms!(),
    ", ",
    now_ms!(),
    " + $2) \
     on conflict (name) do update \
     set holder = excluded.holder, holder_pid = excluded.holder_pid, \
         epoch = greatest(l.epoch + 1, excluded.epoch), expires_at_ms = excluded.expires_at_ms \
     where l.expires_at_ms < ",
    now_ms!(),
    " or not exists (select 1 from pg_stat_activity where pid = l.holder_pid) \
     returning epoch"
);

/// [`ACQUIRE`] on MySQL: `$1` holder, `$2` time to live; one row matched means taken.
const ACQUIRE_MYSQL: &str = concat!(
    "update relay_lease set holder = ?, holder_pid = connection_id(), \
     epoch = greatest(epoch + 1, ",
    mysql_now_ms!(),
    "), expires_at_ms = ",
    mysql_now_ms!(),
    " + ? \
     where name = 'relay' and (expires_at_ms < ",
    mysql_now_ms!(),
    " or not exists (select 1 from information_schema.processlist where id = holder_pid))"
);

const EPOCH_MYSQL: &str = "select epoch from relay_lease where name = 'relay' and holder = ?";

/// Extends the lease while it is still ours (`$2` holder, `$3` epoch) by `$1` ms.
const RENEW: &str = concat!(
    "update relay_lease set expires_at_ms = ",
    now_ms!(),
    " + $1, holder_pid = pg_backend_pid() \
     where name = 'relay' and holder = $2 and epoch = $3"
);

const RENEW_MYSQL: &str = concat!(
    "update relay_lease set expires_at_ms = ",
    mysql_now_ms!(),
    " + ?, holder_pid = connection_id() \
     where name = 'relay' and holder = ? and epoch = ?"
);

/// Gives the lease up at shutdown, so the next leader need not wait for its expiry.
const RELEASE: &str =
    "update relay_lease set expires_at_ms = 0 where name = 'relay' and holder = $1 and epoch = $2";

/// The lease of one process on the PostgreSQL or MySQL database at `url`.
pub struct DatabaseLease {
    backend: Backend,
    url: String,
    holder: String,
    connection: Mutex<Option<AnyConnection>>,
}

impl DatabaseLease {
    /// `backend` is PostgreSQL or MySQL: SQLite has one process and needs no lease.
    pub fn new(backend: Backend, url: String) -> DatabaseLease {
        DatabaseLease {
            backend,
            url,
            holder: uuid::Uuid::new_v4().to_string(),
            connection: Mutex::new(None),
        }
    }

    fn query(&self, text: &'static str) -> Query<'static, Any, AnyArguments> {
        sql::query(self.backend, text)
    }

    /// [`RelayLease::try_acquire`] on MySQL, in one transaction.
    async fn try_acquire_mysql(
        &self,
        connection: &mut AnyConnection,
        ttl: Duration,
    ) -> Result<Option<i64>, sqlx::Error> {
        let mut tx = connection.begin().await?;
        let taken = self
            .query(ACQUIRE_MYSQL)
            .bind(self.holder())
            .bind(millis(ttl))
            .execute(&mut *tx)
            .await?;
        let epoch = if taken.rows_affected() == 1 {
            let row = self
                .query(EPOCH_MYSQL)
                .bind(self.holder())
                .fetch_one(&mut *tx)
                .await?;
            Some(row.try_get(0)?)
        } else {
            None
        };
        tx.commit().await?;
        Ok(epoch)
    }

    fn holder(&self) -> &str {
        &self.holder
    }
}

/// The lease connection, connected if it is not.
async fn connected<'a>(
    slot: &'a mut Option<AnyConnection>,
    url: &str,
) -> Result<&'a mut AnyConnection, StoreError> {
    if slot.is_none() {
        *slot = Some(AnyConnection::connect(url).await.map_err(classify)?);
    }
    slot.as_mut()
        .ok_or_else(|| StoreError::Unavailable("no lease connection".into()))
}

/// A statement's result; a failure drops the connection, to be made again next time.
fn settle<T>(
    slot: &mut Option<AnyConnection>,
    result: Result<T, sqlx::Error>,
) -> Result<T, StoreError> {
    if result.is_err() {
        *slot = None;
    }
    result.map_err(classify)
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl RelayLease for DatabaseLease {
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<i64>, StoreError> {
        let mut slot = self.connection.lock().await;
        let connection = connected(&mut slot, &self.url).await?;
        let result = match self.backend {
            Backend::MySql => self.try_acquire_mysql(connection, ttl).await,
            Backend::Postgres | Backend::Sqlite => {
                sqlx::query_scalar::<_, i64>(ACQUIRE)
                    .bind(self.holder())
                    .bind(millis(ttl))
                    .fetch_optional(connection)
                    .await
            }
        };
        settle(&mut slot, result)
    }

    async fn renew(&self, epoch: i64, ttl: Duration) -> Result<bool, StoreError> {
        let mut slot = self.connection.lock().await;
        let connection = connected(&mut slot, &self.url).await?;
        let renew = match self.backend {
            Backend::MySql => RENEW_MYSQL,
            Backend::Postgres | Backend::Sqlite => RENEW,
        };
        let result = self
            .query(renew)
            .bind(millis(ttl))
            .bind(self.holder())
            .bind(epoch)
            .execute(connection)
            .await;
        Ok(settle(&mut slot, result)?.rows_affected() == 1)
    }

    async fn release(&self, epoch: i64) -> Result<(), StoreError> {
        let mut slot = self.connection.lock().await;
        let connection = connected(&mut slot, &self.url).await?;
        let result = self
            .query(RELEASE)
            .bind(self.holder())
            .bind(epoch)
            .execute(connection)
            .await;
        settle(&mut slot, result).map(|_| ())
    }

    async fn abandon_connection(&self) {
        *self.connection.lock().await = None;
    }
}
