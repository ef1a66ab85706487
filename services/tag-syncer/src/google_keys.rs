//! Google's token signing keys, for `gar` receivers (issue 18): a JWK Set
//! from a file (read once, at start: air-gapped installations and tests) or
//! from a URL (by default Google's), fetched when first needed
//! and again when it is older than the `max-age` its answer gave
//! (clamped to [`MIN_MAX_AGE`]..[`MAX_MAX_AGE`], [`DEFAULT_MAX_AGE`] without
//! one) or when a token names a key it does not have, Google having rotated
//! its keys.
//!
//! A stranger's tokens naming made-up keys cost at most one fetch every
//! [`MIN_REFETCH`]. A failed fetch keeps the keys already known (and is
//! retried no sooner than that), so a passing outage of Google's endpoint
//! refuses only tokens signed by keys never seen.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

/// How long fetched keys are used when the answer gives no `max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// The shortest `max-age` honoured.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(60);
/// The longest `max-age` honoured.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The least time between two fetches prompted by an unknown key or a
/// failure.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The signing keys of Google's ID tokens.
#[derive(Debug)]
pub enum GoogleKeys {
    /// Read once from a file.
    Fixed(Arc<JwkSet>),
    /// Fetched from a URL, and again when stale or missing a key.
    Fetched(Fetched),
}

/// Keys fetched from a URL.
#[derive(Debug)]
pub struct Fetched {
    url: reqwest::Url,
    http: reqwest::Client,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<JwkSet>>,
    /// When the last fetch was tried, whatever its outcome.
    tried: Option<Instant>,
    /// Until when the keys held are fresh.
    fresh_until: Option<Instant>,
}

impl GoogleKeys {
    /// The keys of the configuration: the file `file` when set, else the URL
    /// `url` unless empty, else `None`. Nothing is fetched yet.
    pub fn configured(file: Option<&Path>, url: &str) -> anyhow::Result<Option<Self>> {
        match (file, url.trim()) {
            (Some(path), _) => {
                let bytes = std::fs::read(path).with_context(|| {
                    format!("reading tag_syncer.gar_jwks_file {}", path.display())
                })?;
                let keys = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a JWK Set", path.display()))?;
                Ok(Some(GoogleKeys::Fixed(Arc::new(keys))))
            }
            (None, "") => Ok(None),
            (None, url) => {
                let url = reqwest::Url::parse(url)
                    .with_context(|| format!("tag_syncer.gar_jwks_url {url:?} is not a URL"))?;
                anyhow::ensure!(
                    matches!(url.scheme(), "https" | "http"),
                    "tag_syncer.gar_jwks_url {url} is not an http(s) URL"
                );
                let http = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .context("building the JWKS client")?;
                Ok(Some(GoogleKeys::Fetched(Fetched {
                    url,
                    http,
                    state: Mutex::default(),
                })))
            }
        }
    }

    /// The keys to check a token signed by `kid` with: fetched first when
    /// the ones held are stale, or lack `kid` and the last fetch is older
    /// than [`MIN_REFETCH`]. `None` when no fetch has succeeded yet.
    pub async fn for_kid(&self, kid: Option<&str>) -> Option<Arc<JwkSet>> {
        match self {
            GoogleKeys::Fixed(keys) => Some(keys.clone()),
            GoogleKeys::Fetched(fetched) => fetched.for_kid(kid).await,
        }
    }
}

impl Fetched {
    async fn for_kid(&self, kid: Option<&str>) -> Option<Arc<JwkSet>> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let stale = state.fresh_until.is_none_or(|until| now >= until);
        let lacks_kid = match (&state.keys, kid) {
            (Some(keys), Some(kid)) => keys.find(kid).is_none(),
            (Some(keys), None) => keys.keys.is_empty(),
            (None, _) => true,
        };
        let may_refetch = state
            .tried
            .is_none_or(|tried| now.duration_since(tried) >= MIN_REFETCH);
        if may_refetch && (stale || lacks_kid) {
            state.tried = Some(now);
            match self.fetch().await {
                Ok((keys, max_age)) => {
                    tracing::info!(url = %self.url, keys = keys.keys.len(), "fetched Google's signing keys");
                    state.keys = Some(Arc::new(keys));
                    state.fresh_until = Some(Instant::now() + max_age);
                }
                Err(error) => tracing::warn!(
                    url = %self.url,
                    error = format!("{error:#}"),
                    "cannot fetch Google's signing keys; keeping those already known"
                ),
            }
        }
        state.keys.clone()
    }

    async fn fetch(&self) -> anyhow::Result<(JwkSet, Duration)> {
        let response = self
            .http
            .get(self.url.clone())
            .send()
            .await?
            .error_for_status()?;
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map_or(DEFAULT_MAX_AGE, |age| age.clamp(MIN_MAX_AGE, MAX_MAX_AGE));
        let keys = response
            .json()
            .await
            .context("the answer is not a JWK Set")?;
        Ok((keys, max_age))
    }
}

/// The `max-age` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control_as_google_sends_it() {
        assert_eq!(
            max_age("public, max-age=19045, must-revalidate, no-transform"),
            Some(Duration::from_secs(19045))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("MAX-AGE=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn a_file_wins_over_a_url_and_a_bad_url_is_named() {
        let file = GoogleKeys::configured(Some(Path::new("/nonexistent")), "https://x.test/");
        assert!(file.unwrap_err().to_string().contains("/nonexistent"));
        let bad = GoogleKeys::configured(None, "file:///etc/passwd").unwrap_err();
        assert!(bad.to_string().contains("not an http(s) URL"), "{bad}");
        assert!(GoogleKeys::configured(None, " ").unwrap().is_none());
    }
}
