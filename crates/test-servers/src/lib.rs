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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A new, empty directory under the system's temp dir, readable by the server's user.
fn temp_dir(prefix: &str, owner: Option<&str>) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    if let (true, Some(owner)) = (is_root(), owner) {
        run_quietly(Command::new("chown").arg(owner).arg(&dir), "chown");
    }
    dir
}

/// `program`, run as `user` when we are root (PostgreSQL's tools refuse to run as root).
fn as_user(user: &str, program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command` with its output captured: shown only when it fails, as the panic message.
fn run_quietly(command: &mut Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits until something accepts connections on `port`.
fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not start within 30 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Single-quotes `text` for `sh`.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A shell in its own process group (a Ctrl-C of the test run does not reach it) that runs
/// `cleanup` once the test binary has exited, however it ended. Killed on drop.
struct Watchdog(Child);

impl Watchdog {
    fn start(cleanup: &str) -> Watchdog {
        use std::os::unix::process::CommandExt;
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; {cleanup}",
            std::process::id()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the watchdog shell");
        Watchdog(child)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `sh` commands that kill process `pid` if it still runs in `cwd` (a pid may have been
/// reused by the time a watchdog runs), then remove `dir`.
fn kill_and_remove(pid: u32, cwd: &Path, dir: &Path) -> String {
    let cwd = quoted(&cwd.display().to_string());
    let dir = quoted(&dir.display().to_string());
    format!(
        r#"[ "$(readlink /proc/{pid}/cwd)" = {cwd} ] && kill -9 {pid}; sleep 0.2; rm -rf {dir}"#
    )
}

/// The `bin` directory of the newest PostgreSQL installed (Debian's layout), or of the
/// `initdb` on the PATH.
fn postgres_bin() -> Result<PathBuf, String> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").is_file());
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
    });
    if let Some(bin) = versions.pop() {
        return Ok(bin);
    }
    find_on_path("initdb")
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .ok_or_else(|| {
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed; install them or \
             set TEST_DATABASE_URL"
                .to_owned()
        })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A throwaway PostgreSQL cluster (`initdb`, `pg_ctl`), trust auth for user `postgres`.
pub struct OwnPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    _watchdog: Watchdog,
}

impl OwnPostgres {
    /// A new cluster, started. `Err` when PostgreSQL is not installed.
    pub fn start() -> Result<OwnPostgres, String> {
        let bin = postgres_bin()?;
        let dir = temp_dir("cs_pg", Some("postgres:postgres"));
        let data = dir.join("data");
        let pg_ctl = bin.join("pg_ctl");
        let watchdog = Watchdog::start(&format!(
            "{} -D {} -m immediate stop; rm -rf {}",
            postgres_command(&pg_ctl),
            quoted(&data.display().to_string()),
            quoted(&dir.display().to_string())
        ));
        run_quietly(
            as_user("postgres", &bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]),
            "initdb",
        );
        let cluster = OwnPostgres {
            bin,
            dir,
            port: free_port(),
            _watchdog: watchdog,
        };
        cluster.restart();
        Ok(cluster)
    }

    /// A streaming replica of this cluster (`pg_basebackup -R`: a standby that follows it),
    /// started on a port of its own; it applies each commit `apply_delay` late (a lagging
    /// replica, `recovery_min_apply_delay`).
    pub fn start_replica(&self, apply_delay: Duration) -> OwnPostgres {
        let dir = temp_dir("cs_pg", Some("postgres:postgres"));
        let data = dir.join("data");
        let watchdog = Watchdog::start(&format!(
            "{} -D {} -m immediate stop; rm -rf {}",
            postgres_command(&self.bin.join("pg_ctl")),
            quoted(&data.display().to_string()),
            quoted(&dir.display().to_string())
        ));
        run_quietly(
            as_user("postgres", &self.bin.join("pg_basebackup"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-R", "-X", "stream", "--no-sync"]),
            "pg_basebackup",
        );
        {
            use std::io::Write;
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.auto.conf"))
                .expect("pg_basebackup -R wrote postgresql.auto.conf");
            writeln!(
                conf,
                "recovery_min_apply_delay = '{}ms'",
                apply_delay.as_millis()
            )
            .expect("writing postgresql.auto.conf");
        }
        let replica = OwnPostgres {
            bin: self.bin.clone(),
            dir,
            port: free_port(),
            _watchdog: watchdog,
        };
        replica.restart();
        replica
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the cluster (removed on drop, or by the watchdog).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// (Re)starts the server on its port and waits until it accepts connections.
    pub fn restart(&self) {
        let options = format!(
            // fsync off: only an OS crash could lose data. synchronous_commit stays on, so
            // a commit survives `stop -m immediate` (the outage tests' crash).
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off",
            self.port,
            self.dir.display()
        );
        run_quietly(
            as_user("postgres", &self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-o", &options, "-w", "-l"])
                .arg(self.dir.join("log"))
                .arg("start"),
            "pg_ctl start",
        );
    }

    /// Stops the server at once (an outage).
    pub fn stop(&self) {
        run_quietly(
            as_user("postgres", &self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        );
    }
}

/// `pg_ctl` as the watchdog's shell runs it.
fn postgres_command(pg_ctl: &Path) -> String {
    let pg_ctl = quoted(&pg_ctl.display().to_string());
    if is_root() {
        format!("runuser -u postgres -- {pg_ctl}")
    } else {
        pg_ctl
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_user("postgres", &self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway MariaDB server (`mariadb-install-db`, `mariadbd`): [`OwnMariaDb::start`]
/// without grant tables (`root` with no password, as the machine's own), or a primary and
/// its replica with them ([`OwnMariaDb::start_primary`], [`OwnMariaDb::start_replica`]).
pub struct OwnMariaDb {
    port: u16,
    dir: PathBuf,
    server: Child,
    _watchdog: Watchdog,
}

impl OwnMariaDb {
    /// A new server, started. `Err` when MariaDB is not installed.
    pub fn start() -> Result<OwnMariaDb, String> {
        OwnMariaDb::start_with(&["--skip-log-bin", "--skip-grant-tables"])
    }

    /// A new server writing a binary log with GTIDs (`server_id` 1): one that replicas can
    /// follow ([`OwnMariaDb::start_replica`]). It has grant tables, as a real one (a trigger
    /// created without them names no definer, which a replica refuses), and `root` without a
    /// password from 127.0.0.1.
    pub fn start_primary() -> Result<OwnMariaDb, String> {
        let primary =
            OwnMariaDb::start_with(&["--log-bin=binlog", "--server-id=1", "--binlog-format=ROW"])?;
        primary.allow_root_over_tcp();
        Ok(primary)
    }

    /// A new server replicating this one from its first transaction (GTID, `server_id` 2),
    /// applying each `delay` late (`MASTER_DELAY`, whole seconds). This one must have been
    /// started with [`OwnMariaDb::start_primary`].
    pub fn start_replica(&self, delay: Duration) -> OwnMariaDb {
        let replica = OwnMariaDb::start_with(&["--skip-log-bin", "--server-id=2"])
            .expect("MariaDB is installed: its primary runs");
        replica.allow_root_over_tcp();
        replica.sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', \
             MASTER_USE_GTID=slave_pos, MASTER_DELAY={}; START SLAVE",
            self.port,
            delay.as_secs()
        ));
        replica
    }

    /// Runs `statements` with the `mariadb` client; panics when they fail.
    fn sql(&self, statements: &str) {
        let client = find_on_path("mariadb").expect("the mariadb client is installed");
        run_quietly(
            Command::new(client)
                .args(["--no-defaults", "-h", "127.0.0.1", "-u", "root"])
                .arg(format!("--port={}", self.port))
                .args(["-e", statements]),
            "mariadb",
        );
    }

    /// `root@127.0.0.1` without a password and with every privilege, created over the
    /// socket (as `root@localhost`) and kept out of the binary log.
    fn allow_root_over_tcp(&self) {
        let client = find_on_path("mariadb").expect("the mariadb client is installed");
        run_quietly(
            Command::new(client)
                .args(["--no-defaults", "-u", "root"])
                .arg(format!("--socket={}", self.dir.join("socket").display()))
                .args([
                    "-e",
                    "SET sql_log_bin = 0; CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; \
                     GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
                ]),
            "mariadb (root over TCP)",
        );
    }

    fn start_with(options: &[&str]) -> Result<OwnMariaDb, String> {
        let missing = || {
            "MariaDB's server programs (mariadbd, mariadb-install-db) are not installed; \
             install them or set TEST_MYSQL_URL"
                .to_owned()
        };
        let server = find_on_path("mariadbd").ok_or_else(missing)?;
        let install = find_on_path("mariadb-install-db").ok_or_else(missing)?;
        let dir = temp_dir("cs_mariadb", Some("mysql:mysql"));
        let data = dir.join("data");
        // Temporary tables of its own: a server that starts removes every `#sql*` file of
        // its tmpdir, so with the shared /tmp one test's server deleted the temporary tables
        // another's bootstrap was using ("Unknown table 'mysql.tmp_user_nopasswd'", a flaky
        // `mariadb-install-db`).
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("creating {}: {e}", tmp.display()));
        if is_root() {
            run_quietly(Command::new("chown").arg("mysql:mysql").arg(&tmp), "chown");
        }
        let tmpdir = format!("--tmpdir={}", tmp.display());
        // Root must name the user the server runs as; anyone else runs it as themselves.
        let user: &[&str] = if is_root() { &["--user=mysql"] } else { &[] };
        run_quietly(
            Command::new(install)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args(user)
                .args(["--skip-test-db", "--auth-root-authentication-method=normal"])
                .arg(&tmpdir),
            "mariadb-install-db",
        );
        let port = free_port();
        let log = dir.join("error.log");
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("socket").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={port}"))
            .arg(&tmpdir)
            .args(user)
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--max-connections=1000",
                // As Debian's configuration has it (and the tests' Unicode rows need).
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
            ])
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting mariadbd: {e}"))?;
        let watchdog = Watchdog::start(&kill_and_remove(child.id(), &data, &dir));
        wait_for_port(port, "mariadbd", &log);
        Ok(OwnMariaDb {
            port,
            dir,
            server: child,
            _watchdog: watchdog,
        })
    }

    /// The directory holding the server's data (removed by the watchdog).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `mysql://root@127.0.0.1:<port>/mysql`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/mysql", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (an outage; `kill -9`).
    pub fn stop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` on its own port, keeping nothing on disk.
pub struct OwnRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
}

impl OwnRedis {
    /// `Err` (why) when `redis-server` is not installed.
    pub fn installed() -> Result<(), String> {
        match find_on_path("redis-server") {
            Some(_) => Ok(()),
            None => Err("redis-server is not installed; install it or set TEST_REDIS_URL".into()),
        }
    }

    /// A new server, started. `Err` when `redis-server` is not installed.
    pub fn start() -> Result<OwnRedis, String> {
        OwnRedis::installed()?;
        let mut redis = OwnRedis {
            port: free_port(),
            dir: temp_dir("cs_redis", None),
            child: None,
            watchdog: None,
        };
        redis.restart();
        Ok(redis)
    }

    /// The server's working directory (its log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.watchdog = Some(Watchdog::start(&kill_and_remove(
            child.id(),
            &self.dir,
            &self.dir,
        )));
        self.child = Some(child);
        wait_for_port(self.port, "redis-server", &log);
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.watchdog = None;
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `nats-server` with JetStream on its own port; its store stays in its directory across
/// [`OwnNats::restart`] (so a restart loses nothing JetStream acknowledged).
pub struct OwnNats {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
}

impl OwnNats {
    /// `Err` (why) when `nats-server` is not installed.
    pub fn installed() -> Result<PathBuf, String> {
        find_on_path("nats-server")
            .ok_or_else(|| "nats-server is not installed; install it or set TEST_NATS_URL".into())
    }

    /// A new server, started. `Err` when `nats-server` is not installed.
    pub fn start() -> Result<OwnNats, String> {
        OwnNats::installed()?;
        let mut nats = OwnNats {
            port: free_port(),
            dir: temp_dir("cs_nats", None),
            child: None,
            watchdog: None,
        };
        nats.restart();
        Ok(nats)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and store, and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        self.stop();
        let program = OwnNats::installed().expect("nats-server was there at start");
        let log = self.dir.join("nats.log");
        let child = Command::new(program)
            .current_dir(&self.dir)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        self.watchdog = Some(Watchdog::start(&kill_and_remove(
            child.id(),
            &self.dir,
            &self.dir,
        )));
        self.child = Some(child);
        wait_for_port(self.port, "nats-server", &log);
    }

    /// Kills the server (an outage); its store stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.watchdog = None;
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters with one replica each (`redis-server --cluster-enabled
/// yes`, `redis-cli --cluster create … --cluster-replicas 1`), on free ports, keeping nothing
/// on disk. A node can be killed (a master's failure: its replica takes over within about
/// two seconds, `cluster-node-timeout` 1000 ms).
pub struct OwnRedisCluster {
    dir: PathBuf,
    nodes: Vec<(u16, Option<Child>)>,
    /// What `redis-cli` needs besides the port: TLS and the password, when the nodes have them.
    cli_options: Vec<String>,
    tls: bool,
    password: Option<String>,
    _watchdogs: Vec<Watchdog>,
}

/// A secured cluster's settings ([`OwnRedisCluster::start_secured`]).
#[derive(Debug, Clone, Default)]
pub struct ClusterSecurity {
    /// Nodes speak TLS only (clients, replication and the cluster bus) with this
    /// certificate and key, signed by `ca`; clients are not asked for certificates.
    pub tls: Option<ClusterTls>,
    /// `requirepass` (and `masterauth`) of every node.
    pub password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClusterTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl OwnRedisCluster {
    /// Six nodes, the cluster created and every slot served. `Err` when `redis-server` or
    /// `redis-cli` is not installed.
    pub fn start() -> Result<OwnRedisCluster, String> {
        OwnRedisCluster::start_secured(&ClusterSecurity::default())
    }

    /// As [`OwnRedisCluster::start`], the nodes requiring TLS and/or a password.
    pub fn start_secured(security: &ClusterSecurity) -> Result<OwnRedisCluster, String> {
        OwnRedis::installed()?;
        find_on_path("redis-cli").ok_or("redis-cli is not installed")?;
        let dir = temp_dir("cs_redis_cluster", None);
        let mut nodes = Vec::new();
        let mut watchdogs = Vec::new();
        for _ in 0..6 {
            let (port, bus) = (free_port(), free_port());
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("creating a node's directory");
            let log = node_dir.join("redis.log");
            let mut server = Command::new("redis-server");
            match &security.tls {
                None => server.args(["--port", &port.to_string()]),
                Some(tls) => server
                    .args(["--port", "0", "--tls-port", &port.to_string()])
                    .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                    .args(["--tls-auth-clients", "no", "--tls-cert-file"])
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca),
            };
            if let Some(password) = &security.password {
                server.args(["--requirepass", password, "--masterauth", password]);
            }
            let child = server
                .args(["--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--cluster-node-timeout", "1000", "--cluster-config-file"])
                .arg(node_dir.join("nodes.conf"))
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&node_dir)
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting redis-server");
            watchdogs.push(Watchdog::start(&kill_and_remove(
                child.id(),
                &node_dir,
                &node_dir,
            )));
            wait_for_port(port, "redis-server (cluster node)", &log);
            nodes.push((port, Some(child)));
        }
        let mut cli_options = Vec::new();
        if let Some(tls) = &security.tls {
            cli_options.extend(["--tls".to_owned(), "--cacert".to_owned()]);
            cli_options.push(tls.ca.display().to_string());
        }
        if let Some(password) = &security.password {
            cli_options.extend(["--no-auth-warning".to_owned(), "-a".to_owned()]);
            cli_options.push(password.clone());
        }
        let cluster = OwnRedisCluster {
            dir,
            nodes,
            cli_options,
            tls: security.tls.is_some(),
            password: security.password.clone(),
            _watchdogs: watchdogs,
        };
        let mut create = Command::new("redis-cli");
        create.args(&cluster.cli_options);
        create.arg("--cluster").arg("create");
        for (port, _) in &cluster.nodes {
            create.arg(format!("127.0.0.1:{port}"));
        }
        run_quietly(
            create.args(["--cluster-replicas", "1", "--cluster-yes"]),
            "redis-cli --cluster create",
        );
        cluster.wait_until_ok();
        Ok(cluster)
    }

    /// `redis://127.0.0.1:<port>` of every node started (`rediss://localhost:<port>` with
    /// TLS, and the password when there is one).
    pub fn urls(&self) -> Vec<String> {
        let auth = self
            .password
            .as_ref()
            .map_or_else(String::new, |password| format!(":{password}@"));
        let (scheme, host) = if self.tls {
            ("rediss", "localhost")
        } else {
            ("redis", "127.0.0.1")
        };
        self.nodes
            .iter()
            .map(|(port, _)| format!("{scheme}://{auth}{host}:{port}"))
            .collect()
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(&self.cli_options)
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A node that still runs.
    fn live_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|(_, child)| child.is_some())
            .map(|(port, _)| *port)
            .expect("a node runs")
    }

    /// Waits until the cluster says `cluster_state:ok` (every slot served).
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .cli(self.live_port(), &["cluster", "info"])
            .contains("cluster_state:ok")
        {
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster never became ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port of the master serving `key` now; `None` while none does (a failover).
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let slot: u16 = self
            .cli(self.live_port(), &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot number");
        let nodes = self.cli(self.live_port(), &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&slot))
            });
            if serves {
                let address = fields[1].split('@').next().unwrap_or_default();
                return address.rsplit(':').next().and_then(|p| p.parse().ok());
            }
        }
        None
    }

    /// Moves the slot of `key` from its master to the master on `to`, as `redis-cli --cluster
    /// reshard` moves each slot: `IMPORTING` / `MIGRATING`, then `pause` (clients meet the
    /// half-moved slot: `ASK`, `TRYAGAIN`), then its keys `MIGRATE`d in batches, then the
    /// slot assigned to `to` on every master.
    pub fn move_slot(&self, key: &str, to: u16, pause: Duration) {
        let from = self.master_of(key).expect("a master serves the key");
        assert_ne!(from, to, "the slot is on that master already");
        let slot = self
            .cli(from, &["cluster", "keyslot", key])
            .trim()
            .to_owned();
        let id = |port: u16| self.cli(port, &["cluster", "myid"]).trim().to_owned();
        let (from_id, to_id) = (id(from), id(to));
        let ok = |port: u16, args: &[&str]| {
            let answer = self.cli(port, args);
            assert!(answer.trim() == "OK", "{args:?} on {port}: {answer}");
        };
        ok(to, &["cluster", "setslot", &slot, "importing", &from_id]);
        ok(from, &["cluster", "setslot", &slot, "migrating", &to_id]);
        std::thread::sleep(pause);
        loop {
            let keys = self.cli(from, &["cluster", "getkeysinslot", &slot, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut migrate = vec!["migrate", "127.0.0.1", &to_port, "", "0", "5000"];
            if let Some(password) = &self.password {
                migrate.extend(["auth", password]);
            }
            migrate.push("keys");
            migrate.extend(keys);
            let answer = self.cli(from, &migrate);
            assert!(answer.trim() == "OK", "MIGRATE: {answer}");
        }
        ok(to, &["cluster", "setslot", &slot, "node", &to_id]);
        ok(from, &["cluster", "setslot", &slot, "node", &to_id]);
        for (port, child) in &self.nodes {
            if child.is_some() && *port != from && *port != to && self.is_master(*port) {
                ok(*port, &["cluster", "setslot", &slot, "node", &to_id]);
            }
        }
    }

    /// The ports of the masters that run now.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(port, child)| child.is_some() && self.is_master(*port))
            .map(|(port, _)| *port)
            .collect()
    }

    fn is_master(&self, port: u16) -> bool {
        self.cli(port, &["role"]).lines().next() == Some("master")
    }

    /// Kills the node on `port` (`kill -9`).
    pub fn kill(&mut self, port: u16) {
        if let Some((_, child)) = self.nodes.iter_mut().find(|(p, _)| *p == port) {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for OwnRedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
