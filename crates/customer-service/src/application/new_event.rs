//! Wrapping the domain's events in their envelopes: ids, time, sequence, correlation id.

use customer_events::{new_event_id, CustomerEvent, Envelope};

use crate::domain::{CustomerId, Timestamp};

use super::ports::NewEvent;

/// What every write needs besides its input: when it happens and which request caused it.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub now: Timestamp,
    /// The request's `X-Correlation-ID`, copied into every event's metadata.
    pub correlation_id: String,
    /// Who is writing (an authenticated subject), where known.
    pub actor: Option<String>,
}

/// An `If-Match` precondition on the customer's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: *`: the customer must exist.
    Exists,
    /// `If-Match: "<version>"`.
    Version(i64),
    /// An `If-Match` that can never match (weak or malformed tags).
    Never,
}

impl Precondition {
    pub(crate) fn holds_for(self, version: i64) -> bool {
        match self {
            Precondition::Exists => true,
            Precondition::Version(expected) => expected == version,
            Precondition::Never => false,
        }
    }
}

impl WriteContext {
    /// Envelopes for `events` of customer `id`, numbered from `first_sequence`.
    pub(crate) fn seal(
        &self,
        id: CustomerId,
        first_sequence: i64,
        events: &[CustomerEvent],
    ) -> Vec<NewEvent> {
        let occurred_on = self.now.to_iso();
        events
            .iter()
            .zip(first_sequence..)
            .map(|(event, sequence)| {
                let event_type = event.event_type();
                let event_id = new_event_id(event_type, self.now.millis());
                let payload = Envelope::new(
                    event.clone(),
                    event_id.clone(),
                    occurred_on.clone(),
                    id.get(),
                    sequence,
                    self.correlation_id.clone(),
                )
                .with_actor(self.actor.clone())
                .to_json();
                NewEvent {
                    event_id,
                    event_type,
                    customer_id: id,
                    sequence,
                    occurred_at: self.now,
                    payload,
                }
            })
            .collect()
    }
}
