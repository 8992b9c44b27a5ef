//! `customer-service` processes a fault test owns, on free ports: each is stopped or killed
//! only by the test that started it, and on drop. (Its database and Redis servers come from
//! the `test-servers` crate.)

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `customer-service serve` process.
pub struct ServiceProcess {
    pub base: String,
    child: Child,
}

impl ServiceProcess {
    /// Starts the binary with `env` on a free port and waits for its health route.
    pub async fn start(env: &[(&str, String)]) -> ServiceProcess {
        ServiceProcess::start_logging(env, None).await
    }

    /// [`ServiceProcess::start`], with its log (`RUST_LOG=info`) appended to `log` if given.
    pub async fn start_logging(
        env: &[(&str, String)],
        log: Option<&std::path::Path>,
    ) -> ServiceProcess {
        let port = test_servers::free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_customer-service"));
        command
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(path) = log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("the log file opens");
            command.env("RUST_LOG", "info").stderr(file);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let process = ServiceProcess {
            base: format!("http://127.0.0.1:{port}"),
            child: command.spawn().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(process.url("/api/v1/customers/health"))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "customer-service did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `kill -9`: no shutdown, no last batch.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// A series' value in its `/metrics` answer.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// The `data` of its health answer, whatever the status.
    pub async fn health(&self) -> Option<Value> {
        let response = reqwest::get(self.url("/api/v1/health")).await.ok()?;
        Some(response.json::<Value>().await.ok()?["data"].clone())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
