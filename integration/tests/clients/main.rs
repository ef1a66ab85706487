//! Clients nobody here wrote, and the examples users start from, against
//! `imagestreams up`: the example NATS subscribers ([`subscribers`]), and
//! the real `kubectl` against `imagestreams up`, through the kubeconfig `up`
//! writes (HTTPS with its local CA, the first admin's token): discovery,
//! OpenShift's columns, `-o yaml`, `-A`, `--show-labels`, `describe`,
//! `explain`, `apply` (twice: the second changes nothing), `label`,
//! `annotate`, `patch`, `replace` with a stale resourceVersion, `delete`,
//! `--dry-run=server`, `get -w` seeing a real push to a real registry, and
//! a viewer's and another namespace's tokens. Every command's exit code and
//! output are checked.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use imagestreams_integration::{
    NatsServer, Registry, RegistryOptions, binaries, free_port, image::push_unique_image,
    wait_ready,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};

mod events;
mod history;
mod receivers;
mod subscribers;
mod triggers;

/// How long `up` may take to come up.
const START: Duration = Duration::from_secs(30);
/// How long a watch may take to show a push.
const WATCH: Duration = Duration::from_secs(30);

/// `imagestreams up` in a temporary directory, a registry notifying it,
/// and kubectl pointed at its kubeconfig with a cache of its own.
struct Up {
    dir: tempfile::TempDir,
    grpc: String,
    _child: tokio::process::Child,
    registry: Registry,
    /// The registry-watcher's notifications endpoint.
    notifications: String,
    _nats: NatsServer,
}

impl Up {
    async fn start() -> anyhow::Result<Up> {
        Up::start_with(&[]).await
    }

    /// `up` with `env` (configuration overrides) set.
    async fn start_with(env: &[(&str, &str)]) -> anyhow::Result<Up> {
        let nats = NatsServer::start().await?;
        let dir = tempfile::tempdir()?;
        let (http, watcher) = (free_port()?, free_port()?);
        let grpc = format!("127.0.0.1:{}", free_port()?);
        let registry = Registry::start(RegistryOptions::notifying(
            format!("http://127.0.0.1:{watcher}/notifications"),
            None,
        ))
        .await?;
        let mut command = tokio::process::Command::new(binaries::imagestreams());
        for switch in binaries::test_switches() {
            command.env_remove(switch);
        }
        let child = command
            .arg("up")
            .current_dir(dir.path())
            .env("IMAGESTREAMS_NATS__URL", nats.url())
            .env("IMAGESTREAMS_NATS__AUTO_START", "false")
            .env(
                "IMAGESTREAMS_GATEWAY__HTTP_LISTEN",
                format!("127.0.0.1:{http}"),
            )
            .env("IMAGESTREAMS_GATEWAY__GRPC_LISTEN", &grpc)
            // port 0: the kubeconfig names the port actually bound
            .env("IMAGESTREAMS_GATEWAY__KUBE__LISTEN", "127.0.0.1:0")
            .env("IMAGESTREAMS_TAG_SYNCER__HOOKS_LISTEN", "127.0.0.1:0")
            .env(
                "IMAGESTREAMS_REGISTRY_WATCHER__LISTEN",
                format!("127.0.0.1:{watcher}"),
            )
            .env("IMAGESTREAMS_REGISTRY_WATCHER__INSECURE", "true")
            .env("IMAGESTREAMS_INTEGRATED_REGISTRY__HOST", registry.host())
            .env("IMAGESTREAMS_INTEGRATED_REGISTRY__URL", registry.url())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("up.log"))?)
            .kill_on_drop(true)
            .spawn()?;
        wait_ready(http, START).await?;
        let up = Up {
            dir,
            grpc: format!("http://{grpc}"),
            _child: child,
            registry,
            notifications: format!("http://127.0.0.1:{watcher}/notifications"),
            _nats: nats,
        };
        anyhow::ensure!(
            up.kubeconfig().is_file(),
            "up wrote no kubeconfig; its log:\n{}",
            up.log()
        );
        Ok(up)
    }

    fn nats_url(&self) -> String {
        self._nats.url()
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join(".imagestreams/kubeconfig")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(binaries::kubectl());
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl; the output, whatever the exit code.
    async fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("kubectl runs")
    }

    /// Runs kubectl with `input` on stdin.
    async fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut stdin = child.stdin.take().expect("stdin");
        tokio::io::AsyncWriteExt::write_all(&mut stdin, input.as_bytes())
            .await
            .expect("write stdin");
        drop(stdin);
        child.wait_with_output().await.expect("kubectl ends")
    }

    /// Runs kubectl, which must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}\nup's log (end):\n{}",
            out.status,
            tail(&self.log())
        );
        stdout
    }

    /// Runs kubectl, which must fail; its stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let (stdout, stderr) = texts(&out);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stderr
    }

    /// A service account `name` of `namespace` with `role` there; its token.
    async fn service_account(&self, name: &str, namespace: &str, role: &str) -> String {
        let token = self.cli(&["create", "sa", name, "-n", namespace]).await;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        self.cli(&["policy", "add-role-to-user", role, &user, "-n", namespace])
            .await;
        token.trim().to_owned()
    }

    /// The imagestreams CLI as the admin (`up`'s client configuration).
    async fn cli(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new(binaries::imagestreams())
            .args(["--server", &self.grpc])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("IMAGESTREAMS_TOKEN")
            .output()
            .await
            .expect("imagestreams runs");
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "imagestreams {args:?}: {stderr}");
        stdout
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The cells of the row of `name` in a printed table, split on runs of spaces.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
        .split("   ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect()
}

/// The header of a printed table, as column names.
fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect()
}

async fn resource_version(up: &Up, name: &str) -> String {
    up.ok(&[
        "get",
        "is",
        name,
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ])
    .await
}

fn seed_document() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/seed/imagestream-create.json")
}

const WEB: &str = "apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: web
  labels:
    app: web
spec:
  tags:
  - name: stable
    from:
      kind: DockerImage
      name: docker.io/library/nginx:1.27
    # a reference only: nothing is imported, so nothing else writes the stream
    reference: true
    referencePolicy:
      type: Source
  # our field: kubectl's client-side schema check must know it
  - name: newest-1.x
    policy:
      filterTags:
        pattern: '^v?1[.]'
      semver:
        range: '>=1.0 <2'
";

#[tokio::test]
async fn kubectl_reads_and_writes_streams_through_ups_kubeconfig() {
    let up = Up::start().await.expect("up");

    // discovery: the three kinds, with their short names, in our group
    let resources = up
        .ok(&["api-resources", "--api-group=image.openshift.io"])
        .await;
    for (name, short, kind) in [
        ("imagestreams", "is", "ImageStream"),
        ("imagestreamtags", "istag", "ImageStreamTag"),
        ("imagestreamimages", "isimage", "ImageStreamImage"),
    ] {
        assert_eq!(
            row(&resources, name),
            [name, short, "image.openshift.io/v1", "true", kind],
            "{resources}"
        );
    }

    // the seed document as written (apiVersion: v1), into the context's namespace
    let seed = seed_document();
    let created = up
        .ok(&["create", "-f", seed.to_str().expect("utf-8 path")])
        .await;
    assert_eq!(created.trim(), "imagestream/ruby created");

    let table = up.ok(&["get", "is"]).await;
    assert_eq!(
        header(&table),
        ["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"]
    );
    // (TAGS fills in once the import of dockerImageRepository is tried)
    assert_eq!(
        row(&table, "ruby")[..2],
        ["ruby", "openshift/ruby-20-centos7"]
    );

    let yaml = up.ok(&["get", "is", "ruby", "-o", "yaml"]).await;
    let ruby: serde_json::Value = serde_norway::from_str(&yaml).expect("YAML");
    assert_eq!(ruby["apiVersion"], "image.openshift.io/v1");
    assert_eq!(ruby["metadata"]["namespace"], "default");
    assert_eq!(
        ruby["spec"]["dockerImageRepository"],
        "openshift/ruby-20-centos7"
    );

    let all = up.ok(&["get", "is", "-A"]).await;
    assert_eq!(header(&all)[..2], ["NAMESPACE", "NAME"]);
    assert_eq!(row(&all, "default")[..2], ["default", "ruby"]);

    let described = up.ok(&["describe", "is", "ruby"]).await;
    assert!(
        described.contains("Name:") && described.contains("ruby"),
        "{described}"
    );
    assert!(
        described.contains("openshift/ruby-20-centos7"),
        "{described}"
    );

    let explained = up.ok(&["explain", "is.spec"]).await;
    assert!(explained.contains("KIND:       ImageStream"), "{explained}");
    for field in ["dockerImageRepository", "lookupPolicy", "tags"] {
        assert!(explained.contains(field), "{explained}");
    }
    let explained = up.ok(&["explain", "is.spec.tags.policy.semver"]).await;
    assert!(explained.contains("range"), "{explained}");

    // apply twice: created, then nothing to change
    let applied = up.run_with_input(&["apply", "-f", "-"], WEB).await;
    assert!(applied.status.success(), "{:?}", texts(&applied));
    assert_eq!(
        texts(&applied).0.trim(),
        "imagestream.image.openshift.io/web created"
    );
    let first = resource_version(&up, "web").await;
    let again = up.run_with_input(&["apply", "-f", "-"], WEB).await;
    assert!(again.status.success(), "{:?}", texts(&again));
    assert_eq!(
        resource_version(&up, "web").await,
        first,
        "a second apply of the same document wrote: {:?}",
        texts(&again)
    );

    let labels = up.ok(&["get", "is", "--show-labels"]).await;
    assert_eq!(header(&labels).last(), Some(&"LABELS"));
    assert_eq!(row(&labels, "web").last(), Some(&"app=web"));

    // label, annotate, merge patch, strategic patch of a keyed list
    assert_eq!(
        up.ok(&["label", "is", "web", "tier=gold"]).await.trim(),
        "imagestream.image.openshift.io/web labeled"
    );
    assert_eq!(
        up.ok(&["annotate", "is", "web", "note=hello"]).await.trim(),
        "imagestream.image.openshift.io/web annotated"
    );
    up.ok(&[
        "patch",
        "is",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"silver"}}}"#,
    ])
    .await;
    up.ok(&[
        "patch",
        "is",
        "web",
        "-p",
        r#"{"spec":{"tags":[{"name":"canary","reference":true,"from":{"kind":"DockerImage","name":"docker.io/library/nginx:1.28"}}]}}"#,
    ])
    .await;
    let seen = up
        .ok(&[
            "get",
            "is",
            "web",
            "-o",
            "jsonpath={.metadata.labels.tier} {.metadata.annotations.note} {.spec.tags[*].name}",
        ])
        .await;
    assert_eq!(seen, "silver hello stable newest-1.x canary");

    // replace with a stale resourceVersion: a conflict, nothing changed
    let stale = up.ok(&["get", "is", "web", "-o", "yaml"]).await;
    up.ok(&["label", "is", "web", "moved=yes"]).await;
    let before = resource_version(&up, "web").await;
    let replaced = up
        .run_with_input(
            &["replace", "-f", "-"],
            &stale.replace("tier: silver", "tier: bronze"),
        )
        .await;
    assert!(!replaced.status.success(), "{:?}", texts(&replaced));
    assert!(
        texts(&replaced).1.contains("Error from server (Conflict)"),
        "{:?}",
        texts(&replaced)
    );
    assert_eq!(resource_version(&up, "web").await, before);
    let tier = up
        .ok(&["get", "is", "web", "-o", "jsonpath={.metadata.labels.tier}"])
        .await;
    assert_eq!(tier, "silver", "the stale replace changed the stream");

    // a server-side dry run stores nothing
    let dry = WEB.replace("name: web", "name: dry");
    let out = up
        .run_with_input(&["create", "-f", "-", "--dry-run=server"], &dry)
        .await;
    assert_eq!(
        texts(&out).0.trim(),
        "imagestream.image.openshift.io/dry created (server dry run)",
        "{:?}",
        texts(&out)
    );
    let missing = up.fails(&["get", "is", "dry"]).await;
    assert!(missing.contains("NotFound"), "{missing}");

    // a push during a watch shows up in it, then istag and isimage
    let mut watch = up
        .command(&["get", "is", "web", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first_line = tokio::time::timeout(WATCH, lines.next_line())
        .await
        .expect("the watch prints the table")
        .expect("read")
        .expect("a line");
    assert!(first_line.starts_with("NAME"), "{first_line}");
    let digest = push_unique_image(&up.registry, "default/web:latest")
        .await
        .expect("push");
    let pushed = tokio::time::timeout(WATCH, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("web ") && line.contains("latest") {
                return line;
            }
        }
        String::new()
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the watch showed no push within {WATCH:?}; up's log:\n{}",
            tail(&up.log())
        )
    });
    assert!(pushed.contains("ago"), "{pushed}");
    let _ = watch.kill().await;

    let istag = up.ok(&["get", "istag", "web:latest"]).await;
    assert_eq!(header(&istag), ["NAME", "IMAGE REFERENCE", "UPDATED"]);
    let cells = row(&istag, "web:latest");
    assert_eq!(
        cells[1],
        format!("{}/default/web@{digest}", up.registry.host()),
        "{istag}"
    );
    let image = up
        .ok(&[
            "get",
            "isimage",
            &format!("web@{digest}"),
            "-o",
            "jsonpath={.image.metadata.name}",
        ])
        .await;
    assert_eq!(image, digest);

    // delete: a Status back, then gone (kubectl waits for it by default)
    assert_eq!(
        up.ok(&["delete", "is", "web"]).await.trim(),
        "imagestream.image.openshift.io \"web\" deleted"
    );
    let gone = up.fails(&["get", "is", "web"]).await;
    assert!(
        gone.contains("NotFound") && gone.contains("\"web\""),
        "{gone}"
    );
}

#[tokio::test]
async fn a_viewer_reads_but_cannot_write_and_another_namespace_sees_nothing() {
    let up = Up::start().await.expect("up");
    up.ok(&[
        "create",
        "-f",
        seed_document().to_str().expect("utf-8 path"),
    ])
    .await;
    let viewer = up.service_account("viewer", "default", "view").await;
    let viewer = viewer.as_str();
    let table = up.ok(&["--token", viewer, "get", "is"]).await;
    assert_eq!(row(&table, "ruby")[0], "ruby");
    let denied = up
        .fails(&[
            "--token",
            viewer,
            "patch",
            "is",
            "ruby",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"a":"b"}}}"#,
        ])
        .await;
    assert!(denied.contains("Error from server (Forbidden)"), "{denied}");
    let denied = up.fails(&["--token", viewer, "delete", "is", "ruby"]).await;
    assert!(denied.contains("Error from server (Forbidden)"), "{denied}");
    let denied = up
        .fails(&["--token", viewer, "label", "is", "ruby", "a=b"])
        .await;
    assert!(denied.contains("Forbidden"), "{denied}");

    let stranger = up.service_account("builder", "other", "edit").await;
    let stranger = stranger.as_str();
    let denied = up.fails(&["--token", stranger, "get", "is"]).await;
    assert!(denied.contains("Error from server (Forbidden)"), "{denied}");
    let denied = up.fails(&["--token", stranger, "get", "is", "ruby"]).await;
    assert!(denied.contains("Forbidden"), "{denied}");
    let denied = up.fails(&["--token", stranger, "get", "is", "-A"]).await;
    assert!(denied.contains("Forbidden"), "{denied}");
    // in its own namespace it may work
    let own = up
        .run(&["--token", stranger, "get", "is", "-n", "other"])
        .await;
    assert!(own.status.success(), "{:?}", texts(&own));
    assert!(
        texts(&own)
            .1
            .contains("No resources found in other namespace."),
        "{:?}",
        texts(&own)
    );
    // and with a token nobody issued, nothing
    let unknown = up.fails(&["--token", "not-a-token", "get", "is"]).await;
    assert!(unknown.contains("Unauthorized"), "{unknown}");
}

/// Where python-kubernetes is installed (`./dev test` installs
/// ci/requirements-test.txt there and exports it); a missing one fails with
/// the command that installs it.
fn python_test_tools() -> PathBuf {
    let hint = "python-kubernetes is not installed: run ./dev test, or \
                `python3 -m pip install --target .imagestreams/tools/test-py -r ci/requirements-test.txt` \
                and set PYTHON_TEST_TOOLS=.imagestreams/tools/test-py";
    let dir = std::env::var_os("PYTHON_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("PYTHON_TEST_TOOLS is not set: {hint}"));
    assert!(
        dir.join("kubernetes").is_dir(),
        "no kubernetes package in {}: {hint}",
        dir.display()
    );
    dir
}

#[tokio::test]
async fn python_kubernetes_dynamic_client_lists_gets_patches_and_watches() {
    let tools = python_test_tools();
    let up = Up::start().await.expect("up");
    up.ok(&[
        "create",
        "-f",
        seed_document().to_str().expect("utf-8 path"),
    ])
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/dynamic_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(up.kubeconfig())
        .args(["default", "ruby"])
        .env("PYTHONPATH", &tools)
        .env("HOME", up.dir.path())
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs");
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "the dynamic client failed:\n{stderr}\nup's log (end):\n{}",
        tail(&up.log())
    );
    let seen: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(seen["listed"], serde_json::json!(["ruby"]), "{seen}");
    assert_eq!(seen["got"]["name"], "ruby");
    assert_eq!(seen["got"]["apiVersion"], "image.openshift.io/v1");
    assert_eq!(seen["patched"], "python");
    let last = seen["watched"]
        .as_array()
        .and_then(|events| events.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        last,
        serde_json::json!(["MODIFIED", "ruby", "python"]),
        "{seen}"
    );
    let labels = up
        .ok(&[
            "get",
            "is",
            "ruby",
            "-o",
            "jsonpath={.metadata.labels.client}",
        ])
        .await;
    assert_eq!(labels, "python", "kubectl sees the dynamic client's patch");
}
