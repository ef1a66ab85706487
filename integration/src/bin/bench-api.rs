//! `bench-api`: the gateway's read path against a real nats-server and the
//! real stream-store, with its floor measured in the same run.
//!
//! - **Get** throughput with N concurrent gRPC clients (one connection
//!   each), reading 256 streams in rotation, against the floor: the gRPC
//!   health `Check` served by the same tonic server over the same connections
//!   (a no-op call). Short rounds alternate floor and Get so that each pair
//!   sees the same machine load; the figure is the median of the per-pair
//!   ratios. `--clients 16,64,256` (the default) runs each N in turn: a Get of
//!   the latest state waits one round trip to the server, which the no-op
//!   does not, so it needs more calls in flight to keep the CPUs busy. The
//!   throughput of each call is its best over the Ns (the server's capacity,
//!   as a load test finds it), and the goal is judged on the ratio of the two
//!   bests; every N's own ratio is printed as well.
//! - **List** over `--streams` streams (10,000 by default): one full list,
//!   and a paged walk with `--page` items per page.
//! - `--resource-version RV`: the Gets ask for `RV` (Kubernetes' semantics:
//!   empty, the default, reads the latest state; `0` whatever the gateway's
//!   read cache holds, with no round trip to the server).
//! - `--auth`: the same with authentication on. Every Get carries a service
//!   account's token (resolved through the identity store: the token's
//!   identity, then its bindings), seeding and List a configured
//!   cluster-admin's; the floor's `Check` carries none. `--auth-cache-size N`
//!   sets `auth.cache_size` (0: every request reads the KV).
//!
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-api
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-api -- --auth
//! ```
#![forbid(unsafe_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::{ArgAction, Parser};
use imagestreams::cli::ServiceName;
use imagestreams_common::{
    auth::{
        Role, Token,
        store::{RoleBindingConfig, TokenConfig},
    },
    config::Config,
    model::{self, ImageStream, ObjectReference, TagReference},
};
use imagestreams_integration::{Bearer, NatsServer, TestApp, bench};
use imagestreams_proto::v1::{
    self as proto, auth_client::AuthClient, image_streams_client::ImageStreamsClient,
};
use tokio::sync::Barrier;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Concurrent clients of the throughput runs, one run each.
const DEFAULT_CLIENTS: [usize; 3] = [16, 64, 256];
/// Length of one measured round.
const DEFAULT_ROUND: Duration = Duration::from_millis(1500);
/// Rounds of each call.
const DEFAULT_ROUNDS: usize = 6;
/// Streams listed.
const DEFAULT_STREAMS: usize = 10_000;
/// Page size of the paged list.
const DEFAULT_PAGE: i64 = 500;
/// Concurrent creates while seeding.
const SEED_CONCURRENCY: usize = 64;
/// Streams the Get runs read, in rotation.
const GET_STREAMS: usize = 256;
/// The namespace of the listed streams.
const NAMESPACE: &str = "bench";
/// The configured cluster-admin's token, with `--auth`.
const ADMIN_TOKEN: &str = "bench-admin-0123456789";

/// The gateway's read path (Get and List) against its floor, measured in the
/// same run.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "bench-api",
    long_about = None,
    args_override_self = true,
    allow_negative_numbers = true
)]
struct Args {
    /// Concurrent gRPC clients of the Get runs, one run each.
    #[arg(
        long,
        value_name = "N[,N…]",
        value_delimiter = ',',
        action = ArgAction::Set,
        value_parser = parse_count,
        default_values_t = DEFAULT_CLIENTS
    )]
    clients: Vec<usize>,
    /// Length of one measured round, in seconds.
    #[arg(
        long,
        value_name = "S",
        value_parser = parse_seconds,
        default_value_t = DEFAULT_ROUND.as_secs_f64()
    )]
    seconds: f64,
    /// Rounds of each call.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROUNDS)]
    rounds: usize,
    /// Streams listed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_STREAMS)]
    streams: usize,
    /// Page size of the paged list.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PAGE)]
    page: i64,
    /// Authentication on: every Get carries a service account's token.
    #[arg(long)]
    auth: bool,
    /// `auth.cache_size` (0: every request reads the KV); implies `--auth`,
    /// which alone keeps the default.
    #[arg(long, value_name = "N")]
    auth_cache_size: Option<usize>,
    /// The Gets' `resource_version` (empty, the default: the latest state).
    #[arg(long, value_name = "RV", default_value = "", hide_default_value = true)]
    resource_version: String,
}

impl Args {
    /// Length of one measured round.
    fn round(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    /// `Some(auth.cache_size)` with auth on.
    fn auth_cache(&self) -> Option<usize> {
        let default = imagestreams_common::auth::cache::DEFAULT_CACHE_SIZE;
        self.auth_cache_size.or(self.auth.then_some(default))
    }
}

/// A length in seconds that a `Duration` holds (`--seconds`).
fn parse_seconds(value: &str) -> Result<f64, String> {
    let seconds = value.parse::<f64>().map_err(|e| e.to_string())?;
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())?;
    Ok(seconds)
}

/// A count above 0 (`--clients`).
fn parse_count(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(0) | Err(_) => Err("--clients takes counts above 0, separated by commas".to_owned()),
        Ok(n) => Ok(n),
    }
}

/// A stream like the ones users create: one DockerImage tag, two labels.
fn sample(name: &str) -> ImageStream {
    let mut is = ImageStream::new(NAMESPACE, name);
    is.metadata.labels.insert("app".into(), name.into());
    is.metadata.labels.insert("team".into(), "bench".into());
    is.spec.docker_image_repository = format!("quay.io/bench/{name}");
    is.spec.tags.push(TagReference {
        name: "latest".into(),
        from: Some(ObjectReference {
            kind: model::FROM_DOCKER_IMAGE.into(),
            name: format!("quay.io/bench/{name}:latest"),
            namespace: String::new(),
        }),
        ..TagReference::default()
    });
    is
}

/// Runs `call` on `clients` tasks for `round`, returning calls per second
/// and the CPU microseconds (all processes) per call.
async fn throughput<C, F, Fut>(
    clients: &[C],
    round: Duration,
    call: F,
) -> anyhow::Result<(f64, f64)>
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let barrier = Arc::new(Barrier::new(clients.len() + 1));
    let mut tasks = Vec::new();
    for client in clients {
        let (client, call, barrier) = (client.clone(), call.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            // warm up: the connection, the server's caches
            for _ in 0..50 {
                call(client.clone()).await?;
            }
            barrier.wait().await;
            let end = Instant::now() + round;
            let mut calls = 0u64;
            while Instant::now() < end {
                call(client.clone()).await?;
                calls += 1;
            }
            anyhow::Ok(calls)
        }));
    }
    barrier.wait().await;
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let (elapsed, cpu) = (start.elapsed(), cpu_seconds() - cpu);
    Ok((
        total as f64 / elapsed.as_secs_f64(),
        1e6 * cpu / total as f64,
    ))
}

/// Auth on, with the cluster-admin [`ADMIN_TOKEN`] and a cache of `cache_size`.
fn with_auth(config: &mut Config, cache_size: usize) {
    config.auth.enabled = true;
    config.auth.cache_size = cache_size;
    config.auth.tokens.push(TokenConfig {
        name: "bench-admin".into(),
        token_sha256: Token::new(ADMIN_TOKEN).hash().as_str().to_owned(),
        groups: Vec::new(),
    });
    config.auth.role_bindings.push(RoleBindingConfig {
        namespace: None,
        role: Role::ClusterAdmin,
        user: Some("bench-admin".into()),
        group: None,
    });
}

/// A service account that may view [`NAMESPACE`], made by the admin: its token.
async fn viewer_token(channel: Channel) -> anyhow::Result<String> {
    let mut auth = AuthClient::with_interceptor(channel, Bearer(Some(ADMIN_TOKEN.into())));
    let account = auth
        .create_service_account(proto::CreateServiceAccountRequest {
            namespace: NAMESPACE.into(),
            name: "bench-viewer".into(),
        })
        .await?
        .into_inner();
    auth.create_role_binding(proto::CreateRoleBindingRequest {
        namespace: NAMESPACE.into(),
        role: "view".into(),
        user: account.identity,
        group: String::new(),
    })
    .await?;
    Ok(account.token)
}

/// Linux's USER_HZ: the unit of the CPU times in `/proc/<pid>/stat`.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) used so far by this process and its children
/// that are still running (the nats-server), from `/proc`.
fn cpu_seconds() -> f64 {
    let ticks = |pid: &str| -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0.0;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15; `fields` starts at field 3
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        field(11) + field(12)
    };
    let mut total = ticks("self");
    let tasks = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten();
    for task in tasks {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            total += ticks(child);
        }
    }
    total / CLOCK_TICKS_PER_SECOND
}

/// The medians of one concurrency's rounds.
struct Run {
    clients: usize,
    floor: f64,
    get: f64,
    ratio: f64,
    cpu_ratio: f64,
}

/// The gateway's Gets and Lists answered from its read cache.
const CACHE_READS: &str = "imagestreams_gateway_read_cache_reads_total{source=\"cache\"}";
/// The round trips those reads made to learn the server's last revision.
const CACHE_CHECKS: &str = "imagestreams_gateway_read_cache_checks_total";

/// One sample of the Prometheus text at `url` (0 when absent).
async fn metric(url: &str, sample: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(url).await?.error_for_status()?.text().await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats = NatsServer::start().await?;
    let app = TestApp::spawn_with(
        &nats,
        &[ServiceName::StreamStore, ServiceName::Gateway],
        |config| {
            if let Some(cache_size) = args.auth_cache() {
                with_auth(config, cache_size);
            }
        },
    )
    .await?;
    let url = app.grpc_url();
    println!(
        "bench-api: nats-server + stream-store + gateway in one process, {:?} clients, {} rounds of {:?} each, {}",
        args.clients,
        args.rounds,
        args.round(),
        match args.auth_cache() {
            Some(size) =>
                format!("auth on (Get with a service account's token, auth.cache_size = {size})"),
            None => "auth off".to_owned(),
        }
    );

    let most = args.clients.iter().copied().max().unwrap_or(1);
    let mut channels = Vec::new();
    for _ in 0..most {
        channels.push(Channel::from_shared(url.clone())?.connect().await?);
    }
    let (admin, viewer) = match args.auth_cache() {
        Some(_) => (
            Bearer(Some(ADMIN_TOKEN.into())),
            Bearer(Some(viewer_token(channels[0].clone()).await?)),
        ),
        None => (Bearer(None), Bearer(None)),
    };
    let api = ImageStreamsClient::with_interceptor(channels[0].clone(), admin);
    for i in 0..GET_STREAMS {
        api.clone()
            .create(proto::CreateRequest {
                namespace: NAMESPACE.into(),
                image_stream: Some(sample(&format!("get-{i:03}")).into()),
            })
            .await?;
    }
    // Gets rotate over GET_STREAMS streams, so concurrent gets read different keys.
    let next = Arc::new(AtomicUsize::new(0));

    let check = |channel: Channel| async move {
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        anyhow::Ok(())
    };
    let asked = args.resource_version.clone();
    let get = move |channel: Channel| {
        let name = format!(
            "get-{:03}",
            next.fetch_add(1, Ordering::Relaxed) % GET_STREAMS
        );
        let viewer = viewer.clone();
        let resource_version = asked.clone();
        async move {
            ImageStreamsClient::with_interceptor(channel, viewer)
                .get(proto::GetRequest {
                    namespace: NAMESPACE.into(),
                    name,
                    resource_version,
                })
                .await?;
            anyhow::Ok(())
        }
    };
    let metrics = format!("{}/metrics", app.http_url());
    let mut runs = Vec::new();
    for &clients in &args.clients {
        let channels = &channels[..clients];
        let (mut floors, mut gets, mut ratios, mut cpu_ratios) = (vec![], vec![], vec![], vec![]);
        let (reads, checks) = (
            metric(&metrics, CACHE_READS).await?,
            metric(&metrics, CACHE_CHECKS).await?,
        );
        println!("{clients} clients:");
        for round in 1..=args.rounds {
            let (floor, floor_us) = throughput(channels, args.round(), check).await?;
            let (got, get_us) = throughput(channels, args.round(), get.clone()).await?;
            println!(
                "  round {round}: floor (health Check) {floor:>7.0} ops/s {floor_us:>5.0} us CPU/call   \
                 Get {got:>7.0} ops/s {get_us:>5.0} us CPU/call   {:>3.0}%",
                100.0 * got / floor
            );
            floors.push(floor);
            gets.push(got);
            ratios.push(got / floor);
            cpu_ratios.push(floor_us / get_us);
        }
        let reads = metric(&metrics, CACHE_READS).await? - reads;
        let checks = metric(&metrics, CACHE_CHECKS).await? - checks;
        let run = Run {
            clients,
            floor: median(floors),
            get: median(gets),
            ratio: median(ratios),
            cpu_ratio: median(cpu_ratios),
        };
        println!(
            "  {clients} clients: Get {:.0} ops/s vs floor {:.0} ops/s (medians), median ratio {:.0}%, \
             CPU per call {:.0}% of the floor's; {}",
            run.get,
            run.floor,
            100.0 * run.ratio,
            100.0 * run.cpu_ratio,
            if checks > 0.0 {
                format!("{:.1} reads per round trip to the server", reads / checks)
            } else {
                "no round trips to the server".to_owned()
            }
        );
        runs.push(run);
    }
    // diagnostic: the KV read alone, straight from async-nats, no gRPC
    let nats_client = async_nats::connect(nats.url()).await?;
    let kv = async_nats::jetstream::new(nats_client)
        .get_key_value(imagestreams_common::subjects::BUCKET_STREAMS)
        .await?;
    let kvs: Vec<_> = (0..most).map(|_| kv.clone()).collect();
    let counter = Arc::new(AtomicUsize::new(0));
    let raw = move |kv: async_nats::jetstream::kv::Store| {
        let key = imagestreams_common::subjects::stream_key(
            NAMESPACE,
            &format!(
                "get-{:03}",
                counter.fetch_add(1, Ordering::Relaxed) % GET_STREAMS
            ),
        );
        async move {
            kv.entry(key).await?;
            anyhow::Ok(())
        }
    };
    let (raw_rate, raw_us) = throughput(&kvs, args.round(), raw).await?;
    println!(
        "  KV direct get alone (async-nats, no gRPC): {raw_rate:>7.0} ops/s {raw_us:>5.0} us CPU/call"
    );

    let best = |of: fn(&Run) -> f64| {
        runs.iter()
            .max_by(|a, b| of(a).total_cmp(&of(b)))
            .map(|run| (of(run), run.clients))
            .unwrap_or((f64::NAN, 0))
    };
    let ((got, got_at), (floor, floor_at)) = (best(|r| r.get), best(|r| r.floor));
    println!(
        "Get (resourceVersion {:?}): best {got:.0} ops/s ({got_at} clients) vs the no-op floor's best {floor:.0} ops/s \
         ({floor_at} clients): {:.0}% (goal >= 50%)",
        args.resource_version,
        100.0 * got / floor
    );

    let seeded = bench::create_streams(&api, args.streams, SEED_CONCURRENCY, |i| {
        sample(&format!("s{i:05}"))
    })
    .await?;
    println!(
        "seeded {} streams through Create in {:.1} s ({:.0} creates/s, {SEED_CONCURRENCY} in flight)",
        args.streams,
        seeded.as_secs_f64(),
        args.streams as f64 / seeded.as_secs_f64()
    );
    let total = args.streams + GET_STREAMS;

    let mut full = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let list = api
            .clone()
            .list(proto::ListRequest {
                namespace: NAMESPACE.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        full.push(start.elapsed());
        anyhow::ensure!(list.items.len() == total, "listed {}", list.items.len());
    }
    full.sort();
    println!(
        "List {total} streams, one call: {:.0} ms (median of 3; best {:.0} ms)",
        millis(full[1]),
        millis(full[0])
    );

    let start = Instant::now();
    let (mut token, mut pages, mut items) = (String::new(), 0, 0);
    let mut slowest = Duration::ZERO;
    loop {
        let page_start = Instant::now();
        let page = api
            .clone()
            .list(proto::ListRequest {
                namespace: NAMESPACE.into(),
                limit: args.page,
                continue_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        slowest = slowest.max(page_start.elapsed());
        pages += 1;
        items += page.items.len();
        if page.continue_token.is_empty() {
            break;
        }
        token = page.continue_token;
    }
    let walk = start.elapsed();
    anyhow::ensure!(items == total, "paged {items}");
    println!(
        "List {total} streams in pages of {}: {pages} pages in {:.0} ms, {:.1} ms per page (slowest {:.1} ms)",
        args.page,
        millis(walk),
        millis(walk) / pages as f64,
        millis(slowest)
    );

    drop(api);
    drop(channels);
    app.stop().await?;
    Ok(())
}
