//! Sends a welcome e-mail for every new customer (here: prints it).
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p customer-events --features consumer \
//!     --example welcome_email
//! ```
//! Several copies share the work (one consumer group, `welcome-emails`); events published
//! while none ran are handled when one starts; an event whose e-mail fails five times lands
//! in `customer-service-events:stream:dlq` (see `customer-service events dlq`).

use customer_events::consumer::{Consumer, ConsumerConfig};
use customer_events::CustomerEvent;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let stream =
        std::env::var("EVENT_STREAM").unwrap_or_else(|_| "customer-service-events:stream".into());
    let name = format!("welcome-{}", std::process::id());
    let consumer = Consumer::new(&url, ConsumerConfig::new(stream, "welcome-emails", name))?;
    consumer
        .run(
            |envelope| async move {
                if let CustomerEvent::CustomerCreated(created) = &envelope.data {
                    send_welcome(&created.email, &created.first_name).await?;
                }
                Ok::<(), String>(())
            },
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await?;
    Ok(())
}

/// Stands in for a mail API call; an `Err` here is retried, then dead-lettered.
async fn send_welcome(email: &str, first_name: &str) -> Result<(), String> {
    println!("To: {email}\nSubject: Welcome, {first_name}!\n");
    Ok(())
}
