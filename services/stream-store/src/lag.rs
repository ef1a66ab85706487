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
//! `floor` the changefeed consumer's ack floor. The local changefeed raises
//! `floor` as it acks; when the lag looks too high the guard asks the server
//! for the consumer's ack floor (the truth, also when the changefeed runs in
//! another process), and waits until it is low again, up to
//! [`DEFAULT_ADMIT_TIMEOUT`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::stream::Stream;
use tokio::{sync::Notify, time::Instant};

use crate::changefeed::CONSUMER_NAME;

/// How many bucket messages the changefeed may be behind before writers wait.
/// Half the bucket's history, leaving room for writes admitted at once.
pub const DEFAULT_MAX_LAG: u64 = 32;
/// How long a writer waits for the changefeed before giving up.
pub const DEFAULT_ADMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the server is asked while waiting.
const POLL: Duration = Duration::from_millis(20);

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
    head: AtomicU64,
    floor: AtomicU64,
    progressed: Notify,
    max_lag: u64,
}

impl LagGuard {
    /// A guard over the changefeed of the bucket whose stream is `bucket_stream`.
    pub fn new(bucket_stream: Stream) -> Self {
        LagGuard {
            inner: Arc::new(Inner {
                bucket_stream,
                head: AtomicU64::new(0),
                floor: AtomicU64::new(0),
                progressed: Notify::new(),
                max_lag: DEFAULT_MAX_LAG,
            }),
        }
    }

    /// The lag as far as this process knows.
    pub fn lag(&self) -> u64 {
        let head = self.inner.head.load(Ordering::SeqCst);
        head.saturating_sub(self.inner.floor.load(Ordering::SeqCst))
    }

    /// Records a write at `revision`.
    pub fn written(&self, revision: u64) {
        self.inner.head.fetch_max(revision, Ordering::SeqCst);
    }

    /// Records that the changefeed is done with every message up to `sequence`.
    pub fn published(&self, sequence: u64) {
        self.inner.floor.fetch_max(sequence, Ordering::SeqCst);
        self.inner.progressed.notify_waiters();
    }

    async fn refresh(&self) {
        match self.inner.bucket_stream.consumer_info(CONSUMER_NAME).await {
            Ok(info) => self.published(info.ack_floor.stream_sequence),
            Err(error) => tracing::debug!(%error, "cannot read the changefeed's position"),
        }
    }

    /// Waits until a write may go ahead, or fails with [`Behind`].
    pub async fn admit(&self) -> Result<(), Behind> {
        if self.lag() < self.inner.max_lag {
            return Ok(());
        }
        self.refresh().await;
        tracing::debug!(lag = self.lag(), "waiting for the changefeed");
        let deadline = Instant::now() + DEFAULT_ADMIT_TIMEOUT;
        loop {
            // registered before the check, so no progress goes unnoticed
            let progressed = self.inner.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
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
            // the local changefeed's progress, or else the server's word
            tokio::select! {
                _ = progressed => {}
                _ = tokio::time::sleep(POLL) => self.refresh().await,
            }
        }
    }
}
