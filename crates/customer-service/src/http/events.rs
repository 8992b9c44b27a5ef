//! The event log over HTTP, as cursor readers see it: every event up to the watermark (see
//! `outbox/watermark.rs`), in position order.
//!
//! - `GET /api/v1/events?after=&limit=&type=&customerId=`: pages.
//! - `GET /api/v1/events/stream`: Server-Sent Events (`event:` the type, `id:` the position,
//!   `data:` the envelope). With `Last-Event-ID` (or `?after=`) it first replays what the
//!   client missed, then goes on live; replay and live are one loop over the same query, so
//!   there is no seam to lose or repeat an event at. Without either it starts at the
//!   watermark: new events only.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use serde::Serialize;
use utoipa::ToSchema;

use crate::application::{self, EventPageRequest, EventQuery, StoredEvent};

use super::customers::LoggedEvent;
use super::envelope::{self, Envelope};
use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::AppState;

/// Comment lines at this interval keep proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events a stream reads per query while catching up.
const STREAM_PAGE: i64 = 500;
/// How often a stream looks for new events when no local relay move wakes it (an instance
/// that does not lead), and how long it waits after a database error.
const STREAM_POLL: Duration = Duration::from_millis(500);

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(list_events))
        .route("/events/stream", get(stream_events))
}

/// `data` of the events route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventList {
    events: Vec<LoggedEvent>,
    /// Pass as `after` for the next page.
    next_after: i64,
}

fn page_request(QueryParams(mut params): QueryParams) -> EventPageRequest {
    EventPageRequest {
        after: params.remove("after"),
        limit: params.remove("limit"),
        event_type: params.remove("type"),
        customer_id: params.remove("customerId"),
    }
}

/// The settled event log in position order, filtered.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(("after" = Option<i64>, Query, description = "events after this position; default 0"),
           ("limit" = Option<i64>, Query, description = "1–1000, default 100"),
           ("type" = Option<String>, Query, description = "only this event type"),
           ("customerId" = Option<i64>, Query, description = "only this customer's events")),
    responses((status = 200, description = "One page; continue with after = nextAfter", body = Envelope<EventList>),
              (status = 400, description = "Invalid parameter", body = ErrorBody)))]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    params: QueryParams,
) -> Result<impl IntoResponse, ApiError> {
    let query = application::parse_event_query(&page_request(params))?;
    let page = application::read_events(&*state.events, &query).await?;
    Ok(envelope::ok(EventList {
        events: page
            .events
            .into_iter()
            .map(LoggedEvent::from_stored)
            .collect::<Result<_, _>>()?,
        next_after: page.next_after,
    }))
}

/// Live events, optionally resumed after a position and filtered like `GET /api/v1/events`.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    params(("Last-Event-ID" = Option<i64>, Header, description = "resume after this position (what the browser sends on reconnect)"),
           ("after" = Option<i64>, Query, description = "resume after this position; without it or Last-Event-ID: new events only"),
           ("type" = Option<String>, Query), ("customerId" = Option<i64>, Query)),
    responses((status = 200, description = "text/event-stream: event = eventType, id = log position, data = envelope JSON",
               content_type = "text/event-stream"),
              (status = 400, description = "Invalid parameter", body = ErrorBody)))]
pub(crate) async fn stream_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: QueryParams,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut request = page_request(params);
    request.limit = None;
    let query = application::parse_event_query(&request)?;
    // The header wins over `?after=`: it is what the client last received.
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|position| *position >= 0)
                .ok_or_else(|| {
                    ApiError::field(
                        "Last-Event-ID",
                        "Last-Event-ID must be a log position (an integer of 0 or more)",
                    )
                })?,
        ),
    };
    let after = match last_event_id.or(query.after) {
        Some(after) => after,
        None => state
            .events
            .watermark()
            .await
            .map_err(application::ApplicationError::from)?,
    };
    let reader = StreamReader {
        state,
        query,
        after,
        buffer: VecDeque::new(),
    };
    let events = stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        let sse = Event::default()
            .event(event.event_type.as_str())
            .id(event.position.to_string())
            .data(&event.payload);
        Some((Ok(sse), reader))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One SSE client's cursor over the settled log.
struct StreamReader {
    state: AppState,
    query: EventQuery,
    /// The last position sent (or the starting point).
    after: i64,
    buffer: VecDeque<StoredEvent>,
}

impl StreamReader {
    /// The next event; `None` at shutdown.
    async fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.after = event.position;
                return Some(event);
            }
            // Marked seen before reading, so a move during the read wakes the next wait.
            self.state.settled.borrow_and_update();
            match self
                .state
                .events
                .settled_events(self.after, STREAM_PAGE, &self.query.filter)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    self.buffer.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "event stream: reading the log failed; retrying");
                }
            }
            let settled = &mut self.state.settled;
            let shutdown = &mut self.state.shutdown;
            let relay_gone = tokio::select! {
                changed = settled.changed() => changed.is_err(),
                () = tokio::time::sleep(STREAM_POLL) => false,
                stop = shutdown.wait_for(|stop| *stop) => {
                    drop(stop);
                    return None;
                }
            };
            if relay_gone {
                // No relay in this process any more: poll.
                tokio::time::sleep(STREAM_POLL).await;
            }
        }
    }
}
