//! Imports from external registries, end to end: the stream-store, the
//! tag-syncer and the gateway on a real nats-server, importing from a real
//! docker-registry (anonymous and htpasswd) and from the fault-injecting
//! fake registry.
//!
//! - the seed scenario: `create -f` of the unchanged seed document imports
//!   `openshift/ruby-20-centos7` through a `[[registry]]` rule; `import-image`
//!   adds a pushed image newest first, and a second one changes nothing;
//! - private registries: only the namespace's right secret imports; the
//!   secret never shows in the tag-syncer's logs (the binary, at debug
//!   level), in API output, or unencrypted in the bucket;
//! - faults and unreachable registries end in `ImportSuccess=False`
//!   conditions with their reasons, quickly;
//! - scheduled imports re-import a changed tag and survive a restart.
//!
//! The gateway's `ImportImage` and `Secrets` are served here by
//! [`StubGateway`], which holds exactly the code the gateway is to take.

mod gar_keys;
mod mirror;
mod mirror_rules;
mod receiver_kinds;
mod receivers;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use imagestreams::{
    cli::{
        ClientCommand, CreateArgs, CreateRegistrySecretArgs, ImportImageArgs, SecretsCommand,
        ServiceName,
    },
    client::{self, ClientError, Context, Globals},
};
use imagestreams_common::{
    config::{Config, RegistryRuleConfig},
    error::ApiError,
    model::{ANNOTATION_DOCKER_REPOSITORY_CHECK, IMPORT_SUCCESS, ImageStream},
    nats::Topology,
};
use imagestreams_integration::{
    NatsServer, Registry, RegistryOptions, TestApp, TestDir, binaries, fake_registry::FakeRegistry,
    push_unique_image, wait_for_some,
};
use imagestreams_proto::v1::{self as proto, image_streams_server::ImageStreams};
use imagestreams_stream_store_api::{StoreClient, StreamReader};
use imagestreams_tag_syncer_api::{
    ImportClient, STATUS_FAILURE, STATUS_SUCCESS, STATUS_UNCHANGED, SecretsClient,
};
use serde_json::Value;
use tonic::{Request, Response, Status};

/// How long an import may take to show up.
const WAIT: Duration = Duration::from_secs(30);
/// The repository of the seed document.
const SEED_REPOSITORY: &str = "openshift/ruby-20-centos7";

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// What every test runs on: a nats-server with the topology, and clients.
struct Env {
    nats: NatsServer,
    topology: Topology,
    reader: StreamReader,
    store: StoreClient,
    imports: ImportClient,
    key_dir: TestDir,
}

impl Env {
    async fn start() -> anyhow::Result<Env> {
        Self::start_on(NatsServer::start().await?).await
    }

    async fn start_on(nats: NatsServer) -> anyhow::Result<Env> {
        let client = nats.connect().await?;
        let topology = imagestreams_common::nats::provision(&client, 1).await?;
        let key_dir = TestDir::new("secrets-key")?;
        std::fs::write(key_dir.join("key"), rand_bytes())?;
        Ok(Env {
            reader: StreamReader::new(topology.streams.clone(), client.clone()),
            store: StoreClient::new(client.clone()),
            imports: ImportClient::new(client.clone()),
            topology,
            nats,
            key_dir,
        })
    }

    fn key_file(&self) -> PathBuf {
        self.key_dir.join("key")
    }

    /// Fast registry limits, the shared secrets key, and `configure`.
    fn configure(&self, c: &mut Config, rules: &[RegistryRuleConfig]) {
        c.registries = rules.to_vec();
        c.secrets.key_file = Some(self.key_file());
        let t = &mut c.tag_syncer;
        t.connect_timeout_ms = 1_000;
        t.request_timeout_ms = 1_500;
        t.max_retries = 1;
        t.backoff_initial_ms = 50;
        t.max_retry_after_secs = 2;
        t.import_timeout_ms = 8_000;
    }

    async fn spawn(
        &self,
        services: &[ServiceName],
        rules: &[RegistryRuleConfig],
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestApp> {
        TestApp::spawn_with(&self.nats, services, |c| {
            self.configure(c, rules);
            configure(c);
        })
        .await
    }

    async fn create(&self, namespace: &str, document: &[u8]) -> anyhow::Result<ImageStream> {
        let stream = ImageStream::parse_document(document)?;
        Ok(self
            .store
            .create(proto::CreateRequest {
                namespace: namespace.to_owned(),
                image_stream: Some(stream.into()),
            })
            .await?)
    }

    /// Waits until `probe` holds for the stream.
    async fn wait_stream(
        &self,
        namespace: &str,
        name: &str,
        probe: impl Fn(&ImageStream) -> bool,
    ) -> anyhow::Result<ImageStream> {
        wait_for_some(
            || async {
                let stream = self.reader.get(namespace, name).await.ok()?;
                probe(&stream).then_some(stream)
            },
            WAIT,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{namespace}/{name}: {e}"))
    }

    async fn import(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<proto::ImportImageResponse, ApiError> {
        self.imports
            .import_image(&proto::ImportImageRequest {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                ..Default::default()
            })
            .await
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(16) {
        chunk.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out
}

fn rule(prefix: &str, location: &str) -> RegistryRuleConfig {
    RegistryRuleConfig {
        prefix: Some(prefix.to_owned()),
        location: Some(location.to_owned()),
        insecure: true,
        ..RegistryRuleConfig::default()
    }
}

fn condition<'a>(stream: &'a ImageStream, tag: &str) -> Option<(&'a str, &'a str)> {
    let c = stream.status_tag(tag)?.condition(IMPORT_SUCCESS)?;
    (c.status == "False").then_some((c.reason.as_str(), c.message.as_str()))
}

fn images(stream: &ImageStream, tag: &str) -> Vec<String> {
    stream
        .status_tag(tag)
        .map(|l| l.items.iter().map(|i| i.image.clone()).collect())
        .unwrap_or_default()
}

fn status_of<'a>(response: &'a proto::ImportImageResponse, tag: &str) -> &'a str {
    response
        .tags
        .iter()
        .find(|t| t.tag == tag)
        .map(|t| t.status.as_str())
        .unwrap_or("<missing>")
}

fn is_rfc3339_utc(value: &Value) -> bool {
    let s = value.as_str().unwrap_or_default();
    s.len() == 20 && s.as_bytes()[10] == b'T' && s.ends_with('Z')
}

/// The object keys of `ours` are those of `theirs`, plus at most `generation`.
fn same_keys(ours: &Value, theirs: &Value, at: &str) {
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().filter(|k| *k != "generation").cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(ours), keys(theirs), "keys of {at}");
}

// ---------------------------------------------------------------------------
// The gateway's ImportImage and Secrets, as the gateway is to serve them.

/// A gRPC server with the gateway's `ImportImage` (the exact snippet handed to
/// the gateway) and the `Secrets` service; the other calls are the real
/// gateway's.
struct StubGateway {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ImportOnly {
    imports: ImportClient,
}

#[tonic::async_trait]
impl ImageStreams for ImportOnly {
    async fn create(
        &self,
        _: Request<proto::CreateRequest>,
    ) -> Result<Response<proto::ImageStream>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn get(
        &self,
        _: Request<proto::GetRequest>,
    ) -> Result<Response<proto::ImageStream>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn list(
        &self,
        _: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn update(
        &self,
        _: Request<proto::UpdateRequest>,
    ) -> Result<Response<proto::ImageStream>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn delete(
        &self,
        _: Request<proto::DeleteRequest>,
    ) -> Result<Response<proto::DeleteResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    type WatchStream = futures::stream::Empty<Result<proto::WatchEvent, Status>>;
    async fn watch(
        &self,
        _: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn tag(
        &self,
        _: Request<proto::TagRequest>,
    ) -> Result<Response<proto::TagResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn get_image(
        &self,
        _: Request<proto::GetImageRequest>,
    ) -> Result<Response<proto::ImageStreamImage>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn history(
        &self,
        _: Request<proto::HistoryRequest>,
    ) -> Result<Response<proto::HistoryResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn get_image_stream_tag(
        &self,
        _: Request<proto::GetImageStreamTagRequest>,
    ) -> Result<Response<proto::ImageStreamTag>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn mirror(
        &self,
        _: Request<proto::MirrorRequest>,
    ) -> Result<Response<proto::MirrorResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }

    // -- the gateway's ImportImage: begin --
    async fn import_image(
        &self,
        request: Request<proto::ImportImageRequest>,
    ) -> Result<Response<proto::ImportImageResponse>, Status> {
        let response =
            imagestreams_tag_syncer_api::import_image(&self.imports, request.into_inner()).await?;
        Ok(Response::new(response))
    }
    // -- the gateway's ImportImage: end --
}

impl StubGateway {
    async fn start(env: &Env) -> anyhow::Result<StubGateway> {
        let client = env.nats.connect().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let imports = ImportOnly {
            imports: ImportClient::new(client.clone()),
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .layer(tonic::service::InterceptorLayer::new(
                    imagestreams_common::auth::unrestricted,
                ))
                .add_service(proto::image_streams_server::ImageStreamsServer::new(
                    imports,
                ))
                .add_service(imagestreams_gateway::secrets::SecretsApi::new(client).into_server())
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(StubGateway { url, task })
    }
}

impl Drop for StubGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs one client verb in process: its result, stdout and stderr.
async fn cli(
    server: &str,
    namespace: &str,
    command: ClientCommand,
) -> (Result<(), ClientError>, String, String) {
    let globals = Globals {
        server: server.to_owned(),
        namespace: Some(namespace.to_owned()),
        token: None,
        certificate_authority: None,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = client::run(globals, command, &mut out, &mut err).await;
    (
        result,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// `import-image NAME [--from FROM] [--confirm]`.
fn import_image(name: &str, from: Option<&str>, confirm: bool) -> ClientCommand {
    ClientCommand::ImportImage(ImportImageArgs {
        name: name.to_owned(),
        from: from.map(str::to_owned),
        all: false,
        confirm,
        scheduled: false,
        insecure: false,
    })
}

/// `secrets create-registry NAME --server S --username U --password-stdin` with `password` on stdin.
async fn create_secret(
    server_url: &str,
    namespace: &str,
    name: &str,
    registry: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<String> {
    let mut ctx = Context::new(Globals {
        server: server_url.to_owned(),
        namespace: Some(namespace.to_owned()),
        token: None,
        certificate_authority: None,
    });
    let command = SecretsCommand::CreateRegistry(CreateRegistrySecretArgs {
        name: name.to_owned(),
        server: registry.to_owned(),
        username: username.to_owned(),
        password_stdin: true,
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdin = format!("{password}\n").into_bytes();
    client::secrets::run(
        &mut ctx,
        &command,
        &mut stdin.as_slice(),
        &mut out,
        &mut err,
    )
    .await?;
    stdin.fill(0);
    Ok(String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err))
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_stream_imports_on_create_and_import_image_is_idempotent() -> anyhow::Result<()> {
    let registry = Registry::start(RegistryOptions::default()).await?;
    let latest = push_unique_image(&registry, &format!("{SEED_REPOSITORY}:latest")).await?;
    let v04 = push_unique_image(&registry, &format!("{SEED_REPOSITORY}:v0.4")).await?;
    let env = Env::start().await?;
    let rules = [rule("docker.io", &registry.host())];
    let app = env
        .spawn(
            &[
                ServiceName::StreamStore,
                ServiceName::TagSyncer,
                ServiceName::Gateway,
            ],
            &rules,
            |_| {},
        )
        .await?;

    // `create -f` of the unchanged seed document, through the gateway
    let create = shared().join("seed/imagestream-create.json");
    let (result, out, _) = cli(
        &app.grpc_url(),
        "default",
        ClientCommand::Create(CreateArgs {
            filenames: vec![create],
            ..CreateArgs::default()
        }),
    )
    .await;
    result?;
    assert!(out.contains("ruby"), "{out}");

    // the import on creation gives the synced shape, with the real digests
    let synced = env
        .wait_stream("default", "ruby", |s| {
            s.metadata
                .annotations
                .contains_key(ANNOTATION_DOCKER_REPOSITORY_CHECK)
        })
        .await?;
    let ours: Value = serde_json::to_value(&synced)?;
    let theirs: Value = serde_json::from_slice(&std::fs::read(
        shared().join("seed/imagestream-synced.json"),
    )?)?;
    same_keys(&ours, &theirs, "the stream");
    same_keys(&ours["metadata"], &theirs["metadata"], "metadata");
    same_keys(&ours["status"], &theirs["status"], "status");
    for field in ["kind", "apiVersion", "spec"] {
        assert_eq!(ours[field], theirs[field], "{field}");
    }
    for field in ["name", "namespace", "selfLink"] {
        assert_eq!(
            ours["metadata"][field], theirs["metadata"][field],
            "{field}"
        );
    }
    assert_eq!(ours["metadata"]["uid"].as_str().map(str::len), Some(36));
    assert!(
        ours["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    );
    assert!(is_rfc3339_utc(&ours["metadata"]["creationTimestamp"]));
    assert!(is_rfc3339_utc(
        &ours["metadata"]["annotations"][ANNOTATION_DOCKER_REPOSITORY_CHECK]
    ));
    assert_eq!(
        ours["status"]["dockerImageRepository"],
        theirs["status"]["dockerImageRepository"]
    );
    let tags = ours["status"]["tags"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = tags.iter().filter_map(|t| t["tag"].as_str()).collect();
    assert_eq!(names, ["latest", "v0.4"]);
    for (i, (tag, digest)) in [(&tags[0], &latest), (&tags[1], &v04)]
        .into_iter()
        .enumerate()
    {
        let their_tag = &theirs["status"]["tags"][i];
        same_keys(tag, their_tag, "a tag");
        let items = tag["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1, "{tag}");
        same_keys(&items[0], &their_tag["items"][0], "an item");
        assert_eq!(items[0]["image"], digest.as_str());
        assert_eq!(
            items[0]["dockerImageReference"],
            format!("{SEED_REPOSITORY}@{digest}")
        );
        assert!(is_rfc3339_utc(&items[0]["created"]));
        assert_eq!(items[0]["generation"], 1);
    }

    // a new image in v0.4, then import-image ruby: two items, newest first
    let newer = push_unique_image(&registry, &format!("{SEED_REPOSITORY}:v0.4")).await?;
    let first = env.import("default", "ruby").await?;
    assert_eq!(status_of(&first, "v0.4"), STATUS_SUCCESS);
    assert_eq!(status_of(&first, "latest"), STATUS_UNCHANGED);
    let after = ImageStream::try_from(first.image_stream.clone().expect("the stream"))?;
    assert_eq!(images(&after, "v0.4"), [newer.clone(), v04.clone()]);
    assert_eq!(images(&after, "latest"), [latest]);

    // import-image again: nothing changes, the resourceVersion stays
    let second = env.import("default", "ruby").await?;
    assert!(
        second.tags.iter().all(|t| t.status == STATUS_UNCHANGED),
        "{second:?}"
    );
    let again = ImageStream::try_from(second.image_stream.clone().expect("the stream"))?;
    assert_eq!(again, after, "not even the check annotation moves");
    assert_eq!(env.reader.get("default", "ruby").await?, after);

    // the CLI through the gateway's ImportImage
    let gateway = StubGateway::start(&env).await?;
    let (result, out, err) = cli(&gateway.url, "default", import_image("ruby", None, false)).await;
    result.map_err(|e| anyhow::anyhow!("{e}: {err}"))?;
    assert!(
        out.starts_with("imagestream.image.openshift.io/ruby imported\n"),
        "{out}"
    );
    assert!(out.contains(&newer), "{out}");
    assert_eq!(env.reader.get("default", "ruby").await?, after);
    let (result, _, _) = cli(&gateway.url, "default", import_image("nope", None, false)).await;
    let message = result
        .expect_err("a missing stream needs --confirm")
        .to_string();
    assert!(
        message.contains("pass --confirm to create and import"),
        "{message}"
    );

    // --confirm creates a stream with one tag from --from
    let (result, out, err) = cli(
        &gateway.url,
        "default",
        import_image("web:v1", Some(&format!("{SEED_REPOSITORY}:v0.4")), true),
    )
    .await;
    result.map_err(|e| anyhow::anyhow!("{e}: {err}"))?;
    assert!(out.contains("web imported"), "{out}");
    let web = env.reader.get("default", "web").await?;
    assert_eq!(images(&web, "v1"), std::slice::from_ref(&newer));
    assert_eq!(
        web.status_tag("v1").unwrap().items[0].docker_image_reference,
        format!("{SEED_REPOSITORY}@{newer}")
    );

    // a tag that is not there: a failure, a condition, and a non-zero exit
    let (result, out, err) = cli(
        &gateway.url,
        "default",
        import_image("ruby:nope", None, false),
    )
    .await;
    assert!(result.is_err(), "{out}");
    assert!(out.contains("imported with errors"), "{out}");
    assert!(err.contains("error: tag nope failed (NotFound)"), "{err}");
    let ruby = env.reader.get("default", "ruby").await?;
    assert_eq!(condition(&ruby, "nope").map(|c| c.0), Some("NotFound"));
    assert_eq!(images(&ruby, "v0.4"), [newer, v04], "history left alone");

    // the imports as the tag-syncer's metrics show them
    let metrics = app.scrape().await?;
    let value = |series: &str| metrics.value(series);
    assert!(
        value(r#"imagestreams_tag_syncer_imported_tags_total{registry="docker.io",outcome="ok"}"#)
            >= 2.0
    );
    assert_eq!(
        value(
            r#"imagestreams_tag_syncer_imported_tags_total{registry="docker.io",outcome="NotFound"}"#
        ),
        1.0
    );
    assert!(
        value(&format!(
            r#"imagestreams_tag_syncer_registry_requests_total{{registry="{}",status="200"}}"#,
            registry.host()
        )) >= 2.0
    );
    assert!(
        value(r#"imagestreams_tag_syncer_import_duration_seconds_count{registry="docker.io"}"#)
            >= 2.0
    );
    app.stop().await?;
    Ok(())
}

/// The tag-syncer as the binary, logging at debug level to a file.
struct SyncerProcess {
    child: tokio::process::Child,
    log: PathBuf,
    _dir: TestDir,
}

impl SyncerProcess {
    async fn start(env: &Env, rules: &[RegistryRuleConfig]) -> anyhow::Result<SyncerProcess> {
        let dir = TestDir::new("tag-syncer")?;
        let mut toml = format!(
            "[nats]\nurl = \"{}\"\nauto_start = false\n\n[secrets]\nkey_file = \"{}\"\n\n\
             [tag_syncer]\nhttp_listen = \"127.0.0.1:0\"\nhooks_listen = \"127.0.0.1:0\"\nconnect_timeout_ms = 1000\n\
             request_timeout_ms = 1500\nmax_retries = 1\nbackoff_initial_ms = 50\nimport_timeout_ms = 8000\n",
            env.nats.url(),
            env.key_file().display()
        );
        for r in rules {
            toml += &format!(
                "\n[[registry]]\nprefix = \"{}\"\nlocation = \"{}\"\ninsecure = true\n",
                r.prefix.as_deref().unwrap_or_default(),
                r.location.as_deref().unwrap_or_default()
            );
        }
        let config = dir.join("imagestreams.toml");
        std::fs::write(&config, toml)?;
        let log = dir.join("tag-syncer.log");
        let mut command = tokio::process::Command::new(binaries::imagestreams());
        for switch in binaries::test_switches() {
            command.env_remove(switch);
        }
        let child = command
            .arg("--config")
            .arg(&config)
            .args(["serve", "tag-syncer"])
            .current_dir(dir.path())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout"))?)
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        let process = std::sync::Mutex::new(SyncerProcess {
            child,
            log,
            _dir: dir,
        });
        // up, or ended (then say why at once, not after the wait)
        let started = wait_for_some(
            || async {
                let mut process = process.lock().ok()?;
                let exited = process.child.try_wait().ok().flatten().is_some();
                (exited || process.logs().contains("imagestreams is up")).then_some(!exited)
            },
            WAIT,
        )
        .await;
        let process = process
            .into_inner()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        started
            .and_then(|up| up.then_some(()).ok_or_else(|| anyhow::anyhow!("it exited")))
            .map_err(|e| {
                anyhow::anyhow!("the tag-syncer did not start: {e}\n{}", process.logs())
            })?;
        Ok(process)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash.
    async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    async fn stop(mut self) -> anyhow::Result<String> {
        if let Some(pid) = self.child.id() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).expect("a pid"),
                rustix::process::Signal::TERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        Ok(self.logs())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_registries_import_only_with_the_namespace_secret_which_never_leaks()
-> anyhow::Result<()> {
    let password = format!("Pw-{}", uuid::Uuid::new_v4().simple());
    let wrong = format!("Wrong-{}", uuid::Uuid::new_v4().simple());
    let registry = Registry::start(RegistryOptions {
        htpasswd: Some(("puller".to_owned(), password.clone())),
        ..RegistryOptions::default()
    })
    .await?;
    let digest = push_unique_image(&registry, "team/app:v1").await?;
    let fake = FakeRegistry::start().await?;
    let (_, fake_digest) = FakeRegistry::manifest();
    let env = Env::start().await?;
    let store = env.spawn(&[ServiceName::StreamStore], &[], |_| {}).await?;
    let rules = [
        rule(&registry.host(), &registry.host()),
        rule(&fake.host(), &fake.host()),
    ];
    let syncer = SyncerProcess::start(&env, &rules).await?;
    let gateway = StubGateway::start(&env).await?;
    let document = |namespace: &str| {
        serde_json::json!({
            "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {"tags": [
                {"name": "v1", "from": {"kind": "DockerImage", "name": registry.image_ref("team/app:v1")}},
                {"name": "token", "from": {"kind": "DockerImage", "name": format!("{}/private/app:latest", fake.host())}}
            ]}
        })
        .to_string()
    };

    // no secret: Unauthorized, on creation
    env.create("team-a", document("team-a").as_bytes()).await?;
    let stream = env
        .wait_stream("team-a", "app", |s| {
            condition(s, "v1").is_some() && condition(s, "token").is_some()
        })
        .await?;
    assert_eq!(condition(&stream, "v1").map(|c| c.0), Some("Unauthorized"));
    assert_eq!(
        condition(&stream, "token").map(|c| c.0),
        Some("Unauthorized")
    );

    // a wrong secret: still Unauthorized
    create_secret(
        &gateway.url,
        "team-a",
        "pull",
        &registry.host(),
        "puller",
        &wrong,
    )
    .await?;
    let response = env.import("team-a", "app:v1").await?;
    assert_eq!(status_of(&response, "v1"), STATUS_FAILURE);
    assert_eq!(response.tags[0].reason, "Unauthorized", "{response:?}");

    // the right ones (replacing the wrong one): basic on the real registry, a bearer token on the fake
    let said = create_secret(
        &gateway.url,
        "team-a",
        "pull",
        &registry.host(),
        "puller",
        &password,
    )
    .await?;
    assert_eq!(said, "secret/pull created\n");
    create_secret(
        &gateway.url,
        "team-a",
        "fake",
        &fake.host(),
        FakeRegistry::USER,
        FakeRegistry::PASSWORD,
    )
    .await?;
    let response = env.import("team-a", "app:v1").await?;
    assert_eq!(status_of(&response, "v1"), STATUS_SUCCESS, "{response:?}");
    let response = env.import("team-a", "app:token").await?;
    assert_eq!(
        status_of(&response, "token"),
        STATUS_SUCCESS,
        "{response:?}"
    );
    let stream = env.reader.get("team-a", "app").await?;
    assert_eq!(images(&stream, "v1"), [digest]);
    assert_eq!(images(&stream, "token"), [fake_digest]);
    assert!(
        condition(&stream, "v1").is_none(),
        "the success cleared the condition"
    );

    // another namespace never uses team-a's secrets
    env.create("team-b", document("team-b").as_bytes()).await?;
    let other = env
        .wait_stream("team-b", "app", |s| condition(s, "v1").is_some())
        .await?;
    assert_eq!(condition(&other, "v1").map(|c| c.0), Some("Unauthorized"));

    // what the API shows: names, servers and usernames
    let listed = SecretsClient::new(env.nats.connect().await?)
        .list("team-a")
        .await?;
    let names: Vec<(&str, &str, &str)> = listed
        .iter()
        .map(|s| (s.name.as_str(), s.server.as_str(), s.username.as_str()))
        .collect();
    let host = registry.host();
    assert_eq!(
        names,
        [
            ("fake", fake.host().as_str(), FakeRegistry::USER),
            ("pull", host.as_str(), "puller")
        ]
    );
    let (result, out, _) = cli(
        &gateway.url,
        "team-a",
        ClientCommand::Secrets(SecretsCommand::List),
    )
    .await;
    result?;
    assert!(out.contains("pull") && out.contains("puller"), "{out}");
    assert!(
        SecretsClient::new(env.nats.connect().await?)
            .list("team-b")
            .await?
            .is_empty()
    );

    // encrypted at rest, and never in output or logs
    let sealed = env
        .topology
        .registry_secrets
        .get("team-a.pull")
        .await?
        .expect("the secret is stored");
    let json = serde_json::to_string(&env.reader.list(None).await?.0)?;
    let logs = syncer.stop().await?;
    assert!(
        logs.contains("import"),
        "the log is the tag-syncer's: {logs}"
    );
    for secret in [password.as_str(), wrong.as_str(), FakeRegistry::PASSWORD] {
        assert!(
            !String::from_utf8_lossy(&sealed).contains(secret),
            "stored in clear"
        );
        assert!(!json.contains(secret), "in the streams");
        assert!(!out.contains(secret), "in the CLI output");
        assert!(!format!("{listed:?}").contains(secret), "in the API output");
        assert!(!logs.contains(secret), "in the tag-syncer's log");
    }
    store.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_unreachable_registries_end_in_conditions_quickly() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let foreign = FakeRegistry::start().await?;
    fake.set_foreign_origin(&foreign.url());
    let env = Env::start().await?;
    let app = env
        .spawn(
            &[ServiceName::StreamStore, ServiceName::TagSyncer],
            &[rule(&fake.host(), &fake.host())],
            |_| {},
        )
        .await?;
    let started = Instant::now();
    let host = fake.host();
    let tags: Vec<Value> = [
        ("e500", "error500"),
        ("r429", "ratelimited"),
        ("r429long", "ratelimitedlong"),
        ("hang", "hang"),
        ("ok", "ok"),
    ]
    .iter()
    .map(|(tag, ns)| {
        serde_json::json!({"name": tag, "from": {"kind": "DockerImage", "name": format!("{host}/{ns}/app:latest")}})
    })
    .chain([serde_json::json!({"name": "redhat", "from": {"kind": "DockerImage", "name": "registry.access.redhat.com/ubi8/ruby-30:latest"}})])
    .collect();
    let document = serde_json::json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "faults"}, "spec": {"tags": tags}
    });
    env.create("faults", document.to_string().as_bytes())
        .await?;
    for (name, ns) in [
        ("truncated", "truncated"),
        ("foreign", "foreignlink"),
        ("slow", "slow"),
        ("many", "many"),
    ] {
        let document = serde_json::json!({
            "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": name}, "spec": {"dockerImageRepository": format!("{host}/{ns}/app")}
        });
        env.create("faults", document.to_string().as_bytes())
            .await?;
    }

    let stream = env
        .wait_stream("faults", "faults", |s| {
            ["e500", "r429", "r429long", "hang", "redhat"]
                .iter()
                .all(|t| condition(s, t).is_some())
                && !images(s, "ok").is_empty()
        })
        .await?;
    let reason = |tag: &str| condition(&stream, tag).map(|c| c.0.to_owned());
    assert_eq!(reason("e500").as_deref(), Some("InternalError"));
    assert_eq!(reason("r429").as_deref(), Some("TooManyRequests"));
    assert_eq!(reason("r429long").as_deref(), Some("TooManyRequests"));
    assert_eq!(reason("hang").as_deref(), Some("Timeout"));
    let redhat = condition(&stream, "redhat").expect("a condition");
    assert!(
        ["ServiceUnavailable", "Timeout"].contains(&redhat.0),
        "{redhat:?}"
    );
    assert!(
        redhat.1.contains("registry.access.redhat.com"),
        "{redhat:?}"
    );
    assert!(stream.status_tag("e500").unwrap().items.is_empty());
    for (name, expected) in [
        ("truncated", "InternalError"),
        ("foreign", "InternalError"),
        ("slow", "Timeout"),
    ] {
        let s = env
            .wait_stream("faults", name, |s| condition(s, "latest").is_some())
            .await?;
        assert_eq!(
            condition(&s, "latest").map(|c| c.0),
            Some(expected),
            "{name}"
        );
    }
    assert!(
        foreign.requests().is_empty(),
        "no request to the foreign host"
    );
    // 100,000 tags: capped at max_tags_per_import, latest first
    let many = env
        .wait_stream("faults", "many", |s| {
            s.status.as_ref().is_some_and(|st| !st.tags.is_empty())
        })
        .await?;
    let count = many.status.as_ref().map(|s| s.tags.len()).unwrap_or(0);
    assert_eq!(count, app.config.tag_syncer.max_tags_per_import);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // every fixture of openshift/library: unreachable registries end in conditions
    let dir = shared().join("fixtures/openshift-library");
    let mut fixtures = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let created = env.create("library", &std::fs::read(&path)?).await?;
            fixtures.push(created);
        }
    }
    assert_eq!(fixtures.len(), 21);
    let started = Instant::now();
    for fixture in &fixtures {
        let importable: Vec<String> = fixture
            .spec
            .tags
            .iter()
            .filter(|t| t.from.as_ref().is_some_and(|f| f.kind == "DockerImage") && !t.reference)
            .map(|t| t.name.clone())
            .collect();
        env.wait_stream("library", &fixture.metadata.name, |s| {
            importable.iter().all(|t| condition(s, t).is_some())
        })
        .await?;
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn an_import_larger_than_a_message_is_stored_and_answered() -> anyhow::Result<()> {
    // 600 tags do not fit in one 64 KiB message (as 10,000 do not in 1 MiB):
    // the import result, the stream-store's answer and the import's reply
    // go through the object store, the stream into one record per tag
    const TAGS: usize = 600;
    const MAX_PAYLOAD: usize = 64 * 1024;
    let fake = FakeRegistry::start().await?;
    let env = Env::start_on(NatsServer::start_with_max_payload(MAX_PAYLOAD).await?).await?;
    let app = env
        .spawn(
            &[ServiceName::StreamStore, ServiceName::TagSyncer],
            &[rule(&fake.host(), &fake.host())],
            |c| {
                c.tag_syncer.max_tags_per_import = TAGS;
                c.tag_syncer.requests_per_second = 0.0;
                // 600 tags in a debug build beside the whole suite on 2 cores
                // took over the suite's short 8 s (twice in CI): the
                // default, as users run it; this test is about sizes
                c.tag_syncer.import_timeout_ms =
                    imagestreams_common::config::DEFAULT_IMPORT_TIMEOUT_MS;
            },
        )
        .await?;
    let response = env
        .imports
        .import_image(&proto::ImportImageRequest {
            namespace: "big".into(),
            name: "big".into(),
            from: format!("{}/many/app", fake.host()),
            all: true,
            confirm: true,
            ..Default::default()
        })
        .await?;
    assert_eq!(response.tags.len(), TAGS);
    assert!(
        response.tags.iter().all(|t| t.status == STATUS_SUCCESS),
        "{:?}",
        response.tags.iter().find(|t| t.status != STATUS_SUCCESS)
    );
    let answered = ImageStream::try_from(response.image_stream.expect("the stream"))?;
    let stored = env.reader.get("big", "big").await?;
    assert_eq!(stored.status.as_ref().map(|s| s.tags.len()), Some(TAGS));
    assert_eq!(answered.status, stored.status);
    assert!(
        stored
            .status
            .iter()
            .flat_map(|s| &s.tags)
            .all(|t| t.items.len() == 1),
        "one image per tag"
    );
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_imports_follow_a_changed_tag_across_a_restart() -> anyhow::Result<()> {
    let registry = Registry::start(RegistryOptions::default()).await?;
    let first = push_unique_image(&registry, "sched/app:v1").await?;
    let env = Env::start().await?;
    let rules = [rule(&registry.host(), &registry.host())];
    let schedule = |c: &mut Config| {
        c.tag_syncer.schedule_interval_secs = 1;
        c.tag_syncer.min_schedule_interval_secs = 1;
    };
    let store = env
        .spawn(&[ServiceName::StreamStore], &rules, |_| {})
        .await?;
    let syncer = env
        .spawn(&[ServiceName::TagSyncer], &rules, schedule)
        .await?;
    let document = serde_json::json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "app"},
        "spec": {"tags": [{
            "name": "v1",
            "from": {"kind": "DockerImage", "name": registry.image_ref("sched/app:v1")},
            "importPolicy": {"scheduled": true}
        }]}
    });
    env.create("sched", document.to_string().as_bytes()).await?;
    env.wait_stream("sched", "app", |s| images(s, "v1") == [first.clone()])
        .await?;

    let second = push_unique_image(&registry, "sched/app:v1").await?;
    env.wait_stream("sched", "app", |s| {
        images(s, "v1") == [second.clone(), first.clone()]
    })
    .await?;

    // the schedule is kept in the bucket, and a new tag-syncer goes on with it
    syncer.stop().await?;
    let entry = env.topology.import_schedule.get("sched.app").await?;
    assert!(entry.is_some(), "the next run is stored");
    let third = push_unique_image(&registry, "sched/app:v1").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        images(&env.reader.get("sched", "app").await?, "v1")[0],
        second,
        "nothing imports while no tag-syncer runs"
    );
    let syncer = env
        .spawn(&[ServiceName::TagSyncer], &rules, schedule)
        .await?;
    env.wait_stream("sched", "app", |s| images(s, "v1").first() == Some(&third))
        .await?;
    syncer.stop().await?;
    store.stop().await?;
    Ok(())
}
