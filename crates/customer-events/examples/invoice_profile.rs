//! Keeps billing profiles (name, e-mail, address) in step with customers: created, changed,
//! deleted. A real one would write to its own database; this one keeps them in memory and
//! prints each change. It folds events with `customer_events::apply`, the same function the
//! service uses for `?asOf=`.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p customer-events --features consumer \
//!     --example invoice_profile
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

use customer_events::consumer::{Consumer, ConsumerConfig};
use customer_events::{apply, CustomerSnapshot};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let stream =
        std::env::var("EVENT_STREAM").unwrap_or_else(|_| "customer-service-events:stream".into());
    let name = format!("invoicing-{}", std::process::id());
    let consumer = Consumer::new(&url, ConsumerConfig::new(stream, "invoice-profiles", name))?;
    let profiles: Mutex<HashMap<i64, CustomerSnapshot>> = Mutex::default();
    consumer
        .run(
            |envelope| {
                let profiles = &profiles;
                async move {
                    let id = envelope.metadata.aggregate_id;
                    let mut profiles = profiles.lock().map_err(|_| "poisoned".to_owned())?;
                    let before = profiles.remove(&id);
                    match apply(before, &envelope.data, envelope.metadata.sequence) {
                        Some(customer) => {
                            let city = customer.address.as_ref().map_or("-", |a| a.city.as_str());
                            println!(
                                "profile {id}: {} <{}>, {city}",
                                customer.full_name, customer.email
                            );
                            profiles.insert(id, customer);
                        }
                        None => println!("profile {id}: closed"),
                    }
                    Ok::<(), String>(())
                }
            },
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await?;
    Ok(())
}
