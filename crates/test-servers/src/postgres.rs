//! A throwaway PostgreSQL cluster (`initdb`, `pg_ctl`), and its streaming replica.

use crate::*;

/// The `bin` directory of the newest PostgreSQL installed (Debian's layout), or of the
/// `initdb` on the PATH.
pub(crate) fn postgres_bin() -> Result<PathBuf, String> {
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
