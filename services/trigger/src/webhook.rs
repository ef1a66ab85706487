//! Outbound webhooks: the JSON payload, its HMAC-SHA256 signature, one
//! delivery attempt with a timeout and a bounded number in flight, through
//! the SSRF policy ([`crate::ssrf`]), and the pure retry rules (which
//! answers are retried, exponential backoff with jitter).
//!
//! A delivery is a `POST` of [`Payload`] as JSON with the headers
//!
//! - `X-Imagestreams-Delivery: <firing id>`: the idempotency key, the same on
//!   every retry and on every replica;
//! - `X-Imagestreams-Signature: sha256=<hex HMAC-SHA256(secret, body)>` when
//!   the trigger has a secret;
//! - `X-Imagestreams-Event: Build` or `Deployment`;
//! - `traceparent`: the W3C trace context of the delivery, so the receiver's
//!   work joins the trace of the push that caused it.
//!
//! A 2xx answer is success. 408, 429, 5xx, timeouts and connection errors are
//! retried; any other answer (3xx — redirects are not followed — and 4xx, 410
//! included) and a target refused by the SSRF policy are final failures.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use imagestreams_common::{
    config::WebhookConfig,
    error,
    telemetry::propagation::{self, Headers as _},
};
use imagestreams_trigger_api::{
    Delivery, DeliveryAttempt, DeliveryState, Firing, WebhookSecret, format_millis,
};
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::Semaphore;
use tracing::instrument;

use crate::ssrf::PolicyResolver;
pub use crate::ssrf::{ResolveError, SsrfPolicy};

/// The idempotency key header.
pub const HEADER_DELIVERY: &str = "X-Imagestreams-Delivery";
/// The signature header.
pub const HEADER_SIGNATURE: &str = "X-Imagestreams-Signature";
/// The event kind header (`Build` or `Deployment`).
pub const HEADER_EVENT: &str = "X-Imagestreams-Event";
/// The user agent of deliveries.
pub const DEFAULT_USER_AGENT: &str = concat!("imagestreams-trigger/", env!("CARGO_PKG_VERSION"));

/// The JSON body of a delivery.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload<'a> {
    /// The trigger's name.
    pub trigger: &'a str,
    /// The trigger's namespace.
    pub namespace: &'a str,
    /// The stream whose tag changed.
    pub stream: &'a str,
    /// The tag.
    pub tag: &'a str,
    /// The new image (digest).
    pub image: &'a str,
    /// Its pinned pull spec.
    pub docker_image_reference: &'a str,
    /// The image fired before (empty for the first firing).
    pub previous_image: &'a str,
    /// When the trigger fired (RFC 3339).
    pub time: &'a str,
    /// The firing id (also `X-Imagestreams-Delivery`).
    pub id: &'a str,
    /// `Build` or `Deployment`.
    pub kind: &'static str,
    /// The stream's namespace (may differ from the trigger's).
    pub stream_namespace: &'a str,
    /// Deploy only: the container.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub container: &'a str,
}

/// The body delivered for `firing`.
pub fn payload(firing: &Firing) -> Bytes {
    let payload = Payload {
        trigger: &firing.trigger,
        namespace: &firing.namespace,
        stream: &firing.from.stream,
        tag: &firing.from.tag,
        image: &firing.image,
        docker_image_reference: &firing.docker_image_reference,
        previous_image: &firing.previous_image,
        time: &firing.time,
        id: &firing.id,
        kind: firing.kind.firing_noun(),
        stream_namespace: &firing.from.namespace,
        container: &firing.container,
    };
    // can't fail: a struct of strings
    Bytes::from(serde_json::to_vec(&payload).unwrap_or_default())
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // can't fail: HMAC takes keys of any length
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it started (unix milliseconds).
    pub started_ms: i64,
    /// How long it took.
    pub duration: Duration,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Refused before sending (SSRF policy, bad URL): final.
    pub refused: bool,
    /// The receiver's `Retry-After`, in seconds form.
    pub retry_after: Option<Duration>,
}

impl Attempt {
    /// An attempt with no HTTP status of its own (a mirror rule's push),
    /// with the error when it failed.
    pub fn without_status(started_ms: i64, duration: Duration, error: Option<String>) -> Attempt {
        Attempt {
            started_ms,
            duration,
            status: None,
            error,
            refused: false,
            retry_after: None,
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Delivered,
    /// Try again later.
    Retry,
    /// Give up.
    GiveUp,
}

/// The verdict on an attempt (see the module docs).
pub fn verdict(attempt: &Attempt) -> Verdict {
    match attempt.status {
        Some(s) if (200..300).contains(&s) => Verdict::Delivered,
        Some(408 | 429) => Verdict::Retry,
        Some(s) if s >= 500 => Verdict::Retry,
        Some(_) => Verdict::GiveUp,
        None if attempt.refused => Verdict::GiveUp,
        None => Verdict::Retry,
    }
}

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_backoff: Duration,
    /// Upper bound of the delay.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The policy of a webhook configuration.
    pub fn of(cfg: &WebhookConfig) -> Self {
        RetryPolicy {
            max_attempts: cfg.max_attempts.max(1),
            initial_backoff: Duration::from_millis(cfg.initial_backoff_ms),
            max_backoff: Duration::from_millis(cfg.max_backoff_ms.max(cfg.initial_backoff_ms)),
        }
    }

    /// The delay after attempt number `attempts` (1-based): `initial · 2^(n-1)`,
    /// capped, then "equal jitter": half fixed, half scaled by `jitter` ∈ [0, 1).
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Records `attempt` in `delivery` and moves it on by its [`verdict`]:
/// `Succeeded`, `Failed` (final answer or the attempt limit), or `Pending`
/// with the next attempt's time (`Retry-After` honoured up to the maximum
/// backoff). Pure.
pub fn apply(delivery: &mut Delivery, attempt: &Attempt, policy: &RetryPolicy, jitter: f64) {
    apply_verdict(delivery, attempt, verdict(attempt), policy, jitter);
}

/// [`apply`] with the verdict given: for deliveries other than webhooks
/// (a mirror rule's pushes).
pub fn apply_verdict(
    delivery: &mut Delivery,
    attempt: &Attempt,
    verdict: Verdict,
    policy: &RetryPolicy,
    jitter: f64,
) {
    delivery.record(DeliveryAttempt {
        time: format_millis(attempt.started_ms),
        status_code: attempt.status.unwrap_or(0),
        error: attempt.error.clone().unwrap_or_default(),
        duration_ms: u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX),
    });
    let done_ms = attempt.started_ms + i64::try_from(attempt.duration.as_millis()).unwrap_or(0);
    match verdict {
        Verdict::Delivered => {
            delivery.state = DeliveryState::Succeeded;
            delivery.next_attempt_ms = 0;
        }
        Verdict::GiveUp => {
            delivery.state = DeliveryState::Failed;
            delivery.next_attempt_ms = 0;
        }
        Verdict::Retry if delivery.attempts >= policy.max_attempts => {
            delivery.state = DeliveryState::Failed;
            delivery.next_attempt_ms = 0;
        }
        Verdict::Retry => {
            let backoff = policy.backoff(delivery.attempts, jitter);
            let wait = attempt
                .retry_after
                .map_or(backoff, |r| r.min(policy.max_backoff).max(backoff));
            delivery.state = DeliveryState::Pending;
            delivery.next_attempt_ms =
                done_ms + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        }
    }
}

/// The webhook sender of one replica: one HTTP client, the SSRF policy, a
/// bound on requests in flight and a per-request timeout.
#[derive(Debug, Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    policy: SsrfPolicy,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl Webhooks {
    /// A sender configured by `cfg`.
    pub fn new(cfg: &WebhookConfig) -> Result<Self, reqwest::Error> {
        let policy = SsrfPolicy::of(cfg);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver(policy)))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms))
            .build()?;
        Ok(Webhooks {
            client,
            policy,
            permits: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    /// The SSRF policy.
    pub fn policy(&self) -> SsrfPolicy {
        self.policy
    }

    /// One attempt to POST `firing` to `url`, with the W3C `traceparent` of
    /// its span (or, with tracing off, the firing's).
    #[instrument(name = "webhook", skip_all, fields(firing = %firing.id))]
    pub async fn deliver(
        &self,
        url: &str,
        firing: &Firing,
        secret: Option<&WebhookSecret>,
    ) -> Attempt {
        let started_ms = chrono::Utc::now().timestamp_millis();
        let start = Instant::now();
        let finish =
            |status: Option<u16>, error: Option<String>, refused: bool, retry_after| Attempt {
                started_ms,
                duration: start.elapsed(),
                status,
                error,
                refused,
                retry_after,
            };
        let parsed = match self.policy.check_url(url) {
            Ok(u) => u,
            Err(why) => return finish(None, Some(why), true, None),
        };
        if let Some(url::Host::Domain(host)) = parsed.host() {
            let port = parsed.port_or_known_default().unwrap_or(80);
            match self.policy.resolve(host, port).await {
                Ok(_) => {}
                Err(ResolveError::Refused(why)) => return finish(None, Some(why), true, None),
                Err(ResolveError::Lookup(why)) => return finish(None, Some(why), false, None),
            }
        }
        let body = payload(firing);
        let mut request = self
            .client
            .post(parsed)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, DEFAULT_USER_AGENT)
            .header(HEADER_DELIVERY, &firing.id)
            .header(HEADER_EVENT, firing.kind.firing_noun());
        if let Some(secret) = secret {
            request = request.header(HEADER_SIGNATURE, sign(secret.expose(), &body));
        }
        let mut trace = HeaderMap::new();
        if let Some(traceparent) = &firing.traceparent {
            trace.set_header(propagation::TRACEPARENT, traceparent.clone());
        }
        propagation::inject(&mut trace);
        request = request.headers(trace);
        // waiting for a slot is bounded too, so an attempt never outlives its lease
        let Ok(Ok(_permit)) = tokio::time::timeout(self.timeout, self.permits.acquire()).await
        else {
            return finish(
                None,
                Some("too many webhook deliveries in flight; retrying later".into()),
                false,
                None,
            );
        };
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let error = (!response.status().is_success())
                    .then(|| format!("receiver answered {}", response.status()));
                finish(Some(status), error, false, retry_after)
            }
            Err(e) if e.is_timeout() => finish(
                None,
                Some(format!("no answer within {} ms", self.timeout.as_millis())),
                false,
                None,
            ),
            Err(e) => finish(None, Some(error::chain(&e)), false, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagestreams_trigger_api::{DELIVERY_HISTORY_KEPT, TagRef, TriggerKind};

    fn attempt(status: Option<u16>) -> Attempt {
        Attempt {
            started_ms: 1_000,
            duration: Duration::from_millis(5),
            status,
            error: None,
            refused: false,
            retry_after: None,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
        }
    }

    #[test]
    fn signatures_are_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_408_429_5xx_and_network_errors_are_retried() {
        assert_eq!(verdict(&attempt(Some(200))), Verdict::Delivered);
        assert_eq!(verdict(&attempt(Some(204))), Verdict::Delivered);
        assert_eq!(verdict(&attempt(Some(500))), Verdict::Retry);
        assert_eq!(verdict(&attempt(Some(503))), Verdict::Retry);
        assert_eq!(verdict(&attempt(Some(408))), Verdict::Retry);
        assert_eq!(verdict(&attempt(Some(429))), Verdict::Retry);
        assert_eq!(verdict(&attempt(Some(410))), Verdict::GiveUp);
        assert_eq!(verdict(&attempt(Some(404))), Verdict::GiveUp);
        assert_eq!(verdict(&attempt(Some(301))), Verdict::GiveUp);
        assert_eq!(verdict(&attempt(None)), Verdict::Retry);
        let mut refused = attempt(None);
        refused.refused = true;
        assert_eq!(verdict(&refused), Verdict::GiveUp);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let p = policy();
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(1, 0.999_999).as_millis(), 99);
        assert_eq!(p.backoff(2, 0.0), Duration::from_millis(100));
        assert_eq!(
            p.backoff(3, 0.0),
            Duration::from_millis(125),
            "capped at 250"
        );
        assert_eq!(p.backoff(40, 0.0), Duration::from_millis(125));
    }

    #[test]
    fn deliveries_move_through_their_states() {
        let p = policy();
        let mut d = Delivery {
            state: DeliveryState::Pending,
            ..Default::default()
        };
        apply(&mut d, &attempt(Some(500)), &p, 0.0);
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(d.next_attempt_ms, 1_005 + 50);
        apply(&mut d, &attempt(Some(200)), &p, 0.0);
        assert_eq!(d.state, DeliveryState::Succeeded);
        assert_eq!(d.attempts, 2);

        let mut gone = Delivery {
            state: DeliveryState::Pending,
            ..Default::default()
        };
        apply(&mut gone, &attempt(Some(410)), &p, 0.0);
        assert_eq!(gone.state, DeliveryState::Failed);
        assert_eq!(gone.attempts, 1);
        assert_eq!(gone.last().unwrap().status_code, 410);

        let mut exhausted = Delivery {
            state: DeliveryState::Pending,
            ..Default::default()
        };
        for _ in 0..3 {
            apply(&mut exhausted, &attempt(Some(503)), &p, 0.5);
        }
        assert_eq!(exhausted.state, DeliveryState::Failed);
        assert!(exhausted.history.len() <= DELIVERY_HISTORY_KEPT);

        let mut later = Delivery {
            state: DeliveryState::Pending,
            ..Default::default()
        };
        let mut slow_down = attempt(Some(429));
        slow_down.retry_after = Some(Duration::from_secs(60));
        apply(&mut later, &slow_down, &p, 0.0);
        assert_eq!(
            later.next_attempt_ms,
            1_005 + 250,
            "Retry-After capped at the max backoff"
        );
    }

    #[tokio::test]
    async fn a_refused_target_is_a_final_failure_without_a_request() {
        let hooks = Webhooks::new(&WebhookConfig::default()).unwrap();
        let firing = Firing {
            id: "t-1".into(),
            namespace: "ns".into(),
            trigger: "t".into(),
            trigger_uid: "u".into(),
            kind: TriggerKind::Build,
            from: TagRef {
                namespace: "ns".into(),
                stream: "app".into(),
                tag: "latest".into(),
            },
            image: "sha256:a".into(),
            docker_image_reference: String::new(),
            previous_image: String::new(),
            cause: String::new(),
            time: String::new(),
            container: String::new(),
            event_published: false,
            delivery: Delivery::default(),
            lease: Default::default(),
            traceparent: None,
        };
        let a = hooks
            .deliver("http://169.254.169.254/latest", &firing, None)
            .await;
        assert!(a.refused);
        assert_eq!(verdict(&a), Verdict::GiveUp);
        assert!(a.error.unwrap().contains("link-local"));
        let body: serde_json::Value = serde_json::from_slice(&payload(&firing)).unwrap();
        for key in [
            "trigger",
            "namespace",
            "stream",
            "tag",
            "image",
            "dockerImageReference",
            "previousImage",
            "time",
        ] {
            assert!(body.get(key).is_some(), "payload lacks {key}");
        }
    }
}
