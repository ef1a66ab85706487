//! `bench-metadata`: what reading a pushed image's metadata adds to a registry notification's answer.
//!
//! A real nats-server and a real docker-registry holding `--images` distinct images (each a config blob, one
//! layer and an OCI manifest, uploaded over the registry's HTTP API before the clock starts). Two
//! registry-watchers (with the stream-store) on the same NATS: one with `registry_watcher.read_metadata`
//! off (the **floor**), one with it on. Each is sent one envelope per image, shaped like distribution 2.8's
//! with `includereferences: true`, `--rate` envelopes per second, and the time to the watcher's `200` (which
//! comes once `ImagePushed` is stored in JetStream) is recorded:
//!
//! - **floor**: no metadata read;
//! - **first sight**: the watcher reads each image's config blob from the registry and records it;
//! - **known digest**: the same images under another tag: the record is in the catalog.
//!
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-metadata -- --images 2000 --rate 500
//! ```

use std::{sync::Arc, time::Instant};

use anyhow::Context as _;
use imagestreams::cli::ServiceName;
use imagestreams_common::config::Secret;
use imagestreams_integration::{
    NatsServer, Registry, RegistryOptions, TestApp,
    bench::{Summary, drive, print_summary, summarize},
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;

const TOKEN: &str = "bench-metadata-token";
const NAMESPACE: &str = "bench";
const DEFAULT_IMAGES: u64 = 2_000;
const DEFAULT_RATE: u64 = 500;
const UPLOAD_CONCURRENCY: usize = 16;

struct Args {
    images: u64,
    rate: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        images: DEFAULT_IMAGES,
        rate: DEFAULT_RATE,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--images" => args.images = value()?.parse()?,
            "--rate" => args.rate = value()?.parse()?,
            other => anyhow::bail!("unknown argument {other}; use --images N --rate N"),
        }
    }
    anyhow::ensure!(
        args.images > 0 && args.rate > 0,
        "--images and --rate must be positive"
    );
    Ok(args)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One image in the registry: its manifest's digest and size, and the blobs it references.
#[derive(Clone)]
struct Image {
    repository: String,
    digest: String,
    size: usize,
    references: Value,
}

/// Uploads image `i` (a config, one layer, a manifest by digest) with the registry's monolithic uploads.
async fn upload(http: &reqwest::Client, registry: &str, i: u64) -> anyhow::Result<Image> {
    let repository = format!("{NAMESPACE}/app-{}", i % 50);
    let config = serde_json::to_vec(&json!({
        "created": "2026-11-27T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [format!("IMAGE={i}")], "Labels": {"bench": "metadata"}},
        "rootfs": {"type": "layers", "diff_ids": []},
    }))?;
    let layer = format!("layer of image {i}").into_bytes();
    let mut references = Vec::new();
    for (blob, media_type) in [
        (&config, "application/vnd.oci.image.config.v1+json"),
        (&layer, "application/vnd.oci.image.layer.v1.tar+gzip"),
    ] {
        let digest = sha256(blob);
        // distribution 2.8: start an upload, then PUT the whole blob to it
        let started = http
            .post(format!("{registry}/v2/{repository}/blobs/uploads/"))
            .send()
            .await?
            .error_for_status()
            .context("starting a blob upload")?;
        let location = started
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .context("an upload without a Location")?;
        let mut url = reqwest::Url::parse(registry)?.join(location)?;
        url.query_pairs_mut().append_pair("digest", &digest);
        http.put(url)
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .await?
            .error_for_status()
            .context("a blob upload")?;
        references.push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": references[0],
        "layers": [references[1]],
    }))?;
    let digest = sha256(&manifest);
    let put = http
        .put(format!("{registry}/v2/{repository}/manifests/{digest}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await?;
    anyhow::ensure!(
        put.status().is_success(),
        "a manifest upload: {} {}",
        put.status(),
        put.text().await.unwrap_or_default()
    );
    Ok(Image {
        repository,
        digest,
        size: manifest.len(),
        references: Value::Array(references),
    })
}

/// The notification distribution sends for a push of `image` as `tag`.
fn envelope(image: &Image, tag: &str, host: &str) -> String {
    json!({ "events": [{
        "id": uuid::Uuid::new_v4().to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": image.size, "length": image.size,
            "digest": image.digest,
            "repository": image.repository,
            "url": format!("http://{host}/v2/{}/manifests/{}", image.repository, image.digest),
            "tag": tag,
            "references": image.references,
        },
        "request": {"id": uuid::Uuid::new_v4().to_string(), "host": host, "method": "PUT"},
        "actor": {},
        "source": {"addr": host, "instanceID": "bench"}
    }]})
    .to_string()
}

/// Posts one envelope per image to `url` at `rate`, returning the answers' latencies.
async fn phase(
    url: &str,
    images: &Arc<Vec<Image>>,
    tag: &'static str,
    host: &str,
    rate: u64,
) -> anyhow::Result<Summary> {
    let http = reqwest::Client::new();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(images.len())));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    drive(rate, 0, images.len() as u64, |i| {
        let (http, url, latencies, failures) = (
            http.clone(),
            url.to_owned(),
            latencies.clone(),
            failures.clone(),
        );
        let body = envelope(&images[i as usize], tag, host);
        async move {
            let started = Instant::now();
            let ok = http
                .post(&url)
                .bearer_auth(TOKEN)
                .header(
                    "content-type",
                    "application/vnd.docker.distribution.events.v1+json",
                )
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                latencies
                    .lock()
                    .await
                    .push(started.elapsed().as_nanos() as u64);
            } else {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    })
    .await;
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} notifications were not answered 200");
    Ok(summarize(std::mem::take(&mut *latencies.lock().await)))
}

/// How long the registry took to serve each blob GET, in nanoseconds, from its log's `response completed`
/// lines (`http.response.duration=1.2ms` or `="480.6µs"`).
fn blob_gets(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("http.request.method=GET") && l.contains("/blobs/sha256:"))
        .filter_map(|l| {
            let value = l.split("http.response.duration=").nth(1)?;
            let value = value.trim_start_matches('"');
            let end = value.find(['"', ' ']).unwrap_or(value.len());
            let value = &value[..end];
            let (number, scale) = if let Some(v) = value.strip_suffix("µs") {
                (v, 1e3)
            } else if let Some(v) = value.strip_suffix("ms") {
                (v, 1e6)
            } else if let Some(v) = value.strip_suffix('s') {
                (v, 1e9)
            } else {
                return None;
            };
            Some((number.parse::<f64>().ok()? * scale) as u64)
        })
        .collect()
}

async fn watcher(nats: &NatsServer, host: &str, read_metadata: bool) -> anyhow::Result<TestApp> {
    TestApp::spawn_with(
        nats,
        &[ServiceName::StreamStore, ServiceName::RegistryWatcher],
        |c| {
            c.registry_watcher.token = Some(Secret::new(TOKEN));
            c.registry_watcher.read_metadata = read_metadata;
            c.integrated_registry.host = host.to_owned();
        },
    )
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let nats = NatsServer::start().await?;
    let registry = Registry::start(RegistryOptions::default()).await?;
    let host = registry.host();
    let http = reqwest::Client::new();
    let registry_url = registry.url();
    let started = Instant::now();
    let images: Vec<Image> =
        futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(
            futures::stream::iter((0..args.images).map(|i| upload(&http, &registry_url, i))),
            UPLOAD_CONCURRENCY,
        ))
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let images = Arc::new(images);
    println!(
        "bench-metadata: {} images uploaded to a real docker-registry in {:.1} s; {} envelopes/s per phase",
        images.len(),
        started.elapsed().as_secs_f64(),
        args.rate
    );
    let plain = watcher(&nats, &host, false).await?;
    let reading = watcher(&nats, &host, true).await?;
    let url = |app: &TestApp| format!("http://{}/notifications", app.addr("notifications"));

    let floor = phase(&url(&plain), &images, "floor", &host, args.rate).await?;
    let first = phase(&url(&reading), &images, "first", &host, args.rate).await?;
    let known = phase(&url(&reading), &images, "known", &host, args.rate).await?;

    println!("notification answered (200 once ImagePushed is stored):");
    print_summary("floor: no metadata read", 28, &floor);
    print_summary("first sight: config read", 28, &first);
    print_summary("known digest: catalog hit", 28, &known);
    let served = summarize(blob_gets(&std::fs::read_to_string(registry.log_path())?));
    print_summary("registry: config blob GETs", 28, &served);
    println!(
        "ratio to the floor: first sight p50 {:.2}x p99 {:.2}x; known digest p50 {:.2}x p99 {:.2}x",
        first.p50 / floor.p50,
        first.p99 / floor.p99,
        known.p50 / floor.p50,
        known.p99 / floor.p99
    );
    plain.stop().await?;
    reading.stop().await?;
    Ok(())
}
