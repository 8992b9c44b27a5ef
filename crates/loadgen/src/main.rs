//! `loadgen`: measures a running customer-service from outside, as its users see it.
//!
//! - `run`: a load scenario (create, get, list, search, update, mixed) for a fixed time with
//!   a warm-up; reports requests/s, latency percentiles and status codes.
//! - `create`: POST unique customers as fast as N connections allow (fills a backlog, too).
//! - `drain`: how fast the relay empties the outbox backlog (events/s), read from health.
//! - `event-latency`: POST at a fixed rate and time each event from the HTTP 201 to its
//!   arrival on the Redis channel.
//!
//! Figures are printed, never asserted: `bench/` records them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Benchmark harness for customer-service")]
struct Cli {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:3004", global = true)]
    base_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// POST unique customers with every field.
    Create,
    /// GET random existing ids.
    Get,
    /// GET pages of the list (random page of the first 100).
    List,
    /// GET the list with a search term.
    Search,
    /// PATCH random customers (lastName).
    Update,
    /// `read_percent` % get, the rest split between create and update.
    Mixed,
    /// GET a malformed id, which the service answers (400) without the database: the
    /// ceiling of HTTP alone, client included, on this machine.
    Floor,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario: warm-up, then measure for `duration_secs`.
    Run {
        #[arg(long, value_enum)]
        scenario: Scenario,
        #[arg(long, default_value_t = 16)]
        connections: u64,
        #[arg(long, default_value_t = 15)]
        duration_secs: u64,
        #[arg(long, default_value_t = 3)]
        warmup_secs: u64,
        /// For `mixed`: share of reads, in percent.
        #[arg(long, default_value_t = 80)]
        read_percent: u64,
    },
    /// POST `count` unique customers over `connections` concurrent connections.
    Create {
        #[arg(long, default_value_t = 1000)]
        count: u64,
        #[arg(long, default_value_t = 16)]
        connections: u64,
    },
    /// Wait for the outbox backlog to empty and report the drain rate.
    Drain {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// POST at `rate` per second for `duration_secs` and time each CustomerCreated from the
    /// HTTP response to its arrival on the Redis channel.
    EventLatency {
        #[arg(long)]
        redis_url: String,
        #[arg(long, default_value = "customer-service-events")]
        channel: String,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
    },
}

/// A run-unique e-mail, so repeated runs against one database never collide.
fn email(run: u128, n: u64) -> String {
    format!("load-{run:x}-{n}@bench.example")
}

fn body(email: &str) -> Value {
    json!({"email": email, "firstName": "Bench", "lastName": "Mark", "phone": "+1-555-010-0100",
           "dateOfBirth": "1990-01-15",
           "address": {"street": "1 Main St", "city": "Springfield", "state": "IL", "zipCode": "62701", "country": "USA"},
           "preferences": {"company": "Acme", "industry": "Retail", "preferredContact": "email", "newsletter": true}})
}

fn run_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The value at quantile `q` of sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index]
}

async fn create(base: &str, count: u64, connections: u64) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let run = run_id();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, next, url) = (
            client.clone(),
            next.clone(),
            format!("{base}/api/v1/customers"),
        );
        tasks.push(tokio::spawn(async move {
            let mut failed = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return failed;
                }
                let ok = client
                    .post(&url)
                    .json(&body(&email(run, n)))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 201);
                failed += u64::from(!ok);
            }
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "create: {count} requests, {failed} failed, {secs:.2} s, {:.0} req/s",
        count as f64 / secs
    );
    Ok(())
}

/// Latencies (µs) and status counts of one connection's measured requests.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: HashMap<u16, u64>,
    errors: u64,
}

/// The highest customer id (ids of a seeded database are 1..=max).
async fn max_customer_id(client: &reqwest::Client, base: &str) -> anyhow::Result<i64> {
    let page: Value = client
        .get(format!("{base}/api/v1/customers?limit=1"))
        .send()
        .await?
        .json()
        .await?;
    page["data"]["customers"][0]["id"]
        .as_i64()
        .context("the database has no customers: seed it first")
}

async fn run(
    base: &str,
    scenario: Scenario,
    connections: u64,
    duration: Duration,
    warmup: Duration,
    read_percent: u64,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections as usize)
        .build()?;
    let max_id = match scenario {
        Scenario::Get | Scenario::Update | Scenario::Mixed => {
            max_customer_id(&client, base).await?
        }
        _ => 0,
    };
    let run = run_id();
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (client, base, counter) = (client.clone(), base.to_owned(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut rng = (connection + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ run as u64;
            let mut next = move || {
                // xorshift64: cheap, and each connection has its own sequence.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            while Instant::now() < end {
                let roll = next();
                let id = 1 + (roll % max_id.max(1) as u64) as i64;
                let kind = match scenario {
                    Scenario::Mixed if roll % 100 < read_percent => Scenario::Get,
                    Scenario::Mixed if roll % 2 == 0 => Scenario::Create,
                    Scenario::Mixed => Scenario::Update,
                    other => other,
                };
                let request = match kind {
                    Scenario::Create => {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        client
                            .post(format!("{base}/api/v1/customers"))
                            .json(&body(&email(run, n)))
                    }
                    Scenario::Get => client.get(format!("{base}/api/v1/customers/{id}")),
                    Scenario::Floor => client.get(format!("{base}/api/v1/customers/x{id}")),
                    Scenario::List => client.get(format!(
                        "{base}/api/v1/customers?page={}&limit=10",
                        1 + roll % 100
                    )),
                    Scenario::Search => client.get(format!(
                        "{base}/api/v1/customers?search=mark&page={}&limit=10",
                        1 + roll % 10
                    )),
                    Scenario::Update | Scenario::Mixed => client
                        .patch(format!("{base}/api/v1/customers/{id}"))
                        .json(&json!({"lastName": format!("Mark{}", roll % 1000)})),
                };
                let sent = Instant::now();
                let outcome = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        Some(status)
                    }
                    Err(_) => None,
                };
                if sent >= measure_from && Instant::now() <= end {
                    tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                    match outcome {
                        Some(status) => *tally.statuses.entry(status).or_default() += 1,
                        None => tally.errors += 1,
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await?;
        all.latencies_us.extend(tally.latencies_us);
        for (status, n) in tally.statuses {
            *all.statuses.entry(status).or_default() += n;
        }
        all.errors += tally.errors;
    }
    let mut ms: Vec<f64> = all
        .latencies_us
        .iter()
        .map(|us| *us as f64 / 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let mut statuses: Vec<_> = all.statuses.into_iter().collect();
    statuses.sort();
    let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}={n}")).collect();
    println!(
        "run {scenario:?}: {connections} connections, {:.0} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, statuses [{}], transport errors {}",
        ms.len() as f64 / duration.as_secs_f64(),
        quantile(&ms, 0.5),
        quantile(&ms, 0.9),
        quantile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        statuses.join(" "),
        all.errors,
    );
    Ok(())
}

async fn pending(client: &reqwest::Client, base: &str) -> anyhow::Result<i64> {
    let health: Value = client
        .get(format!("{base}/api/v1/health"))
        .send()
        .await?
        .json()
        .await?;
    health["data"]["checks"]["outbox"]["pending"]
        .as_i64()
        .context("health has no outbox.pending")
}

async fn drain(base: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let initial = pending(&client, base).await?;
    if initial == 0 {
        bail!("no backlog to drain");
    }
    loop {
        let left = pending(&client, base).await?;
        if left == 0 {
            break;
        }
        if started.elapsed() > timeout {
            bail!("{left} events still pending after {timeout:?}");
        }
        // Polling the health route costs the service a count of the backlog: not too often.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "drain: {initial} events in {secs:.2} s, {:.0} events/s",
        initial as f64 / secs
    );
    Ok(())
}

/// Customer id → (when its 201 was read, when its CustomerCreated arrived).
type Timings = HashMap<i64, (Option<Instant>, Option<Instant>)>;

async fn event_latency(
    base: &str,
    redis_url: &str,
    channel: &str,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    let seen: Arc<Mutex<Timings>> = Arc::default();
    let mut pubsub = redis::Client::open(redis_url)?.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let listener = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let arrived = Instant::now();
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                let Ok(event) = serde_json::from_str::<Value>(&payload) else {
                    continue;
                };
                if event["eventType"] != "CustomerCreated" {
                    continue;
                }
                if let Some(id) = event["metadata"]["aggregateId"].as_i64() {
                    if let Ok(mut seen) = seen.lock() {
                        seen.entry(id).or_default().1 = Some(arrived);
                    }
                }
            }
        })
    };

    let client = reqwest::Client::new();
    let run = run_id();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    let mut requests = Vec::new();
    let mut n = 0;
    while started.elapsed() < duration {
        ticker.tick().await;
        let (client, seen, url) = (
            client.clone(),
            seen.clone(),
            format!("{base}/api/v1/customers"),
        );
        let address = email(run, n);
        n += 1;
        requests.push(tokio::spawn(async move {
            let response = client.post(&url).json(&body(&address)).send().await.ok()?;
            let answered = Instant::now();
            let data: Value = response.json().await.ok()?;
            let id = data["data"]["id"].as_i64()?;
            if let Ok(mut seen) = seen.lock() {
                seen.entry(id).or_default().0 = Some(answered);
            }
            Some(())
        }));
    }
    let sent = requests.len();
    let mut answered = 0;
    for request in requests {
        answered += usize::from(request.await?.is_some());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    listener.abort();
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut latencies: Vec<f64> = seen
        .values()
        .filter_map(|(answered, arrived)| {
            Some(
                arrived
                    .as_ref()?
                    .saturating_duration_since(answered.as_ref()?.to_owned()),
            )
        })
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let missing = answered - latencies.len();
    println!(
        "event-latency: rate {rate}/s for {:.1} s, {sent} sent, {answered} answered 201, {missing} events not received; \
         201→event p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         (0 when the event arrived before the HTTP answer was read)",
        duration.as_secs_f64(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.9),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let base = cli.base_url.trim_end_matches('/');
    match cli.command {
        Command::Run {
            scenario,
            connections,
            duration_secs,
            warmup_secs,
            read_percent,
        } => {
            run(
                base,
                scenario,
                connections,
                Duration::from_secs(duration_secs),
                Duration::from_secs(warmup_secs),
                read_percent,
            )
            .await
        }
        Command::Create { count, connections } => create(base, count, connections).await,
        Command::Drain { timeout_secs } => drain(base, Duration::from_secs(timeout_secs)).await,
        Command::EventLatency {
            redis_url,
            channel,
            rate,
            duration_secs,
        } => {
            event_latency(
                base,
                &redis_url,
                &channel,
                rate,
                Duration::from_secs(duration_secs),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&values, 0.5), 3.0);
        assert_eq!(quantile(&values, 0.99), 5.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
