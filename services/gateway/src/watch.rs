//! Watch, in two ways:
//!
//! - A **fresh** watch (no resourceVersion) reads the gateway's shared feed
//!   (see `fanout`) directly: its response stream *is* the filtered feed, so
//!   the connection's own task polls it, and a change costs each watcher no
//!   task, channel or encoding of its own (the feed encodes it once).
//! - A **resumed** watch replays history from its own changefeed: a spawned
//!   producer reads it, filters it by label selector and feeds a bounded
//!   channel whose receiver is the response stream.
//!
//! # Guarantees
//!
//! - **Order, no gaps, no repeats.** Events come in revision order straight
//!   from the KV bucket's stream; a client that resumes from the last
//!   resourceVersion it saw gets exactly the changes after it. One caveat
//!   of the store: the bucket keeps 64 revisions per stream, so a stream
//!   written more than 64 times since that resourceVersion shows only its
//!   retained revisions (the final state is always right); a resourceVersion
//!   older than the bucket's first retained revision is `OUT_OF_RANGE`.
//! - **Selectors.** A stream that starts matching is sent as `ADDED`, one
//!   that stops matching as `DELETED` (with its new state), like Kubernetes.
//!   On a resumed watch the first event of each stream looks up the stream's
//!   previous revision to know whether the client had it.
//! - **Lag.** A fresh watch whose client falls the feed's capacity behind
//!   ends with `RESOURCE_EXHAUSTED`. A resumed watch's producer always keeps
//!   one slot of the channel free; when the client leaves the channel full
//!   for [`GatewayOptions::watch_lag_timeout`], the free slot carries a
//!   `RESOURCE_EXHAUSTED` error after the events already queued and the watch
//!   ends. Either way the client sees every event up to the error and resumes
//!   from the last one, never a silent gap.
//! - **Namespaces.** A watch of one namespace never delivers an event of
//!   another: the changefeed is opened on that namespace's keys, and every
//!   event is checked again here. Watching every namespace needs cluster-wide
//!   `view` (checked by the caller of [`start`]).
//! - **Shutdown** ends every watch with `UNAVAILABLE`, telling the client to
//!   resume elsewhere.
//!
//! [`GatewayOptions::watch_lag_timeout`]: crate::GatewayOptions::watch_lag_timeout

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::body::Bytes;

use futures::{StreamExt as _, stream::BoxStream};
use imagestreams_common::{
    error::ApiError,
    model::{ImageStream, ObjectMeta},
};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::selector::Selector;
use imagestreams_stream_store_api::{StreamReader, WatchEvent};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::streams::Streams;

/// Watches ended because their client read too slowly
/// (`imagestreams_gateway_watch_lagged_total`): one count for the process,
/// registered by every gateway in it.
static LAGGED_TOTAL: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// How many watches were ended because their client lagged, since start.
pub fn lagged_total() -> u64 {
    LAGGED_TOTAL.get()
}

/// Counts a watch ended because its client lagged.
pub(crate) fn count_lagged() {
    LAGGED_TOTAL.inc();
}

/// Registers `imagestreams_gateway_watch_lagged_total` in `service`.
pub(crate) fn register_metrics(service: &imagestreams_common::metrics::ServiceMetrics) {
    service.register(
        "watch_lagged",
        "Watches ended because their client read too slowly to keep up with the changes",
        LAGGED_TOTAL.clone(),
    );
}

/// The response stream of a watch.
pub type EventStream = BoxStream<'static, Result<proto::WatchEvent, tonic::Status>>;

/// A change on its way to a watcher: the domain event, which the filters
/// read, and, for a change of the shared feed, its gRPC form encoded once
/// for every watcher, and its JSON object encoded once by the first HTTP
/// watcher that sends it (cloning it copies three references).
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    event: Arc<WatchEvent>,
    wire: Option<proto::WatchEvent>,
    json: Arc<OnceLock<Bytes>>,
}

impl Outgoing {
    /// A change of one watch's own changefeed, converted when it is sent.
    pub(crate) fn own(event: WatchEvent) -> Self {
        Outgoing {
            event: Arc::new(event),
            wire: None,
            json: Arc::default(),
        }
    }

    /// A change of the shared feed, encoded now, once.
    pub(crate) fn shared(event: WatchEvent) -> Self {
        let wire = proto::WatchEvent::shared(wire_type(&event), event.object().clone().into());
        Outgoing {
            event: Arc::new(event),
            wire: Some(wire),
            json: Arc::default(),
        }
    }

    pub(crate) fn event(&self) -> &WatchEvent {
        &self.event
    }

    /// The object's JSON: `encode`d by the first caller, shared by every
    /// watcher of this change after it.
    pub(crate) fn object_json(&self, encode: impl FnOnce(&ImageStream) -> Bytes) -> Bytes {
        self.json
            .get_or_init(|| encode(self.event.object()))
            .clone()
    }

    /// The change told as `kind` (a selector's `ADDED` or `DELETED`); one
    /// already of that kind keeps its encoding.
    fn told_as(self, kind: proto::WatchEventType) -> Self {
        if wire_type(&self.event) == kind {
            return self;
        }
        let object = Arc::unwrap_or_clone(self.event).into_object();
        Outgoing::own(match kind {
            proto::WatchEventType::Added => WatchEvent::Added(object),
            proto::WatchEventType::Deleted => WatchEvent::Deleted(object),
            _ => WatchEvent::Modified(object),
        })
    }

    fn into_wire(self) -> proto::WatchEvent {
        match self.wire {
            Some(wire) => wire,
            None => to_wire(Arc::unwrap_or_clone(self.event)),
        }
    }
}

/// The changes a watch passes on, in order.
pub(crate) type OutgoingStream = BoxStream<'static, Result<Outgoing, ApiError>>;

/// What a watch asks for, parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchParams {
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// One stream of the namespace, or all.
    pub name: Option<String>,
    /// Resume after this revision; `None` sends the current state first.
    pub from: Option<u64>,
    /// Only matching streams.
    pub selector: Selector,
}

/// Opens the changefeed (so that `OUT_OF_RANGE` and `UNAVAILABLE` come back
/// as the call's status) and returns the gRPC response stream.
pub(crate) async fn start(streams: &Streams, params: WatchParams) -> Result<EventStream, ApiError> {
    let changes = changes(streams, params).await?;
    Ok(changes
        .map(|change| change.map(Outgoing::into_wire).map_err(tonic::Status::from))
        .boxed())
}

/// The changes a watch sends, for any front end to encode: opens the
/// changefeed (so that `Gone` and `Unavailable` come back as the call's
/// error); a resumed watch's producer is spawned. The stream ends after its
/// first error.
pub(crate) async fn changes(
    streams: &Streams,
    params: WatchParams,
) -> Result<OutgoingStream, ApiError> {
    let filter = Filter::new(params.selector);
    let Some(from) = params.from else {
        let source = streams
            .feed
            .watch(params.namespace.clone(), params.name.clone())
            .await?;
        let source = only_namespace(source, params.namespace);
        return Ok(fresh(source, filter, streams.shutdown.clone()));
    };
    let source = streams
        .reader
        .watch(
            params.namespace.as_deref(),
            params.name.as_deref(),
            Some(from),
        )
        .await?
        .map(|event| event.map(Outgoing::own))
        .boxed();
    let source = only_namespace(source, params.namespace);
    let (producer, rx) = Producer::new(
        filter,
        streams.reader.clone(),
        streams.options.watch_buffer,
        streams.options.watch_lag_timeout,
    );
    streams
        .tasks
        .spawn(producer.run(source, streams.shutdown.clone()));
    Ok(ReceiverStream::new(rx).boxed())
}

/// A fresh watch's response stream: the feed's changes through `filter`,
/// ending after the first error, or with `UNAVAILABLE` when the feed ends
/// (the gateway shutting down, or its NATS connection lost).
fn fresh(
    source: OutgoingStream,
    mut filter: Filter,
    shutdown: CancellationToken,
) -> OutgoingStream {
    let end = futures::stream::once(async move {
        Err(if shutdown.is_cancelled() {
            shutting_down()
        } else {
            feed_ended()
        })
    });
    source
        .chain(end)
        .scan(false, move |ended, item| {
            let next = match item {
                _ if *ended => None,
                Ok(outgoing) => Some(filter.fresh(outgoing).map(Ok)),
                Err(error) => {
                    *ended = true;
                    Some(Some(Err(error)))
                }
            };
            std::future::ready(next)
        })
        .filter_map(std::future::ready)
        .boxed()
}

/// Drops every event outside `namespace` (when one is given): a second
/// line of defence behind the changefeed's own key filter.
fn only_namespace(source: OutgoingStream, namespace: Option<String>) -> OutgoingStream {
    match namespace {
        None => source,
        Some(namespace) => source
            .filter(move |event| {
                let keep = match event {
                    Ok(event) => event.event().object().metadata.namespace == namespace,
                    Err(_) => true,
                };
                std::future::ready(keep)
            })
            .boxed(),
    }
}

/// Where a resumed selector watch looks up a stream's previous revision.
pub(crate) trait History: Send + Sync + 'static {
    /// The stream just before `revision`, if it existed then.
    fn previous(
        &self,
        namespace: &str,
        name: &str,
        revision: u64,
    ) -> impl Future<Output = Result<Option<ImageStream>, ApiError>> + Send;
}

impl History for StreamReader {
    fn previous(
        &self,
        namespace: &str,
        name: &str,
        revision: u64,
    ) -> impl Future<Output = Result<Option<ImageStream>, ApiError>> + Send {
        StreamReader::previous(self, namespace, name, revision)
    }
}

type Sender = mpsc::Sender<Result<Outgoing, ApiError>>;
type Receiver = mpsc::Receiver<Result<Outgoing, ApiError>>;

struct Producer<H> {
    filter: Filter,
    history: H,
    tx: Sender,
    lag_timeout: Duration,
    capacity: usize,
}

enum Sent {
    Ok,
    Closed,
    Lagged,
    Shutdown,
}

impl<H: History> Producer<H> {
    fn new(filter: Filter, history: H, capacity: usize, lag_timeout: Duration) -> (Self, Receiver) {
        let capacity = capacity.max(2);
        let (tx, rx) = mpsc::channel(capacity);
        let producer = Producer {
            filter,
            history,
            tx,
            lag_timeout,
            capacity,
        };
        (producer, rx)
    }

    async fn run(mut self, mut source: OutgoingStream, shutdown: CancellationToken) {
        let end = loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Some(shutting_down()),
                _ = self.tx.closed() => break None,
                next = source.next() => next,
            };
            let event = match next {
                Some(Ok(event)) => event,
                Some(Err(error)) => break Some(error),
                None => break Some(feed_ended()),
            };
            let event = match self.filter.resumed(event, &self.history).await {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(error) => break Some(error),
            };
            match self.send(event, &shutdown).await {
                Sent::Ok => {}
                Sent::Closed => break None,
                Sent::Shutdown => break Some(shutting_down()),
                Sent::Lagged => {
                    count_lagged();
                    tracing::warn!(
                        buffer = self.capacity,
                        lag_timeout = ?self.lag_timeout,
                        "watch client too slow, ending its watch"
                    );
                    break Some(ApiError::ResourceExhausted(format!(
                        "watch client too slow: {} events were left unread for {}s; \
                         watch again from the last resourceVersion received",
                        self.capacity - 1,
                        self.lag_timeout.as_secs_f64()
                    )));
                }
            }
        };
        if let Some(error) = end {
            // can't fail for lack of room: every send left a slot free
            let _ = self.tx.try_send(Err(error));
        }
    }

    /// Sends one event, waiting for room for it *and* a spare slot, so that
    /// a final error always fits.
    async fn send(&self, event: Outgoing, shutdown: &CancellationToken) -> Sent {
        let permits = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Sent::Shutdown,
            permits = tokio::time::timeout(self.lag_timeout, self.tx.reserve_many(2)) => permits,
        };
        match permits {
            Err(_) => Sent::Lagged,
            Ok(Err(_)) => Sent::Closed,
            Ok(Ok(mut permits)) => match permits.next() {
                Some(permit) => {
                    permit.send(Ok(event));
                    Sent::Ok
                }
                None => Sent::Closed,
            },
        }
    }
}

fn feed_ended() -> ApiError {
    ApiError::Unavailable(
        "the store's changefeed ended; watch again from the last resourceVersion received".into(),
    )
}

fn shutting_down() -> ApiError {
    ApiError::Unavailable(
        "the gateway is shutting down; watch again from the last resourceVersion received".into(),
    )
}

fn wire_type(event: &WatchEvent) -> proto::WatchEventType {
    match event {
        WatchEvent::Added(_) => proto::WatchEventType::Added,
        WatchEvent::Modified(_) => proto::WatchEventType::Modified,
        WatchEvent::Deleted(_) => proto::WatchEventType::Deleted,
    }
}

fn to_wire(event: WatchEvent) -> proto::WatchEvent {
    let kind = wire_type(&event);
    proto::WatchEvent::new(kind, event.into_object().into())
}

/// Label-selector filtering with Kubernetes' semantics: remembers, per
/// stream, whether the client was last told that it matches.
struct Filter {
    selector: Selector,
    visible: HashMap<(String, String), bool>,
}

impl Filter {
    fn new(selector: Selector) -> Self {
        Filter {
            selector,
            visible: HashMap::new(),
        }
    }

    /// For a fresh watch: a stream not seen yet is one the client does not
    /// have (its initial state came through here too).
    fn fresh(&mut self, outgoing: Outgoing) -> Option<Outgoing> {
        self.pass(outgoing, false)
    }

    /// For a resumed watch: the client may have a stream not seen yet, so
    /// its revision before this change is looked up in `history`.
    async fn resumed(
        &mut self,
        outgoing: Outgoing,
        history: &impl History,
    ) -> Result<Option<Outgoing>, ApiError> {
        let meta = &outgoing.event().object().metadata;
        let was = match self.selector.is_empty() || self.is_known(meta) {
            true => false,
            false => history
                .previous(&meta.namespace, &meta.name, outgoing.event().revision())
                .await?
                .is_some_and(|s| self.selector.matches(&s.metadata.labels)),
        };
        Ok(self.pass(outgoing, was))
    }

    fn is_known(&self, meta: &ObjectMeta) -> bool {
        // a tuple key of borrowed strings would need a second map type; a
        // miss here is once per stream, so the clone is fine
        self.visible
            .contains_key(&(meta.namespace.clone(), meta.name.clone()))
    }

    /// Passes the change on as the client must see it, given whether a
    /// stream the filter has not seen yet was visible to the client.
    fn pass(&mut self, outgoing: Outgoing, unseen_was: bool) -> Option<Outgoing> {
        if self.selector.is_empty() {
            return Some(outgoing);
        }
        let event = outgoing.event();
        let meta = &event.object().metadata;
        let key = (meta.namespace.clone(), meta.name.clone());
        let was = self.visible.get(&key).copied().unwrap_or(unseen_was);
        let is = match event {
            WatchEvent::Deleted(_) => false,
            WatchEvent::Added(s) | WatchEvent::Modified(s) => {
                self.selector.matches(&s.metadata.labels)
            }
        };
        self.visible.insert(key, is);
        match (was, is) {
            (false, false) => None,
            (true, false) => Some(outgoing.told_as(proto::WatchEventType::Deleted)),
            (false, true) => Some(outgoing.told_as(proto::WatchEventType::Added)),
            (true, true) => Some(outgoing),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures::stream;

    use super::*;

    /// Previous revisions by `(name, revision)`, for resumed watches.
    #[derive(Default)]
    struct FakeHistory(BTreeMap<String, ImageStream>);

    impl History for FakeHistory {
        fn previous(
            &self,
            _namespace: &str,
            name: &str,
            _revision: u64,
        ) -> impl Future<Output = Result<Option<ImageStream>, ApiError>> + Send {
            let found = self.0.get(name).cloned();
            async move { Ok(found) }
        }
    }

    #[tokio::test]
    async fn events_of_other_namespaces_never_pass() {
        let events = ["ns1/a", "ns10/b", "ns1/c", "ns2/d"].map(|key| {
            let (ns, name) = key.split_once('/').unwrap_or_default();
            Ok(Outgoing::own(WatchEvent::Added(ImageStream::new(ns, name))))
        });
        let source = || stream::iter(events.clone()).boxed();
        let names = |kept: Vec<Result<Outgoing, ApiError>>| -> Vec<String> {
            kept.into_iter()
                .map(|e| {
                    e.map(|e| e.event().object().metadata.name.clone())
                        .unwrap_or_default()
                })
                .collect()
        };
        let kept = only_namespace(source(), Some("ns1".into())).collect().await;
        assert_eq!(names(kept), ["a", "c"]);
        let all = only_namespace(source(), None).collect().await;
        assert_eq!(names(all), ["a", "b", "c", "d"]);
    }

    fn stream_at(name: &str, rv: u64, app: &str) -> ImageStream {
        let mut s = ImageStream::new("ns", name);
        s.metadata.resource_version = rv.to_string();
        if !app.is_empty() {
            s.metadata.labels.insert("app".into(), app.into());
        }
        s
    }

    fn kind(event: &Option<Outgoing>) -> &'static str {
        match event.as_ref().map(Outgoing::event) {
            None => "-",
            Some(WatchEvent::Added(_)) => "ADDED",
            Some(WatchEvent::Modified(_)) => "MODIFIED",
            Some(WatchEvent::Deleted(_)) => "DELETED",
        }
    }

    #[tokio::test]
    async fn selector_transitions_follow_kubernetes() {
        let selector = Selector::parse("app=web").unwrap();
        let mut filter = Filter::new(selector);
        let steps = [
            (WatchEvent::Added(stream_at("a", 1, "web")), "ADDED"),
            (WatchEvent::Modified(stream_at("a", 2, "web")), "MODIFIED"),
            (WatchEvent::Modified(stream_at("a", 3, "db")), "DELETED"),
            (WatchEvent::Modified(stream_at("a", 4, "db")), "-"),
            (WatchEvent::Modified(stream_at("a", 5, "web")), "ADDED"),
            (WatchEvent::Deleted(stream_at("a", 6, "")), "DELETED"),
            (WatchEvent::Added(stream_at("b", 7, "db")), "-"),
            (WatchEvent::Deleted(stream_at("b", 8, "")), "-"),
        ];
        for (i, (event, want)) in steps.into_iter().enumerate() {
            let got = filter.fresh(Outgoing::shared(event));
            assert_eq!(kind(&got), want, "step {i}");
        }
    }

    #[tokio::test]
    async fn what_a_selector_retells_is_sent_as_its_new_kind_and_the_rest_as_encoded_once() {
        use prost::Message as _;
        let mut filter = Filter::new(Selector::parse("app=web").unwrap());
        let sent = |outgoing: Option<Outgoing>| {
            let wire = outgoing.expect("passes").into_wire();
            proto::WatchEvent::decode(wire.encode_to_vec().as_slice()).unwrap()
        };
        // a MODIFIED that starts matching is ADDED for this watcher
        let first = sent(
            filter.fresh(Outgoing::shared(WatchEvent::Modified(stream_at(
                "a", 1, "web",
            )))),
        );
        assert_eq!(first.r#type(), proto::WatchEventType::Added);
        assert_eq!(first.object.unwrap().metadata.unwrap().name, "a");
        // a MODIFIED that still matches keeps the feed's encoding, byte for byte
        let change = Outgoing::shared(WatchEvent::Modified(stream_at("a", 2, "web")));
        let encoded = change.wire.clone().unwrap().encode_to_vec();
        let kept = filter.fresh(change).unwrap();
        assert!(kept.wire.is_some());
        assert_eq!(kept.into_wire().encode_to_vec(), encoded);
        assert_eq!(
            proto::WatchEvent::decode(encoded.as_slice()).unwrap(),
            to_wire(WatchEvent::Modified(stream_at("a", 2, "web")))
        );
    }

    #[tokio::test]
    async fn resumed_selector_watches_look_up_the_previous_revision() {
        let mut history = FakeHistory::default();
        history
            .0
            .insert("was-web".into(), stream_at("was-web", 1, "web"));
        history
            .0
            .insert("was-db".into(), stream_at("was-db", 1, "db"));
        let mut filter = Filter::new(Selector::parse("app=web").unwrap());
        for (event, want) in [
            (
                WatchEvent::Modified(stream_at("was-web", 10, "db")),
                "DELETED",
            ),
            (
                WatchEvent::Modified(stream_at("was-db", 11, "web")),
                "ADDED",
            ),
            (WatchEvent::Added(stream_at("new", 12, "web")), "ADDED"),
            (
                WatchEvent::Modified(stream_at("new", 13, "web")),
                "MODIFIED",
            ),
        ] {
            let got = filter.resumed(Outgoing::own(event), &history).await;
            assert_eq!(kind(&got.unwrap()), want);
        }
        let mut history = FakeHistory::default();
        history.0.insert("gone".into(), stream_at("gone", 1, "web"));
        let mut filter = Filter::new(Selector::parse("app=web").unwrap());
        let gone = Outgoing::own(WatchEvent::Deleted(stream_at("gone", 2, "")));
        let deleted = filter.resumed(gone, &history).await;
        assert_eq!(kind(&deleted.unwrap()), "DELETED");
    }

    fn events(n: u64) -> OutgoingStream {
        stream::iter(
            (1..=n).map(|rv| Ok(Outgoing::own(WatchEvent::Modified(stream_at("s", rv, ""))))),
        )
        .boxed()
    }

    fn no_filter() -> Filter {
        Filter::new(Selector::everything())
    }

    fn revision(change: &Outgoing) -> String {
        change.event().object().metadata.resource_version.clone()
    }

    fn revisions_then_status(
        items: Vec<Result<Outgoing, ApiError>>,
    ) -> (Vec<String>, Vec<tonic::Status>) {
        let mut revisions = Vec::new();
        let mut statuses = Vec::new();
        for item in items {
            match item {
                Ok(change) => revisions.push(revision(&change)),
                Err(error) => statuses.push(error.into()),
            }
        }
        (revisions, statuses)
    }

    #[tokio::test]
    async fn a_fresh_watch_ends_at_the_feeds_first_error() {
        let source = events(2)
            .chain(stream::iter([Err(ApiError::ResourceExhausted(
                "fell behind".into(),
            ))]))
            .chain(events(2))
            .boxed();
        let items = fresh(source, no_filter(), CancellationToken::new())
            .collect()
            .await;
        let (revisions, statuses) = revisions_then_status(items);
        assert_eq!(revisions, ["1", "2"]);
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0].code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn a_fresh_watch_whose_feed_ends_gets_unavailable_saying_why() {
        for (shutting_down, says) in [(true, "shutting down"), (false, "changefeed ended")] {
            let shutdown = CancellationToken::new();
            if shutting_down {
                shutdown.cancel();
            }
            let items = fresh(events(3), no_filter(), shutdown).collect().await;
            let (revisions, statuses) = revisions_then_status(items);
            assert_eq!(revisions, ["1", "2", "3"]);
            assert_eq!(statuses.len(), 1);
            assert_eq!(statuses[0].code(), tonic::Code::Unavailable);
            assert!(
                statuses[0].message().contains(says),
                "{}",
                statuses[0].message()
            );
        }
    }

    #[tokio::test]
    async fn a_lagging_client_gets_every_queued_event_then_resource_exhausted() {
        let before = lagged_total();
        let (producer, mut rx) = Producer::new(
            no_filter(),
            FakeHistory::default(),
            3,
            Duration::from_millis(50),
        );
        producer.run(events(10), CancellationToken::new()).await;
        let mut revisions = Vec::new();
        let status = loop {
            match rx.recv().await {
                Some(Ok(change)) => revisions.push(revision(&change)),
                Some(Err(error)) => break tonic::Status::from(error),
                None => panic!("ended without an error after {revisions:?}"),
            }
        };
        assert_eq!(revisions, ["1", "2"]);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("too slow"),
            "{}",
            status.message()
        );
        assert!(rx.recv().await.is_none());
        assert!(lagged_total() > before);
    }

    #[tokio::test]
    async fn a_reading_client_gets_everything_in_order() {
        let (producer, mut rx) = Producer::new(
            no_filter(),
            FakeHistory::default(),
            4,
            Duration::from_secs(5),
        );
        let task = tokio::spawn(producer.run(events(100), CancellationToken::new()));
        let mut expected = 1;
        while let Some(item) = rx.recv().await {
            match item {
                Ok(change) => {
                    assert_eq!(revision(&change), expected.to_string());
                    expected += 1;
                }
                // the fake changefeed ends after 100 events
                Err(error) => {
                    assert_eq!(tonic::Status::from(error).code(), tonic::Code::Unavailable);
                    break;
                }
            }
        }
        assert_eq!(expected, 101);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_ends_the_watch_with_unavailable_and_a_gone_client_ends_it_quietly() {
        let token = CancellationToken::new();
        let (producer, mut rx) = Producer::new(
            no_filter(),
            FakeHistory::default(),
            8,
            Duration::from_secs(5),
        );
        let task = tokio::spawn(producer.run(stream::pending().boxed(), token.clone()));
        token.cancel();
        task.await.unwrap();
        let status = tonic::Status::from(rx.recv().await.unwrap().unwrap_err());
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("shutting down"));

        let (producer, rx) = Producer::new(
            no_filter(),
            FakeHistory::default(),
            8,
            Duration::from_secs(5),
        );
        drop(rx);
        tokio::time::timeout(
            Duration::from_secs(5),
            producer.run(stream::pending().boxed(), CancellationToken::new()),
        )
        .await
        .expect("the producer notices the client left");
    }
}
