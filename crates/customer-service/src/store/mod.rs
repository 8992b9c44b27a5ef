//! The customer store: [`SqlStore`] implements [`crate::application::CustomerStore`] on
//! PostgreSQL and on SQLite, chosen by the `DATABASE_URL` scheme.
//!
//! Both backends run through sqlx's `Any` driver, so every query text lives once in
//! [`sql`]; `postgres.rs` and `sqlite.rs` hold only what truly differs (connection setup,
//! pools and pragmas) and each backend has its own migrations folder.

mod count_cache;
mod customers;
mod error;
mod event_log;
mod lease;
mod pool;
mod postgres;
mod row;
mod sql;
mod sql_store;
mod sqlite;
mod writes;

pub use lease::PgLease;
pub use sql_store::SqlStore;

use std::time::Duration;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend of `url`, by scheme (`postgres://`, `postgresql://`, `sqlite:`).
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
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
