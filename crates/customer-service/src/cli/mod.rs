//! The binary's subcommands, one file each with one `run` function.

pub mod migrate;
pub mod seed;
pub mod serve;
