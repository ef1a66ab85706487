//! A read cache of the streams bucket: every stream's stored value in
//! memory, kept current by one KV watch, and read *consistently*, the way
//! Kubernetes reads from its watch cache (KEP-2340, "consistent reads from
//! cache"):
//!
//! 1. a read learns the bucket's last revision from the server, by a check
//!    that begins after the read did;
//! 2. it waits until the cache has applied that revision;
//! 3. it answers from memory.
//!
//! So a Get or List that begins after a write completed sees that write, as
//! a direct read would. The check is one round trip, but every read waiting
//! at the same time shares it (a check is sent only once the reads that are
//! ready to run have had their turn, so that they can join it), and a List
//! page costs the page, not the namespace. While the cache is (re)loading,
//! reads go to the bucket directly.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt as _;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Assembly, Freshness, ListPage, ListQuery, StreamReader, page_of, unavailable};
use imagestreams_common::{error::ApiError, metrics::ServiceMetrics, model::ImageStream, subjects};

/// How long a read waits for the cache to apply a revision before it reads
/// the bucket directly.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(2);
/// How long the cache waits before it reloads after its watch failed.
pub const DEFAULT_RELOAD_DELAY: Duration = Duration::from_millis(500);

/// The cache; cheap to clone. Built by [`Mirror::start`].
#[derive(Clone, Debug)]
pub struct Mirror {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    reader: StreamReader,
    state: RwLock<State>,
    /// The last revision applied to `state`.
    applied: watch::Sender<u64>,
    /// Whether `state` follows the bucket (false while loading).
    live: AtomicBool,
    checks: Mutex<Checks>,
    /// The outcome of the last finished check.
    checked: watch::Sender<Checked>,
    /// Gets and lists answered, by where from.
    reads: Family<SourceLabels, Counter>,
    /// 1 while `live`.
    live_gauge: Gauge,
    /// Checks begun: the round trips that latest-state reads shared.
    checks_total: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    /// `cache` or `bucket`.
    source: &'static str,
}

/// Every stream as stored, by `(namespace, name)`.
#[derive(Debug, Default)]
struct State {
    streams: Assembly,
}

#[derive(Debug, Default)]
struct Checks {
    /// The id of the last check begun.
    started: u64,
    /// Whether that check is still running.
    running: bool,
    /// Whether that check's request has gone out: until then, a read that
    /// begins may still join it.
    sent: bool,
}

#[derive(Debug, Clone)]
struct Checked {
    id: u64,
    revision: Result<u64, String>,
}

impl Default for Checked {
    fn default() -> Self {
        Checked {
            id: 0,
            revision: Ok(0),
        }
    }
}

impl Mirror {
    /// Starts following `reader`'s bucket until `shutdown`.
    pub fn start(reader: StreamReader, shutdown: CancellationToken) -> Self {
        let inner = Arc::new(Inner {
            reader,
            state: RwLock::default(),
            applied: watch::Sender::new(0),
            live: AtomicBool::new(false),
            checks: Mutex::default(),
            checked: watch::Sender::new(Checked::default()),
            reads: Family::default(),
            live_gauge: Gauge::default(),
            checks_total: Counter::default(),
        });
        tokio::spawn(follow(inner.clone(), shutdown));
        Mirror { inner }
    }

    /// Whether reads are served from memory (the cache is loaded and its
    /// watch runs).
    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Registers `read_cache_reads_total{source="cache"|"bucket"}`,
    /// `read_cache_live` and `read_cache_checks_total` in `service`.
    pub fn register(&self, service: &ServiceMetrics) {
        service.register(
            "read_cache_reads",
            "Gets and lists answered from the read cache or, while it loads, the bucket",
            self.inner.reads.clone(),
        );
        service.register(
            "read_cache_live",
            "1 when the read cache follows the bucket, 0 while it loads",
            self.inner.live_gauge.clone(),
        );
        service.register(
            "read_cache_checks",
            "Round trips to the server that reads of the latest state made to learn its last revision, each shared by every read waiting at the time",
            self.inner.checks_total.clone(),
        );
    }

    /// One stream, as current as `freshness` asks (with
    /// [`Freshness::Latest`], as current as a direct read).
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
        freshness: Freshness,
    ) -> Result<ImageStream, ApiError> {
        if !self.inner.caught_up(freshness).await? {
            self.inner.count("bucket");
            return self.inner.reader.get(namespace, name).await;
        }
        self.inner.count("cache");
        let found = self
            .inner
            .state()
            .streams
            .entries
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        match found {
            Some(entry) => Ok(entry.decode_stream()?.0),
            None => Err(ApiError::stream_not_found(namespace, name)),
        }
    }

    /// One page of streams (see [`StreamReader::list_page`]), as current as
    /// `freshness` asks; its revision is the cache's when it was read.
    pub async fn list_page(
        &self,
        query: ListQuery<'_>,
        freshness: Freshness,
    ) -> Result<ListPage, ApiError> {
        if !self.inner.caught_up(freshness).await? {
            self.inner.count("bucket");
            return self.inner.reader.list_page(query).await;
        }
        self.inner.count("cache");
        let state = self.inner.state();
        // read under the lock that the watch takes to apply, so the page is
        // the state at exactly this revision
        let revision = *self.inner.applied.borrow();
        page_of(&state.streams.entries, revision, &query)
    }
}

impl Inner {
    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, source: &'static str) {
        self.reads.get_or_create(&SourceLabels { source }).inc();
    }

    fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
        self.live_gauge.set(i64::from(live));
    }

    fn checks(&self) -> MutexGuard<'_, Checks> {
        self.checks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the cache is as current as `freshness` asks (for
    /// [`Freshness::Latest`], until it holds every write the bucket had when
    /// this call began): `false` when it is not live or does not catch up in
    /// time, so that the caller reads the bucket instead, which is newer.
    async fn caught_up(self: &Arc<Self>, freshness: Freshness) -> Result<bool, ApiError> {
        if !self.live.load(Ordering::Acquire) {
            return Ok(false);
        }
        let revision = match freshness {
            Freshness::Any => return Ok(true),
            Freshness::Latest => self.current_revision().await?,
            Freshness::NotOlderThan(wanted) if wanted <= *self.applied.borrow() => return Ok(true),
            Freshness::NotOlderThan(wanted) => {
                let last = self.current_revision().await?;
                if wanted > last {
                    return Err(ApiError::invalid(
                        "resourceVersion",
                        format!(
                            "resourceVersion {wanted} is newer than the store's current one ({last})"
                        ),
                    ));
                }
                wanted
            }
        };
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(
            DEFAULT_CATCH_UP,
            applied.wait_for(|applied| *applied >= revision),
        )
        .await;
        Ok(matches!(reached, Ok(Ok(_))) && self.live.load(Ordering::Acquire))
    }

    /// The bucket's last revision, from a check that began after this call
    /// did. Calls that wait at the same time share one check.
    async fn current_revision(self: &Arc<Self>) -> Result<u64, ApiError> {
        let mut checked = self.checked.subscribe();
        let ticket = {
            let mut checks = self.checks();
            if checks.running && !checks.sent {
                // not asked yet: it begins after this call did
                checks.started
            } else if checks.running {
                // the running check may have been answered before this call
                // began: wait for the next one
                checks.started + 1
            } else {
                self.begin_check(&mut checks)
            }
        };
        loop {
            if checked.changed().await.is_err() {
                return Err(unavailable("the read cache is closing"));
            }
            let last = checked.borrow_and_update().clone();
            if last.id >= ticket {
                return last.revision.map_err(unavailable);
            }
            // the check before ours ended: begin ours unless another waiter did
            let mut checks = self.checks();
            if !checks.running {
                self.begin_check(&mut checks);
            }
        }
    }

    /// Begins the next check in a task of its own, so that a caller that
    /// goes away cannot leave it unfinished.
    fn begin_check(self: &Arc<Self>, checks: &mut Checks) -> u64 {
        self.checks_total.inc();
        checks.started += 1;
        checks.running = true;
        checks.sent = false;
        let id = checks.started;
        let inner = self.clone();
        tokio::spawn(async move {
            // let the reads that are ready to run begin first, and share it
            tokio::task::yield_now().await;
            inner.checks().sent = true;
            let revision = inner
                .reader
                .last_revision()
                .await
                .map_err(|e| e.to_string());
            inner.checks().running = false;
            inner.checked.send_replace(Checked { id, revision });
        });
        id
    }

    /// Loads the bucket and applies its changes, again after every failure,
    /// until `shutdown`.
    async fn load_and_apply(&self, shutdown: &CancellationToken) -> Result<(), ApiError> {
        let snapshot = self.reader.snapshot(&[">".to_owned()]).await?;
        let mut changes = self
            .reader
            .kv
            .watch_all_from_revision(snapshot.revision + 1)
            .await
            .map_err(unavailable)?;
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.streams = Assembly::with_entries(
                snapshot
                    .entries
                    .into_iter()
                    .map(|(key, entry)| (key, entry.detached()))
                    .collect(),
            );
            self.applied.send_replace(snapshot.revision);
        }
        self.set_live(true);
        tracing::debug!(revision = snapshot.revision, "read cache loaded");
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = changes.next() => next,
            };
            let entry = match next {
                Some(Ok(entry)) => entry,
                Some(Err(error)) => return Err(unavailable(error)),
                None => return Err(unavailable("the bucket's watch ended")),
            };
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            if let Some(key) = subjects::parse_bucket_key(&entry.key) {
                // a value of its own, not a window on a network buffer
                let value = (entry.operation == kv::Operation::Put)
                    .then(|| Bytes::copy_from_slice(&entry.value));
                state.streams.apply(key, value, entry.revision);
            }
            self.applied.send_replace(entry.revision);
        }
    }
}

/// Keeps the cache following the bucket until `shutdown`.
async fn follow(inner: Arc<Inner>, shutdown: CancellationToken) {
    loop {
        let result = inner.load_and_apply(&shutdown).await;
        inner.set_live(false);
        match result {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(
                    error = imagestreams_common::error::chain(&error),
                    "the read cache lost the bucket; reads go to the bucket until it reloads"
                );
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(DEFAULT_RELOAD_DELAY) => {}
        }
    }
}
