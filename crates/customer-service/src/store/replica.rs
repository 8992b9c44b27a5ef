//! A read replica (`DATABASE_READ_URL`, issue #18): its pool, and what decides whether a read
//! may go to it. PostgreSQL streaming replicas, and MySQL / MariaDB replicas with GTIDs.
//!
//! A watcher polls every [`POLL`] the primary's position and the one the replica has
//! applied ([`Positions`]: WAL LSNs on PostgreSQL, the sequence numbers of the primary's
//! GTIDs on MySQL / MariaDB). The replica's lag is how long ago the primary first stood past
//! what the replica has applied (from the primary's positions of the last minute, so to
//! within a poll). Reads go to the replica only while it answers and lags at most
//! `DATABASE_READ_MAX_LAG_MS`; and a customer this instance wrote is read by id from the
//! primary until the replica has applied that write's position — read-your-writes on this
//! instance. A lookup by e-mail (which names no id) waits for the replica to have applied
//! this instance's last write of any customer. A PostgreSQL replica that is not in recovery
//! (the primary itself, or one promoted) counts as caught up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::application::{ReadScope, ReplicaStatus};

use super::error::classify;
use super::pool::Pool;
use super::Backend;

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

/// How a backend names the replication positions the replica is compared by: numbers
/// that only grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Positions {
    /// WAL LSNs: `pg_current_wal_lsn()` on the primary, `pg_last_wal_replay_lsn()` on the
    /// replica.
    Postgres,
    /// The sequence number of MariaDB's GTIDs (`domain-server-seq`) in the primary's
    /// replication domain: `@@gtid_binlog_pos` on the primary, `@@gtid_current_pos` on the
    /// replica.
    MariaDb { domain: u64 },
    /// The transactions of the primary's `server_uuid` in MySQL's `@@gtid_executed`: the
    /// highest on the primary, the end of the unbroken run from 1 on the replica.
    MySql { uuid: String },
}

impl Positions {
    /// The positions of `primary`'s engine; `Err` names what a replica cannot be followed
    /// without (MySQL / MariaDB: a binary log with GTIDs).
    pub(super) async fn of(backend: Backend, primary: &Pool) -> Result<Positions, String> {
        if backend == Backend::Postgres {
            return Ok(Positions::Postgres);
        }
        let unreadable =
            |e: sqlx::Error| format!("reading the primary's replication settings: {e}");
        let version: String = fetch(primary, "select version()")
            .await
            .map_err(unreadable)?
            .try_get(0)
            .map_err(unreadable)?;
        let no_binlog = "the primary writes no binary log (log_bin is OFF): a replica cannot \
                         be followed without one";
        if version.contains("MariaDB") {
            let row = fetch(
                primary,
                "select cast(@@global.log_bin as signed), \
                 cast(@@global.gtid_domain_id as signed)",
            )
            .await
            .map_err(unreadable)?;
            let (log_bin, domain): (i64, i64) = (
                row.try_get(0).map_err(unreadable)?,
                row.try_get(1).map_err(unreadable)?,
            );
            if log_bin != 1 {
                return Err(no_binlog.to_owned());
            }
            let domain = u64::try_from(domain).map_err(|e| e.to_string())?;
            Ok(Positions::MariaDb { domain })
        } else {
            let row = fetch(
                primary,
                "select cast(@@global.log_bin as signed), cast(@@global.gtid_mode as char), \
                 cast(@@global.server_uuid as char)",
            )
            .await
            .map_err(unreadable)?;
            let (log_bin, gtid_mode, uuid): (i64, String, String) = (
                row.try_get(0).map_err(unreadable)?,
                row.try_get(1).map_err(unreadable)?,
                row.try_get(2).map_err(unreadable)?,
            );
            if log_bin != 1 {
                return Err(no_binlog.to_owned());
            }
            if gtid_mode != "ON" {
                return Err(format!(
                    "the primary's gtid_mode is {gtid_mode}: a replica is followed by its GTIDs \
                     (gtid_mode=ON)"
                ));
            }
            Ok(Positions::MySql { uuid })
        }
    }

    /// The statement reading the primary's position, and the replica's.
    fn statements(&self) -> (&'static str, &'static str) {
        match self {
            Positions::Postgres => (
                "select pg_current_wal_lsn()::text",
                // NULL when the server is not in recovery.
                "select pg_last_wal_replay_lsn()::text",
            ),
            Positions::MariaDb { .. } => (
                "select cast(@@global.gtid_binlog_pos as char)",
                "select cast(@@global.gtid_current_pos as char)",
            ),
            Positions::MySql { .. } => (
                "select cast(@@global.gtid_executed as char)",
                "select cast(@@global.gtid_executed as char)",
            ),
        }
    }

    /// `text` (of the primary when `primary`) as a position.
    fn parse(&self, text: &str, primary: bool) -> Option<u64> {
        match self {
            Positions::Postgres => parse_lsn(text),
            Positions::MariaDb { domain } => Some(mariadb_sequence(text, *domain)),
            Positions::MySql { uuid } => Some(mysql_transactions(text, uuid, primary)),
        }
    }

    /// `pool`'s position (the primary's when `primary`); `None` for a PostgreSQL server that
    /// is not in recovery.
    async fn read(&self, pool: &Pool, primary: bool) -> Result<Option<u64>, sqlx::Error> {
        let (on_primary, on_replica) = self.statements();
        let row = fetch(pool, if primary { on_primary } else { on_replica }).await?;
        let text: Option<String> = row.try_get(0)?;
        Ok(text.and_then(|text| self.parse(&text, primary)))
    }
}

/// `0-1-123,1-2-5` → the sequence number in `domain` (0 when it has none yet).
fn mariadb_sequence(text: &str, domain: u64) -> u64 {
    text.split(',')
        .filter_map(|gtid| {
            let mut parts = gtid.trim().splitn(3, '-');
            let in_domain = parts.next()?.parse::<u64>().ok()? == domain;
            let sequence = parts.nth(1)?.parse::<u64>().ok()?;
            in_domain.then_some(sequence)
        })
        .max()
        .unwrap_or(0)
}

/// `uuid:1-100:105-110,other:1-5` → of `uuid`'s transactions: the highest (`primary`: where
/// the primary stands, or further), or the end of the run from 1 (what the replica has
/// applied without a gap, or less). 0 when there are none.
fn mysql_transactions(text: &str, uuid: &str, primary: bool) -> u64 {
    let mut intervals = text
        .split(',')
        .filter_map(|set| {
            let mut parts = set.trim().split(':');
            parts
                .next()?
                .trim()
                .eq_ignore_ascii_case(uuid)
                .then_some(parts)
        })
        .flatten()
        .filter_map(|interval| {
            let (start, end) = interval.split_once('-').unwrap_or((interval, interval));
            Some((
                start.trim().parse::<u64>().ok()?,
                end.trim().parse::<u64>().ok()?,
            ))
        });
    if primary {
        intervals.map(|(_, end)| end).max().unwrap_or(0)
    } else {
        intervals
            .find(|(start, _)| *start == 1)
            .map_or(0, |(_, end)| end)
    }
}

#[derive(Debug)]
pub struct Replica {
    pub(super) pool: Pool,
    positions: Positions,
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
    pub(super) fn new(pool: Pool, positions: Positions, max_lag: Duration) -> Replica {
        Replica {
            pool,
            positions,
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
        let now = self.positions.read(primary, true).await?.unwrap_or(0);
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
        let primary_at =
            tokio::time::timeout(CHECK_TIMEOUT, self.positions.read(primary, true)).await;
        let replica_at =
            tokio::time::timeout(CHECK_TIMEOUT, self.positions.read(&self.pool, false)).await;
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

    /// The primary's position now (after a write's commit).
    pub(super) async fn primary_position(
        &self,
        primary: &Pool,
    ) -> Result<Option<u64>, crate::application::StoreError> {
        self.positions.read(primary, true).await.map_err(classify)
    }
}

/// The one row `statement` returns on `pool`.
async fn fetch(pool: &Pool, statement: &'static str) -> Result<sqlx::any::AnyRow, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    let result = sqlx::query(statement).fetch_one(&mut *connection).await;
    connection.settle_on(result)
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

    #[test]
    fn mariadb_positions_are_the_sequence_in_the_primarys_domain() {
        assert_eq!(mariadb_sequence("0-1-123", 0), 123);
        assert_eq!(mariadb_sequence("0-1-123,1-2-5", 1), 5);
        assert_eq!(mariadb_sequence("1-2-5, 0-1-124", 0), 124);
        assert_eq!(mariadb_sequence("", 0), 0, "nothing applied yet");
        assert_eq!(mariadb_sequence("1-2-5", 0), 0);
        // A failover to another server of the domain keeps counting on.
        assert!(mariadb_sequence("0-3-130", 0) > mariadb_sequence("0-1-129", 0));
    }

    #[test]
    fn mysql_positions_count_the_primarys_transactions() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let executed = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-100:105-110,\n\
                        b0a8e6f4-0000-11e1-9e33-c80aa9429562:1-500";
        assert_eq!(mysql_transactions(executed, uuid, true), 110);
        // A replica applying in parallel may have a gap: only the run from 1 counts.
        assert_eq!(mysql_transactions(executed, uuid, false), 100);
        assert_eq!(mysql_transactions(&format!("{uuid}:1-7:9"), uuid, true), 9);
        assert_eq!(mysql_transactions(&format!("{uuid}:1"), uuid, false), 1);
        assert_eq!(mysql_transactions("", uuid, true), 0);
        assert_eq!(
            mysql_transactions("b0a8e6f4-0000-11e1-9e33-c80aa9429562:1-5", uuid, false),
            0
        );
    }
}
