//! `bench-mirror`: `imagestreams mirror` of a 5-layer, 50 MiB image between
//! two local registries, beside `skopeo copy` of the same image in the same
//! run (issue 21).
//!
//! A real nats-server, the tag-syncer and the gateway in this process in
//! their **default configuration** (the per-registry limits included; the
//! requests say `insecure`, as `--insecure` does, for the local registries'
//! plain HTTP), and real docker-registries. The image (`--layers` layers of
//! `--layer-mib` MiB of incompressible bytes) is pushed once to the source.
//! Each round starts two fresh destination registries and copies the image to
//! one through the gateway's `Mirror` (what `imagestreams mirror SOURCE DEST
//! --insecure` sends) and to the other with `skopeo copy`, which goes first
//! alternating. Fresh registries, because skopeo remembers where it has seen
//! a blob (its blob-info cache) and mounts it from there within a registry:
//! into a registry it has copied to before, it sends nothing.
//!
//! **Floor, same run**: `skopeo copy`'s time. Goal: the mirror's median ≤ 1.1 ×
//! skopeo's median.
//!
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-mirror
//! ```

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use imagestreams::cli::ServiceName;
use imagestreams_integration::{
    ImageBuilder, NatsServer, Registry, RegistryOptions, TestApp, binaries,
};
use imagestreams_proto::v1 as proto;

/// `imagestreams mirror` against `skopeo copy`, same image, same registries.
#[derive(Debug, Parser)]
#[command(name = "bench-mirror", long_about = None, args_override_self = true)]
struct Args {
    /// Copies of each kind.
    #[arg(long, value_name = "N", default_value_t = 5)]
    rounds: usize,
    /// Layers of the image.
    #[arg(long, value_name = "N", default_value_t = 5)]
    layers: usize,
    /// MiB of each layer.
    #[arg(long, value_name = "MIB", default_value_t = 10)]
    layer_mib: usize,
}

/// `len` bytes that gzip cannot shrink (xorshift), different per `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn skopeo_copy(from: &str, to: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = tokio::process::Command::new(binaries::skopeo())
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-no-creds",
            "--dest-no-creds",
        ])
        .arg(format!("docker://{from}"))
        .arg(format!("docker://{to}"))
        .output()
        .await
        .context("running skopeo copy")?;
    let took = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.layers >= 1 && args.rounds >= 1,
        "--layers and --rounds are at least 1"
    );
    let source = Registry::start(RegistryOptions::default()).await?;
    let nats = NatsServer::start().await?;
    let app = TestApp::spawn_with(
        &nats,
        &[ServiceName::TagSyncer, ServiceName::Gateway],
        |_| {},
    )
    .await?;
    let mut grpc = app.client().await?;

    let layer = args.layer_mib * 1024 * 1024;
    let mut builder = ImageBuilder::new().file("layer-0", noise(0, layer));
    for i in 1..args.layers {
        builder = builder.layer(format!("layer-{i}"), noise(i as u64, layer));
    }
    let image = builder.build().await?;
    let from = source.image_ref("bench/app:1");
    let digest = image.push(&from, None).await?;
    println!(
        "bench-mirror: {} layers of {} MiB ({digest}), {} rounds, default configuration",
        args.layers, args.layer_mib, args.rounds
    );

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let for_skopeo = Registry::start(RegistryOptions::default()).await?;
        let for_mirror = Registry::start(RegistryOptions::default()).await?;
        let skopeo_to = for_skopeo.image_ref("bench/app:1");
        let request = proto::MirrorRequest {
            namespace: "bench".into(),
            source: from.clone(),
            destination: for_mirror.image_ref("bench/app:1"),
            insecure: true,
            ..Default::default()
        };
        let mut mirror = async || -> anyhow::Result<Duration> {
            let started = Instant::now();
            let reply = grpc.mirror(request.clone()).await?.into_inner();
            let took = started.elapsed();
            let image = reply.images.first().context("an image")?;
            anyhow::ensure!(
                image.status == "Success" && image.digest == digest,
                "mirror: {image:?}"
            );
            anyhow::ensure!(
                image.uploaded as usize == args.layers + 1,
                "every blob sent: {image:?}"
            );
            Ok(took)
        };
        if round % 2 == 0 {
            theirs.push(skopeo_copy(&from, &skopeo_to).await?);
            ours.push(mirror().await?);
        } else {
            ours.push(mirror().await?);
            theirs.push(skopeo_copy(&from, &skopeo_to).await?);
        }
    }
    let (ours_median, theirs_median) = (median(ours.clone()), median(theirs.clone()));
    let ratio = ours_median.as_secs_f64() / theirs_median.as_secs_f64();
    println!(
        "  skopeo copy        median {:>8.1} ms  all {theirs:?}",
        theirs_median.as_secs_f64() * 1e3
    );
    println!(
        "  imagestreams mirror median {:>8.1} ms  all {ours:?}",
        ours_median.as_secs_f64() * 1e3
    );
    println!(
        "  ratio {ratio:.2} (goal <= 1.10): {}",
        if ratio <= 1.10 { "met" } else { "NOT met" }
    );
    app.stop().await
}
