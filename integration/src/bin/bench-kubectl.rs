//! `bench-kubectl`: `kubectl get is` over `--streams` streams (10,000 by
//! default) in one namespace, against its floor measured in the same run:
//! the plain JSON list of the same streams.
//!
//! The gateway runs with its defaults (authentication on, the
//! Kubernetes-compatible API over HTTPS with its local CA) against a real
//! nats-server and the real stream-store. Two pairs, each alternated
//! `--rounds` times so that both sides see the same machine load, medians
//! compared:
//!
//! - **server**: the list as kubectl asks for it (pages of 500, following
//!   `continue`) with kubectl's Table `Accept`, against the same pages as
//!   plain JSON (`Accept: application/json`), over one HTTPS client;
//! - **kubectl**: the real `kubectl get is` (server-side printing) against
//!   `kubectl get is -o json` (the same list as JSON, printed by kubectl),
//!   each a fresh process with a warm discovery cache.
//!
//! The goal (issue 17): the Table list within 1.5× the JSON list.
//!
//! ```text
//! cargo build --release -p imagestreams-integration --bin bench-kubectl
//! NATS_SERVER=/path/to/nats-server target/release/bench-kubectl [--streams 10000] [--rounds 5]
//! ```
#![forbid(unsafe_code)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use clap::Parser;
use imagestreams::cli::ServiceName;
use imagestreams_common::{
    auth::{
        Role, Token,
        store::{RoleBindingConfig, TokenConfig},
    },
    config::Secret,
    model::{self, ImageStream, ObjectReference, TagReference},
};
use imagestreams_integration::{Bearer, NatsServer, TestApp, TestDir, bench, binaries};
use imagestreams_proto::v1::image_streams_client::ImageStreamsClient;
use tonic::transport::Channel;

/// The namespace of the listed streams.
const NAMESPACE: &str = "bench";
/// The configured cluster-admin's token.
const ADMIN_TOKEN: &str = "bench-admin-0123456789";
/// Concurrent creates while seeding.
const SEED_CONCURRENCY: usize = 64;
/// kubectl's page size.
const PAGE: usize = 500;
/// kubectl's `Accept` for server-side printing.
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// `kubectl get is` over many streams in one namespace, against its floor
/// measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "bench-kubectl", long_about = None, args_override_self = true)]
struct Args {
    /// Streams listed.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    streams: usize,
    /// Times each pair (server, kubectl) is alternated.
    #[arg(long, value_name = "N", default_value_t = 5)]
    rounds: usize,
}

/// A stream as `oc new-app` leaves one: three spec tags.
fn sample(name: &str) -> ImageStream {
    let mut stream = ImageStream::new(NAMESPACE, name);
    stream.metadata.labels.insert("app".into(), name.into());
    for tag in ["latest", "1.0", "1.1"] {
        stream.spec.tags.push(TagReference {
            name: tag.into(),
            from: Some(ObjectReference {
                kind: model::FROM_DOCKER_IMAGE.into(),
                name: format!("registry.example.com/team/{name}:{tag}"),
                ..ObjectReference::default()
            }),
            reference: true,
            ..TagReference::default()
        });
    }
    stream
}

async fn seed(app: &TestApp, count: usize) -> anyhow::Result<Duration> {
    let channel = Channel::from_shared(app.grpc_url())?.connect().await?;
    let client =
        ImageStreamsClient::with_interceptor(channel, Bearer(Some(ADMIN_TOKEN.to_owned())));
    bench::create_streams(&client, count, SEED_CONCURRENCY, |i| {
        sample(&format!("s{i:05}"))
    })
    .await
}

/// Lists every page as kubectl does; the items seen.
async fn list(client: &reqwest::Client, base: &str, accept: &str) -> anyhow::Result<usize> {
    let mut continue_token = String::new();
    let mut items = 0;
    loop {
        let mut url = format!(
            "{base}/apis/image.openshift.io/v1/namespaces/{NAMESPACE}/imagestreams?limit={PAGE}"
        );
        if !continue_token.is_empty() {
            url.push_str(&format!("&continue={continue_token}"));
        }
        let page: serde_json::Value = client
            .get(url)
            .bearer_auth(ADMIN_TOKEN)
            .header("Accept", accept)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let key = if page["kind"] == "Table" {
            "rows"
        } else {
            "items"
        };
        items += page[key].as_array().map_or(0, Vec::len);
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => continue_token = token.to_owned(),
            _ => return Ok(items),
        }
    }
}

async fn kubectl(dir: &Path, args: &[&str]) -> anyhow::Result<usize> {
    let out = tokio::process::Command::new(binaries::kubectl())
        .args(args)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("KUBECACHEDIR", dir.join("kube-cache"))
        .env("HOME", dir)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout.len())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Runs `floor` and `measured` alternately `rounds` times; their medians.
async fn pair<F, M, FF, MF>(
    rounds: usize,
    mut floor: F,
    mut measured: M,
) -> anyhow::Result<(Duration, Duration)>
where
    F: FnMut() -> FF,
    M: FnMut() -> MF,
    FF: std::future::Future<Output = anyhow::Result<usize>>,
    MF: std::future::Future<Output = anyhow::Result<usize>>,
{
    let (mut floors, mut measures) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        floor().await?;
        floors.push(start.elapsed());
        let start = Instant::now();
        measured().await?;
        measures.push(start.elapsed());
    }
    Ok((median(floors), median(measures)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats = NatsServer::start().await?;
    let dir = TestDir::new("bench-kubectl")?;
    let pki = dir.path().join("kube-pki");
    let app = TestApp::spawn_with(
        &nats,
        &[ServiceName::StreamStore, ServiceName::Gateway],
        |config| {
            config.auth.enabled = true;
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
            config.gateway.kube.enabled = true;
            config.gateway.kube.pki_dir = pki.clone();
        },
    )
    .await?;
    let kube = app.addr("kube");
    let ca = std::fs::read_to_string(pki.join("ca.crt"))?;
    std::fs::write(
        dir.path().join("kubeconfig"),
        imagestreams::kubeconfig::render(
            &imagestreams::kubeconfig::server_url(kube),
            &ca,
            Some(&Secret::new(ADMIN_TOKEN)),
        )
        .replace("namespace: default", &format!("namespace: {NAMESPACE}")),
    )?;
    let seeded = seed(&app, args.streams).await?;
    println!(
        "seeded {} streams in {:.1} s; kubectl {}",
        args.streams,
        seeded.as_secs_f64(),
        binaries::kubectl().display()
    );

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?)
        .build()?;
    let base = imagestreams::kubeconfig::server_url(kube);
    // warm-up: connections, the read cache, kubectl's discovery cache
    anyhow::ensure!(
        list(&client, &base, TABLE_ACCEPT).await? == args.streams,
        "the Table lists every stream"
    );
    anyhow::ensure!(
        list(&client, &base, "application/json").await? == args.streams,
        "the JSON lists every stream"
    );
    kubectl(dir.path(), &["get", "is"]).await?;

    let (json, table) = pair(
        args.rounds,
        || list(&client, &base, "application/json"),
        || list(&client, &base, TABLE_ACCEPT),
    )
    .await?;
    let (kubectl_json, kubectl_table) = pair(
        args.rounds,
        || kubectl(dir.path(), &["get", "is", "-o", "json"]),
        || kubectl(dir.path(), &["get", "is"]),
    )
    .await?;
    println!(
        "list of {} streams, pages of {PAGE}, median of {} rounds each:",
        args.streams, args.rounds
    );
    println!(
        "  server: JSON list (floor) {:.1} ms, Table {:.1} ms: {:.2}x (goal <= 1.5x)",
        ms(json),
        ms(table),
        table.as_secs_f64() / json.as_secs_f64()
    );
    println!(
        "  kubectl: get is -o json (floor) {:.1} ms, get is {:.1} ms: {:.2}x (goal <= 1.5x)",
        ms(kubectl_json),
        ms(kubectl_table),
        kubectl_table.as_secs_f64() / kubectl_json.as_secs_f64()
    );
    app.stop().await
}
