//! `bench-bounds`: what one push costs as a stream ages and grows (issue 16),
//! against a real nats-server (default `max_payload`, 1 MiB) with the
//! registry-watcher and the stream-store in this process, in their default
//! configuration except `registry_watcher.read_metadata = false` (the pushed
//! digests are in no registry; `bench-push` measures the default, with a
//! real registry).
//!
//! - **Latency.** Closed loop: one notification envelope (as distribution
//!   sends it) is POSTed, and the next only once the `TagsChanged` naming its
//!   digest has arrived (a core subscription), so each sample is the cost
//!   of one push in that state of the stream.
//! - **Bytes per push.** What the push wrote to the KV bucket: the stream's
//!   header (which carries the pushed tag's record) and the tag's own key
//!   (the bucket keeps 64 revisions per key).
//! - **Series.** One tag pushed for the first time, after 1,000 and after
//!   10,000 earlier pushes (its history growing to the limit, then at it);
//!   a stream of 1, 1,000 and 10,000 tags with the same tag pushed each
//!   time; a stream of 1,000 and 10,000 tags with a different tag each push
//!   (tags last written when it was filled, then tags just written). The
//!   streams are filled first (32 notifications in flight), then a series'
//!   cases are measured in rounds that take each case in turn, so that the
//!   box's drift falls on all alike. Each case is a ratio to the series'
//!   first case; the goal is flat, within 1.2×.
//! - **Floor.** A JetStream publish (acked) received by a core subscriber,
//!   closed loop, in the same run.
//! - **Soak.** `--soak` pushes (100,000) to one tag, then this process's
//!   RSS and the bucket's bytes on disk.
//!
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-bounds
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use clap::{Parser, ValueEnum};
use futures::StreamExt as _;
use imagestreams::cli::ServiceName;
use imagestreams_common::{
    config::Secret,
    subjects::{self, Kind},
};
use imagestreams_integration::{
    NatsServer, TestApp,
    bench::{Summary, print_summary, summarize},
    load::{self, Push},
    wait_for,
};
use imagestreams_proto::v1 as proto;
use prost::Message as _;

const TOKEN: &str = "bench-bounds-token";
const NAMESPACE: &str = "bounds";
/// Measured pushes per case.
const SAMPLES: usize = 200;
/// The rounds a series' cases are measured in, in turn.
const ROUNDS: usize = 10;
/// Notifications in flight while a stream is filled.
const FILL_IN_FLIGHT: usize = 32;
/// How long a filled stream may take to settle.
const SETTLE: Duration = Duration::from_secs(120);
/// Goal: every case within this factor of its series' first.
const GOAL_RATIO: f64 = 1.2;
/// The stream-store's durable consumer of `ImagePushed`.
const STREAM_STORE_CONSUMER: &str = "stream-store";
/// The stream-store's durable consumer of the bucket (`TagsChanged`).
const CHANGEFEED_CONSUMER: &str = "stream-store-changefeed";
/// Pushes of the soak.
const DEFAULT_SOAK: usize = 100_000;

/// What one push costs as a stream ages and grows, against its floor
/// measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "bench-bounds", long_about = None, args_override_self = true)]
struct Args {
    /// Pushes of the soak (0: no soak).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SOAK)]
    soak: usize,
    /// Which series to run.
    #[arg(long, value_name = "S", value_enum, default_value_t = Series::All)]
    series: Series,
}

/// Pushes numbered in time order, whatever stream and tag they go to.
struct Pusher {
    http: reqwest::Client,
    url: String,
    nats: async_nats::Client,
    kv: jetstream::kv::Store,
    next: usize,
}

impl Pusher {
    fn push(&mut self, stream: &str, tag: &str) -> Push {
        self.next += 1;
        Push::numbered(NAMESPACE, self.next - 1, stream, tag)
    }

    /// Pushes `count` images to the tags `tag(i)` of `stream`, many in
    /// flight, and waits until the last is current.
    async fn fill(
        &mut self,
        stream: &str,
        count: usize,
        tag: impl Fn(usize) -> String,
    ) -> anyhow::Result<()> {
        if count == 0 {
            return Ok(());
        }
        let pushes: Vec<Push> = (0..count).map(|i| self.push(stream, &tag(i))).collect();
        let watchers = [self.url.clone()];
        for chunk in pushes.chunks(10_000) {
            load::notify_all(
                &self.http,
                &watchers,
                TOKEN,
                chunk,
                FILL_IN_FLIGHT,
                Duration::from_secs(60),
            )
            .await?;
        }
        // every push applied and its TagsChanged sent: the next case
        // measures alone, not behind the fill's backlog
        let js = jetstream::new(self.nats.clone());
        let drained = |stream: String, consumer: &'static str| {
            let js = js.clone();
            async move {
                let Ok(stream) = js.get_stream(stream).await else {
                    return false;
                };
                stream
                    .consumer_info(consumer)
                    .await
                    .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
            }
        };
        wait_for(
            || async {
                drained(subjects::STREAM_IMAGES.to_owned(), STREAM_STORE_CONSUMER).await
                    && drained(
                        format!("KV_{}", subjects::BUCKET_STREAMS),
                        CHANGEFEED_CONSUMER,
                    )
                    .await
            },
            SETTLE,
        )
        .await?;
        // and the server done with the fill's writes (flushes, compaction)
        tokio::time::sleep(Duration::from_secs(3)).await;
        let last = pushes.last().expect("count > 0");
        let reader =
            imagestreams_stream_store_api::StreamReader::new(self.kv.clone(), self.nats.clone());
        wait_for(
            || async {
                reader.get(NAMESPACE, stream).await.is_ok_and(|s| {
                    s.status_tag(&last.tag)
                        .and_then(|t| t.latest())
                        .is_some_and(|l| l.image == last.digest)
                })
            },
            SETTLE,
        )
        .await
    }

    /// Closed-loop pushes to `stream`, the `i`-th (for `i` in `samples`) to
    /// `tag(i)`: their latencies, and the bytes they wrote.
    async fn measure(
        &mut self,
        stream: &str,
        samples: std::ops::Range<usize>,
        tag: &dyn Fn(usize) -> String,
    ) -> anyhow::Result<(Vec<u64>, usize)> {
        let mut changes = self
            .nats
            .subscribe(Kind::TagsChanged.subject(NAMESPACE, stream))
            .await?;
        self.nats.flush().await?;
        let header = subjects::stream_key(NAMESPACE, stream);
        let (mut nanos, mut bytes) = (Vec::with_capacity(samples.len()), 0);
        for i in samples {
            let push = self.push(stream, &tag(i));
            let started = Instant::now();
            load::notify(
                &self.http,
                std::slice::from_ref(&self.url),
                TOKEN,
                &push,
                Duration::from_secs(10),
            )
            .await?;
            loop {
                let message = tokio::time::timeout(Duration::from_secs(10), changes.next())
                    .await
                    .context("no TagsChanged within 10 s")?
                    .context("subscription closed")?;
                let event = proto::TagsChanged::decode(message.payload)?;
                if event.changes.iter().any(|c| c.new_image == push.digest) {
                    break;
                }
            }
            nanos.push(started.elapsed().as_nanos() as u64);
            let tag_key = subjects::tag_key(NAMESPACE, stream, &push.tag);
            for key in [&header, &tag_key] {
                let entry = self.kv.entry(key).await?.context("a record of the push")?;
                bytes += entry.value.len();
            }
        }
        Ok((nanos, bytes))
    }

    /// [`SAMPLES`] pushes of each case, in [`ROUNDS`] rounds that take
    /// every case in turn, so that the box's drift during the run falls on
    /// all cases alike: each case's latencies and mean bytes per push.
    async fn interleaved(
        &mut self,
        cases: &[Case],
    ) -> anyhow::Result<Vec<(String, Summary, usize)>> {
        let per_round = SAMPLES / ROUNDS;
        let mut measured = vec![(Vec::with_capacity(SAMPLES), 0); cases.len()];
        for round in 0..ROUNDS {
            let samples = round * per_round..(round + 1) * per_round;
            for (case, (nanos, bytes)) in cases.iter().zip(measured.iter_mut()) {
                let (more, written) = self
                    .measure(&case.stream, samples.clone(), &case.tag)
                    .await?;
                nanos.extend(more);
                *bytes += written;
            }
        }
        Ok(cases
            .iter()
            .zip(measured)
            .map(|(case, (nanos, bytes))| (case.name.clone(), summarize(nanos), bytes / SAMPLES))
            .collect())
    }
}

/// One case of a series: pushes to `stream`, the `i`-th to `tag(i)`.
struct Case {
    name: String,
    stream: String,
    tag: Box<dyn Fn(usize) -> String>,
}

impl Case {
    fn new(
        name: impl Into<String>,
        stream: impl Into<String>,
        tag: impl Fn(usize) -> String + 'static,
    ) -> Case {
        Case {
            name: name.into(),
            stream: stream.into(),
            tag: Box::new(tag),
        }
    }
}

/// A JetStream publish (acked) and its receipt by a core subscriber.
async fn floor(nats: &async_nats::Client) -> anyhow::Result<Summary> {
    let js = jetstream::new(nats.clone());
    js.get_or_create_stream(stream::Config {
        name: "BENCH_BOUNDS_FLOOR".into(),
        subjects: vec!["bench.bounds.floor".into()],
        ..Default::default()
    })
    .await?;
    let mut received = nats.subscribe("bench.bounds.floor").await?;
    nats.flush().await?;
    let mut nanos = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let started = Instant::now();
        js.publish("bench.bounds.floor", format!("{i}").into())
            .await?
            .await?;
        received.next().await.context("floor subscription closed")?;
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    Ok(summarize(nanos))
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Prints one series: each case with its ratio to the first.
fn report(title: &str, cases: &[(String, Summary, usize)]) {
    println!("{title}");
    let first = cases.first().map(|c| c.1).unwrap_or_default();
    for (name, summary, bytes) in cases {
        print_summary(name, 26, summary);
        println!(
            "  {:<26} {bytes} bytes written per push; p50 {:.2}×, p99 {:.2}× of the first case (goal ≤ {GOAL_RATIO}×)",
            "",
            summary.p50 / first.p50,
            summary.p99 / first.p99,
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { soak, series } = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        imagestreams_common::telemetry::init(&Default::default())?;
    }
    let nats = NatsServer::start().await?;
    let app = TestApp::spawn_with(
        &nats,
        &[ServiceName::RegistryWatcher, ServiceName::StreamStore],
        |c| {
            c.registry_watcher.token = Some(Secret::new(TOKEN));
            c.registry_watcher.read_metadata = false;
        },
    )
    .await?;
    let client = nats.connect().await?;
    let kv = jetstream::new(client.clone())
        .get_key_value(subjects::BUCKET_STREAMS)
        .await?;
    let mut pusher = Pusher {
        http: reqwest::Client::new(),
        url: format!("http://{}/notifications", app.addr("notifications")),
        nats: client.clone(),
        kv,
        next: 0,
    };
    println!(
        "bench-bounds: {SAMPLES} closed-loop pushes per case, history_limit {}, max_payload {}",
        app.config.stream_store.history_limit,
        client.server_info().max_payload
    );
    print_summary(
        "floor (JetStream publish → core receive)",
        26,
        &floor(&client).await?,
    );

    if series != Series::Tags {
        history_series(&mut pusher).await?;
    }
    if series != Series::History {
        tags_series(&mut pusher).await?;
    }
    if soak > 0 {
        soak_run(&nats, &client, &mut pusher, soak).await?;
    }
    app.stop().await
}

/// Which series to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Series {
    /// One tag, as its history ages.
    History,
    /// A stream, as it gains tags.
    Tags,
    /// Both series.
    All,
}

/// One tag, as its history ages: three streams, one pushed to for the
/// first time, the others after 1,000 and 10,000 earlier pushes.
async fn history_series(pusher: &mut Pusher) -> anyhow::Result<()> {
    for before in [1_000, 10_000] {
        pusher
            .fill(&format!("aged-{before}"), before, |_| "latest".into())
            .await?;
    }
    let cases = [
        Case::new("first pushes (history growing to 50)", "aged-0", |_| {
            "latest".into()
        }),
        Case::new("after 1000 pushes", "aged-1000", |_| "latest".into()),
        Case::new("after 10000 pushes", "aged-10000", |_| "latest".into()),
    ];
    let history = pusher.interleaved(&cases).await?;
    report("one tag, by earlier pushes:", &history);
    Ok(())
}

/// A stream, as it gains tags, under two patterns of pushes: one tag pushed
/// again and again (a CI pushing `latest`), and a different tag each push
/// (a release train), the second starting from the 1,000-tag stream since a
/// stream of one tag cannot spread its pushes.
async fn tags_series(pusher: &mut Pusher) -> anyhow::Result<()> {
    for count in [1, 1_000, 10_000] {
        pusher
            .fill(&format!("tags-{count}"), count, |i| format!("t{i}"))
            .await?;
    }
    let hot = [
        Case::new("1 tag", "tags-1", |_| "t0".into()),
        Case::new("1000 tags", "tags-1000", |_| "t0".into()),
        Case::new("10000 tags", "tags-10000", |_| "t0".into()),
    ];
    let hot = pusher.interleaved(&hot).await?;
    // tags last written while the stream was filled; then the same tags of
    // the biggest stream again, just written by the case before in the
    // round: sets apart what the number of tags costs from what the age of
    // the pushed tag's last write costs
    let spread = [
        Case::new("1000 tags", "tags-1000", |i| format!("t{}", i + 1)),
        Case::new("10000 tags", "tags-10000", |i| format!("t{}", i + 1)),
        Case::new("10000 tags, recent tags", "tags-10000", |i| {
            format!("t{}", i + 1)
        }),
    ];
    let spread = pusher.interleaved(&spread).await?;
    report("one stream, by tags, the same tag pushed each time:", &hot);
    report("one stream, by tags, a different tag each push:", &spread);
    Ok(())
}

/// `soak` pushes to one tag, then what the process and the bucket hold.
async fn soak_run(
    nats: &NatsServer,
    client: &async_nats::Client,
    pusher: &mut Pusher,
    soak: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    pusher.fill("soak", soak, |_| "latest".into()).await?;
    let took = started.elapsed();
    let mut bucket = jetstream::new(client.clone())
        .get_stream(format!("KV_{}", subjects::BUCKET_STREAMS))
        .await?;
    let state = bucket.info().await?.state.clone();
    println!(
        "soak: {soak} pushes to one tag in {took:.1?} ({:.0}/s); then RSS {:.0} MiB (this process: \
         watcher, stream-store and bench), bucket {} messages, {:.1} MiB; nats store on disk {:.1} MiB",
        soak as f64 / took.as_secs_f64(),
        rss_mib(),
        state.messages,
        state.bytes as f64 / 1048576.0,
        disk_bytes(nats.store_dir()) as f64 / 1048576.0,
    );
    Ok(())
}
