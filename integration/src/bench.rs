//! What the bench binaries share: latency summaries and an open-loop driver.

use std::{future::Future, ops::Range, time::Duration};

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

/// The summary of latencies given in nanoseconds.
pub fn summarize(mut nanos: Vec<u64>) -> Summary {
    if nanos.is_empty() {
        return Summary::default();
    }
    nanos.sort_unstable();
    let at = |q: f64| {
        let i = ((nanos.len() as f64 * q).ceil() as usize).clamp(1, nanos.len()) - 1;
        nanos[i] as f64 / 1e6
    };
    Summary {
        count: nanos.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

/// Prints one summary line, `name` padded to `width`.
pub fn print_summary(name: &str, width: usize, s: &Summary) {
    println!(
        "  {name:<width$} n={:<7} p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>8.3} ms",
        s.count, s.p50, s.p90, s.p99, s.p999, s.max
    );
}

/// Drives `send(i)` for `count` indexes at `rate` per second, each in its
/// own task; returns the achieved rate.
pub async fn drive<F, Fut>(rate: u64, first: u64, count: u64, send: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let period = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        tokio::time::sleep_until(start + period * n as u32).await;
        tasks.spawn(send(first + n));
        while tasks.try_join_next().is_some() {}
    }
    let elapsed = start.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    count as f64 / elapsed.max(1e-9)
}

/// Pushes images to a real registry over its HTTP API, as a client does: blobs by monolithic upload,
/// manifests by tag or digest.
#[derive(Clone, Debug)]
pub struct RegistryPusher {
    http: reqwest::Client,
    url: String,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The OCI media type of an image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

impl RegistryPusher {
    /// A pusher to the registry at `url` (`http://host:port`).
    pub fn new(http: reqwest::Client, url: impl Into<String>) -> Self {
        RegistryPusher {
            http,
            url: url.into(),
        }
    }

    /// Uploads `blob` to `repository`; returns its descriptor (`media_type`, digest, size).
    pub async fn blob(
        &self,
        repository: &str,
        blob: Vec<u8>,
        media_type: &str,
    ) -> anyhow::Result<serde_json::Value> {
        use anyhow::Context as _;
        let digest = sha256(&blob);
        let size = blob.len();
        let started = self
            .http
            .post(format!("{}/v2/{repository}/blobs/uploads/", self.url))
            .send()
            .await?
            .error_for_status()?;
        let location = started
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .context("an upload without a Location")?;
        let mut url = reqwest::Url::parse(&self.url)?.join(location)?;
        url.query_pairs_mut().append_pair("digest", &digest);
        self.http
            .put(url)
            .header("content-type", "application/octet-stream")
            .body(blob)
            .send()
            .await?
            .error_for_status()?;
        Ok(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size}))
    }

    /// Uploads a new image config (its `Env` holds `unique`) to `repository`; returns the image manifest
    /// over it and `layer` (a descriptor of a blob the repository holds), not yet pushed.
    pub async fn image(
        &self,
        repository: &str,
        unique: &str,
        layer: &serde_json::Value,
    ) -> anyhow::Result<Vec<u8>> {
        let config = serde_json::to_vec(&serde_json::json!({
            "created": "2026-12-07T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": [format!("IMAGE={unique}")], "Labels": {"bench": "true"}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))?;
        let config = self
            .blob(
                repository,
                config,
                "application/vnd.oci.image.config.v1+json",
            )
            .await?;
        Ok(serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
        }))?)
    }

    /// PUTs `manifest` as `repository:reference` (a tag or its digest).
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: Vec<u8>,
    ) -> anyhow::Result<()> {
        let put = self
            .http
            .put(format!(
                "{}/v2/{repository}/manifests/{reference}",
                self.url
            ))
            .header("content-type", OCI_MANIFEST)
            .body(manifest)
            .send()
            .await?;
        anyhow::ensure!(put.status().is_success(), "manifest PUT: {}", put.status());
        Ok(())
    }
}

/// Runs `create(i)` for every `i` of `range`, `concurrency` at once (the
/// benches' seeding of many streams); how long it took, or the first error.
pub async fn create_all<F, Fut>(
    range: Range<usize>,
    concurrency: usize,
    create: F,
) -> anyhow::Result<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    use futures::StreamExt as _;
    let start = std::time::Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(range)
        .map(create)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(start.elapsed())
}

/// The gateway's gRPC client with a bearer token, as the benches seed with it.
pub type AuthedClient = imagestreams_proto::v1::image_streams_client::ImageStreamsClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, crate::Bearer>,
>;

/// Creates `sample(i)` for every `i` below `count` through `client`,
/// `concurrency` at once, each in the namespace it names (the benches' seeding
/// of many streams); how long it took, or the first error.
pub async fn create_streams(
    client: &AuthedClient,
    count: usize,
    concurrency: usize,
    sample: impl Fn(usize) -> imagestreams_common::model::ImageStream,
) -> anyhow::Result<Duration> {
    create_all(0..count, concurrency, |i| {
        let mut client = client.clone();
        let stream = sample(i);
        async move {
            client
                .create(imagestreams_proto::v1::CreateRequest {
                    namespace: stream.metadata.namespace.clone(),
                    image_stream: Some(stream.into()),
                })
                .await?;
            Ok(())
        }
    })
    .await
}
