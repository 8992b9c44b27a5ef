//! `customer-service events dlq list | retry <id>|--all | purge`: the dead-letter stream
//! (`<stream>:dlq`) that `customer_events::consumer` fills with events a handler kept failing.

use anyhow::Context;
use customer_events::consumer::RedisConnection;

use crate::config::Config;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: its id, the event's id and type, the consumer group and
    /// consumer, attempts and error (never the event's personal data).
    List,
    /// Put dead letters back on the event stream, unchanged, and remove them from the DLQ.
    /// Every consumer group sees them again; groups that handled the event already skip
    /// it by its eventId.
    Retry {
        /// The dead-letter entry id (as `list` shows it).
        id: Option<String>,
        /// All of them.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Delete every dead letter.
    Purge,
}

type Entry = (String, Vec<String>);

fn field<'a>(fields: &'a [String], name: &str) -> &'a str {
    fields
        .chunks(2)
        .find(|pair| pair.first().is_some_and(|n| n == name))
        .and_then(|pair| pair.get(1))
        .map_or("", String::as_str)
}

pub async fn run(
    config: Config,
    command: DlqCommand,
    stream: Option<String>,
) -> anyhow::Result<()> {
    let redis = config
        .redis
        .as_ref()
        .context("the dead-letter stream is in Redis: set REDIS_URL (or REDIS_HOST)")?;
    let stream = stream.unwrap_or_else(|| redis.stream.clone());
    let dlq = customer_events::consumer::dead_letter_stream(&stream);
    let mut connection = crate::sinks::target(redis)?
        .connect(std::time::Duration::from_secs(10))
        .await
        .context("connecting to Redis")?;
    match command {
        DlqCommand::List => {
            let entries = entries(&mut connection, &dlq, "-", "+").await?;
            for (id, fields) in &entries {
                println!(
                    "{id} eventId={} type={} group={} consumer={} attempts={} error={:?}",
                    field(fields, "id"),
                    field(fields, "type"),
                    field(fields, "group"),
                    field(fields, "consumer"),
                    field(fields, "attempts"),
                    field(fields, "error"),
                );
            }
            println!(
                "{} in {dlq}",
                super::count(entries.len(), "dead letter", "dead letters")
            );
        }
        DlqCommand::Retry { id, all } => {
            let selected = match (id, all) {
                (Some(id), false) => {
                    let selected = entries(&mut connection, &dlq, &id, &id).await?;
                    if selected.is_empty() {
                        anyhow::bail!("no such dead letter in {dlq}");
                    }
                    selected
                }
                (None, true) => entries(&mut connection, &dlq, "-", "+").await?,
                _ => anyhow::bail!("name a dead-letter id, or --all"),
            };
            // `--all` on an empty queue has done what it was asked.
            if selected.is_empty() {
                println!("nothing to retry: {dlq} is empty");
                return Ok(());
            }
            for (id, fields) in &selected {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("XADD")
                    .arg(&stream)
                    .arg("*")
                    .arg("type")
                    .arg(field(fields, "type"))
                    .arg("id")
                    .arg(field(fields, "id"))
                    .arg("event")
                    .arg(field(fields, "event"))
                    .ignore()
                    .cmd("XDEL")
                    .arg(&dlq)
                    .arg(id)
                    .ignore();
                pipe.query_async::<()>(&mut connection)
                    .await
                    .context("re-delivering a dead letter")?;
            }
            println!(
                "re-delivered {} to {stream}",
                super::count(selected.len(), "dead letter", "dead letters")
            );
        }
        DlqCommand::Purge => {
            let count: i64 = redis::cmd("XLEN")
                .arg(&dlq)
                .query_async(&mut connection)
                .await?;
            let _: i64 = redis::cmd("DEL")
                .arg(&dlq)
                .query_async(&mut connection)
                .await?;
            println!(
                "purged {} from {dlq}",
                super::count(
                    usize::try_from(count).unwrap_or_default(),
                    "dead letter",
                    "dead letters"
                )
            );
        }
    }
    Ok(())
}

async fn entries(
    connection: &mut RedisConnection,
    dlq: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<Vec<Entry>> {
    redis::cmd("XRANGE")
        .arg(dlq)
        .arg(from)
        .arg(to)
        .query_async(connection)
        .await
        .context("reading the dead-letter stream")
}
