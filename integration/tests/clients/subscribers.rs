//! The example subscribers of `examples/` against `up`, a real registry and
//! real pushes: each prints/hands on the new pull spec of `app:latest`, and
//! after being killed and restarted it neither misses the push made while it
//! was down nor repeats the one before.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use imagestreams_integration::{binaries, image::push_unique_image, wait_for};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::{Up, python_test_tools, tail};

/// How long a subscriber may take to hand on a push.
const HAND_ON: Duration = Duration::from_secs(30);

const APP: &str = "apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: app
";

/// Starts a subscriber and waits for its "waiting for" line (its durable
/// consumer exists from then on).
async fn start(mut command: tokio::process::Command) -> tokio::process::Child {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the subscriber starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let ready = tokio::time::timeout(HAND_ON, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("waiting for") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the subscriber did not start");
    // keep reading stderr so that the child never blocks on it
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// Push, hand-on, kill, push while down, restart: what was handed on.
async fn exercise(
    up: &Up,
    command: impl Fn() -> tokio::process::Command,
    seen: impl Fn() -> Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let mut subscriber = start(command()).await;
    let first = push_unique_image(&up.registry, "default/app:latest")
        .await
        .expect("push");
    wait_for(|| async { !seen().is_empty() }, HAND_ON)
        .await
        .unwrap_or_else(|_| panic!("nothing handed on; up's log:\n{}", tail(&up.log())));
    subscriber.kill().await.expect("kill");
    let second = push_unique_image(&up.registry, "default/app:latest")
        .await
        .expect("push");
    let _restarted = start(command()).await;
    wait_for(|| async { seen().len() >= 2 }, HAND_ON)
        .await
        .unwrap_or_else(|_| panic!("the push made while down was missed: {:?}", seen()));
    // and nothing more comes
    tokio::time::sleep(Duration::from_secs(2)).await;
    let host = up.registry.host();
    let want = [first, second]
        .map(|d| format!("{host}/default/app@{d}"))
        .to_vec();
    (seen(), want)
}

fn example_binary() -> PathBuf {
    let binary = binaries::imagestreams().with_file_name("on-tag-changed");
    assert!(
        binary.is_file(),
        "the example is not built at {}: run `cargo build -p on-tag-changed` (./dev test does)",
        binary.display()
    );
    binary
}

#[tokio::test]
async fn the_rust_example_runs_its_command_once_per_new_image_across_restarts() {
    let up = Up::start().await.expect("up");
    let created = up.run_with_input(&["create", "-f", "-"], APP).await;
    assert!(created.status.success(), "{:?}", created);
    let out = up.dir.path().join("pull-specs");
    let command = || {
        let mut command = tokio::process::Command::new(example_binary());
        command.args([
            "--nats",
            &up.nats_url(),
            "--namespace",
            "default",
            "--stream",
            "app",
        ]);
        command.args(["--tag", "latest", "--durable", "example-rust", "--"]);
        command.args(["sh", "-c", r#"echo "$1" >> "$0""#]).arg(&out);
        command
    };
    let seen = || read_lines(&out);
    let (seen, want) = exercise(&up, command, seen).await;
    assert_eq!(seen, want, "each new image once, in order");
}

#[tokio::test]
async fn the_python_example_posts_once_per_new_image_across_restarts() {
    let tools = python_test_tools();
    let up = Up::start().await.expect("up");
    let created = up.run_with_input(&["create", "-f", "-"], APP).await;
    assert!(created.status.success(), "{:?}", created);
    // its protobuf classes, generated from our .proto files as its README says
    let generated = up.dir.path().join("gen");
    std::fs::create_dir_all(&generated).expect("a directory");
    let proto = repo("proto");
    let mut protoc = std::process::Command::new("python3");
    protoc
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", generated.display()))
        .env("PYTHONPATH", &tools);
    for entry in std::fs::read_dir(proto.join("imagestreams/v1")).expect("the protos") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "proto") {
            protoc.arg(path);
        }
    }
    let status = protoc.status().expect("protoc runs");
    assert!(status.success(), "grpc_tools.protoc failed");

    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = receiver(received.clone()).await;
    let pythonpath = std::env::join_paths([generated.clone(), repo("examples/python"), tools])
        .expect("a PYTHONPATH");
    let command = || {
        let mut command = tokio::process::Command::new("python3");
        command.args([
            "-m",
            "on_tag_changed",
            "--nats",
            &up.nats_url(),
            "--namespace",
            "default",
        ]);
        command.args([
            "--stream",
            "app",
            "--tag",
            "latest",
            "--durable",
            "example-python",
        ]);
        command.args(["--url", &url]).env("PYTHONPATH", &pythonpath);
        command
    };
    let seen = || received.lock().expect("lock").clone();
    let (seen, want) = exercise(&up, command, seen).await;
    assert_eq!(seen, want, "each new image once, in order");
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// An HTTP endpoint keeping the `pullSpec` of every JSON body POSTed to it.
async fn receiver(received: Arc<Mutex<Vec<String>>>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let received = received.clone();
            async move {
                let spec = body["pullSpec"].as_str().unwrap_or_default().to_owned();
                received.lock().expect("lock").push(spec);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}/hook", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
