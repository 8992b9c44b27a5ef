//! A PostgreSQL streaming replica for reads (`DATABASE_READ_URL`, issue #18): its pool, and
//! what decides whether a read may go to it.
//!
//! A watcher polls every [`POLL`] the primary's WAL position (`pg_current_wal_lsn()`) and
//! the replica's replayed one (`pg_last_wal_replay_lsn()`). The replica's lag is how long
//! ago the primary first stood past what the replica has replayed (from the primary's
//! positions of the last minute, so to within a poll). Reads go to the replica only while it
//! answers and lags at most `DATABASE_READ_MAX_LAG_MS`; and a customer this instance wrote
//! is read by id from the primary until the replica has replayed that write's position —
//! read-your-writes on this instance. A lookup by e-mail (which names no id) waits for the
//! replica to have replayed this instance's last write of any customer. A replica that is not in recovery (the
//! primary itself, or one promoted) counts as caught up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::application::{ReadScope, ReplicaStatus};

use super::error::classify;
use super::pool::Pool;

/// How often the watcher compares the two positions.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// The primary positions kept to measure a lag (a longer lag is reported as this).
const HISTORY: Duration = Duration::from_secs(60);
/// One check may take this long before the replica counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_millis(400);

#[derive(Debug)]
struct State {
    up: bool,
    replayed: u64,
    lag: Duration,
    /// `(when, the primary's position then)`, oldest first.
    primary: VecDeque<(Instant, u64)>,
    /// This instance's writes the replica has not replayed yet: position by customer id.
    written_ids: HashMap<i64, u64>,
    /// The position after this instance's last write of any customer.
    last_write: u64,
    /// The primary's position when the watcher started (after the migrations): nothing is
    /// read from the replica before it has replayed this far, so it has the schema.
    baseline: u64,
}

#[derive(Debug)]
pub struct Replica {
    pub(super) pool: Pool,
    max_lag: Duration,
    state: Mutex<State>,
    reads_replica: AtomicU64,
    reads_primary: AtomicU64,
}

/// `16/B374D848` → its 64-bit position.
pub(super) fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

impl Replica {
    pub(super) fn new(pool: Pool, max_lag: Duration) -> Replica {
        Replica {
            pool,
            max_lag,
            state: Mutex::new(State {
                // Not trusted until the first check.
                up: false,
                replayed: 0,
                lag: Duration::ZERO,
                primary: VecDeque::new(),
                written_ids: HashMap::new(),
                last_write: 0,
                baseline: u64::MAX,
            }),
            reads_replica: AtomicU64::new(0),
            reads_primary: AtomicU64::new(0),
        }
    }

    /// Whether a read of `scope` may go to the replica now; counts the choice.
    pub(super) fn serves(&self, scope: &ReadScope) -> bool {
        let Ok(state) = self.state.lock() else {
            return false;
        };
        let serving = state.up && state.lag <= self.max_lag && state.replayed >= state.baseline;
        let caught_up = |written: Option<&u64>| written.is_none_or(|at| state.replayed >= *at);
        let allowed = serving
            && match scope {
                ReadScope::Customer(id) => caught_up(state.written_ids.get(id)),
                ReadScope::Email(_) => state.replayed >= state.last_write,
                ReadScope::Any => true,
                ReadScope::Primary => false,
            };
        let counter = if allowed {
            &self.reads_replica
        } else {
            &self.reads_primary
        };
        counter.fetch_add(1, Ordering::Relaxed);
        allowed
    }

    /// This instance wrote customer `id`; the primary was at `position` after the commit.
    pub(super) fn wrote(&self, id: i64, position: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.written_ids.insert(id, position);
            state.last_write = state.last_write.max(position);
        }
    }

    /// Nothing is read from the replica before it has replayed the primary's position now.
    pub(super) async fn start_at_primary(&self, primary: &Pool) -> Result<(), sqlx::Error> {
        let now = position(primary, PRIMARY_LSN).await?.unwrap_or(0);
        if let Ok(mut state) = self.state.lock() {
            state.baseline = now;
        }
        Ok(())
    }

    pub(super) fn status(&self) -> ReplicaStatus {
        let (up, lag, ready) = self
            .state
            .lock()
            .map(|s| (s.up, s.lag, s.replayed >= s.baseline))
            .unwrap_or((false, Duration::ZERO, false));
        ReplicaStatus {
            up,
            lag,
            serving: up && ready && lag <= self.max_lag,
            max_lag: self.max_lag,
            reads_replica: self.reads_replica.load(Ordering::Relaxed),
            reads_primary: self.reads_primary.load(Ordering::Relaxed),
        }
    }

    /// One comparison of the two positions (the watcher's step).
    pub(super) async fn check(&self, primary: &Pool) {
        let now = Instant::now();
        let primary_at = tokio::time::timeout(CHECK_TIMEOUT, position(primary, PRIMARY_LSN)).await;
        let replica_at =
            tokio::time::timeout(CHECK_TIMEOUT, position(&self.pool, REPLAY_LSN)).await;
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Ok(Ok(Some(at))) = primary_at {
            state.primary.push_back((now, at));
        }
        while state
            .primary
            .front()
            .is_some_and(|(when, _)| now.duration_since(*when) > HISTORY)
        {
            state.primary.pop_front();
        }
        let newest = state.primary.back().map_or(0, |(_, at)| *at);
        match replica_at {
            Ok(Ok(replayed)) => {
                if !state.up {
                    tracing::info!("the read replica answers: reads go to it");
                }
                state.up = true;
                // Not in recovery: the primary itself, or promoted. Caught up by definition.
                state.replayed = replayed.unwrap_or(newest).max(state.replayed);
                let replayed = state.replayed;
                state.lag = state
                    .primary
                    .iter()
                    .find(|(_, at)| *at > replayed)
                    .map_or(Duration::ZERO, |(since, _)| now.duration_since(*since));
                state.written_ids.retain(|_, at| *at > replayed);
            }
            _ => {
                if state.up {
                    tracing::warn!("the read replica does not answer: reads go to the primary");
                }
                state.up = false;
            }
        }
    }
}

const PRIMARY_LSN: &str = "select pg_current_wal_lsn()::text";
/// NULL when the server is not in recovery.
const REPLAY_LSN: &str = "select pg_last_wal_replay_lsn()::text";

/// The position `statement` returns on `pool`; `None` for NULL.
async fn position(pool: &Pool, statement: &'static str) -> Result<Option<u64>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    let result = sqlx::query(statement).fetch_one(&mut *connection).await;
    let row = connection.settle_on(result)?;
    let text: Option<String> = row.try_get(0)?;
    Ok(text.as_deref().and_then(parse_lsn))
}

/// The primary's position now (after a write's commit).
pub(super) async fn primary_position(
    primary: &Pool,
) -> Result<Option<u64>, crate::application::StoreError> {
    position(primary, PRIMARY_LSN).await.map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_as_postgres_writes_them() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert!(parse_lsn("16/B374D848") > parse_lsn("16/B374D847"));
        assert!(parse_lsn("17/0") > parse_lsn("16/FFFFFFFF"));
        assert_eq!(parse_lsn("nonsense"), None);
    }
}
