//! `loadgen`: measures a running customer-service from outside, as its users see it.
//!
//! - `run`: a load scenario (create, get, list, search, update, mixed) for a fixed time with
//!   a warm-up; reports requests/s, latency percentiles and status codes.
//! - `create`: POST unique customers as fast as N connections allow (fills a backlog, too).
//! - `drain`: how fast the relay empties the outbox backlog (events/s), read from health.
//! - `event-latency`: POST at a fixed rate and time each event from the HTTP 201 to its
//!   arrival on the Redis channel, or at a JetStream consumer.
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
    /// GET the paths of `--paths-file` (one per line, e.g. `/api/v1/customers?search=ann`),
    /// a random one per request.
    Paths,
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
        /// For `paths`: the file of paths.
        #[arg(long)]
        paths_file: Option<std::path::PathBuf>,
    },
    /// Connect `clients` SSE clients to /api/v1/events/stream, POST at `rate` per second for
    /// `duration_secs`, and time each CustomerCreated from its 201 to its arrival at every
    /// client.
    Sse {
        #[arg(long, default_value_t = 200)]
        clients: u64,
        #[arg(long, default_value_t = 20)]
        rate: u64,
        #[arg(long, default_value_t = 15)]
        duration_secs: u64,
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
    /// HTTP response to its arrival on the Redis channel (`--redis-url`) or at a JetStream
    /// consumer of the NATS stream (`--nats-url`).
    EventLatency {
        #[arg(
            long,
            required_unless_present = "nats_url",
            conflicts_with = "nats_url"
        )]
        redis_url: Option<String>,
        #[arg(long, default_value = "customer-service-events")]
        channel: String,
        /// Time arrivals at an ordered pull consumer of `--nats-stream` (new messages only).
        #[arg(long)]
        nats_url: Option<String>,
        #[arg(long, default_value = "CUSTOMER_EVENTS")]
        nats_stream: String,
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
    paths: Arc<Vec<String>>,
) -> anyhow::Result<()> {
    if scenario == Scenario::Paths && paths.is_empty() {
        bail!("the paths scenario needs --paths-file with at least one path");
    }
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
        let (client, base, counter, paths) = (
            client.clone(),
            base.to_owned(),
            counter.clone(),
            paths.clone(),
        );
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
                    Scenario::Paths => client.get(format!(
                        "{base}{}",
                        paths[(roll % paths.len() as u64) as usize]
                    )),
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
        // Polling the health route costs the service a count of the backlog (~50 ms at a
        // million pending): not too often.
        tokio::time::sleep(Duration::from_millis(250)).await;
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

/// Where `event-latency` waits for the events.
enum Arrivals {
    /// Subscribed to the pub/sub channel.
    Redis { url: String, channel: String },
    /// An ordered pull consumer of the stream, from the first new message on.
    JetStream { url: String, stream: String },
}

/// Notes when the CustomerCreated in `payload` arrived.
fn arrived(seen: &Mutex<Timings>, payload: &[u8]) {
    let arrived = Instant::now();
    let Ok(event) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    if event["eventType"] != "CustomerCreated" {
        return;
    }
    if let (Some(id), Ok(mut seen)) = (event["metadata"]["aggregateId"].as_i64(), seen.lock()) {
        seen.entry(id).or_default().1 = Some(arrived);
    }
}

/// Listens for arrivals until aborted.
async fn listen(
    arrivals: &Arrivals,
    seen: Arc<Mutex<Timings>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    Ok(match arrivals {
        Arrivals::Redis { url, channel } => {
            let mut pubsub = redis::Client::open(url.as_str())?
                .get_async_pubsub()
                .await?;
            pubsub.subscribe(channel).await?;
            tokio::spawn(async move {
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    arrived(&seen, message.get_payload_bytes());
                }
            })
        }
        Arrivals::JetStream { url, stream } => {
            use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
            let client = async_nats::connect(url.as_str()).await?;
            let consumer = async_nats::jetstream::new(client)
                .get_stream(stream)
                .await?
                .create_consumer(OrderedConfig {
                    deliver_policy: DeliverPolicy::New,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            tokio::spawn(async move {
                while let Some(Ok(message)) = messages.next().await {
                    arrived(&seen, &message.payload);
                }
            })
        }
    })
}

async fn event_latency(
    base: &str,
    arrivals: Arrivals,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    let seen: Arc<Mutex<Timings>> = Arc::default();
    let listener = listen(&arrivals, seen.clone()).await?;

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

/// Reads one SSE client's stream until `until`: the CustomerCreated events it received, by
/// customer id, with their arrival times.
async fn sse_client(
    client: reqwest::Client,
    url: String,
    until: Instant,
) -> anyhow::Result<Vec<(i64, Instant)>> {
    let mut response = client.get(&url).send().await?.error_for_status()?;
    let mut arrivals = Vec::new();
    let mut buffer = String::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(chunk) = tokio::time::timeout(left, response.chunk()).await else {
            return Ok(arrivals);
        };
        let Some(chunk) = chunk? else {
            bail!("the stream ended");
        };
        let arrived = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if event["eventType"] == "CustomerCreated" {
                if let Some(id) = event["metadata"]["aggregateId"].as_i64() {
                    arrivals.push((id, arrived));
                }
            }
        }
    }
}

async fn sse(base: &str, clients: u64, rate: u64, duration: Duration) -> anyhow::Result<()> {
    // One connection per SSE client, as separate subscribers would have.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let until = Instant::now() + Duration::from_secs(5) + duration + Duration::from_secs(3);
    let mut readers = Vec::new();
    for _ in 0..clients {
        readers.push(tokio::spawn(sse_client(
            client.clone(),
            format!("{base}/api/v1/events/stream"),
            until,
        )));
    }
    // Let every client connect and reach the tip.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let run = run_id();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    let mut answered: HashMap<i64, Instant> = HashMap::new();
    let mut n = 0;
    while started.elapsed() < duration {
        ticker.tick().await;
        let response = client
            .post(format!("{base}/api/v1/customers"))
            .json(&body(&email(run, n)))
            .send()
            .await?;
        let at = Instant::now();
        n += 1;
        let data: Value = response.json().await?;
        if let Some(id) = data["data"]["id"].as_i64() {
            answered.insert(id, at);
        }
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut received = 0;
    for reader in readers {
        match reader.await? {
            Ok(arrivals) => {
                for (id, arrived) in arrivals {
                    if let Some(at) = answered.get(&id) {
                        received += 1;
                        latencies
                            .push(arrived.saturating_duration_since(*at).as_secs_f64() * 1000.0);
                    }
                }
            }
            Err(_) => failed += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    let expected = answered.len() as u64 * (clients - failed);
    println!(
        "sse: {clients} clients ({failed} failed), {} events at {rate}/s, {received} of {expected} deliveries; \
         201→client p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        answered.len(),
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
            paths_file,
        } => {
            let paths = match paths_file {
                Some(file) => std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned)
                    .collect(),
                None => Vec::new(),
            };
            run(
                base,
                scenario,
                connections,
                Duration::from_secs(duration_secs),
                Duration::from_secs(warmup_secs),
                read_percent,
                Arc::new(paths),
            )
            .await
        }
        Command::Sse {
            clients,
            rate,
            duration_secs,
        } => sse(base, clients, rate, Duration::from_secs(duration_secs)).await,
        Command::Create { count, connections } => create(base, count, connections).await,
        Command::Drain { timeout_secs } => drain(base, Duration::from_secs(timeout_secs)).await,
        Command::EventLatency {
            redis_url,
            channel,
            nats_url,
            nats_stream,
            rate,
            duration_secs,
        } => {
            let arrivals = match (redis_url, nats_url) {
                (Some(url), _) => Arrivals::Redis { url, channel },
                (None, Some(url)) => Arrivals::JetStream {
                    url,
                    stream: nats_stream,
                },
                (None, None) => anyhow::bail!("--redis-url or --nats-url is required"),
            };
            event_latency(base, arrivals, rate, Duration::from_secs(duration_secs)).await
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
