//! The servers the workspace's tests run against, so that `cargo test` runs every test on a
//! machine that merely has the PostgreSQL, MariaDB and Redis packages installed.
//!
//! - [`Server::url`]: the server of a `TEST_*` variable when it is set; otherwise one this
//!   test binary starts on first use (a throwaway PostgreSQL cluster, MariaDB data directory
//!   or `redis-server` in a temp dir, on a free port) and shares among its tests.
//! - [`OwnPostgres`], [`OwnMariaDb`], [`OwnRedis`], [`OwnNats`]: a server of one test's own, which it may
//!   stop and start (the fault tests).
//! - Nothing is left behind: each server has a watchdog (a shell in its own process group)
//!   that stops it and removes its directory as soon as the test binary has exited — also
//!   when it was killed. [`OwnPostgres`], [`OwnMariaDb`] and [`OwnRedis`] clean up on drop as
//!   well.
//! - Where a server's programs are not installed, the tests that need it are skipped with
//!   [`skip`], and the binary's last line on exit says how many and why.
//!
//! One module per server (`postgres.rs`, `mariadb.rs`, `redis.rs`, `redis_cluster.rs`,
//! `nats.rs`), the watchdog (`watchdog.rs`), and running their programs (`process.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A kind of server the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MariaDb,
    Redis,
    /// `nats-server` with JetStream.
    Nats,
}

impl Server {
    /// The variable naming a running server to use instead of a throwaway one.
    pub fn env_var(self) -> &'static str {
        match self {
            Server::Postgres => "TEST_DATABASE_URL",
            Server::MariaDb => "TEST_MYSQL_URL",
            Server::Redis => "TEST_REDIS_URL",
            Server::Nats => "TEST_NATS_URL",
        }
    }

    /// The URL of this kind of server for the tests: the `TEST_*` variable's when set,
    /// otherwise that of a throwaway server of this test binary, started on first use.
    /// `Err` says why there is none (the server's programs are not installed); a server
    /// that is installed but fails to start panics.
    pub fn url(self) -> Result<String, String> {
        if let Some(url) = std::env::var(self.env_var()).ok().filter(|u| !u.is_empty()) {
            return Ok(url);
        }
        static POSTGRES: OnceLock<Result<OwnPostgres, String>> = OnceLock::new();
        static MARIADB: OnceLock<Result<OwnMariaDb, String>> = OnceLock::new();
        static REDIS: OnceLock<Result<OwnRedis, String>> = OnceLock::new();
        static NATS: OnceLock<Result<OwnNats, String>> = OnceLock::new();
        match self {
            Server::Postgres => POSTGRES
                .get_or_init(OwnPostgres::start)
                .as_ref()
                .map(OwnPostgres::url),
            Server::MariaDb => MARIADB
                .get_or_init(OwnMariaDb::start)
                .as_ref()
                .map(OwnMariaDb::url),
            Server::Redis => REDIS
                .get_or_init(OwnRedis::start)
                .as_ref()
                .map(OwnRedis::url),
            Server::Nats => NATS.get_or_init(OwnNats::start).as_ref().map(OwnNats::url),
        }
        .map_err(Clone::clone)
    }

    /// [`Server::url`], or `None` after recording the calling test as skipped.
    pub fn url_or_skip(self) -> Option<String> {
        self.url().or_skip()
    }
}

/// `Ok` as `Some`; `Err(reason)` recorded with [`skip`] as `None`.
pub trait OrSkip<T> {
    fn or_skip(self) -> Option<T>;
}

impl<T> OrSkip<T> for Result<T, String> {
    fn or_skip(self) -> Option<T> {
        self.map_err(|reason| skip(&reason)).ok()
    }
}

/// Records that the calling test did not run, and why. When the test binary exits it prints
/// one line per reason with the number of tests it skipped.
pub fn skip(reason: &str) {
    static REPORT_AT_EXIT: Once = Once::new();
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("skipped: {reason}");
    skipped()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(reason.to_owned())
        .or_default()
        .push(test);
    REPORT_AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C"` function that takes no arguments; it only
        // reads a static and writes to stderr.
        unsafe {
            libc::atexit(report_skipped);
        }
    });
}

fn skipped() -> &'static Mutex<BTreeMap<String, Vec<String>>> {
    static SKIPPED: OnceLock<Mutex<BTreeMap<String, Vec<String>>>> = OnceLock::new();
    SKIPPED.get_or_init(Default::default)
}

extern "C" fn report_skipped() {
    let skipped = skipped()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (reason, tests) in skipped.iter() {
        let n = tests.len();
        eprintln!(
            "\n{n} {} NOT RUN: {reason}",
            if n == 1 { "test was" } else { "tests were" }
        );
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding a free port on 127.0.0.1")
}

mod mariadb;
mod nats;
mod postgres;
mod process;
mod redis;
mod redis_cluster;
mod watchdog;

pub use mariadb::OwnMariaDb;
pub use nats::OwnNats;
pub use postgres::OwnPostgres;
pub use redis::OwnRedis;
pub use redis_cluster::{ClusterSecurity, ClusterTls, OwnRedisCluster};

use process::*;
use watchdog::*;
