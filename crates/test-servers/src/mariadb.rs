//! A throwaway MariaDB server (`mariadb-install-db`, `mariadbd`).

use crate::*;

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
