//! Scheduled import: tags with `importPolicy.scheduled` are imported again
//! every interval, written as a reconciler ([`reconcile`] plus the pure
//! [`error_policy`]).
//!
//! - **Items** are streams (their KV keys), handed over by the watcher when
//!   a revision has scheduled tags, and found by its resync.
//! - **Persistent schedule.** The next run of each stream is stored in
//!   [`subjects::BUCKET_IMPORT_SCHEDULE`] (`{"nextRunMs": …}`), so a restart
//!   keeps it: a run that fell due while stopped happens at start.
//! - **One replica per interval.** A due stream is claimed by
//!   compare-and-swap of its entry to the next run: the replica whose update
//!   wins imports, the others see the new time. A replica that dies after
//!   claiming loses that interval's import; the next one happens.
//! - **Jitter and limit.** Every next run is the interval ±10 %, the first one
//!   a random point within the first interval, and imports start at most
//!   `max_imports_per_minute` times a minute across the replicas ([`RateLimiter`]).
//! - **Interval**: `schedule_interval_secs`, at least `min_schedule_interval_secs`.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use imagestreams_common::{error::ApiError, subjects};
use imagestreams_stream_store_api::StreamReader;
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{importer::Importer, plan};

/// How long a failed reconcile waits before it is tried again.
pub const DEFAULT_ERROR_REQUEUE: Duration = Duration::from_secs(10);
/// How long a replica that lost the claim waits before it reads the new time.
pub const DEFAULT_LOST_CLAIM_REQUEUE: Duration = Duration::from_secs(1);
/// Reconciles running at once per replica.
pub const DEFAULT_WORKERS: usize = 4;

/// What to do with an item after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long.
    Requeue(Duration),
    /// Nothing until the item changes (the watcher hands it over again).
    AwaitChange,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The stream could not be read.
    #[error("reading the stream: {0}")]
    Read(#[source] ApiError),
    /// The schedule bucket failed.
    #[error("schedule storage: {0}")]
    Storage(String),
}

/// The pure error policy: try again after [`DEFAULT_ERROR_REQUEUE`].
pub fn error_policy(_error: &ScheduleError) -> Action {
    Action::Requeue(DEFAULT_ERROR_REQUEUE)
}

/// One stream's entry in the schedule bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When the next import is due, in Unix milliseconds.
    pub next_run_ms: u64,
}

/// `interval` ±10 %, by `unit` ∈ [0, 1).
pub fn jittered(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// The first run of a stream seen at `now_ms`: a point within the first
/// interval (by `unit` ∈ [0, 1)), so that many streams spread out.
pub fn first_run(now_ms: u64, interval: Duration, unit: f64) -> u64 {
    now_ms + interval.mul_f64(unit.clamp(0.0, 1.0)).as_millis() as u64
}

/// How long until `next_run_ms`, zero when due.
pub fn due_in(now_ms: u64, next_run_ms: u64) -> Duration {
    Duration::from_millis(next_run_ms.saturating_sub(now_ms))
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Items by due time: each item at most once.
#[derive(Debug, Default)]
pub struct DelayQueue {
    by_time: BTreeSet<(Instant, String)>,
    by_key: HashMap<String, Instant>,
}

impl DelayQueue {
    /// Puts `key` at `at`, replacing an earlier entry of it.
    pub fn schedule(&mut self, key: String, at: Instant) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// When the first item is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Takes the first item due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<String> {
        let (at, _) = self.by_time.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The cluster-wide limit on scheduled imports per minute: one counter per
/// Unix minute in [`subjects::BUCKET_IMPORT_RATE`], raised by compare-and-swap.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    kv: kv::Store,
    per_minute: u32,
}

/// How long from `now_ms` until the next minute starts.
pub fn until_next_minute(now_ms: u64) -> Duration {
    Duration::from_millis(60_000 - now_ms % 60_000)
}

impl RateLimiter {
    /// At most `per_minute` (0: no limit).
    pub fn new(kv: kv::Store, per_minute: u32) -> Self {
        RateLimiter { kv, per_minute }
    }

    /// Waits for a slot in the current minute, or until `shutdown`.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Result<bool, ScheduleError> {
        if self.per_minute == 0 {
            return Ok(true);
        }
        let storage = |e: &dyn std::fmt::Display| ScheduleError::Storage(e.to_string());
        loop {
            let now = now_ms();
            let key = format!("m{}", now / 60_000);
            let entry = self.kv.entry(&key).await.map_err(|e| storage(&e))?;
            let live = entry.filter(|e| e.operation == kv::Operation::Put);
            let wait = match live {
                None => match self.kv.create(&key, "1".into()).await {
                    Ok(_) => return Ok(true),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(storage(&e)),
                },
                Some(e) => {
                    let count: u32 = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    if count < self.per_minute {
                        match self
                            .kv
                            .update(&key, (count + 1).to_string().into(), e.revision)
                            .await
                        {
                            Ok(_) => return Ok(true),
                            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                            Err(e) => return Err(storage(&e)),
                        }
                    }
                    until_next_minute(now) + Duration::from_millis(rand::random_range(0..1_000))
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// What reconciles need.
#[derive(Debug)]
pub struct Context {
    /// Reads streams.
    pub reader: StreamReader,
    /// The schedule bucket.
    pub kv: kv::Store,
    /// Runs imports.
    pub importer: Arc<Importer>,
    /// The global limit.
    pub rate: RateLimiter,
    /// The interval.
    pub interval: Duration,
    /// Cancelled at shutdown.
    pub shutdown: CancellationToken,
}

/// Reconciles one stream's schedule (see the module docs).
pub async fn reconcile(key: &str, ctx: &Context) -> Result<Action, ScheduleError> {
    let Some((namespace, name)) = subjects::parse_stream_key(key) else {
        return Ok(Action::AwaitChange);
    };
    let stream = match ctx.reader.get(&namespace, &name).await {
        Ok(stream) => Some(stream),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => return Err(ScheduleError::Read(e)),
    };
    let storage = |e: &dyn std::fmt::Display| ScheduleError::Storage(e.to_string());
    let entry = ctx
        .kv
        .entry(key)
        .await
        .map_err(|e| storage(&e))?
        .filter(|e| e.operation == kv::Operation::Put);
    let Some(plan) = stream.as_ref().and_then(plan::scheduled) else {
        if entry.is_some() {
            ctx.kv.delete(key).await.map_err(|e| storage(&e))?;
        }
        return Ok(Action::AwaitChange);
    };
    let now = now_ms();
    let Some(entry) = entry else {
        let next = first_run(now, ctx.interval, rand::random());
        let value = serde_json::to_vec(&Entry { next_run_ms: next }).unwrap_or_default();
        return match ctx.kv.create(key, value.into()).await {
            Ok(_) => Ok(Action::Requeue(due_in(now, next))),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                Ok(Action::Requeue(DEFAULT_LOST_CLAIM_REQUEUE))
            }
            Err(e) => Err(storage(&e)),
        };
    };
    let next_run = serde_json::from_slice::<Entry>(&entry.value)
        .map(|e| e.next_run_ms)
        .unwrap_or(0);
    if now < next_run {
        return Ok(Action::Requeue(due_in(now, next_run)));
    }
    // due: claim this interval's import
    let next = now + jittered(ctx.interval, rand::random()).as_millis() as u64;
    let value = serde_json::to_vec(&Entry { next_run_ms: next }).unwrap_or_default();
    match ctx.kv.update(key, value.into(), entry.revision).await {
        Ok(_) => {}
        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
            return Ok(Action::Requeue(DEFAULT_LOST_CLAIM_REQUEUE));
        }
        Err(e) => return Err(storage(&e)),
    }
    if !ctx.rate.acquire(&ctx.shutdown).await? {
        return Ok(Action::AwaitChange);
    }
    match ctx.importer.run(&plan).await {
        Ok(applied) => {
            tracing::debug!(%namespace, %name, written = applied.written, "scheduled import done")
        }
        Err(error) => {
            tracing::warn!(%namespace, %name, error = imagestreams_common::error::chain(&error), "scheduled import failed")
        }
    }
    Ok(Action::Requeue(due_in(now_ms(), next)))
}

/// Runs the reconciler until `shutdown`: items arrive on `items`, wait in a
/// [`DelayQueue`], and are reconciled by up to [`DEFAULT_WORKERS`] at once.
pub async fn run(
    ctx: Arc<Context>,
    mut items: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut queue = DelayQueue::default();
    let mut running: JoinSet<(String, Action)> = JoinSet::new();
    let mut busy: HashSet<String> = HashSet::new();
    loop {
        let next = queue.next_deadline();
        let room = running.len() < DEFAULT_WORKERS;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((key, action)) = done {
                    busy.remove(&key);
                    if let Action::Requeue(after) = action {
                        queue.schedule(key, Instant::now() + after);
                    }
                }
            }
            item = items.recv() => match item {
                Some(key) if !busy.contains(&key) => queue.schedule(key, Instant::now()),
                Some(_) => {}
                None => break,
            },
            _ = sleep_until(next), if room && next.is_some() => {
                while running.len() < DEFAULT_WORKERS {
                    let Some(key) = queue.pop_due(Instant::now()) else { break };
                    busy.insert(key.clone());
                    let ctx = ctx.clone();
                    running.spawn(async move {
                        let action = match reconcile(&key, &ctx).await {
                            Ok(action) => action,
                            Err(error) => {
                                tracing::warn!(%key, error = imagestreams_common::error::chain(&error), "schedule reconcile failed");
                                error_policy(&error)
                            }
                        };
                        (key, action)
                    });
                }
            }
        }
    }
    // finish the imports in hand
    while running.join_next().await.is_some() {}
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let interval = Duration::from_secs(900);
        assert_eq!(jittered(interval, 0.0), Duration::from_secs(810));
        assert_eq!(jittered(interval, 0.5), Duration::from_secs(900));
        assert!(jittered(interval, 0.999_999) <= Duration::from_secs(990));
        assert_eq!(first_run(1_000, interval, 0.0), 1_000);
        assert_eq!(first_run(1_000, interval, 0.5), 451_000);
        assert_eq!(due_in(10, 5), Duration::ZERO);
        assert_eq!(due_in(5, 10), Duration::from_millis(5));
        assert_eq!(until_next_minute(60_000), Duration::from_secs(60));
        assert_eq!(until_next_minute(119_500), Duration::from_millis(500));
    }

    #[test]
    fn the_policy_requeues() {
        assert_eq!(
            error_policy(&ScheduleError::Storage("x".into())),
            Action::Requeue(DEFAULT_ERROR_REQUEUE)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_hands_out_items_when_due_once_each() {
        let mut queue = DelayQueue::default();
        let start = Instant::now();
        queue.schedule("b".into(), start + Duration::from_secs(20));
        queue.schedule("a".into(), start + Duration::from_secs(10));
        queue.schedule("b".into(), start + Duration::from_secs(5));
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.pop_due(Instant::now()), None);
        assert_eq!(queue.next_deadline(), Some(start + Duration::from_secs(5)));
        tokio::time::sleep_until(queue.next_deadline().unwrap()).await;
        assert_eq!(queue.pop_due(Instant::now()).as_deref(), Some("b"));
        assert_eq!(queue.pop_due(Instant::now()), None);
        tokio::time::advance(Duration::from_secs(900)).await;
        assert_eq!(queue.pop_due(Instant::now()).as_deref(), Some("a"));
        assert!(queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_fifteen_minute_schedule_runs_four_times_an_hour() {
        // the loop's arithmetic: requeue after the jittered interval
        let interval = Duration::from_secs(900);
        let mut queue = DelayQueue::default();
        let start = Instant::now();
        queue.schedule("s".into(), start);
        let mut runs = 0;
        while Instant::now() - start < Duration::from_secs(3600) {
            let at = queue.next_deadline().unwrap();
            tokio::time::sleep_until(at).await;
            if Instant::now() - start >= Duration::from_secs(3600) {
                break;
            }
            let key = queue.pop_due(Instant::now()).unwrap();
            runs += 1;
            queue.schedule(key, Instant::now() + jittered(interval, 0.5));
        }
        assert_eq!(runs, 4);
    }
}
