//! TLS on the gateway (`[gateway.tls]`): a self-signed certificate made in
//! the test; Get over gRPC with TLS, the CLI with `--certificate-authority`,
//! REST over https with reqwest; plaintext clients and a client that does
//! not trust the certificate are refused.

use std::{path::Path, process::Output};

use imagestreams::cli::ServiceName;
use imagestreams_common::config::TlsConfig;
use imagestreams_integration::{Bearer, NatsServer, TestApp, TestDir, binaries};
use imagestreams_proto::v1::{self as proto, image_streams_client::ImageStreamsClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::{ROOT, stream, with_auth};

/// The names the certificate is valid for: the test connects to `localhost`.
const SERVER_NAME: &str = "localhost";

/// A self-signed certificate for [`SERVER_NAME`] and 127.0.0.1, written to
/// `dir` as `tls.crt` and `tls.key`; the certificate's PEM.
fn self_signed(dir: &Path) -> (TlsConfig, String) {
    let issued =
        rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
    let config = TlsConfig {
        cert_file: dir.join("tls.crt"),
        key_file: dir.join("tls.key"),
    };
    let cert = issued.cert.pem();
    std::fs::write(&config.cert_file, &cert).expect("writing the certificate");
    std::fs::write(&config.key_file, issued.signing_key.serialize_pem()).expect("writing the key");
    (config, cert)
}

async fn spawn_tls(nats: &NatsServer, tls: TlsConfig) -> TestApp {
    TestApp::spawn_with(
        nats,
        &[ServiceName::StreamStore, ServiceName::Gateway],
        |config| {
            with_auth(config);
            config.gateway.tls = Some(tls);
        },
    )
    .await
    .expect("starting the services with TLS")
}

/// Runs the CLI binary (without blocking the runtime the gateway runs on).
async fn cli(server: &str, args: &[&str], home: &Path) -> Output {
    tokio::process::Command::new(binaries::imagestreams())
        .current_dir(home)
        .args(["--server", server, "--token", ROOT.1])
        .args(args)
        .env_remove("IMAGESTREAMS_TOKEN")
        .env_remove("IMAGESTREAMS_CLIENT_CONFIG")
        .env_remove("IMAGESTREAMS_CERTIFICATE_AUTHORITY")
        .env("HOME", home)
        .output()
        .await
        .expect("running the CLI")
}

#[tokio::test]
async fn the_gateway_serves_grpc_and_rest_over_tls_only() {
    let dir = TestDir::new("tls").expect("a temporary directory");
    let (tls, cert) = self_signed(dir.path());
    let nats = NatsServer::start().await.expect("nats-server");
    let app = spawn_tls(&nats, tls.clone()).await;
    let grpc_port = app.addr("grpc").port();
    let http_port = app.addr("http").port();

    // gRPC over TLS, trusting the certificate
    let channel = Channel::from_shared(format!("https://{SERVER_NAME}:{grpc_port}"))
        .expect("url")
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cert)))
        .expect("TLS settings")
        .connect()
        .await
        .expect("a TLS connection");
    let mut api = ImageStreamsClient::with_interceptor(channel, Bearer(Some(ROOT.1.into())));
    api.create(proto::CreateRequest {
        namespace: "ns1".into(),
        image_stream: Some(stream("ns1", "secure")),
    })
    .await
    .expect("Create over TLS");
    let got = api
        .get(proto::GetRequest {
            namespace: "ns1".into(),
            name: "secure".into(),
            ..Default::default()
        })
        .await
        .expect("Get over TLS")
        .into_inner();
    assert_eq!(got.metadata.expect("metadata").name, "secure");

    // the CLI, with --certificate-authority; without it the system's roots
    // do not trust a self-signed certificate
    let https = format!("https://{SERVER_NAME}:{grpc_port}");
    let ca = tls.cert_file.to_str().expect("utf-8 path");
    let out = cli(
        &https,
        &[
            "--certificate-authority",
            ca,
            "-n",
            "ns1",
            "get",
            "is",
            "secure",
        ],
        dir.path(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("secure"));
    let untrusted = cli(&https, &["-n", "ns1", "get", "is", "secure"], dir.path()).await;
    assert!(!untrusted.status.success(), "a certificate nobody trusts");
    let plaintext = cli(
        &format!("http://127.0.0.1:{grpc_port}"),
        &["-n", "ns1", "get", "is", "secure"],
        dir.path(),
    )
    .await;
    assert!(!plaintext.status.success(), "plaintext gRPC is refused");

    // a plaintext gRPC client
    let plain = Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .expect("url")
        .connect()
        .await;
    if let Ok(channel) = plain {
        let refused = ImageStreamsClient::with_interceptor(channel, Bearer(Some(ROOT.1.into())))
            .get(proto::GetRequest {
                namespace: "ns1".into(),
                name: "secure".into(),
                ..Default::default()
            })
            .await;
        assert!(refused.is_err(), "plaintext gRPC is refused");
    }

    // REST over https, and plaintext refused
    let path = "/apis/image.openshift.io/v1/namespaces/ns1/imagestreams/secure";
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).expect("PEM"))
        .build()
        .expect("an https client");
    let response = https
        .get(format!("https://{SERVER_NAME}:{http_port}{path}"))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .expect("REST over https");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["metadata"]["name"], "secure");
    let healthz = https
        .get(format!("https://{SERVER_NAME}:{http_port}/healthz"))
        .send()
        .await
        .expect("health over https");
    assert_eq!(healthz.status(), 200);
    let plaintext = reqwest::get(format!("http://127.0.0.1:{http_port}{path}")).await;
    assert!(
        plaintext.is_err(),
        "plaintext HTTP is refused: {plaintext:?}"
    );

    app.stop().await.expect("stopping");
}

#[tokio::test]
async fn a_bad_certificate_or_key_stops_the_start_with_the_file_named() {
    let dir = TestDir::new("tls-bad").expect("a temporary directory");
    let (mut tls, _) = self_signed(dir.path());
    let nats = NatsServer::start().await.expect("nats-server");

    tls.key_file = dir.path().join("missing.key");
    let missing = TestApp::spawn_with(&nats, &[ServiceName::Gateway], |config| {
        config.gateway.tls = Some(tls.clone());
    })
    .await
    .err()
    .expect("a missing key is an error");
    let message = format!("{missing:#}");
    assert!(message.contains("missing.key"), "{message}");

    // the key of another certificate
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    tls.key_file = self_signed(&other).0.key_file;
    let mismatched = TestApp::spawn_with(&nats, &[ServiceName::Gateway], |config| {
        config.gateway.tls = Some(tls.clone());
    })
    .await
    .err()
    .expect("a key that is not the certificate's is an error");
    let message = format!("{mismatched:#}");
    assert!(message.contains("tls.crt"), "{message}");
    assert!(
        !message.contains("PRIVATE KEY"),
        "no key material: {message}"
    );
}
