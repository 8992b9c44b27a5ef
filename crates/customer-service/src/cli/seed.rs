//! `customer-service seed --count N [--updates-per-customer K]`: fills the configured
//! database with realistic, varied customers, each with its CustomerCreated event and K
//! CustomerUpdated events (the original shipped a 400-customer seed script). Bulk: a few
//! thousand customers per transaction, the same domain rules and events as `POST` and
//! `PATCH`; the relay publishes the events afterwards, as any backlog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::application::{self, ApplicationError, Clock, CustomerStore, SystemClock, WriteContext};
use crate::config::Config;
use crate::domain::Timestamp;
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
/// Customers per transaction.
const BATCH: u64 = 2_000;
/// Transactions in flight on PostgreSQL and MySQL: one builds its rows while another is
/// written. (SQLite has one writer; more would only queue.)
const SHARED_WRITERS: u64 = 3;

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

/// The `k`-th update every seed customer gets (`--updates-per-customer`): each sets a
/// different phone number, so each is a real change with its CustomerUpdated event.
fn seed_patch(k: u64) -> Map<String, Value> {
    let mut patch = Map::new();
    patch.insert(
        "phone".to_owned(),
        json!(format!("+1-555-900-{:04}", k % 10_000)),
    );
    patch
}

pub async fn run(config: Config, count: u64, updates_per_customer: u64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Said before it is done: `seed` alone adds the default 400 (`--count` chooses).
    eprintln!(
        "adding {count} customers{} to {}",
        if updates_per_customer > 0 {
            format!(" with {updates_per_customer} updates each")
        } else {
            String::new()
        },
        crate::store::describe_url(&config.database.url)
    );
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
    let patches: Arc<Vec<_>> = Arc::new((0..updates_per_customer).map(seed_patch).collect());
    let progress = indicatif::ProgressBar::with_draw_target(
        Some(count),
        indicatif::ProgressDrawTarget::stderr(),
    )
    .with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} seeding [{bar:40}] {human_pos}/{human_len} customers, {per_sec}, eta {eta}",
        )
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    let writers = match store.backend() {
        crate::store::Backend::Postgres | crate::store::Backend::MySql => SHARED_WRITERS,
        crate::store::Backend::Sqlite => 1,
    };
    // Customer n was created n ms after the first, the last one now: distinct times, as
    // customers signing up one by one have (a million in the same millisecond would make the
    // list order a tie broken only by id).
    let first_at = SystemClock.now().millis() - i64::try_from(count).unwrap_or(i64::MAX);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (store, next, patches, progress) = (
            store.clone(),
            next.clone(),
            patches.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ctx = WriteContext {
                now: SystemClock.now(),
                correlation_id: format!("seed-{run}"),
                actor: None,
            };
            loop {
                let first = next.fetch_add(BATCH, Ordering::Relaxed);
                if first >= count {
                    return Ok::<(), ApplicationError>(());
                }
                let customers: Vec<_> = (first..(first + BATCH).min(count))
                    .map(|n| {
                        let at = Timestamp::from_millis(first_at.saturating_add_unsigned(n));
                        (at, seed_body(n, run))
                    })
                    .collect();
                let store: &dyn CustomerStore = &*store;
                application::create_customers_in_bulk(store, &ctx, &customers, &patches).await?;
                progress.inc(customers.len() as u64);
            }
        }));
    }
    for task in tasks {
        task.await
            .context("seed writer")?
            .context("writing seed customers")?;
    }
    progress.finish_and_clear();
    store.close().await;
    let events = count * (1 + updates_per_customer);
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(count, events, "seeded customers");
    println!(
        "seeded {count} {} and {events} {} in {seconds:.1} s",
        if count == 1 { "customer" } else { "customers" },
        if events == 1 { "event" } else { "events" },
    );
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
