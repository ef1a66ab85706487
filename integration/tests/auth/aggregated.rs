//! The Kubernetes-compatible API as an aggregated API: the test plays
//! kube-apiserver's aggregator, calling with a proxy client certificate
//! (CN `front-proxy-client`, signed by the request-header CA) and
//! `X-Remote-User` / `X-Remote-Group`. Those headers decide who calls,
//! mapped onto our RBAC by user and group, only with such a certificate:
//! without one, with a name outside `allowed_names`, or from another CA,
//! they are ignored (or the handshake fails), and a bearer token still works.

use std::path::Path;

use imagestreams::cli::ServiceName;
use imagestreams_common::config::RequestHeaderConfig;
use imagestreams_integration::{NatsServer, TestApp, TestDir};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{ROOT, with_auth};

/// The name kube-apiserver's proxy certificate has by default.
const PROXY_NAME: &str = "front-proxy-client";

/// A CA, and client certificates it signs (PEM: certificate then key).
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let pem = params.self_signed(&key).expect("self-signed").pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate for `common_name`, as reqwest's identity.
    fn client(&self, common_name: &str) -> reqwest::Identity {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        reqwest::Identity::from_pem(pem.as_bytes()).expect("an identity")
    }
}

async fn spawn(nats: &NatsServer, dir: &Path, request_header_ca: &str) -> TestApp {
    let ca_file = dir.join("requestheader-ca.crt");
    std::fs::write(&ca_file, request_header_ca).expect("writing the CA");
    let pki_dir = dir.join("kube-pki");
    TestApp::spawn_with(
        nats,
        &[ServiceName::StreamStore, ServiceName::Gateway],
        |config| {
            with_auth(config);
            config.gateway.kube.enabled = true;
            config.gateway.kube.pki_dir = pki_dir;
            config.gateway.kube.request_header = Some(RequestHeaderConfig {
                client_ca_file: ca_file,
                allowed_names: vec![PROXY_NAME.to_owned()],
                username_headers: vec!["X-Remote-User".to_owned()],
                group_headers: vec!["X-Remote-Group".to_owned()],
            });
        },
    )
    .await
    .expect("starting the services")
}

/// An HTTPS client trusting the gateway's local CA, with `identity` if given.
fn client(dir: &Path, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let ca = std::fs::read(dir.join("kube-pki/ca.crt")).expect("the local CA");
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a certificate"));
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().expect("a client")
}

/// One request as `user` in `groups` (headers), optionally with a bearer token.
async fn call(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    who: (&str, &[&str]),
    body: Option<serde_json::Value>,
) -> Result<StatusCode, reqwest::Error> {
    let mut request = client.request(method, format!("{base}{path}"));
    if !who.0.is_empty() {
        request = request.header("X-Remote-User", who.0);
    }
    for group in who.1 {
        request = request.header("X-Remote-Group", *group);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    Ok(request.send().await?.status())
}

fn stream_json(name: &str) -> serde_json::Value {
    json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": name}})
}

#[tokio::test]
async fn request_headers_count_only_from_the_aggregators_certificate() {
    let nats = NatsServer::start().await.expect("nats-server");
    let dir = TestDir::new("aggregated").expect("a directory");
    let ca = Ca::new("request-header CA");
    let app = spawn(&nats, dir.path(), &ca.pem).await;
    let base = format!("https://localhost:{}", app.addr("kube").port());
    let ns1 = "/apis/image.openshift.io/v1/namespaces/ns1/imagestreams";
    let ns2 = "/apis/image.openshift.io/v1/namespaces/ns2/imagestreams";
    let proxy = client(dir.path(), Some(ca.client(PROXY_NAME)));

    // the aggregator's availability probe: discovery, for any authenticated user
    let probe = ("system:kube-aggregator", &["system:masters"][..]);
    let code = call(
        &proxy,
        &base,
        Method::GET,
        "/apis/image.openshift.io/v1",
        probe,
        None,
    )
    .await;
    assert_eq!(code.expect("a reply"), StatusCode::OK);

    // a user bound by name (edit in ns1), one by group (view in ns1)
    let editor = ("editor", &[][..]);
    let viewer = ("someone", &["viewers"][..]);
    let created = call(
        &proxy,
        &base,
        Method::POST,
        ns1,
        editor,
        Some(stream_json("web")),
    )
    .await;
    assert_eq!(created.expect("a reply"), StatusCode::CREATED);
    for (who, method, path, body, want) in [
        (viewer, Method::GET, ns1.to_owned(), None, StatusCode::OK),
        (
            viewer,
            Method::POST,
            ns1.to_owned(),
            Some(stream_json("nope")),
            StatusCode::FORBIDDEN,
        ),
        (
            viewer,
            Method::DELETE,
            format!("{ns1}/web"),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            editor,
            Method::GET,
            ns2.to_owned(),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            ("stranger", &[][..]),
            Method::GET,
            ns1.to_owned(),
            None,
            StatusCode::FORBIDDEN,
        ),
        // no user named: the headers name nobody, the caller is anonymous
        (
            ("", &["viewers"][..]),
            Method::GET,
            ns1.to_owned(),
            None,
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let code = call(&proxy, &base, method.clone(), &path, who, body).await;
        assert_eq!(code.expect("a reply"), want, "{who:?} {method} {path}");
    }

    // the same headers without the certificate, or with a name not allowed: ignored
    let direct = client(dir.path(), None);
    let code = call(&direct, &base, Method::GET, ns1, editor, None).await;
    assert_eq!(code.expect("a reply"), StatusCode::UNAUTHORIZED);
    let impostor = client(dir.path(), Some(ca.client("not-the-proxy")));
    let code = call(&impostor, &base, Method::GET, ns1, editor, None).await;
    assert_eq!(code.expect("a reply"), StatusCode::UNAUTHORIZED);
    let code = call(
        &impostor,
        &base,
        Method::POST,
        ns1,
        editor,
        Some(stream_json("x")),
    )
    .await;
    assert_eq!(code.expect("a reply"), StatusCode::UNAUTHORIZED);
    // a certificate from another CA does not even connect
    let forger = client(dir.path(), Some(Ca::new("another CA").client(PROXY_NAME)));
    let refused = call(&forger, &base, Method::GET, ns1, editor, None).await;
    assert!(
        refused.is_err(),
        "a certificate of another CA was accepted: {refused:?}"
    );

    // direct clients keep their bearer tokens
    let code = direct
        .get(format!("{base}{ns1}"))
        .bearer_auth(ROOT.1)
        .send()
        .await
        .expect("a reply")
        .status();
    assert_eq!(code, StatusCode::OK);
}
