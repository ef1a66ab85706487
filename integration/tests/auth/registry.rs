//! The registry token service over HTTP and through a real docker-registry:
//! what `/token` answers to good and bad requests (tokens checked against
//! the served JWKS), and skopeo pushes that the registry refuses without
//! `edit` and lets through with it, the pusher named on the stream and in `ImagePushed`.

use std::time::Duration;

use imagestreams_common::subjects::{self, Kind};
use imagestreams_gateway::registry_token::{JWKS_PATH, TOKEN_PATH, issuer::Claims};
use imagestreams_integration::{ImageBuilder, NatsServer, TestApp, wait_for_some};
use imagestreams_proto::v1 as proto;
use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use prost::Message as _;

use crate::{EDITOR, ROOT, UNKNOWN_TOKEN, VIEWER, clients, spawn, spawn_with_registry};

/// A query's pairs.
type Pairs<'a> = Vec<(&'a str, &'a str)>;
/// Basic credentials: (user name, token).
type Credentials<'a> = Option<(&'a str, &'a str)>;

/// `GET /token` with `query` and Basic `credentials`: the status, the
/// `WWW-Authenticate` header and the body.
async fn ask(
    app: &TestApp,
    query: &[(&str, &str)],
    credentials: Credentials<'_>,
) -> (u16, Option<String>, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .get(format!("{}{TOKEN_PATH}", app.http_url()))
        .query(query);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("GET /token");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = response.json().await.unwrap_or_default();
    (status, challenge, body)
}

/// The claims of `token`, verified with the served JWKS, issuer and service.
async fn verify(app: &TestApp, token: &str) -> Claims {
    let jwks: JwkSet = reqwest::get(format!("{}{JWKS_PATH}", app.http_url()))
        .await
        .expect("GET jwks")
        .json()
        .await
        .expect("a JWK Set");
    let header = jsonwebtoken::decode_header(token).expect("a JWT");
    let kid = header.kid.expect("a kid");
    assert!(
        header.x5c.is_some_and(|chain| chain.len() == 2),
        "x5c: leaf and root"
    );
    let jwk = jwks.find(&kid).expect("the kid is in the JWKS");
    let registry = &app.config.auth.registry;
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[&registry.service]);
    validation.set_issuer(&[&registry.issuer]);
    jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_jwk(jwk).expect("an EC key"),
        &validation,
    )
    .expect("the token verifies")
    .claims
}

#[tokio::test]
async fn the_token_endpoint_grants_what_is_asked_and_allowed_and_refuses_bad_input() {
    let nats = NatsServer::start().await.expect("nats-server");
    let app = spawn(&nats).await;
    let service = app.config.auth.registry.service.clone();
    let svc = ("service", service.as_str());
    let both = ("scope", "repository:ns1/app:pull,push");

    // bad input: (what, query, credentials, status)
    let bad: [(&str, Pairs, Credentials, u16); 5] = [
        (
            "another service",
            vec![("service", "elsewhere"), both],
            None,
            400,
        ),
        ("no service", vec![both], None, 400),
        (
            "malformed scope",
            vec![svc, ("scope", "repository:ns1/app")],
            None,
            400,
        ),
        (
            "a token nobody holds",
            vec![svc, both],
            Some(("x", UNKNOWN_TOKEN)),
            401,
        ),
        (
            "an empty password",
            vec![svc, both],
            Some(("editor", "")),
            401,
        ),
    ];
    for (what, query, credentials, want) in bad {
        let (status, challenge, body) = ask(&app, &query, credentials).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(body["errors"][0]["message"].is_string(), "{what}: {body}");
        if want == 401 {
            assert!(
                challenge.is_some_and(|c| c.starts_with("Basic realm=")),
                "{what}: a 401 says how to authenticate"
            );
        }
    }

    // good input: (who, scopes, credentials, subject, access granted)
    let ns2 = ("scope", "repository:ns2/app:pull");
    let deep = ("scope", "repository:ns1/group/app:pull,push");
    let good: [(&str, Pairs, Credentials, &str, serde_json::Value); 5] = [
        (
            "the editor",
            vec![svc, both, ns2],
            Some(("anyone", EDITOR.1)),
            "editor",
            serde_json::json!([{"type": "repository", "name": "ns1/app", "actions": ["pull", "push"]}]),
        ),
        (
            "the viewer",
            vec![svc, both],
            Some(("viewer", VIEWER.1)),
            "viewer",
            serde_json::json!([{"type": "repository", "name": "ns1/app", "actions": ["pull"]}]),
        ),
        (
            "cluster-admin, a name of another depth",
            vec![svc, deep],
            Some(("root", ROOT.1)),
            "root",
            serde_json::json!([]),
        ),
        (
            "anonymous",
            vec![svc, both],
            None,
            "system:anonymous",
            serde_json::json!([]),
        ),
        (
            "docker login (no scope, with account)",
            vec![svc, ("account", "editor")],
            Some(("editor", EDITOR.1)),
            "editor",
            serde_json::json!([]),
        ),
    ];
    for (who, query, credentials, subject, access) in good {
        let (status, _, body) = ask(&app, &query, credentials).await;
        assert_eq!(status, 200, "{who}: {body}");
        let token = body["token"].as_str().expect("a token");
        assert_eq!(body["access_token"], token, "{who}");
        assert!(
            body["expires_in"].as_u64().is_some_and(|s| s >= 60),
            "{who}"
        );
        let issued_at = body["issued_at"].as_str().expect("issued_at");
        chrono::DateTime::parse_from_rfc3339(issued_at).expect("RFC 3339");
        let claims = verify(&app, token).await;
        assert_eq!(claims.sub, subject, "{who}");
        assert_eq!(
            serde_json::to_value(&claims.access).expect("json"),
            access,
            "{who}"
        );
    }
}

#[tokio::test]
async fn the_registry_refuses_a_push_without_edit_and_records_the_pusher_with_it() {
    let nats = NatsServer::start().await.expect("nats-server");
    let (app, registry) = spawn_with_registry(&nats, true).await;
    let image = ImageBuilder::new().build().await.expect("an image");
    // the user name is informational: the token decides who pushes
    let editor = Some(("whoever", EDITOR.1));

    let refused = image
        .push(&registry.image_ref("ns2/app:1"), editor)
        .await
        .expect_err("no edit on ns2: the registry refuses");
    let refused = format!("{refused:#}");
    assert!(
        refused.contains("denied") || refused.contains("unauthorized"),
        "{refused}"
    );
    assert!(!refused.contains(EDITOR.1), "errors never show the token");

    let digest = image
        .push(&registry.image_ref("ns1/pushed:1"), editor)
        .await
        .expect("edit on ns1: the push goes through");
    let root = clients(&app, Some(ROOT.1)).await;
    let stream = wait_for_some(
        || {
            let mut streams = root.streams.clone();
            async move {
                streams
                    .get(proto::GetRequest {
                        namespace: "ns1".into(),
                        name: "pushed".into(),
                        ..Default::default()
                    })
                    .await
                    .ok()
                    .map(|r| r.into_inner())
            }
        },
        Duration::from_secs(20),
    )
    .await
    .expect("the push creates ns1/pushed");
    let annotations = &stream.metadata.as_ref().expect("metadata").annotations;
    for key in [
        "imagestreams.io/created-by",
        "imagestreams.io/last-pushed-by",
    ] {
        assert_eq!(
            annotations.get(key).map(String::as_str),
            Some(EDITOR.0),
            "the stream records its pusher in {key}"
        );
    }
    let tag = stream
        .status
        .expect("status")
        .tags
        .into_iter()
        .find(|t| t.tag == "1")
        .expect("tag 1");
    assert_eq!(tag.items[0].image, digest);

    let js = async_nats::jetstream::new(nats.connect().await.expect("nats"));
    let pushed = js
        .get_stream(subjects::STREAM_IMAGES)
        .await
        .expect("the images stream")
        .get_last_raw_message_by_subject(&Kind::ImagesPushed.subject("ns1", "pushed"))
        .await
        .expect("an ImagePushed");
    let pushed = proto::ImagePushed::decode(pushed.payload).expect("ImagePushed");
    assert_eq!(pushed.actor, EDITOR.0, "the pusher is the token's identity");
    assert_eq!(pushed.digest, digest);
    // the watcher read the image through the token service with its own token
    let images = js
        .get_stream(subjects::STREAM_IMAGES)
        .await
        .expect("the images stream");
    let recorded = imagestreams_integration::wait_for_some(
        || async {
            images
                .get_last_raw_message_by_subject(&Kind::ImagesRecorded.subject("ns1", "pushed"))
                .await
                .ok()
        },
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("an ImageRecorded");
    let recorded = proto::ImageRecorded::decode(recorded.payload).expect("ImageRecorded");
    assert_eq!(recorded.digest, digest);
    let summary = recorded
        .summary
        .expect("ImageRecorded carries the image's summary");
    assert!(
        summary.layer_count > 0 && !summary.platforms.is_empty(),
        "{summary:?}"
    );
    assert_eq!(summary.error, "");

    let mut root = root;
    let missing = root
        .streams
        .get(proto::GetRequest {
            namespace: "ns2".into(),
            name: "app".into(),
            ..Default::default()
        })
        .await
        .expect_err("the refused push made nothing");
    assert_eq!(missing.code(), tonic::Code::NotFound);
}
