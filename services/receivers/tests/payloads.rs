//! Each sender's documented payload (fixtures written from the vendors'
//! documentation, see `../shared/research/hosted-webhooks.md`) read as the
//! hint it gives, and the deliveries that must do nothing.

use base64::Engine as _;
use chrono::Utc;
use http::{HeaderMap, HeaderValue};
use imagestreams_receivers::{
    Credentials, Delivery, Hint, Kind, OidcTrust, Refusal, parse,
    payload::{Malformed, Parsed},
    verify,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::JwkSet};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn read(kind: Kind, pairs: &[(&'static str, &str)], name: &str) -> Parsed {
    parse(kind, &headers(pairs), &fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn push(registry: Option<&str>, repository: &str, tags: &[&str], digest: Option<&str>) -> Hint {
    Hint {
        registry: registry.map(str::to_owned),
        repository: repository.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        digest: digest.map(str::to_owned),
    }
}

#[test]
fn docker_hub_names_a_repository_on_docker_io_and_a_tag() {
    let parsed = read(Kind::Dockerhub, &[], "dockerhub.json");
    assert_eq!(
        parsed.delivery,
        Delivery::Pushes(vec![push(
            Some("docker.io"),
            "svendowideit/testhook",
            &["latest"],
            None
        )])
    );
    assert_eq!(parsed.id, None, "Docker Hub gives no delivery id");
    // an official image is library/…
    let official = br#"{"push_data":{"tag":"1.27"},"repository":{"repo_name":"nginx"}}"#;
    let parsed = parse(Kind::Dockerhub, &HeaderMap::new(), official).unwrap();
    assert_eq!(
        parsed.delivery,
        Delivery::Pushes(vec![push(
            Some("docker.io"),
            "library/nginx",
            &["1.27"],
            None
        )])
    );
}

#[test]
fn quay_names_every_updated_tag_in_either_shape() {
    assert_eq!(
        read(Kind::Quay, &[], "quay.json").delivery,
        Delivery::Pushes(vec![push(
            Some("quay.io"),
            "dgangaia/test",
            &["latest", "v1.2"],
            None
        )])
    );
    // the 2013 shape: a map from tag to image id
    let old = br#"{"repository":"org/app","updated_tags":{"prod":"abc","v3":"def"}}"#;
    assert_eq!(
        parse(Kind::Quay, &HeaderMap::new(), old).unwrap().delivery,
        Delivery::Pushes(vec![push(
            Some("quay.io"),
            "org/app",
            &["prod", "v3"],
            None
        )])
    );
}

#[test]
fn ghcr_packages_give_the_tag_and_digest_with_the_owner_in_lower_case() {
    let parsed = read(
        Kind::Ghcr,
        &[
            ("x-github-event", "package"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ],
        "ghcr-package.json",
    );
    assert_eq!(
        parsed.id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        parsed.delivery,
        Delivery::Pushes(vec![push(
            Some("ghcr.io"),
            "org/app",
            &["v1.2.3"],
            Some("sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")
        )])
    );
    // one event per manifest of a multi-arch push: only one has the tag
    let untagged = read(
        Kind::Ghcr,
        &[("x-github-event", "registry_package")],
        "ghcr-registry-package-untagged.json",
    );
    assert!(
        matches!(untagged.delivery, Delivery::Ignored(_)),
        "{untagged:?}"
    );
    let ping = parse(
        Kind::Ghcr,
        &headers(&[("x-github-event", "ping")]),
        br#"{"zen":"Design for failure."}"#,
    )
    .unwrap();
    assert_eq!(ping.delivery, Delivery::Ping);
    let other = parse(
        Kind::Ghcr,
        &headers(&[("x-github-event", "push")]),
        br#"{"ref":"refs/heads/main"}"#,
    )
    .unwrap();
    assert!(matches!(other.delivery, Delivery::Ignored(_)));
}

#[test]
fn harbor_reads_both_formats_and_skips_a_tag_that_is_a_digest() {
    assert_eq!(
        read(Kind::Harbor, &[], "harbor-default.json").delivery,
        Delivery::Pushes(vec![push(
            Some("hub.harbor.com"),
            "test-webhook/debian",
            &["latest"],
            Some("sha256:8a9e98aee1a44b4a5e9b07c1fa6d3b7a25a1b6a1d1d7b6b2a0d6e6e4e9a4f3c2")
        )])
    );
    let cloud = read(Kind::Harbor, &[], "harbor-cloudevents.json");
    assert_eq!(
        cloud.id.as_deref(),
        Some("0c4b3a47-4b8b-4a2a-9a9e-2a0b5a7d1e10")
    );
    let digest = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4";
    assert_eq!(
        cloud.delivery,
        Delivery::Pushes(vec![
            push(
                Some("harbor.example.com"),
                "library/busybox",
                &[],
                Some(digest)
            ),
            push(
                Some("harbor.example.com"),
                "library/busybox",
                &["1.36"],
                Some(digest)
            ),
        ])
    );
    let deleted = br#"{"type":"DELETE_ARTIFACT","event_data":{}}"#;
    assert!(matches!(
        parse(Kind::Harbor, &HeaderMap::new(), deleted)
            .unwrap()
            .delivery,
        Delivery::Ignored(_)
    ));
}

#[test]
fn distribution_and_gitlab_envelopes_give_their_pushes_only() {
    for kind in [Kind::Distribution, Kind::Gitlab] {
        let parsed = read(kind, &[], "distribution.json");
        assert_eq!(
            parsed.delivery,
            Delivery::Pushes(vec![push(
                Some("gitlab.example.com:5050"),
                "group/hello-world",
                &["v2"],
                Some("sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf")
            )])
        );
        assert_eq!(
            parsed.id.as_deref(),
            Some("320678d8-ca14-430f-8bb6-4ca139cd83f7,6b5a5f66-1a8b-4a0c-9e2d-1f2e3d4c5b6a")
        );
    }
}

#[test]
fn acr_pushes_and_pings() {
    assert_eq!(
        read(Kind::Acr, &[], "acr-push.json").delivery,
        Delivery::Pushes(vec![push(
            Some("myregistry.azurecr.io"),
            "hello-world",
            &["v1"],
            Some("sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d")
        )])
    );
    assert_eq!(
        read(Kind::Acr, &[], "acr-ping.json").delivery,
        Delivery::Ping
    );
}

#[test]
fn ecr_events_name_the_account_registry() {
    let parsed = read(Kind::Ecr, &[], "ecr.json");
    assert_eq!(
        parsed.id.as_deref(),
        Some("13cde686-328b-6117-af20-0e5566167482")
    );
    assert_eq!(
        parsed.delivery,
        Delivery::Pushes(vec![push(
            Some("123456789012.dkr.ecr.us-west-2.amazonaws.com"),
            "my-repository-name",
            &["latest"],
            Some("sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd12345678")
        )])
    );
}

#[test]
fn artifactory_pushes_name_the_platform_host() {
    assert_eq!(
        read(Kind::Artifactory, &[], "artifactory.json").delivery,
        Delivery::Pushes(vec![push(
            Some("acme.jfrog.io"),
            "library/ubuntu",
            &["latest"],
            Some("sha256:35c4a2c15539c6c1e4e5fa4e554dac323ad0107d8eb5c582d6ff386b383b7dce")
        )])
    );
}

#[test]
fn nexus_component_events_have_no_host() {
    let parsed = read(
        Kind::Nexus,
        &[
            ("x-nexus-webhook-id", "rm:repository:component"),
            (
                "x-nexus-webhook-delivery",
                "7f4a7a8e-1d1e-4c1b-8b0a-6e9f1b2c3d4e",
            ),
        ],
        "nexus-component.json",
    );
    assert_eq!(
        parsed.delivery,
        Delivery::Pushes(vec![push(None, "team/app", &["2.1.0"], None)])
    );
    assert_eq!(
        parsed.id.as_deref(),
        Some("7f4a7a8e-1d1e-4c1b-8b0a-6e9f1b2c3d4e")
    );
    let asset = read(
        Kind::Nexus,
        &[("x-nexus-webhook-id", "rm:repository:asset")],
        "nexus-component.json",
    );
    assert!(matches!(asset.delivery, Delivery::Ignored(_)));
}

#[test]
fn zot_cloud_events_in_structured_and_binary_mode() {
    let expected = Delivery::Pushes(vec![push(
        Some("zot.example.com:5000"),
        "space/my-image",
        &["latest"],
        Some("sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"),
    )]);
    let structured = read(Kind::Zot, &[], "zot.json");
    assert_eq!(structured.delivery, expected);
    assert_eq!(
        structured.id.as_deref(),
        Some("5f0d3c5e-2a6b-4d8e-9f1a-3b2c1d0e9f8a")
    );
    let event: serde_json::Value = serde_json::from_slice(&fixture("zot.json")).unwrap();
    let data = serde_json::to_vec(&event["data"]).unwrap();
    let binary = parse(
        Kind::Cloudevents,
        &headers(&[
            ("ce-type", "zotregistry.image.updated"),
            ("ce-id", "binary-1"),
            ("ce-specversion", "1.0"),
        ]),
        &data,
    )
    .unwrap();
    assert_eq!(binary.delivery, expected);
    assert_eq!(binary.id.as_deref(), Some("binary-1"));
}

#[test]
fn generic_hmac_takes_familiar_and_full_names() {
    let body = br#"{"repository":"nginx","tags":["1.27","not a tag!"],"digest":"sha256:abc"}"#;
    let parsed = parse(
        Kind::GenericHmac,
        &headers(&[("x-imagestreams-delivery", "d-1")]),
        body,
    )
    .unwrap();
    assert_eq!(parsed.id.as_deref(), Some("d-1"));
    assert_eq!(
        parsed.delivery,
        Delivery::Pushes(vec![push(
            Some("docker.io"),
            "library/nginx",
            &["1.27"],
            None
        )]),
        "invalid tags and digests are dropped, not trusted"
    );
}

#[test]
fn bodies_that_are_not_json_or_name_no_repository_are_malformed() {
    for kind in Kind::ALL {
        let e = parse(kind, &HeaderMap::new(), b"<html>").unwrap_err();
        assert_eq!(e.kind, kind);
        assert!(e.reason.contains("not JSON"), "{e}");
    }
    let e: Malformed = parse(
        Kind::Dockerhub,
        &HeaderMap::new(),
        br#"{"push_data":{"tag":"x"}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("repo_name"), "{e}");
}

/// A Pub/Sub push as Google sends it: the delivery in base64 under
/// `message.data`, a token signed by a key of the trusted set (a test key
/// here: the JWKS is configuration, so tests and air-gapped installations
/// give their own).
fn gar_delivery() -> Vec<u8> {
    let data = br#"{"action":"INSERT","digest":"us-east1-docker.pkg.dev/my-project/my-repo/hello-world@sha256:6ec128e26cd5b1a3a7bba1e9b2cc1c2d4b4a86d63e7ee7c1d5ef0b5e0fd3f9a1","tag":"us-east1-docker.pkg.dev/my-project/my-repo/hello-world:1.1"}"#;
    serde_json::to_vec(&serde_json::json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "messageId": "2070443601311540",
            "publishTime": "2021-02-26T19:13:55.749Z"
        },
        "subscription": "projects/my-project/subscriptions/imagestreams"
    }))
    .unwrap()
}

fn token(claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".to_owned());
    let key = EncodingKey::from_rsa_pem(&fixture("gar-test-key.pem")).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn gar_claims() -> serde_json::Value {
    serde_json::json!({
        "aud": "https://hooks.example.com/hooks/abc",
        "iss": "https://accounts.google.com",
        "email": "pusher@my-project.iam.gserviceaccount.com",
        "email_verified": true,
        "exp": Utc::now().timestamp() + 600,
        "iat": Utc::now().timestamp(),
    })
}

#[test]
fn gar_pushes_are_verified_by_token_and_read_from_the_message() {
    let trust = OidcTrust {
        keys: std::sync::Arc::new(
            serde_json::from_slice::<JwkSet>(&fixture("gar-jwks.json")).unwrap(),
        ),
        audience: "https://hooks.example.com/hooks/abc".to_owned(),
        email: "pusher@my-project.iam.gserviceaccount.com".to_owned(),
    };
    let credentials = Credentials {
        secret: b"",
        oidc: Some(&trust),
    };
    let body = gar_delivery();
    let check = |claims: serde_json::Value| {
        let bearer = format!("Bearer {}", token(claims));
        verify(
            Kind::Gar,
            credentials,
            &headers(&[("authorization", &bearer)]),
            &body,
            Utc::now(),
        )
    };
    assert_eq!(check(gar_claims()), Ok(()));
    let mut wrong_audience = gar_claims();
    wrong_audience["aud"] = "https://elsewhere.example.com".into();
    assert!(matches!(check(wrong_audience), Err(Refusal::Token(_))));
    let mut other_account = gar_claims();
    other_account["email"] = "someone@else.iam.gserviceaccount.com".into();
    assert!(
        matches!(check(other_account), Err(Refusal::Token(_))),
        "any Google-issued token is not enough (Flux's CVE-2026-40109)"
    );
    let mut other_issuer = gar_claims();
    other_issuer["iss"] = "https://token.actions.githubusercontent.com".into();
    assert!(matches!(check(other_issuer), Err(Refusal::Token(_))));
    let mut expired = gar_claims();
    expired["exp"] = (Utc::now().timestamp() - 3600).into();
    assert!(matches!(check(expired), Err(Refusal::Token(_))));

    let parsed = parse(Kind::Gar, &HeaderMap::new(), &body).unwrap();
    assert_eq!(parsed.id.as_deref(), Some("2070443601311540"));
    assert_eq!(
        parsed.delivery,
        Delivery::Pushes(vec![push(
            Some("us-east1-docker.pkg.dev"),
            "my-project/my-repo/hello-world",
            &["1.1"],
            Some("sha256:6ec128e26cd5b1a3a7bba1e9b2cc1c2d4b4a86d63e7ee7c1d5ef0b5e0fd3f9a1")
        )])
    );
}
