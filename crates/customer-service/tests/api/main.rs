//! Black-box tests: each spawns the real application (router, store, migrations) on a random
//! port against a fresh database — a new SQLite file, PostgreSQL or MariaDB database — and
//! talks to it over HTTP. The PostgreSQL, MariaDB and Redis servers are those of the
//! `TEST_*_URL` variables, or throwaway ones this binary starts (the `test-servers` crate).

mod test_app;

mod api_docs;
mod auth;
mod catalog;
mod cli;
mod concurrency;
mod connections;
mod create_customer;
mod dashboard;
mod database_outage;
mod delete_customer;
mod directory_example;
mod emails;
mod erasure;
mod event_delivery;
mod event_log;
mod hardening;
mod history;
mod http_basics;
mod idempotency;
mod import;
mod nats;
mod openapi_conformance;
mod operations;
mod own_server;
mod paging_and_search;
mod process_faults;
mod read_customers;
mod read_models;
mod redis_cluster;
mod redis_outage;
mod replica;
mod robustness;
mod sagas;
mod tls;
mod trace_export;
mod update_customer;
mod workers;
