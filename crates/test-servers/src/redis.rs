//! A throwaway `redis-server`.

use crate::*;

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
