//! Chaos under load (issue 9): registry notifications driven at two
//! `imagestreams serve registry-watcher` processes, applied by two `serve
//! stream-store` processes, on a three-node NATS cluster (3 replicas), while
//! a service process is killed with SIGKILL at random every 150–400 ms (and
//! started again 100–300 ms later), and one NATS node is restarted midway.
//!
//! At the end every pushed digest must be in its tag's history exactly once
//! and in push order, and `TagsChanged` must hold each effective change once.
//! The test prints `lost 0, duplicated 0`.
//!
//! The CI variant pushes 1,000 images; `IMAGESTREAMS_CHAOS_PUSHES=10000`
//! runs the full one (bounded by 10 minutes either way).

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::{StreamExt as _, stream};
use imagestreams_integration::{
    NatsCluster, TestDir, binaries, free_port,
    load::{self, Push},
};
use tokio::sync::Mutex;

/// The bearer token both watchers expect.
const TOKEN: &str = "chaos-token";
/// Pushes of the CI variant.
const DEFAULT_PUSHES: usize = 1_000;
/// Notifications in flight at once.
const IN_FLIGHT: usize = 16;
/// The whole test's bound.
const BOUND: Duration = Duration::from_secs(600);
/// How long one notification is retried (every watcher may be down at once).
const RETRY_FOR: Duration = Duration::from_secs(60);
/// How long everything may take to land after the last notification.
const SETTLE: Duration = Duration::from_secs(120);

/// One `imagestreams serve <service>` process, killed and started again.
struct Replica {
    service: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<tokio::process::Child>,
}

impl Replica {
    fn new(service: &'static str, nats: &str, dir: &TestDir, n: usize) -> anyhow::Result<Self> {
        let mut env = vec![
            ("IMAGESTREAMS_NATS__URL".to_owned(), nats.to_owned()),
            (
                "IMAGESTREAMS_NATS__AUTO_START".to_owned(),
                "false".to_owned(),
            ),
            ("IMAGESTREAMS_NATS__REPLICAS".to_owned(), "3".to_owned()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            // about delivery, not who may push: the load's pusher is no identity
            ("IMAGESTREAMS_AUTH__ENABLED".to_owned(), "false".to_owned()),
        ];
        let port = free_port()?;
        env.push(match service {
            "registry-watcher" => (
                "IMAGESTREAMS_REGISTRY_WATCHER__LISTEN".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
            _ => (
                "IMAGESTREAMS_STREAM_STORE__HTTP_LISTEN".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
        });
        env.push((
            "IMAGESTREAMS_REGISTRY_WATCHER__TOKEN".to_owned(),
            TOKEN.to_owned(),
        ));
        Ok(Replica {
            service,
            env,
            log: dir.join(format!("{service}-{n}.log")),
            child: None,
        })
    }

    /// The notification URL of a watcher.
    fn notifications(&self) -> String {
        let listen = &self
            .env
            .iter()
            .find(|(k, _)| k == "IMAGESTREAMS_REGISTRY_WATCHER__LISTEN")
            .expect("a watcher")
            .1;
        format!("http://{listen}/notifications")
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = tokio::process::Command::new(binaries::imagestreams())
            .args(["serve", self.service])
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as a crash.
    async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }
}

/// A small xorshift, seeded from the clock and printed, so a failing
/// schedule can be replayed with `IMAGESTREAMS_CHAOS_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test]
async fn killed_services_and_a_restarted_node_lose_and_double_nothing() -> anyhow::Result<()> {
    tokio::time::timeout(BOUND, chaos()).await?
}

async fn chaos() -> anyhow::Result<()> {
    let count: usize = std::env::var("IMAGESTREAMS_CHAOS_PUSHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_PUSHES);
    let seed: u64 = std::env::var("IMAGESTREAMS_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let mut cluster = NatsCluster::start(3).await?;
    let dir = TestDir::new("chaos")?;
    let urls = cluster.urls();
    let mut replicas = Vec::new();
    for (n, service) in [
        "registry-watcher",
        "registry-watcher",
        "stream-store",
        "stream-store",
    ]
    .into_iter()
    .enumerate()
    {
        let mut replica = Replica::new(service, &urls, &dir, n)?;
        replica.start()?;
        replicas.push(replica);
    }
    let watchers: Vec<String> = replicas
        .iter()
        .filter(|r| r.service == "registry-watcher")
        .map(Replica::notifications)
        .collect();
    let replicas = Arc::new(Mutex::new(replicas));

    // the chaos: a random replica SIGKILLed, then started again
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let monkey = tokio::spawn({
        let (replicas, stop, kills) = (replicas.clone(), stop.clone(), kills.clone());
        async move {
            let mut rng = Rng(seed);
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(150 + rng.next() % 250)).await;
                let victim = {
                    let mut guard = replicas.lock().await;
                    let victim = (rng.next() % guard.len() as u64) as usize;
                    guard[victim].kill().await?;
                    victim
                };
                kills.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100 + rng.next() % 200)).await;
                replicas.lock().await[victim].start()?;
            }
            anyhow::Ok(())
        }
    });

    let all = load::pushes("chaos", count, 16, 3);
    let http = reqwest::Client::new();
    let send = |batch: Vec<Push>| {
        let (http, watchers) = (&http, &watchers);
        async move {
            stream::iter(batch)
                .map(|push| async move {
                    load::notify(http, watchers, TOKEN, &push, RETRY_FOR).await
                })
                .buffered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .sum::<anyhow::Result<u32>>()
        }
    };
    let (first, second) = all.split_at(count / 2);
    let mut failed_posts = send(first.to_vec()).await?;
    cluster.nodes[1].restart().await?;
    failed_posts += send(second.to_vec()).await?;
    stop.store(true, Ordering::SeqCst);
    monkey.await??;
    // every replica up for the end: the work left over is finished
    {
        let mut replicas = replicas.lock().await;
        for replica in replicas.iter_mut() {
            if replica.child.is_none() {
                replica.start()?;
            }
        }
    }

    let client = async_nats::connect(urls.split(',').collect::<Vec<_>>()).await?;
    let audit = load::audit(&async_nats::jetstream::new(client), &all, SETTLE).await?;
    println!(
        "chaos (seed {seed}): {count} pushes, {} SIGKILLs, a NATS node restarted, \
         {failed_posts} POSTs refused or failed and retried: {audit}",
        kills.load(Ordering::SeqCst)
    );
    assert!(audit.is_clean(), "{audit} (seed {seed})");
    Ok(())
}
