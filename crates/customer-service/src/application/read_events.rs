//! Reading the settled event log by position: `GET /api/v1/events` and the SSE stream.

use customer_events::EventType;

use crate::domain::{CustomerId, DomainError, FieldErrors};

use super::error::ApplicationError;
use super::ports::{EventFilter, EventLog, StoredEvent};
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
                         CustomerDeactivated, CustomerDeleted, CustomerErased"
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
}
