//! The event log over HTTP, as cursor readers see it: every event up to the watermark (see
//! `outbox/watermark.rs`), in position order.
//!
//! - `GET /api/v1/events?after=&limit=&type=&customerId=`: pages.
//! - `GET /api/v1/events/rates?seconds=`: events per second by type over a recent window
//!   (the dashboard's chart, the same on every instance).
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
use crate::workers::stopped;

use super::customers::LoggedEvent;
use super::envelope::{self, Envelope};
use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::live::{self, LiveLog};
use super::sse_clients::SseSlot;
use super::AppState;

/// Comment lines at this interval keep proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(list_events))
        .route("/events/stream", get(stream_events))
        .route("/events/rates", get(event_rates))
}

/// `data` of the events route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventList {
    events: Vec<LoggedEvent>,
    /// Pass as `after` for the next page.
    next_after: i64,
}

/// `data` of the rates route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventRates {
    /// The window's start (now minus `seconds`).
    #[schema(example = "2026-11-30T09:13:27.403Z")]
    since: String,
    /// The window's end: now.
    #[schema(example = "2026-11-30T09:15:27.403Z")]
    until: String,
    /// The last log position counted; the live stream's later events add to these counts.
    #[schema(example = 1042)]
    up_to: i64,
    /// The seconds that had events, oldest first.
    per_second: Vec<SecondCount>,
}

/// The events of one second, by type.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecondCount {
    /// The second's start.
    #[schema(example = "2026-11-30T09:15:26.000Z")]
    at: String,
    #[schema(example = json!({"CustomerCreated": 12, "CustomerUpdated": 3}))]
    counts: std::collections::BTreeMap<String, i64>,
}

/// Events per second by type over the last `seconds`, from the settled log.
#[utoipa::path(get, path = "/api/v1/events/rates", tag = "events",
    summary = "Event rates",
    description = "How many events of each type occurred in each second of a recent window, counted from the event log (so every instance answers the same). The dashboard's chart starts from this and adds the live events after `upTo`.",
    params(("seconds" = Option<i64>, Query, minimum = 1, maximum = 600, description = "The window in seconds, 1–600 (default 120)", example = 120)),
    responses((status = 200, description = "The counts per second", body = Envelope<EventRates>),
              (status = 400, description = "Invalid seconds", body = ErrorBody)))]
pub(crate) async fn event_rates(
    State(state): State<AppState>,
    QueryParams(params): QueryParams,
) -> Result<impl IntoResponse, ApiError> {
    let seconds = application::parse_rate_window(params.get("seconds").map(String::as_str))?;
    let rates = application::event_rates(&*state.events, state.clock.now(), seconds).await?;
    Ok(envelope::ok(EventRates {
        since: rates.since.to_iso(),
        until: rates.until.to_iso(),
        up_to: rates.up_to,
        per_second: rates
            .per_second
            .into_iter()
            .map(|(at, counts)| SecondCount {
                at: at.to_iso(),
                counts,
            })
            .collect(),
    }))
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
    summary = "Read the event log",
    description = "Events in the order they were committed, each with its log position. Page through with `after` = the previous page's `nextAfter`.",
    params(("after" = Option<i64>, Query, minimum = 0, maximum = 9223372036854775807_i64, description = "Only events after this log position (default 0: from the start)", example = 0),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Events per page, 1–1000 (default 100)", example = 100),
           ("type" = Option<String>, Query, description = "Only events of this type", example = "CustomerCreated"),
           ("customerId" = Option<i64>, Query, minimum = 1, maximum = 9223372036854775807_i64, description = "Only this customer's events")),
    responses((status = 200, description = "One page of events", body = Envelope<EventList>),
              (status = 400, description = "Invalid parameter: `fieldErrors` says which", body = ErrorBody)))]
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
    summary = "Follow events live (Server-Sent Events)",
    description = "New events as they are published, as `text/event-stream`. With `after` (or the `Last-Event-ID` a browser sends when it reconnects) the stream first replays what followed that position, so nothing is missed.",
    params(("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0, description = "Resume after this log position (browsers send it on reconnect)"),
           ("after" = Option<i64>, Query, minimum = 0, maximum = 9223372036854775807_i64, description = "Resume after this log position; without it (or Last-Event-ID) only new events are sent"),
           ("type" = Option<String>, Query, description = "Only events of this type"),
           ("customerId" = Option<i64>, Query, minimum = 1, maximum = 9223372036854775807_i64, description = "Only this customer's events")),
    responses((status = 200, description = "text/event-stream: event = eventType, id = log position, data = envelope JSON",
               content_type = "text/event-stream"),
              (status = 400, description = "Invalid parameter", body = ErrorBody),
              (status = 503, description = "Too many event streams open on this instance (SSE_MAX_CLIENTS) or from this address (SSE_MAX_CLIENTS_PER_ADDRESS); see Retry-After", body = ErrorBody)))]
pub(crate) async fn stream_events(
    State(state): State<AppState>,
    slot: SseSlot,
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
        _slot: slot,
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
    /// Held until the stream ends: the client counts against the SSE caps till then.
    _slot: SseSlot,
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
                    () = stopped(&mut self.shutdown) => return None,
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
                () = stopped(&mut self.shutdown) => return None,
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
                        () = stopped(&mut self.shutdown) => return None,
                    };
                    Phase::HandOver(subscribed?.0)
                }
                Phase::HandOver(receiver) | Phase::Live(receiver) => Phase::Live(receiver),
            };
        }
    }
}
