//! Image metadata end to end (issue 10): images built with umoci and pushed with skopeo to a real
//! docker-registry that notifies the real services on a real nats-server; what `get isimage`, `get istag`
//! and `describe is` show is compared with what `skopeo inspect` reports.

use std::{net::SocketAddr, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use clap::Parser as _;
use futures::StreamExt as _;
use imagestreams::{
    cli::{Cli, Command, ServiceName},
    client::{self, Globals},
};
use imagestreams_common::{
    config::Secret,
    model::ImageStream,
    subjects::{self, Kind},
};
use imagestreams_images_api::view::{ANNOTATION_METADATA_ERROR, ImageStreamImage, ImageStreamTag};
use imagestreams_integration::{
    ImageBuilder, NatsServer, Registry, RegistryOptions, TestApp,
    fake_registry::FakeRegistry,
    image::inspect,
    registry_proxy::{BlobFault, RegistryProxy},
    wait_for_some,
};
use imagestreams_proto::v1 as proto;
use imagestreams_registry_watcher::metadata;
use serde_json::{Value, json};

/// The bearer token the registry sends and the watcher expects.
const TOKEN: &str = "images-e2e-token";
/// How long a push may take to show in the stream.
const LAND_TIMEOUT: Duration = Duration::from_secs(30);

/// nats-server, a notifying docker-registry (with `includereferences`) and every service.
struct Harness {
    app: TestApp,
    registry: Registry,
    nats: NatsServer,
    /// Between the services and the registry when they read it.
    proxy: RegistryProxy,
}

impl Harness {
    async fn start() -> anyhow::Result<Harness> {
        Self::start_with(BlobFault::None).await
    }

    /// The services read the registry through a proxy doing `fault` to blob GETs.
    async fn start_with(fault: BlobFault) -> anyhow::Result<Harness> {
        let nats = NatsServer::start().await?;
        // Hold the watcher's port while the registry starts: each needs the other's address.
        let reserved = std::net::TcpListener::bind("127.0.0.1:0")?;
        let watcher: SocketAddr = reserved.local_addr()?;
        let registry = Registry::start(RegistryOptions {
            include_references: true,
            ..RegistryOptions::notifying(format!("http://{watcher}/notifications"), Some(TOKEN))
        })
        .await?;
        drop(reserved);
        let host = registry.host();
        let proxy = RegistryProxy::start(&registry.url(), fault).await?;
        let app = TestApp::spawn_with(&nats, &ServiceName::ALL, |c| {
            c.registry_watcher.listen = watcher;
            c.registry_watcher.token = Some(Secret::new(TOKEN));
            c.integrated_registry.host = host;
            c.integrated_registry.url = Some(proxy.url());
        })
        .await?;
        Ok(Harness {
            app,
            registry,
            nats,
            proxy,
        })
    }

    /// Runs `imagestreams ARGS…` (client verbs) against the gateway: stdout, or the error with stderr.
    async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let cli = Cli::try_parse_from(std::iter::once("imagestreams").chain(args.iter().copied()))?;
        let Command::Client(command) = cli.command else {
            anyhow::bail!("not a client verb: {args:?}");
        };
        let globals = Globals {
            server: self.app.grpc_url(),
            namespace: cli.namespace,
            token: None,
            certificate_authority: None,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        client::run(globals, command, &mut out, &mut err)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "imagestreams {}: {e}\n{}",
                    args.join(" "),
                    String::from_utf8_lossy(&err)
                )
            })?;
        Ok(String::from_utf8(out)?)
    }

    /// Waits until `ns/name:tag` points at `digest`.
    async fn wait_for_tag(
        &self,
        ns: &str,
        name: &str,
        tag: &str,
        digest: &str,
    ) -> anyhow::Result<()> {
        let client = self.app.client().await?;
        wait_for_some(
            || {
                let mut client = client.clone();
                async move {
                    let stream = client
                        .get(proto::GetRequest {
                            namespace: ns.to_owned(),
                            name: name.to_owned(),
                            ..Default::default()
                        })
                        .await
                        .ok()?
                        .into_inner();
                    let stream = ImageStream::try_from(stream).ok()?;
                    let current = stream.status_tag(tag)?.items.first()?.image.clone();
                    (current == digest).then_some(())
                }
            },
            LAND_TIMEOUT,
        )
        .await
        .map_err(|e| e.context(format!("{ns}/{name}:{tag} never pointed at {digest}")))
    }

    /// The first `count` events of `kind` for `ns/name` (waiting up to [`LAND_TIMEOUT`] for each).
    async fn events<E: prost::Message + Default>(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        count: usize,
    ) -> anyhow::Result<Vec<E>> {
        let js = jetstream::new(self.nats.connect().await?);
        let consumer = js
            .get_stream(kind.stream())
            .await?
            .create_consumer(pull::Config {
                filter_subject: kind.subject(ns, name),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut events = Vec::new();
        while events.len() < count {
            let message = tokio::time::timeout(LAND_TIMEOUT, messages.next())
                .await
                .map_err(|_| anyhow::anyhow!("only {} {kind:?} of {ns}/{name}", events.len()))?
                .ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
            events.push(E::decode(message.payload.clone())?);
        }
        Ok(events)
    }

    /// The `ImagePushed` events of `ns/name` stored so far.
    async fn image_pushed(
        &self,
        ns: &str,
        name: &str,
        count: usize,
    ) -> anyhow::Result<Vec<proto::ImagePushed>> {
        self.events(Kind::ImagesPushed, ns, name, count).await
    }

    /// The `ImageRecorded` events of `ns/name`, waiting for `count`.
    async fn image_recorded(
        &self,
        ns: &str,
        name: &str,
        count: usize,
    ) -> anyhow::Result<Vec<proto::ImageRecorded>> {
        self.events(Kind::ImagesRecorded, ns, name, count).await
    }

    /// The pushes the metadata recorder has not finished with.
    async fn backlog(&self) -> anyhow::Result<u64> {
        let js = jetstream::new(self.nats.connect().await?);
        let mut consumer = js
            .get_stream(subjects::STREAM_IMAGES)
            .await?
            .get_consumer::<pull::Config>(metadata::CONSUMER_NAME)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let info = consumer.info().await?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    /// What `get isimage STREAM@DIGEST -o json` shows in `ns`.
    async fn isimage(
        &self,
        ns: &str,
        stream: &str,
        digest: &str,
    ) -> anyhow::Result<ImageStreamImage> {
        let text = self
            .cli(&[
                "get",
                "isimage",
                &format!("{stream}@{digest}"),
                "-n",
                ns,
                "-o",
                "json",
            ])
            .await?;
        Ok(serde_json::from_str(&text)?)
    }

    /// How many events of `kind` for `ns/name` JetStream holds.
    async fn stored(&self, kind: Kind, ns: &str, name: &str) -> anyhow::Result<u64> {
        let js = jetstream::new(self.nats.connect().await?);
        let stream = js.get_stream(kind.stream()).await?;
        let info = stream.info_with_subjects(kind.subject(ns, name)).await?;
        let counts: Vec<(String, usize)> = futures::TryStreamExt::try_collect(info).await?;
        Ok(counts.iter().map(|(_, n)| *n as u64).sum())
    }
}

/// `Created` times as instants (skopeo and the config may spell the fraction differently).
fn instant(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {value}"))
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_isimage_shows_what_skopeo_inspect_shows() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let image = ImageBuilder::new()
        .label("org.opencontainers.image.title", "metadata test")
        .label("maintainer", "imagestreams")
        .env("GREETING", "hello")
        .env("MODE", "test")
        .entrypoint(["/bin/app", "--serve"])
        .file("etc/app.conf", "port = 8080\n")
        .build()
        .await?;
    let reference = h.registry.image_ref("ns1/app:1");
    let digest = image.push(&reference, None).await?;
    h.wait_for_tag("ns1", "app", "1", &digest).await?;
    // the metadata follows the tag: ImageRecorded says it is in the catalog
    let recorded = h.image_recorded("ns1", "app", 1).await?;
    let pushed = h.image_pushed("ns1", "app", 1).await?;
    assert_eq!(recorded[0].digest, digest);
    assert_eq!(recorded[0].pushed_event_id, pushed[0].event_id);
    assert_eq!(recorded[0].tag, "1");

    let text = h
        .cli(&[
            "get",
            "isimage",
            &format!("app@{digest}"),
            "-n",
            "ns1",
            "-o",
            "json",
        ])
        .await?;
    let isimage: ImageStreamImage = serde_json::from_str(&text)?;
    let got: Value = serde_json::from_str(&text)?;
    let skopeo = inspect(&reference, &[]).await?;
    let config = inspect(&reference, &["--config"]).await?;
    let manifest = inspect(&reference, &["--raw"]).await?;

    assert_eq!(got["kind"], "ImageStreamImage");
    assert_eq!(got["metadata"]["name"], format!("app@{digest}"));
    let image = &got["image"];
    assert_eq!(image["metadata"]["name"], json!(digest));
    assert_eq!(skopeo["Digest"], json!(digest));
    assert_eq!(
        image["dockerImageReference"],
        json!(format!("{}/ns1/app@{digest}", h.registry.host()))
    );
    let meta = &image["dockerImageMetadata"];
    assert_eq!(meta["Os"], skopeo["Os"], "os");
    assert_eq!(meta["Architecture"], skopeo["Architecture"], "architecture");
    assert_eq!(
        instant(&meta["Created"]),
        instant(&skopeo["Created"]),
        "created"
    );
    assert_eq!(meta["Config"]["Labels"], skopeo["Labels"], "labels");
    assert_eq!(meta["Config"]["Env"], skopeo["Env"], "env");
    assert_eq!(
        meta["Config"]["Env"], config["config"]["Env"],
        "env (config)"
    );
    assert_eq!(
        meta["Config"]["Entrypoint"], config["config"]["Entrypoint"],
        "entrypoint"
    );
    assert_eq!(meta["Config"]["Entrypoint"], json!(["/bin/app", "--serve"]));
    assert_eq!(
        instant(&meta["Created"]),
        instant(&config["created"]),
        "created (config)"
    );
    let layers: Vec<(Value, Value)> = image["dockerImageLayers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].clone(), l["size"].clone()))
        .collect();
    // skopeo 1.9 lists layer digests (`Layers`); their sizes are the manifest's (`--raw`).
    let skopeo_layers: Vec<(Value, Value)> = skopeo["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(manifest["layers"].as_array().unwrap())
        .map(|(digest, layer)| {
            assert_eq!(layer["digest"], *digest);
            (digest.clone(), layer["size"].clone())
        })
        .collect();
    assert_eq!(layers, skopeo_layers, "layer digests and sizes");
    assert!(!layers.is_empty());
    assert_eq!(
        image["dockerImageManifestMediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(isimage.image.metadata_error().is_none());

    // ImageRecorded carries the summary.
    let summary = recorded[0].summary.clone().expect("a summary");
    assert_eq!(
        summary.platforms,
        [format!(
            "{}/{}",
            skopeo["Os"].as_str().unwrap(),
            skopeo["Architecture"].as_str().unwrap()
        )]
    );
    assert_eq!(summary.layer_count as usize, layers.len());
    let layer_bytes: i64 = layers.iter().map(|(_, size)| size.as_i64().unwrap()).sum();
    let config_bytes = manifest["config"]["size"].as_i64().unwrap();
    assert_eq!(
        summary.total_size,
        layer_bytes + config_bytes,
        "layers and config"
    );
    assert_eq!(meta["Size"], json!(layer_bytes + config_bytes));
    assert_eq!(
        instant(&json!(summary.created)),
        instant(&skopeo["Created"])
    );

    // The REST path serves the same object.
    let rest: Value = reqwest::get(format!(
        "{}/apis/image.openshift.io/v1/namespaces/ns1/imagestreamimages/app@{digest}",
        h.app.http_url()
    ))
    .await?
    .json()
    .await?;
    assert_eq!(rest, got);

    // istag: the tag's current image; describe: its platform and size.
    let istag: ImageStreamTag = serde_json::from_str(
        &h.cli(&["get", "istag", "app:1", "-n", "ns1", "-o", "json"])
            .await?,
    )?;
    assert_eq!(istag.metadata.name, "app:1");
    assert_eq!(istag.image, isimage.image);
    let described = h.cli(&["describe", "is", "app", "-n", "ns1"]).await?;
    let platform = summary.platforms[0].clone();
    assert!(
        described.contains(&format!("{platform}, {} layer", layers.len())),
        "describe shows the platform and layers:\n{described}"
    );
    let table = h.cli(&["get", "istag", "app:1", "-n", "ns1"]).await?;
    assert!(
        table.contains(&platform) && table.contains("app:1"),
        "{table}"
    );

    // Not an image of this stream, of another namespace, or not a digest.
    let missing = h
        .cli(&[
            "get",
            "isimage",
            &format!("app@sha256:{}", "0".repeat(64)),
            "-n",
            "ns1",
        ])
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("not found"), "{missing}");
    let elsewhere = h
        .cli(&["get", "isimage", &format!("app@{digest}"), "-n", "ns2"])
        .await
        .unwrap_err();
    assert!(elsewhere.to_string().contains("not found"), "{elsewhere}");
    let status = reqwest::get(format!(
        "{}/apis/image.openshift.io/v1/namespaces/ns1/imagestreamimages/app@latest",
        h.app.http_url()
    ))
    .await?
    .status();
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multi_arch_index_shows_both_platforms() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let http = reqwest::Client::new();
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let image = ImageBuilder::new().platform("linux", arch).build().await?;
        let digest = image
            .push(&h.registry.image_ref(&format!("ns1/multi:{arch}")), None)
            .await?;
        let bytes = http
            .get(format!(
                "{}/v2/ns1/multi/manifests/{digest}",
                h.registry.url()
            ))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": bytes.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))?;
    let index_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&index))
    );
    http.put(format!("{}/v2/ns1/multi/manifests/1", h.registry.url()))
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(index)
        .send()
        .await?
        .error_for_status()?;
    h.wait_for_tag("ns1", "multi", "1", &index_digest).await?;
    let recorded = h.image_recorded("ns1", "multi", 3).await?;

    let got: Value = serde_json::from_str(
        &h.cli(&[
            "get",
            "isimage",
            &format!("multi@{index_digest}"),
            "-n",
            "ns1",
            "-o",
            "json",
        ])
        .await?,
    )?;
    let listed: Vec<(Value, Value, Value)> = got["image"]["dockerImageManifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].clone(),
                m["os"].clone(),
                m["architecture"].clone(),
            )
        })
        .collect();
    let expected: Vec<(Value, Value, Value)> = manifests
        .iter()
        .map(|m| {
            (
                m["digest"].clone(),
                json!("linux"),
                m["platform"]["architecture"].clone(),
            )
        })
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(
        got["image"]["dockerImageManifestMediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let index_event = recorded
        .iter()
        .find(|e| e.digest == index_digest)
        .expect("the index's ImageRecorded");
    assert_eq!(
        index_event.summary.as_ref().map(|s| s.platforms.clone()),
        Some(vec!["linux/amd64".to_owned(), "linux/arm64".to_owned()])
    );
    let described = h.cli(&["describe", "is", "multi", "-n", "ns1"]).await?;
    assert!(
        described.contains("linux/amd64, linux/arm64"),
        "{described}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_digest_under_a_hundred_tags_has_its_config_read_once() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let image = ImageBuilder::new().build().await?;
    let digest = image
        .push(&h.registry.image_ref("ns1/many:t0"), None)
        .await?;
    let http = reqwest::Client::new();
    let manifest = http
        .get(format!(
            "{}/v2/ns1/many/manifests/{digest}",
            h.registry.url()
        ))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let config_digest = serde_json::from_slice::<Value>(&manifest)?["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // 99 more tags of the same manifest: pushes the registry notifies like any other.
    for n in 1..100 {
        http.put(format!("{}/v2/ns1/many/manifests/t{n}", h.registry.url()))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await?
            .error_for_status()?;
    }
    h.wait_for_tag("ns1", "many", "t99", &digest).await?;
    h.image_pushed("ns1", "many", 100).await?;
    let recorded = h.image_recorded("ns1", "many", 1).await?;
    assert!(
        recorded[0]
            .summary
            .as_ref()
            .is_some_and(|s| s.layer_count > 0),
        "{recorded:?}"
    );
    // every push was handled: nothing is left for the recorder
    wait_for_some(
        || async { (h.backlog().await.ok()? == 0).then_some(()) },
        LAND_TIMEOUT,
    )
    .await?;
    assert_eq!(
        h.stored(Kind::ImagesRecorded, "ns1", "many").await?,
        1,
        "one ImageRecorded per digest and stream"
    );
    let log = std::fs::read_to_string(h.registry.log_path())?;
    let config_reads = log
        .lines()
        .filter(|l| l.contains(&format!("\"GET /v2/ns1/many/blobs/{config_digest} ")))
        .count();
    assert_eq!(
        config_reads, 1,
        "the config blob {config_digest} was read {config_reads} times"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_config_is_recorded_and_the_tag_still_moves() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let fake = FakeRegistry::start().await?;
    let (_, digest) = FakeRegistry::bad_config_manifest();
    let mut client = h.app.client().await?;
    let response = client
        .import_image(proto::ImportImageRequest {
            namespace: "ns1".into(),
            name: "broken".into(),
            from: format!("{}/badconfig/app:latest", fake.host()),
            confirm: true,
            insecure: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(response.tags.len(), 1);
    assert_eq!(response.tags[0].status, "Success", "{:?}", response.tags[0]);
    assert_eq!(response.tags[0].image, digest);

    let got: ImageStreamImage = serde_json::from_str(
        &h.cli(&[
            "get",
            "isimage",
            &format!("broken@{digest}"),
            "-n",
            "ns1",
            "-o",
            "json",
        ])
        .await?,
    )?;
    let error = got
        .image
        .metadata
        .annotations
        .get(ANNOTATION_METADATA_ERROR)
        .expect("the error is recorded");
    assert!(error.contains("not an image config"), "{error}");
    assert!(got.image.docker_image_metadata.is_none());
    // Recorded once: a second import does not read the config again.
    let reads = fake.count("/v2/badconfig/app/blobs/");
    client
        .import_image(proto::ImportImageRequest {
            namespace: "ns1".into(),
            name: "broken".into(),
            insecure: true,
            ..Default::default()
        })
        .await?;
    assert_eq!(fake.count("/v2/badconfig/app/blobs/"), reads);
    let described = h.cli(&["describe", "is", "broken", "-n", "ns1"]).await?;
    assert!(described.contains("! metadata: "), "{described}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_moves_its_tag_while_the_registry_holds_the_metadata_read() -> anyhow::Result<()> {
    // every config GET of the services waits 2 s in the proxy
    let h = Harness::start_with(BlobFault::Stall(Duration::from_secs(2))).await?;
    let image = ImageBuilder::new().label("stalled", "yes").build().await?;
    let digest = image
        .push(&h.registry.image_ref("ns1/slow:1"), None)
        .await?;
    h.wait_for_tag("ns1", "slow", "1", &digest).await?;
    // the tag moved, and the image's metadata is still being read
    let early = h.isimage("ns1", "slow", &digest).await?;
    assert!(
        early.image.metadata_error().is_some(),
        "the tag should move before the metadata is read: {early:?}"
    );
    assert!(h.proxy.blob_gets() <= 1, "one config read at most so far");

    // then the metadata follows
    let recorded = h.image_recorded("ns1", "slow", 1).await?;
    assert_eq!(recorded[0].digest, digest);
    let summary = recorded[0].summary.clone().expect("a summary");
    assert_eq!(summary.error, "");
    assert!(summary.layer_count > 0, "{summary:?}");
    let late = h.isimage("ns1", "slow", &digest).await?;
    assert!(late.image.metadata_error().is_none(), "{late:?}");
    assert_eq!(
        late.image
            .docker_image_metadata
            .as_ref()
            .and_then(|m| m.config.as_ref())
            .and_then(|c| c.labels.get("stalled").cloned()),
        Some("yes".to_owned())
    );
    assert_eq!(h.proxy.blob_gets(), 1, "the config was read once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_answering_429_to_metadata_reads_slows_them_and_loses_none() -> anyhow::Result<()>
{
    const IMAGES: usize = 4;
    // more than the registry client's own retries (3 per read) absorb: some
    // reads are handed back to JetStream and read again later
    const REFUSALS: u64 = 24;
    let h = Harness::start_with(BlobFault::TooManyRequests {
        times: REFUSALS,
        retry_after_secs: 1,
    })
    .await?;
    let mut digests = Vec::new();
    for n in 0..IMAGES {
        let image = ImageBuilder::new()
            .label("n", n.to_string())
            .build()
            .await?;
        let digest = image
            .push(&h.registry.image_ref(&format!("ns1/busy:{n}")), None)
            .await?;
        h.wait_for_tag("ns1", "busy", &n.to_string(), &digest)
            .await?;
        digests.push(digest);
    }
    // every image is recorded in the end, none with an error
    let recorded = h.image_recorded("ns1", "busy", IMAGES).await?;
    let mut got: Vec<_> = recorded.iter().map(|e| e.digest.clone()).collect();
    got.sort();
    digests.sort();
    assert_eq!(got, digests);
    for event in &recorded {
        let summary = event.summary.as_ref().expect("a summary");
        assert_eq!(summary.error, "", "{event:?}");
    }
    for digest in &digests {
        let image = h.isimage("ns1", "busy", digest).await?;
        assert!(image.image.metadata_error().is_none(), "{image:?}");
    }
    // the registry's refusals were taken, and each image read once past them
    assert_eq!(h.proxy.refused(), REFUSALS);
    assert_eq!(h.proxy.blob_gets(), REFUSALS + IMAGES as u64);
    Ok(())
}
