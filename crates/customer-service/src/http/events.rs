//! The event log over HTTP, as cursor readers see it: every event up to the watermark (see
//! `outbox/watermark.rs`), in position order.
//!
//! - `GET /api/v1/events?after=&limit=&type=&customerId=`: pages.
//! - `GET /api/v1/events/stream`: Server-Sent Events (`event:` the type, `id:` the position,
//!   `data:` the envelope). With `Last-Event-ID` (or `?after=`) it first replays what the
//!   client missed from the log, page by page, then goes on live from the instance's one
//!   reader of the log (`live.rs`), which fans events out in memory; the hand-over reads the
//!   log past the reader's tip, so no event is lost at the seam, and skips what it already
//!   sent, so none repeats. Without either it starts at the watermark: new events only.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
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

use tokio::sync::broadcast;

use crate::application::{self, EventFilter, EventPageRequest, StoredEvent};

use super::customers::LoggedEvent;
use super::envelope::{self, Envelope};
use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::live::{self, LiveLog};
use super::AppState;

/// Comment lines at this interval keep proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
        live: state.live.clone(),
        shutdown: state.shutdown.clone(),
        filter: query.filter,
        read_to: after,
        buffer: VecDeque::new(),
        phase: Phase::CatchUp,
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
    live: Arc<LiveLog>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    filter: EventFilter,
    /// The last position read from the log (or the starting point): what comes from the
    /// live reader up to here was sent already.
    read_to: i64,
    buffer: VecDeque<StoredEvent>,
    phase: Phase,
}

enum Phase {
    /// Reading the log page by page.
    CatchUp,
    /// Subscribed to the live reader: reading the log past its tip before switching.
    HandOver(broadcast::Receiver<Arc<StoredEvent>>),
    /// Live: events come from the instance's one reader.
    Live(broadcast::Receiver<Arc<StoredEvent>>),
}

impl StreamReader {
    /// The next event; `None` at shutdown, or when this client fell too far behind the live
    /// reader (it reconnects with `Last-Event-ID` and catches up from the log).
    async fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(event);
            }
            if let Phase::Live(receiver) = &mut self.phase {
                let received = tokio::select! {
                    received = receiver.recv() => received,
                    () = live::stopped(&mut self.shutdown) => return None,
                };
                match received {
                    Ok(event) => {
                        if event.position > self.read_to && live::matches(&self.filter, &event) {
                            self.read_to = event.position;
                            return Some(StoredEvent::clone(&event));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(
                            missed,
                            "event stream: a client fell behind; dropped to resume"
                        );
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
                continue;
            }
            let page = tokio::select! {
                page = self.live.read(self.read_to, &self.filter) => page,
                () = live::stopped(&mut self.shutdown) => return None,
            };
            let events = match page {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(error = %error, "event stream: reading the log failed; retrying");
                    tokio::time::sleep(live::POLL).await;
                    continue;
                }
            };
            let full = events.len() as i64 >= live::PAGE;
            if let Some(last) = events.last() {
                self.read_to = last.position;
            }
            self.buffer.extend(events);
            if full {
                continue;
            }
            self.phase = match std::mem::replace(&mut self.phase, Phase::CatchUp) {
                // Near the end of the log: subscribe; the next read goes past the tip.
                Phase::CatchUp => {
                    let subscribed = tokio::select! {
                        subscribed = self.live.subscribe() => subscribed,
                        () = live::stopped(&mut self.shutdown) => return None,
                    };
                    Phase::HandOver(subscribed?.0)
                }
                Phase::HandOver(receiver) | Phase::Live(receiver) => Phase::Live(receiver),
            };
        }
    }
}
