//! `bench-push`: the user's push path with the default configuration, from a real registry to NATS.
//!
//! A real nats-server, every service in one process with the **default configuration** (so
//! `registry_watcher.read_metadata = true`), and a real docker-registry with `notifications`
//! (`includereferences: true`) to two endpoints, each with its own queue in the registry:
//!
//! - the mesh's registry-watcher;
//! - **the floor, same run, same pushes**: an endpoint in this process that publishes each envelope as it
//!   came to a JetStream stream, waits for the stream's ack, and answers 200: what any notification relay
//!   costs.
//!
//! Pushes go over the registry's HTTP API, as a client pushes an image whose layer the registry already
//! holds: the image's config blob (a monolithic upload), then its manifest by tag, to `--streams`
//! repositories in turn, open loop at `--rate` per second for `--seconds`. Each image is new (its config
//! differs), so each push means one metadata read. A NATS subscriber times, from the manifest PUT's answer
//! (the registry often notifies before it answers: such an event counts 0) and from its sending:
//!
//! - **floor**: the envelope on the floor's subject;
//! - **push → `TagsChanged`**: the tag's change on `imagestreams.tags.changed.<ns>.<name>`;
//! - **push → `ImageRecorded`**: the image's metadata read and recorded.
//!
//! With `--preupload`, the open-loop phases upload every image's config before the clock starts, so a timed
//! push is its manifest PUT alone (the registry's cheapest push, for rates it cannot sustain otherwise).
//!
//! Each of `--rates` runs twice, on a fresh registry and mesh each: with the default, then with
//! `read_metadata = false` (the pipeline without the read, the issue's point of comparison). `--closed N`
//! adds a phase with N pushers back to back: the registry's own top push rate on this box, with the
//! default.
//!
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-push -- --rates 20,100 --closed 16
//! ```

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream;
use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use clap::{ArgAction, Parser};
use futures::StreamExt as _;
use imagestreams::cli::ServiceName;
use imagestreams_common::{config::Secret, subjects::Kind};
use imagestreams_integration::{
    NatsServer, Registry, RegistryOptions, TestApp,
    bench::{RegistryPusher, Summary, drive, print_summary, sha256, summarize},
};
use imagestreams_proto::v1 as proto;
use prost::Message as _;
use serde_json::Value;

const TOKEN: &str = "bench-push-token";
const NAMESPACE: &str = "bench";
const FLOOR_STREAM: &str = "BENCH_PUSH_FLOOR";
const FLOOR_SUBJECT: &str = "bench.push.floor";
/// How long the bench waits after the last push for its events.
const DRAIN: Duration = Duration::from_secs(20);

/// The user's push path with the default configuration, from a real registry
/// to NATS, against its floor measured in the same run.
#[derive(Debug, Parser)]
#[command(
    name = "bench-push",
    long_about = None,
    args_override_self = true,
    allow_negative_numbers = true
)]
struct Args {
    /// Open-loop push rates, per second, each run in turn.
    #[arg(
        long,
        value_name = "N,N",
        value_delimiter = ',',
        action = ArgAction::Set,
        value_parser = clap::value_parser!(u64).range(1..),
        default_values_t = [20, 100]
    )]
    rates: Vec<u64>,
    /// Seconds of each phase.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    seconds: f64,
    /// Repositories the pushes go to in turn.
    #[arg(long, value_name = "N", default_value_t = 50)]
    streams: u64,
    /// Add a closed-loop phase with N pushers back to back.
    #[arg(long, value_name = "N")]
    closed: Option<usize>,
    /// Upload every image's config before the clock starts, so that a timed
    /// push is its manifest PUT alone.
    #[arg(long)]
    preupload: bool,
}

/// When each digest's manifest PUT was sent and answered, and when its events arrived.
#[derive(Default)]
struct Clock {
    pushed: HashMap<String, Pushed>,
    floor: HashMap<String, Instant>,
    changed: HashMap<String, Instant>,
    recorded: HashMap<String, Instant>,
}

/// A manifest PUT: when it was sent and when its answer came.
#[derive(Clone, Copy)]
struct Pushed {
    sent: Instant,
    answered: Instant,
}

impl Clock {
    /// The latencies from each push's PUT (`sent`, or its answer) to the event `of` tells; an event that
    /// came before the answer counts 0 from it.
    fn latencies(
        &self,
        of: impl Fn(&Clock) -> &HashMap<String, Instant>,
        from_sent: bool,
    ) -> (Summary, usize) {
        let seen = of(self);
        let nanos: Vec<u64> = self
            .pushed
            .iter()
            .filter_map(|(digest, at)| {
                let from = if from_sent { at.sent } else { at.answered };
                Some(seen.get(digest)?.saturating_duration_since(from))
            })
            .map(|d| d.as_nanos() as u64)
            .collect();
        let missing = self.pushed.len() - nanos.len();
        (summarize(nanos), missing)
    }
}

type Shared = Arc<Mutex<Clock>>;
/// Takes a push's outcome: its digest and when its manifest PUT was sent and answered.
type Record = Arc<dyn Fn(anyhow::Result<(String, Pushed)>) + Send + Sync>;

/// The floor's notification endpoint: the envelope to JetStream, then 200.
async fn floor_endpoint(State(js): State<jetstream::Context>, body: Bytes) -> StatusCode {
    match js.publish(FLOOR_SUBJECT, body).await {
        Ok(ack) => match ack.await {
            Ok(_) => StatusCode::OK,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Listens for the floor's envelopes, `TagsChanged` and `ImageRecorded`, stamping each digest.
async fn listen(nats: &async_nats::Client, clock: Shared) -> anyhow::Result<()> {
    let mut floor = nats.subscribe(FLOOR_SUBJECT).await?;
    let mut changed = nats
        .subscribe(Kind::TagsChanged.namespace_filter(NAMESPACE))
        .await?;
    let mut recorded = nats
        .subscribe(Kind::ImagesRecorded.namespace_filter(NAMESPACE))
        .await?;
    let stamp =
        |clock: &Shared, which: fn(&mut Clock) -> &mut HashMap<String, Instant>, d: String| {
            let now = Instant::now();
            which(&mut clock.lock().unwrap()).entry(d).or_insert(now);
        };
    let c = clock.clone();
    tokio::spawn(async move {
        while let Some(message) = floor.next().await {
            let Ok(envelope) = serde_json::from_slice::<Value>(&message.payload) else {
                continue;
            };
            for event in envelope["events"].as_array().into_iter().flatten() {
                if event["action"] == "push"
                    && event["target"]["tag"].is_string()
                    && let Some(d) = event["target"]["digest"].as_str()
                {
                    stamp(&c, |c| &mut c.floor, d.to_owned());
                }
            }
        }
    });
    let c = clock.clone();
    tokio::spawn(async move {
        while let Some(message) = changed.next().await {
            if let Ok(event) = proto::TagsChanged::decode(message.payload) {
                for change in event.changes {
                    stamp(&c, |c| &mut c.changed, change.new_image);
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(message) = recorded.next().await {
            if let Ok(event) = proto::ImageRecorded::decode(message.payload) {
                stamp(&clock, |c| &mut c.recorded, event.digest);
            }
        }
    });
    Ok(())
}

/// Pushes new images whose one layer the registry holds already.
#[derive(Clone)]
struct Pusher {
    registry: RegistryPusher,
    streams: u64,
    layer: Value,
    run: String,
    /// Configs already uploaded (`--preupload`): image index → its manifest.
    prepared: Arc<HashMap<u64, Vec<u8>>>,
}

impl Pusher {
    /// Pushes image `i` (its config, unless prepared, then its manifest as tag `t<i>`); returns the
    /// manifest's digest and when its PUT was sent and answered.
    async fn push(&self, i: u64) -> anyhow::Result<(String, Pushed)> {
        let manifest = match self.prepared.get(&i) {
            Some(manifest) => manifest.clone(),
            None => self.prepare(i).await?,
        };
        let digest = sha256(&manifest);
        let sent = Instant::now();
        self.registry
            .manifest(&self.repository(i), &format!("t{i}"), manifest)
            .await?;
        let answered = Instant::now();
        Ok((digest, Pushed { sent, answered }))
    }

    fn repository(&self, i: u64) -> String {
        format!("{NAMESPACE}/app-{}", i % self.streams)
    }

    /// Uploads image `i`'s config; returns its manifest.
    async fn prepare(&self, i: u64) -> anyhow::Result<Vec<u8>> {
        self.registry
            .image(
                &self.repository(i),
                &format!("{}-{i}", self.run),
                &self.layer,
            )
            .await
    }
}

/// One phase's figures.
struct Phase {
    name: String,
    achieved: f64,
    /// From the PUT's answer: floor, `TagsChanged`, `ImageRecorded`.
    answered: [(Summary, usize); 3],
    /// From the PUT's sending: the same.
    sent: [(Summary, usize); 3],
    failed: u64,
}

/// A fresh registry and mesh, with `streams` repositories, pushed to by `drive_pushes`.
async fn phase<F, Fut>(
    name: String,
    streams: u64,
    read_metadata: bool,
    preupload: u64,
    drive_pushes: F,
) -> anyhow::Result<Phase>
where
    F: FnOnce(Pusher, Record) -> Fut,
    Fut: Future<Output = f64>,
{
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(jetstream::stream::Config {
        name: FLOOR_STREAM.to_owned(),
        subjects: vec![FLOOR_SUBJECT.to_owned()],
        ..Default::default()
    })
    .await?;
    let floor_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let floor_url = format!("http://{}/notifications", floor_listener.local_addr()?);
    let floor_app = Router::new()
        .route("/notifications", post(floor_endpoint))
        .with_state(js.clone());
    let floor_server = tokio::spawn(async move {
        let _ = axum::serve(floor_listener, floor_app).await;
    });
    // the watcher's port is held while the registry starts: each needs the other's address
    let reserved = std::net::TcpListener::bind("127.0.0.1:0")?;
    let watcher = reserved.local_addr()?;
    let registry = Registry::start(RegistryOptions {
        include_references: true,
        also_notify: vec![floor_url],
        ignored_actions: vec!["pull".to_owned()],
        ..RegistryOptions::notifying(format!("http://{watcher}/notifications"), Some(TOKEN))
    })
    .await?;
    drop(reserved);
    let host = registry.host();
    let app = TestApp::spawn_with(&nats, &ServiceName::ALL, |c| {
        c.registry_watcher.listen = watcher;
        c.registry_watcher.token = Some(Secret::new(TOKEN));
        c.integrated_registry.host = host;
        c.registry_watcher.read_metadata = read_metadata;
    })
    .await?;

    let clock: Shared = Arc::default();
    listen(&client, clock.clone()).await?;
    let pushing = RegistryPusher::new(reqwest::Client::new(), registry.url());
    let mut layer = Value::Null;
    for s in 0..streams {
        layer = pushing
            .blob(
                &format!("{NAMESPACE}/app-{s}"),
                b"the layer every image shares".to_vec(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
            .await?;
    }
    let pusher = Pusher {
        registry: pushing,
        streams,
        layer,
        run: uuid::Uuid::new_v4().to_string(),
        prepared: Arc::default(),
    };
    let prepared: HashMap<u64, Vec<u8>> = futures::stream::iter(0..preupload)
        .map(|i| {
            let pusher = pusher.clone();
            async move { anyhow::Ok((i, pusher.prepare(i).await?)) }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let pusher = Pusher {
        prepared: Arc::new(prepared),
        ..pusher
    };
    let failed = Arc::new(AtomicU64::new(0));
    let (c, f) = (clock.clone(), failed.clone());
    let record: Record = Arc::new(move |pushed| match pushed {
        Ok((digest, at)) => {
            c.lock().unwrap().pushed.insert(digest, at);
        }
        Err(error) => {
            if f.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("bench-push: a push failed: {error:#}");
            }
        }
    });
    let achieved = drive_pushes(pusher, record).await;
    // wait for the events, up to DRAIN
    let deadline = Instant::now() + DRAIN;
    let all_seen = || {
        let c = clock.lock().unwrap();
        let n = c.pushed.len();
        c.floor.len() >= n && c.changed.len() >= n && (!read_metadata || c.recorded.len() >= n)
    };
    while Instant::now() < deadline && !all_seen() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = {
        let c = clock.lock().unwrap();
        Phase {
            name,
            achieved,
            answered: [
                c.latencies(|c| &c.floor, false),
                c.latencies(|c| &c.changed, false),
                c.latencies(|c| &c.recorded, false),
            ],
            sent: [
                c.latencies(|c| &c.floor, true),
                c.latencies(|c| &c.changed, true),
                c.latencies(|c| &c.recorded, true),
            ],
            failed: failed.load(Ordering::Relaxed),
        }
    };
    app.stop().await?;
    floor_server.abort();
    drop(registry);
    Ok(result)
}

fn report(p: &Phase) {
    println!(
        "{}: {:.1} pushes/s achieved, {} failed",
        p.name, p.achieved, p.failed
    );
    for (from, series) in [("PUT answered", &p.answered), ("PUT sent", &p.sent)] {
        println!(" from the manifest {from}:");
        for (label, (summary, missing)) in
            ["floor: envelope relayed", "TagsChanged", "ImageRecorded"]
                .iter()
                .zip(series)
        {
            print_summary(label, 24, summary);
            if *missing > 0 {
                println!("    {missing} pushes never seen here within {DRAIN:?}");
            }
        }
        let (floor, changed) = (&series[0].0, &series[1].0);
        println!(
            "  TagsChanged / floor: p50 {:.2}x  p99 {:.2}x",
            changed.p50 / floor.p50,
            changed.p99 / floor.p99
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let streams = args.streams.max(1);
    println!(
        "bench-push: real docker-registry notifying the mesh (default configuration, read_metadata = true) and a \
         floor endpoint; {} streams, {} s per rate",
        args.streams, args.seconds
    );
    for rate in &args.rates {
        let rate = *rate;
        let count = (rate as f64 * args.seconds) as u64;
        // the default, then the same pushes with the metadata read off: the pipeline's own floor
        for read_metadata in [true, false] {
            let name = format!("open loop {rate}/s, read_metadata = {read_metadata}");
            let preupload = if args.preupload { count } else { 0 };
            let p = phase(
                name,
                streams,
                read_metadata,
                preupload,
                |pusher, record| async move {
                    drive(rate, 0, count, move |i| {
                        let (pusher, record) = (pusher.clone(), record.clone());
                        async move { record(pusher.push(i).await) }
                    })
                    .await
                },
            )
            .await?;
            report(&p);
        }
    }
    if let Some(pushers) = args.closed {
        let seconds = args.seconds;
        let p = phase(
            format!("closed loop, {pushers} pushers, read_metadata = true"),
            streams,
            true,
            0,
            |pusher, record| async move {
                let started = Instant::now();
                let next = Arc::new(AtomicU64::new(0));
                let tasks: Vec<_> = (0..pushers)
                    .map(|_| {
                        let (pusher, record, next) = (pusher.clone(), record.clone(), next.clone());
                        tokio::spawn(async move {
                            while started.elapsed().as_secs_f64() < seconds {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                record(pusher.push(i).await);
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    let _ = task.await;
                }
                next.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
            },
        )
        .await?;
        report(&p);
    }
    Ok(())
}
