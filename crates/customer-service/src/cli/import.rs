//! `customer-service import --from mysql://…`: brings the original service's customers into
//! DATABASE_URL (any backend). See `application/import_customers.rs` for what each row
//! becomes; this reads the source in batches, in id order, and reports.
//!
//! A real run first decides every row without writing (as `--dry-run` does) and refuses to
//! start while any row would be rejected; with `--skip-invalid` it skips that pass. Then it
//! imports batch by batch, each batch one transaction, so a run stopped half-way (or
//! killed) is resumed by running it again.

use std::path::PathBuf;

use anyhow::Context;
use chrono::FixedOffset;

use crate::application::{
    verify_import, Clock, Difference, Import, ImportTally, Rejected, RowCheck, SystemClock,
    WriteContext,
};
use crate::config::Config;
use crate::domain::Timestamp;
use crate::startup::connect_store;
use crate::store::{Backend, OriginalDatabase};
use futures_util::StreamExt;

/// Source rows per batch (and per transaction here).
const BATCH: i64 = 2_000;
/// Batches written at once on PostgreSQL and MySQL: one is built while others are written,
/// as `seed` does (SQLite has one writer; more would only queue). Measured in
/// `bench/MYSQL.md`.
const WRITERS: usize = 3;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The original service's database: mysql://USER:PASSWORD@HOST:PORT/DB
    #[arg(long, value_name = "URL")]
    from: String,
    /// Decide every row and list those that would not be imported (id and reason); write
    /// no customer and no event.
    #[arg(long)]
    dry_run: bool,
    /// Import the valid rows even when others are rejected; those are listed in --skip-file.
    #[arg(long)]
    skip_invalid: bool,
    /// Where --skip-invalid lists the rejected rows (CSV: id,reason)
    /// [default: import-skipped-<UTC time>.csv in the current folder]
    #[arg(long, value_name = "PATH")]
    skip_file: Option<PathBuf>,
    /// The time zone the source's DATETIMEs were written in: UTC or an offset (+02:00)
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_zone)]
    source_timezone: FixedOffset,
    /// Only rows changed at or after this time (RFC 3339; deletions are always found): the
    /// catch-up before the switch
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    since: Option<Timestamp>,
    /// Compare every imported customer with its source row and print the differences (ids
    /// and field names, never values); exits non-zero if there are any
    #[arg(long, conflicts_with_all = ["dry_run", "skip_invalid", "since"])]
    verify: bool,
}

fn parse_zone(raw: &str) -> Result<FixedOffset, String> {
    let invalid = || format!("{raw:?} is not UTC or an offset such as +02:00");
    if matches!(raw, "UTC" | "utc" | "Z") {
        return FixedOffset::east_opt(0).ok_or_else(invalid);
    }
    let (sign, rest) = match raw.as_bytes().first() {
        Some(b'+') => (1, &raw[1..]),
        Some(b'-') => (-1, &raw[1..]),
        _ => return Err(invalid()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(invalid)?;
    let hours: i32 = hours.parse().map_err(|_| invalid())?;
    let minutes: i32 = minutes.parse().map_err(|_| invalid())?;
    if hours > 14 || minutes > 59 {
        return Err(invalid());
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(invalid)
}

fn parse_since(raw: &str) -> Result<Timestamp, String> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|at| Timestamp::from_millis(at.timestamp_millis()))
        .map_err(|_| format!("{raw:?} is not an RFC 3339 time such as 2026-11-30T09:00:00Z"))
}

pub async fn run(config: Config, args: ImportArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let store = connect_store(&config).await?;
    store
        .migrate()
        .await
        .context("applying database migrations")?;
    // Customers from before the e-mail key must have theirs: a look-alike of one of them is
    // then rejected like a taken address.
    store
        .key_emails()
        .await
        .context("writing the e-mail keys of earlier customers")?;
    let mut source = OriginalDatabase::connect(&args.from, args.source_timezone)
        .await
        .context("connecting to the original service's database (--from)")?;
    let result = if args.verify {
        verify(&store, &mut source).await
    } else {
        import(&store, &mut source, &args, started).await
    };
    source.close().await;
    store.close().await;
    result
}

async fn import(
    store: &crate::store::SqlStore,
    source: &mut OriginalDatabase,
    args: &ImportArgs,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let ctx = WriteContext {
        now,
        correlation_id: format!("import-{}", now.millis()),
        actor: None,
    };
    // Every row decided first, nothing written: for a dry run, and for a run that must not
    // start while any row would be rejected. (With --skip-invalid there is nothing to
    // refuse: the writing pass lists its rejections itself.)
    let mut rows = None;
    if args.dry_run || !args.skip_invalid {
        let (plan, read) = pass(store, source, &ctx, args.since, false, None).await?;
        if args.dry_run {
            print_rejected(&plan.rejected);
            println!("dry run: {}", summary(&plan));
            return Ok(());
        }
        if !plan.rejected.is_empty() {
            print_rejected(&plan.rejected);
            anyhow::bail!(
                "{} would not be imported (listed above): correct them in the source, or run \
                 again with --skip-invalid to import the others; nothing was imported",
                rows_counted(plan.rejected.len())
            );
        }
        rows = Some(read);
    }
    let progress =
        indicatif::ProgressBar::with_draw_target(rows, indicatif::ProgressDrawTarget::stderr())
            .with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} importing [{bar:40}] {human_pos}/{human_len} rows, {per_sec}, eta {eta}",
            )
            .context("progress bar template")?
            .progress_chars("=> "),
        );
    let (done, _) = pass(store, source, &ctx, args.since, true, Some(&progress)).await?;
    progress.finish_and_clear();
    store
        .analyze()
        .await
        .context("refreshing the database's statistics")?;
    if !done.rejected.is_empty() {
        let path = args.skip_file.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "import-skipped-{}.csv",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ))
        });
        write_skip_file(&path, &done.rejected)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{} not imported, listed in {}",
            rows_counted(done.rejected.len()),
            path.display()
        );
    }
    println!(
        "{} in {:.1} s",
        summary(&done),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One pass over the source: every row (or those changed since `since`) in batches, then
/// the deletions. Returns the tally and how many rows were read.
async fn pass(
    store: &crate::store::SqlStore,
    source: &mut OriginalDatabase,
    ctx: &WriteContext,
    since: Option<Timestamp>,
    write: bool,
    progress: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<(ImportTally, u64)> {
    let import = Import::new(store, ctx.clone(), write);
    let mut check = RowCheck::new(ctx.now.date());
    let mut tally = ImportTally::default();
    let writers = match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres | Backend::MySql => WRITERS,
    };
    // Batches are read and checked in id order; up to `writers` are applied at once, the
    // next read and checked as soon as one is done.
    let mut applying = futures_util::stream::FuturesUnordered::new();
    let (mut after, mut rows, mut finished) = (0, 0, false);
    loop {
        while applying.len() < writers && !finished {
            let batch = source
                .rows(after, since, BATCH)
                .await
                .context("reading the original's customers")?;
            let Some(last) = batch.last().map(|row| row.id) else {
                finished = true;
                break;
            };
            let read = batch.len() as u64;
            let checked = check.check(batch, &mut tally);
            let import = &import;
            applying.push(async move { (read, import.apply(checked).await) });
            after = last;
        }
        let Some((read, applied)) = applying.next().await else {
            break;
        };
        tally.add(applied.context("importing customers")?);
        rows += read;
        if let Some(progress) = progress {
            progress.inc(read);
        }
    }
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page = source
            .ids(after, 50_000)
            .await
            .context("reading the original's ids")?;
        let Some(&last) = page.last() else { break };
        ids.extend(page);
        after = last;
    }
    import
        .delete_missing(&ids, &mut tally)
        .await
        .context("deleting customers deleted in the source")?;
    tally.rejected.sort_by_key(|row| row.id);
    Ok((tally, rows))
}

async fn verify(
    store: &crate::store::SqlStore,
    source: &mut OriginalDatabase,
) -> anyhow::Result<()> {
    let today = SystemClock.now().date();
    let mut seen_emails = std::collections::HashSet::new();
    let (mut checked, mut differences) = (0_u64, 0_u64);
    let mut after = 0;
    loop {
        let batch = source
            .rows(after, None, BATCH)
            .await
            .context("reading the original's customers")?;
        let Some(last) = batch.last().map(|row| row.id) else {
            break;
        };
        checked += batch.len() as u64;
        for (id, difference) in verify_import(store, today, &batch, &mut seen_emails).await? {
            differences += 1;
            match difference {
                Difference::Missing => println!("customer {id}: missing here"),
                Difference::Fields(fields) => {
                    println!("customer {id}: differs in {}", fields.join(", "))
                }
            }
        }
        after = last;
    }
    println!(
        "checked {} against the source: {}",
        rows_counted(checked as usize),
        super::count(differences as usize, "difference", "differences")
    );
    if differences > 0 {
        anyhow::bail!("the import differs from the source");
    }
    Ok(())
}

fn print_rejected(rejected: &[Rejected]) {
    for row in rejected {
        println!("row {}: {}", row.id, row.reason);
    }
}

fn rows_counted(n: usize) -> String {
    super::count(n, "row", "rows")
}

fn summary(tally: &ImportTally) -> String {
    format!(
        "imported {}, updated {}, deleted {}, unchanged {}, changed here since their import {}, \
         deleted here since their import {}, rejected {}",
        tally.imported,
        tally.updated,
        tally.deleted,
        tally.unchanged,
        tally.changed_here,
        tally.deleted_here,
        tally.rejected.len()
    )
}

/// `id,reason` lines under a header; reasons quoted (they contain commas).
fn write_skip_file(path: &std::path::Path, rejected: &[Rejected]) -> std::io::Result<()> {
    let mut csv = String::from("id,reason\n");
    for row in rejected {
        csv.push_str(&format!(
            "{},\"{}\"\n",
            row.id,
            row.reason.replace('"', "\"\"")
        ));
    }
    std::fs::write(path, csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_utc_or_offsets() {
        assert_eq!(parse_zone("UTC").unwrap().local_minus_utc(), 0);
        assert_eq!(parse_zone("+02:00").unwrap().local_minus_utc(), 7200);
        assert_eq!(parse_zone("-05:30").unwrap().local_minus_utc(), -19800);
        assert!(parse_zone("Europe/Paris").is_err());
        assert!(parse_zone("+25:00").is_err());
    }

    #[test]
    fn since_is_rfc_3339() {
        assert_eq!(
            parse_since("2026-01-01T00:00:00.5+01:00").unwrap().millis(),
            1_767_222_000_500
        );
        assert!(parse_since("yesterday").is_err());
    }
}
