//! The read models as the API and the CLI show them: `GET /api/v1/customers/stats`, the
//! lag of each model behind the settled log.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};

use crate::domain::Timestamp;

use super::error::ApplicationError;
use super::ports::{EventLog, ProjectionState, ReadModels};

/// Sign-ups are listed for this many days, today included.
pub const SIGNUP_DAYS: u64 = 90;

/// `data` of `GET /api/v1/customers/stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerStats {
    /// Customers not deleted (= active + inactive).
    pub customers: i64,
    pub active: i64,
    pub inactive: i64,
    /// Deleted customers, the erased included.
    pub deleted: i64,
    pub erased: i64,
    /// Customers not deleted, by country as stored; `unknown` without an address.
    pub by_country: BTreeMap<String, i64>,
    /// `(YYYY-MM-DD, n)` for each of the last [`SIGNUP_DAYS`] days (UTC), oldest first:
    /// customers not deleted, by the day of their `createdAt`.
    pub signups_per_day: Vec<(String, i64)>,
    /// The log position the numbers include, and how far behind the log that is.
    pub lag: ProjectionLag,
}

/// How far a read model is behind the settled log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionLag {
    pub position: i64,
    /// Settled events not yet applied.
    pub events: i64,
    /// How long ago the oldest of them occurred; 0 when none.
    pub ms: i64,
}

/// A model at `position` against the log at `now`.
pub async fn projection_lag(
    log: &dyn EventLog,
    position: i64,
    now: Timestamp,
) -> Result<ProjectionLag, ApplicationError> {
    let head = log.watermark().await?;
    if head <= position {
        return Ok(ProjectionLag {
            position,
            events: 0,
            ms: 0,
        });
    }
    let oldest = log.event_at_or_after(position + 1).await?;
    Ok(ProjectionLag {
        position,
        events: head - position,
        ms: oldest.map_or(0, |(_, at)| (now.millis() - at.millis()).max(0)),
    })
}

/// The stats model's numbers as of `now`.
#[tracing::instrument(name = "customer_stats", skip_all)]
pub async fn customer_stats(
    models: &dyn ReadModels,
    log: &dyn EventLog,
    now: Timestamp,
) -> Result<CustomerStats, ApplicationError> {
    let today = now.date();
    let first = today
        .checked_sub_days(Days::new(SIGNUP_DAYS - 1))
        .unwrap_or(NaiveDate::MIN);
    let since = first.format("%Y-%m-%d").to_string();
    let rows = models.stats_rows(&since).await?;
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_country = BTreeMap::new();
    let mut days: BTreeMap<String, i64> = BTreeMap::new();
    let position = rows.as_ref().map_or(0, |r| r.state.position);
    for (kind, name, n) in rows.map(|r| r.counts).unwrap_or_default() {
        match kind.as_str() {
            "total" => totals.insert(name, n),
            "country" => by_country.insert(name, n),
            "day" => days.insert(name, n),
            _ => None,
        };
    }
    let total = |name: &str| totals.get(name).copied().unwrap_or(0);
    let signups_per_day = first
        .iter_days()
        .take_while(|day| *day <= today)
        .map(|day| {
            let day = day.format("%Y-%m-%d").to_string();
            let n = days.get(&day).copied().unwrap_or(0);
            (day, n)
        })
        .collect();
    Ok(CustomerStats {
        customers: total("active") + total("inactive"),
        active: total("active"),
        inactive: total("inactive"),
        deleted: total("deleted"),
        erased: total("erased"),
        by_country,
        signups_per_day,
        lag: projection_lag(log, position, now).await?,
    })
}

/// Every read model with its lag.
pub async fn projection_states(
    models: &dyn ReadModels,
    log: &dyn EventLog,
    now: Timestamp,
) -> Result<Vec<(ProjectionState, ProjectionLag)>, ApplicationError> {
    let mut states = Vec::new();
    for state in models.projection_states().await? {
        let lag = projection_lag(log, state.position, now).await?;
        states.push((state, lag));
    }
    Ok(states)
}
