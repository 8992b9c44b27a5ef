//! A database outage: writes and reads answer 503 (never 500, never a hang), health answers
//! 503 within a second, and the service recovers on its own when the database returns.
//!
//! The test owns its PostgreSQL: a cluster made with `initdb` in a temp dir on a free port,
//! stopped and started with `pg_ctl`. The shared server is never touched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::test_app::{create_postgres_database, json_of, minimal, test_config, TestApp};

/// A throwaway PostgreSQL cluster, stopped and removed on drop.
struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("PostgreSQL server packages are installed (/usr/lib/postgresql)")
        .map(|entry| entry.unwrap().path())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version").join("bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn run_pg(bin: &Path, tool: &str, args: &[&str]) {
    let program = bin.join(tool);
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let status = if is_root {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&program)
            .args(args)
            .status()
    } else {
        Command::new(&program).args(args).status()
    }
    .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(status.success(), "{tool} {args:?} failed: {status}");
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let bin = postgres_bin();
        let data = std::env::temp_dir().join(format!("cs_pg_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data).unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data)
            .status();
        let port = free_port();
        let data_str = data.to_str().unwrap();
        run_pg(
            &bin,
            "initdb",
            &["-D", data_str, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let cluster = OwnPostgres { bin, data, port };
        cluster.pg_ctl_start();
        cluster
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        run_pg(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-l",
                self.data.join("log").to_str().unwrap(),
                "start",
            ],
        );
    }

    fn stop(&self) {
        run_pg(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .status();
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503s_and_the_service_recovers_on_its_own() {
    let pg = OwnPostgres::start();
    let url = create_postgres_database(&pg.url(), "outage").await;
    let mut config = test_config(url);
    config.database.acquire_timeout = Duration::from_millis(500);
    let app = customer_service::App::build(&config).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = TestApp::attach(address, &app, config.database.url.clone());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let app = handle;

    let id = app.create_id(&minimal("before@example.com")).await;
    pg.stop();

    let started = Instant::now();
    let body = json_of(app.post_customer(&minimal("during@example.com")).await, 503).await;
    assert_eq!(body["error"], "Service Unavailable");
    let text = body.to_string().to_lowercase();
    assert!(
        !text.contains("sql") && !text.contains("connection refused"),
        "leaks internals: {body}"
    );
    assert!(body["correlationId"].is_string());
    json_of(app.get_customer(id).await, 503).await;
    json_of(
        app.patch_customer(id, &json!({"lastName": "Gone"})).await,
        503,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503s must come promptly"
    );

    let started = Instant::now();
    let health = json_of(app.get("/api/v1/health").await, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "health took {:?}",
        started.elapsed()
    );
    assert_eq!(health["success"], false);
    assert_eq!(health["data"]["status"], "unhealthy");
    assert_eq!(health["data"]["checks"]["database"]["status"], "error");

    pg.pg_ctl_start();
    // Recovery needs no restart: poll until a write succeeds (bounded).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = app
            .post_customer(&minimal("after@example.com"))
            .await
            .status()
            .as_u16();
        if status == 201 {
            break;
        }
        assert_eq!(status, 503, "only 503 is acceptable while reconnecting");
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    json_of(app.get("/api/v1/health").await, 200).await;
    json_of(app.get_customer(id).await, 200).await;
    // The write attempted during the outage left nothing behind.
    json_of(
        app.get("/api/v1/customers/email/during@example.com").await,
        404,
    )
    .await;
}
