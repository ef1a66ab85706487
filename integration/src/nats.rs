//! A real `nats-server -js` on a port it reads back, with a temporary store, that tests can stop, kill and restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::binaries;
use crate::process::{DEFAULT_LOG_TAIL_LINES, LoggedChild, file_len, log_tail, read_from};
use crate::util::TestDir;

/// How long to wait for the server to report that it is ready.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long [`NatsServer::stop`] waits after SIGTERM before it kills the server.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

const LISTENING: &str = "Listening for client connections on ";
const READY: &str = "Server is ready";

/// A running `nats-server` with JetStream on 127.0.0.1, killed on drop.
///
/// Its store directory and log (`nats-server.log`) live in a [`TestDir`], so a restart finds the same data.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    cluster: Option<ClusterNode>,
    /// A configuration file (`-c`), for settings without a flag.
    config_file: Option<PathBuf>,
    child: Option<LoggedChild>,
    log_path: PathBuf,
    store_dir: PathBuf,
    // Dropped last: the child must be killed before its directory goes.
    dir: TestDir,
}

impl NatsServer {
    /// Starts `nats-server -js -a 127.0.0.1 -p -1 --store_dir <tmp>` and waits until it is ready.
    ///
    /// # Panics
    ///
    /// Panics with an install hint when no `nats-server` >= 2.10 is found (see [`binaries::nats_server`]).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_configured(None).await
    }

    /// [`start`](Self::start) with a `max_payload` of `bytes` (the default
    /// is 1 MiB), so that tests reach the message limits with little data.
    pub async fn start_with_max_payload(bytes: usize) -> anyhow::Result<Self> {
        Self::start_configured(Some(format!("max_payload: {bytes}\n"))).await
    }

    async fn start_configured(config: Option<String>) -> anyhow::Result<Self> {
        let binary = binaries::nats_server();
        let dir = TestDir::new("nats")?;
        let store_dir = dir.join("store");
        std::fs::create_dir_all(&store_dir).context("creating the JetStream store dir")?;
        let config_file = match config {
            Some(text) => {
                let path = dir.join("nats-server.conf");
                std::fs::write(&path, text).context("writing nats-server.conf")?;
                Some(path)
            }
            None => None,
        };
        let mut server = Self {
            binary,
            port: 0,
            cluster: None,
            config_file,
            child: None,
            log_path: dir.join("nats-server.log"),
            store_dir,
            dir,
        };
        server.launch(None).await?;
        Ok(server)
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port; it stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The JetStream store directory (`--store_dir`).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The temporary directory holding the store and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.exited().is_none())
    }

    /// Connects a new client to this server.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(self.url())
            .await
            .with_context(|| format!("connecting to {}", self.url()))
    }

    /// Stops the server gracefully (SIGTERM, then SIGKILL after [`DEFAULT_STOP_GRACE`]). No-op when not running.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child
                .terminate(DEFAULT_STOP_GRACE)
                .await
                .context("stopping nats-server")?;
        }
        Ok(())
    }

    /// Kills the server with SIGKILL, as a crash would. No-op when not running.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing nats-server")?;
        }
        Ok(())
    }

    /// Stops the server process (SIGSTOP) without closing its connections:
    /// clients stay connected and every request waits unanswered, as when
    /// the server hangs or its host stalls. [`resume`](Self::resume) goes on.
    pub fn pause(&self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("nats-server is not running")?;
        child
            .signal(rustix::process::Signal::STOP)
            .context("stopping nats-server")
    }

    /// Lets a [`pause`](Self::pause)d server go on (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("nats-server is not running")?;
        child
            .signal(rustix::process::Signal::CONT)
            .context("resuming nats-server")
    }

    /// Stops the server if it runs, then starts it again on the same port with the same store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch(Some(self.port)).await
    }

    async fn launch(&mut self, port: Option<u16>) -> anyhow::Result<()> {
        let offset = file_len(&self.log_path);
        let mut cmd = Command::new(&self.binary);
        if let Some(file) = &self.config_file {
            cmd.arg("-c").arg(file);
        }
        cmd.arg("-js")
            .args(["-a", "127.0.0.1"])
            .arg("-p")
            .arg(port.map_or_else(|| "-1".to_owned(), |p| p.to_string()))
            .arg("--store_dir")
            .arg(&self.store_dir);
        if let Some(node) = &self.cluster {
            let routes: Vec<String> = node
                .routes
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            cmd.args(["--name", &node.name])
                .args(["--cluster_name", CLUSTER_NAME])
                .arg("--cluster")
                .arg(format!("nats://127.0.0.1:{}", node.cluster_port))
                .arg("--routes")
                .arg(routes.join(","));
        }
        let mut child = LoggedChild::spawn("nats-server", cmd, &self.log_path)?;
        let deadline = Instant::now() + DEFAULT_START_TIMEOUT;
        loop {
            let log = read_from(&self.log_path, offset);
            if let (Some(listen_port), true) = (parse_listen_port(&log), log.contains(READY)) {
                self.port = listen_port;
                self.child = Some(child);
                return Ok(());
            }
            let exited = child.exited();
            if exited.is_some() || Instant::now() >= deadline {
                let why = match exited {
                    Some(status) => format!("exited with {status}"),
                    None => format!("not ready within {DEFAULT_START_TIMEOUT:?}"),
                };
                anyhow::bail!(
                    "nats-server {why}; log {}:\n{}",
                    self.log_path.display(),
                    log_tail(&self.log_path, DEFAULT_LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The name of the clusters [`NatsCluster`] starts.
pub const CLUSTER_NAME: &str = "imagestreams-test";

/// How long [`NatsCluster::start`] waits for JetStream to elect a meta leader.
pub const DEFAULT_CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// A node's place in a cluster: its name, route port and the other nodes' route ports.
#[derive(Debug, Clone)]
struct ClusterNode {
    name: String,
    cluster_port: u16,
    routes: Vec<u16>,
}

/// Real `nats-server -js` processes on loopback, routed into one cluster
/// with clustered JetStream (so streams and KV buckets can have 3
/// replicas). Each node can be stopped, killed and restarted like a
/// [`NatsServer`].
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, in start order.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` routed nodes and waits until JetStream answers with a meta leader.
    ///
    /// # Panics
    ///
    /// Panics with an install hint when no `nats-server` is found (see [`binaries::nats_server`]).
    pub async fn start(size: usize) -> anyhow::Result<Self> {
        let binary = binaries::nats_server();
        let ports = (0..size)
            .map(|_| crate::util::free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let mut nodes = Vec::with_capacity(size);
        for (i, &cluster_port) in ports.iter().enumerate() {
            let dir = TestDir::new(&format!("nats-n{i}"))?;
            let store_dir = dir.join("store");
            std::fs::create_dir_all(&store_dir).context("creating the JetStream store dir")?;
            let mut node = NatsServer {
                binary: binary.clone(),
                port: 0,
                config_file: None,
                cluster: Some(ClusterNode {
                    name: format!("n{i}"),
                    cluster_port,
                    routes: ports
                        .iter()
                        .copied()
                        .filter(|p| *p != cluster_port)
                        .collect(),
                }),
                child: None,
                log_path: dir.join("nats-server.log"),
                store_dir,
                dir,
            };
            node.launch(None).await?;
            nodes.push(node);
        }
        let cluster = NatsCluster { nodes };
        cluster.wait_for_jetstream().await?;
        Ok(cluster)
    }

    /// Every node's client URL, comma separated, as `nats.url` takes it.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URLs with node `first` first (the rest follow).
    pub fn urls_from(&self, first: usize) -> String {
        let mut urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        let len = urls.len().max(1);
        urls.rotate_left(first % len);
        urls.join(",")
    }

    /// Waits until JetStream answers through every running node (a meta leader is elected).
    pub async fn wait_for_jetstream(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + DEFAULT_CLUSTER_TIMEOUT;
        for node in &self.nodes {
            let client = node.connect().await?;
            let js = async_nats::jetstream::new(client);
            loop {
                match js.query_account().await {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        anyhow::bail!("JetStream not available through {}: {e}", node.url())
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }
}

/// The port in the server's "Listening for client connections on 127.0.0.1:PORT" log line.
fn parse_listen_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(LISTENING))?;
    let addr = &line[line.find(LISTENING)? + LISTENING.len()..];
    addr.trim().rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listen_line() {
        let log = "[1] 2026/01/01 00:00:00.000 [INF] Starting nats-server\n\
                   [1] 2026/01/01 00:00:00.001 [INF] Listening for client connections on 127.0.0.1:41234\n";
        assert_eq!(parse_listen_port(log), Some(41234));
        assert_eq!(parse_listen_port("nothing here"), None);
    }
}
