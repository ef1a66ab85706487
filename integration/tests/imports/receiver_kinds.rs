//! Every receiver type, end to end (issue 18): for each, a new image is
//! pushed to the real docker-registry, which stands in for the sender's
//! registry through a `[[registry]]` rule (`quay.io` → the local registry,
//! and so on), and the sender's documented payload shape, authenticated as
//! that sender does, moves exactly the stream tag that follows what it names
//! to the registry's digest. Each type's repository is its own, so a
//! delivery that moved another type's stream would show.

use std::path::PathBuf;

use base64::Engine as _;
use hmac::Hmac;
use imagestreams_integration::push_unique_image;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    images,
    receivers::{Hooked, receiver_args},
};

/// One sender: its receiver type, the registry host its payloads name, and
/// how it builds and authenticates a delivery.
struct Sender {
    kind: &'static str,
    host: &'static str,
}

/// The receivers' fixtures (the GAR test keys and the first one's JWKS).
pub(super) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../services/receivers/tests/fixtures")
}

pub(super) const GAR_AUDIENCE: &str = "https://hooks.example.com/gar";
pub(super) const GAR_EMAIL: &str = "pusher@my-project.iam.gserviceaccount.com";

const SENDERS: [Sender; 12] = [
    Sender {
        kind: "dockerhub",
        host: "docker.io",
    },
    Sender {
        kind: "quay",
        host: "quay.io",
    },
    Sender {
        kind: "ghcr",
        host: "ghcr.io",
    },
    Sender {
        kind: "harbor",
        host: "harbor.example.com",
    },
    Sender {
        kind: "gitlab",
        host: "gitlab.example.com:5050",
    },
    Sender {
        kind: "distribution",
        host: "registry.example.com:5000",
    },
    Sender {
        kind: "acr",
        host: "myregistry.azurecr.io",
    },
    Sender {
        kind: "gar",
        host: "us-east1-docker.pkg.dev",
    },
    Sender {
        kind: "ecr",
        host: "123456789012.dkr.ecr.us-west-2.amazonaws.com",
    },
    Sender {
        kind: "artifactory",
        host: "acme.jfrog.io",
    },
    Sender {
        kind: "nexus",
        host: "nexus.example.com",
    },
    Sender {
        kind: "zot",
        host: "zot.example.com:5000",
    },
];

fn hmac_hex<M: hmac::Mac + hmac::digest::KeyInit>(secret: &str, body: &[u8]) -> String {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A Google ID token as a Pub/Sub push subscription sends it, signed with
/// the fixture key `pem` under the key id `kid`.
pub(super) fn gar_token(pem: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let pem = std::fs::read(fixtures().join(pem)).expect("the test key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("an RSA key");
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "aud": GAR_AUDIENCE, "iss": "https://accounts.google.com",
        "email": GAR_EMAIL, "email_verified": true, "exp": now + 600, "iat": now,
    });
    jsonwebtoken::encode(&header, &claims, &key).expect("a token")
}

/// A GAR push of `host/path:tag` (`digest`) as Pub/Sub delivers it, with
/// the message id `id`.
pub(super) fn gar_message(host: &str, path: &str, tag: &str, digest: &str, id: &str) -> Value {
    let data = json!({"action": "INSERT", "digest": format!("{host}/{path}@{digest}"), "tag": format!("{host}/{path}:{tag}")});
    json!({"message": {
        "data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
        "messageId": id
    }})
}

/// The delivery `sender` makes for a push of `path:tag` (digest `digest`)
/// on its host: headers and body, authenticated with `secret`.
fn delivery(
    sender: &Sender,
    path: &str,
    tag: &str,
    digest: &str,
    secret: &str,
) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let host = sender.host;
    let hex_digest = digest.trim_start_matches("sha256:");
    let body: Value = match sender.kind {
        "dockerhub" => json!({
            "push_data": {"pushed_at": 1, "pusher": "ci", "tag": tag},
            "repository": {"repo_name": path, "namespace": path.split('/').next()}
        }),
        "quay" => json!({
            "repository": path, "docker_url": format!("{host}/{path}"),
            "updated_tags": [tag]
        }),
        "ghcr" => json!({
            "action": "published",
            "package": {"name": "app", "namespace": "x", "package_type": "CONTAINER",
                "package_version": {"package_url": format!("{host}/{path}:{tag}"),
                    "container_metadata": {"tag": {"name": tag, "digest": digest}}}}
        }),
        "harbor" => json!({
            "type": "PUSH_ARTIFACT", "occur_at": 1, "operator": "admin",
            "event_data": {
                "resources": [{"digest": digest, "tag": tag, "resource_url": format!("{host}/{path}:{tag}")}],
                "repository": {"repo_full_name": path}
            }
        }),
        "gitlab" | "distribution" => json!({"events": [{
            "id": format!("{}-{tag}", sender.kind), "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": path, "tag": tag, "digest": digest},
            "request": {"host": host}
        }]}),
        "acr" => json!({
            "id": "acr-1", "action": "push",
            "target": {"repository": path, "tag": tag, "digest": digest},
            "request": {"host": host}
        }),
        "gar" => gar_message(host, path, tag, digest, "gar-1"),
        "ecr" => json!({
            "id": "ecr-1", "detail-type": "ECR Image Action", "source": "aws.ecr",
            "account": "123456789012", "region": "us-west-2",
            "detail": {"result": "SUCCESS", "action-type": "PUSH", "repository-name": path,
                "image-tag": tag, "image-digest": digest}
        }),
        "artifactory" => json!({
            "domain": "docker", "event_type": "pushed", "jpd_origin": format!("https://{host}"),
            "data": {"image_name": path, "tag": tag, "sha256": hex_digest}
        }),
        "nexus" => json!({
            "action": "CREATED", "repositoryName": "docker-hosted",
            "component": {"format": "docker", "name": path, "version": tag}
        }),
        "zot" => json!({
            "specversion": "1.0", "id": "zot-1", "type": "zotregistry.image.updated", "source": "zot",
            "data": {"name": path, "reference": tag, "digest": digest, "request": {"host": host}}
        }),
        other => panic!("no delivery for {other}"),
    };
    let body = serde_json::to_vec(&body).expect("json");
    let headers = match sender.kind {
        "dockerhub" | "quay" => vec![],
        "ghcr" => vec![
            ("x-github-event", "package".to_owned()),
            ("x-github-delivery", "gh-1".to_owned()),
            (
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex::<Hmac<Sha256>>(secret, &body)),
            ),
        ],
        "artifactory" => vec![(
            "x-jfrog-event-auth",
            hmac_hex::<Hmac<Sha256>>(secret, &body),
        )],
        "nexus" => vec![
            ("x-nexus-webhook-id", "rm:repository:component".to_owned()),
            (
                "x-nexus-webhook-signature",
                hmac_hex::<Hmac<sha1::Sha1>>(secret, &body),
            ),
        ],
        "gar" => vec![(
            "authorization",
            format!("Bearer {}", gar_token("gar-test-key.pem", "test-key-1")),
        )],
        "distribution" | "gitlab" | "zot" => vec![("authorization", format!("Bearer {secret}"))],
        _ => vec![("authorization", secret.to_owned())],
    };
    (headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receiver_type_moves_the_tag_its_payload_names_to_the_registrys_digest()
-> anyhow::Result<()> {
    let hosts: Vec<&str> = SENDERS.iter().map(|s| s.host).collect();
    let hooked = Hooked::start(&hosts, |c| {
        c.tag_syncer.gar_jwks_file = Some(fixtures().join("gar-jwks.json"))
    })
    .await?;
    let (registry, env) = (&hooked.registry, &hooked.env);
    let http = reqwest::Client::new();
    for sender in &SENDERS {
        let kind = sender.kind;
        // the sender's repository, pushed to under the same path locally
        let path = format!("{kind}/app");
        push_unique_image(registry, &format!("{path}:v1")).await?;
        let first = hooked
            .follow("hooks", kind, &format!("{}/{path}:v1", sender.host))
            .await?;
        let mut create = receiver_args(&format!("{kind}-hook"), kind);
        if kind == "gar" {
            create.oidc_audience = Some(GAR_AUDIENCE.to_owned());
            create.oidc_email = Some(GAR_EMAIL.to_owned());
        }
        let (url, secret) = hooked.receiver("hooks", create).await?;

        let second = push_unique_image(registry, &format!("{path}:v1")).await?;
        let (headers, body) = delivery(sender, &path, "v1", &second, &secret);
        if !matches!(kind, "dockerhub" | "quay") {
            // without its proof, the same delivery is refused
            let refused = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            assert_eq!(refused.status().as_u16(), 401, "{kind} without its proof");
        }
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "{kind}: {answer}");
        env.wait_stream("hooks", kind, |s| {
            images(s, "v1") == [second.clone(), first.clone()]
        })
        .await
        .map_err(|e| anyhow::anyhow!("{kind}: the tag did not move: {e}"))?;
    }
    // each delivery moved its own stream only: every stream holds two images
    for sender in &SENDERS {
        let stream = env.reader.get("hooks", sender.kind).await?;
        assert_eq!(images(&stream, "v1").len(), 2, "{}", sender.kind);
    }
    hooked.app.stop().await
}
