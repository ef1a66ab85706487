//! `bench-trigger`: image push → webhook received, at a sustained rate,
//! against a real nats-server with the services in this process, beside the
//! floor of the same transport hops measured in the same run.
//!
//! - **Source** (`--source`):
//!   - `notification` (default): registry notification envelopes (shaped like
//!     distribution 2.8's with `includereferences`, one tagged manifest push
//!     each, of a new image that a real docker-registry holds: they are pushed
//!     to it by digest before the clock starts) POSTed to the real
//!     registry-watcher, applied by the real stream-store, whose `TagsChanged`
//!     fires the trigger service: the whole path of a push, in the default
//!     configuration (the watcher's metadata recorder reads each image from
//!     the registry; `--no-metadata` turns it off).
//!   - `tags-changed`: `TagsChanged` published straight to JetStream (the
//!     trigger service alone).
//! - **Load.** `--rate` pushes per second (500 by default) for `--seconds`
//!   (30), open loop: each is sent on schedule in its own task, spread over
//!   `--streams` streams (200), each followed by one Build trigger with a
//!   signed webhook to a local HTTP receiver. `--warmup` seconds (3) at the
//!   same rate come first, unmeasured.
//! - **Latency.** From just before the POST (or publish) to the webhook
//!   request's arrival at the receiver, matched by the pushed digest.
//! - **Floor.** The same transport with no processing: publish (with a
//!   message id, awaiting the ack) to a stream → a durable pull consumer
//!   POSTs each message to the same receiver and acks. Same rate,
//!   `--floor-seconds` (10) after a warmup, run before the main load.
//!
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-trigger
//! ```
#![forbid(unsafe_code)]

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, DeliverPolicy, pull},
        stream,
    },
};
use axum::{Router, body::Bytes, extract::State, routing::post};
use clap::{Parser, ValueEnum};
use futures::StreamExt as _;
use imagestreams::cli::ServiceName;
use imagestreams_common::{config::Secret, nats::publish_event, subjects::Kind};
use imagestreams_integration::bench::{
    RegistryPusher, Summary, drive, print_summary, sha256, summarize,
};
use imagestreams_integration::{NatsServer, Registry, RegistryOptions, TestApp};
use imagestreams_proto::v1 as proto;
use imagestreams_trigger_api::{
    NewTrigger, TagRef, TriggerClient, TriggerKind, TriggerSpec, Webhook, WebhookSecret,
};
use tokio::sync::mpsc;

/// Pushes per second.
const DEFAULT_RATE: u64 = 500;
/// Seconds of measured load.
const DEFAULT_SECONDS: f64 = 30.0;
/// Seconds of unmeasured load before it.
const DEFAULT_WARMUP: f64 = 3.0;
/// Seconds of the measured floor.
const DEFAULT_FLOOR_SECONDS: f64 = 10.0;
/// Streams (and triggers) the pushes are spread over.
const DEFAULT_STREAMS: u64 = 200;
/// How long to wait for the last webhooks after the load ends.
const DRAIN: Duration = Duration::from_secs(10);
/// The watcher's token.
const TOKEN: &str = "bench-trigger-token";
/// The integrated registry host written into the streams published straight as `TagsChanged`.
const REGISTRY_HOST: &str = "registry.bench:5000";
/// Images pushed to the registry at once before the clock starts.
const UPLOAD_CONCURRENCY: usize = 16;
/// The namespace of the streams and triggers.
const NAMESPACE: &str = "bench";
/// The tag every push and trigger uses.
const TAG: &str = "latest";
/// The floor's stream.
const FLOOR_STREAM: &str = "BENCH_TRIGGER_FLOOR";
/// Goal: p99 at most this, in milliseconds.
const GOAL_P99_MS: f64 = 10.0;

/// What the pushes go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// Registry notifications, through the registry-watcher and the
    /// stream-store: the whole path of a push.
    Notification,
    /// `TagsChanged` published straight to JetStream (the trigger service
    /// alone).
    TagsChanged,
}

/// Image push → webhook received, at a sustained rate, against the floor of
/// the same transport hops measured in the same run.
#[derive(Debug, Clone, Copy, Parser)]
#[command(
    name = "bench-trigger",
    long_about = None,
    args_override_self = true,
    allow_negative_numbers = true
)]
struct Args {
    /// What the pushes go through.
    #[arg(long, value_name = "SOURCE", value_enum, default_value_t = Source::Notification)]
    source: Source,
    /// Pushes per second.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), default_value_t = DEFAULT_RATE)]
    rate: u64,
    /// Seconds of measured load.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SECONDS)]
    seconds: f64,
    /// Seconds of unmeasured load before it.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_WARMUP)]
    warmup: f64,
    /// Seconds of the measured floor.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_FLOOR_SECONDS)]
    floor_seconds: f64,
    /// Streams (and triggers) the pushes are spread over.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), default_value_t = DEFAULT_STREAMS)]
    streams: u64,
    /// Turn the registry-watcher's metadata recorder off
    /// (`registry_watcher.read_metadata = false`).
    #[arg(long)]
    no_metadata: bool,
}

/// Send times of every push, by index, in nanoseconds since the start (0 =
/// not sent).
struct Clock {
    start: Instant,
    sent: Vec<AtomicU64>,
}

impl Clock {
    fn new(count: usize) -> Arc<Clock> {
        Arc::new(Clock {
            start: Instant::now(),
            sent: (0..count).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos().max(1) as u64
    }

    fn mark_sent(&self, i: usize) {
        self.sent[i].store(self.now(), Ordering::Release);
    }

    fn latency(&self, i: usize) -> Option<u64> {
        let sent = self.sent.get(i)?.load(Ordering::Acquire);
        (sent != 0).then(|| self.now().saturating_sub(sent))
    }
}

/// The digest of push `i` when no registry holds it: its index in hex.
fn digest_of(i: u64) -> String {
    format!("sha256:{i:064x}")
}

/// The image of each push, and back from a digest to its push.
#[derive(Default)]
struct Images {
    /// Push `i`'s manifest: digest, size and the blobs it references.
    pushed: Vec<Image>,
    index: HashMap<String, usize>,
}

/// One manifest in the registry.
struct Image {
    digest: String,
    size: usize,
    references: serde_json::Value,
}

impl Images {
    /// Images no registry holds, `count` of them.
    fn synthetic(count: u64) -> Images {
        Images::from(
            (0..count)
                .map(|i| Image {
                    digest: digest_of(i),
                    size: 527,
                    references: serde_json::Value::Array(Vec::new()),
                })
                .collect::<Vec<_>>(),
        )
    }

    /// `count` new images pushed by digest to `registry` (a config each over one shared layer), spread
    /// over the streams as the pushes are.
    async fn upload(registry: &Registry, count: u64, args: &Args) -> anyhow::Result<Images> {
        let pusher = RegistryPusher::new(reqwest::Client::new(), registry.url());
        let mut layers = Vec::new();
        for s in 0..args.streams {
            let layer = pusher
                .blob(
                    &format!("{NAMESPACE}/app-{s}"),
                    b"the layer every image shares".to_vec(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
                .await?;
            layers.push(layer);
        }
        let run = uuid::Uuid::new_v4().to_string();
        let pushed = futures::stream::iter(0..count)
            .map(|i| {
                let (pusher, layer, run) = (pusher.clone(), layers[0].clone(), run.clone());
                let repository = format!("{NAMESPACE}/{}", stream_of(i, args));
                async move {
                    let manifest = pusher
                        .image(&repository, &format!("{run}-{i}"), &layer)
                        .await?;
                    let doc: serde_json::Value = serde_json::from_slice(&manifest)?;
                    let image = Image {
                        digest: sha256(&manifest),
                        size: manifest.len(),
                        references: serde_json::json!([doc["config"], layer]),
                    };
                    pusher
                        .manifest(&repository, &image.digest, manifest)
                        .await?;
                    anyhow::Ok(image)
                }
            })
            .buffered(UPLOAD_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Images::from(pushed))
    }

    fn index_of(&self, digest: &str) -> Option<usize> {
        self.index.get(digest).copied()
    }
}

impl From<Vec<Image>> for Images {
    fn from(pushed: Vec<Image>) -> Self {
        let index = pushed
            .iter()
            .enumerate()
            .map(|(i, image)| (image.digest.clone(), i))
            .collect();
        Images { pushed, index }
    }
}

fn stream_of(i: u64, args: &Args) -> String {
    format!("app-{}", i % args.streams)
}

/// One envelope as distribution 2.8 sends it for a manifest push by tag (with `includereferences`).
fn envelope(i: u64, args: &Args, images: &Images) -> String {
    let stream = stream_of(i, args);
    let image = &images.pushed[i as usize];
    let digest = &image.digest;
    serde_json::json!({ "events": [{
        "id": format!("bench-{i}-{}", uuid::Uuid::new_v4()),
        "timestamp": "2024-05-01T12:34:56.789012345Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": image.size,
            "digest": digest,
            "length": image.size,
            "repository": format!("{NAMESPACE}/{stream}"),
            "url": format!("http://{REGISTRY_HOST}/v2/{NAMESPACE}/{stream}/manifests/{digest}"),
            "tag": TAG,
            "references": image.references,
        },
        "request": {"id": uuid::Uuid::new_v4().to_string(), "addr": "127.0.0.1:40000",
                    "host": REGISTRY_HOST, "method": "PUT", "useragent": "skopeo/1.9.3"},
        "actor": {},
        "source": {"addr": "registry:5000", "instanceID": "bench"}
    }]})
    .to_string()
}

/// Collects the latencies of `measured` indexes until `expected` arrived or
/// `DRAIN` passes without one.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<usize>,
    clock: Arc<Clock>,
    measured: std::ops::Range<usize>,
) -> Vec<u64> {
    let mut out = Vec::with_capacity(measured.len());
    let mut seen = vec![false; measured.end];
    while out.len() < measured.len() {
        match tokio::time::timeout(DRAIN, rx.recv()).await {
            Ok(Some(i)) if measured.contains(&i) && !seen[i] => {
                seen[i] = true;
                if let Some(latency) = clock.latency(i) {
                    out.push(latency);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// The local webhook receiver: reports the index of each delivered digest
/// (webhook bodies carry `image`; floor bodies are the bare digest).
async fn receiver(
    images: Arc<Images>,
) -> anyhow::Result<(String, mpsc::UnboundedReceiver<usize>, Arc<AtomicU64>)> {
    #[derive(Clone)]
    struct Sink {
        tx: mpsc::UnboundedSender<usize>,
        requests: Arc<AtomicU64>,
        images: Arc<Images>,
    }
    async fn hook(State(sink): State<Sink>, body: Bytes) -> &'static str {
        sink.requests.fetch_add(1, Ordering::Relaxed);
        let image = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("image").and_then(|i| i.as_str()).map(str::to_owned))
            .or_else(|| std::str::from_utf8(&body).ok().map(str::to_owned));
        if let Some(i) = image.as_deref().and_then(|d| sink.images.index_of(d)) {
            let _ = sink.tx.send(i);
        }
        "ok"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let (tx, rx) = mpsc::unbounded_channel();
    let requests = Arc::new(AtomicU64::new(0));
    let app = Router::new().route("/hook", post(hook)).with_state(Sink {
        tx,
        requests: requests.clone(),
        images,
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, rx, requests))
}

/// The floor: publish → durable consumer → POST to the receiver → ack.
async fn floor(
    js: &jetstream::Context,
    args: &Args,
    http: &reqwest::Client,
) -> anyhow::Result<Summary> {
    js.get_or_create_stream(stream::Config {
        name: FLOOR_STREAM.to_owned(),
        subjects: vec!["bench.trigger.floor.>".to_owned()],
        ..Default::default()
    })
    .await?;
    let warm = (args.warmup * args.rate as f64) as u64;
    let measured = (args.floor_seconds * args.rate as f64) as u64;
    let total = warm + measured;
    let (url, rx, _) = receiver(Arc::new(Images::synthetic(total))).await?;
    let consumer = js
        .get_stream(FLOOR_STREAM)
        .await?
        .create_consumer(pull::Config {
            durable_name: Some("floor".to_owned()),
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let relay_http = http.clone();
    let relay = tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let Ok(message) = message else { continue };
            let (http, url) = (relay_http.clone(), url.clone());
            tokio::spawn(async move {
                let _ = http.post(&url).body(message.payload.clone()).send().await;
                let _ = message.ack().await;
            });
        }
    });
    let clock = Clock::new(total as usize);
    let collected = tokio::spawn(collect(rx, clock.clone(), warm as usize..total as usize));
    let sender = |i: u64| {
        let (js, clock) = (js.clone(), clock.clone());
        async move {
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("floor-{i}").as_str(),
            );
            clock.mark_sent(i as usize);
            match js
                .publish_with_headers(
                    format!("bench.trigger.floor.{}", i % 100),
                    headers,
                    digest_of(i).into(),
                )
                .await
            {
                Ok(ack) => {
                    let _ = ack.await;
                }
                Err(e) => eprintln!("floor publish {i}: {e}"),
            }
        }
    };
    let rate = drive(args.rate, 0, total, sender).await;
    let latencies = collected.await?;
    relay.abort();
    println!(
        "floor: {measured} messages at {rate:.0}/s achieved ({} received)",
        latencies.len()
    );
    Ok(summarize(latencies))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        imagestreams_common::telemetry::init(&Default::default())?;
    }
    let nats = NatsServer::start().await?;
    let warm = (args.warmup * args.rate as f64) as u64;
    let measured = (args.seconds * args.rate as f64) as u64;
    let total = warm + measured;
    // notifications name images a real registry holds, so that the metadata recorder reads them as it
    // does a real push's (the default); published TagsChanged need none
    let registry = match args.source {
        Source::Notification => Some(Registry::start(RegistryOptions::default()).await?),
        Source::TagsChanged => None,
    };
    let images = Arc::new(match &registry {
        Some(registry) => {
            let started = Instant::now();
            let images = Images::upload(registry, total, &args).await?;
            println!(
                "bench-trigger: {total} images pushed by digest to a real docker-registry in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            images
        }
        None => Images::synthetic(total),
    });
    let registry_host = registry
        .as_ref()
        .map_or_else(|| REGISTRY_HOST.to_owned(), Registry::host);
    let services: &[ServiceName] = match args.source {
        Source::Notification => &[
            ServiceName::StreamStore,
            ServiceName::RegistryWatcher,
            ServiceName::Trigger,
        ],
        Source::TagsChanged => &[ServiceName::Trigger],
    };
    let app = TestApp::spawn_with(&nats, services, |c| {
        c.registry_watcher.token = Some(Secret::new(TOKEN));
        c.integrated_registry.host = registry_host.clone();
        c.registry_watcher.read_metadata = !args.no_metadata;
        c.trigger.webhook.allow_loopback = true;
    })
    .await?;
    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    println!(
        "bench-trigger: nats-server + {} in one process; source {:?}; {}/s for {} s (+{} s warmup) over {} \
         streams, one Build trigger with a signed webhook each; floor {} s",
        services
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" + "),
        args.source,
        args.rate,
        args.seconds,
        args.warmup,
        args.streams,
        args.floor_seconds
    );

    let floor = floor(&js, &args, &http).await?;

    let (hook_url, rx, hook_requests) = receiver(images.clone()).await?;
    let triggers = TriggerClient::new(client.clone());
    futures::stream::iter(0..args.streams)
        .map(|s| {
            let (triggers, hook_url) = (triggers.clone(), hook_url.clone());
            async move {
                let trigger = NewTrigger {
                    namespace: NAMESPACE.to_owned(),
                    name: format!("build-{s}"),
                    spec: TriggerSpec {
                        from: TagRef {
                            namespace: NAMESPACE.to_owned(),
                            stream: format!("app-{s}"),
                            tag: TAG.to_owned(),
                        },
                        kind: TriggerKind::Build,
                        paused: false,
                        container: String::new(),
                        webhook: Some(Webhook {
                            url: hook_url,
                            secret: Some(WebhookSecret::new("bench-secret")),
                        }),
                        mirror: None,
                    },
                    fire_existing: true,
                };
                triggers.create(&trigger).await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

    let clock = Clock::new(total as usize);
    let collected = tokio::spawn(collect(rx, clock.clone(), warm as usize..total as usize));
    let failures = Arc::new(AtomicU64::new(0));
    let rate = match args.source {
        Source::Notification => {
            let url = format!("http://{}/notifications", app.addr("notifications"));
            let bodies: Arc<Vec<String>> =
                Arc::new((0..total).map(|i| envelope(i, &args, &images)).collect());
            let bearer = format!("Bearer {TOKEN}");
            let sender = |i: u64| {
                let (http, url, clock, bodies, bearer, failures) = (
                    http.clone(),
                    url.clone(),
                    clock.clone(),
                    bodies.clone(),
                    bearer.clone(),
                    failures.clone(),
                );
                async move {
                    let request = http
                        .post(&url)
                        .header(
                            "Content-Type",
                            "application/vnd.docker.distribution.events.v1+json",
                        )
                        .header("Authorization", bearer)
                        .body(bodies[i as usize].clone());
                    clock.mark_sent(i as usize);
                    match request.send().await {
                        Ok(response) if response.status().is_success() => {}
                        Ok(response) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!("POST {i}: {}", response.status());
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!("POST {i}: {e}");
                        }
                    }
                }
            };
            drive(args.rate, 0, total, sender).await
        }
        Source::TagsChanged => {
            let sender = |i: u64| {
                let (js, clock, failures, images) =
                    (js.clone(), clock.clone(), failures.clone(), images.clone());
                let stream = stream_of(i, &args);
                async move {
                    let digest = images.pushed[i as usize].digest.clone();
                    let revision = i + 1;
                    let event = proto::TagsChanged {
                        event_id: format!("bench-{stream}:{revision}"),
                        namespace: NAMESPACE.to_owned(),
                        stream: stream.clone(),
                        uid: format!("bench-{stream}"),
                        resource_version: revision.to_string(),
                        time: None,
                        changes: vec![proto::TagChange {
                            tag: TAG.to_owned(),
                            old_image: String::new(),
                            new_image: digest.clone(),
                            docker_image_reference: format!(
                                "{REGISTRY_HOST}/{NAMESPACE}/{stream}@{digest}"
                            ),
                            generation: 1,
                        }],
                        cause: None,
                    };
                    clock.mark_sent(i as usize);
                    let subject = Kind::TagsChanged.subject(NAMESPACE, &stream);
                    if let Err(e) =
                        publish_event(&js, subject, &event.event_id, &event, HeaderMap::new()).await
                    {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("publish {i}: {e}");
                    }
                }
            };
            drive(args.rate, 0, total, sender).await
        }
    };
    let latencies = collected.await?;
    let received = latencies.len();
    let pipeline = summarize(latencies);
    println!(
        "trigger: {measured} pushes at {rate:.0}/s achieved, {} failed sends, {received} webhooks matched ({} missing), \
         {} webhook requests in all",
        failures.load(Ordering::Relaxed),
        measured as usize - received,
        hook_requests.load(Ordering::Relaxed),
    );
    let what = match args.source {
        Source::Notification => "notification → webhook received",
        Source::TagsChanged => "TagsChanged → webhook received",
    };
    println!("latency (ms):");
    print_summary("floor: JetStream pub→consume→HTTP POST", 38, &floor);
    print_summary(what, 38, &pipeline);
    println!(
        "ratios: p50 {:.2}x the floor, p99 {:.2}x the floor; p99 {:.3} ms (goal <= {GOAL_P99_MS} ms: {})",
        pipeline.p50 / floor.p50,
        pipeline.p99 / floor.p99,
        pipeline.p99,
        if pipeline.p99 <= GOAL_P99_MS && received == measured as usize {
            "met"
        } else {
            "MISSED"
        },
    );
    app.stop().await?;
    Ok(())
}
