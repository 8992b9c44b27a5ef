//! A throwaway Redis Cluster (masters and replicas, optionally with ACL and TLS).

use crate::*;

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
