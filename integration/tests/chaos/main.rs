//! Chaos under load (issue 9): registry notifications driven at two
//! `imagestreams serve registry-watcher` processes, plus a share of real
//! skopeo pushes to a real docker-registry that notifies them, applied by two
//! `serve stream-store` processes, with a build trigger on one tag of every
//! stream fired by two `serve trigger` processes, on a three-node NATS
//! cluster (3 replicas), while a service process is killed with SIGKILL at
//! random every 150–400 ms (and started again 100–300 ms later), and one NATS
//! node is restarted midway.
//!
//! At the end every pushed digest must be in its tag's history exactly once
//! and in push order, `TagsChanged` must hold each effective change once, and
//! each trigger must have fired exactly once per image its tag moved to (and
//! stored one `BuildRequested` per firing). The test prints `lost 0,
//! duplicated 0`.
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

use imagestreams_common::subjects;
use imagestreams_integration::{
    ImageBuilder, NatsCluster, Registry, RegistryOptions, TestDir, binaries, free_port,
    load::{self, Push},
    wait_for,
};
use imagestreams_trigger_api::{
    NewTrigger, TagRef, TriggerClient, TriggerKind, TriggerReader, TriggerSpec,
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
/// Streams of the driven load; each has a trigger on its tag [`TRIGGERED_TAG`].
const STREAMS: usize = 16;
/// The tag the triggers follow.
const TRIGGERED_TAG: &str = "t0";
/// One push in this many is a real skopeo push (at least [`MIN_REAL_PUSHES`]).
const REAL_PUSH_SHARE: usize = 100;
/// The fewest real pushes.
const MIN_REAL_PUSHES: usize = 8;

/// One `imagestreams serve <service>` process, killed and started again.
struct Replica {
    service: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<tokio::process::Child>,
}

impl Replica {
    fn new(
        service: &'static str,
        nats: &str,
        registry: &str,
        dir: &TestDir,
        n: usize,
    ) -> anyhow::Result<Self> {
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
            (
                "IMAGESTREAMS_INTEGRATED_REGISTRY__HOST".to_owned(),
                registry.to_owned(),
            ),
        ];
        let port = free_port()?;
        env.push(match service {
            "registry-watcher" => (
                "IMAGESTREAMS_REGISTRY_WATCHER__LISTEN".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
            "trigger" => (
                "IMAGESTREAMS_TRIGGER__HTTP_LISTEN".to_owned(),
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
        // the audit finds every push in its tag's history: keep them all
        // (10,000 pushes over 48 tags stay far below a record's limit)
        env.push((
            "IMAGESTREAMS_STREAM_STORE__HISTORY_LIMIT".to_owned(),
            "100000".to_owned(),
        ));
        Ok(Replica {
            service,
            env,
            log: dir.join(format!("{service}-{n}.log")),
            child: None,
        })
    }

    /// Makes a watcher listen on `addr` (the one its registry notifies).
    fn listen_on(&mut self, addr: std::net::SocketAddr) {
        for (key, value) in &mut self.env {
            if key == "IMAGESTREAMS_REGISTRY_WATCHER__LISTEN" {
                *value = addr.to_string();
            }
        }
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
        let mut command = tokio::process::Command::new(binaries::imagestreams());
        for switch in binaries::test_switches() {
            command.env_remove(switch);
        }
        let child = command
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

/// Starts again, as a supervisor would, every replica whose process ended on
/// its own before the chaos began (one that gave up on a cluster still
/// electing its leaders, say), and says so.
async fn restart_exited(replicas: &Mutex<Vec<Replica>>) {
    for replica in replicas.lock().await.iter_mut() {
        let exited = replica
            .child
            .as_mut()
            .is_some_and(|child| child.try_wait().is_ok_and(|status| status.is_some()));
        if exited {
            eprintln!(
                "chaos: {} exited on its own; starting it again (its log: {})",
                replica.service,
                replica.log.display()
            );
            if let Err(error) = replica.start() {
                eprintln!("chaos: cannot start {}: {error}", replica.service);
            }
        }
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
    // The first watcher's port, held until the registry that notifies it has started.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0")?;
    let first_watcher = reserved.local_addr()?;
    let registry = Registry::start(RegistryOptions {
        include_references: true,
        ..RegistryOptions::notifying(format!("http://{first_watcher}/notifications"), Some(TOKEN))
    })
    .await?;
    drop(reserved);
    let mut replicas = Vec::new();
    for (n, service) in [
        "registry-watcher",
        "registry-watcher",
        "stream-store",
        "stream-store",
        "trigger",
        "trigger",
    ]
    .into_iter()
    .enumerate()
    {
        let mut replica = Replica::new(service, &urls, &registry.host(), &dir, n)?;
        if n == 0 {
            replica.listen_on(first_watcher);
        }
        replica.start()?;
        replicas.push(replica);
    }
    let watchers: Vec<String> = replicas
        .iter()
        .filter(|r| r.service == "registry-watcher")
        .map(Replica::notifications)
        .collect();
    let client = async_nats::connect(urls.split(',').collect::<Vec<_>>()).await?;
    let js = async_nats::jetstream::new(client.clone());
    let replicas = Arc::new(Mutex::new(replicas));
    let triggers = create_triggers(&TriggerClient::new(client.clone()), &replicas).await?;

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

    let all = load::pushes("chaos", count, STREAMS, 3);
    let real_count = (count / REAL_PUSH_SHARE).max(MIN_REAL_PUSHES);
    let real = tokio::spawn(real_pushes(registry.host(), count, real_count));
    let http = reqwest::Client::new();
    let (first, second) = all.split_at(count / 2);
    let mut failed_posts =
        load::notify_all(&http, &watchers, TOKEN, first, IN_FLIGHT, RETRY_FOR).await?;
    cluster.nodes[1].restart().await?;
    failed_posts += load::notify_all(&http, &watchers, TOKEN, second, IN_FLIGHT, RETRY_FOR).await?;
    let real = real.await??;
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

    let pushed: Vec<Push> = all.iter().chain(&real).cloned().collect();
    let audit = load::audit(&js, &pushed, SETTLE).await?;
    let fired = audit_triggers(&js, &triggers, &all).await?;
    println!(
        "chaos (seed {seed}): {count} driven pushes and {} skopeo pushes, {} SIGKILLs, a NATS node \
         restarted, {failed_posts} POSTs refused or failed and retried: {audit}; {fired}",
        real.len(),
        kills.load(Ordering::SeqCst)
    );
    if !audit.is_clean() {
        // what a failure needs to be understood, from the bucket's own history
        match load::explain(&js, &pushed).await {
            Ok(explained) => eprintln!("chaos: the tags that went wrong:\n{explained}"),
            Err(error) => eprintln!("chaos: cannot explain the audit: {error}"),
        }
    }
    assert!(audit.is_clean(), "{audit} (seed {seed})");
    assert!(fired.is_clean(), "{fired} (seed {seed})");
    Ok(())
}

/// A build trigger on `chaos/app-<n>:t0` for every driven stream, created before the chaos starts.
async fn create_triggers(
    client: &TriggerClient,
    replicas: &Mutex<Vec<Replica>>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut created = Vec::new();
    for n in 0..STREAMS {
        let (name, stream) = (format!("build-{n}"), format!("app-{n}"));
        let trigger = NewTrigger {
            namespace: "chaos".to_owned(),
            name: name.clone(),
            spec: TriggerSpec {
                from: TagRef::parse(&format!("{stream}:{TRIGGERED_TAG}"), "chaos")?,
                kind: TriggerKind::Build,
                paused: false,
                container: String::new(),
                webhook: None,
                mirror: None,
            },
            fire_existing: true,
        };
        // the trigger replicas may still be starting
        wait_for(
            || async {
                restart_exited(replicas).await;
                client.create(&trigger).await.is_ok()
            },
            RETRY_FOR,
        )
        .await?;
        created.push((name, stream));
    }
    Ok(created)
}

/// `count` real pushes with skopeo, one after the other, to `chaos/real-<n % 2>:<tag>` (two streams, two
/// tags), numbered after the driven ones.
async fn real_pushes(registry: String, first: usize, count: usize) -> anyhow::Result<Vec<Push>> {
    let mut pushed = Vec::with_capacity(count);
    for n in 0..count {
        let (stream, tag) = (format!("real-{}", n % 2), format!("r{}", (n / 2) % 2));
        let image = ImageBuilder::new().build().await?;
        let digest = image
            .push(&format!("{registry}/chaos/{stream}:{tag}"), None)
            .await?;
        pushed.push(Push {
            index: first + n,
            namespace: "chaos".to_owned(),
            stream,
            tag,
            digest,
            // the registry's own time orders them; not used for real pushes
            millis: 0,
        });
    }
    Ok(pushed)
}

/// What the triggers did, against what their tags did.
///
/// A trigger acts on a tag's changes in revision order and never goes back: a change older than one it
/// already acted on is skipped (firing for an older image after a newer one would roll a deployment
/// back), as OpenShift's trigger controller coalesces changes it sees late. So under chaos some
/// intermediate images are coalesced; what must hold is that every fired image fired once, only images the
/// tag moved to fire, each trigger fired for its tag's final image, and firings never go backwards.
struct Fired {
    /// Triggers that did not fire for their tag's final image.
    missing_final: usize,
    /// Firings beyond one per image.
    duplicated: usize,
    /// Firings of an image the tag never moved to.
    unknown: usize,
    /// Firings whose previous image is not the trigger's previous firing's (a step back or a gap in the chain).
    backwards: usize,
    /// Firings whose `BuildRequested` is not stored exactly once.
    events_wrong: usize,
    /// Firings in all, and the tag changes they answer.
    firings: usize,
    changes: usize,
}

impl Fired {
    fn is_clean(&self) -> bool {
        self.missing_final == 0
            && self.duplicated == 0
            && self.unknown == 0
            && self.backwards == 0
            && self.events_wrong == 0
    }
}

impl std::fmt::Display for Fired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "triggers: {} firings for {} tag changes ({} coalesced), final image lost {}, duplicated {}, \
             unknown {}, backwards {}, BuildRequested not once {}",
            self.firings,
            self.changes,
            self.changes.saturating_sub(self.firings),
            self.missing_final,
            self.duplicated,
            self.unknown,
            self.backwards,
            self.events_wrong
        )
    }
}

/// Per trigger: the images its tag moved to, oldest first, as the stored
/// `TagsChanged` say.
async fn moved_by_trigger<'a>(
    js: &async_nats::jetstream::Context,
    triggers: &'a [(String, String)],
    pushes: &[Push],
) -> anyhow::Result<Vec<(&'a String, Vec<String>)>> {
    let moved = load::current_images(js, pushes).await?;
    Ok(triggers
        .iter()
        .map(|(name, stream)| {
            let key = (stream.clone(), TRIGGERED_TAG.to_owned());
            (name, moved.get(&key).cloned().unwrap_or_default())
        })
        .collect())
}

/// Waits until every trigger fired for its tag's final image, then checks every firing against the tag's
/// changes (by revision) and counts the stored `BuildRequested` events by firing id.
async fn audit_triggers(
    js: &async_nats::jetstream::Context,
    triggers: &[(String, String)],
    pushes: &[Push],
) -> anyhow::Result<Fired> {
    let reader = TriggerReader::new(
        js.get_key_value(subjects::BUCKET_TRIGGERS).await?,
        js.get_key_value(subjects::BUCKET_FIRINGS).await?,
    );
    let changes = moved_by_trigger(js, triggers, pushes).await?;
    let _ = wait_for(
        || async {
            reader.firings(Some("chaos"), None).await.is_ok_and(|f| {
                f.iter().all(|f| f.value.is_complete())
                    && changes.iter().all(|(name, images)| {
                        images.last().is_none_or(|last| {
                            f.iter()
                                .any(|f| &&f.value.trigger == name && &f.value.image == last)
                        })
                    })
            })
        },
        SETTLE,
    )
    .await;
    // again: a killed changefeed's unacked TagsChanged come back after the
    // ack wait, so a change a trigger fired for may be stored after the first read
    let changes = moved_by_trigger(js, triggers, pushes).await?;
    let firings = reader.firings(Some("chaos"), None).await?;
    let mut fired = Fired {
        missing_final: 0,
        duplicated: 0,
        unknown: 0,
        backwards: 0,
        events_wrong: 0,
        firings: firings.len(),
        changes: changes.iter().map(|(_, images)| images.len()).sum(),
    };
    for (name, images) in &changes {
        let position = |image: &str| images.iter().position(|i| i == image);
        let mut mine: Vec<(usize, &str, &str)> = Vec::new();
        for f in firings.iter().filter(|f| &&f.value.trigger == name) {
            match position(&f.value.image) {
                Some(at) => mine.push((at, &f.value.image, &f.value.previous_image)),
                None => fired.unknown += 1,
            }
        }
        mine.sort_unstable();
        let before = mine.len();
        mine.dedup_by_key(|(at, _, _)| *at);
        fired.duplicated += before - mine.len();
        if images
            .last()
            .is_some_and(|last| !mine.iter().any(|(_, i, _)| i == last))
        {
            fired.missing_final += 1;
        }
        // each firing names the one before it: the chain only moves forward
        fired.backwards += mine.windows(2).filter(|w| w[1].2 != w[0].1).count();
    }
    let requested = load::stored_message_ids(js, subjects::STREAM_TRIGGERS).await?;
    for firing in &firings {
        if requested.get(&firing.value.id).copied() != Some(1) {
            fired.events_wrong += 1;
        }
    }
    Ok(fired)
}
