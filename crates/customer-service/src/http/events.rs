//! `GET /api/v1/events/stream`: Server-Sent Events of every event as it is published
//! (`event:` the type, `id:` the log position, `data:` the envelope), so anyone can watch the
//! service with `curl -N` — no Redis needed.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;

/// Comment lines at this interval keep proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/events/stream", get(stream_events))
}

/// Live events, from the moment of subscription on.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    responses((status = 200, description = "text/event-stream: event = eventType, id = log position, data = envelope JSON",
               content_type = "text/event-stream")))]
pub(crate) async fn stream_events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.live.subscribe();
    let events = stream::unfold(
        (receiver, state.shutdown),
        |(mut receiver, mut shutdown)| async move {
            let received = tokio::select! {
                received = receiver.recv() => received,
                _ = shutdown.wait_for(|stop| *stop) => return None,
            };
            let event = match received {
                Ok(live) => Event::default()
                    .event(&live.event_type)
                    .id(live.position.to_string())
                    .data(&live.payload),
                // A subscriber too slow for the buffer is told how much it missed; it can catch
                // up from the event log.
                Err(RecvError::Lagged(missed)) => {
                    Event::default().comment(format!("missed {missed} events"))
                }
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(event), (receiver, shutdown)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
