//! `loadgen`: measures a running customer-service from outside, as its users see it.
//!
//! - `run`: a load scenario (create, get, list, search, update, mixed) for a fixed time with
//!   a warm-up; reports requests/s, latency percentiles and status codes.
//! - `create`: POST unique customers as fast as N connections allow (fills a backlog, too).
//! - `drain`: how fast the relay empties the outbox backlog (events/s), read from health.
//! - `event-latency`: POST at a fixed rate and time each event from the HTTP 201 to its
//!   arrival on the Redis channel, or at a JetStream consumer.
//! - `sse`: many clients on the event stream while events are created at a fixed rate; each
//!   delivery timed.
//!
//! One module per command (`scenario.rs` is `run`); this file holds the command line and
//! what they share.
//! Figures are printed, never asserted: `bench/` records them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::{json, Value};

mod create;
mod drain;
mod event_latency;
mod scenario;
mod sse;

use create::*;
use drain::*;
use event_latency::*;
use scenario::*;
use sse::*;

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
