//! PostgreSQL connection setup: one pool serves reads and writes (row-level concurrency).

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use super::StoreOptions;

pub(super) async fn connect(options: &StoreOptions) -> Result<AnyPool, sqlx::Error> {
    AnyPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect(&options.url)
        .await
}

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
