//! customer-service: owns customer records and records every change to them as an event,
//! committed in the same database transaction as the change.
//!
//! # Layout
//! - [`domain`]: the customer, its validation rules and the events each change emits (pure).
//! - [`application`]: one use case per file, and the ports they need ([`application::CustomerStore`]).
//! - [`store`]: the store on PostgreSQL, SQLite and MySQL / MariaDB, with migrations per
//!   backend.
//! - [`outbox`]: the relay that publishes the event log; [`sinks`]: Redis (single server or
//!   cluster) and NATS JetStream.
//! - [`orchestrator`]: runs the sagas (GDPR erasure across services) on the relay's leader.
//! - [`http`]: the axum router, envelopes, errors, OpenAPI.
//! - [`config`], [`telemetry`], [`startup`]: reading settings, logging, wiring it together;
//!   [`workers`]: the background workers under one supervisor.
//! - [`cli`]: the subcommands of the `customer-service` binary.

pub mod application;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod orchestrator;
pub mod outbox;
pub mod sinks;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod workers;

pub use startup::App;
