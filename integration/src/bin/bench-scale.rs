//! `bench-scale`: load at size. A real nats-server and the stream-store and
//! gateway as their own processes (`imagestreams serve …`, release build),
//! so that their memory can be read from `/proc`:
//!
//! - **Idle RSS** of each service right after it is ready.
//! - **Growth**: streams of 10 tags created in steps (`--steps`, default
//!   1,000, 10,000, 100,000); after each step the RSS of the stream-store,
//!   the gateway and nats-server, the time to List the whole namespace in
//!   pages of 500 and of one page, and Get latency.
//! - **Watch fan-out**: `--watchers` (10,000) concurrent gRPC watches over
//!   `--connections` (100) HTTP/2 connections; then `--events` (20) streams
//!   created one by one, each timed from the Create call to its arrival at
//!   every watcher. Floor, same run: the Create round trip itself.
//!
//! ```text
//! cargo build --release -p imagestreams -p imagestreams-integration --bin bench-scale
//! NATS_SERVER=/path/to/nats-server target/release/bench-scale
//! ```
#![forbid(unsafe_code)]

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{ArgAction, Parser};
use futures::StreamExt as _;
use imagestreams_common::model::{self, ImageStream, ObjectReference, TagReference};
use imagestreams_integration::{NatsServer, bench, free_port, wait_for, wait_ready};
use imagestreams_proto::v1::{self as proto, image_streams_client::ImageStreamsClient};
use tonic::transport::Channel;

/// The namespace of the grown streams.
const NAMESPACE: &str = "scale";
/// The namespace the fan-out watches.
const FANOUT: &str = "fanout";
/// Concurrent creates while growing.
const CREATE_CONCURRENCY: usize = 64;

/// Load at size: the services' memory, List and Get as the streams grow, and
/// watch fan-out.
#[derive(Debug, Clone, Parser)]
#[command(name = "bench-scale", long_about = None, args_override_self = true)]
struct Args {
    /// Stream counts to grow to, in turn.
    #[arg(
        long,
        value_name = "N,N,…",
        value_delimiter = ',',
        action = ArgAction::Set,
        default_values_t = [1_000, 10_000, 100_000]
    )]
    steps: Vec<usize>,
    /// Concurrent gRPC watches of the fan-out.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    watchers: usize,
    /// HTTP/2 connections the watches share.
    #[arg(long, value_name = "N", default_value_t = 100)]
    connections: usize,
    /// Streams created one by one, each timed to every watcher.
    #[arg(long, value_name = "N", default_value_t = 20)]
    events: usize,
}

/// A stream with 10 spec tags, each a DockerImage reference (no import).
fn sample(name: &str) -> ImageStream {
    let mut is = ImageStream::new(NAMESPACE, name);
    for t in 0..10 {
        is.spec.tags.push(TagReference {
            name: format!("v{t}"),
            from: Some(ObjectReference {
                kind: model::FROM_DOCKER_IMAGE.into(),
                name: format!("quay.io/scale/{name}:v{t}"),
                namespace: String::new(),
            }),
            reference: true,
            ..TagReference::default()
        });
    }
    is
}

/// A service process of the release build.
struct Service {
    child: tokio::process::Child,
}

impl Service {
    fn spawn(name: &str, env: &[(&str, String)]) -> anyhow::Result<Service> {
        let exe = std::env::current_exe()?;
        let binary: PathBuf = exe
            .parent()
            .context("the bench's directory")?
            .join("imagestreams");
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: cargo build --release -p imagestreams",
            binary.display()
        );
        let child = tokio::process::Command::new(binary)
            .args(["serve", name])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Service { child })
    }

    fn rss_mib(&self) -> f64 {
        self.child.id().map_or(0.0, rss_mib)
    }
}

/// The resident set of `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn grow(
    client: &ImageStreamsClient<Channel>,
    from: usize,
    to: usize,
) -> anyhow::Result<Duration> {
    bench::create_all(from..to, CREATE_CONCURRENCY, |i| {
        let mut client = client.clone();
        async move {
            client
                .create(proto::CreateRequest {
                    namespace: NAMESPACE.into(),
                    image_stream: Some(sample(&format!("s{i:06}")).into()),
                })
                .await?;
            Ok(())
        }
    })
    .await
}

/// The whole namespace walked in pages of 500 (one call over gRPC's 4 MiB
/// limit would be refused at these sizes), and one page of 500.
async fn list_times(client: &ImageStreamsClient<Channel>) -> anyhow::Result<(Duration, Duration)> {
    let mut client = client.clone();
    let start = Instant::now();
    let mut token = String::new();
    let mut first_page = None;
    loop {
        let page_start = Instant::now();
        let page = client
            .list(proto::ListRequest {
                namespace: NAMESPACE.into(),
                limit: 500,
                continue_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        first_page.get_or_insert(page_start.elapsed());
        anyhow::ensure!(!page.items.is_empty(), "an empty page");
        if page.continue_token.is_empty() {
            break;
        }
        token = page.continue_token;
    }
    Ok((start.elapsed(), first_page.unwrap_or_default()))
}

async fn get_latency(
    client: &ImageStreamsClient<Channel>,
    streams: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut client = client.clone();
    let mut samples = Vec::with_capacity(1000);
    for i in 0..1000 {
        let name = format!("s{:06}", (i * 7919) % streams);
        let start = Instant::now();
        client
            .get(proto::GetRequest {
                namespace: NAMESPACE.into(),
                name,
                ..Default::default()
            })
            .await?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok((pct(&samples, 0.5), pct(&samples, 0.99)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats = NatsServer::start().await?;
    let nats_pid = nats_pid(&nats)?;
    let grpc = free_port()?;
    let env = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("IMAGESTREAMS_NATS__URL", nats.url()),
            ("IMAGESTREAMS_NATS__AUTO_START", "false".to_owned()),
            ("IMAGESTREAMS_AUTH__ENABLED", "false".to_owned()),
        ];
        env.extend(extra);
        env
    };
    let store_http = free_port()?;
    let gateway_http = free_port()?;
    let store = Service::spawn(
        "stream-store",
        &env(vec![(
            "IMAGESTREAMS_STREAM_STORE__HTTP_LISTEN",
            format!("127.0.0.1:{store_http}"),
        )]),
    )?;
    let gateway = Service::spawn(
        "gateway",
        &env(vec![
            (
                "IMAGESTREAMS_GATEWAY__GRPC_LISTEN",
                format!("127.0.0.1:{grpc}"),
            ),
            (
                "IMAGESTREAMS_GATEWAY__HTTP_LISTEN",
                format!("127.0.0.1:{gateway_http}"),
            ),
            // its local CA would land in the working directory
            ("IMAGESTREAMS_GATEWAY__KUBE__ENABLED", "false".to_owned()),
        ]),
    )?;
    for port in [store_http, gateway_http] {
        wait_ready(port, Duration::from_secs(30)).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "idle RSS: stream-store {:.1} MiB, gateway {:.1} MiB, nats-server {:.1} MiB",
        store.rss_mib(),
        gateway.rss_mib(),
        rss_mib(nats_pid)
    );
    let client = ImageStreamsClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await?
        .max_decoding_message_size(1 << 30);

    println!(
        "{:>8} | {:>9} | {:>12} | {:>10} | {:>10} | {:>10} | {:>9} | {:>14}",
        "streams",
        "create/s",
        "store RSS",
        "gateway RSS",
        "nats RSS",
        "List all/500",
        "List 500",
        "Get p50 / p99"
    );
    let mut have = 0;
    for &step in &args.steps {
        let took = grow(&client, have, step).await.context("growing")?;
        let rate = (step - have) as f64 / took.as_secs_f64();
        have = step;
        // pages come from the gateway's read cache, so a full walk is
        // measured at every size
        let (whole, page) = list_times(&client).await.context("listing")?;
        let (p50, p99) = get_latency(&client, have).await.context("getting")?;
        println!(
            "{step:>8} | {rate:>9.0} | {:>8.1} MiB | {:>7.1} MiB | {:>6.1} MiB | {:>7.0} ms | {:>6.1} ms | {p50:>5.2} / {p99:>5.2} ms",
            store.rss_mib(),
            gateway.rss_mib(),
            rss_mib(nats_pid),
            whole.as_secs_f64() * 1000.0,
            page.as_secs_f64() * 1000.0,
        );
    }

    fan_out(&args, grpc, &client, &gateway).await
}

/// The pid of the kit's nats-server, found by its store directory.
fn nats_pid(nats: &NatsServer) -> anyhow::Result<u32> {
    let store = nats.store_dir().to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"nats-server"))
            && args.contains(&store.as_bytes())
        {
            return Ok(pid);
        }
    }
    anyhow::bail!("no nats-server with the store {store}")
}

async fn fan_out(
    args: &Args,
    grpc: u16,
    client: &ImageStreamsClient<Channel>,
    gateway: &Service,
) -> anyhow::Result<()> {
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(
            Channel::from_shared(format!("http://127.0.0.1:{grpc}"))?
                .connect()
                .await?,
        );
    }
    // every arrival as (event index, time), the time taken before any lock;
    // and per event how many watchers have it, so that waiting for an event
    // never scans the arrivals while the receivers record (index 0: warm-up)
    let arrivals: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::new(Mutex::new(Vec::with_capacity(
        args.watchers * (args.events + 1),
    )));
    let counts: Arc<Vec<AtomicUsize>> =
        Arc::new((0..=args.events).map(|_| AtomicUsize::new(0)).collect());
    let opened = Instant::now();
    let mut tasks = Vec::with_capacity(args.watchers);
    for w in 0..args.watchers {
        let mut watcher = ImageStreamsClient::new(channels[w % channels.len()].clone());
        let (arrivals, counts) = (arrivals.clone(), counts.clone());
        let mut events = watcher
            .watch(proto::WatchRequest {
                namespace: FANOUT.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                let at = Instant::now();
                let name = event
                    .object
                    .and_then(|o| o.metadata)
                    .map(|m| m.name)
                    .unwrap_or_default();
                if let Some(index) = event_index(&name) {
                    arrivals.lock().unwrap().push((index, at));
                    counts[index].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    println!(
        "fan-out: {} watches open over {} connections in {:.1} s; gateway RSS {:.1} MiB",
        args.watchers,
        args.connections,
        opened.elapsed().as_secs_f64(),
        gateway.rss_mib()
    );
    // a warm-up event every watcher must see before the measured ones
    let create = |index: usize| {
        let mut client = client.clone();
        async move {
            let start = Instant::now();
            client
                .create(proto::CreateRequest {
                    namespace: FANOUT.into(),
                    image_stream: Some(ImageStream::new(FANOUT, event_name(index)).into()),
                })
                .await?;
            anyhow::Ok((start, start.elapsed()))
        }
    };
    let watchers = args.watchers;
    let all_arrived = |index: usize| {
        let counts = counts.clone();
        async move {
            wait_for(
                || async { counts[index].load(Ordering::Relaxed) >= watchers },
                Duration::from_secs(60),
            )
            .await
            .with_context(|| {
                format!(
                    "{} reached {} of {watchers}",
                    event_name(index),
                    counts[index].load(Ordering::Relaxed)
                )
            })
        }
    };
    create(0).await?;
    all_arrived(0).await?;

    // the start of each measured event, by index
    let mut sent = vec![None];
    let mut floor = Vec::new();
    for index in 1..=args.events {
        let (start, round_trip) = create(index).await?;
        floor.push(round_trip.as_secs_f64() * 1000.0);
        sent.push(Some(start));
        all_arrived(index).await?;
    }
    let mut latencies: Vec<f64> = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(index, at)| {
            let start = sent[*index]?;
            Some(at.duration_since(start).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    floor.sort_by(f64::total_cmp);
    let p99 = pct(&latencies, 0.99);
    println!(
        "fan-out: {} deliveries ({} events x {} watchers): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         floor (the Create round trip) p50 {:.2} ms; p99 {:.1} ms (goal <= 100 ms: {})",
        latencies.len(),
        args.events,
        watchers,
        pct(&latencies, 0.5),
        pct(&latencies, 0.9),
        p99,
        latencies.last().copied().unwrap_or(f64::NAN),
        pct(&floor, 0.5),
        p99,
        if p99 <= 100.0 { "met" } else { "MISSED" }
    );
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// The fan-out's stream of event `index` (0: the warm-up).
fn event_name(index: usize) -> String {
    format!("e{index:03}")
}

fn event_index(name: &str) -> Option<usize> {
    name.strip_prefix('e')?.parse().ok()
}
