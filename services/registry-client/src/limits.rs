//! Limits on talking to registries: the configuration, a per-registry rate limiter and pause gate, jittered
//! exponential backoff, and the parsing of `Retry-After` and `RateLimit-*` headers.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Default concurrent requests per registry.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// Default requests per second per registry (`0` turns the limit off).
pub const DEFAULT_REQUESTS_PER_SECOND: f64 = 100.0;
/// Default burst of the per-registry rate limiter.
pub const DEFAULT_BURST: u32 = 16;
/// Default TCP (and TLS) connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Default timeout of one request, from sending it to the last byte of its body.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default maximum size of one response body; distribution itself refuses manifests over 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
/// Default retries of a request after a 429, a 5xx, a timeout or a connection failure.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Default first backoff delay; it doubles per retry, with jitter.
pub const DEFAULT_BACKOFF_INITIAL_MS: u64 = 200;
/// Default longest backoff delay.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 10_000;
/// Default longest wait a registry may ask for (`Retry-After`, `RateLimit-Reset`) before we give up instead.
pub const DEFAULT_MAX_RETRY_AFTER_SECS: u64 = 60;
/// Default maximum tags imported per repository (OpenShift's `maxImagesBulkImportedPerRepository`).
pub const DEFAULT_MAX_TAGS_PER_IMPORT: usize = 50;
/// Default maximum tags read from one repository's tag list.
pub const DEFAULT_MAX_LISTED_TAGS: usize = 100_000;
/// Default maximum `tags/list` pages followed.
pub const DEFAULT_MAX_TAG_PAGES: u32 = 1_000;
/// Wait assumed when a registry says `RateLimit-Remaining: 0` without saying when it resets.
pub const DEFAULT_RATE_LIMIT_RESET: Duration = Duration::from_secs(1);

/// Limits on talking to registries, embedded in the application configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent requests per registry (scheme, host and port).
    pub max_concurrency: usize,
    /// Requests per second per registry; `0` turns the limit off.
    pub requests_per_second: f64,
    /// Requests that may go at once before the rate applies.
    pub burst: u32,
    /// TCP and TLS connect timeout, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Timeout of one request including its whole body, in milliseconds.
    pub request_timeout_ms: u64,
    /// Maximum size of one response body; a larger one is cut off and the request fails.
    pub max_body_bytes: u64,
    /// Retries after a 429, a 5xx, a timeout or a connection failure.
    pub max_retries: u32,
    /// First backoff delay, in milliseconds; doubles per retry, with jitter.
    pub backoff_initial_ms: u64,
    /// Longest backoff delay, in milliseconds.
    pub backoff_max_ms: u64,
    /// Longest wait a registry may ask for before the request fails with `TooManyRequests` instead, in seconds.
    pub max_retry_after_secs: u64,
    /// Maximum tags imported from one repository; [`crate::select_tags`] picks them in OpenShift's priority order.
    pub max_tags_per_import: usize,
    /// Maximum tags read from one repository's tag list; the rest is not read.
    pub max_listed_tags: usize,
    /// Maximum `tags/list` pages followed.
    pub max_tag_pages: u32,
    /// `n` sent with the first `tags/list` request; the registry's own page size when unset (as Docker and
    /// containers/image do).
    pub tag_page_size: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            burst: DEFAULT_BURST,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff_initial_ms: DEFAULT_BACKOFF_INITIAL_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            max_retry_after_secs: DEFAULT_MAX_RETRY_AFTER_SECS,
            max_tags_per_import: DEFAULT_MAX_TAGS_PER_IMPORT,
            max_listed_tags: DEFAULT_MAX_LISTED_TAGS,
            max_tag_pages: DEFAULT_MAX_TAG_PAGES,
            tag_page_size: None,
        }
    }
}

impl Limits {
    /// [`Limits::connect_timeout_ms`] as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// [`Limits::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`Limits::max_retry_after_secs`] as a duration.
    pub fn max_retry_after(&self) -> Duration {
        Duration::from_secs(self.max_retry_after_secs)
    }

    /// The jittered delay before retry number `attempt + 1`; see [`backoff_delay`].
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        backoff_delay(
            attempt,
            Duration::from_millis(self.backoff_initial_ms),
            Duration::from_millis(self.backoff_max_ms),
            rand::random::<f64>(),
        )
    }
}

/// Exponential backoff with "equal jitter": the delay before retry `attempt + 1` is `initial · 2^attempt`,
/// capped at `max`, of which the upper half is scaled by `unit` (a random number in `[0, 1)`).
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let exp = initial
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let half = exp / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (relative to `now`; a date in the past is zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// When a response says the registry's quota is used up (`RateLimit-Remaining: 0`, or `X-RateLimit-Remaining`),
/// how long to wait: `RateLimit-Reset` (delta seconds, or a Unix time as GitHub sends), else the `w=` window of
/// Docker Hub's `ratelimit-remaining: 0;w=21600`, else [`DEFAULT_RATE_LIMIT_RESET`]. `None` while quota remains.
pub fn rate_limit_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
    };
    let remaining = header(&["ratelimit-remaining", "x-ratelimit-remaining"])?;
    let (count, params) = remaining.split_once(';').unwrap_or((remaining, ""));
    if count.trim().parse::<u64>().ok()? > 0 {
        return None;
    }
    let reset = header(&["ratelimit-reset", "x-ratelimit-reset"])
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| {
            // A value past 2001-09-09 is a Unix time, not a delay.
            if secs > 1_000_000_000 {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
                at.duration_since(now).unwrap_or(Duration::ZERO)
            } else {
                Duration::from_secs(secs)
            }
        });
    let window = params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "w")
            .then(|| v.trim().parse::<u64>().ok())
            .flatten()
            .map(Duration::from_secs)
    });
    Some(reset.or(window).unwrap_or(DEFAULT_RATE_LIMIT_RESET))
}

/// A generic cell rate algorithm: at most `rate` requests per second on average, `burst` at once. Waits in
/// arrival order; each caller reserves its slot before sleeping, so the mutex is never held across an await.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Option<Duration>,
    tolerance: Duration,
    theoretical_arrival: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests per second (`<= 0` or not finite: unlimited) and `burst` at once.
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        let interval =
            (rate.is_finite() && rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        let tolerance = interval
            .map(|i| i * burst.max(1).saturating_sub(1))
            .unwrap_or_default();
        RateLimiter {
            interval,
            tolerance,
            theoretical_arrival: Mutex::new(None),
        }
    }

    /// Waits for this request's slot.
    pub(crate) async fn acquire(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let allowed_at = {
            let mut tat = self
                .theoretical_arrival
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let t = tat.map_or(now, |t| t.max(now));
            *tat = Some(t + interval);
            t.checked_sub(self.tolerance).unwrap_or(now)
        };
        if allowed_at > now {
            tokio::time::sleep_until(allowed_at).await;
        }
    }
}

/// A per-registry pause: after a 429 or `RateLimit-Remaining: 0`, every request to that registry waits.
#[derive(Debug, Default)]
pub(crate) struct PauseGate {
    until: Mutex<Option<Instant>>,
}

impl PauseGate {
    /// Pauses the registry for `wait` from now, unless it is already paused for longer.
    pub(crate) fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut current = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_none_or(|c| c < until) {
            *current = Some(until);
        }
    }

    /// How much of the pause is left.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        let until = (*self.until.lock().unwrap_or_else(|e| e.into_inner()))?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }
}

/// What every request to one registry (scheme, host and port) shares.
#[derive(Debug)]
pub(crate) struct HostLimits {
    /// Bounds concurrent requests.
    pub(crate) concurrency: Semaphore,
    /// Bounds requests per second.
    pub(crate) rate: RateLimiter,
    /// Set by 429 and `RateLimit-Remaining: 0`.
    pub(crate) pause: PauseGate,
}

impl HostLimits {
    pub(crate) fn new(limits: &Limits) -> Self {
        HostLimits {
            concurrency: Semaphore::new(limits.max_concurrency.max(1)),
            rate: RateLimiter::new(limits.requests_per_second, limits.burst),
            pause: PauseGate::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn rate_limit_remaining_zero_waits_for_the_reset() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_wait(&h, now), None);
        h.insert("ratelimit-remaining", HeaderValue::from_static("5"));
        assert_eq!(rate_limit_wait(&h, now), None);
        h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        assert_eq!(rate_limit_wait(&h, now), Some(DEFAULT_RATE_LIMIT_RESET));
        h.insert("ratelimit-reset", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_wait(&h, now), Some(Duration::from_secs(7)));
        h.insert("ratelimit-reset", HeaderValue::from_static("2000000030"));
        assert_eq!(rate_limit_wait(&h, now), Some(Duration::from_secs(30)));

        let mut hub = HeaderMap::new();
        hub.insert("ratelimit-remaining", HeaderValue::from_static("0;w=21600"));
        assert_eq!(
            rate_limit_wait(&hub, now),
            Some(Duration::from_secs(21_600))
        );
        hub.insert(
            "ratelimit-remaining",
            HeaderValue::from_static("76;w=21600"),
        );
        assert_eq!(rate_limit_wait(&hub, now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let ms = Duration::from_millis;
        let d = |attempt, unit| backoff_delay(attempt, ms(100), ms(1_000), unit);
        assert_eq!(d(0, 0.0), ms(50));
        assert_eq!(d(0, 1.0), ms(100));
        assert_eq!(d(1, 0.0), ms(100));
        assert_eq!(d(2, 0.5), ms(300));
        assert_eq!(d(10, 1.0), ms(1_000));
        assert_eq!(d(u32::MAX, 1.0), ms(1_000));
        let limits = Limits::default();
        for attempt in 0..8 {
            let b = limits.backoff(attempt);
            assert!(b <= Duration::from_millis(DEFAULT_BACKOFF_MAX_MS), "{b:?}");
            assert!(b >= Duration::from_millis(DEFAULT_BACKOFF_INITIAL_MS / 2));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests_after_the_burst() {
        let limiter = RateLimiter::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
        for _ in 0..10 {
            limiter.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1_010),
            "{elapsed:?}"
        );
        let unlimited = RateLimiter::new(0.0, 1);
        let start = Instant::now();
        for _ in 0..1_000 {
            unlimited.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_gate_keeps_the_longest_pause() {
        let gate = PauseGate::default();
        assert_eq!(gate.remaining(), None);
        gate.pause_for(Duration::from_secs(5));
        gate.pause_for(Duration::from_secs(1));
        assert_eq!(gate.remaining(), Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(gate.remaining(), None);
    }

    #[test]
    fn limits_deserialize_strictly_with_defaults() {
        let l: Limits = serde_json::from_str(r#"{"max_concurrency": 4}"#).unwrap();
        assert_eq!(l.max_concurrency, 4);
        assert_eq!(l.max_retries, DEFAULT_MAX_RETRIES);
        assert!(serde_json::from_str::<Limits>(r#"{"max_concurency": 4}"#).is_err());
    }
}
