//! A throwaway `nats-server` with JetStream.

use crate::*;

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
