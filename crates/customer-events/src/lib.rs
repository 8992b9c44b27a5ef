//! The public event contract of `customer-service`: the customer event types, their
//! `data` payloads and the wire envelope every sink carries byte for byte.
//!
//! Its core (the modules without a feature) knows nothing of HTTP, SQL, Redis or NATS, so any
//! Rust consumer can depend on it; the consumers of Redis and NATS and the read models'
//! runner are behind features. Timestamps are carried as the contract's strings (`2026-01-01T10:00:00.000Z`)
//! rather than a date type, which keeps the crate free of a date-time dependency and makes
//! what is deserialized exactly what was published.
//!
//! # Layout
//! - [`event`]: [`CustomerEvent`] and the `data` structs, one per event type.
//! - [`snapshot`]: [`CustomerSnapshot`], the customer as the HTTP API represents it.
//! - [`envelope`]: [`Envelope`], [`Metadata`] and event id generation.
//! - [`fold`]: rebuilding a customer from its events.
//! - [`versions`]: every schema version ever published, upcasting old ones, and reading an
//!   envelope of any version ([`Envelope::from_json`], [`ReadError`]).
//! - [`json`]: reading stored envelopes of any depth; a key-order-keeping JSON tree.
//! - [`erasure`]: personal data erased from a stored envelope, its shape kept.
//! - `catalog` (feature `schema`): JSON Schema and an example of every type and version.
//! - `consumer` (feature `consumer`): a Redis Streams consumer with retries, a dead-letter
//!   stream, reclaiming and de-duplication; `redis_target`: one Redis server or a cluster,
//!   and the connection to either (also the service's sink's).
//! - `participant` (feature `consumer`): the participant side of the erasure saga: one
//!   `erase(customer_id)` function, and requests, de-duplication, retries and replies handled.
//! - `jetstream` (feature `jetstream`): the same consumer on a NATS JetStream stream.
//! - `projection` (feature `projection`): read models fed from the event log, checkpointed
//!   in the model's own transaction, rebuilt blue/green.

#[cfg(feature = "schema")]
pub mod catalog;
#[cfg(feature = "consumer")]
pub mod consumer;
pub mod envelope;
pub mod erasure;
pub mod event;
pub mod fold;
#[cfg(feature = "jetstream")]
pub mod jetstream;
pub mod json;
#[cfg(any(feature = "consumer", feature = "jetstream"))]
pub mod outcome;
#[cfg(any(feature = "consumer", feature = "jetstream"))]
pub mod participant;
#[cfg(feature = "projection")]
pub mod projection;
#[cfg(feature = "consumer")]
pub mod redis_target;
pub mod snapshot;
pub mod versions;

pub use envelope::{new_event_id, Envelope, Metadata, SOURCE};
pub use event::{
    Changes, CustomerActivated, CustomerCreated, CustomerDeactivated, CustomerDeleted,
    CustomerErased, CustomerErasureCompleted, CustomerErasureRequested, CustomerEvent,
    CustomerImported, CustomerUpdated, ErasureConfirmation, EventType, FieldChange, ERASURE_SAGA,
};
pub use fold::{apply, fold};
pub use snapshot::{Address, CustomerSnapshot};
pub use versions::ReadError;
