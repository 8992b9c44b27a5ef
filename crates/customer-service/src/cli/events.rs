//! `customer-service events …`: tools over the event log.

use std::io::Write;

use anyhow::Context;

use crate::application::{self, ApplicationError, EventLog, EventPageRequest, EventQuery};
use crate::config::Config;
use crate::domain::{DomainError, Timestamp};
use crate::sinks::append_to_stream;
use crate::startup::connect_existing_store;

use super::count;

/// `events verify`: rebuilds every customer from its events and compares it with its row.
/// Prints each mismatch (ids and field names only) and fails if there is any.
pub async fn verify(config: Config) -> anyhow::Result<()> {
    let store = connect_existing_store(&config).await?;
    let report = application::verify_log(&store)
        .await
        .context("reading the event log and the customers table");
    store.close().await;
    let report = report?;
    for mismatch in &report.mismatches {
        println!("{mismatch}");
    }
    println!(
        "checked {} and {}: {}",
        count(to_usize(report.customers), "customer", "customers"),
        count(to_usize(report.events), "event", "events"),
        count(report.mismatches.len(), "mismatch", "mismatches")
    );
    match report.mismatches.len() {
        0 => Ok(()),
        1 => anyhow::bail!("1 customer disagrees with its events"),
        n => anyhow::bail!("{n} customers disagree with their events"),
    }
}

/// Where `--from` / `--to` point: a log position, or an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPoint {
    Position(i64),
    At(Timestamp),
}

impl std::str::FromStr for LogPoint {
    type Err = String;

    fn from_str(raw: &str) -> Result<LogPoint, String> {
        if let Ok(position) = raw.parse::<i64>() {
            return if position >= 0 {
                Ok(LogPoint::Position(position))
            } else {
                Err("a position is 0 or more".to_owned())
            };
        }
        chrono::DateTime::parse_from_rfc3339(raw)
            .map(|at| LogPoint::At(Timestamp::from_datetime(at.to_utc())))
            .map_err(|_| {
                "expected a log position or an RFC 3339 date-time (2026-01-01T10:00:00Z)".to_owned()
            })
    }
}

/// Filters shared by `replay` and `tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct EventFilterArgs {
    /// Only events of this type (CustomerCreated, …).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Only this customer's events.
    #[arg(long)]
    pub customer: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The first event: a log position (inclusive), or an RFC 3339 time (the first event
    /// that occurred at or after it).
    #[arg(long)]
    pub from: LogPoint,
    /// The last event: a position (inclusive), or a time (events that occurred up to it).
    #[arg(long)]
    pub to: Option<LogPoint>,
    #[command(flatten)]
    pub filter: EventFilterArgs,
    /// The stream to append to [default: EVENT_STREAM].
    #[arg(long)]
    pub stream: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Start after this position [default: the newest settled event: new events only].
    #[arg(long)]
    pub after: Option<i64>,
    #[command(flatten)]
    pub filter: EventFilterArgs,
}

/// Events per read and per Redis pipeline.
const PAGE: i64 = 500;

fn event_query(after: Option<i64>, filter: &EventFilterArgs) -> anyhow::Result<EventQuery> {
    let request = EventPageRequest {
        after: after.map(|a| a.to_string()),
        limit: Some(PAGE.to_string()),
        event_type: filter.event_type.clone(),
        customer_id: filter.customer.clone(),
    };
    application::parse_event_query(&request).map_err(|error| match error {
        ApplicationError::Domain(DomainError::Validation(errors)) => {
            anyhow::anyhow!("invalid filter: {errors}")
        }
        other => other.into(),
    })
}

/// `events replay`: appends the selected settled events, in position order, to a stream.
pub async fn replay(config: Config, args: ReplayArgs) -> anyhow::Result<()> {
    let redis = config
        .redis
        .as_ref()
        .context("events replay needs Redis: set REDIS_URL (or REDIS_HOST)")?;
    let client = crate::sinks::target(redis)?;
    let stream = args.stream.clone().unwrap_or_else(|| redis.stream.clone());
    let store = connect_existing_store(&config).await?;
    let result = replay_into(&store, &client, &stream, redis.stream_max_len, &args).await;
    store.close().await;
    let count = result?;
    println!(
        "replayed {} to {stream}",
        super::count(to_usize(count), "event", "events")
    );
    Ok(())
}

async fn replay_into(
    log: &dyn EventLog,
    client: &customer_events::consumer::RedisTarget,
    stream: &str,
    max_len: u64,
    args: &ReplayArgs,
) -> anyhow::Result<u64> {
    let first = match args.from {
        LogPoint::Position(position) => Some(position),
        LogPoint::At(at) => log.first_position_at(at).await?,
    };
    let last = match args.to {
        None => None,
        Some(LogPoint::Position(position)) => Some(position),
        Some(LogPoint::At(at)) => Some(log.last_position_at(at).await?.unwrap_or(0)),
    };
    let Some(first) = first else { return Ok(0) };
    let mut query = event_query(Some((first - 1).max(0)), &args.filter)?;
    let mut count = 0;
    loop {
        let mut page = application::read_events(log, &query).await?;
        let end = page.events.is_empty();
        if let Some(last) = last {
            page.events.retain(|e| e.position <= last);
        }
        if !page.events.is_empty() {
            append_to_stream(client, stream, max_len, &page.events)
                .await
                .context("appending to the Redis stream")?;
            count += page.events.len() as u64;
        }
        let past_last = last.is_some_and(|last| page.next_after >= last);
        if end || past_last {
            return Ok(count);
        }
        query.after = Some(page.next_after);
    }
}

/// How often `tail` looks for new events.
const TAIL_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// `events tail`: prints settled events as they come, until interrupted.
pub async fn tail(config: Config, args: TailArgs) -> anyhow::Result<()> {
    let store = connect_existing_store(&config).await?;
    let after = match args.after {
        Some(after) => after,
        None => store.watermark().await?,
    };
    let mut query = event_query(Some(after), &args.filter)?;
    // stdout is the events alone (for a pipe); the note goes to stderr.
    eprintln!("following the event log after position {after}: each new event is printed as one JSON line; Ctrl-C stops");
    let mut stdout = std::io::stdout();
    loop {
        let page = tokio::select! {
            page = application::read_events(&store, &query) => page?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for event in &page.events {
            writeln!(
                stdout,
                r#"{{"position":{},"event":{}}}"#,
                event.position, event.payload
            )?;
        }
        stdout.flush()?;
        query.after = Some(page.next_after);
        if page.events.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(TAIL_POLL) => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    }
    store.close().await;
    Ok(())
}

/// A count the database gave as an integer, for [`super::count`].
fn to_usize<T: TryInto<usize>>(n: T) -> usize {
    n.try_into().unwrap_or(usize::MAX)
}
