//! `customer-service migrate`: apply pending migrations to `DATABASE_URL` and exit.

use anyhow::Context;

use crate::config::Config;
use crate::startup::connect_store;

/// Prints how many migrations it applied (`applied 5 migrations`), and nothing when the
/// database was up to date.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = connect_store(&config).await?;
    let applied = store
        .migrate()
        .await
        .context("applying database migrations")?;
    store.close().await;
    match applied {
        0 => {}
        1 => println!("applied 1 migration"),
        n => println!("applied {n} migrations"),
    }
    Ok(())
}
