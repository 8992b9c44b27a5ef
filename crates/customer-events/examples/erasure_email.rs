//! An erasure participant: the e-mail service. It keeps one file per customer (address,
//! lists, sent-mail log) under `MAIL_DIR`; erasing a customer deletes that file. A file that
//! cannot be deleted is retried by the helper and then answered `failed`, with the reason,
//! which the service shows in the saga (`GET /api/v1/customers/:id/erasure`) until an
//! operator runs `customer-service sagas retry <id>`.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 MAIL_DIR=./mail \
//!     cargo run -p customer-events --features consumer --example erasure_email
//! ```

use std::path::{Path, PathBuf};

use customer_events::participant::{Participant, ParticipantConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let stream =
        std::env::var("EVENT_STREAM").unwrap_or_else(|_| "customer-service-events:stream".into());
    let mail_dir = PathBuf::from(std::env::var("MAIL_DIR").unwrap_or_else(|_| "mail".into()));
    std::fs::create_dir_all(&mail_dir)?;

    let consumer = format!("email-{}", std::process::id());
    let participant = Participant::new(&redis, ParticipantConfig::new(stream, "email", consumer))?;
    println!("email: waiting for erasure requests");
    participant
        .run(|customer_id| erase(&mail_dir, customer_id), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Idempotent: a file already gone is an erased customer.
async fn erase(mail_dir: &Path, customer_id: i64) -> Result<(), String> {
    let file = mail_dir.join(format!("{customer_id}.json"));
    match std::fs::remove_file(&file) {
        Ok(()) => println!("email: customer {customer_id} erased"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        // The path and the OS error only: nothing personal goes into the answer.
        Err(error) => return Err(format!("cannot delete {}: {error}", file.display())),
    }
    Ok(())
}
