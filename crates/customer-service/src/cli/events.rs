//! `customer-service events …`: tools over the event log.

use anyhow::Context;

use crate::application;
use crate::config::Config;
use crate::startup::connect_store;

/// `events verify`: rebuilds every customer from its events and compares it with its row.
/// Prints each mismatch (ids and field names only) and fails if there is any.
pub async fn verify(config: Config) -> anyhow::Result<()> {
    let store = connect_store(&config).await?;
    let report = application::verify_log(&store)
        .await
        .context("reading the event log and the customers table");
    store.close().await;
    let report = report?;
    for mismatch in &report.mismatches {
        println!("{mismatch}");
    }
    println!(
        "checked {} customers and {} events: {} mismatches",
        report.customers,
        report.events,
        report.mismatches.len()
    );
    if report.mismatches.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} customers disagree with their events",
            report.mismatches.len()
        )
    }
}
