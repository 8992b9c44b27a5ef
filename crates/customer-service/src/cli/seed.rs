//! `customer-service seed --count N`: fills the configured database with realistic, varied
//! customers through the same use case as `POST /customers`, so each has its
//! CustomerCreated event (the original shipped a 400-customer seed script).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::application::{self, ApplicationError, Clock, CustomerStore, SystemClock, WriteContext};
use crate::config::Config;
use crate::startup::connect_store;

const FIRST_NAMES: [&str; 24] = [
    "John", "Maria", "Wei", "Aisha", "Lars", "Sofia", "Kenji", "Amara", "Diego", "Olga", "Rahul",
    "Chloé", "Tomasz", "Fatima", "Liam", "Yuki", "Noah", "Zanele", "Emma", "Mateo", "Ingrid",
    "Omar", "Grace", "Björn",
];
const LAST_NAMES: [&str; 24] = [
    "Doe",
    "García",
    "Zhang",
    "Okafor",
    "Nilsson",
    "Rossi",
    "Tanaka",
    "Mensah",
    "Fernández",
    "Ivanova",
    "Sharma",
    "Dubois",
    "Kowalski",
    "Haddad",
    "Murphy",
    "Sato",
    "Smith",
    "Dlamini",
    "Müller",
    "López",
    "Berg",
    "Aziz",
    "O'Neil",
    "Larsen",
];
const CITIES: [(&str, &str, &str); 8] = [
    ("Springfield", "IL", "USA"),
    ("Toronto", "ON", "Canada"),
    ("Lyon", "ARA", "France"),
    ("Osaka", "27", "Japan"),
    ("Cape Town", "WC", "South Africa"),
    ("Kraków", "MA", "Poland"),
    ("Monterrey", "NL", "Mexico"),
    ("Gothenburg", "O", "Sweden"),
];
const INDUSTRIES: [&str; 6] = [
    "Retail",
    "Finance",
    "Healthcare",
    "Logistics",
    "Software",
    "Education",
];
const CONTACTS: [&str; 3] = ["email", "phone", "sms"];
/// Concurrent writers: enough to keep PostgreSQL busy, harmless on SQLite's single writer.
const SEED_WRITERS: u64 = 8;

/// The `n`-th seed customer: deterministic, varied, and valid.
fn seed_body(n: u64, run: u64) -> Map<String, Value> {
    let pick = |len: usize, salt: u64| {
        ((n.wrapping_mul(2_654_435_761).wrapping_add(salt)) % len as u64) as usize
    };
    let first = FIRST_NAMES[pick(FIRST_NAMES.len(), 1)];
    let last = LAST_NAMES[pick(LAST_NAMES.len(), 7)];
    let (city, state, country) = CITIES[pick(CITIES.len(), 3)];
    let mut body = json!({
        "email": format!("{}.{}.{run}.{n}@example.com", first.to_lowercase(), last.to_lowercase().replace('\'', "")),
        "firstName": first,
        "lastName": last,
        "isActive": !n.is_multiple_of(10),
    });
    if !n.is_multiple_of(4) {
        body["phone"] = json!(format!("+1-555-{:03}-{:04}", n % 1000, (n * 7) % 10_000));
    }
    if !n.is_multiple_of(3) {
        body["dateOfBirth"] = json!(format!(
            "{}-{:02}-{:02}",
            1950 + n % 55,
            1 + n % 12,
            1 + n % 28
        ));
    }
    if !n.is_multiple_of(5) {
        body["address"] = json!({"street": format!("{} Main St", 1 + n % 999), "city": city,
                                 "state": state, "zipCode": format!("{:05}", (n * 37) % 100_000),
                                 "country": country});
    }
    if n.is_multiple_of(2) {
        body["preferences"] = json!({"company": format!("{last} & Co"), "industry": INDUSTRIES[pick(INDUSTRIES.len(), 5)],
                                     "preferredContact": CONTACTS[pick(CONTACTS.len(), 11)], "newsletter": n.is_multiple_of(3)});
    }
    match body {
        Value::Object(map) => map,
        _ => unreachable!("built as an object"),
    }
}

pub async fn run(config: Config, count: u64) -> anyhow::Result<()> {
    let store = Arc::new(connect_store(&config).await?);
    store
        .migrate()
        .await
        .context("applying database migrations")?;
    // Distinguishes e-mails of repeated seed runs on one database.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for _ in 0..SEED_WRITERS {
        let (store, next) = (store.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            let correlation_id = format!("seed-{run}");
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<(), ApplicationError>(());
                }
                let ctx = WriteContext {
                    now: SystemClock.now(),
                    correlation_id: correlation_id.clone(),
                    actor: None,
                };
                let store: &dyn CustomerStore = &*store;
                application::create_customer(store, &ctx, &seed_body(n, run)).await?;
            }
        }));
    }
    for writer in writers {
        writer
            .await
            .context("seed writer")?
            .context("creating a seed customer")?;
    }
    store.close().await;
    tracing::info!(count, "seeded customers");
    println!("seeded {count} customers");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_new_customer;

    #[test]
    fn every_seed_customer_is_valid() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        for n in 0..500 {
            let body = seed_body(n, 1);
            assert!(parse_new_customer(&body, today).is_ok(), "{body:?}");
        }
    }
}
