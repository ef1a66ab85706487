//! Webhook receivers (issue 18), end to end: a real docker-registry stands
//! in for GHCR through a `[[registry]]` rule (`ghcr.io` → the local
//! registry), the stream-store, the tag-syncer (which serves the receivers)
//! and the gateway (which the CLI talks to) on a real nats-server.

use std::time::Duration;

use futures::StreamExt as _;
use hmac::{Hmac, Mac as _};
use imagestreams::cli::{ClientCommand, CreateArgs, DeleteArgs, GetArgs, ServiceName};
use imagestreams_common::config::Config;
use imagestreams_common::subjects::{self, Kind};
use imagestreams_integration::{Registry, RegistryOptions, TestApp, push_unique_image, wait_for};
use imagestreams_proto::v1 as proto;
use prost::Message as _;
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Env, WAIT, cli, images, rule};

/// How long the test waits to be sure something does not happen.
const SETTLE: Duration = Duration::from_secs(2);

/// `create receiver NAME --type KIND`.
pub(super) fn receiver_args(name: &str, kind: &str) -> CreateArgs {
    CreateArgs {
        resource: Some("receiver".to_owned()),
        name: Some(name.to_owned()),
        receiver_type: Some(kind.to_owned()),
        ..CreateArgs::default()
    }
}

/// A real docker-registry standing in for hosted registries (each of the
/// hosts is it, by a `[[registry]]` rule), with the stream-store, the
/// tag-syncer and the gateway on a real nats-server.
pub(super) struct Hooked {
    pub(super) registry: Registry,
    pub(super) env: Env,
    pub(super) app: TestApp,
}

impl Hooked {
    pub(super) async fn start(
        hosts: &[&str],
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Hooked> {
        let registry = Registry::start(RegistryOptions::default()).await?;
        let env = Env::start().await?;
        let rules: Vec<_> = hosts.iter().map(|h| rule(h, &registry.host())).collect();
        let app = env
            .spawn(
                &[
                    ServiceName::StreamStore,
                    ServiceName::TagSyncer,
                    ServiceName::Gateway,
                ],
                &rules,
                configure,
            )
            .await?;
        Ok(Hooked { registry, env, app })
    }

    /// Creates `namespace/name` with a tag `v1` from `from` and waits for its
    /// first import; returns its image.
    pub(super) async fn follow(
        &self,
        namespace: &str,
        name: &str,
        from: &str,
    ) -> anyhow::Result<String> {
        let document = json!({
            "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": name},
            "spec": {"tags": [{"name": "v1", "from": {"kind": "DockerImage", "name": from}}]}
        });
        self.env
            .create(namespace, document.to_string().as_bytes())
            .await?;
        let stream = self
            .env
            .wait_stream(namespace, name, |s| !images(s, "v1").is_empty())
            .await?;
        Ok(images(&stream, "v1").remove(0))
    }

    /// `create receiver` through the CLI: the URL it prints alone on stdout,
    /// and the secret it generates, shown once on stderr (empty when none).
    pub(super) async fn receiver(
        &self,
        namespace: &str,
        args: CreateArgs,
    ) -> anyhow::Result<(String, String)> {
        let (created, url, err) =
            cli(&self.app.grpc_url(), namespace, ClientCommand::Create(args)).await;
        created.map_err(|e| anyhow::anyhow!("create receiver: {e}"))?;
        let secret = err
            .lines()
            .find_map(|l| l.split_once("shown this once").map(|(_, rest)| rest))
            .and_then(|rest| rest.rsplit(' ').next())
            .unwrap_or_default()
            .to_owned();
        Ok((url.trim().to_owned(), secret))
    }
}

/// A GitHub `package` delivery naming `ghcr.io/<owner>/app:<tag>` (the
/// owner in GitHub's case) and `digest`, signed with `secret`.
fn ghcr_delivery(owner: &str, tag: &str, digest: &str, secret: &str) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(&json!({
        "action": "published",
        "package": {
            "name": "app", "namespace": owner, "package_type": "CONTAINER",
            "owner": {"login": owner},
            "package_version": {
                "version": digest,
                "package_url": format!("ghcr.io/{owner}/app:{tag}"),
                "container_metadata": {"tag": {"name": tag, "digest": digest}}
            }
        },
        "sender": {"login": "ci-bot"}
    }))
    .expect("json");
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes())
        .expect("any key");
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    signature: &str,
    delivery: &str,
) -> anyhow::Result<(u16, Value)> {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "package")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(body.to_vec())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The `ImportRequested` events JetStream holds.
async fn requests_stored(env: &Env) -> anyhow::Result<u64> {
    let mut stream = env.topology.js.get_stream(subjects::STREAM_IMPORTS).await?;
    Ok(stream.info().await?.state.messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ghcr_delivery_imports_the_following_tags_from_the_registry() -> anyhow::Result<()> {
    let hooked = Hooked::start(&["ghcr.io"], |_| {}).await?;
    let (registry, env, app) = (&hooked.registry, &hooked.env, &hooked.app);
    push_unique_image(registry, "team/app:v1").await?;
    // two namespaces follow the same repository; the receiver is ns1's
    let first = hooked.follow("ns1", "app", "ghcr.io/team/app:v1").await?;
    hooked.follow("ns2", "app", "ghcr.io/team/app:v1").await?;

    let server = app.grpc_url();
    let (url, secret) = hooked
        .receiver("ns1", receiver_args("hook", "ghcr"))
        .await?;
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/hooks/"),
        "the URL alone on stdout: {url:?}"
    );
    assert!(
        !url.contains("ns1") && !url.contains("hook/"),
        "the path says nothing of the receiver: {url}"
    );
    assert!(!secret.is_empty(), "a generated secret on stderr");

    let mut changes = env
        .nats
        .connect()
        .await?
        .subscribe(Kind::TagsChanged.namespace_filter("ns1"))
        .await?;
    let http = reqwest::Client::new();
    let second = push_unique_image(registry, "team/app:v1").await?;
    // the sender's digest is not the registry's: the registry's wins
    let bogus = format!("sha256:{}", "0".repeat(64));
    let (body, signature) = ghcr_delivery("Team", "v1", &bogus, &secret);

    // a wrong signature is refused with nothing published
    let before = requests_stored(env).await?;
    let (status, answer) = post(&http, &url, &body, "sha256=00", "d-1").await?;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(requests_stored(env).await?, before, "nothing published");

    let (status, answer) = post(&http, &url, &body, &signature, "d-1").await?;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["outcome"], "accepted");
    let stream = env
        .wait_stream("ns1", "app", |s| images(s, "v1").first() == Some(&second))
        .await?;
    assert_eq!(images(&stream, "v1"), [second.clone(), first.clone()]);
    assert!(
        !images(&stream, "v1").contains(&bogus),
        "the payload's digest is never written"
    );
    let event = tokio::time::timeout(WAIT, changes.next())
        .await?
        .expect("a TagsChanged");
    let event = proto::TagsChanged::decode(event.payload)?;
    assert_eq!(event.changes.len(), 1, "{event:?}");
    assert_eq!(event.changes[0].tag, "v1");
    assert_eq!(event.changes[0].new_image, second);
    let cause = event.cause.clone().unwrap_or_default();
    assert_eq!(cause.actor, "system:receiver:ns1:hook", "{cause:?}");
    // the image's metadata is read after the tag moved, not lost
    let catalog = imagestreams_images_api::ImageCatalog::new(env.topology.images.clone());
    let record = imagestreams_integration::wait_for_some(
        || async { catalog.get(&second).await.ok().flatten() },
        WAIT,
    )
    .await?;
    assert!(
        record.config.is_some() && record.error.is_none(),
        "{record:?}"
    );

    // the same delivery again (a sender's retry) imports nothing more
    let (status, answer) = post(&http, &url, &body, &signature, "d-1").await?;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["outcome"], "duplicate");
    tokio::time::sleep(SETTLE).await;
    let more = tokio::time::timeout(Duration::from_millis(10), changes.next()).await;
    assert!(more.is_err(), "one TagsChanged: {more:?}");

    // ns2 follows the same repository, but the receiver is ns1's
    let other = env.reader.get("ns2", "app").await?;
    assert_eq!(images(&other, "v1"), [first], "namespace isolation");

    // its status says what came last; deleted, its URL answers 404
    let (got, table, _) = cli(
        &server,
        "ns1",
        ClientCommand::Get(GetArgs {
            resource: "receivers".to_owned(),
            names: Vec::new(),
            output: None,
            selector: None,
            all_namespaces: false,
        }),
    )
    .await;
    got?;
    assert!(
        table.contains("hook") && table.contains("ghcr") && table.contains("(duplicate)"),
        "{table}"
    );
    assert!(!table.contains(&secret), "the secret is never shown again");
    let (deleted, _, _) = cli(
        &server,
        "ns1",
        ClientCommand::Delete(DeleteArgs {
            resource: "receiver".to_owned(),
            names: vec!["hook".to_owned()],
        }),
    )
    .await;
    deleted?;
    let (status, _) = post(&http, &url, &body, &signature, "d-2").await?;
    assert_eq!(status, 404);
    hooked.app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_hmac_refuses_replays_and_unfollowed_repositories_change_nothing()
-> anyhow::Result<()> {
    let hooked = Hooked::start(&["ghcr.io"], |_| {}).await?;
    let (registry, env) = (&hooked.registry, &hooked.env);
    push_unique_image(registry, "team/app:v1").await?;
    let first = hooked.follow("ns1", "app", "ghcr.io/team/app:v1").await?;
    let (url, secret) = hooked
        .receiver("ns1", receiver_args("ci", "generic-hmac"))
        .await?;
    let http = reqwest::Client::new();
    let send = |body: Value, at: i64| {
        let body = serde_json::to_vec(&body).expect("json");
        let signature =
            imagestreams_receivers::verify::generic_hmac_signature(secret.as_bytes(), at, &body);
        http.post(&url)
            .header("content-type", "application/json")
            .header("x-imagestreams-timestamp", at.to_string())
            .header("x-imagestreams-signature", signature)
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    let second = push_unique_image(registry, "team/app:v1").await?;

    // signed ten minutes ago: a replay, refused with nothing published
    let before = requests_stored(env).await?;
    let old = send(
        json!({"repository": "ghcr.io/team/app", "tags": ["v1"]}),
        now - 600,
    )
    .await?;
    assert_eq!(old.status().as_u16(), 401);
    assert_eq!(requests_stored(env).await?, before);

    // a repository nothing follows is accepted and changes nothing
    let unfollowed = send(
        json!({"repository": "ghcr.io/team/else", "tags": ["v1"]}),
        now,
    )
    .await?;
    assert_eq!(unfollowed.status().as_u16(), 202);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        images(&env.reader.get("ns1", "app").await?, "v1"),
        std::slice::from_ref(&first)
    );

    let fresh = send(
        json!({"repository": "ghcr.io/team/app", "tags": ["v1"]}),
        now,
    )
    .await?;
    assert_eq!(fresh.status().as_u16(), 202);
    wait_for(
        || async {
            env.reader
                .get("ns1", "app")
                .await
                .is_ok_and(|s| images(&s, "v1") == [second.clone(), first.clone()])
        },
        WAIT,
    )
    .await?;
    hooked.app.stop().await
}

/// The tag-syncer's count of streams its deliveries imported, by outcome.
async fn receiver_imports(metrics_url: &str, outcome: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(metrics_url).await?.text().await?;
    let name = format!("imagestreams_tag_syncer_receiver_imports_total{{outcome=\"{outcome}\"}}");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deliveries_for_one_tag_costs_a_few_imports() -> anyhow::Result<()> {
    let hooked = Hooked::start(&["ghcr.io"], |_| {}).await?;
    let (registry, env, app) = (&hooked.registry, &hooked.env, &hooked.app);
    push_unique_image(registry, "team/app:v1").await?;
    let first = hooked.follow("ns1", "app", "ghcr.io/team/app:v1").await?;
    let (url, secret) = hooked
        .receiver("ns1", receiver_args("hook", "ghcr"))
        .await?;
    let second = push_unique_image(registry, "team/app:v1").await?;

    // 100 deliveries of one push (a sender retrying, or many webhooks set up
    // for one repository), each with its own delivery id, within a second
    let http = reqwest::Client::new();
    let (body, signature) = ghcr_delivery("team", "v1", &second, &secret);
    let sending = std::time::Instant::now();
    let answers: Vec<anyhow::Result<(u16, Value)>> = futures::stream::iter(0..100)
        .map(|i| {
            let (http, url, body, signature) = (&http, &url, &body, &signature);
            async move { post(http, url, body, signature, &format!("burst-{i}")).await }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    // a busy machine may stretch the burst past a second: the bound is the
    // mechanism's, the first import at once and one a window after each
    let windows = sending.elapsed().as_secs_f64().ceil() as u64;
    for answer in answers {
        let (status, answer) = answer?;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["outcome"], "accepted");
    }
    env.wait_stream("ns1", "app", |s| {
        images(s, "v1") == [second.clone(), first.clone()]
    })
    .await?;
    // every delivery is handled: imported, or covered by another's import
    let metrics = format!("{}/metrics", app.http_url());
    wait_for(
        || async {
            let imported = receiver_imports(&metrics, "imported").await.unwrap_or(0);
            let coalesced = receiver_imports(&metrics, "coalesced").await.unwrap_or(0);
            imported + coalesced == 100
        },
        WAIT,
    )
    .await?;
    let imported = receiver_imports(&metrics, "imported").await?;
    assert!(
        (1..=2 + windows).contains(&imported),
        "a burst of 100 deliveries sent within {windows} s cost {imported} imports"
    );
    hooked.app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_over_its_rate_is_told_when_to_retry_and_nothing_is_published()
-> anyhow::Result<()> {
    let hooked = Hooked::start(&[], |c| {
        c.tag_syncer.hooks_rate_per_receiver = 0.2;
        c.tag_syncer.hooks_burst_per_receiver = 3;
    })
    .await?;
    let env = &hooked.env;
    let (url, secret) = hooked
        .receiver("ns1", receiver_args("hook", "ghcr"))
        .await?;
    let (body, signature) =
        ghcr_delivery("team", "v1", &format!("sha256:{}", "1".repeat(64)), &secret);
    let http = reqwest::Client::new();
    let before = requests_stored(env).await?;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-github-event", "package")
            .header("x-github-delivery", format!("rate-{i}"))
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .send()
            .await?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        statuses.push((response.status().as_u16(), retry_after));
    }
    assert_eq!(
        statuses.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [202, 202, 202, 429, 429],
        "a burst of 3, then the rate: {statuses:?}"
    );
    for (_, retry_after) in &statuses[3..] {
        assert!(
            retry_after.is_some_and(|s| (1..=5).contains(&s)),
            "Retry-After in whole seconds: {statuses:?}"
        );
    }
    assert_eq!(
        requests_stored(env).await? - before,
        3,
        "only the accepted deliveries are published"
    );
    hooked.app.stop().await
}
