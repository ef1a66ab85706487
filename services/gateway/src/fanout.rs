//! The shared feed of fresh watches: one KV watch per gateway, however many
//! clients watch.
//!
//! A watch without a resourceVersion subscribes to the feed *first*, then
//! reads the initial state (a snapshot at revision `R`, its consumer deleted
//! right after), then passes on the feed's events after `R` that match its
//! namespace and name. Every change after the subscription reaches the
//! receiver, and every change up to `R` is in the snapshot, so nothing is
//! missed and nothing repeats. A watch that resumes from a resourceVersion
//! keeps its own KV watch (it must replay history), as before.
//!
//! The feed starts with the first watch and restarts with the first watch
//! after it ended (the NATS connection lost, say); its watchers end with
//! `UNAVAILABLE` and resume from their last resourceVersion. A watcher that
//! falls [`DEFAULT_FEED_CAPACITY`] events behind the feed ends with
//! `RESOURCE_EXHAUSTED`, like a client that reads too slowly.

use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use imagestreams_common::error::ApiError;
use imagestreams_stream_store_api::{StreamReader, WatchStream};
use tokio::sync::{Semaphore, broadcast};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};
use tokio_util::sync::CancellationToken;

use crate::watch::{Outgoing, OutgoingStream};

/// Events the feed keeps for its slowest watcher.
pub const DEFAULT_FEED_CAPACITY: usize = 4096;
/// Initial-state snapshots read at once (each holds a consumer while it runs).
pub const DEFAULT_SNAPSHOTS_AT_ONCE: usize = 16;

/// The shared feed; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Feed {
    reader: StreamReader,
    sender: Arc<Mutex<Option<broadcast::Sender<Outgoing>>>>,
    snapshots: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl Feed {
    /// A feed over `reader`'s bucket, ended by `shutdown`.
    pub fn new(reader: StreamReader, shutdown: CancellationToken) -> Self {
        Feed {
            reader,
            sender: Arc::default(),
            snapshots: Arc::new(Semaphore::new(DEFAULT_SNAPSHOTS_AT_ONCE)),
            shutdown,
        }
    }

    /// A receiver of every change from now on, starting the feed if it is
    /// not running.
    async fn subscribe(&self) -> Result<broadcast::Receiver<Outgoing>, ApiError> {
        if let Some(sender) = self.running() {
            return Ok(sender.subscribe());
        }
        // two first watchers may both start a feed: the second one wins the
        // slot and the first one's feed ends with its last receiver
        let source = self.reader.feed().await?;
        let (sender, receiver) = broadcast::channel(DEFAULT_FEED_CAPACITY);
        *self.slot() = Some(sender.clone());
        tokio::spawn(run(
            source,
            sender,
            self.sender.clone(),
            self.shutdown.clone(),
        ));
        Ok(receiver)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<broadcast::Sender<Outgoing>>> {
        self.sender.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self) -> Option<broadcast::Sender<Outgoing>> {
        self.slot().clone()
    }

    /// A watch without revision of `namespace` (all when `None`) and `name`:
    /// the initial state as `ADDED`, then the feed's changes after it.
    pub async fn watch(
        &self,
        namespace: Option<String>,
        name: Option<String>,
    ) -> Result<OutgoingStream, ApiError> {
        let receiver = self.subscribe().await?;
        let (initial, revision) = {
            let _permit = self.snapshots.acquire().await.map_err(|_| closing())?;
            self.reader
                .initial(namespace.as_deref(), name.as_deref())
                .await?
        };
        let live = BroadcastStream::new(receiver).filter_map(move |next| {
            let event = match next {
                Ok(outgoing) => {
                    let event = outgoing.event();
                    let object = &event.object().metadata;
                    let wanted = event.revision() > revision
                        && namespace.as_ref().is_none_or(|n| *n == object.namespace)
                        && name.as_ref().is_none_or(|n| *n == object.name);
                    wanted.then_some(Ok(outgoing))
                }
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    crate::watch::count_lagged();
                    Some(Err(ApiError::ResourceExhausted(format!(
                        "watch fell {missed} events behind the gateway's feed; \
                         watch again from the last resourceVersion received"
                    ))))
                }
            };
            std::future::ready(event)
        });
        Ok(
            futures::stream::iter(initial.into_iter().map(|e| Ok(Outgoing::own(e))))
                .chain(live)
                .boxed(),
        )
    }
}

fn closing() -> ApiError {
    ApiError::Unavailable("the gateway is shutting down".into())
}

/// Passes the bucket's changes to the feed's receivers until the source or
/// `shutdown` ends it, then clears the slot so that the next watch starts a
/// new feed.
async fn run(
    mut source: WatchStream,
    sender: broadcast::Sender<Outgoing>,
    slot: Arc<Mutex<Option<broadcast::Sender<Outgoing>>>>,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = source.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                // no receiver is fine: a watch may subscribe any moment
                // encoded here, once, for every watcher
                let _ = sender.send(Outgoing::shared(event));
            }
            Some(Err(error)) => {
                tracing::warn!(
                    error = imagestreams_common::error::chain(&error),
                    "the watch feed failed; its watchers resume"
                );
                break;
            }
            None => break,
        }
        if sender.receiver_count() == 0 && !is_current(&slot, &sender) {
            // a newer feed took over and this one has nobody left
            return;
        }
    }
    let mut current = slot.lock().unwrap_or_else(|e| e.into_inner());
    if current.as_ref().is_some_and(|s| s.same_channel(&sender)) {
        *current = None;
    }
}

fn is_current(
    slot: &Mutex<Option<broadcast::Sender<Outgoing>>>,
    sender: &broadcast::Sender<Outgoing>,
) -> bool {
    slot.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|s| s.same_channel(sender))
}
