//! Reading the settled event log by position: `GET /api/v1/events` and the SSE stream.

use customer_events::EventType;

use std::collections::BTreeMap;
use std::future::Future;

use crate::domain::{CustomerId, DomainError, FieldErrors, Timestamp};

use super::error::ApplicationError;
use super::ports::{EventFilter, EventLog, StoreError, StoredEvent};
use super::query_customers::parse_bound;

/// The largest page of events a client may ask for.
pub const MAX_EVENT_PAGE: i64 = 1000;
const DEFAULT_EVENT_PAGE: i64 = 100;

/// The query parameters as the client sent them.
#[derive(Debug, Clone, Default)]
pub struct EventPageRequest {
    pub after: Option<String>,
    pub limit: Option<String>,
    pub event_type: Option<String>,
    pub customer_id: Option<String>,
}

/// A cursor and filters, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Events after this position (0: from the beginning).
    pub after: Option<i64>,
    pub limit: i64,
    pub filter: EventFilter,
}

/// One page of events and where the next starts.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    /// `after` for the next page: the last position returned, or the request's `after`.
    pub next_after: i64,
}

/// Validates the parameters (every problem reported per field).
pub fn parse_event_query(request: &EventPageRequest) -> Result<EventQuery, ApplicationError> {
    let mut errors = FieldErrors::new();
    let after = request
        .after
        .as_deref()
        .map(|raw| parse_bound(&mut errors, "after", Some(raw), 0, 0, None));
    let limit = parse_bound(
        &mut errors,
        "limit",
        request.limit.as_deref(),
        DEFAULT_EVENT_PAGE,
        1,
        Some(MAX_EVENT_PAGE),
    );
    let event_type = request.event_type.as_deref().and_then(|raw| {
        let parsed = EventType::parse(raw.trim());
        if parsed.is_none() {
            let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            errors.add(
                "type",
                format!(
                    "type must be one of the following values: {}",
                    names.join(", ")
                ),
            );
        }
        parsed
    });
    let customer_id = request.customer_id.as_deref().and_then(|raw| {
        let id = parse_bound(&mut errors, "customerId", Some(raw), 1, 1, None);
        CustomerId::new(id)
    });
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    Ok(EventQuery {
        after,
        limit,
        filter: EventFilter {
            event_type,
            customer_id,
        },
    })
}

/// A page of settled events after `query.after` (0 when absent).
#[tracing::instrument(name = "read_events", skip_all)]
pub async fn read_events(
    log: &dyn EventLog,
    query: &EventQuery,
) -> Result<EventPage, ApplicationError> {
    let after = query.after.unwrap_or(0);
    let events = log
        .settled_events(after, query.limit, &query.filter)
        .await?;
    let next_after = events.last().map_or(after, |e| e.position);
    Ok(EventPage { events, next_after })
}

/// The longest window of [`event_rates`], in seconds.
pub const MAX_RATE_SECONDS: i64 = 600;
const DEFAULT_RATE_SECONDS: i64 = 120;

/// Events per second by type over a recent window of the settled log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRates {
    /// The window: `since` up to `until` (now).
    pub since: Timestamp,
    pub until: Timestamp,
    /// The last log position counted: the live stream's later events add to these counts.
    pub up_to: i64,
    /// The seconds with events, oldest first, each with its count per type.
    pub per_second: Vec<(Timestamp, BTreeMap<String, i64>)>,
}

/// Validates `seconds` (1–[`MAX_RATE_SECONDS`], default 120).
pub fn parse_rate_window(raw: Option<&str>) -> Result<i64, ApplicationError> {
    let mut errors = FieldErrors::new();
    let seconds = parse_bound(
        &mut errors,
        "seconds",
        raw,
        DEFAULT_RATE_SECONDS,
        1,
        Some(MAX_RATE_SECONDS),
    );
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    Ok(seconds)
}

/// How many events of each type occurred in each of the last `seconds` seconds before
/// `now`, counted from the settled log — so every instance shows the same numbers.
///
/// The log has no index on time, and needs none: the window's first position is found by
/// a binary search over primary-key seeks (about 24 for 10M events), then only the window's
/// rows are read.
#[tracing::instrument(name = "event_rates", skip_all)]
pub async fn event_rates(
    log: &dyn EventLog,
    now: Timestamp,
    seconds: i64,
) -> Result<EventRates, ApplicationError> {
    let since = Timestamp::from_millis(now.millis() - seconds * 1000);
    let up_to = log.watermark().await?;
    let mut per_second: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    let seek = |position| log.event_at_or_after(position);
    if let Some(from) = first_position_since(seek, since, up_to).await? {
        for (event_type, second, count) in log.events_per_second(from, up_to, since).await? {
            *per_second
                .entry(second.millis())
                .or_default()
                .entry(event_type)
                .or_default() += count;
        }
    }
    Ok(EventRates {
        since,
        until: now,
        up_to,
        per_second: per_second
            .into_iter()
            .map(|(second, counts)| (Timestamp::from_millis(second), counts))
            .collect(),
    })
}

/// The first position in `1..=up_to` whose event occurred at or after `since`, given
/// `seek(p)`: the first event at or after position `p` and its time. Positions may have
/// gaps. Times are taken to grow with positions; where they do not (an imported event
/// keeps its original time, instances' clocks differ by milliseconds) the bound is off
/// by those events only, and the caller's time filter still applies.
async fn first_position_since<Seek>(
    seek: impl Fn(i64) -> Seek,
    since: Timestamp,
    up_to: i64,
) -> Result<Option<i64>, StoreError>
where
    Seek: Future<Output = Result<Option<(i64, Timestamp)>, StoreError>>,
{
    // Every event below `lo` occurred before `since`; every event from `hi` on (up to
    // `up_to`) at or after it.
    let (mut lo, mut hi) = (1, up_to.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match seek(mid).await? {
            Some((position, at)) if position < hi => {
                if at >= since {
                    hi = position;
                } else {
                    lo = position + 1;
                }
            }
            // No event in mid..hi.
            _ => hi = mid,
        }
    }
    Ok((lo <= up_to).then_some(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&str, &str)]) -> EventPageRequest {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        EventPageRequest {
            after: get("after"),
            limit: get("limit"),
            event_type: get("type"),
            customer_id: get("customerId"),
        }
    }

    #[test]
    fn defaults_and_every_bad_parameter_reported_at_once() {
        let query = parse_event_query(&request(&[])).unwrap();
        assert_eq!(
            query,
            EventQuery {
                after: None,
                limit: 100,
                filter: EventFilter::default()
            }
        );
        let query = parse_event_query(&request(&[
            ("type", "CustomerDeleted"),
            ("customerId", "7"),
        ]))
        .unwrap();
        assert_eq!(query.filter.event_type, Some(EventType::CustomerDeleted));
        assert_eq!(query.filter.customer_id, CustomerId::new(7));

        let bad = request(&[
            ("after", "-1"),
            ("limit", "1001"),
            ("type", "CustomerMerged"),
            ("customerId", "x"),
        ]);
        match parse_event_query(&bad) {
            Err(ApplicationError::Domain(DomainError::Validation(errors))) => {
                assert_eq!(errors.of("after"), ["after must not be less than 0"]);
                assert_eq!(errors.of("limit"), ["limit must not be greater than 1000"]);
                assert_eq!(
                    errors.of("type"),
                    [
                        "type must be one of the following values: CustomerCreated, \
                         CustomerImported, CustomerUpdated, CustomerActivated, \
                         CustomerDeactivated, CustomerDeleted, CustomerErased, \
                         CustomerErasureRequested, CustomerErasureCompleted"
                    ]
                );
                assert_eq!(
                    errors.of("customerId"),
                    ["customerId must be an integer number"]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// [`first_position_since`] over `events` (`(position, ms)`, ascending), counting seeks.
    fn search(events: &[(i64, i64)], since: i64, up_to: i64) -> (Option<i64>, usize) {
        let seeks = std::cell::Cell::new(0);
        let seek = |position: i64| {
            seeks.set(seeks.get() + 1);
            std::future::ready(Ok(events
                .iter()
                .find(|(p, _)| *p >= position)
                .map(|(p, at)| (*p, Timestamp::from_millis(*at)))))
        };
        let since = Timestamp::from_millis(since);
        let found = block_on(first_position_since(seek, since, up_to));
        (found.unwrap(), seeks.get())
    }

    /// A minimal executor: the seeks above never wait.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn the_window_start_is_found_with_gaps_and_in_logarithmic_seeks() {
        // Positions 1..=1000 with gaps at every 7th, one event per 10 ms.
        let events: Vec<(i64, i64)> = (1..=1000)
            .filter(|p| p % 7 != 0)
            .map(|p| (p, p * 10))
            .collect();
        for since in [0, 5, 10, 11, 69, 70, 71, 5000, 9990, 10_000, 10_001] {
            let expected = events.iter().find(|(_, at)| *at >= since).map(|(p, _)| *p);
            let (found, seeks) = search(&events, since, 1000);
            // Where a gap precedes the answer, the bound may be the gap itself.
            let found_event =
                found.and_then(|f| events.iter().find(|(p, _)| *p >= f).map(|(p, _)| *p));
            assert_eq!(found_event, expected, "since {since}");
            assert!(seeks <= 12, "{seeks} seeks for since {since}");
        }
        // Events above the watermark do not count.
        assert_eq!(search(&events, 9_000, 800).0, None);
        assert_eq!(search(&[], 0, 0).0, None);
    }
}
