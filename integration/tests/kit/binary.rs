//! The `imagestreams` binary's foundation behaviour: `ref parse`, `up` against a
//! real nats-server with a clean SIGTERM exit, and one clear line when NATS is
//! unreachable.

use std::{process::Stdio, time::Duration};

use imagestreams_integration::{NatsServer, binaries, free_port, wait_ready};
use serde_json::Value;

fn ref_parse(reference: &str) -> (i32, Value) {
    let out = std::process::Command::new(binaries::imagestreams())
        .args(["ref", "parse", reference, "-o", "json"])
        .output()
        .expect("run imagestreams ref parse");
    let json = serde_json::from_slice(&out.stdout).expect("ref parse prints one JSON object");
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn ref_parse_answers_like_dockers_parser() {
    let (code, json) = ref_parse("openshift/ruby-20-centos7");
    assert_eq!(code, 0);
    assert_eq!(json["valid"], true);
    assert_eq!(json["name"], "docker.io/openshift/ruby-20-centos7");
    assert_eq!(json["domain"], "docker.io");
    assert_eq!(json["path"], "openshift/ruby-20-centos7");
    assert_eq!(json["familiar"], "openshift/ruby-20-centos7");
    assert!(json.get("tag").is_none(), "no implicit latest: {json}");

    let (code, json) = ref_parse("index.docker.io/ubuntu:22.04");
    assert_eq!(code, 0);
    assert_eq!(json["name"], "docker.io/library/ubuntu");
    assert_eq!(json["tag"], "22.04");
    assert_eq!(json["familiar"], "ubuntu:22.04");

    let digest = format!("sha256:{}", "a".repeat(64));
    let (code, json) = ref_parse(&format!("localhost:5000/ns/app:1@{digest}"));
    assert_eq!(code, 0);
    assert_eq!(json["domain"], "localhost:5000");
    assert_eq!(json["digest"], digest.as_str());

    let (code, json) = ref_parse("Ubuntu");
    assert_eq!(code, 1);
    assert_eq!(json["valid"], false);
    assert_eq!(
        json["error"],
        "invalid reference format: repository name (library/Ubuntu) must be lowercase"
    );
    let (code, json) = ref_parse(&"a".repeat(64));
    assert_eq!(code, 1);
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("64-byte hexadecimal")
    );
}

/// `imagestreams up` in `dir` with the gateway's HTTP port and the
/// watcher's port given, every other port free (tests run side by side),
/// output dropped, killed on drop; NATS is the caller's to set.
fn up_command(dir: &std::path::Path, http_port: u16, watcher_port: u16) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binaries::imagestreams());
    command
        .arg("up")
        .current_dir(dir)
        .env(
            "IMAGESTREAMS_GATEWAY__HTTP_LISTEN",
            format!("127.0.0.1:{http_port}"),
        )
        .env(
            "IMAGESTREAMS_GATEWAY__GRPC_LISTEN",
            format!("127.0.0.1:{}", free_port().expect("free port")),
        )
        .env(
            "IMAGESTREAMS_REGISTRY_WATCHER__LISTEN",
            format!("127.0.0.1:{watcher_port}"),
        )
        .env("IMAGESTREAMS_GATEWAY__KUBE__LISTEN", "127.0.0.1:0")
        .env("IMAGESTREAMS_TAG_SYNCER__HOOKS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// `imagestreams up` in `dir` on `nats`, with the gateway's HTTP port and
/// the watcher's port given (gRPC on a free one), stderr piped.
fn spawn_up(
    dir: &std::path::Path,
    nats: &NatsServer,
    http_port: u16,
    watcher_port: u16,
    insecure_watcher: bool,
) -> tokio::process::Child {
    let mut command = up_command(dir, http_port, watcher_port);
    command
        .env("IMAGESTREAMS_NATS__URL", nats.url())
        .env("IMAGESTREAMS_NATS__AUTO_START", "false")
        .stderr(Stdio::piped());
    if insecure_watcher {
        command.env("IMAGESTREAMS_REGISTRY_WATCHER__INSECURE", "true");
    }
    command.spawn().expect("spawn imagestreams up")
}

#[tokio::test]
async fn up_serves_health_and_exits_cleanly_on_sigterm() {
    let nats = NatsServer::start().await.expect("nats-server");
    let http_port = free_port().expect("free port");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_up(
        dir.path(),
        &nats,
        http_port,
        free_port().expect("free port"),
        true,
    );
    wait_ready(http_port, Duration::from_secs(20))
        .await
        .expect("up becomes ready");
    let pid = rustix::process::Pid::from_raw(child.id().expect("pid") as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("up exits within 10 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "up exited with {status}");
}

/// `up` on defaults must not leave the notification endpoint open: with no
/// token configured it makes one, keeps it in a 0600 file, and requires it.
#[tokio::test]
async fn up_without_a_watcher_token_makes_one_and_requires_it() {
    let nats = NatsServer::start().await.expect("nats-server");
    let http_port = free_port().expect("free port");
    let watcher_port = free_port().expect("free port");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_up(dir.path(), &nats, http_port, watcher_port, false);
    wait_ready(http_port, Duration::from_secs(20))
        .await
        .expect("up becomes ready without a configured watcher token");
    let path = dir.path().join(".imagestreams/registry-watcher.token");
    let token = std::fs::read_to_string(&path).expect("the token file");
    let token = token.trim();
    assert_eq!(token.len(), 64, "{token:?}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let url = format!("http://127.0.0.1:{watcher_port}/notifications");
    let post = |bearer: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(&url)
            .header(
                "content-type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body(r#"{"events":[]}"#);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    assert_eq!(post(None).await.expect("POST").status(), 401);
    assert_eq!(post(Some("wrong")).await.expect("POST").status(), 401);
    assert!(post(Some(token)).await.expect("POST").status().is_success());
    let pid = rustix::process::Pid::from_raw(child.id().expect("pid") as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("up exits within 10 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "up exited with {status}");
    // the log says where the token is, never what it is
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().expect("stderr"), &mut stderr)
        .await
        .expect("stderr");
    assert!(stderr.contains("registry-watcher.token"), "{stderr}");
    assert!(!stderr.contains(token), "the token was logged");
}

#[test]
fn up_without_nats_prints_one_clear_line() {
    let port = free_port().expect("free port");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(binaries::imagestreams())
        .arg("up")
        .current_dir(dir.path())
        .env("IMAGESTREAMS_NATS__URL", format!("nats://127.0.0.1:{port}"))
        .env("IMAGESTREAMS_NATS__AUTO_START", "false")
        .env("IMAGESTREAMS_NATS__CONNECT_TIMEOUT_SECS", "1")
        .env("RUST_LOG", "off")
        .output()
        .expect("run imagestreams up");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    assert!(
        lines[0].starts_with("error: cannot reach NATS at nats://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        lines[0].contains("nats-server -js"),
        "says how to start one: {stderr}"
    );
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
}

#[test]
fn unknown_config_keys_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("imagestreams.toml"),
        "[gateway]\ngrpc_lissten = \"x\"\n",
    )
    .expect("write config");
    let out = std::process::Command::new(binaries::imagestreams())
        .arg("up")
        .current_dir(dir.path())
        .output()
        .expect("run imagestreams up");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("grpc_lissten"), "{stderr}");
}

/// The nats-server `up` starts for itself goes with it, even when `up` is
/// killed with SIGKILL (no chance to stop it): an orphan would hold the port
/// and the store, and the next `up` would quietly run on it.
#[tokio::test]
async fn a_killed_up_takes_the_nats_server_it_started_with_it() {
    let nats_port = free_port().expect("free port");
    let http_port = free_port().expect("free port");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = up_command(dir.path(), http_port, free_port().expect("free port"))
        .env("NATS_SERVER", binaries::nats_server())
        .env(
            "IMAGESTREAMS_NATS__URL",
            format!("nats://127.0.0.1:{nats_port}"),
        )
        .env("IMAGESTREAMS_NATS__AUTO_START", "true")
        .env("IMAGESTREAMS_NATS__STORE_DIR", dir.path().join("nats"))
        .spawn()
        .expect("spawn imagestreams up");
    wait_ready(http_port, Duration::from_secs(30))
        .await
        .expect("up becomes ready on the nats-server it started");
    let nats_listens = || std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_ok();
    assert!(nats_listens(), "up started a nats-server on {nats_port}");

    child.start_kill().expect("SIGKILL up");
    child.wait().await.expect("wait");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while nats_listens() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !nats_listens(),
        "the nats-server started by a SIGKILLed up still listens on {nats_port}"
    );
}
