//! Tests of the gateway against a real nats-server and the real stream-store:
//! gRPC and REST CRUD, optimistic concurrency, watch resumption across a
//! gateway restart, refusal of bad input, pagination, label selectors,
//! health, reflection and unavailability.
//!
//! The stream-store and the gateway run as two `TestApp`s (microservices
//! mode): the gateway gets its own HTTP port for REST that way, and can be
//! stopped and replaced while the store keeps running.

use std::{collections::BTreeMap, time::Duration};

use imagestreams::cli::ServiceName;
use imagestreams_common::model::{self, ImageStream, ObjectReference, TagReference};
use imagestreams_integration::{NatsServer, TestApp};
use imagestreams_proto::v1::{self as proto, image_streams_client::ImageStreamsClient};
use serde_json::{Value, json};
use tonic::{Code, Status, transport::Channel};

/// How long a test waits for a watch event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A nats-server, the stream-store and a gateway, with clients of the gateway.
struct Api {
    gateway: Option<TestApp>,
    grpc: ImageStreamsClient<Channel>,
    http: reqwest::Client,
    _store: Option<TestApp>,
    // dropped last: the services go before their server
    nats: NatsServer,
}

impl Api {
    async fn start() -> anyhow::Result<Api> {
        Self::start_with(true).await
    }

    async fn start_with(store: bool) -> anyhow::Result<Api> {
        let nats = NatsServer::start().await?;
        let store = match store {
            true => Some(TestApp::spawn_with(&nats, &[ServiceName::StreamStore], |_| {}).await?),
            false => None,
        };
        let gateway = TestApp::spawn_with(&nats, &[ServiceName::Gateway], |_| {}).await?;
        let grpc = gateway.client().await?;
        Ok(Api {
            gateway: Some(gateway),
            grpc,
            http: reqwest::Client::new(),
            _store: store,
            nats,
        })
    }

    fn gateway(&self) -> &TestApp {
        self.gateway.as_ref().expect("a gateway is running")
    }

    /// Stops the gateway gracefully and starts a new one on new ports.
    async fn restart_gateway(&mut self) -> anyhow::Result<()> {
        if let Some(old) = self.gateway.take() {
            old.stop().await?;
        }
        let gateway = TestApp::spawn_with(&self.nats, &[ServiceName::Gateway], |_| {}).await?;
        self.grpc = gateway.client().await?;
        self.gateway = Some(gateway);
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway().http_url())
    }

    async fn rest_get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self.http.get(self.url(path)).send().await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    async fn rest_send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .request(method, self.url(path))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    async fn create(&self, namespace: &str, stream: ImageStream) -> Result<ImageStream, Status> {
        let created = self
            .grpc
            .clone()
            .create(proto::CreateRequest {
                namespace: namespace.to_owned(),
                image_stream: Some(stream.into()),
            })
            .await?
            .into_inner();
        Ok(domain(created))
    }

    async fn update(&self, stream: ImageStream) -> Result<ImageStream, Status> {
        let updated = self
            .grpc
            .clone()
            .update(proto::UpdateRequest {
                namespace: stream.metadata.namespace.clone(),
                image_stream: Some(stream.into()),
            })
            .await?
            .into_inner();
        Ok(domain(updated))
    }

    async fn delete(&self, namespace: &str, name: &str) -> Result<(), Status> {
        self.grpc
            .clone()
            .delete(proto::DeleteRequest {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                resource_version: String::new(),
            })
            .await?;
        Ok(())
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<ImageStream, Status> {
        let got = self
            .grpc
            .clone()
            .get(proto::GetRequest {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(domain(got))
    }

    async fn list(&self, request: proto::ListRequest) -> Result<proto::ListResponse, Status> {
        Ok(self.grpc.clone().list(request).await?.into_inner())
    }

    async fn watch(
        &self,
        request: proto::WatchRequest,
    ) -> Result<tonic::Streaming<proto::WatchEvent>, Status> {
        Ok(self.grpc.clone().watch(request).await?.into_inner())
    }

    /// Every stream of every namespace as `ns/name@rv`, and the list's revision.
    async fn everything(&self) -> anyhow::Result<(Vec<String>, String)> {
        let list = self.list(proto::ListRequest::default()).await?;
        let items = list
            .items
            .into_iter()
            .map(|s| {
                let m = s.metadata.unwrap_or_default();
                format!("{}/{}@{}", m.namespace, m.name, m.resource_version)
            })
            .collect();
        Ok((items, list.resource_version))
    }
}

fn domain(stream: proto::ImageStream) -> ImageStream {
    ImageStream::try_from(stream).expect("the gateway returns valid streams")
}

/// A stream with one DockerImage tag and the given labels.
fn stream(name: &str, labels: &[(&str, &str)]) -> ImageStream {
    let mut is = ImageStream::new("", name);
    is.spec.tags.push(TagReference {
        name: "latest".to_owned(),
        from: Some(ObjectReference {
            kind: model::FROM_DOCKER_IMAGE.to_owned(),
            name: format!("quay.io/example/{name}:latest"),
            namespace: String::new(),
        }),
        ..TagReference::default()
    });
    for (k, v) in labels {
        is.metadata.labels.insert((*k).to_owned(), (*v).to_owned());
    }
    is
}

fn with_annotation(mut is: ImageStream, key: &str, value: &str) -> ImageStream {
    is.metadata
        .annotations
        .insert(key.to_owned(), value.to_owned());
    is
}

fn is_rfc3339_seconds_utc(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'Z'
}

#[track_caller]
fn assert_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    mentions: &str,
    what: &str,
) {
    match result {
        Ok(value) => panic!("{what}: expected {code:?}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(
                status.message().contains(mentions),
                "{what}: {:?} does not mention {mentions:?}",
                status.message()
            );
        }
    }
}

/// `(type, name, resourceVersion)` of a watch event.
type Seen = (&'static str, String, String);

fn seen(event: proto::WatchEvent) -> Seen {
    let kind = match proto::WatchEventType::try_from(event.r#type) {
        Ok(proto::WatchEventType::Added) => "ADDED",
        Ok(proto::WatchEventType::Modified) => "MODIFIED",
        Ok(proto::WatchEventType::Deleted) => "DELETED",
        _ => "UNSPECIFIED",
    };
    let meta = event.object.and_then(|o| o.metadata).unwrap_or_default();
    (kind, meta.name, meta.resource_version)
}

async fn next_event(watch: &mut tonic::Streaming<proto::WatchEvent>) -> anyhow::Result<Seen> {
    match tokio::time::timeout(EVENT_TIMEOUT, watch.message()).await {
        Err(_) => anyhow::bail!("no watch event within {EVENT_TIMEOUT:?}"),
        Ok(Err(status)) => anyhow::bail!("watch failed: {status:?}"),
        Ok(Ok(None)) => anyhow::bail!("watch ended"),
        Ok(Ok(Some(event))) => Ok(seen(event)),
    }
}

/// Asserts that nothing more arrives for a short while.
async fn assert_quiet(watch: &mut tonic::Streaming<proto::WatchEvent>) {
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(500), watch.message()).await {
        panic!("unexpected watch message: {extra:?}");
    }
}

#[tokio::test]
async fn seed_document_round_trips_through_grpc_and_both_rest_paths() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let seed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/seed/imagestream-create.json"
    ))?;
    let parsed = ImageStream::from_json(&seed)?;

    let created = api.create("seed", parsed).await?;
    let meta = &created.metadata;
    assert_eq!(
        (meta.namespace.as_str(), meta.name.as_str()),
        ("seed", "ruby")
    );
    assert_eq!(created.api_version, "v1", "the legacy apiVersion is kept");
    uuid::Uuid::parse_str(&meta.uid)?;
    assert!(meta.resource_version.parse::<u64>().is_ok(), "{meta:?}");
    let created_at = meta.creation_timestamp.as_deref().unwrap_or_default();
    assert!(is_rfc3339_seconds_utc(created_at), "{created_at}");
    assert_eq!(
        meta.self_link,
        "/osapi/v1/namespaces/seed/imagestreams/ruby"
    );
    assert_eq!(meta.generation, 1);
    assert_eq!(
        created
            .status
            .as_ref()
            .map(|s| s.docker_image_repository.as_str()),
        Some("openshift/ruby-20-centos7")
    );

    let got = api.get("seed", "ruby").await?;
    assert_eq!(got, created);
    // each path answers with its own apiVersion, whatever the document was written with
    for (path, api_version) in [
        (
            "/apis/image.openshift.io/v1/namespaces/seed/imagestreams/ruby",
            "image.openshift.io/v1",
        ),
        (meta.self_link.as_str(), "v1"),
        ("/api/v1/namespaces/seed/imagestreams/ruby", "v1"),
    ] {
        let mut want = serde_json::to_value(&got)?;
        want["apiVersion"] = api_version.into();
        let (code, body) = api.rest_get(path).await?;
        assert_eq!(code, 200, "{path}: {body}");
        assert_eq!(body, want, "{path}");
    }

    // update over gRPC: a spec change bumps the generation and the revision
    let mut changed = got.clone();
    changed.spec.tags.push(stream("x", &[]).spec.tags.remove(0));
    let updated = api.update(changed).await?;
    assert_eq!(updated.metadata.generation, 2);
    assert!(
        updated.metadata.resource_version.parse::<u64>()?
            > got.metadata.resource_version.parse::<u64>()?
    );
    assert_eq!(updated.metadata.uid, got.metadata.uid);

    // REST create, replace and delete
    let path = "/apis/image.openshift.io/v1/namespaces/seed/imagestreams";
    let body = serde_json::to_vec(&stream("web", &[("app", "web")]))?;
    let (code, posted) = api
        .rest_send(reqwest::Method::POST, path, "application/json", body)
        .await?;
    assert_eq!(code, 201, "{posted}");
    assert_eq!(posted["metadata"]["namespace"], "seed");
    assert_eq!(posted, serde_json::to_value(api.get("seed", "web").await?)?);
    let mut put: ImageStream = serde_json::from_value(posted.clone())?;
    put.metadata.labels.insert("tier".into(), "front".into());
    let yaml = put.to_yaml()?;
    let (code, replaced) = api
        .rest_send(
            reqwest::Method::PUT,
            &format!("{path}/web"),
            "application/yaml",
            yaml,
        )
        .await?;
    assert_eq!(code, 200, "{replaced}");
    assert_eq!(replaced["metadata"]["labels"]["tier"], "front");

    let (code, list) = api.rest_get(path).await?;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "ImageStreamList");
    assert_eq!(list["apiVersion"], "image.openshift.io/v1");
    assert!(
        list["metadata"]["resourceVersion"].as_str().is_some(),
        "{list}"
    );
    assert!(list["metadata"].get("continue").is_none(), "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ruby", "web"]);

    let response = api
        .http
        .delete(api.url(&format!("{path}/web")))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    let status: Value = response.json().await?;
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Success");
    assert_eq!(status["details"]["name"], "web");
    assert_eq!(status["details"]["uid"], posted["metadata"]["uid"]);

    // gone: gRPC NOT_FOUND, REST a 404 Status
    api.delete("seed", "ruby").await?;
    assert_status(
        api.get("seed", "ruby").await,
        Code::NotFound,
        "ruby",
        "get after delete",
    );
    let (code, status) = api.rest_get(&meta.self_link).await?;
    assert_eq!(code, 404);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["apiVersion"], "v1");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["code"], 404);
    assert_eq!(status["details"]["name"], "ruby");
    assert_eq!(status["details"]["kind"], "imagestreams");
    assert_status(
        api.delete("seed", "ruby").await,
        Code::NotFound,
        "ruby",
        "delete twice",
    );

    // this mesh has no tag-syncer: an import says so instead of hanging
    let import = api
        .grpc
        .clone()
        .import_image(proto::ImportImageRequest {
            namespace: "seed".into(),
            name: "ruby".into(),
            ..Default::default()
        })
        .await;
    assert_status(import, Code::Unavailable, "tag-syncer", "import-image");
    Ok(())
}

#[tokio::test]
async fn concurrent_updates_with_one_resource_version_let_exactly_one_win() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let base = api.create("cas", stream("app", &[])).await?;

    let first = with_annotation(base.clone(), "writer", "one");
    let second = with_annotation(base.clone(), "writer", "two");
    let (a, b) = tokio::join!(api.update(first), api.update(second));
    let (won, lost) = match (a, b) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        other => panic!("expected one success and one failure, got {other:?}"),
    };
    assert_eq!(lost.code(), Code::Aborted, "{lost:?}");
    assert_eq!(api.get("cas", "app").await?, won);

    // REST: two PUTs with the same resourceVersion, one 200 and one 409 Conflict
    let path = "/apis/image.openshift.io/v1/namespaces/cas/imagestreams/app";
    let body = |writer: &str| serde_json::to_vec(&with_annotation(won.clone(), "writer", writer));
    let (a, b) = tokio::join!(
        api.rest_send(
            reqwest::Method::PUT,
            path,
            "application/json",
            body("three")?
        ),
        api.rest_send(
            reqwest::Method::PUT,
            path,
            "application/json",
            body("four")?
        ),
    );
    let mut codes = [a?, b?];
    codes.sort_by_key(|(code, _)| *code);
    assert_eq!(codes[0].0, 200, "{}", codes[0].1);
    assert_eq!(codes[1].0, 409, "{}", codes[1].1);
    assert_eq!(codes[1].1["reason"], "Conflict");
    assert_eq!(codes[1].1["details"]["name"], "app");

    // a stale resourceVersion stays stale
    assert_status(
        api.update(with_annotation(base, "writer", "late")).await,
        Code::Aborted,
        "",
        "stale update",
    );
    Ok(())
}

#[tokio::test]
async fn watch_resumes_across_a_gateway_restart_without_gaps_or_repeats() -> anyhow::Result<()> {
    let mut api = Api::start().await?;
    let ns = "watch";
    let mut a = api.create(ns, stream("a", &[])).await?;
    let from = a.metadata.resource_version.clone();
    let mut watch = api
        .watch(proto::WatchRequest {
            namespace: ns.into(),
            resource_version: from.clone(),
            ..Default::default()
        })
        .await?;

    // Every change after `from`, as (type, name, rv); deletes' rv is learnt from the watch.
    let mut expected: Vec<(&str, String, Option<String>)> = Vec::new();
    let mut changed = |kind, s: &ImageStream, known: bool| {
        expected.push((
            kind,
            s.metadata.name.clone(),
            known.then(|| s.metadata.resource_version.clone()),
        ));
    };
    for i in 0..3 {
        a = api
            .update(with_annotation(a, "step", &i.to_string()))
            .await?;
        changed("MODIFIED", &a, true);
    }
    let b = api.create(ns, stream("b", &[])).await?;
    changed("ADDED", &b, true);
    api.delete(ns, "b").await?;
    changed("DELETED", &b, false);

    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next_event(&mut watch).await?);
    }
    let last = got.last().unwrap().2.clone();

    // The old gateway goes away: its watch ends with UNAVAILABLE.
    api.restart_gateway().await?;
    let ended = tokio::time::timeout(EVENT_TIMEOUT, watch.message()).await?;
    assert_status(
        ended,
        Code::Unavailable,
        "shutting down",
        "the old gateway's watch",
    );

    // Changes while nobody watches, then resume from the last revision seen.
    for i in 3..5 {
        a = api
            .update(with_annotation(a, "step", &i.to_string()))
            .await?;
        changed("MODIFIED", &a, true);
    }
    let c = api.create(ns, stream("c", &[])).await?;
    changed("ADDED", &c, true);
    let mut watch = api
        .watch(proto::WatchRequest {
            namespace: ns.into(),
            resource_version: last,
            ..Default::default()
        })
        .await?;
    let c = api.update(with_annotation(c, "live", "yes")).await?;
    changed("MODIFIED", &c, true);
    api.delete(ns, "a").await?;
    changed("DELETED", &a, false);

    while got.len() < expected.len() {
        got.push(next_event(&mut watch).await?);
    }
    assert_quiet(&mut watch).await;

    let kinds: Vec<(&str, &str)> = got.iter().map(|(k, n, _)| (*k, n.as_str())).collect();
    let want: Vec<(&str, &str)> = expected.iter().map(|(k, n, _)| (*k, n.as_str())).collect();
    assert_eq!(kinds, want);
    let revisions: Vec<u64> = got.iter().map(|(_, _, rv)| rv.parse().unwrap()).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions must increase strictly: {revisions:?}"
    );
    assert!(revisions[0] > from.parse()?);
    for ((_, _, rv), (_, _, want)) in got.iter().zip(&expected) {
        if let Some(want) = want {
            assert_eq!(rv, want);
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_watch_without_revision_starts_with_the_current_streams_and_filters_by_label()
-> anyhow::Result<()> {
    let api = Api::start().await?;
    let ns = "sel";
    api.create(ns, stream("old-web", &[("app", "web")])).await?;
    api.create(ns, stream("old-db", &[("app", "db")])).await?;
    api.create("elsewhere", stream("other", &[("app", "web")]))
        .await?;

    let mut all = api
        .watch(proto::WatchRequest {
            namespace: ns.into(),
            ..Default::default()
        })
        .await?;
    let mut web = api
        .watch(proto::WatchRequest {
            namespace: ns.into(),
            label_selector: "app=web".into(),
            ..Default::default()
        })
        .await?;
    let mut initial = [next_event(&mut all).await?, next_event(&mut all).await?];
    initial.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        initial
            .iter()
            .map(|(k, n, _)| (*k, n.as_str()))
            .collect::<Vec<_>>(),
        [("ADDED", "old-db"), ("ADDED", "old-web")]
    );
    assert_eq!(next_event(&mut web).await?.1, "old-web");
    let resume_from = initial
        .iter()
        .map(|(_, _, rv)| rv.parse::<u64>().unwrap())
        .max();

    let relabel = |mut s: ImageStream, app: &str| {
        s.metadata.labels.insert("app".into(), app.into());
        s
    };
    let s = api.create(ns, stream("s", &[("app", "web")])).await?;
    let s = api.update(relabel(s, "db")).await?;
    api.update(relabel(s, "web")).await?;
    api.create(ns, stream("quiet", &[("app", "db")])).await?;
    api.delete(ns, "s").await?;

    let mut got = Vec::new();
    for _ in 0..4 {
        let (kind, name, _) = next_event(&mut web).await?;
        got.push((kind, name));
    }
    assert_eq!(
        got,
        [
            ("ADDED", "s".to_owned()),
            ("DELETED", "s".to_owned()),
            ("ADDED", "s".to_owned()),
            ("DELETED", "s".to_owned()),
        ]
    );
    assert_quiet(&mut web).await;

    // Resumed with a selector: whether the client knew a stream is looked up.
    let mut resumed = api
        .watch(proto::WatchRequest {
            namespace: ns.into(),
            label_selector: "app=web".into(),
            resource_version: resume_from.unwrap().to_string(),
            ..Default::default()
        })
        .await?;
    let mut again = Vec::new();
    for _ in 0..4 {
        let (kind, name, _) = next_event(&mut resumed).await?;
        again.push((kind, name));
    }
    assert_eq!(again, got);
    assert_quiet(&mut resumed).await;

    // one stream by name
    let mut one = api
        .watch(proto::WatchRequest {
            namespace: ns.into(),
            name: "old-db".into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(next_event(&mut one).await?.1, "old-db");
    assert_quiet(&mut one).await;
    Ok(())
}

#[tokio::test]
async fn concurrent_gets_each_get_the_exact_answer() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let mut live = BTreeMap::new();
    for i in 0..20 {
        let name = format!("g{i:02}");
        live.insert(name.clone(), api.create("gets", stream(&name, &[])).await?);
    }
    for i in 15..20 {
        let name = format!("g{i:02}");
        api.delete("gets", &name).await?;
        live.remove(&name);
    }
    // 20 existing or deleted streams and 5 that never were, 10 times over, all at once
    let names: Vec<String> = (0..250).map(|i| format!("g{:02}", i % 25)).collect();
    let answers = futures::future::join_all(names.iter().map(|n| api.get("gets", n))).await;
    for (name, answer) in names.iter().zip(answers) {
        match (live.get(name), answer) {
            (Some(want), Ok(got)) => assert_eq!(&got, want, "{name}"),
            (None, Err(status)) => {
                assert_eq!(status.code(), Code::NotFound, "{name}: {status:?}");
                assert!(status.message().contains(name.as_str()), "{status:?}");
            }
            (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
        }
    }

    // read-your-writes under load: a get that starts after an update returns sees it
    let mut s = live["g00"].clone();
    for round in 0..20 {
        s = api
            .update(with_annotation(s, "round", &round.to_string()))
            .await?;
        let reads = futures::future::join_all((0..8).map(|_| api.get("gets", "g00"))).await;
        for got in reads {
            assert_eq!(got?.metadata.resource_version, s.metadata.resource_version);
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_is_out_of_range() -> anyhow::Result<()> {
    let api = Api::start().await?;
    // The bucket keeps 64 revisions per stream: 70 writes of one stream drop
    // its first revisions, so nothing that old can be resumed from.
    let mut s = api.create("old", stream("x", &[])).await?;
    let created = s.metadata.resource_version.clone();
    for i in 0..70 {
        s = api.update(with_annotation(s, "n", &i.to_string())).await?;
    }
    // over HTTP, as informers need it to relist: 410 Expired
    let (code, status) = api
        .rest_get(&format!(
            "/apis/image.openshift.io/v1/namespaces/old/imagestreams?watch=true&resourceVersion={created}"
        ))
        .await?;
    assert_eq!(
        (code, &status["reason"]),
        (410, &json!("Expired")),
        "{status}"
    );
    assert_eq!(status["kind"], "Status");
    let too_old = api
        .watch(proto::WatchRequest {
            namespace: "old".into(),
            resource_version: created,
            ..Default::default()
        })
        .await;
    assert_status(
        too_old,
        Code::OutOfRange,
        "too old resource version",
        "compacted",
    );

    let future = api
        .watch(proto::WatchRequest {
            resource_version: "999999999".into(),
            ..Default::default()
        })
        .await;
    assert_status(
        future,
        Code::InvalidArgument,
        "newer than",
        "future revision",
    );

    let mut current = api
        .watch(proto::WatchRequest {
            namespace: "old".into(),
            resource_version: s.metadata.resource_version.clone(),
            ..Default::default()
        })
        .await?;
    let s = api.update(with_annotation(s, "n", "last")).await?;
    let (kind, _, rv) = next_event(&mut current).await?;
    assert_eq!((kind, rv), ("MODIFIED", s.metadata.resource_version));
    Ok(())
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    api.create("bad", stream("keep", &[("app", "web")])).await?;
    let before = api.everything().await?;

    // gRPC
    let mut named = stream("x", &[]);
    named.metadata.name = "Bad_Name".into();
    let create = |s: ImageStream| api.create("bad", s);
    assert_status(
        create(named.clone()).await,
        Code::InvalidArgument,
        "metadata.name",
        "bad name",
    );
    named.metadata.name = "..".into();
    assert_status(
        create(named).await,
        Code::InvalidArgument,
        "metadata.name",
        "name ..",
    );
    let mut kind = stream("x", &[]);
    kind.kind = "Pod".into();
    assert_status(
        create(kind).await,
        Code::InvalidArgument,
        "kind",
        "wrong kind",
    );
    let mut version = stream("x", &[]);
    version.api_version = "apps/v1".into();
    assert_status(
        create(version).await,
        Code::InvalidArgument,
        "apiVersion",
        "wrong apiVersion",
    );
    assert_status(
        api.create("Bad_NS", stream("x", &[])).await,
        Code::InvalidArgument,
        "metadata.namespace",
        "bad namespace",
    );
    assert_status(
        api.grpc
            .clone()
            .create(proto::CreateRequest {
                namespace: "bad".into(),
                image_stream: None,
            })
            .await,
        Code::InvalidArgument,
        "image_stream",
        "no stream",
    );
    // JSON over 1 MiB but a message under the 4 MiB gRPC limit
    let mut big = stream("big", &[]);
    for tag in 0..30 {
        let mut t = stream("big", &[]).spec.tags.remove(0);
        t.name = format!("t{tag}");
        t.annotations.insert("blob".into(), "x".repeat(40_000));
        big.spec.tags.push(t);
    }
    big.spec.tags.remove(0);
    assert_status(
        create(big).await,
        Code::InvalidArgument,
        "limit",
        "over 1 MiB",
    );
    // a message over the 4 MiB gRPC limit
    let mut huge = stream("huge", &[]);
    huge.metadata
        .annotations
        .insert("blob".into(), "x".repeat(5 << 20));
    // tonic's own limit answers before the handler runs
    assert_status(
        create(huge).await,
        Code::OutOfRange,
        "too large",
        "over 4 MiB",
    );
    let list = |r: proto::ListRequest| api.list(r);
    assert_status(
        list(proto::ListRequest {
            label_selector: "app in (".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "labelSelector",
        "bad selector",
    );
    assert_status(
        list(proto::ListRequest {
            continue_token: "!!not-a-token".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "continue_token",
        "bad token",
    );
    assert_status(
        list(proto::ListRequest {
            limit: -1,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "limit",
        "negative limit",
    );
    assert_status(
        api.watch(proto::WatchRequest {
            resource_version: "abc".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "resource_version",
        "bad resourceVersion",
    );
    assert_status(
        api.watch(proto::WatchRequest {
            label_selector: "a b".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "labelSelector",
        "bad watch selector",
    );
    assert_status(
        api.get("bad", "").await,
        Code::InvalidArgument,
        "name",
        "empty name",
    );

    // REST
    let path = "/apis/image.openshift.io/v1/namespaces/bad/imagestreams";
    let good = serde_json::to_value(stream("x", &[]))?;
    let edit = |pointer: &str, value: Value| {
        let mut doc = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        doc.pointer_mut(parent).unwrap()[key] = value;
        doc.to_string()
    };
    let json = "application/json";
    let yaml = "application/yaml";
    let oversized_json = edit("/metadata/annotations", json!({"a": "x".repeat(1 << 20)}));
    let oversized_yaml = format!(
        "kind: ImageStream\napiVersion: v1\nmetadata:\n  name: x\n  annotations:\n    a: {}\n",
        "x".repeat(1 << 20)
    );
    let cases: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        (
            "invalid name",
            json,
            edit("/metadata/name", json!("Bad_Name")),
            422,
            "Invalid",
            "metadata.name",
        ),
        (
            "name with a slash",
            json,
            edit("/metadata/name", json!("a/b")),
            422,
            "Invalid",
            "metadata.name",
        ),
        (
            "wrong kind",
            json,
            edit("/kind", json!("Pod")),
            422,
            "Invalid",
            "kind",
        ),
        (
            "wrong apiVersion",
            json,
            edit("/apiVersion", json!("apps/v1")),
            422,
            "Invalid",
            "apiVersion",
        ),
        (
            "unknown field",
            json,
            edit("/spec/tags/0/fromm", json!({})),
            400,
            "BadRequest",
            "spec.tags[0].fromm",
        ),
        (
            "unknown top-level field",
            json,
            edit("/extra", json!(1)),
            400,
            "BadRequest",
            "extra",
        ),
        (
            "wrong type",
            json,
            edit("/spec/tags/0/reference", json!("yes")),
            400,
            "BadRequest",
            "spec.tags[0].reference",
        ),
        (
            "malformed JSON",
            json,
            "{\"kind\": ".into(),
            400,
            "BadRequest",
            "malformed JSON",
        ),
        (
            "malformed YAML",
            yaml,
            "kind: [\n".into(),
            400,
            "BadRequest",
            "malformed YAML",
        ),
        (
            "unknown YAML field",
            yaml,
            "kind: ImageStream\napiVersion: v1\nmetadata:\n  name: x\nspec:\n  tagz: []\n".into(),
            400,
            "BadRequest",
            "spec.tagz",
        ),
        (
            "empty YAML",
            yaml,
            "".into(),
            400,
            "BadRequest",
            "empty document",
        ),
        (
            "oversized JSON",
            json,
            oversized_json,
            413,
            "RequestEntityTooLarge",
            "limit",
        ),
        (
            "oversized YAML",
            yaml,
            oversized_yaml,
            413,
            "RequestEntityTooLarge",
            "limit",
        ),
        (
            "namespace mismatch",
            json,
            edit("/metadata/namespace", json!("other")),
            400,
            "BadRequest",
            "namespace",
        ),
    ];
    for (what, content_type, body, code, reason, mentions) in cases {
        let (got, status) = api
            .rest_send(reqwest::Method::POST, path, content_type, body)
            .await?;
        assert_eq!(got, code, "{what}: {status}");
        assert_eq!(status["kind"], "Status", "{what}");
        assert_eq!(status["code"], code, "{what}");
        assert_eq!(status["reason"], reason, "{what}: {status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(mentions),
            "{what}: {message:?} lacks {mentions:?}"
        );
        if code == 422 {
            assert_eq!(
                status["details"]["causes"][0]["field"], mentions,
                "{what}: {status}"
            );
        }
    }
    let (code, status) = api
        .rest_send(
            reqwest::Method::PUT,
            &format!("{path}/keep"),
            json,
            serde_json::to_vec(&stream("other-name", &[]))?,
        )
        .await?;
    assert_eq!(
        (code, &status["reason"]),
        (400, &json!("BadRequest")),
        "{status}"
    );
    for (query, mentions) in [
        ("labelSelector=app%20in%20(", "labelSelector"),
        ("continue=!!not-a-token", "continue"),
        ("limit=ten", "limit"),
        ("limit=-3", "limit"),
        ("watch=true&resourceVersion=abc", "resourceVersion"),
        ("watch=true&timeoutSeconds=soon", "timeoutSeconds"),
        ("fieldSelector=spec.tags%3Dx", "fieldSelector"),
        ("fieldSelector=metadata.name%21%3Dx", "fieldSelector"),
        ("dryRun=Some", "dryRun"),
        ("fieldValidation=Loose", "fieldValidation"),
        ("includeObject=Everything", "includeObject"),
    ] {
        let (code, status) = api.rest_get(&format!("{path}?{query}")).await?;
        assert_eq!(code, 400, "{query}: {status}");
        assert_eq!(status["reason"], "BadRequest", "{query}");
        assert!(
            status["message"]
                .as_str()
                .unwrap_or_default()
                .contains(mentions),
            "{query}: {status}"
        );
    }

    // PATCH: an unknown patch type, a patch making the stream invalid or
    // naming an unknown field, a malformed patch
    let keep = format!("{path}/keep");
    for (what, content_type, body, code, reason, mentions) in [
        (
            "unknown patch type",
            "text/plain",
            "{}",
            415,
            "UnsupportedMediaType",
            "merge-patch",
        ),
        (
            "invalid name",
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"a b":"c"}}}"#,
            422,
            "Invalid",
            "metadata.labels",
        ),
        (
            "unknown field",
            "application/merge-patch+json",
            r#"{"spec":{"tagz":[]}}"#,
            400,
            "BadRequest",
            "spec.tagz",
        ),
        (
            "malformed merge patch",
            "application/merge-patch+json",
            "{",
            400,
            "BadRequest",
            "malformed",
        ),
        (
            "JSON patch of a missing path",
            "application/json-patch+json",
            r#"[{"op":"remove","path":"/spec/nothing"}]"#,
            400,
            "BadRequest",
            "does not apply",
        ),
    ] {
        let (got, status) = api
            .rest_send(reqwest::Method::PATCH, &keep, content_type, body.to_owned())
            .await?;
        assert_eq!(got, code, "{what}: {status}");
        assert_eq!(status["reason"], reason, "{what}: {status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(mentions),
            "{what}: {message:?} lacks {mentions:?}"
        );
    }

    assert_eq!(api.everything().await?, before, "the store is unchanged");
    Ok(())
}

#[tokio::test]
async fn lists_page_with_continue_tokens_and_filter_by_labels() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let mut names = Vec::new();
    for i in 0..25 {
        let mut labels = vec![("app", if i % 2 == 0 { "web" } else { "db" })];
        if i % 3 == 0 {
            labels.push(("tier", "front"));
        }
        let name = format!("s{i:02}");
        api.create("page", stream(&name, &labels)).await?;
        names.push(name);
    }
    for name in ["a", "b", "c"] {
        api.create("other", stream(name, &[("app", "web")])).await?;
    }

    let pages = |namespace: &'static str, selector: &'static str, limit: i64| {
        let api = &api;
        async move {
            let mut token = String::new();
            let mut pages: Vec<Vec<String>> = Vec::new();
            loop {
                let page = api
                    .list(proto::ListRequest {
                        namespace: namespace.into(),
                        label_selector: selector.into(),
                        limit,
                        continue_token: token.clone(),
                        ..Default::default()
                    })
                    .await?;
                assert!(page.resource_version.parse::<u64>().is_ok());
                pages.push(
                    page.items
                        .into_iter()
                        .map(|s| s.metadata.unwrap_or_default().name)
                        .collect(),
                );
                if page.continue_token.is_empty() {
                    return Ok::<_, anyhow::Error>(pages);
                }
                token = page.continue_token;
            }
        }
    };
    let sizes = |pages: &Vec<Vec<String>>| pages.iter().map(Vec::len).collect::<Vec<_>>();

    let got = pages("page", "", 10).await?;
    assert_eq!(sizes(&got), [10, 10, 5]);
    assert_eq!(got.concat(), names, "every stream once, in order");
    assert_eq!(sizes(&pages("page", "", 25).await?), [25]);
    assert_eq!(sizes(&pages("page", "", 0).await?), [25]);
    assert_eq!(sizes(&pages("", "", 0).await?), [28]);
    assert_eq!(sizes(&pages("", "", 20).await?), [20, 8]);

    let count = |selector: &'static str| {
        let pages = &pages;
        async move { Ok::<_, anyhow::Error>(pages("page", selector, 0).await?.concat().len()) }
    };
    assert_eq!(count("app=web").await?, 13);
    assert_eq!(count("app==db").await?, 12);
    assert_eq!(count("app!=web").await?, 12);
    assert_eq!(count("tier").await?, 9);
    assert_eq!(count("!tier").await?, 16);
    assert_eq!(count("app in (web,db),tier").await?, 9);
    assert_eq!(count("app notin (web)").await?, 12);
    assert_eq!(count("app=web,tier=front").await?, 5);
    assert_eq!(count("app=none").await?, 0);
    assert_eq!(sizes(&pages("page", "app=web", 5).await?), [5, 5, 3]);

    // REST: limit and continue, across all namespaces with a selector
    let mut token = String::new();
    let mut rest_pages = Vec::new();
    loop {
        let path = format!(
            "/apis/image.openshift.io/v1/namespaces/page/imagestreams?limit=7&continue={token}"
        );
        let (code, list) = api.rest_get(&path).await?;
        assert_eq!(code, 200, "{list}");
        rest_pages.push(list["items"].as_array().unwrap().len());
        match list["metadata"]["continue"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(rest_pages, [7, 7, 7, 4]);
    let (code, list) = api
        .rest_get("/apis/image.openshift.io/v1/imagestreams?labelSelector=app%3Dweb")
        .await?;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 16);
    // a token of one namespace does not continue another
    let first = api
        .list(proto::ListRequest {
            namespace: "page".into(),
            limit: 1,
            ..Default::default()
        })
        .await?;
    assert_status(
        api.list(proto::ListRequest {
            namespace: "other".into(),
            continue_token: first.continue_token,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "continue_token",
        "foreign token",
    );
    Ok(())
}

#[tokio::test]
async fn health_and_reflection_answer() -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let api = Api::start_with(false).await?;
    let channel = Channel::from_shared(api.gateway().grpc_url())?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "imagestreams.v1.ImageStreams",
        "imagestreams.v1.Triggers",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await?
        .into_inner();
    let response = responses.message().await?.expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "imagestreams.v1.ImageStreams",
        "imagestreams.v1.Triggers",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            services.iter().any(|s| s == want),
            "{want} not in {services:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn writes_are_unavailable_without_the_stream_store() -> anyhow::Result<()> {
    let api = Api::start_with(false).await?;
    assert_status(
        api.create("down", stream("x", &[])).await,
        Code::Unavailable,
        "stream-store",
        "create",
    );
    let (code, status) = api
        .rest_send(
            reqwest::Method::POST,
            "/apis/image.openshift.io/v1/namespaces/down/imagestreams",
            "application/json",
            serde_json::to_vec(&stream("x", &[]))?,
        )
        .await?;
    assert_eq!(code, 503, "{status}");
    assert_eq!(status["reason"], "ServiceUnavailable");
    // reads need only NATS
    assert_status(api.get("down", "x").await, Code::NotFound, "x", "get");
    assert!(
        api.list(proto::ListRequest::default())
            .await?
            .items
            .is_empty()
    );
    Ok(())
}

/// A sample of the gateway's `/metrics`, 0 when it is not exposed yet.
async fn gateway_metric(api: &Api, sample: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(api.url("/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0))
}

const CACHE_READS: &str = "imagestreams_gateway_read_cache_reads_total{source=\"cache\"}";
const BUCKET_READS: &str = "imagestreams_gateway_read_cache_reads_total{source=\"bucket\"}";
const CACHE_LIVE: &str = "imagestreams_gateway_read_cache_live";
const CACHE_CHECKS: &str = "imagestreams_gateway_read_cache_checks_total";

async fn wait_cache_live(api: &Api) -> anyhow::Result<()> {
    imagestreams_integration::wait_for(
        || async { gateway_metric(api, CACHE_LIVE).await.unwrap_or(0.0) == 1.0 },
        EVENT_TIMEOUT,
    )
    .await
}

/// Retries a write the store refuses as `UNAVAILABLE` (as it does while its
/// changefeed catches up after NATS came back), as a client would.
async fn retrying<T, F, Fut>(mut write: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        match write().await {
            Err(status)
                if status.code() == Code::Unavailable && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
}

/// Creates, updates and deletes streams, each followed at once by a get and
/// a list that must see it.
async fn write_then_read(api: &Api, namespace: &str, round: &str) -> anyhow::Result<()> {
    for i in 0..10 {
        let name = format!("{round}-{i}");
        let created = retrying(|| api.create(namespace, stream(&name, &[]))).await?;
        assert_eq!(api.get(namespace, &name).await?, created, "{name}");
        let updated =
            retrying(|| api.update(with_annotation(created.clone(), "round", round))).await?;
        assert_eq!(api.get(namespace, &name).await?, updated, "{name}");
        let listed = api
            .list(proto::ListRequest {
                namespace: namespace.into(),
                ..Default::default()
            })
            .await?;
        let rv: u64 = listed.resource_version.parse()?;
        assert!(rv >= updated.metadata.resource_version.parse()?, "{rv}");
        let mine = listed
            .items
            .iter()
            .find(|s| s.metadata.as_ref().is_some_and(|m| m.name == name));
        assert_eq!(
            mine.cloned().map(ImageStream::try_from).transpose()?,
            Some(updated)
        );
    }
    let gone = format!("{round}-0");
    retrying(|| api.delete(namespace, &gone)).await?;
    assert_status(
        api.get(namespace, &gone).await,
        Code::NotFound,
        &gone,
        "get",
    );
    Ok(())
}

#[tokio::test]
async fn gets_and_lists_come_from_the_read_cache_and_see_every_write_also_after_a_nats_restart()
-> anyhow::Result<()> {
    let mut api = Api::start().await?;
    wait_cache_live(&api).await?;
    let (cache, bucket) = (
        gateway_metric(&api, CACHE_READS).await?,
        gateway_metric(&api, BUCKET_READS).await?,
    );
    write_then_read(&api, "cached", "before").await?;
    let served = gateway_metric(&api, CACHE_READS).await? - cache;
    // 10 × (2 gets + 1 list) + the get after the delete
    assert_eq!(served, 31.0, "reads served from the cache");
    assert_eq!(gateway_metric(&api, BUCKET_READS).await?, bucket);

    // the cache reloads after the server comes back, and reads stay current
    // meanwhile (from the bucket when the cache is not live) and after
    api.nats.restart().await?;
    write_then_read(&api, "cached", "during").await?;
    wait_cache_live(&api).await?;
    let cache = gateway_metric(&api, CACHE_READS).await?;
    write_then_read(&api, "cached", "after").await?;
    assert_eq!(gateway_metric(&api, CACHE_READS).await? - cache, 31.0);
    let all = api
        .list(proto::ListRequest {
            namespace: "cached".into(),
            ..Default::default()
        })
        .await?;
    // 3 rounds of 10, one of each deleted
    assert_eq!(all.items.len(), 3 * 9);
    Ok(())
}

#[tokio::test]
async fn gets_and_lists_take_a_resource_version_as_kubernetes_does() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let created = api.create("rv", stream("app", &[])).await?;
    let rv = created.metadata.resource_version.clone();
    let get = |resource_version: &str| {
        let mut grpc = api.grpc.clone();
        let request = proto::GetRequest {
            namespace: "rv".into(),
            name: "app".into(),
            resource_version: resource_version.into(),
        };
        async move { grpc.get(request).await.map(|r| r.into_inner()) }
    };
    // "": latest; the write's own revision: not older than it; "0": any
    for asked in ["", rv.as_str(), "0"] {
        let got = ImageStream::try_from(get(asked).await?)?;
        assert_eq!(
            got.metadata.resource_version, rv,
            "resourceVersion {asked:?}"
        );
    }
    let (code, body) = api
        .rest_get(&format!(
            "/apis/image.openshift.io/v1/namespaces/rv/imagestreams/app?resourceVersion={rv}"
        ))
        .await?;
    assert_eq!(
        (code, body["metadata"]["resourceVersion"].as_str()),
        (200, Some(rv.as_str()))
    );
    let (code, body) = api
        .rest_get("/apis/image.openshift.io/v1/namespaces/rv/imagestreams?resourceVersion=0")
        .await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1));

    // once the cache holds the revision, only a latest-state read asks the
    // server for its last one, and reads waiting at the same time share it
    wait_cache_live(&api).await?;
    let checks = gateway_metric(&api, CACHE_CHECKS).await?;
    for asked in [rv.as_str(), "0"] {
        get(asked).await?;
    }
    assert_eq!(
        gateway_metric(&api, CACHE_CHECKS).await?,
        checks,
        "no round trip"
    );
    let reads = 64;
    futures::future::try_join_all((0..reads).map(|_| get(""))).await?;
    let made = gateway_metric(&api, CACHE_CHECKS).await? - checks;
    assert!(
        (1.0..f64::from(reads)).contains(&made),
        "{reads} concurrent latest-state reads made {made} round trips"
    );

    // not a number, or newer than the store: refused, naming the field
    for bad in ["abc", "-1", "99999999"] {
        let status = get(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
        assert!(
            status.message().contains("resource_version")
                || status.message().contains("resourceVersion"),
            "{status:?}"
        );
        let (code, body) = api
            .rest_get(&format!(
                "/apis/image.openshift.io/v1/namespaces/rv/imagestreams?resourceVersion={bad}"
            ))
            .await?;
        assert_eq!(code, 400, "{bad}: {body}");
        assert_eq!(body["reason"], "BadRequest", "{body}");
    }
    Ok(())
}
