//! The in-process live stream: every published event, to every current SSE subscriber.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::application::StoredEvent;

use super::{EventSink, SinkError};

/// How many events a slow subscriber may fall behind before it misses some (it is told).
const LIVE_BUFFER_EVENTS: usize = 4096;

/// One event as live subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    /// Log position: the SSE `id`.
    pub position: i64,
    /// The SSE `event` name.
    pub event_type: String,
    /// The envelope JSON.
    pub payload: String,
}

/// Broadcasts published events in-process. Cloning shares the channel.
#[derive(Debug, Clone)]
pub struct BroadcastSink {
    sender: broadcast::Sender<Arc<LiveEvent>>,
}

impl Default for BroadcastSink {
    fn default() -> Self {
        BroadcastSink {
            sender: broadcast::channel(LIVE_BUFFER_EVENTS).0,
        }
    }
}

impl BroadcastSink {
    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.sender.subscribe()
    }
}

#[async_trait]
impl EventSink for BroadcastSink {
    fn name(&self) -> &'static str {
        "broadcast"
    }

    async fn publish(&self, batch: &[StoredEvent]) -> Result<(), SinkError> {
        for event in batch {
            // No subscriber is not an error: live delivery is best-effort by design.
            let _ = self.sender.send(Arc::new(LiveEvent {
                position: event.position,
                event_type: event.event_type.clone(),
                payload: event.payload.clone(),
            }));
        }
        Ok(())
    }
}
