//! Each throwaway server answers its client, and nothing of it outlives the test binary
//! that started it: a child process starts one of each and exits without cleaning up (as a
//! binary does with the servers it shares through statics, or when it is killed); the
//! watchdogs stop the servers and remove their directories.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use test_servers::{OrSkip, OwnMariaDb, OwnPostgres, OwnRedis};

/// Set in the child process.
const CHILD: &str = "TEST_SERVERS_CHILD";

/// Runs `program args`; its stdout, or a panic with its output.
fn client(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The child: starts the servers, checks that each answers, prints `port dir` per server
/// and exits with them running.
#[test]
#[ignore = "run by the_servers_answer_and_are_gone_once_their_test_binary_exits"]
fn child_starts_servers_and_exits_without_stopping_them() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let mut started = Vec::new();
    if let Some(pg) = OwnPostgres::start().or_skip() {
        let port = pg
            .url()
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let answer = client(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-Atc",
                "select 6 * 7",
            ],
        );
        assert_eq!(answer, "42");
        started.push((port, pg.dir().to_path_buf()));
        std::mem::forget(pg);
    }
    if let Some(mariadb) = OwnMariaDb::start().or_skip() {
        let port = mariadb
            .url()
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let answer = client(
            "mariadb",
            &[
                "-h",
                "127.0.0.1",
                "-P",
                &port,
                "-u",
                "root",
                "-N",
                "-e",
                "select @@character_set_server",
            ],
        );
        assert_eq!(answer, "utf8mb4");
        started.push((port, mariadb.dir().to_path_buf()));
        std::mem::forget(mariadb);
    }
    if let Some(redis) = OwnRedis::start().or_skip() {
        let port = redis.port.to_string();
        assert_eq!(client("redis-cli", &["-p", &port, "ping"]), "PONG");
        started.push((port, redis.dir().to_path_buf()));
        std::mem::forget(redis);
    }
    for (port, dir) in started {
        println!("STARTED {port} {}", dir.display());
    }
}

#[test]
fn the_servers_answer_and_are_gone_once_their_test_binary_exits() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_starts_servers_and_exits_without_stopping_them",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let started: Vec<(u16, PathBuf)> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("STARTED "))
        .map(|rest| {
            let (port, dir) = rest.split_once(' ').unwrap();
            (port.parse().unwrap(), PathBuf::from(dir))
        })
        .collect();
    if started.is_empty() {
        test_servers::skip("no server program is installed");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (port, dir) in &started {
        while listening(*port) || dir.exists() {
            assert!(
                Instant::now() < deadline,
                "the server on port {port} ({}) outlived its test binary",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
