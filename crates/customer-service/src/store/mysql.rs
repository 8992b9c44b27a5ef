//! MySQL / MariaDB specifics: connection setup (one pool, like PostgreSQL) and the session
//! settings that let the shared statements of `sql.rs` run unchanged.
//!
//! Rather than rewriting statement texts for MySQL's dialect, every connection is switched
//! to standard SQL where the dialects differ and we care:
//! - `ANSI_QUOTES`: `"key"` is a quoted identifier (as on PostgreSQL and SQLite), not a
//!   string; `key` is a reserved word in MySQL.
//! - `NO_BACKSLASH_ESCAPES`: `'\'` is a one-character string, so `like … escape '\'` means
//!   what it means elsewhere (by default MySQL reads `'\'` as an unterminated string).
//! - `STRICT_ALL_TABLES`: a value that does not fit is an error, never silently truncated.
//! - `READ COMMITTED`: InnoDB's default REPEATABLE READ takes gap locks on the ranges a
//!   statement scans (the idempotency keys' expiry, the pending queue), which deadlocked
//!   concurrent creates in testing; PostgreSQL's default is READ COMMITTED too, and every
//!   compare-and-set here is a single UPDATE, which reads the latest committed row anyway.
//!
//! The only text rewriting left is the placeholders (`$n` → `?`), in [`super::sql::query`].

use super::pool::Pool;
use super::StoreOptions;

/// Statements run on every new connection (sqlx has already set `NAMES utf8mb4` and the
/// UTC time zone, and appended `PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION` to the mode).
pub(super) const SESSION: [&str; 2] = [
    "set session sql_mode = concat(@@sql_mode, ',ANSI_QUOTES,NO_BACKSLASH_ESCAPES,STRICT_ALL_TABLES')",
    "set session transaction isolation level read committed",
];

/// One pool serves reads and writes (row-level locking, as on PostgreSQL).
pub(super) async fn connect(options: &StoreOptions) -> Result<Pool, sqlx::Error> {
    Pool::connect(
        &options.url,
        options.max_connections,
        &SESSION,
        options.acquire_timeout,
    )
    .await
}

/// See `SqlStore::analyze`.
pub(super) const ANALYZE: &str = "analyze table customers";

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");
