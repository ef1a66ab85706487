//! `bench-import`: importing a 10,000-tag repository from a real docker-registry (CNCF distribution 2.8) with the
//! tag-syncer's registry client, against floors measured in the same run.
//!
//! - Setup: one image pushed with skopeo, then its manifest PUT under `--tags` tags through the registry API.
//! - **client**: `list_tags` and `digest` of every tag at `--concurrency`, rate limit off.
//! - **raw**: the floor: plain reqwest, one `GET tags/list`, then an async `HEAD` loop with the same `Accept`
//!   at the same concurrency, reading `Docker-Content-Digest`. Rounds alternate which of raw and client goes
//!   first; besides wall time, the CPU time this process spent per request is reported (from `/proc/self/stat`),
//!   which the registry's own load does not blur.
//! - **skopeo**: `skopeo list-tags` once, and `skopeo inspect --no-tags` for `--sample` tags one after the
//!   other (as a shell loop would), extrapolated to every tag.
//!
//! ```text
//! cargo run --release -p imagestreams-integration --bin bench-import [-- --tags N --concurrency N --sample N --rounds N]
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::{StreamExt as _, stream};
use imagestreams_common::reference::Reference;
use imagestreams_integration::{Registry, RegistryOptions, binaries, push_unique_image};
use imagestreams_registry_client::{
    Keyring, Limits, MANIFEST_ACCEPT, MEDIA_TYPE_OCI_MANIFEST, RegistryClient, RegistryRules,
};

/// Tags in the repository.
const DEFAULT_TAGS: usize = 10_000;
/// Concurrent requests of the client and of the raw loop.
const DEFAULT_CONCURRENCY: usize = 16;
/// Tags inspected with skopeo.
const DEFAULT_SAMPLE: usize = 200;
/// Rounds of raw and client, alternating which goes first; the median is reported.
const DEFAULT_ROUNDS: usize = 5;
/// Clock ticks per second of `/proc/self/stat` (`getconf CLK_TCK`; 100 on Linux).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// Concurrent PUTs while tagging.
const SETUP_CONCURRENCY: usize = 16;
/// The benchmarked repository.
const REPO: &str = "bench/app";

/// Importing a many-tag repository from a real docker-registry with the
/// tag-syncer's registry client, against floors measured in the same run.
#[derive(Debug, Clone, Copy, Parser)]
#[command(name = "bench-import", long_about = None, args_override_self = true)]
struct Args {
    /// Tags in the repository.
    #[arg(long, value_name = "N", value_parser = positive(), default_value_t = DEFAULT_TAGS)]
    tags: usize,
    /// Concurrent requests of the client and of the raw loop.
    #[arg(long, value_name = "N", value_parser = positive(), default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Tags inspected with skopeo (at most `--tags`).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SAMPLE)]
    sample: usize,
    /// Rounds of raw and client, alternating which goes first; the median is reported.
    #[arg(long, value_name = "N", value_parser = positive(), default_value_t = DEFAULT_ROUNDS)]
    rounds: usize,
}

/// A count above 0.
fn positive() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

fn parse_args() -> Args {
    let mut args = Args::parse();
    args.sample = args.sample.min(args.tags);
    args
}

fn tag(i: usize) -> String {
    format!("t{i:05}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let registry = Registry::start(RegistryOptions::default()).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Setup: one image, its manifest PUT under every tag.
    let setup = Instant::now();
    let digest = push_unique_image(&registry, &format!("{REPO}:seed")).await?;
    let manifest = http
        .get(format!("{}/v2/{REPO}/manifests/{digest}", registry.url()))
        .header("accept", MEDIA_TYPE_OCI_MANIFEST)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let puts: Vec<anyhow::Result<()>> = stream::iter(0..args.tags)
        .map(|i| {
            let (http, manifest) = (http.clone(), manifest.clone());
            let url = format!("{}/v2/{REPO}/manifests/{}", registry.url(), tag(i));
            async move {
                let resp = http
                    .put(&url)
                    .header("content-type", MEDIA_TYPE_OCI_MANIFEST)
                    .body(manifest)
                    .send()
                    .await?;
                anyhow::ensure!(resp.status().is_success(), "PUT {url}: {}", resp.status());
                Ok(())
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    puts.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let setup = setup.elapsed();
    let expected_tags = args.tags + 1; // and `seed`

    println!(
        "bench-import: {} tags (+1 seed) on docker-registry (distribution 2.8) at {}, concurrency {}, {} rounds \
         each, median reported",
        args.tags,
        registry.host(),
        args.concurrency,
        args.rounds
    );
    println!(
        "setup: 1 image pushed with skopeo, its manifest PUT under {} tags in {:.1} s",
        args.tags,
        setup.as_secs_f64()
    );

    let mut raw_times = Vec::new();
    let mut client_times = Vec::new();
    let mut raw_cpu = Vec::new();
    let mut client_cpu = Vec::new();
    let mut client_requests = 0;
    for round in 0..args.rounds {
        for first in [round % 2 == 0, round % 2 != 0] {
            let cpu = cpu_seconds();
            if first {
                raw_times.push(
                    raw_import(&http, &registry, &digest, expected_tags, args.concurrency).await?,
                );
                raw_cpu.push(cpu_seconds() - cpu);
            } else {
                let (t, requests) =
                    client_import(&registry, &digest, expected_tags, args.concurrency).await?;
                client_times.push(t);
                client_cpu.push(cpu_seconds() - cpu);
                client_requests = requests;
            }
        }
    }
    let raw = median(&raw_times);
    let client = median(&client_times);
    let per_request_us = |cpu: &[f64]| {
        let mut v = cpu.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] / (expected_tags + 1) as f64 * 1e6
    };

    let (list_tags, inspect) = skopeo(&registry, args.sample).await?;
    let per_inspect = inspect / args.sample.max(1) as u32;
    let skopeo_total = list_tags + per_inspect * expected_tags as u32;

    let secs = |d: Duration| d.as_secs_f64();
    let rate = |d: Duration| expected_tags as f64 / d.as_secs_f64();
    println!();
    println!(
        "{:<58} {:>9} {:>12} {:>10}",
        "", "seconds", "digests/s", "vs raw"
    );
    println!(
        "{:<58} {:>9.3} {:>12.0} {:>9.2}x",
        "raw: GET tags/list + async HEAD loop (reqwest) [floor]",
        secs(raw),
        rate(raw),
        1.0
    );
    println!(
        "{:<58} {:>9.3} {:>12.0} {:>9.2}x",
        "client: list_tags + digest per tag",
        secs(client),
        rate(client),
        secs(client) / secs(raw)
    );
    println!(
        "{:<58} {:>9.1} {:>12.1} {:>9.0}x",
        format!(
            "skopeo: list-tags + inspect per tag (EXTRAPOLATED from {})",
            args.sample
        ),
        secs(skopeo_total),
        rate(skopeo_total),
        secs(skopeo_total) / secs(raw)
    );
    println!();
    println!(
        "client/raw = {:.2} (goal <= 1.20); skopeo/client = {:.0}; client sent {client_requests} requests \
         ({} per round expected: 1 list + 1 HEAD per tag)",
        secs(client) / secs(raw),
        secs(skopeo_total) / secs(client),
        expected_tags + 1
    );
    println!(
        "skopeo measured: list-tags {:.2} s; {} sequential inspects {:.1} s ({:.1} ms each); extrapolated to \
         {expected_tags} tags: {:.0} s",
        secs(list_tags),
        args.sample,
        secs(inspect),
        per_inspect.as_secs_f64() * 1e3,
        secs(skopeo_total)
    );
    println!(
        "CPU of this process per request (median): raw {:.0} us, client {:.0} us",
        per_request_us(&raw_cpu),
        per_request_us(&client_cpu)
    );
    println!(
        "fastest round: raw {:.3} s, client {:.3} s (ratio {:.2})",
        secs(raw_times.iter().copied().min().unwrap_or_default()),
        secs(client_times.iter().copied().min().unwrap_or_default()),
        secs(client_times.iter().copied().min().unwrap_or_default())
            / secs(raw_times.iter().copied().min().unwrap_or_default())
    );
    println!(
        "raw rounds {:?}; client rounds {:?}",
        raw_times
            .iter()
            .map(|d| format!("{:.3}", secs(*d)))
            .collect::<Vec<_>>(),
        client_times
            .iter()
            .map(|d| format!("{:.3}", secs(*d)))
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (0 where it cannot be read).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / CLOCK_TICKS_PER_SEC
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// The floor: plain reqwest, one tag list, then HEAD per tag at `concurrency`.
async fn raw_import(
    http: &reqwest::Client,
    registry: &Registry,
    digest: &str,
    expected_tags: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    #[derive(serde::Deserialize)]
    struct Page {
        tags: Vec<String>,
    }
    let start = Instant::now();
    let page: Page = http
        .get(format!("{}/v2/{REPO}/tags/list", registry.url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let digests: Vec<anyhow::Result<String>> = stream::iter(page.tags)
        .map(|t| {
            let url = format!("{}/v2/{REPO}/manifests/{t}", registry.url());
            async move {
                let resp = http
                    .head(&url)
                    .header("accept", MANIFEST_ACCEPT)
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(resp
                    .headers()
                    .get("docker-content-digest")
                    .context("no digest")?
                    .to_str()?
                    .to_owned())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        digests.len() == expected_tags,
        "raw: {} tags",
        digests.len()
    );
    for d in digests {
        anyhow::ensure!(d? == digest, "raw: wrong digest");
    }
    Ok(elapsed)
}

/// The registry client: list, then digest per tag at `concurrency` (its per-registry limit set to the same).
async fn client_import(
    registry: &Registry,
    digest: &str,
    expected_tags: usize,
    concurrency: usize,
) -> anyhow::Result<(Duration, u64)> {
    let client = RegistryClient::new(
        Limits {
            max_concurrency: concurrency,
            requests_per_second: 0.0,
            ..Limits::default()
        },
        RegistryRules::default(),
    )?;
    let reference = Reference::parse_normalized(&format!("{}/{REPO}", registry.host()))?;
    let repo = client.repository(&reference, &Keyring::new(), true)?;
    let start = Instant::now();
    let list = client.list_tags(&repo).await?;
    let digests: Vec<_> = stream::iter(&list.tags)
        .map(|t| client.digest(&repo, t))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        digests.len() == expected_tags,
        "client: {} tags",
        digests.len()
    );
    for d in digests {
        anyhow::ensure!(d?.digest == digest, "client: wrong digest");
    }
    Ok((elapsed, client.requests_sent()))
}

/// `skopeo list-tags` once, and `skopeo inspect` of `sample` tags one after the other.
async fn skopeo(registry: &Registry, sample: usize) -> anyhow::Result<(Duration, Duration)> {
    let skopeo = binaries::skopeo();
    let run = |args: Vec<String>| {
        let skopeo = skopeo.clone();
        async move {
            let out = tokio::process::Command::new(&skopeo)
                .args(&args)
                .output()
                .await
                .context("running skopeo")?;
            anyhow::ensure!(
                out.status.success(),
                "skopeo {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(out.stdout)
        }
    };
    let image = |t: &str| format!("docker://{}/{REPO}{t}", registry.host());
    let start = Instant::now();
    run(vec![
        "list-tags".into(),
        "--tls-verify=false".into(),
        "--no-creds".into(),
        image(""),
    ])
    .await?;
    let list_tags = start.elapsed();
    let start = Instant::now();
    for i in 0..sample {
        run(vec![
            "inspect".into(),
            "--tls-verify=false".into(),
            "--no-creds".into(),
            "--no-tags".into(),
            "--format".into(),
            "{{.Digest}}".into(),
            image(&format!(":{}", tag(i))),
        ])
        .await?;
    }
    Ok((list_tags, start.elapsed()))
}
