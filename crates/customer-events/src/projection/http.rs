//! [`HttpSource`] (feature `projection-http`): the service's event log over its HTTP API, as
//! a consumer team reads it.
//!
//! Catch-up pages through `GET /api/v1/events?after=&limit=`; once a page comes back empty
//! the source follows `GET /api/v1/events/stream?after=` (Server-Sent Events, `id:` the log
//! position). Both carry log positions, so the runner's checkpoint is a position whichever
//! way an event arrived, and a rebuild can always start from 0. When the runner asks for
//! events after a position other than where the stream is (a restart, a batch another runner
//! applied first), the source drops the stream and catches up by pages again.
//!
//! The client is reqwest without TLS of its own: for `https://` enable one of reqwest's TLS
//! features in your application (Cargo unifies them), e.g.
//! `reqwest = { version = "0.12", features = ["rustls-tls"] }`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use super::{EventSource, ProjectionError, RawEvent};

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// The service's log over HTTP. See the module docs.
pub struct HttpSource {
    api: Api,
    live: Option<Live>,
}

/// Where and how to ask.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// An open event stream: what it has delivered and what it holds.
struct Live {
    /// The position the buffered events follow.
    after: i64,
    buffer: VecDeque<RawEvent>,
    stream: ByteStream,
    /// Bytes of an event not yet complete.
    partial: String,
}

#[derive(Deserialize)]
struct Page {
    data: PageData,
}

#[derive(Deserialize)]
struct PageData {
    events: Vec<PageEvent>,
}

#[derive(Deserialize)]
struct PageEvent {
    position: i64,
    event: Box<serde_json::value::RawValue>,
}

/// Events per catch-up page (the API's maximum).
const PAGE: usize = 1000;

impl HttpSource {
    /// Reads the log of the service at `base` (e.g. `http://localhost:3004`), sending
    /// `token` as a bearer token when given (the service's `AUTH_PROTECT_READS`).
    pub fn new(base: impl Into<String>, token: Option<String>) -> HttpSource {
        HttpSource {
            api: Api {
                client: reqwest::Client::new(),
                base: base.into().trim_end_matches('/').to_owned(),
                token,
            },
            live: None,
        }
    }
}

impl Api {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn page(&self, after: i64, limit: usize) -> Result<Vec<RawEvent>, ProjectionError> {
        let limit = limit.clamp(1, PAGE);
        let response = self
            .get(&format!("/api/v1/events?after={after}&limit={limit}"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(source_error)?;
        let page: Page = response.json().await.map_err(source_error)?;
        Ok(page
            .data
            .events
            .into_iter()
            .map(|e| RawEvent {
                position: e.position,
                payload: e.event.get().to_owned(),
            })
            .collect())
    }

    async fn open(&self, after: i64) -> Result<Live, ProjectionError> {
        let response = self
            .get(&format!("/api/v1/events/stream?after={after}"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(source_error)?;
        Ok(Live {
            after,
            buffer: VecDeque::new(),
            stream: Box::pin(response.bytes_stream()),
            partial: String::new(),
        })
    }
}

fn source_error(error: reqwest::Error) -> ProjectionError {
    ProjectionError::Source(error.without_url().to_string())
}

impl Live {
    /// Moves every complete event of `partial` into the buffer.
    fn parse(&mut self) -> Result<(), ProjectionError> {
        while let Some(end) = self.partial.find("\n\n") {
            let block: String = self.partial.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = value.trim().parse::<i64>().ok();
                } else if let Some(value) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            // Comments (keep-alives) and events without a position carry nothing to apply.
            let Some(position) = id else { continue };
            if data.is_empty() {
                continue;
            }
            let last = self.buffer.back().map_or(self.after, |e| e.position);
            if position > last {
                self.buffer.push_back(RawEvent {
                    position,
                    payload: data,
                });
            }
        }
        Ok(())
    }

    /// Reads the stream until it holds an event or `wait` has passed.
    async fn fill(&mut self, wait: Duration) -> Result<(), ProjectionError> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.buffer.is_empty() {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                // Waited as long as asked: nothing new.
                Err(_) => return Ok(()),
                Ok(Some(Ok(bytes))) => {
                    self.partial.push_str(&String::from_utf8_lossy(&bytes));
                    self.parse()?;
                }
                Ok(Some(Err(error))) => return Err(source_error(error)),
                Ok(None) => {
                    return Err(ProjectionError::Source(
                        "the service closed the event stream".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Up to `limit` buffered events; the stream continues after the last of them.
    fn take(&mut self, limit: usize) -> Vec<RawEvent> {
        let n = limit.min(self.buffer.len());
        let events: Vec<RawEvent> = self.buffer.drain(..n).collect();
        if let Some(last) = events.last() {
            self.after = last.position;
        }
        events
    }
}

#[async_trait]
impl EventSource for HttpSource {
    async fn read(
        &mut self,
        after: i64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<RawEvent>, ProjectionError> {
        if self.live.as_ref().is_some_and(|live| live.after != after) {
            self.live = None;
        }
        if self.live.is_none() {
            let events = self.api.page(after, limit).await?;
            if !events.is_empty() {
                return Ok(events);
            }
            self.live = Some(self.api.open(after).await?);
        }
        let Some(live) = self.live.as_mut() else {
            return Ok(Vec::new());
        };
        if let Err(error) = live.fill(wait).await {
            self.live = None;
            return Err(error);
        }
        Ok(live.take(limit))
    }

    /// The service's watermark: `upTo` of `GET /api/v1/events/rates`.
    async fn head(&mut self) -> Result<Option<i64>, ProjectionError> {
        #[derive(Deserialize)]
        struct Rates {
            data: RatesData,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct RatesData {
            up_to: i64,
        }
        let response = self
            .api
            .get("/api/v1/events/rates?seconds=1")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(source_error)?;
        let rates: Rates = response.json().await.map_err(source_error)?;
        Ok(Some(rates.data.up_to))
    }

    fn fork(&self) -> Self {
        HttpSource {
            api: self.api.clone(),
            live: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_become_events_in_order_without_repeats() {
        let mut live = Live {
            after: 4,
            buffer: VecDeque::new(),
            stream: Box::pin(futures_util::stream::empty()),
            partial: String::new(),
        };
        live.partial
            .push_str(": keep-alive\n\nevent: CustomerCreated\nid: 4\ndata: {\"old\":1}\n\n");
        live.partial.push_str("event: CustomerCreated\nid: 5\ndata: {\"a\":1}\n\nevent: CustomerUpdated\nid: 6\ndata: {\"b\"");
        live.parse().unwrap();
        assert_eq!(
            live.buffer.len(),
            1,
            "position 4 is not after 4; 6 is not complete"
        );
        live.partial.push_str(":2}\n\n");
        live.parse().unwrap();
        let events = live.take(10);
        let got: Vec<(i64, &str)> = events
            .iter()
            .map(|e| (e.position, e.payload.as_str()))
            .collect();
        assert_eq!(got, [(5, "{\"a\":1}"), (6, "{\"b\":2}")]);
        assert_eq!(live.after, 6);
    }
}
