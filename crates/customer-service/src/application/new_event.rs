//! What every write shares: its context, wrapping the domain's events in their envelopes
//! (ids, time, sequence, correlation id, actor), and re-deciding after a lost race.

use customer_events::{new_event_id, CustomerEvent, Envelope};

use crate::domain::{CustomerId, Timestamp};

use super::error::ApplicationError;
use super::ports::{Aggregate, NewEvent, StoreError};

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
                    aggregate: Aggregate::Customer(id),
                    sequence,
                    occurred_at: self.now,
                    payload,
                }
            })
            .collect()
    }
}

/// How often a write decided on a version that a concurrent write then replaced is
/// re-decided on the fresh state. Each round commits at least one competing writer, so this
/// bounds the wait of a request that keeps losing to others on one hot customer.
pub(crate) const MAX_WRITE_ATTEMPTS: usize = 64;

/// Runs `attempt` (read the customer, decide, write with compare-and-set) again while it
/// loses a race to a concurrent writer (a version conflict), at most
/// [`MAX_WRITE_ATTEMPTS`] times; then the conflict is the answer (503: retry later).
pub(crate) async fn retry_on_conflict<T, F, Fut>(mut attempt: F) -> Result<T, ApplicationError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApplicationError>>,
{
    for _ in 0..MAX_WRITE_ATTEMPTS {
        match attempt().await {
            // Lost a race: decide again on the state that won (or report the mismatch).
            Err(ApplicationError::Unavailable(StoreError::VersionConflict)) => continue,
            other => return other,
        }
    }
    Err(StoreError::VersionConflict.into())
}
