//! Watch: a spawned producer reads the store's changefeed, filters it by
//! label selector and feeds a bounded channel whose receiver is the response
//! stream.
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
//! - **Lag.** The producer always keeps one slot of the channel free. When
//!   the client leaves the channel full for [`GatewayOptions::watch_lag_timeout`],
//!   the free slot carries a `RESOURCE_EXHAUSTED` error after the events
//!   already queued and the watch ends: the client sees every event up to the
//!   error and resumes from the last one, never a silent gap.
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
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use futures::StreamExt as _;
use imagestreams_common::{
    error::ApiError,
    model::ImageStream,
    selector::Selector,
    store::{StreamReader, WatchEvent, WatchStream},
};
use imagestreams_proto::v1 as proto;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::streams::Streams;

/// Watches ended because their client read too slowly
/// (`imagestreams_gateway_watch_lagged_total`).
static LAGGED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// How many watches were ended because their client lagged, since start.
pub fn lagged_total() -> u64 {
    LAGGED_TOTAL.load(Ordering::Relaxed)
}

/// The response stream of a watch.
pub type EventStream = ReceiverStream<Result<proto::WatchEvent, tonic::Status>>;

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
/// as the call's status) and spawns its producer.
pub(crate) async fn start(streams: &Streams, params: WatchParams) -> Result<EventStream, ApiError> {
    let source = match params.from {
        // fresh watches share one feed (see `fanout`)
        None => {
            streams
                .feed
                .watch(params.namespace.clone(), params.name.clone())
                .await?
        }
        Some(_) => {
            streams
                .reader
                .watch(
                    params.namespace.as_deref(),
                    params.name.as_deref(),
                    params.from,
                )
                .await?
        }
    };
    let source = only_namespace(source, params.namespace.clone());
    let (producer, rx) = Producer::new(
        Filter::new(
            params.selector,
            params.from.is_some(),
            streams.reader.clone(),
        ),
        streams.options.watch_buffer,
        streams.options.watch_lag_timeout,
    );
    streams
        .tasks
        .spawn(producer.run(source, streams.shutdown.clone()));
    Ok(ReceiverStream::new(rx))
}

/// Drops every event outside `namespace` (when one is given): a second
/// line of defence behind the changefeed's own key filter.
fn only_namespace(source: WatchStream, namespace: Option<String>) -> WatchStream {
    match namespace {
        None => source,
        Some(namespace) => source
            .filter(move |event| {
                let keep = match event {
                    Ok(event) => event.object().metadata.namespace == namespace,
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

type Sender = mpsc::Sender<Result<proto::WatchEvent, tonic::Status>>;
type Receiver = mpsc::Receiver<Result<proto::WatchEvent, tonic::Status>>;

struct Producer<H> {
    filter: Filter<H>,
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
    fn new(filter: Filter<H>, capacity: usize, lag_timeout: Duration) -> (Self, Receiver) {
        let capacity = capacity.max(2);
        let (tx, rx) = mpsc::channel(capacity);
        let producer = Producer {
            filter,
            tx,
            lag_timeout,
            capacity,
        };
        (producer, rx)
    }

    async fn run(mut self, mut source: WatchStream, shutdown: CancellationToken) {
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
                None => {
                    break Some(ApiError::Unavailable(
                        "the store's changefeed ended; watch again from the last resourceVersion received".into(),
                    ));
                }
            };
            let event = match self.filter.apply(event).await {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(error) => break Some(error),
            };
            match self.send(to_wire(event), &shutdown).await {
                Sent::Ok => {}
                Sent::Closed => break None,
                Sent::Shutdown => break Some(shutting_down()),
                Sent::Lagged => {
                    LAGGED_TOTAL.fetch_add(1, Ordering::Relaxed);
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
            let _ = self.tx.try_send(Err(error.into()));
        }
    }

    /// Sends one event, waiting for room for it *and* a spare slot, so that
    /// a final error always fits.
    async fn send(&self, event: proto::WatchEvent, shutdown: &CancellationToken) -> Sent {
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

fn shutting_down() -> ApiError {
    ApiError::Unavailable(
        "the gateway is shutting down; watch again from the last resourceVersion received".into(),
    )
}

fn to_wire(event: WatchEvent) -> proto::WatchEvent {
    use proto::WatchEventType as T;
    let (kind, object) = match event {
        WatchEvent::Added(s) => (T::Added, s),
        WatchEvent::Modified(s) => (T::Modified, s),
        WatchEvent::Deleted(s) => (T::Deleted, s),
    };
    proto::WatchEvent {
        r#type: kind as i32,
        object: Some(object.into()),
    }
}

/// Label-selector filtering with Kubernetes' semantics: remembers, per
/// stream, whether the client was last told that it matches.
struct Filter<H> {
    selector: Selector,
    /// Whether streams not seen yet may be known to the client (a resumed
    /// watch), so that their previous revision must be looked up.
    resumed: bool,
    history: H,
    visible: HashMap<(String, String), bool>,
}

impl<H: History> Filter<H> {
    fn new(selector: Selector, resumed: bool, history: H) -> Self {
        Filter {
            selector,
            resumed,
            history,
            visible: HashMap::new(),
        }
    }

    async fn apply(&mut self, event: WatchEvent) -> Result<Option<WatchEvent>, ApiError> {
        if self.selector.is_empty() {
            return Ok(Some(event));
        }
        let meta = &event.object().metadata;
        let key = (meta.namespace.clone(), meta.name.clone());
        let was = match self.visible.get(&key) {
            Some(&was) => was,
            None if self.resumed => self
                .history
                .previous(&key.0, &key.1, event.revision())
                .await?
                .is_some_and(|s| self.selector.matches(&s.metadata.labels)),
            None => false,
        };
        let is = match &event {
            WatchEvent::Deleted(_) => false,
            WatchEvent::Added(s) | WatchEvent::Modified(s) => {
                self.selector.matches(&s.metadata.labels)
            }
        };
        self.visible.insert(key, is);
        Ok(match (was, is) {
            (false, false) => None,
            (true, false) => Some(WatchEvent::Deleted(event.into_object())),
            (false, true) => Some(WatchEvent::Added(event.into_object())),
            (true, true) => Some(event),
        })
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
            Ok(WatchEvent::Added(ImageStream::new(ns, name)))
        });
        let source = || stream::iter(events.clone()).boxed();
        let names = |kept: Vec<Result<WatchEvent, ApiError>>| -> Vec<String> {
            kept.into_iter()
                .map(|e| {
                    e.map(|e| e.object().metadata.name.clone())
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

    fn kind(event: &Option<WatchEvent>) -> &'static str {
        match event {
            None => "-",
            Some(WatchEvent::Added(_)) => "ADDED",
            Some(WatchEvent::Modified(_)) => "MODIFIED",
            Some(WatchEvent::Deleted(_)) => "DELETED",
        }
    }

    #[tokio::test]
    async fn selector_transitions_follow_kubernetes() {
        let selector = Selector::parse("app=web").unwrap();
        let mut filter = Filter::new(selector, false, FakeHistory::default());
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
            let got = filter.apply(event).await.unwrap();
            assert_eq!(kind(&got), want, "step {i}");
        }
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
        let mut filter = Filter::new(Selector::parse("app=web").unwrap(), true, history);
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
            assert_eq!(kind(&filter.apply(event).await.unwrap()), want);
        }
        let mut history = FakeHistory::default();
        history.0.insert("gone".into(), stream_at("gone", 1, "web"));
        let mut filter = Filter::new(Selector::parse("app=web").unwrap(), true, history);
        let deleted = filter
            .apply(WatchEvent::Deleted(stream_at("gone", 2, "")))
            .await;
        assert_eq!(kind(&deleted.unwrap()), "DELETED");
    }

    fn events(n: u64) -> WatchStream {
        stream::iter((1..=n).map(|rv| Ok(WatchEvent::Modified(stream_at("s", rv, ""))))).boxed()
    }

    fn no_filter() -> Filter<FakeHistory> {
        Filter::new(Selector::everything(), false, FakeHistory::default())
    }

    #[tokio::test]
    async fn a_lagging_client_gets_every_queued_event_then_resource_exhausted() {
        let before = lagged_total();
        let (producer, mut rx) = Producer::new(no_filter(), 3, Duration::from_millis(50));
        producer.run(events(10), CancellationToken::new()).await;
        let mut revisions = Vec::new();
        let status = loop {
            match rx.recv().await {
                Some(Ok(event)) => {
                    revisions.push(event.object.unwrap().metadata.unwrap().resource_version)
                }
                Some(Err(status)) => break status,
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
        let (producer, mut rx) = Producer::new(no_filter(), 4, Duration::from_secs(5));
        let task = tokio::spawn(producer.run(events(100), CancellationToken::new()));
        let mut expected = 1;
        while let Some(item) = rx.recv().await {
            match item {
                Ok(event) => {
                    assert_eq!(
                        event.object.unwrap().metadata.unwrap().resource_version,
                        expected.to_string()
                    );
                    expected += 1;
                }
                // the fake changefeed ends after 100 events
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::Unavailable);
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
        let (producer, mut rx) = Producer::new(no_filter(), 8, Duration::from_secs(5));
        let task = tokio::spawn(producer.run(stream::pending().boxed(), token.clone()));
        token.cancel();
        task.await.unwrap();
        let status = rx.recv().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("shutting down"));

        let (producer, rx) = Producer::new(no_filter(), 8, Duration::from_secs(5));
        drop(rx);
        tokio::time::timeout(
            Duration::from_secs(5),
            producer.run(stream::pending().boxed(), CancellationToken::new()),
        )
        .await
        .expect("the producer notices the client left");
    }
}
