//! The customer store: [`SqlStore`] implements [`crate::application::CustomerStore`] on
//! PostgreSQL, SQLite and MySQL/MariaDB, chosen by the `DATABASE_URL` scheme.
//!
//! The backends run through sqlx's `Any` driver, so every query text lives once in [`sql`]
//! (MySQL gets its placeholders rewritten there, in [`sql::query`]); `postgres.rs`,
//! `sqlite.rs` and `mysql.rs` hold only what truly differs (connection setup, pools, session
//! settings) and each backend has its own migrations folder.

mod count_cache;
mod customers;
mod email_keys;
mod error;
mod event_log;
mod lease;
mod mysql;
mod original;
mod pool;
mod postgres;
mod read_models;
mod replica;
mod row;
mod sagas;
mod search;
mod sql;
mod sql_store;
mod sqlite;
mod stats;
mod writes;

pub use email_keys::{KeyedEmails, LookAlike};
pub use lease::DatabaseLease;
pub use original::OriginalDatabase;
pub use read_models::MODELS as READ_MODELS;
pub use sql_store::SqlStore;

use std::time::Duration;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
    /// MySQL 8 or MariaDB 10.11+ (tested on MariaDB).
    MySql,
}

impl Backend {
    /// The backend of `url`, by scheme (`postgres://`, `postgresql://`, `sqlite:`,
    /// `mysql://`).
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("mysql://") {
            Some(Backend::MySql)
        } else {
            None
        }
    }
}

/// `text` as `backend` takes it (MySQL: `$n` placeholders as `?`; see `sql.rs` for the
/// rule that makes this a substitution). For tools and tests that write SQL of their own.
pub fn statement_for(backend: Backend, text: &str) -> String {
    sql::for_backend(backend, std::borrow::Cow::Owned(text.to_owned())).into_owned()
}

/// One connection to `url` with its backend's session settings (on MySQL the standard-SQL
/// mode the statements here are written for), for tools and tests that run SQL of their own.
pub async fn connect_one(url: &str) -> Result<sqlx::AnyConnection, sqlx::Error> {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(url).await?;
    if Backend::of_url(url) == Some(Backend::MySql) {
        for statement in mysql::SESSION {
            connection.execute(statement).await?;
        }
    }
    Ok(connection)
}

/// Where `url` points, for messages: the SQLite file, or the server and database, never
/// the credentials or the parameters.
pub fn describe_url(url: &str) -> String {
    match Backend::of_url(url) {
        Some(Backend::Sqlite) => format!("the SQLite file {}", sqlite_path(url)),
        Some(backend) => {
            let rest = after_scheme(url);
            let authority = rest
                .split_once('/')
                .map_or(rest, |(authority, _)| authority);
            let database = database_name(url);
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            let engine = match backend {
                Backend::Postgres => "PostgreSQL",
                _ => "MySQL",
            };
            if database.is_empty() {
                format!("{engine} at {host}")
            } else {
                format!("{engine} at {host}, database {database}")
            }
        }
        None => "the database".to_owned(),
    }
}

/// The database a server URL names (`""` when it names none), without its parameters.
pub fn database_name(url: &str) -> &str {
    after_scheme(url)
        .split_once('/')
        .map_or("", |(_, database)| database)
}

/// `url` without its parameters (`?…`) or fragment (`#…`).
fn without_parameters(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// A server URL's `user@host:port/database`: no scheme, no parameters.
fn after_scheme(url: &str) -> &str {
    let url = without_parameters(url);
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// The file a `sqlite:` URL names (its parameters left out).
fn sqlite_path(url: &str) -> &str {
    let url = without_parameters(url);
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

/// Why a SQLite `url` may fail to open, when its folder says so: the folder is missing, or
/// this process may not write in it (a bind-mounted `/data` owned by another user). `None`
/// for the other backends, or when the folder looks fine.
pub fn sqlite_folder_problem(url: &str) -> Option<String> {
    if Backend::of_url(url) != Some(Backend::Sqlite) {
        return None;
    }
    let folder = match std::path::Path::new(sqlite_path(url)).parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Some(format!("the folder {} does not exist", folder.display()));
    }
    let probe = folder.join(format!(
        ".customer-service-write-check-{}",
        std::process::id()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => Some(format!(
            "the folder {} is not writable by this process's user (a mounted volume must be \
             writable by it)",
            folder.display()
        )),
        Err(_) => None,
    }
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    /// Connections in the pool (on SQLite: readers; there is always exactly one writer).
    pub max_connections: u32,
    /// How long a query waits for a free connection before the request gets a 503.
    pub acquire_timeout: Duration,
    /// SQLite: create the file if it is missing (`serve`, `migrate`, `seed`). The tools
    /// that only read an existing log must not leave an empty database behind.
    pub create_if_missing: bool,
}

#[cfg(test)]
mod tests {
    use super::describe_url;

    #[test]
    fn a_url_is_described_without_credentials_or_parameters() {
        assert_eq!(
            describe_url("postgres://user:secret@db.example:5432/customers?sslmode=require"),
            "PostgreSQL at db.example:5432, database customers"
        );
        assert_eq!(
            describe_url("mysql://root@127.0.0.1:3306/test"),
            "MySQL at 127.0.0.1:3306, database test"
        );
        assert_eq!(
            describe_url("sqlite:///var/lib/cs/customers.db?mode=rwc"),
            "the SQLite file /var/lib/cs/customers.db"
        );
        assert_eq!(
            describe_url("sqlite:customers.db"),
            "the SQLite file customers.db"
        );
        assert_eq!(describe_url("postgresql://h"), "PostgreSQL at h");
    }

    #[test]
    fn a_missing_sqlite_folder_is_named() {
        assert_eq!(
            super::sqlite_folder_problem("sqlite:///no/such/folder/customers.db"),
            Some("the folder /no/such/folder does not exist".to_owned())
        );
        let here = std::env::temp_dir().join("cs-folder-check.db");
        assert_eq!(
            super::sqlite_folder_problem(&format!("sqlite://{}", here.display())),
            None
        );
        assert_eq!(super::sqlite_folder_problem("postgres://h/db"), None);
    }
}
