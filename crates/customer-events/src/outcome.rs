//! What a consumer did with one message (the Redis and the JetStream consumer alike).

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    Handled,
    /// An event type this crate does not know (published by a newer service): acknowledged
    /// without calling the handler, and logged. Not an error: new event types are added
    /// without notice, and a consumer that does not know one has nothing to do with it.
    Skipped {
        event_type: String,
    },
    /// Its `eventId` was handled before; acknowledged without calling the handler.
    Duplicate,
    /// Moved to the dead-letter stream after this many attempts.
    DeadLettered {
        attempts: u32,
    },
}
