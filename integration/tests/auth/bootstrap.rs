//! `up`'s first start makes a cluster-admin token and a client
//! configuration the CLI reads by itself; no token ever reaches a log line.

use std::{
    io::Write,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use imagestreams_integration::{NatsServer, binaries, free_port, wait_ready};
use imagestreams_proto::v1 as proto;

use crate::{EDITOR, ROOT, UNKNOWN_TOKEN, VIEWER, clients, spawn, stream};

#[tokio::test]
async fn up_bootstraps_an_admin_the_cli_uses_by_itself() {
    let nats = NatsServer::start().await.expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let http_port = free_port().expect("free port");
    let grpc = format!("127.0.0.1:{}", free_port().expect("free port"));
    let log = dir.path().join("up.log");
    let mut up = tokio::process::Command::new(binaries::imagestreams())
        .arg("up")
        .current_dir(dir.path())
        .env("RUST_LOG", "debug")
        .env("IMAGESTREAMS_NATS__URL", nats.url())
        .env("IMAGESTREAMS_NATS__AUTO_START", "false")
        .env(
            "IMAGESTREAMS_GATEWAY__HTTP_LISTEN",
            format!("127.0.0.1:{http_port}"),
        )
        .env("IMAGESTREAMS_GATEWAY__GRPC_LISTEN", &grpc)
        // tests run side by side: no fixed port
        .env("IMAGESTREAMS_GATEWAY__KUBE__LISTEN", "127.0.0.1:0")
        .env("IMAGESTREAMS_TAG_SYNCER__HOOKS_LISTEN", "127.0.0.1:0")
        .env(
            "IMAGESTREAMS_REGISTRY_WATCHER__LISTEN",
            format!("127.0.0.1:{}", free_port().expect("free port")),
        )
        .env("IMAGESTREAMS_REGISTRY_WATCHER__INSECURE", "true")
        .env_remove("IMAGESTREAMS_AUTH__ENABLED")
        // to a file: a full pipe would stop the process at its next log line
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn imagestreams up");
    wait_ready(http_port, Duration::from_secs(20))
        .await
        .expect("up becomes ready");

    let file = dir.path().join(".imagestreams/client.toml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("up wrote no client configuration ({e}):\n{logs}")
    });
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner reads it");
    }
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a token line")
        .to_owned();
    assert!(
        text.contains(&format!("server = \"http://{grpc}\"")),
        "{text}"
    );

    let server = format!("http://{grpc}");
    let cli = |args: &[&str], token: Option<&str>| {
        let mut cmd = std::process::Command::new(binaries::imagestreams());
        cmd.current_dir(dir.path())
            .arg("--server")
            .arg(&server)
            .args(args)
            .env_remove("IMAGESTREAMS_TOKEN")
            .env_remove("IMAGESTREAMS_CLIENT_CONFIG")
            .env("HOME", dir.path().join("home"))
            .env_remove("XDG_CONFIG_HOME");
        if let Some(token) = token {
            cmd.env("IMAGESTREAMS_TOKEN", token);
        }
        cmd.output().expect("run the CLI")
    };
    let doc = dir.path().join("is.json");
    std::fs::write(
        &doc,
        r#"{"kind":"ImageStream","apiVersion":"image.openshift.io/v1","metadata":{"name":"ruby","namespace":"default"}}"#,
    )
    .expect("write doc");
    let created = cli(&["create", "-f", doc.to_str().expect("utf-8")], None);
    assert!(
        created.status.success(),
        "the CLI finds the token by itself: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let got = cli(&["get", "is"], None);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(String::from_utf8_lossy(&got.stdout).contains("ruby"));
    // an explicit token wins over the file
    let refused = cli(&["get", "is"], Some("not-a-token"));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .to_lowercase()
            .contains("unauth"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // another server never gets the file's token
    let elsewhere = std::process::Command::new(binaries::imagestreams())
        .current_dir(dir.path())
        .args([
            "--server",
            &format!(
                "http://localhost:{}",
                grpc.rsplit(':').next().unwrap_or_default()
            ),
            "get",
            "is",
        ])
        .env_remove("IMAGESTREAMS_TOKEN")
        .env("HOME", dir.path().join("home"))
        .output()
        .expect("run the CLI");
    assert!(!elsewhere.status.success(), "no token for another server");

    up.start_kill().expect("stop up");
    let _ = up.wait().await;
    let logs = std::fs::read_to_string(&log).expect("up's log");
    assert!(
        logs.contains("client.toml"),
        "up says where the file is:\n{logs}"
    );
    assert!(!logs.contains(&token), "the token never reaches a log line");
}

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_token_reaches_a_log_line() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("trace,async_nats=info,h2=info,hyper=info,tower=info")
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test process");

    let nats = NatsServer::start().await.expect("nats-server");
    let app = spawn(&nats).await;
    let mut root = clients(&app, Some(ROOT.1)).await;
    let sa = root
        .auth
        .create_service_account(proto::CreateServiceAccountRequest {
            namespace: "ns1".into(),
            name: "ci".into(),
        })
        .await
        .expect("service account")
        .into_inner();
    let mut tokens = vec![
        ROOT.1.to_owned(),
        EDITOR.1.to_owned(),
        VIEWER.1.to_owned(),
        UNKNOWN_TOKEN.to_owned(),
        sa.token.clone(),
    ];
    tokens.push("isk_not-known".to_owned());
    let token_url = format!(
        "{}{}",
        app.http_url(),
        imagestreams_gateway::registry_token::TOKEN_PATH
    );
    let service = app.config.auth.registry.service.clone();
    let mut jwts = Vec::new();
    for token in &tokens {
        let mut c = clients(&app, Some(token)).await;
        let _ = c
            .streams
            .create(proto::CreateRequest {
                namespace: "ns1".into(),
                image_stream: Some(stream("ns1", "logged")),
            })
            .await;
        let _ = c
            .secrets
            .list(proto::ListSecretsRequest {
                namespace: "ns1".into(),
            })
            .await;
        let _ = reqwest::Client::new()
            .get(format!(
                "{}/apis/image.openshift.io/v1/namespaces/ns2/imagestreams",
                app.http_url()
            ))
            .bearer_auth(token)
            .send()
            .await;
        // the registry token service: the token as the Basic password, and the JWT it answers
        let answer = reqwest::Client::new()
            .get(&token_url)
            .query(&[
                ("service", service.as_str()),
                ("scope", "repository:ns1/app:pull,push"),
            ])
            .basic_auth("user", Some(token))
            .send()
            .await
            .expect("GET /token");
        if let Ok(body) = answer.json::<serde_json::Value>().await
            && let Some(jwt) = body["token"].as_str()
        {
            jwts.push(jwt.to_owned());
        }
    }
    assert!(jwts.len() >= 4, "the known tokens got registry tokens");
    app.stop().await.expect("stop");
    let logs = String::from_utf8_lossy(&buffer.0.lock().expect("buffer")).into_owned();
    assert!(logs.lines().count() > 10, "the capture works:\n{logs}");
    for token in &tokens {
        assert!(!logs.contains(token.as_str()), "a token reached the logs");
    }
    for jwt in &jwts {
        let signature = jwt.rsplit('.').next().unwrap_or(jwt);
        assert!(
            !logs.contains(signature),
            "a registry token reached the logs"
        );
    }
    assert!(
        logs.contains("registry token service"),
        "the gateway's start was captured:\n{logs}"
    );
}
