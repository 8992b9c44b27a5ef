//! Use cases, one file each, and the ports (traits) they need from the outside world.
//!
//! A use case loads what it needs through [`CustomerStore`], lets the domain decide, and
//! commits the new state together with its events in one store call. Nothing here knows
//! HTTP or SQL.

mod create_customer;
mod delete_customer;
mod error;
mod history;
mod import_customers;
mod new_event;
mod ports;
mod query_customers;
mod read_events;
mod read_models;
pub mod read_scope;
mod sagas;
mod update_customer;
mod verify_log;

pub use create_customer::create_customers_in_bulk;
pub use create_customer::{create_customer, create_customer_idempotently, IdempotencyKey};
pub use delete_customer::{delete_customer, erase_customer};
pub use error::ApplicationError;
pub use history::{customer_as_of, customer_history, parse_as_of, read_envelope};
pub use import_customers::{
    verify_import, Checked, Difference, Import, ImportTally, Rejected, RowCheck, SourceCustomer,
};
pub use new_event::{Precondition, WriteContext};
pub use ports::Aggregate;
pub use ports::{
    ActiveQuery, Clock, Complete, CompleteBulk, Created, CustomerStore, CustomerStream,
    EventFilter, EventLog, IdempotencyClaim, IdempotencyRecord, ListPosition, ListQuery, NewEvent,
    OutboxStatus, PoolUsage, ProjectionState, ReadModels, RelayLease, ReplicaStatus, Responder,
    Rewrite, SagaStart, SagaStore, SagaSummary, SearchQueries, StatsRows, StoreError, StoredEvent,
    StoredResponse, SystemClock,
};
pub use query_customers::{
    count_customers, find_customer_by_email, get_customer, list_active_customers, list_customers,
    ActiveRequest, CustomerPage, PageRequest,
};
pub use read_events::{
    event_rates, parse_event_query, parse_rate_window, read_events, EventPage, EventPageRequest,
    EventQuery, EventRates, MAX_EVENT_PAGE,
};
pub use read_models::{
    customer_stats, projection_lag, projection_states, CustomerStats, ProjectionLag, SIGNUP_DAYS,
};
pub use read_scope::{reading, ReadScope};
pub use sagas::{
    advance_due_sagas, cancel_saga, erasure_of, handle_reply, list_sagas, new_token, retry_saga,
    saga_summary, seal_saga_events, ErasureSaga, Reply, SagaActionError, SagaDefinition, SagaPage,
    Sagas, ERASURE,
};
pub use update_customer::update_customer;
pub use verify_log::{verify_log, Mismatch, Verification};
