//! `bench-watcher`: registry notification → `TagsChanged` latency at a
//! sustained rate, against a real nats-server with the registry-watcher and
//! the stream-store in this process, beside the raw JetStream floor for the
//! same hops measured in the same run.
//!
//! - **Load.** `--rate` envelopes per second (1,000 by default) for
//!   `--seconds` (60), open loop: each envelope is POSTed on schedule in its
//!   own task, whatever the previous ones are doing. Each envelope is shaped
//!   like distribution 2.8's: one `push` event of an OCI manifest with a tag
//!   and a digest never seen before, spread over `--streams` streams ×
//!   `--tags` tags. `--warmup` seconds at the same rate come first, unmeasured.
//! - **Latency.** From just before the POST to the receipt of the
//!   `TagsChanged` whose `new_image` is the pushed digest, by a JetStream
//!   consumer of `IMAGESTREAMS_TAGS`. The POST's own round trip (answered
//!   once the `ImagePushed` is acknowledged) is reported too.
//! - **Floor.** The same hops with no processing: publish (with a message
//!   id, awaiting the ack) to a stream → a durable pull consumer relays each
//!   message by publishing it (acked) to a second stream and acking → a
//!   consumer of the second stream receives it. Same rate, `--floor-seconds`
//!   (15) after a warmup, run before the main load.
//!
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-watcher -- --seconds 60
//! ```
#![forbid(unsafe_code)]

use std::{
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
use clap::Parser;
use futures::StreamExt as _;
use imagestreams::cli::ServiceName;
use imagestreams_common::{config::Secret, subjects};
use imagestreams_integration::bench::{Summary, drive, print_summary, summarize};
use imagestreams_integration::{NatsServer, TestApp};

/// Envelopes per second.
const DEFAULT_RATE: u64 = 1_000;
/// Seconds of measured load.
const DEFAULT_SECONDS: f64 = 60.0;
/// Seconds of unmeasured load before it.
const DEFAULT_WARMUP: f64 = 3.0;
/// Seconds of the measured floor.
const DEFAULT_FLOOR_SECONDS: f64 = 15.0;
/// Streams the pushes are spread over.
const DEFAULT_STREAMS: u64 = 1_000;
/// Tags per stream.
const DEFAULT_TAGS: u64 = 3;
/// How long to wait for the last events after the load ends.
const DRAIN: Duration = Duration::from_secs(10);
/// The watcher's token.
const TOKEN: &str = "bench-watcher-token";
/// The integrated registry host written into the streams.
const REGISTRY_HOST: &str = "registry.bench:5000";
/// The namespace of the pushed streams.
const NAMESPACE: &str = "bench";
/// The floor's streams.
const FLOOR_IN: &str = "BENCH_FLOOR_IN";
const FLOOR_OUT: &str = "BENCH_FLOOR_OUT";

/// Goal: p99 at most this, in milliseconds.
const GOAL_P99_MS: f64 = 5.0;
/// Goal: p50 within this factor of the floor's p50.
const GOAL_P50_RATIO: f64 = 3.0;

/// Registry notification → `TagsChanged` latency at a sustained rate, against
/// the raw JetStream floor of the same hops measured in the same run.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "bench-watcher",
    long_about = None,
    args_override_self = true,
    allow_negative_numbers = true
)]
struct Args {
    /// Envelopes per second.
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
    /// Streams the pushes are spread over.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), default_value_t = DEFAULT_STREAMS)]
    streams: u64,
    /// Tags per stream.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), default_value_t = DEFAULT_TAGS)]
    tags: u64,
    /// Also stamp each message's intermediate stages (`ImagePushed` stored,
    /// the stream-store's KV write) and report the latency between them.
    #[arg(long)]
    stages: bool,
    /// Write every message's stage stamps to this file, one line each.
    #[arg(long, value_name = "FILE")]
    dump: Option<std::path::PathBuf>,
}

/// The stages a message is stamped at.
const SENT: usize = 0;
/// `ImagePushed` stored (seen by a consumer; `--stages` only).
const PUSHED: usize = 1;
/// The stream-store's KV write seen (`--stages` only).
const WRITTEN: usize = 2;
/// `TagsChanged` (or the floor's relayed message) received.
const RECEIVED: usize = 3;
const STAGES: usize = 4;

/// When each message reached each stage, in nanoseconds since the start
/// (0 = not yet); the first stamp of a stage wins.
struct Clock {
    start: Instant,
    stamps: Vec<[AtomicU64; STAGES]>,
    received: AtomicU64,
}

impl Clock {
    fn new(count: usize) -> Arc<Clock> {
        Arc::new(Clock {
            start: Instant::now(),
            stamps: (0..count).map(|_| Default::default()).collect(),
            received: AtomicU64::new(0),
        })
    }

    fn mark(&self, i: usize, stage: usize) {
        let now = self.start.elapsed().as_nanos().max(1) as u64;
        let Some(slot) = self.stamps.get(i) else {
            return;
        };
        let first = slot[stage]
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first && stage == RECEIVED {
            self.received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every message was received, or nothing new arrives for [`DRAIN`].
    async fn wait_received(&self) {
        let (mut last, mut since) = (0, Instant::now());
        loop {
            let now = self.received.load(Ordering::Relaxed);
            if now as usize >= self.stamps.len() || since.elapsed() > DRAIN {
                return;
            }
            if now != last {
                (last, since) = (now, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes one line per message: its index and every stage's stamp in
    /// microseconds since the start (0 = never reached).
    fn dump(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(out, "index sent_us pushed_us written_us received_us")?;
        for (i, s) in self.stamps.iter().enumerate() {
            let us = |stage: usize| s[stage].load(Ordering::Acquire) / 1000;
            writeln!(
                out,
                "{i} {} {} {} {}",
                us(SENT),
                us(PUSHED),
                us(WRITTEN),
                us(RECEIVED)
            )?;
        }
        out.flush()
    }

    /// The time from stage `from` to stage `to` of the messages in `range`
    /// that reached both.
    fn spans(&self, range: std::ops::Range<usize>, from: usize, to: usize) -> Vec<u64> {
        self.stamps[range]
            .iter()
            .filter_map(|s| {
                let (a, b) = (
                    s[from].load(Ordering::Acquire),
                    s[to].load(Ordering::Acquire),
                );
                (a != 0 && b != 0).then(|| b.saturating_sub(a))
            })
            .collect()
    }
}

/// The digest of message `i`: its index in hex, so the receiver finds it.
fn digest_of(i: u64) -> String {
    format!("sha256:{i:064x}")
}

fn index_of(digest: &str) -> Option<usize> {
    usize::from_str_radix(digest.strip_prefix("sha256:")?, 16).ok()
}

/// One envelope as distribution 2.8 sends it for a manifest push by tag.
fn envelope(i: u64, args: &Args) -> String {
    let stream = i % args.streams;
    let tag = (i / args.streams) % args.tags;
    let digest = digest_of(i);
    serde_json::json!({ "events": [{
        "id": format!("bench-{i}-{}", uuid::Uuid::new_v4()),
        "timestamp": "2024-05-01T12:34:56.789012345Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 527,
            "digest": digest,
            "length": 527,
            "repository": format!("{NAMESPACE}/app-{stream}"),
            "url": format!("http://{REGISTRY_HOST}/v2/{NAMESPACE}/app-{stream}/manifests/{digest}"),
            "tag": format!("t{tag}"),
        },
        "request": {"id": uuid::Uuid::new_v4().to_string(), "addr": "127.0.0.1:40000",
                    "host": REGISTRY_HOST, "method": "PUT", "useragent": "skopeo/1.9.3"},
        "actor": {},
        "source": {"addr": "registry:5000", "instanceID": "bench"}
    }]})
    .to_string()
}

/// The strings at `path` (nested length-delimited field numbers) of an
/// encoded protobuf message, read without generated code: `[7, 3]` of a
/// `TagsChanged` is every change's `new_image`, `[5]` of an `ImagePushed`
/// its digest.
fn proto_strings(payload: &[u8], path: &[u64]) -> Vec<String> {
    fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    fn fields(b: &[u8], want: u64) -> Option<Vec<&[u8]>> {
        let (mut at, mut out) = (0, Vec::new());
        while at < b.len() {
            let key = varint(b, &mut at)?;
            match key & 7 {
                0 => {
                    varint(b, &mut at)?;
                }
                1 => at += 8,
                5 => at += 4,
                2 => {
                    let len = varint(b, &mut at)? as usize;
                    let field = b.get(at..at + len)?;
                    if key >> 3 == want {
                        out.push(field);
                    }
                    at += len;
                }
                _ => return None,
            }
        }
        Some(out)
    }
    let mut level = vec![payload];
    for &number in path {
        level = level
            .into_iter()
            .flat_map(|b| fields(b, number).unwrap_or_default())
            .collect();
    }
    level
        .into_iter()
        .filter_map(|s| std::str::from_utf8(s).ok().map(str::to_owned))
        .collect()
}

/// The `newImage`s of a stored record's `change` (found in the JSON text).
fn record_new_images(payload: &[u8]) -> Vec<usize> {
    const KEY: &[u8] = b"\"newImage\":\"";
    let mut out = Vec::new();
    let mut rest = payload;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let end = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
        if let Some(i) = std::str::from_utf8(&rest[..end]).ok().and_then(index_of) {
            out.push(i);
        }
    }
    out
}

/// An ephemeral consumer of new messages on `filter` that stamps each
/// message index `find` reports at `stage`.
async fn stamp<F>(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    clock: Arc<Clock>,
    stage: usize,
    find: F,
) -> anyhow::Result<tokio::task::JoinHandle<()>>
where
    F: Fn(&jetstream::Message) -> Vec<usize> + Send + 'static,
{
    let consumer = js
        .get_stream(stream)
        .await?
        .create_consumer(pull::Config {
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    Ok(tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let Ok(message) = message else { continue };
            for i in find(&message) {
                clock.mark(i, stage);
            }
        }
    }))
}

/// The floor: publish → relay (consume, publish, ack) → consume, no processing.
async fn floor(js: &jetstream::Context, args: &Args) -> anyhow::Result<(Summary, f64)> {
    for (name, subject) in [
        (FLOOR_IN, "bench.floor.in.>"),
        (FLOOR_OUT, "bench.floor.out.>"),
    ] {
        js.get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            storage: stream::StorageType::File,
            duplicate_window: imagestreams_common::nats::DEFAULT_DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await?;
    }
    let relay_consumer = js
        .get_stream(FLOOR_IN)
        .await?
        .get_or_create_consumer(
            "relay",
            pull::Config {
                durable_name: Some("relay".to_owned()),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await?;
    let relay_js = js.clone();
    let relay = tokio::spawn(async move {
        let mut messages = relay_consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            let subject = message
                .subject
                .replacen("bench.floor.in.", "bench.floor.out.", 1);
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("out-{}", message.subject).as_str(),
            );
            relay_js
                .publish_with_headers(subject, headers, message.payload.clone())
                .await?
                .await?;
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        }
        anyhow::Ok(())
    });

    let warm = (args.warmup * args.rate as f64) as usize;
    let measured = (args.floor_seconds * args.rate as f64) as usize;
    let clock = Clock::new(warm + measured);
    let receiver = stamp(
        js,
        FLOOR_OUT,
        "bench.floor.out.>",
        clock.clone(),
        RECEIVED,
        |m| {
            m.subject
                .rsplit('.')
                .next()
                .and_then(|s| s.parse().ok())
                .into_iter()
                .collect()
        },
    )
    .await?;
    let sender = |i: u64| {
        let (js, clock) = (js.clone(), clock.clone());
        async move {
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("in-{i}").as_str(),
            );
            let published = async {
                clock.mark(i as usize, SENT);
                js.publish_with_headers(
                    format!("bench.floor.in.{i}"),
                    headers,
                    vec![0u8; 64].into(),
                )
                .await?
                .await?;
                anyhow::Ok(())
            };
            if let Err(e) = published.await {
                eprintln!("floor publish {i} failed: {e:#}");
            }
        }
    };
    let rate = drive(args.rate, 0, (warm + measured) as u64, sender).await;
    clock.wait_received().await;
    relay.abort();
    receiver.abort();
    let spans = clock.spans(warm..warm + measured, SENT, RECEIVED);
    println!(
        "floor: {measured} messages at {rate:.0}/s achieved, {} received",
        spans.len()
    );
    Ok((summarize(spans), rate))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        imagestreams_common::telemetry::init(&Default::default())?;
    }
    let nats = NatsServer::start().await?;
    let app = TestApp::spawn_with(
        &nats,
        &[ServiceName::StreamStore, ServiceName::RegistryWatcher],
        |c| {
            c.registry_watcher.token = Some(Secret::new(TOKEN));
            c.integrated_registry.host = REGISTRY_HOST.to_owned();
            // The envelopes name digests no registry holds: see "Image metadata" in BENCHMARKS.md.
            c.registry_watcher.read_metadata = false;
        },
    )
    .await?;
    let url = format!("http://{}/notifications", app.addr("notifications"));
    let js = jetstream::new(nats.connect().await?);
    println!(
        "bench-watcher: nats-server + registry-watcher + stream-store in one process; {}/s for {} s \
         (+{} s warmup) over {} streams x {} tags; floor {} s{}",
        args.rate,
        args.seconds,
        args.warmup,
        args.streams,
        args.tags,
        args.floor_seconds,
        if args.stages {
            "; stage consumers on"
        } else {
            ""
        }
    );

    let (floor, _) = floor(&js, &args).await?;

    let warm = (args.warmup * args.rate as f64) as usize;
    let measured = (args.seconds * args.rate as f64) as usize;
    let total = warm + measured;
    let clock = Clock::new(total);
    let mut stampers = vec![
        stamp(
            &js,
            subjects::STREAM_TAGS,
            "imagestreams.tags.changed.>",
            clock.clone(),
            RECEIVED,
            |m| {
                proto_strings(&m.payload, &[7, 3])
                    .iter()
                    .filter_map(|d| index_of(d))
                    .collect()
            },
        )
        .await?,
    ];
    if args.stages {
        stampers.push(
            stamp(
                &js,
                subjects::STREAM_IMAGES,
                "imagestreams.images.pushed.>",
                clock.clone(),
                PUSHED,
                |m| {
                    proto_strings(&m.payload, &[5])
                        .iter()
                        .filter_map(|d| index_of(d))
                        .collect()
                },
            )
            .await?,
        );
        stampers.push(
            stamp(
                &js,
                &format!("KV_{}", subjects::BUCKET_STREAMS),
                &format!("$KV.{}.>", subjects::BUCKET_STREAMS),
                clock.clone(),
                WRITTEN,
                |m| record_new_images(&m.payload),
            )
            .await?,
        );
    }

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let round_trips = Arc::new(std::sync::Mutex::new(Vec::with_capacity(measured)));
    let failures = Arc::new(AtomicU64::new(0));
    let bodies: Arc<Vec<String>> =
        Arc::new((0..total as u64).map(|i| envelope(i, &args)).collect());
    let bearer = format!("Bearer {TOKEN}");
    let sender = |i: u64| {
        let (http, url, clock, bodies, bearer) = (
            http.clone(),
            url.clone(),
            clock.clone(),
            bodies.clone(),
            bearer.clone(),
        );
        let (round_trips, failures) = (round_trips.clone(), failures.clone());
        async move {
            let request = http
                .post(&url)
                .header(
                    "Content-Type",
                    "application/vnd.docker.distribution.events.v1+json",
                )
                .header("Authorization", bearer)
                .body(bodies[i as usize].clone());
            let before = Instant::now();
            clock.mark(i as usize, SENT);
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    if i as usize >= warm {
                        let rt = before.elapsed().as_nanos() as u64;
                        round_trips
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(rt);
                    }
                }
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
    let rate = drive(args.rate, 0, total as u64, sender).await;
    clock.wait_received().await;
    for task in stampers {
        task.abort();
    }
    let range = warm..total;
    if let Some(path) = &args.dump {
        clock.dump(path)?;
        println!("stamps written to {}", path.display());
    }
    let pipeline = summarize(clock.spans(range.clone(), SENT, RECEIVED));
    let posts = summarize(std::mem::take(
        &mut *round_trips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    ));
    println!(
        "watcher: {measured} notifications at {rate:.0}/s achieved, {} failed POSTs, {} TagsChanged matched ({} missing)",
        failures.load(Ordering::Relaxed),
        pipeline.count,
        measured - pipeline.count
    );

    println!("latency (ms):");
    print_summary("floor: JetStream pub→relay→sub", 34, &floor);
    print_summary("POST round trip (ImagePushed acked)", 34, &posts);
    if args.stages {
        print_summary(
            "  POST → ImagePushed consumed",
            34,
            &summarize(clock.spans(range.clone(), SENT, PUSHED)),
        );
        print_summary(
            "  ImagePushed → KV write consumed",
            34,
            &summarize(clock.spans(range.clone(), PUSHED, WRITTEN)),
        );
        print_summary(
            "  KV write → TagsChanged consumed",
            34,
            &summarize(clock.spans(range.clone(), WRITTEN, RECEIVED)),
        );
    }
    print_summary("notification → TagsChanged", 34, &pipeline);
    let p50_ratio = pipeline.p50 / floor.p50;
    let p99_ratio = pipeline.p99 / floor.p99;
    println!(
        "ratios: p50 {:.2}x the floor (goal <= {GOAL_P50_RATIO}x: {}), p99 {:.2}x the floor; p99 {:.3} ms (goal <= {GOAL_P99_MS} ms: {})",
        p50_ratio,
        if p50_ratio <= GOAL_P50_RATIO {
            "met"
        } else {
            "MISSED"
        },
        p99_ratio,
        pipeline.p99,
        if pipeline.p99 <= GOAL_P99_MS {
            "met"
        } else {
            "MISSED"
        },
    );
    app.stop().await?;
    Ok(())
}
