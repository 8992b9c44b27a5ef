//! SQLite connection setup: a file created if missing, WAL journaling, and two pools — many
//! readers and exactly one writer.
//!
//! One writer connection serializes our own write transactions in-process. Without it, two
//! deferred transactions that both read and then write deadlock on SQLite's lock upgrade and
//! one fails with SQLITE_BUSY however long the busy timeout; queueing for the writer
//! connection costs nothing SQLite would not serialize anyway. WAL lets the readers run while
//! the writer writes.

use super::pool::Pool;
use super::StoreOptions;

/// Statements run on every new connection. `synchronous = normal` is WAL's recommended
/// setting: a commit survives a process crash, and only an OS crash can lose the last ones.
const PRAGMAS: [&str; 4] = [
    "pragma journal_mode = wal",
    "pragma synchronous = normal",
    "pragma busy_timeout = 5000",
    "pragma foreign_keys = on",
];

/// `url` with `mode=rwc` (the file is created if missing) or `mode=rw` (it must exist) added,
/// unless it names a mode itself.
fn with_mode(url: &str, create_if_missing: bool) -> String {
    let mode = if create_if_missing { "rwc" } else { "rw" };
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode={mode}")
    } else {
        format!("{url}?mode={mode}")
    }
}

/// `(readers, writer)`. The writer connects first so that it creates the file and switches it
/// to WAL before any reader opens it.
pub(super) async fn connect(options: &StoreOptions) -> Result<(Pool, Pool), sqlx::Error> {
    let url = with_mode(&options.url, options.create_if_missing);
    let timeout = options.acquire_timeout;
    let writer = Pool::connect(&url, 1, &PRAGMAS, timeout).await?;
    let readers = Pool::connect(&url, options.max_connections, &PRAGMAS, timeout).await?;
    Ok((readers, writer))
}

/// See `SqlStore::analyze`.
pub(super) const ANALYZE: &str = "analyze customers";

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[cfg(test)]
mod tests {
    use super::with_mode;

    #[test]
    fn the_file_is_created_if_asked_unless_a_mode_is_given() {
        assert_eq!(with_mode("sqlite://a.db", true), "sqlite://a.db?mode=rwc");
        assert_eq!(with_mode("sqlite://a.db", false), "sqlite://a.db?mode=rw");
        assert_eq!(
            with_mode("sqlite://a.db?cache=shared", true),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            with_mode("sqlite://a.db?mode=ro", true),
            "sqlite://a.db?mode=ro"
        );
    }
}
