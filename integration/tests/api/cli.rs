//! End-to-end tests of the client verbs: the real `imagestreams` binary (built
//! by `cargo build -p imagestreams`) against the real stream-store and
//! gateway on a real nats-server. Each test has its own server, and each
//! fixture its own namespace.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use async_nats::HeaderMap;
use imagestreams::cli::ServiceName;
use imagestreams_common::{model::ImageStream, nats as topology, subjects::Kind};
use imagestreams_integration::{NatsServer, TestApp, free_port, wait_for_some};
use imagestreams_proto::v1 as proto;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// How long a CLI run, or a change it waits for, may take.
const WAIT: Duration = Duration::from_secs(30);

/// The seed documents, relative to this crate.
const SEED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/seed");
const FIXTURE_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/fixtures/openshift-library"
);

fn seed(file: &str) -> PathBuf {
    Path::new(SEED_DIR).join(file)
}

/// The `imagestreams` binary next to this test executable
/// (`target/<profile>/deps/api-…` → `target/<profile>/imagestreams`).
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let binary = profile_dir.join(format!("imagestreams{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build -p imagestreams` \
         (these tests drive the real binary)",
        binary.display()
    );
    binary
}

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    args: Vec<String>,
    code: Option<i32>,
    pub(crate) stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success; the stdout.
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "imagestreams {:?} failed:\nstdout: {}\nstderr: {}",
            self.args,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts a failure reported as exactly one `error: …` line; that line.
    fn one_error_line(&self) -> &str {
        assert_ne!(
            self.code,
            Some(0),
            "imagestreams {:?} should fail; stdout: {}",
            self.args,
            self.stdout
        );
        assert!(self.code.is_some(), "{:?} died of a signal", self.args);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "imagestreams {:?}: stderr is not one line: {:?}",
            self.args,
            self.stderr
        );
        assert!(
            lines[0].starts_with("error: "),
            "imagestreams {:?}: {:?}",
            self.args,
            lines[0]
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("backtrace"),
            "{}",
            self.stderr
        );
        lines[0]
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("{:?}: not JSON ({e}): {}", self.args, self.stdout))
    }
}

/// The binary, pointed at one server.
pub(crate) struct Cli {
    binary: PathBuf,
    server: String,
}

impl Cli {
    pub(crate) fn new(server: String) -> Self {
        Self {
            binary: binary(),
            server,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--server")
            .arg(&self.server)
            .args(args)
            // The tests choose the namespace; nothing from the environment.
            .env_remove("IMAGESTREAMS_NAMESPACE")
            .env_remove("IMAGESTREAMS_SERVER")
            .env_remove("IMAGESTREAMS_TOKEN")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        self.run_within(args, WAIT).await
    }

    /// [`run`](Self::run), waiting up to `wait`.
    pub(crate) async fn run_within(&self, args: &[&str], wait: Duration) -> Run {
        let output = tokio::time::timeout(wait, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("imagestreams {args:?} did not finish within {wait:?}"))
            .unwrap_or_else(|e| panic!("running {}: {e}", self.binary.display()));
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Starts a long-running verb (`watch`) with its stdout piped.
    fn spawn(&self, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning imagestreams");
        let stdout = child.stdout.take().expect("piped stdout");
        (child, BufReader::new(stdout).lines())
    }
}

/// A nats-server, the stream-store and the gateway, and the binary pointed at them.
struct Env {
    cli: Cli,
    // Held for its lifetime: dropping it stops the services.
    _app: TestApp,
    nats: NatsServer,
}

impl Env {
    async fn start() -> Env {
        // Fail on a missing binary before starting anything.
        binary();
        let nats = NatsServer::start().await.expect("starting nats-server");
        let app = TestApp::spawn_with(
            &nats,
            &[ServiceName::StreamStore, ServiceName::Gateway],
            |_| {},
        )
        .await
        .expect("starting stream-store and gateway");
        Env {
            cli: Cli::new(app.grpc_url()),
            _app: app,
            nats,
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.cli.run(args).await
    }

    /// Publishes an `ImagePushed` of `namespace/stream:tag` → `digest`, as the
    /// registry-watcher would.
    async fn push(&self, namespace: &str, stream: &str, tag: &str, digest: &str) {
        let client = self.nats.connect().await.expect("connecting to NATS");
        let js = async_nats::jetstream::new(client);
        let event = proto::ImagePushed {
            event_id: format!("cli-test:{namespace}:{stream}:{tag}:{digest}"),
            registry: "127.0.0.1:5000".to_owned(),
            repository: format!("{namespace}/{stream}"),
            tag: tag.to_owned(),
            digest: digest.to_owned(),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            source: proto::ImageSource::RegistryNotification as i32,
            namespace: namespace.to_owned(),
            stream: stream.to_owned(),
            ..Default::default()
        };
        topology::publish_event(
            &js,
            Kind::ImagesPushed.subject(namespace, stream),
            &event.event_id,
            &event,
            HeaderMap::new(),
        )
        .await
        .expect("publishing ImagePushed");
    }

    /// Waits until `get is NAME -o json` satisfies `probe`.
    async fn wait_for_stream<T>(
        &self,
        namespace: &str,
        name: &str,
        probe: impl Fn(&Value) -> Option<T>,
    ) -> T {
        let probe = &probe;
        wait_for_some(
            || async move {
                let run = self
                    .run(&["get", "is", name, "-n", namespace, "-o", "json"])
                    .await;
                if run.code != Some(0) {
                    return None;
                }
                serde_json::from_str(&run.stdout)
                    .ok()
                    .and_then(|v| probe(&v))
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{namespace}/{name}: {e}"))
    }
}

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn without(mut keys: Vec<String>, drop: &[&str]) -> Vec<String> {
    keys.retain(|k| !drop.contains(&k.as_str()));
    keys
}

/// `2015-05-05T19:11:57Z`: RFC 3339, UTC, seconds.
fn is_rfc3339_seconds_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'Z'
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_get_gives_the_seed_synced_shape() {
    let env = Env::start().await;
    let create = seed("imagestream-create.json");
    let run = env.run(&["create", "-f", create.to_str().unwrap()]).await;
    assert_eq!(run.ok(), "imagestream.image.openshift.io/ruby created\n");

    let got = env.run(&["get", "is", "ruby", "-o", "json"]).await.json();
    let synced: Value =
        serde_json::from_slice(&std::fs::read(seed("imagestream-synced.json")).unwrap()).unwrap();

    assert_eq!(keys(&got), keys(&synced), "top-level keys: {got:#}");
    assert_eq!(got["kind"], "ImageStream");
    assert_eq!(
        got["apiVersion"], "v1",
        "the apiVersion is written back as given"
    );
    // The annotation and status.tags come from imports, later; metadata.generation
    // is OpenShift 4's, which the 2015 seed predates.
    assert_eq!(
        without(keys(&got["metadata"]), &["generation"]),
        without(keys(&synced["metadata"]), &["annotations"]),
        "metadata keys: {got:#}"
    );
    let meta = &got["metadata"];
    assert_eq!(meta["name"], "ruby");
    assert_eq!(meta["namespace"], "default");
    assert_eq!(
        meta["selfLink"],
        "/osapi/v1/namespaces/default/imagestreams/ruby"
    );
    let uid = meta["uid"].as_str().expect("uid is a string");
    uuid::Uuid::parse_str(uid).unwrap_or_else(|e| panic!("uid {uid:?} is not a UUID: {e}"));
    let rv = meta["resourceVersion"]
        .as_str()
        .expect("resourceVersion is a string");
    assert!(
        !rv.is_empty() && rv.bytes().all(|b| b.is_ascii_digit()),
        "resourceVersion {rv:?} is not decimal"
    );
    let created = meta["creationTimestamp"]
        .as_str()
        .expect("creationTimestamp");
    assert!(
        is_rfc3339_seconds_utc(created),
        "creationTimestamp {created:?}"
    );
    if let Some(generation) = meta.get("generation") {
        assert_eq!(generation, 1);
    }

    assert_eq!(got["spec"], synced["spec"]);
    assert_eq!(
        without(keys(&got["status"]), &[]),
        without(keys(&synced["status"]), &["tags"]),
        "status keys: {got:#}"
    );
    assert_eq!(
        got["status"]["dockerImageRepository"],
        synced["status"]["dockerImageRepository"]
    );

    // The same document again is refused, in one line.
    let again = env.run(&["create", "-f", create.to_str().unwrap()]).await;
    let line = again.one_error_line();
    assert!(line.contains("\"ruby\" already exists"), "{line}");

    // From stdin, as YAML, into another namespace.
    let yaml = env.run(&["get", "is", "ruby", "-o", "yaml"]).await;
    let stream = ImageStream::from_yaml(yaml.ok()).expect("get -o yaml parses");
    let mut child = env
        .cli
        .command(&["create", "-f", "-", "-n", "from-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let document = "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: ruby\nspec:\n  dockerImageRepository: openshift/ruby-20-centos7\n";
    tokio::io::AsyncWriteExt::write_all(&mut stdin, document.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let copy = env
        .run(&["get", "is", "ruby", "-n", "from-stdin", "-o", "json"])
        .await
        .json();
    assert_eq!(copy["spec"], serde_json::to_value(&stream.spec).unwrap());
    assert_eq!(copy["metadata"]["namespace"], "from-stdin");
}

/// `spec` with the tags' `generation` taken out: the server assigns it (1 on
/// create, as OpenShift does), where the fixtures say `null`.
fn spec_without_tag_generations(spec: &Value) -> (Value, Vec<Value>) {
    let mut spec = spec.clone();
    let mut generations = Vec::new();
    if let Some(tags) = spec.get_mut("tags").and_then(Value::as_array_mut) {
        for tag in tags {
            if let Some(g) = tag.as_object_mut().and_then(|t| t.remove("generation")) {
                generations.push(g);
            }
        }
    }
    (spec, generations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_openshift_library_fixture_is_created_and_read_back_unchanged() {
    let env = Env::start().await;
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(FIXTURE_DIR)
        .expect("reading the fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    fixtures.sort();
    assert_eq!(fixtures.len(), 21, "{FIXTURE_DIR}");

    let mut failures = Vec::new();
    for (i, path) in fixtures.iter().enumerate() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let input: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let name = input["metadata"]["name"].as_str().unwrap().to_owned();
        // Several fixtures share a name: one namespace each.
        let namespace = format!("library-{i}");
        let created = env
            .run(&["create", "-f", path.to_str().unwrap(), "-n", &namespace])
            .await;
        if created.code != Some(0) {
            failures.push(format!("{file}: create failed: {}", created.stderr.trim()));
            continue;
        }
        assert_eq!(
            created.stdout,
            format!("imagestream.image.openshift.io/{name} created\n"),
            "{file}"
        );
        let got = env
            .run(&["get", "is", &name, "-n", &namespace, "-o", "json"])
            .await
            .json();
        let (want_spec, _) = spec_without_tag_generations(&input["spec"]);
        let (got_spec, generations) = spec_without_tag_generations(&got["spec"]);
        if got_spec != want_spec {
            failures.push(format!(
                "{file}: spec changed\n  sent: {want_spec}\n  got:  {got_spec}"
            ));
        }
        for g in generations {
            if !(g.is_null() || g.as_i64().is_some_and(|g| g > 0)) {
                failures.push(format!("{file}: a tag generation of {g}"));
            }
        }
        if got["metadata"]["annotations"] != input["metadata"]["annotations"] {
            failures.push(format!("{file}: annotations changed"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // They all show in one table across namespaces, and by name.
    let table = env.run(&["get", "is", "-A"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines.len(), 22, "{}", table.stdout);
    assert!(lines[0].starts_with("NAMESPACE "), "{}", lines[0]);
    let names = env
        .run(&["get", "is", "-n", "library-0", "-o", "name"])
        .await;
    assert_eq!(names.ok().lines().count(), 1, "{}", names.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_tables_yaml_names_and_lists() {
    let env = Env::start().await;
    let create = seed("imagestream-create.json");
    env.run(&["create", "-f", create.to_str().unwrap(), "-n", "t1"])
        .await
        .ok();

    let table = env.run(&["get", "is", "-n", "t1"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{}", table.stdout);
    let header: Vec<&str> = lines[0]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header, ["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, ["ruby", "openshift/ruby-20-centos7"], "{}", lines[1]);

    let wide = env.run(&["get", "is", "-n", "t1", "-o", "wide"]).await;
    assert!(
        wide.ok().lines().next().unwrap().contains("LOCAL LOOKUP"),
        "{}",
        wide.stdout
    );

    // -o yaml parses back into the same stream as -o json.
    let json = env
        .run(&["get", "is", "ruby", "-n", "t1", "-o", "json"])
        .await;
    let yaml = env
        .run(&["get", "is", "ruby", "-n", "t1", "-o", "yaml"])
        .await;
    let from_json = ImageStream::from_json(json.ok().as_bytes()).unwrap();
    let from_yaml =
        ImageStream::from_yaml(yaml.ok()).unwrap_or_else(|e| panic!("{e}\n{}", yaml.stdout));
    assert_eq!(from_yaml, from_json);

    let name = env
        .run(&["get", "is", "ruby", "-n", "t1", "-o", "name"])
        .await;
    assert_eq!(name.ok(), "imagestream.image.openshift.io/ruby\n");
    let slashed = env
        .run(&["get", "imagestreams/ruby", "-n", "t1", "-o", "name"])
        .await;
    assert_eq!(slashed.ok(), name.stdout);

    let list = env
        .run(&["get", "is", "-n", "t1", "-o", "json"])
        .await
        .json();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0], json.json());
    let list_yaml = env.run(&["get", "is", "-n", "t1", "-o", "yaml"]).await;
    assert!(
        list_yaml.ok().contains("kind: List"),
        "{}",
        list_yaml.stdout
    );

    // Several YAML documents in one file, then a label selector.
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(
        file.path(),
        "apiVersion: v1\nkind: ImageStream\nmetadata:\n  name: web\n  labels: {app: web}\n\
         ---\napiVersion: v1\nkind: ImageStream\nmetadata:\n  name: db\n  labels: {app: db}\n",
    )
    .unwrap();
    let created = env
        .run(&[
            "create",
            "-f",
            file.path().to_str().unwrap(),
            "-n",
            "labels",
        ])
        .await;
    assert_eq!(
        created.ok(),
        "imagestream.image.openshift.io/web created\nimagestream.image.openshift.io/db created\n"
    );
    let selected = env
        .run(&["get", "is", "-n", "labels", "-l", "app=web", "-o", "name"])
        .await;
    assert_eq!(selected.ok(), "imagestream.image.openshift.io/web\n");

    let empty = env.run(&["get", "is", "-n", "nothing-here"]).await;
    assert_eq!(empty.ok(), "");
    assert_eq!(
        empty.stderr,
        "No resources found in nothing-here namespace.\n"
    );

    let unknown = env.run(&["get", "pods"]).await;
    assert_eq!(
        unknown.one_error_line(),
        "error: the server doesn't have a resource type \"pods\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_the_stream_and_its_tags() {
    let env = Env::start().await;
    let create = seed("imagestream-create.json");
    env.run(&["create", "-f", create.to_str().unwrap()])
        .await
        .ok();
    let text = env.run(&["describe", "is", "ruby"]).await.ok().to_owned();
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{label}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {label}: in\n{text}"))
            .to_owned()
    };
    assert_eq!(field("Name"), "ruby");
    assert_eq!(field("Namespace"), "default");
    assert_eq!(field("Image Repository"), "openshift/ruby-20-centos7");
    assert_eq!(field("Image Lookup"), "local=false");
    assert!(field("Created").ends_with(" ago"), "{text}");

    let fixture = Path::new(FIXTURE_DIR).join("community--ruby--ruby-centos.json");
    env.run(&["create", "-f", fixture.to_str().unwrap(), "-n", "lib"])
        .await
        .ok();
    let text = env.run(&["describe", "is", "ruby", "-n", "lib"]).await;
    let text = text.ok();
    assert!(
        text.contains("\n  tagged from registry.access.redhat.com/ubi8/ruby-25:latest\n"),
        "{text}"
    );
    assert!(
        text.contains("prefer registry pullthrough when referencing this tag"),
        "{text}"
    );
    assert!(text.contains("\n  Tags: builder, ruby\n"), "{text}");

    let missing = env.run(&["describe", "is", "nope"]).await;
    assert!(
        missing.one_error_line().contains("not found"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_get_is_not_found() {
    let env = Env::start().await;
    let create = seed("imagestream-create.json");
    env.run(&["create", "-f", create.to_str().unwrap()])
        .await
        .ok();
    let deleted = env.run(&["delete", "is", "ruby"]).await;
    assert_eq!(
        deleted.ok(),
        "imagestream.image.openshift.io \"ruby\" deleted\n"
    );

    let get = env.run(&["get", "is", "ruby"]).await;
    let line = get.one_error_line();
    assert!(
        line.contains("not found") && line.contains("\"ruby\""),
        "{line}"
    );
    assert_eq!(get.stdout, "");

    let again = env.run(&["delete", "is", "ruby"]).await;
    assert!(
        again.one_error_line().contains("not found"),
        "{}",
        again.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_copies_tracks_references_and_deletes() {
    let env = Env::start().await;
    let ns = "tags";
    let doc = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        doc.path(),
        r#"{"apiVersion":"image.openshift.io/v1","kind":"ImageStream","metadata":{"name":"app"}}"#,
    )
    .unwrap();
    env.run(&["create", "-f", doc.path().to_str().unwrap(), "-n", ns])
        .await
        .ok();
    let pushed = digest(0xa1);
    env.push(ns, "app", "latest", &pushed).await;
    env.wait_for_stream(ns, "app", |is| {
        let tags = is["status"]["tags"].as_array()?;
        let latest = tags.iter().find(|t| t["tag"] == "latest")?;
        (latest["items"][0]["image"] == pushed.as_str()).then_some(())
    })
    .await;

    // A copy of the current image (ImageStreamImage), as oc does without --alias.
    let set = env
        .run(&["tag", "app:latest", "app:stable", "-n", ns])
        .await;
    assert_eq!(set.ok(), format!("Tag app:stable set to app@{pushed}.\n"));
    let is = env
        .run(&["get", "is", "app", "-n", ns, "-o", "json"])
        .await
        .json();
    let stable = spec_tag(&is, "stable");
    assert_eq!(stable["from"]["kind"], "ImageStreamImage", "{is:#}");
    assert_eq!(stable["from"]["name"], format!("app@{pushed}"));
    let image = env
        .wait_for_stream(ns, "app", |is| {
            let tags = is["status"]["tags"].as_array()?;
            let stable = tags.iter().find(|t| t["tag"] == "stable")?;
            stable["items"][0]["image"].as_str().map(str::to_owned)
        })
        .await;
    assert_eq!(image, pushed);

    // An alias tracks the tag itself.
    let alias = env
        .run(&["tag", "--alias", "app:latest", "app:current", "-n", ns])
        .await;
    assert_eq!(alias.ok(), "Tag app:current set up to track app:latest.\n");
    let is = env
        .run(&["get", "is", "app", "-n", ns, "-o", "json"])
        .await
        .json();
    let current = spec_tag(&is, "current");
    assert_eq!(current["from"]["kind"], "ImageStreamTag", "{is:#}");

    // A reference to a container image, into another namespace's stream.
    let external = format!("quay.io/org/tool@{}", digest(0xb2));
    let reference = env
        .run(&[
            "tag",
            "--source=docker",
            "--reference",
            &external,
            "other/tools:v1",
            "-n",
            ns,
        ])
        .await;
    assert_eq!(
        reference.ok(),
        format!("Tag other/tools:v1 set to {external}.\n")
    );
    let tools = env
        .run(&["get", "is", "tools", "-n", "other", "-o", "json"])
        .await
        .json();
    let v1 = spec_tag(&tools, "v1");
    assert_eq!(v1["from"]["kind"], "DockerImage");
    assert_eq!(v1["from"]["name"], external.as_str());
    assert_eq!(v1["reference"], true);

    // The describe of the stream shows where each tag comes from.
    let text = env.run(&["describe", "is", "app", "-n", ns]).await;
    let text = text.ok();
    assert!(
        text.contains(&format!("  tagged from app@{pushed}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("  * 127.0.0.1:5000/{ns}/app@{pushed}\n")),
        "{text}"
    );

    let deleted = env.run(&["tag", "-d", "app:stable", "-n", ns]).await;
    assert_eq!(deleted.ok(), format!("Deleted tag {ns}/app:stable.\n"));
    let is = env
        .run(&["get", "is", "app", "-n", ns, "-o", "json"])
        .await
        .json();
    let spec_tags: Vec<&str> = is["spec"]["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(!spec_tags.contains(&"stable"), "{is:#}");

    // Mistakes are caught before anything is sent, and the server's are one line too.
    let bad = env.run(&["tag", "app:latest", "app", "-n", ns]).await;
    assert_eq!(
        bad.one_error_line(),
        "error: \"app\" must be of the form <stream_name>:<tag>"
    );
    let missing = env.run(&["tag", "nope:latest", "app:x", "-n", ns]).await;
    assert!(
        missing.one_error_line().contains("not found"),
        "{}",
        missing.stderr
    );
}

fn spec_tag<'a>(is: &'a Value, name: &str) -> &'a Value {
    is["spec"]["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no spec tag {name} in {is:#}"))
}

/// The next line of a watch, within [`WAIT`].
async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a watch line within the deadline")
        .expect("reading the watch output")
        .expect("the watch ended early")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_change_and_resumes() {
    let env = Env::start().await;
    let ns = "watched";
    let (mut json_watch, mut json_lines) = env.cli.spawn(&["watch", "is", "-n", ns, "-o", "json"]);
    let (mut table_watch, mut table_lines) = env.cli.spawn(&["watch", "is", "-n", ns]);
    assert!(next_line(&mut table_lines).await.starts_with("TYPE "));

    let create = seed("imagestream-create.json");
    env.run(&["create", "-f", create.to_str().unwrap(), "-n", ns])
        .await
        .ok();
    let added: Value = serde_json::from_str(&next_line(&mut json_lines).await).unwrap();
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["metadata"]["name"], "ruby");
    let added_rv = added["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let row: Vec<String> = next_line(&mut table_lines)
        .await
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(row, ["ADDED", "ruby", added_rv.as_str()]);

    env.push(ns, "ruby", "latest", &digest(0xc3)).await;
    let modified: Value = serde_json::from_str(&next_line(&mut json_lines).await).unwrap();
    assert_eq!(modified["type"], "MODIFIED");
    let row = next_line(&mut table_lines).await;
    assert!(
        row.starts_with("MODIFIED ") && row.ends_with(" latest"),
        "{row}"
    );

    env.run(&["delete", "is", "ruby", "-n", ns]).await.ok();
    let deleted: Value = serde_json::from_str(&next_line(&mut json_lines).await).unwrap();
    assert_eq!(deleted["type"], "DELETED");
    assert_eq!(deleted["object"]["metadata"]["name"], "ruby");
    json_watch.kill().await.ok();
    table_watch.kill().await.ok();

    // Resuming after the ADDED sees the later changes once, in order.
    let (mut resumed, mut lines) = env.cli.spawn(&[
        "watch",
        "is",
        "ruby",
        "-n",
        ns,
        "-o",
        "json",
        "--resource-version",
        &added_rv,
    ]);
    let first: Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    let second: Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    assert_eq!(
        (first["type"].as_str(), second["type"].as_str()),
        (Some("MODIFIED"), Some("DELETED"))
    );
    assert_eq!(first, modified);
    resumed.kill().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_and_fail() {
    // Nothing listens on a port that was free a moment ago.
    let port = free_port().unwrap();
    let server = format!("http://127.0.0.1:{port}");
    let cli = Cli::new(server.clone());
    for args in [
        vec!["get", "is"],
        vec!["get", "is", "ruby", "-o", "json"],
        vec!["describe", "is", "ruby"],
        vec!["delete", "is", "ruby"],
        vec!["watch", "is"],
        vec!["tag", "ruby:latest", "ruby:tip"],
    ] {
        let run = cli.run(&args).await;
        assert_eq!(
            run.one_error_line(),
            format!(
                "error: cannot reach imagestreams at {server}: is it running? (imagestreams up)"
            ),
            "{args:?}"
        );
    }

    // A bad file is refused before anything is sent, naming the field.
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown-field.json",
            r#"{"apiVersion":"v1","kind":"ImageStream","metadata":{"name":"ruby"},"spec":{"tags":[{"name":"x","fromm":{}}]}}"#,
            "spec.tags[0].fromm",
        ),
        (
            "bad-name.yaml",
            "apiVersion: v1\nkind: ImageStream\nmetadata:\n  name: Not_Valid\n",
            "metadata.name",
        ),
        (
            "wrong-type.json",
            r#"{"apiVersion":"v1","kind":"ImageStream","metadata":{"name":"ruby"},"spec":{"tags":[{"name":"x","reference":"yes"}]}}"#,
            "spec.tags[0].reference",
        ),
        (
            "truncated.json",
            r#"{"apiVersion": "v1", "kind": "#,
            "malformed JSON",
        ),
    ];
    for (file, content, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, content).unwrap();
        let run = cli.run(&["create", "-f", path.to_str().unwrap()]).await;
        let line = run.one_error_line();
        assert!(line.contains(expected), "{file}: {line}");
        assert!(line.contains(file), "{file}: {line}");
    }
    let missing = cli.run(&["create", "-f", "/nonexistent/is.json"]).await;
    assert!(
        missing
            .one_error_line()
            .starts_with("error: cannot read /nonexistent/is.json: ")
    );

    let ftp = Cli::new("ftp://127.0.0.1:1".to_owned());
    assert!(
        ftp.run(&["get", "is"])
            .await
            .one_error_line()
            .starts_with("error: invalid --server"),
    );
}
