//! Keeps the writers within reach of the changefeed.
//!
//! The bucket keeps 64 revisions per stream. A revision the changefeed has
//! not read when 64 newer writes of the same stream have landed is dropped,
//! and its `TagsChanged` with it. A burst (a backlog of `ImagePushed` for one
//! stream after a restart, say) can outrun the changefeed, so every write is
//! admitted only while the changefeed is fewer than [`DEFAULT_MAX_LAG`]
//! bucket messages behind in total (which bounds every stream's lag).
//!
//! The lag is `head - floor`: `head` the highest revision this process wrote,
//! `floor` the changefeed consumer's ack floor as the server last reported
//! it (`consumer_info`'s `ack_floor.stream_sequence`: every message up to it
//! is acked, by whichever replica). Nothing else raises `floor`: a replica's
//! own acks say nothing of a message another replica holds unacked (one that
//! was killed, say), and that message is what the floor must wait for. The
//! local changefeed's acks only wake the waiting writers
//! ([`LagGuard::acked`]) to ask the server again.
//!
//! While this process's writes are ahead of the floor, a background task
//! reads it every 5 ms, so a writer under steady load finds it current
//! and is admitted without a round trip. When the lag looks too high, a
//! writer asks the server for the ack floor
//! and waits until the lag is low again, asking again after each local ack
//! and every 20 ms, up to [`DEFAULT_ADMIT_TIMEOUT`]. Concurrent writers
//! share one request: one asks, the others wait for its answer.
//!
//! A message held by a replica that died is redelivered after the consumer's
//! ack wait ([`changefeed::DEFAULT_ACK_WAIT`](crate::changefeed::DEFAULT_ACK_WAIT),
//! shorter than [`DEFAULT_ADMIT_TIMEOUT`]), so the writers of the other
//! replicas are held that long, not failed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::stream::Stream;
use tokio::{
    sync::{Mutex, Notify},
    time::Instant,
};

use crate::changefeed::CONSUMER_NAME;

/// How many bucket messages the changefeed may be behind before writers wait.
/// Half the bucket's history, leaving room for writes admitted at once.
pub const DEFAULT_MAX_LAG: u64 = 32;
/// How long a writer waits for the changefeed before giving up.
pub const DEFAULT_ADMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the server is asked while waiting, local acks or not.
const POLL: Duration = Duration::from_millis(20);
/// How often the floor is read in the background while this process's
/// writes are ahead of it, so that a writer seldom waits for the answer.
const FOLLOW_EVERY: Duration = Duration::from_millis(5);
/// How long the background reader sleeps without writes before it checks
/// that the guard is still in use.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The changefeed is too far behind to admit another write.
#[derive(Debug, thiserror::Error)]
#[error("the changefeed is {lag} writes behind (limit {limit}); try again later")]
pub struct Behind {
    /// The lag when the guard gave up.
    pub lag: u64,
    /// The limit.
    pub limit: u64,
}

/// Admission control of writes against the changefeed's lag; cheap to clone.
#[derive(Clone, Debug)]
pub struct LagGuard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bucket_stream: Stream,
    /// The highest revision this process wrote.
    head: AtomicU64,
    /// The consumer's ack floor, as the server last reported it.
    floor: AtomicU64,
    /// The local changefeed acked: the server's floor may have moved.
    progressed: Notify,
    /// This process wrote: the background reader has a floor to follow.
    wrote: Arc<Notify>,
    /// Held while the server is asked, so that concurrent writers ask once.
    asking: Mutex<()>,
    /// How many requests for the floor were sent.
    asked: AtomicU64,
    max_lag: u64,
}

impl LagGuard {
    /// A guard over the changefeed of the bucket whose stream is `bucket_stream`.
    /// Within a tokio runtime, a task reads the floor every
    /// [`FOLLOW_EVERY`] while this process's writes are ahead of it, and ends
    /// when the last clone of the guard is dropped.
    pub fn new(bucket_stream: Stream) -> Self {
        let guard = LagGuard {
            inner: Arc::new(Inner {
                bucket_stream,
                head: AtomicU64::new(0),
                floor: AtomicU64::new(0),
                progressed: Notify::new(),
                wrote: Arc::new(Notify::new()),
                asking: Mutex::new(()),
                asked: AtomicU64::new(0),
                max_lag: DEFAULT_MAX_LAG,
            }),
        };
        guard.follow();
        guard
    }

    /// Starts the background reader of the floor (see [`new`](Self::new)).
    fn follow(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let guard = Arc::downgrade(&self.inner);
        let wrote = self.inner.wrote.clone();
        runtime.spawn(async move {
            loop {
                let ahead = match guard.upgrade() {
                    None => return,
                    Some(inner) => {
                        let guard = LagGuard { inner };
                        let ahead = guard.lag() > 0;
                        if ahead {
                            guard.refresh().await;
                        }
                        ahead
                    }
                };
                if ahead {
                    tokio::time::sleep(FOLLOW_EVERY).await;
                } else {
                    let _ = tokio::time::timeout(IDLE_CHECK, wrote.notified()).await;
                }
            }
        });
    }

    /// The lag as far as this process knows: its own writes against the ack
    /// floor the server last reported.
    pub fn lag(&self) -> u64 {
        let head = self.inner.head.load(Ordering::SeqCst);
        head.saturating_sub(self.inner.floor.load(Ordering::SeqCst))
    }

    /// Records a write at `revision`.
    pub fn written(&self, revision: u64) {
        self.inner.head.fetch_max(revision, Ordering::SeqCst);
        self.inner.wrote.notify_one();
    }

    /// Records the changefeed consumer's ack floor as the server reported it
    /// (`ack_floor.stream_sequence` of its info): every message up to
    /// `sequence` is acked, by whichever replica. Only ever the server's
    /// word: a sequence this process acked is no floor (see the module docs).
    pub fn published(&self, sequence: u64) {
        if self.inner.floor.fetch_max(sequence, Ordering::SeqCst) < sequence {
            self.inner.progressed.notify_waiters();
        }
    }

    /// Tells the waiting writers that the local changefeed acked a message:
    /// they ask the server for the floor again. Moves no floor itself.
    /// ([`published`](Self::published) wakes them too when the floor rises.)
    pub fn acked(&self) {
        self.inner.progressed.notify_waiters();
    }

    /// Asks the server for the ack floor, unless a request sent since this
    /// call began has already been answered (concurrent writers share one).
    async fn refresh(&self) {
        let asked = self.inner.asked.load(Ordering::SeqCst);
        let _asking = self.inner.asking.lock().await;
        if self.inner.asked.load(Ordering::SeqCst) != asked {
            return;
        }
        self.inner.asked.fetch_add(1, Ordering::SeqCst);
        match self.inner.bucket_stream.consumer_info(CONSUMER_NAME).await {
            Ok(info) => self.published(info.ack_floor.stream_sequence),
            Err(error) => tracing::debug!(
                error = imagestreams_common::error::chain(&error),
                "cannot read the changefeed's position"
            ),
        }
    }

    /// Waits until a write may go ahead, or fails with [`Behind`].
    pub async fn admit(&self) -> Result<(), Behind> {
        if self.lag() < self.inner.max_lag {
            return Ok(());
        }
        let deadline = Instant::now() + DEFAULT_ADMIT_TIMEOUT;
        let mut waiting = false;
        loop {
            // registered before the checks, so no progress goes unnoticed
            let progressed = self.inner.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            // another writer may have learnt a higher floor; else ask
            if self.lag() < self.inner.max_lag {
                return Ok(());
            }
            self.refresh().await;
            let lag = self.lag();
            if lag < self.inner.max_lag {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Behind {
                    lag,
                    limit: self.inner.max_lag,
                });
            }
            if !waiting {
                waiting = true;
                tracing::debug!(lag, "waiting for the changefeed");
            }
            // a local ack, or else the next poll, and ask the server again
            tokio::select! {
                _ = progressed => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
}
