//! `bench-receivers`: a hosted registry's webhook → `TagsChanged` (issue 18).
//!
//! A real nats-server, the stream-store and the tag-syncer in this process in
//! their **default configuration** (the receivers' rate limit included), and
//! a real docker-registry standing in for GHCR through a `[[registry]]` rule
//! (`ghcr.io` → the local registry). `--streams` streams each follow
//! `ghcr.io/bench/app<i>:v1`; one `ghcr` receiver serves them.
//!
//! Each sample moves one stream's `v1` in the registry (a new image's
//! manifest PUT, its config uploaded before the clock starts), then POSTs
//! the signed GitHub `package` delivery naming it, open loop at `--rate` per
//! second for `--seconds`, the streams in turn (so a stream's deliveries are
//! `--streams / --rate` seconds apart, more than the burst window). A NATS
//! subscriber times the delivery's POST to the `TagsChanged` with the new
//! digest.
//!
//! **Floor, same run, same registry**: one manifest `HEAD` (what the import of
//! one tag must at least ask the registry), closed loop. Goal: p99 ≤ 3 × the
//! floor's p99 + 5 ms.
//!
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-receivers
//! ```

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt as _;
use hmac::{Hmac, Mac as _};
use imagestreams::cli::ServiceName;
use imagestreams_common::{config::RegistryRuleConfig, model::ImageStream, subjects::Kind};
use imagestreams_gateway::receivers::ReceiversClient;
use imagestreams_integration::{
    NatsServer, Registry, RegistryOptions, TestApp,
    bench::{OCI_MANIFEST, RegistryPusher, create_all, drive, print_summary, sha256, summarize},
    wait_for,
};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::{StoreClient, StreamReader};
use prost::Message as _;
use sha2::Sha256;

const NAMESPACE: &str = "bench";
const SECRET: &str = "bench-receivers-secret";
/// How long the bench waits after the last delivery for its events.
const DRAIN: Duration = Duration::from_secs(20);
/// Closed-loop HEADs of the floor.
const FLOOR_SAMPLES: usize = 500;

/// A hosted registry's webhook → `TagsChanged`, against a manifest HEAD.
#[derive(Debug, Parser)]
#[command(name = "bench-receivers", long_about = None, args_override_self = true)]
struct Args {
    /// Deliveries per second, open loop.
    #[arg(long, value_name = "N", default_value_t = 50)]
    rate: u64,
    /// How long to send, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10)]
    seconds: u64,
    /// Streams the deliveries go to in turn.
    #[arg(long, value_name = "N", default_value_t = 100)]
    streams: usize,
    /// Replace the default `tag_syncer.requests_per_second` (the requests a
    /// second to one registry; `0`: no limit). Not the default: say so.
    #[arg(long, value_name = "N")]
    registry_rps: Option<f64>,
}

fn signed(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(SECRET.as_bytes())
        .expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn delivery(stream: usize, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": "published",
        "package": {
            "name": format!("app{stream}"), "namespace": "bench", "package_type": "CONTAINER",
            "package_version": {
                "package_url": format!("ghcr.io/bench/app{stream}:v1"),
                "container_metadata": {"tag": {"name": "v1", "digest": digest}}
            }
        }
    }))
    .expect("json")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let registry = Registry::start(RegistryOptions::default()).await?;
    let nats = NatsServer::start().await?;
    let rules = [RegistryRuleConfig {
        prefix: Some("ghcr.io".to_owned()),
        location: Some(registry.host()),
        insecure: true,
        ..RegistryRuleConfig::default()
    }];
    let app = TestApp::spawn_with(
        &nats,
        &[ServiceName::StreamStore, ServiceName::TagSyncer],
        |c| {
            c.registries = rules.to_vec();
            if let Some(rps) = args.registry_rps {
                c.tag_syncer.requests_per_second = rps;
            }
        },
    )
    .await?;
    let client = nats.connect().await?;
    let http = reqwest::Client::new();
    let pusher = RegistryPusher::new(http.clone(), registry.url());
    // the one layer of every image (each repository gets its copy)
    let layer = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": sha256(b"bench-receivers layer"),
        "size": b"bench-receivers layer".len(),
    });

    // the streams, each following a tag that exists
    let samples = (args.rate * args.seconds) as usize;
    create_all(0..args.streams, 16, |i| {
        let (pusher, layer, client) = (&pusher, &layer, &client);
        async move {
            let repository = format!("bench/app{i}");
            pusher
                .blob(
                    &repository,
                    b"bench-receivers layer".to_vec(),
                    "application/vnd.oci.image.layer.v1.tar",
                )
                .await?;
            let manifest = pusher.image(&repository, "initial", layer).await?;
            pusher.manifest(&repository, "v1", manifest).await?;
            let stream = ImageStream::parse_document(
                serde_json::json!({
                    "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
                    "metadata": {"name": format!("app{i}")},
                    "spec": {"tags": [{"name": "v1", "from": {"kind": "DockerImage", "name": format!("ghcr.io/{repository}:v1")}}]}
                })
                .to_string()
                .as_bytes(),
            )?;
            StoreClient::new(client.clone())
                .create(proto::CreateRequest {
                    namespace: NAMESPACE.to_owned(),
                    image_stream: Some(stream.into()),
                })
                .await?;
            Ok(())
        }
    })
    .await?;
    let topology = imagestreams_common::nats::provision(&client, 1).await?;
    let reader = StreamReader::new(topology.streams.clone(), client.clone());
    wait_for(
        || async {
            let Ok((streams, _)) = reader.list(Some(NAMESPACE)).await else {
                return false;
            };
            streams.len() == args.streams
                && streams
                    .iter()
                    .all(|s| s.status_tag("v1").is_some_and(|t| !t.items.is_empty()))
        },
        Duration::from_secs(120),
    )
    .await
    .context("the streams' first import")?;
    let created = ReceiversClient::new(client.clone())
        .create(&proto::CreateReceiverRequest {
            namespace: NAMESPACE.to_owned(),
            name: "ghcr".to_owned(),
            r#type: "ghcr".to_owned(),
            secret: SECRET.to_owned(),
            ..Default::default()
        })
        .await?;
    let url = created.receiver.context("a receiver")?.url;

    // the floor: a manifest HEAD against the same registry
    let mut floor = Vec::with_capacity(FLOOR_SAMPLES);
    for i in 0..FLOOR_SAMPLES {
        let started = Instant::now();
        let head = http
            .head(format!(
                "{}/v2/bench/app{}/manifests/v1",
                registry.url(),
                i % args.streams
            ))
            .header("accept", OCI_MANIFEST)
            .send()
            .await?;
        anyhow::ensure!(head.status().is_success(), "HEAD: {}", head.status());
        floor.push(started.elapsed().as_nanos() as u64);
    }
    let floor = summarize(floor);

    // the images of every sample, uploaded before the clock starts
    let manifests: Vec<Vec<u8>> = futures::stream::iter(0..samples)
        .map(|n| {
            let (pusher, layer) = (&pusher, &layer);
            async move {
                pusher
                    .image(
                        &format!("bench/app{}", n % args.streams),
                        &format!("s{n}"),
                        layer,
                    )
                    .await
            }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    // digest → when its delivery was sent
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut changes = client
        .subscribe(Kind::TagsChanged.namespace_filter(NAMESPACE))
        .await?;
    client.flush().await?;
    let listener = tokio::spawn({
        let (sent, latencies) = (sent.clone(), latencies.clone());
        async move {
            while let Some(message) = changes.next().await {
                let Ok(event) = proto::TagsChanged::decode(message.payload) else {
                    continue;
                };
                let now = Instant::now();
                for change in event.changes {
                    let started = sent.lock().expect("lock").remove(&change.new_image);
                    if let Some(started) = started {
                        latencies
                            .lock()
                            .expect("lock")
                            .push(now.duration_since(started).as_nanos() as u64);
                    }
                }
            }
        }
    });
    let manifests = Arc::new(manifests);
    let rejected = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let achieved = drive(args.rate, 0, samples as u64, |n| {
        let (http, pusher, url, manifests, sent, rejected) = (
            http.clone(),
            RegistryPusher::new(http.clone(), registry.url()),
            url.clone(),
            manifests.clone(),
            sent.clone(),
            rejected.clone(),
        );
        let stream = n as usize % args.streams;
        async move {
            let manifest = manifests[n as usize].clone();
            let digest = sha256(&manifest);
            if pusher
                .manifest(&format!("bench/app{stream}"), "v1", manifest)
                .await
                .is_err()
            {
                rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            let body = delivery(stream, &digest);
            let signature = signed(&body);
            sent.lock().expect("lock").insert(digest, Instant::now());
            let answer = http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-github-event", "package")
                .header("x-github-delivery", format!("bench-{n}"))
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await;
            if !answer.is_ok_and(|a| a.status().as_u16() == 202) {
                rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    })
    .await;
    let deadline = Instant::now() + DRAIN;
    while !sent.lock().expect("lock").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    listener.abort();
    let lost = sent.lock().expect("lock").len();
    let latencies = summarize(latencies.lock().expect("lock").clone());
    println!(
        "bench-receivers: {} deliveries at {}/s ({achieved:.1}/s achieved) to {} streams, {}",
        samples,
        args.rate,
        args.streams,
        match args.registry_rps {
            None => "default configuration".to_owned(),
            Some(rps) =>
                format!("default configuration but tag_syncer.requests_per_second = {rps}"),
        }
    );
    print_summary("floor (manifest HEAD)", 28, &floor);
    print_summary("delivery → TagsChanged", 28, &latencies);
    let goal = 3.0 * floor.p99 + 5.0;
    println!(
        "  p99 {:.3} ms vs goal {goal:.3} ms (3 × floor p99 + 5 ms): {}; {} without TagsChanged, {} refused",
        latencies.p99,
        if latencies.p99 <= goal {
            "met"
        } else {
            "NOT met"
        },
        lost,
        rejected.load(std::sync::atomic::Ordering::Relaxed)
    );
    app.stop().await
}
