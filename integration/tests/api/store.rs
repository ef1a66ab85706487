//! Tests of the stream-store against a real nats-server: the write API through
//! `StoreClient`, `ImagePushed` applied from JetStream, and `TagsChanged` from
//! the changefeed, exactly once, across crashes and restarts.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        consumer::{DeliverPolicy, pull},
        kv,
    },
};
use futures::{StreamExt as _, TryStreamExt as _};
use imagestreams::cli::ServiceName;
use imagestreams_common::{
    config::Config,
    error::ApiError,
    model::{
        FROM_DOCKER_IMAGE, FROM_IMAGE_STREAM_IMAGE, FROM_IMAGE_STREAM_TAG, ImageStream,
        ObjectReference, TagReference,
    },
    nats as topology,
    runtime::{Deps, Health, Service as _},
    subjects::{self, Kind},
};
use imagestreams_integration::{NatsServer, TestApp, wait_for};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store::{Options, StreamStoreService, changefeed, pushes};
use imagestreams_stream_store_api::{Record, StoreClient, StreamReader};
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
const REGISTRY: &str = "127.0.0.1:5000";
const BASE_TIME: i64 = 1_700_000_000;
/// A history limit above every tag's pushes in the tests that compare whole histories.
const FULL_HISTORY: std::num::NonZeroUsize = std::num::NonZeroUsize::new(1000).unwrap();

/// A nats-server with the topology declared, and clients of the store.
struct Harness {
    nats: NatsServer,
    js: jetstream::Context,
    kv: kv::Store,
    reader: StreamReader,
    store: StoreClient,
}

impl Harness {
    async fn start() -> anyhow::Result<Harness> {
        if std::env::var_os("RUST_LOG").is_some() {
            imagestreams_common::telemetry::init(&Default::default())?;
        }
        let nats = NatsServer::start().await?;
        let client = nats.connect().await?;
        let declared = topology::provision(&client, 1).await?;
        Ok(Harness {
            js: declared.js.clone(),
            reader: StreamReader::new(declared.streams.clone(), client.clone()),
            kv: declared.streams,
            store: StoreClient::new(client),
            nats,
        })
    }

    async fn spawn_store(&self) -> anyhow::Result<TestApp> {
        TestApp::spawn_with(&self.nats, &[ServiceName::StreamStore], |_| {}).await
    }

    /// A store keeping every item of the histories these tests compare whole
    /// (more than the default limit).
    async fn spawn_store_keeping_history(&self) -> anyhow::Result<TestApp> {
        TestApp::spawn_with(&self.nats, &[ServiceName::StreamStore], |c| {
            c.stream_store.history_limit = FULL_HISTORY;
        })
        .await
    }

    /// Publishes an event with its own id as `Nats-Msg-Id`.
    async fn push(&self, event: &proto::ImagePushed) -> anyhow::Result<()> {
        publish_pushed(&self.js, event).await
    }

    /// Publishes events in order without waiting for each ack (pipelined,
    /// so the test measures the store, not the publisher).
    async fn push_all(&self, events: &[(&proto::ImagePushed, String)]) -> anyhow::Result<()> {
        for chunk in events.chunks(256) {
            let mut acks = Vec::with_capacity(chunk.len());
            for (event, msg_id) in chunk {
                let mut headers = HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
                let subject = Kind::ImagesPushed.subject(&event.namespace, &event.stream);
                acks.push(
                    self.js
                        .publish_with_headers(subject, headers, event.encode_to_vec().into())
                        .await?,
                );
            }
            for ack in acks {
                ack.await?;
            }
        }
        Ok(())
    }

    /// Whether durable consumer `name` of `stream` has nothing left to do.
    async fn drained(&self, stream: &str, name: &str) -> bool {
        let Ok(stream) = self.js.get_stream(stream).await else {
            return false;
        };
        match stream.consumer_info(name).await {
            Ok(info) => info.num_pending == 0 && info.num_ack_pending == 0,
            Err(_) => false,
        }
    }

    async fn pushes_drained(&self) -> bool {
        self.drained(subjects::STREAM_IMAGES, pushes::CONSUMER_NAME)
            .await
    }

    async fn changefeed_drained(&self) -> bool {
        self.drained(
            &format!("KV_{}", subjects::BUCKET_STREAMS),
            changefeed::CONSUMER_NAME,
        )
        .await
    }

    /// The bucket's last revision: unchanged means nothing was written.
    async fn bucket_revision(&self) -> anyhow::Result<u64> {
        let mut stream = self.kv.stream.clone();
        Ok(stream.info().await?.state.last_sequence)
    }
}

/// Every `TagsChanged` of one namespace, collected by a JetStream consumer.
struct Collector {
    events: Arc<Mutex<Vec<proto::TagsChanged>>>,
    task: JoinHandle<()>,
    js: jetstream::Context,
    namespace: String,
}

impl Collector {
    async fn start(js: &jetstream::Context, namespace: &str) -> anyhow::Result<Collector> {
        let consumer = js
            .get_stream(subjects::STREAM_TAGS)
            .await?
            .create_consumer(pull::OrderedConfig {
                filter_subject: Kind::TagsChanged.namespace_filter(namespace),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            // an ordered consumer reports a transient error (a pull the busy
            // server failed) and goes on: so does the collector
            while let Some(message) = messages.next().await {
                match message {
                    Ok(message) => {
                        let event = proto::TagsChanged::decode(message.payload.clone())
                            .expect("a TagsChanged");
                        sink.lock().unwrap().push(event);
                    }
                    Err(error) => eprintln!("collector: {error}; going on"),
                }
            }
        });
        Ok(Collector {
            events,
            task,
            js: js.clone(),
            namespace: namespace.to_owned(),
        })
    }

    /// How many `TagsChanged` of the namespace the tags stream holds: what
    /// was published, whatever this collector has seen.
    async fn stored(&self) -> anyhow::Result<u64> {
        let mut subjects = self
            .js
            .get_stream(subjects::STREAM_TAGS)
            .await?
            .info_with_subjects(Kind::TagsChanged.namespace_filter(&self.namespace))
            .await?;
        let mut total = 0;
        while let Some((_, count)) = subjects.try_next().await? {
            total += count;
        }
        Ok(total as u64)
    }

    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    fn events(&self) -> Vec<proto::TagsChanged> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until every tag of `pushes` is announced at its last push's
    /// image, then checks what the store promises of the rest, whatever
    /// order redeliveries took: every push is announced at most once, and a
    /// push not announced is one applied after a newer push of its tag (so
    /// it went into the history behind the current image, changing nothing
    /// current). How many were late is returned.
    async fn expect_current(&self, pushes: &[proto::ImagePushed]) -> anyhow::Result<usize> {
        let tag_of = |p: &proto::ImagePushed| (p.stream.clone(), p.tag.clone());
        let time = |p: &proto::ImagePushed| p.time.map(|t| (t.seconds, t.nanos));
        let mut last: HashMap<(String, String), &proto::ImagePushed> = HashMap::new();
        for p in pushes {
            let newest = last.entry(tag_of(p)).or_insert(p);
            if time(p) > time(newest) {
                *newest = p;
            }
        }
        let announced = || -> HashMap<(String, String, String), usize> {
            let mut seen = HashMap::new();
            for event in self.events() {
                for change in &event.changes {
                    *seen
                        .entry((
                            event.stream.clone(),
                            change.tag.clone(),
                            change.new_image.clone(),
                        ))
                        .or_default() += 1;
                }
            }
            seen
        };
        let all_current = || async {
            let seen = announced();
            last.values()
                .all(|p| seen.contains_key(&(p.stream.clone(), p.tag.clone(), p.digest.clone())))
        };
        if let Err(e) = wait_for(all_current, WAIT).await {
            let stored = self.stored().await;
            anyhow::bail!(
                "{e}: not every tag announced at its last push; {} TagsChanged seen, the tags stream holds {stored:?}",
                self.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = announced();
        let mut late = 0;
        for p in pushes {
            match seen.get(&(p.stream.clone(), p.tag.clone(), p.digest.clone())) {
                Some(1) => {}
                Some(n) => anyhow::bail!("{} announced {n} times", p.event_id),
                None => {
                    let newer = pushes
                        .iter()
                        .any(|q| tag_of(q) == tag_of(p) && time(q) > time(p));
                    anyhow::ensure!(
                        newer,
                        "{} (the newest of its tag) never announced",
                        p.event_id
                    );
                    late += 1;
                }
            }
        }
        let events = self.events();
        let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "duplicate TagsChanged ids");
        Ok(late)
    }

    /// Waits for `expected` events, then a while longer to catch extras.
    async fn expect(&self, expected: usize) -> anyhow::Result<Vec<proto::TagsChanged>> {
        if let Err(e) = wait_for(|| async { self.len() >= expected }, WAIT).await {
            let stored = self.stored().await;
            anyhow::bail!(
                "{e}: {} of {expected} TagsChanged seen, the tags stream holds {stored:?}",
                self.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let events = self.events();
        assert_eq!(events.len(), expected, "TagsChanged count");
        let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "duplicate TagsChanged ids");
        for e in &events {
            assert_eq!(e.event_id, format!("{}:{}", e.uid, e.resource_version));
        }
        Ok(events)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A deterministic pseudo-random sequence (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

fn digest(n: usize) -> String {
    format!("sha256:{n:064x}")
}

fn pinned(namespace: &str, stream: &str, digest: &str) -> String {
    format!("{REGISTRY}/{namespace}/{stream}@{digest}")
}

/// `seconds` since the epoch as RFC 3339 UTC (civil-from-days, H. Hinnant).
fn created(seconds: i64) -> String {
    let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

pub(crate) fn pushed(
    id: &str,
    namespace: &str,
    stream: &str,
    tag: &str,
    digest: &str,
    seconds: i64,
) -> proto::ImagePushed {
    let mut event = proto::ImagePushed {
        event_id: id.to_owned(),
        registry: REGISTRY.to_owned(),
        repository: format!("{namespace}/{stream}"),
        tag: tag.to_owned(),
        digest: digest.to_owned(),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        time: Some(Default::default()),
        source: proto::ImageSource::RegistryNotification as i32,
        namespace: namespace.to_owned(),
        stream: stream.to_owned(),
        ..Default::default()
    };
    if let Some(time) = event.time.as_mut() {
        time.seconds = seconds;
    }
    event
}

fn follower(name: &str, from: &str) -> TagReference {
    TagReference {
        name: name.to_owned(),
        from: Some(ObjectReference {
            kind: FROM_IMAGE_STREAM_TAG.to_owned(),
            name: from.to_owned(),
            ..ObjectReference::default()
        }),
        ..TagReference::default()
    }
}

async fn create(store: &StoreClient, stream: ImageStream) -> Result<ImageStream, ApiError> {
    store
        .create(proto::CreateRequest {
            namespace: stream.metadata.namespace.clone(),
            image_stream: Some(stream.into()),
        })
        .await
}

/// One history entry as the test expects it: (created, reference, image).
type Item = (String, String, String);

/// One tag change: (tag, old image, new image).
type TagMove = (String, String, String);

/// Per stream, per effective event (in revision order), its sorted tag changes.
type ChangesByStream = BTreeMap<String, Vec<Vec<TagMove>>>;

/// The expected outcome of a sequence of `ImagePushed`, computed naively:
/// events applied in publish order, a seen id skipped, an image equal to
/// the tag's current one adding nothing, followers given the same image.
#[derive(Default)]
struct Model {
    followers: BTreeMap<(String, String), Vec<String>>,
    histories: BTreeMap<(String, String), Vec<Item>>,
    seen: HashSet<String>,
    /// Per stream, per effective event: the (tag, old, new) changes, sorted.
    changes: ChangesByStream,
}

impl Model {
    fn apply(&mut self, e: &proto::ImagePushed) {
        if !self.seen.insert(e.event_id.clone()) {
            return;
        }
        let time = created(e.time.as_ref().map_or(0, |t| t.seconds));
        let item = (
            time,
            pinned(&e.namespace, &e.stream, &e.digest),
            e.digest.clone(),
        );
        let mut changed = Vec::new();
        let mut visited = HashSet::from([e.tag.clone()]);
        let mut queue = VecDeque::from([e.tag.clone()]);
        while let Some(tag) = queue.pop_front() {
            let history = self
                .histories
                .entry((e.stream.clone(), tag.clone()))
                .or_default();
            let old = history.first().map(|i| i.2.clone()).unwrap_or_default();
            if old != e.digest {
                history.insert(0, item.clone());
                changed.push((tag.clone(), old, e.digest.clone()));
            }
            for next in self
                .followers
                .get(&(e.stream.clone(), tag))
                .into_iter()
                .flatten()
            {
                if visited.insert(next.clone()) {
                    queue.push_back(next.clone());
                }
            }
        }
        if !changed.is_empty() {
            changed.sort();
            self.changes
                .entry(e.stream.clone())
                .or_default()
                .push(changed);
        }
    }

    fn effective(&self) -> usize {
        self.changes.values().map(Vec::len).sum()
    }
}

/// The histories in the store, as (stream, tag) → items.
async fn histories(
    reader: &StreamReader,
    namespace: &str,
) -> anyhow::Result<BTreeMap<(String, String), Vec<Item>>> {
    let (streams, _) = reader.list(Some(namespace)).await?;
    let mut out = BTreeMap::new();
    for stream in streams {
        for list in stream.status.iter().flat_map(|s| s.tags.iter()) {
            assert!(
                list.items
                    .iter()
                    .all(|i| i.generation == Some(stream.metadata.generation))
            );
            out.insert(
                (stream.metadata.name.clone(), list.tag.clone()),
                list.items
                    .iter()
                    .map(|i| {
                        (
                            i.created.clone(),
                            i.docker_image_reference.clone(),
                            i.image.clone(),
                        )
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// The received `TagsChanged` per stream, in revision order, as sorted
/// (tag, old, new) lists.
fn received_changes(events: &[proto::TagsChanged]) -> ChangesByStream {
    let mut sorted: Vec<&proto::TagsChanged> = events.iter().collect();
    sorted.sort_by_key(|e| {
        e.resource_version
            .parse::<u64>()
            .expect("a decimal resourceVersion")
    });
    let mut out = ChangesByStream::new();
    for e in sorted {
        let mut changes: Vec<_> = e
            .changes
            .iter()
            .map(|c| {
                assert_eq!(
                    c.docker_image_reference,
                    pinned(&e.namespace, &e.stream, &c.new_image)
                );
                (c.tag.clone(), c.old_image.clone(), c.new_image.clone())
            })
            .collect();
        changes.sort();
        out.entry(e.stream.clone()).or_default().push(changes);
    }
    out
}

// several threads, as the service has in production
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pushes_with_late_duplicates_give_exact_histories_and_one_event_per_change()
-> anyhow::Result<()> {
    let ns = "thousand";
    let h = Harness::start().await?;
    let collector = Collector::start(&h.js, ns).await?;
    let app = h.spawn_store().await?;

    // One stream with followers: latest ← v1, stable ← latest, and a ⇄ b.
    let mut follow = ImageStream::new(ns, "follow");
    follow.spec.tags = vec![
        follower("latest", "v1"),
        follower("stable", "follow:latest"),
        follower("a", "b"),
        follower("b", "a"),
    ];
    create(&h.store, follow).await?;
    let mut model = Model::default();
    for (from, to) in [
        ("v1", "latest"),
        ("latest", "stable"),
        ("b", "a"),
        ("a", "b"),
    ] {
        model
            .followers
            .insert(("follow".into(), from.into()), vec![to.into()]);
    }

    // Seven streams created on the fly by the pushes, plus `follow`.
    let streams: Vec<String> = (0..7)
        .map(|i| format!("app{i}"))
        .chain(["follow".into()])
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let events: Vec<proto::ImagePushed> = (0..1000)
        .map(|i| {
            let stream = &streams[rng.below(streams.len())];
            let tags: &[&str] = if stream == "follow" {
                &["v1", "b", "v2"]
            } else {
                &["v1", "v2", "v3"]
            };
            let tag = tags[rng.below(tags.len())];
            // a pool of four images per stream: repeats are no-ops
            let image = digest(
                1 + rng.below(4) + 10 * streams.iter().position(|s| s == stream).unwrap_or(0),
            );
            pushed(
                &format!("push-{i}"),
                ns,
                stream,
                tag,
                &image,
                BASE_TIME + i as i64,
            )
        })
        .collect();
    let mut late: Vec<usize> = (0..events.len()).collect();
    rng.shuffle(&mut late);
    late.truncate(events.len() / 10);

    // 10% again, later and out of order, under new message ids, so only the
    // consumer's idempotency can drop them
    let publishes: Vec<(&proto::ImagePushed, String)> = events
        .iter()
        .map(|e| (e, e.event_id.clone()))
        .chain(
            late.iter()
                .map(|&i| (&events[i], format!("redelivery-{i}"))),
        )
        .collect();
    publishes.iter().for_each(|(e, _)| model.apply(e));
    let started = Instant::now();
    h.push_all(&publishes).await?;
    let published = started.elapsed();
    wait_for(|| async { collector.len() >= model.effective() }, WAIT).await?;
    let elapsed = started.elapsed();
    let received = collector.expect(model.effective()).await?;
    eprintln!(
        "{} ImagePushed ({} effective) published in {published:?}, all TagsChanged after {elapsed:?} ({:.0} events/s)",
        events.len() + late.len(),
        model.effective(),
        (events.len() + late.len()) as f64 / elapsed.as_secs_f64()
    );
    wait_for(|| h.pushes_drained(), WAIT).await?;

    assert_eq!(histories(&h.reader, ns).await?, model.histories);
    assert_eq!(received_changes(&received), model.changes);
    let app0 = h.reader.get(ns, "app0").await?;
    assert_eq!(
        app0.status
            .as_ref()
            .map(|s| s.docker_image_repository.as_str()),
        Some(format!("{}/{ns}/app0", app.config.integrated_registry.host).as_str())
    );
    app.stop().await
}

#[tokio::test]
async fn concurrent_updates_with_one_resource_version_let_exactly_one_win() -> anyhow::Result<()> {
    let ns = "concurrent";
    let h = Harness::start().await?;
    let app = h.spawn_store().await?;
    let mut current = create(&h.store, ImageStream::new(ns, "ruby")).await?;
    for round in 0..10 {
        let update = |who: &str| {
            let mut stream = current.clone();
            stream
                .metadata
                .labels
                .insert("writer".into(), format!("{who}-{round}"));
            h.store.update(proto::UpdateRequest {
                namespace: ns.into(),
                image_stream: Some(stream.into()),
            })
        };
        let (a, b) = tokio::join!(update("a"), update("b"));
        let (won, lost) = match (a, b) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        assert!(matches!(lost, ApiError::Conflict(_)), "{lost:?}");
        assert!(
            won.metadata.resource_version.parse::<u64>()?
                > current.metadata.resource_version.parse()?
        );
        assert_eq!(h.reader.get(ns, "ruby").await?, won);
        current = won;
    }
    app.stop().await
}

#[tokio::test]
async fn write_api_errors_name_the_problem_and_change_nothing() -> anyhow::Result<()> {
    let ns = "errors";
    let h = Harness::start().await?;
    let app = h.spawn_store().await?;
    let mut seed = ImageStream::new(ns, "ruby");
    seed.spec.docker_image_repository = "openshift/ruby-20-centos7".into();
    let ruby = create(&h.store, seed.clone()).await?;
    assert_eq!(ruby.metadata.generation, 1);
    assert!(uuid::Uuid::parse_str(&ruby.metadata.uid).is_ok());
    assert_eq!(
        ruby.status
            .as_ref()
            .map(|s| s.docker_image_repository.as_str()),
        Some("openshift/ruby-20-centos7")
    );

    let before = (h.reader.list(Some(ns)).await?, h.bucket_revision().await?);
    let invalid_field = |result: Result<ImageStream, ApiError>| match result {
        Err(ApiError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    };

    // create twice
    assert!(matches!(
        create(&h.store, seed.clone()).await,
        Err(ApiError::AlreadyExists(_))
    ));
    // bad creates
    let bad_name = ImageStream::new(ns, "Bad_Name!");
    assert_eq!(
        invalid_field(create(&h.store, bad_name).await),
        "metadata.name"
    );
    let mut wrong_kind: proto::ImageStream = ImageStream::new(ns, "web").into();
    wrong_kind.kind = "Deployment".into();
    let result = h
        .store
        .create(proto::CreateRequest {
            namespace: ns.into(),
            image_stream: Some(wrong_kind),
        })
        .await;
    assert_eq!(invalid_field(result), "kind");
    let result = h
        .store
        .create(proto::CreateRequest {
            namespace: "elsewhere".into(),
            image_stream: Some(ImageStream::new(ns, "web").into()),
        })
        .await;
    assert_eq!(invalid_field(result), "metadata.namespace");
    // a body that is not a CreateRequest
    let client = h.nats.connect().await?;
    let reply = client
        .request(subjects::store_api("create"), vec![0xff, 0xff, 0xff].into())
        .await?;
    let reply = proto::StoreReply::decode(reply.payload)?;
    assert!(
        matches!(&reply.result, Some(proto::store_reply::Result::Error(e)) if e.code == proto::StoreErrorCode::Invalid as i32),
        "{reply:?}"
    );

    // stale, missing and absent resourceVersions
    let mut stale = ruby.clone();
    stale.metadata.resource_version =
        (ruby.metadata.resource_version.parse::<u64>()? - 1).to_string();
    let update = |stream: ImageStream| {
        h.store.update(proto::UpdateRequest {
            namespace: ns.into(),
            image_stream: Some(stream.into()),
        })
    };
    assert!(matches!(update(stale).await, Err(ApiError::Conflict(_))));
    let mut unversioned = ruby.clone();
    unversioned.metadata.resource_version.clear();
    assert_eq!(
        invalid_field(update(unversioned).await),
        "metadata.resourceVersion"
    );
    let mut missing = ruby.clone();
    missing.metadata.name = "missing".into();
    assert!(matches!(update(missing).await, Err(ApiError::NotFound(_))));
    // delete: missing, and stale precondition
    let delete = |name: &str, resource_version: &str| {
        h.store.delete(proto::DeleteRequest {
            namespace: ns.into(),
            name: name.into(),
            resource_version: resource_version.into(),
        })
    };
    assert!(matches!(
        delete("missing", "").await,
        Err(ApiError::NotFound(_))
    ));
    let next = (ruby.metadata.resource_version.parse::<u64>()? + 1).to_string();
    assert!(matches!(
        delete("ruby", &next).await,
        Err(ApiError::Conflict(_))
    ));

    let after = (h.reader.list(Some(ns)).await?, h.bucket_revision().await?);
    assert_eq!(before, after, "a rejected request changed the bucket");

    // an accepted update keeps the server's fields and bumps the generation on a spec change
    let mut changed = ruby.clone();
    changed.spec.tags.push(TagReference {
        name: "2.0".into(),
        from: Some(ObjectReference {
            kind: FROM_DOCKER_IMAGE.into(),
            name: "openshift/ruby-20-centos7:2.0".into(),
            ..ObjectReference::default()
        }),
        ..TagReference::default()
    });
    let updated = update(changed).await?;
    assert_eq!(updated.metadata.generation, 2);
    assert_eq!(updated.spec.tags[0].generation, Some(2));
    assert_eq!(updated.metadata.uid, ruby.metadata.uid);
    assert_eq!(
        updated.metadata.creation_timestamp,
        ruby.metadata.creation_timestamp
    );
    let deleted = delete("ruby", &updated.metadata.resource_version).await?;
    assert_eq!(deleted, updated);
    assert!(matches!(
        h.reader.get(ns, "ruby").await,
        Err(ApiError::NotFound(_))
    ));
    app.stop().await
}

#[tokio::test]
async fn registry_pushes_create_streams_and_imports_for_missing_streams_do_not()
-> anyhow::Result<()> {
    let ns = "onthefly";
    let h = Harness::start().await?;
    let collector = Collector::start(&h.js, ns).await?;
    let app = h.spawn_store().await?;
    let image = digest(7);
    h.push(&pushed("n1", ns, "app", "1.0", &image, BASE_TIME))
        .await?;
    let mut import = pushed("i1", ns, "imported", "1.0", &image, BASE_TIME);
    import.source = proto::ImageSource::Import as i32;
    import.registry.clear();
    import.repository = "openshift/imported".into();
    h.push(&import).await?;
    // an undecodable event is terminated, and the next one still applies
    h.js.publish(
        Kind::ImagesPushed.subject(ns, "junk"),
        vec![0xff, 0xff].into(),
    )
    .await?
    .await?;
    h.push(&pushed("n2", ns, "app", "1.0", &image, BASE_TIME + 1))
        .await?;
    wait_for(|| h.pushes_drained(), WAIT).await?;

    let app_stream = h.reader.get(ns, "app").await?;
    assert_eq!(app_stream.metadata.generation, 1);
    assert_eq!(
        app_stream.metadata.self_link,
        format!("/osapi/v1/namespaces/{ns}/imagestreams/app")
    );
    assert!(uuid::Uuid::parse_str(&app_stream.metadata.uid).is_ok());
    let status = app_stream.status.as_ref().expect("a status");
    assert_eq!(
        status.docker_image_repository,
        format!("{}/{ns}/app", app.config.integrated_registry.host)
    );
    let items = &app_stream.status_tag("1.0").expect("the pushed tag").items;
    assert_eq!(
        items.len(),
        1,
        "the second push of the same image adds nothing"
    );
    assert_eq!(items[0].image, image);
    assert_eq!(items[0].docker_image_reference, pinned(ns, "app", &image));
    assert_eq!(items[0].created, created(BASE_TIME));
    assert!(matches!(
        h.reader.get(ns, "imported").await,
        Err(ApiError::NotFound(_))
    ));

    let events = collector.expect(1).await?;
    assert_eq!(events[0].stream, "app");
    assert_eq!(events[0].uid, app_stream.metadata.uid);
    assert_eq!(events[0].changes[0].old_image, "");
    app.stop().await
}

/// Replicas share the ImagePushed consumer, so the pushes of one tag can be
/// applied in any order: the registry's time decides which is current.
#[tokio::test]
async fn pushes_applied_out_of_order_keep_the_latest_current_and_fire_once() -> anyhow::Result<()> {
    let ns = "order";
    let h = Harness::start().await?;
    let collector = Collector::start(&h.js, ns).await?;
    let app = h.spawn_store().await?;
    let (d1, d2, d3) = (digest(1), digest(2), digest(3));
    // pushed at t, t+1 and t+2 (the last one 1 ns later in the same second as
    // a fourth), applied newest first
    let mut late = pushed("o3", ns, "app", "1.0", &d3, BASE_TIME + 2);
    late.time.as_mut().unwrap().nanos = 500;
    let mut same_second = pushed("o4", ns, "app", "1.0", &digest(4), BASE_TIME + 2);
    same_second.time.as_mut().unwrap().nanos = 499;
    for event in [
        late,
        pushed("o1", ns, "app", "1.0", &d1, BASE_TIME),
        same_second,
        pushed("o2", ns, "app", "1.0", &d2, BASE_TIME + 1),
    ] {
        h.push(&event).await?;
        wait_for(|| h.pushes_drained(), WAIT).await?;
    }
    let stream = h.reader.get(ns, "app").await?;
    let images: Vec<_> = stream
        .status_tag("1.0")
        .expect("the tag")
        .items
        .iter()
        .map(|i| i.image.clone())
        .collect();
    assert_eq!(
        images,
        [d3.clone(), digest(4), d2, d1],
        "newest first, by registry time"
    );
    let events = collector.expect(1).await?;
    assert_eq!(
        events[0].changes[0].new_image, d3,
        "only the latest push is a change"
    );
    app.stop().await
}

#[tokio::test]
async fn oc_tag_resolves_istags_aliases_images_and_deletes() -> anyhow::Result<()> {
    let ns = "tagging";
    let h = Harness::start().await?;
    let collector = Collector::start(&h.js, ns).await?;
    let app = h.spawn_store().await?;
    let (d1, d2, d3) = (digest(1), digest(2), digest(3));
    h.push(&pushed("p1", ns, "src", "2.0", &d1, BASE_TIME))
        .await?;
    wait_for(|| h.pushes_drained(), WAIT).await?;
    let tag = |source: &str, destinations: &[&str], edit: fn(&mut proto::TagRequest)| {
        let mut request = proto::TagRequest {
            namespace: ns.into(),
            source: source.into(),
            destinations: destinations.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        };
        edit(&mut request);
        h.store.tag(request)
    };

    // an istag without alias is resolved to its current image; `dst` is created
    let dst = tag("src:2.0", &["dst:static"], |_| {}).await?;
    let spec = dst.spec_tag("static").expect("the spec tag");
    let from = spec.from.as_ref().expect("a from");
    assert_eq!(
        (from.kind.as_str(), from.name.clone()),
        (FROM_IMAGE_STREAM_IMAGE, format!("src@{d1}"))
    );
    assert_eq!(spec.generation, Some(dst.metadata.generation));
    let item = &dst.status_tag("static").expect("a status tag").items[0];
    assert_eq!(
        (item.image.as_str(), item.docker_image_reference.clone()),
        (d1.as_str(), pinned(ns, "src", &d1))
    );

    // an alias follows the source tag, now and on later pushes
    let src = tag("src:2.0", &["src:latest"], |r| r.alias = true).await?;
    let from = src
        .spec_tag("latest")
        .and_then(|t| t.from.clone())
        .expect("a from");
    assert_eq!(
        (from.kind.as_str(), from.name.as_str()),
        (FROM_IMAGE_STREAM_TAG, "src:2.0")
    );
    assert_eq!(
        src.status_tag("latest")
            .and_then(|t| t.latest())
            .map(|i| i.image.clone()),
        Some(d1.clone())
    );
    h.push(&pushed("p2", ns, "src", "2.0", &d2, BASE_TIME + 1))
        .await?;
    wait_for(|| h.pushes_drained(), WAIT).await?;
    let src = h.reader.get(ns, "src").await?;
    let latest: Vec<_> = src
        .status_tag("latest")
        .expect("latest")
        .items
        .iter()
        .map(|i| i.image.clone())
        .collect();
    assert_eq!(latest, [d2.clone(), d1.clone()]);
    let dst = h.reader.get(ns, "dst").await?;
    assert_eq!(
        dst.status_tag("static").expect("static").items.len(),
        1,
        "a copy does not follow"
    );

    // an image of a stream, by digest
    let dst = tag(&format!("src@{d1}"), &["dst:pinned"], |_| {}).await?;
    assert_eq!(
        dst.status_tag("pinned")
            .and_then(|t| t.latest())
            .map(|i| i.image.clone()),
        Some(d1.clone())
    );

    // a pull spec, as a reference: spec only
    let dst = tag("quay.io/x/app:1", &["dst:ext"], |r| {
        r.source_kind = "DockerImage".into();
        r.reference = true;
    })
    .await?;
    let ext = dst.spec_tag("ext").expect("ext");
    assert!(ext.reference);
    assert_eq!(
        ext.from.as_ref().map(|f| f.kind.as_str()),
        Some(FROM_DOCKER_IMAGE)
    );
    assert!(dst.status_tag("ext").is_none());

    // `--reference-policy=local` lands in the destination's spec
    let dst = tag("src:2.0", &["dst:local"], |r| {
        r.reference_policy = "local".into()
    })
    .await?;
    assert_eq!(
        dst.spec_tag("local")
            .and_then(|t| t.reference_policy.as_ref())
            .map(|p| p.r#type.as_str()),
        Some("Local")
    );

    // refusals change nothing
    let before = h.bucket_revision().await?;
    let err = tag("src:2.0", &["dst:x"], |r| {
        r.reference_policy = "remote".into()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ApiError::Invalid { .. }), "{err:?}");
    let err = tag("src:nope", &["dst:x"], |_| {}).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::NotFound(m) if m.contains("not currently pointing to an image")),
        "{err:?}"
    );
    let err = tag("src:2.0", &["dst:x"], |r| r.alias = true)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Invalid { .. }), "{err:?}");
    let err = tag(&format!("src@{d3}"), &["dst:x"], |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound(_)), "{err:?}");
    let err = tag("", &["src:latest", "src:nope"], |r| r.delete = true)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound(_)), "{err:?}");
    assert_eq!(h.bucket_revision().await?, before);

    // delete removes spec and status
    let src = tag("", &["src:latest"], |r| r.delete = true).await?;
    assert!(src.spec_tag("latest").is_none() && src.status_tag("latest").is_none());
    assert!(src.status_tag("2.0").is_some());

    // TagsChanged: p1 (src 2.0), static, alias latest, p2 (2.0 + latest), pinned, local
    let events = collector.expect(6).await?;
    let mut changed: Vec<(String, Vec<String>)> = events
        .iter()
        .map(|e| {
            (
                e.stream.clone(),
                e.changes.iter().map(|c| c.tag.clone()).collect(),
            )
        })
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("dst".to_owned(), vec!["local".to_owned()]),
            ("dst".to_owned(), vec!["pinned".to_owned()]),
            ("dst".to_owned(), vec!["static".to_owned()]),
            ("src".to_owned(), vec!["2.0".to_owned()]),
            (
                "src".to_owned(),
                vec!["2.0".to_owned(), "latest".to_owned()]
            ),
            ("src".to_owned(), vec!["latest".to_owned()]),
        ]
    );
    app.stop().await
}

/// Distinct images on a few streams and tags: every event is a change.
fn distinct_events(namespace: &str, count: usize, offset: usize) -> Vec<proto::ImagePushed> {
    (offset..offset + count)
        .map(|i| {
            let stream = format!("app{}", i % 3);
            let tag = if i % 2 == 0 { "a" } else { "b" };
            pushed(
                &format!("e{i}"),
                namespace,
                &stream,
                tag,
                &digest(1000 + i),
                BASE_TIME + i as i64,
            )
        })
        .collect()
}

/// Publishes `event` as the registry-watcher does, its own id as `Nats-Msg-Id`.
pub(crate) async fn publish_pushed(
    js: &async_nats::jetstream::Context,
    event: &proto::ImagePushed,
) -> anyhow::Result<()> {
    topology::publish_event(
        js,
        Kind::ImagesPushed.subject(&event.namespace, &event.stream),
        &event.event_id,
        event,
        HeaderMap::new(),
    )
    .await?;
    Ok(())
}

/// A stream-store that applies pushes but whose changefeed does not run (a
/// replica that dies between its writes and their `TagsChanged`).
pub(crate) struct WriterOnly {
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    client: async_nats::Client,
}

impl WriterOnly {
    /// Stops it and closes its connection.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        self.task.await??;
        self.client.drain().await?;
        Ok(())
    }
}

/// Starts a [`WriterOnly`] on `nats`.
pub(crate) async fn store_without_changefeed(nats: &NatsServer) -> anyhow::Result<WriterOnly> {
    let mut config = Config::for_tests(&nats.url());
    config.nats.auto_start = false;
    let client = nats.connect().await?;
    let deps = Deps {
        nats: client.clone(),
        topology: topology::provision(&client, 1).await?,
        health: Health::new(Some(client.clone())),
        metrics: Default::default(),
    };
    let writer = StreamStoreService::build_with(
        Arc::new(config),
        deps,
        Options {
            changefeed: false,
            ..Options::default()
        },
    )
    .await?;
    let token = CancellationToken::new();
    let task = tokio::spawn(Box::new(writer).run(token.clone()));
    Ok(WriterOnly {
        token,
        task,
        client,
    })
}

#[tokio::test]
async fn tags_changed_survive_a_crash_between_the_writes_and_the_changefeed() -> anyhow::Result<()>
{
    let ns = "crash";
    let h = Harness::start().await?;
    let collector = Collector::start(&h.js, ns).await?;

    // A store that commits writes but dies before its changefeed publishes:
    // the changefeed consumer exists, nothing reads it.
    let writer = store_without_changefeed(&h.nats).await?;
    // fewer than the changefeed lag limit (32 messages, two a push: the
    // header and its tag's record): past it the writers would wait
    let events = distinct_events(ns, 14, 0);
    for e in &events {
        h.push(e).await?;
    }
    wait_for(|| h.pushes_drained(), WAIT).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(collector.len(), 0, "the writers publish nothing themselves");
    writer.stop().await?;

    // ...and a crash between publish and ack for the first 10 changes: their
    // TagsChanged went out, the bucket messages stay unacked.
    let mut revisions = Vec::new();
    for stream in ["app0", "app1", "app2"] {
        let mut history = h.kv.history(subjects::stream_key(ns, stream)).await?;
        while let Some(entry) = history.next().await {
            let entry = entry?;
            revisions.push((
                entry.revision,
                Record::decode(&entry.value, entry.revision)?,
            ));
        }
    }
    revisions.sort_by_key(|(revision, _)| *revision);
    assert_eq!(revisions.len(), events.len());
    for (revision, record) in revisions.iter().take(10) {
        let event = record
            .change
            .as_ref()
            .expect("a change")
            .to_event(&record.stream, *revision);
        let meta = &record.stream.metadata;
        topology::publish_event(
            &h.js,
            Kind::TagsChanged.subject(&meta.namespace, &meta.name),
            &event.event_id,
            &event,
            HeaderMap::new(),
        )
        .await?;
    }

    // The restarted store publishes every change exactly once.
    let started = Instant::now();
    let app = h.spawn_store().await?;
    let received = collector.expect(events.len()).await?;
    eprintln!(
        "changefeed caught up {} changes in {:?}",
        events.len(),
        started.elapsed()
    );
    let expected: HashSet<String> = revisions
        .iter()
        .map(|(revision, record)| format!("{}:{revision}", record.stream.metadata.uid))
        .collect();
    let got: HashSet<String> = received.into_iter().map(|e| e.event_id).collect();
    assert_eq!(got, expected);
    wait_for(|| h.changefeed_drained(), WAIT).await?;
    app.stop().await
}

#[tokio::test]
async fn a_restart_mid_stream_loses_and_repeats_nothing() -> anyhow::Result<()> {
    let ns = "restart";
    let h = Harness::start().await?;
    let collector = Collector::start(&h.js, ns).await?;
    let first = h.spawn_store_keeping_history().await?;
    let events = distinct_events(ns, 400, 0);
    for e in &events[..200] {
        h.push(e).await?;
    }
    wait_for(|| async { collector.len() >= 20 }, WAIT).await?;
    let started = Instant::now();
    let publisher = {
        let rest = events[200..].to_vec();
        let js = h.js.clone();
        tokio::spawn(async move {
            for e in rest {
                topology::publish_event(
                    &js,
                    Kind::ImagesPushed.subject(&e.namespace, &e.stream),
                    &e.event_id,
                    &e,
                    HeaderMap::new(),
                )
                .await?;
            }
            anyhow::Ok(())
        })
    };
    first.stop().await?;
    let stop_took = started.elapsed();
    let stopped_at = collector.len();
    let second = h.spawn_store_keeping_history().await?;
    publisher.await??;
    // every push announced once; under load a push handed back (the
    // changefeed behind, say) may come after a newer one of its tag, and then
    // lands in the history only, as designed (see pushes.rs, Order)
    let late = collector.expect_current(&events).await?;
    eprintln!(
        "restarted with {stopped_at} of {} TagsChanged out; the stop took {stop_took:?}, the rest {:?}; {late} applied late",
        events.len(),
        started.elapsed()
    );
    let mut model = Model::default();
    events.iter().for_each(|e| model.apply(e));
    wait_for(|| h.pushes_drained(), WAIT).await?;
    assert_eq!(histories(&h.reader, ns).await?, model.histories);
    second.stop().await
}

#[tokio::test]
async fn a_push_redelivered_after_hundreds_of_newer_ones_changes_nothing() -> anyhow::Result<()> {
    let ns = "late";
    let h = Harness::start().await?;
    let collector = Collector::start(&h.js, ns).await?;
    let app = h.spawn_store_keeping_history().await?;
    // more pushes to one tag than the record remembers event ids of
    let count = imagestreams_stream_store_api::APPLIED_EVENTS_KEPT + 44;
    let events: Vec<_> = (0..count)
        .map(|n| {
            let event = pushed(
                &format!("p{n}"),
                ns,
                "app",
                "v",
                &digest(n),
                BASE_TIME + n as i64,
            );
            let msg_id = event.event_id.clone();
            (event, msg_id)
        })
        .collect();
    let refs: Vec<_> = events.iter().map(|(e, id)| (e, id.clone())).collect();
    h.push_all(&refs).await?;
    wait_for(|| h.pushes_drained(), WAIT).await?;
    collector.expect(count).await?;
    let before = h.reader.get(ns, "app").await?;
    assert_eq!(before.status_tag("v").expect("the tag").items.len(), count);

    // the first pushes again, as JetStream redelivers a message whose ack a
    // killed replica never sent: same event, past the publisher's dedup window
    // (a new message id), its id long forgotten by the record
    let late: Vec<_> = events[..3]
        .iter()
        .map(|(e, id)| (e, format!("{id}-redelivered")))
        .collect();
    h.push_all(&late).await?;
    wait_for(|| h.pushes_drained(), WAIT).await?;
    let after = h.reader.get(ns, "app").await?;
    assert_eq!(
        after.status_tag("v"),
        before.status_tag("v"),
        "no history entry added, none moved"
    );
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    collector.expect(count).await?;
    app.stop().await
}
