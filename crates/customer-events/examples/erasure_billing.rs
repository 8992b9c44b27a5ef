//! An erasure participant: billing. Invoices must be kept (tax law), so billing erases a
//! customer by anonymising the bill-to name and address on its invoices, in its own SQLite
//! database. Everything else — reading the requests, answering, retries, de-duplication —
//! is `customer_events::participant`.
//!
//! ```sh
//! # the service, with the participants it waits for:
//! ERASURE_PARTICIPANTS=billing,email REDIS_URL=redis://127.0.0.1:6379 cargo run --release
//! # this participant:
//! REDIS_URL=redis://127.0.0.1:6379 BILLING_DB=sqlite://billing.db \
//!     cargo run -p customer-events --features consumer --example erasure_billing
//! ```

use customer_events::participant::{Participant, ParticipantConfig};
use sqlx::{AnyPool, Executor};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let stream =
        std::env::var("EVENT_STREAM").unwrap_or_else(|_| "customer-service-events:stream".into());
    let database =
        std::env::var("BILLING_DB").unwrap_or_else(|_| "sqlite://billing.db?mode=rwc".into());
    sqlx::any::install_default_drivers();
    let invoices = AnyPool::connect(&database).await?;
    invoices
        .execute(
            "create table if not exists invoices (id integer primary key, customer_id bigint \
             not null, bill_to_name text not null, bill_to_address text, total_cents bigint \
             not null)",
        )
        .await?;

    // The name must be the one in the service's ERASURE_PARTICIPANTS; several copies of
    // this process share the work under different consumer names.
    let consumer = format!("billing-{}", std::process::id());
    let participant =
        Participant::new(&redis, ParticipantConfig::new(stream, "billing", consumer))?;
    println!("billing: waiting for erasure requests");
    participant
        .run(|customer_id| erase(&invoices, customer_id), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Idempotent: erasing twice, or a customer billing never saw, succeeds. The error text is
/// sent to the service as the answer's `reason`: it names no personal data.
async fn erase(invoices: &AnyPool, customer_id: i64) -> Result<(), String> {
    let changed = sqlx::query(
        "update invoices set bill_to_name = '[erased]', bill_to_address = null \
         where customer_id = $1",
    )
    .bind(customer_id)
    .execute(invoices)
    .await
    .map_err(|error| format!("the invoice database failed: {error}"))?;
    println!(
        "billing: customer {customer_id} erased from {} invoices",
        changed.rows_affected()
    );
    Ok(())
}
