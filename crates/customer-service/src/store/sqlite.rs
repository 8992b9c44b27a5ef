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

/// `url` with `mode=rwc` added unless it names a mode: the file is created if missing.
fn create_if_missing(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// `(readers, writer)`. The writer connects first so that it creates the file and switches it
/// to WAL before any reader opens it.
pub(super) async fn connect(options: &StoreOptions) -> Result<(Pool, Pool), sqlx::Error> {
    let url = create_if_missing(&options.url);
    let timeout = options.acquire_timeout;
    let writer = Pool::connect(&url, 1, &PRAGMAS, timeout).await?;
    let readers = Pool::connect(&url, options.max_connections, &PRAGMAS, timeout).await?;
    Ok((readers, writer))
}

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[cfg(test)]
mod tests {
    use super::create_if_missing;

    #[test]
    fn the_file_is_created_unless_a_mode_is_given() {
        assert_eq!(create_if_missing("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            create_if_missing("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            create_if_missing("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
    }
}
