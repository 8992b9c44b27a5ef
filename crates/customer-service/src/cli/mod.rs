//! The binary's subcommands, one file each with one `run` function.

pub mod dlq;
pub mod events;
pub mod healthcheck;
pub mod import;
pub mod migrate;
pub mod seed;
pub mod serve;
