//! The live tail of the settled log, read once per instance and fanned out in memory to every
//! SSE client of the instance, so the database's load does not depend on how many clients
//! are connected.
//!
//! One task (the hub) reads the settled log while anyone listens: after each move of this
//! instance's relay, else every [`POLL`]. It sends each event into a broadcast channel and
//! then moves its `tip`: every settled event after the tip will still be sent. A client
//! subscribes, reads the tip, and reads the log itself only up to that tip (its catch-up);
//! from there on the channel has everything. A client whose buffer overflows (it reads
//! slower than events come) is dropped; it reconnects with `Last-Event-ID` and catches up
//! from the log, never holding back the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};

use crate::application::{EventFilter, EventLog, StoredEvent};
use crate::workers::stopped;

/// Events read per query, by the hub and by a client catching up.
pub(crate) const PAGE: i64 = 500;
/// How often the hub looks for new events when no local relay move wakes it (an instance
/// that does not lead), and how long it waits after a database error.
pub(crate) const POLL: Duration = Duration::from_millis(500);
/// Events a client may be behind the hub before it is dropped.
const CLIENT_BUFFER: usize = 4096;

/// The hub's handle: what the SSE handlers subscribe to.
pub struct LiveLog {
    events: Arc<dyn EventLog>,
    sender: broadcast::Sender<Arc<StoredEvent>>,
    /// Every settled event after this position will be sent; `None` while the hub rests.
    tip: watch::Sender<Option<i64>>,
    /// Wakes a resting hub when a client subscribes.
    subscribed: Notify,
    /// Queries of the log for live readers (the hub's and the clients' catch-ups).
    reads: AtomicU64,
}

impl LiveLog {
    /// The hub of this instance; [`LiveLog::run`] is its worker (the app's supervisor runs
    /// it, `startup.rs`).
    pub fn new(events: Arc<dyn EventLog>) -> Arc<LiveLog> {
        Arc::new(LiveLog {
            events,
            sender: broadcast::Sender::new(CLIENT_BUFFER),
            tip: watch::Sender::new(None),
            subscribed: Notify::new(),
            reads: AtomicU64::new(0),
        })
    }

    /// Log queries made for live readers so far (for `/metrics` and the tests).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Settled events after `after` matching `filter`, a page at most, from the log.
    pub(crate) async fn read(
        &self,
        after: i64,
        filter: &EventFilter,
    ) -> Result<Vec<StoredEvent>, crate::application::StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.events.settled_events(after, PAGE, filter).await
    }

    /// A receiver of every event the hub sends from now on, and a tip published after it
    /// subscribed: every settled event after the tip reaches the receiver, so a client that
    /// reads the log past the tip (after this returns) misses nothing. `None` at shutdown.
    pub(crate) async fn subscribe(&self) -> Option<(broadcast::Receiver<Arc<StoredEvent>>, i64)> {
        let receiver = self.sender.subscribe();
        let mut tip = self.tip.subscribe();
        // A tip set before this subscription may come from a hub that rested since (and
        // then restarts at the watermark): only a newer one counts. The hub publishes one
        // on every round, and this wakes it for one.
        tip.borrow_and_update();
        self.subscribed.notify_one();
        loop {
            tip.changed().await.ok()?;
            if let Some(tip) = *tip.borrow_and_update() {
                return Some((receiver, tip));
            }
        }
    }

    /// Reads the settled log for the live readers while there are any; ends at shutdown.
    pub async fn run(
        self: Arc<Self>,
        mut settled: watch::Receiver<i64>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let all = EventFilter::default();
        // Where the hub has read to; `None` while it rests.
        let mut cursor: Option<i64> = None;
        loop {
            if self.sender.receiver_count() == 0 {
                // Nobody listens: no reads. A new client wakes the hub, which then starts
                // from the watermark (the client catches up to it from the log itself).
                cursor = None;
                self.tip.send_replace(None);
                tokio::select! {
                    () = self.subscribed.notified() => continue,
                    () = stopped(&mut shutdown) => return,
                }
            }
            // Marked seen before reading, so a move during the read wakes the next wait.
            settled.borrow_and_update();
            self.reads.fetch_add(1, Ordering::Relaxed);
            let read = match cursor {
                None => self.events.watermark().await.map(|w| (w, Vec::new())),
                Some(after) => self
                    .events
                    .settled_events(after, PAGE, &all)
                    .await
                    .map(|events| (after, events)),
            };
            let full_page = match read {
                Ok((after, events)) => {
                    let full = events.len() as i64 >= PAGE;
                    let last = events.last().map_or(after, |event| event.position);
                    for event in events {
                        // No receivers left is not an error: the next round rests.
                        let _ = self.sender.send(Arc::new(event));
                    }
                    cursor = Some(last);
                    self.tip.send_replace(Some(last));
                    full
                }
                Err(error) => {
                    tracing::warn!(%error, "live event log: reading failed; retrying");
                    false
                }
            };
            if full_page {
                continue;
            }
            tokio::select! {
                changed = settled.changed() => {
                    if changed.is_err() {
                        // No relay in this process any more: poll.
                        tokio::time::sleep(POLL).await;
                    }
                }
                () = tokio::time::sleep(POLL) => {}
                // A new client waits for a fresh tip.
                () = self.subscribed.notified() => {}
                () = stopped(&mut shutdown) => return,
            }
        }
    }
}

/// Whether `event` passes `filter` (as the log's query would filter it).
pub(crate) fn matches(filter: &EventFilter, event: &StoredEvent) -> bool {
    filter.event_type.is_none_or(|t| t == event.event_type)
        && filter
            .customer_id
            .is_none_or(|c| event.aggregate.customer() == Some(c))
}
