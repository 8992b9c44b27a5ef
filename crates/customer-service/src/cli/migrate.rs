//! `customer-service migrate`: apply pending migrations to `DATABASE_URL` and exit.

use anyhow::Context;

use crate::config::Config;
use crate::startup::connect_store;

/// Prints how many migrations it applied (`applied 5 migrations`), and nothing when the
/// database was up to date; then how many customers' e-mail keys it wrote (rows from before
/// the key), and every pair of customers whose e-mails look alike (by id: one line each,
/// every run until resolved).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = connect_store(&config).await?;
    let applied = store
        .migrate()
        .await
        .context("applying database migrations")?;
    let migrated = store
        .key_emails()
        .await
        .context("writing the e-mail keys of earlier customers")?;
    store.close().await;
    match applied {
        0 => {}
        1 => println!("applied 1 migration"),
        n => println!("applied {n} migrations"),
    }
    if migrated.keyed > 0 {
        println!("keyed the e-mails of {} customers", migrated.keyed);
    }
    for pair in &migrated.look_alikes {
        println!(
            "customer {} has an e-mail that looks like customer {}'s: it keeps no e-mail key \
             (found by its exact address only) until one of the two is changed or deleted",
            pair.unkeyed, pair.kept
        );
    }
    Ok(())
}
