//! The relay leader's lease on PostgreSQL: a row in `relay_lease` with a holder, an expiry
//! on the database's clock and an epoch (the fencing token).
//!
//! A leader renews the row every third of the lease's time to live. It loses the lease when
//! it stops renewing (frozen, cut off, its session stuck): the row expires and another
//! instance takes it with a higher epoch. A leader that dies loses it at once: its renewing
//! session is gone from `pg_stat_activity`. The lease runs on its own connection, so a busy
//! pool never delays a renewal, and a Redis outage (which only fails publishing) never moves
//! leadership.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{AnyConnection, Connection};
use tokio::sync::Mutex;

use crate::application::{RelayLease, StoreError};

use super::error::classify;

/// The database's clock in ms: every instance compares expiries on the same clock.
macro_rules! now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
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

/// Extends the lease while it is still ours (same holder and epoch).
const RENEW: &str = concat!(
    "update relay_lease set expires_at_ms = ",
    now_ms!(),
    " + $3, holder_pid = pg_backend_pid() \
     where name = 'relay' and holder = $1 and epoch = $2"
);

/// Gives the lease up at shutdown, so the next leader need not wait for its expiry.
const RELEASE: &str =
    "update relay_lease set expires_at_ms = 0 where name = 'relay' and holder = $1 and epoch = $2";

/// The lease of one process on the PostgreSQL database at `url`.
pub struct PgLease {
    url: String,
    holder: String,
    connection: Mutex<Option<AnyConnection>>,
}

impl PgLease {
    pub fn new(url: String) -> PgLease {
        PgLease {
            url,
            holder: uuid::Uuid::new_v4().to_string(),
            connection: Mutex::new(None),
        }
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
impl RelayLease for PgLease {
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<i64>, StoreError> {
        let mut slot = self.connection.lock().await;
        let connection = connected(&mut slot, &self.url).await?;
        let result = sqlx::query_scalar::<_, i64>(ACQUIRE)
            .bind(self.holder())
            .bind(millis(ttl))
            .fetch_optional(connection)
            .await;
        settle(&mut slot, result)
    }

    async fn renew(&self, epoch: i64, ttl: Duration) -> Result<bool, StoreError> {
        let mut slot = self.connection.lock().await;
        let connection = connected(&mut slot, &self.url).await?;
        let result = sqlx::query(RENEW)
            .bind(self.holder())
            .bind(epoch)
            .bind(millis(ttl))
            .execute(connection)
            .await;
        Ok(settle(&mut slot, result)?.rows_affected() == 1)
    }

    async fn release(&self, epoch: i64) -> Result<(), StoreError> {
        let mut slot = self.connection.lock().await;
        let connection = connected(&mut slot, &self.url).await?;
        let result = sqlx::query(RELEASE)
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
