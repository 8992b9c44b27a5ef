//! `customer-service migrate`: apply pending migrations to `DATABASE_URL` and exit.

use anyhow::Context;

use crate::config::Config;
use crate::startup::connect_store;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = connect_store(&config).await?;
    store
        .migrate()
        .await
        .context("applying database migrations")?;
    store.close().await;
    tracing::info!(backend = ?store.backend(), "migrations applied");
    Ok(())
}
