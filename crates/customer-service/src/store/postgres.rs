//! PostgreSQL specifics: connection setup (one pool serves reads and writes, row-level
//! concurrency).

use super::pool::Pool;
use super::StoreOptions;

/// No ping before or after a query (see `pool.rs`): a connection broken by a restart fails
/// its next query instead (a 503 for that request) and is closed, and the pool opens a new
/// one for the next.
pub(super) async fn connect(options: &StoreOptions) -> Result<Pool, sqlx::Error> {
    Pool::connect(
        &options.url,
        options.max_connections,
        &[],
        options.acquire_timeout,
    )
    .await
}

/// For transactions whose loss in a crash is harmless (see `mark_published`).
pub(super) const RELAXED_COMMIT: &str = "set local synchronous_commit = off";

/// The pending table is a queue: every published row leaves a dead tuple, and the relay's
/// oldest-first index scan slows down as they pile up faster than autovacuum (at most once a
/// minute) removes them. Measured: 201 → Redis p50 30 ms right after a 30,000-event drain,
/// 0.7 ms once vacuumed. The relay runs this after every few thousand published events.
/// `truncate false`: otherwise VACUUM tries for up to 5 s to take an exclusive lock to cut
/// the emptied file's tail, which it cannot get while writes insert pending rows; the
/// relay's connection (and so publishing) waited those 5 s (seen as "slow statement" logs).
pub(super) const VACUUM_PENDING: &str = "vacuum (truncate false) customer_events_pending";

/// See `SqlStore::analyze`.
pub(super) const ANALYZE: &str = "analyze customers, customers_search";

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
