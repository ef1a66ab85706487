//! The tag-syncer's registry client against a real docker-registry (anonymous, htpasswd, token auth) and
//! against a fault-injecting fake registry: every fault ends in the right error reason with a bounded number of
//! requests.

mod faults;
mod mirror;
mod real;
mod token;

use std::time::Duration;

use imagestreams_common::reference::Reference;
use imagestreams_registry_client::{
    Keyring, Limits, RegistryClient, RegistryError, RegistryRules, Repository,
};

/// Limits that make faults quick to reach: short timeouts, two retries, short backoff, no rate limit.
pub fn fast_limits() -> Limits {
    Limits {
        request_timeout_ms: 500,
        connect_timeout_ms: 500,
        max_retries: 2,
        backoff_initial_ms: 10,
        backoff_max_ms: 50,
        max_retry_after_secs: 5,
        requests_per_second: 0.0,
        ..Limits::default()
    }
}

/// A client with `limits` and no rules.
pub fn client(limits: Limits) -> RegistryClient {
    RegistryClient::new(limits, RegistryRules::default()).expect("a registry client")
}

/// `host/path` resolved for `client`, over plain HTTP, with credentials from `keyring`.
pub fn repo(client: &RegistryClient, host: &str, path: &str, keyring: &Keyring) -> Repository {
    let reference = Reference::parse_normalized(&format!("{host}/{path}")).expect("a reference");
    client
        .repository(&reference, keyring, true)
        .expect("resolvable")
}

/// Asserts that `result` failed with `reason`, and returns the error.
#[track_caller]
pub fn expect_reason<T: std::fmt::Debug>(
    result: Result<T, RegistryError>,
    reason: &str,
) -> RegistryError {
    match result {
        Ok(v) => panic!("expected {reason}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.reason(), reason, "{e}");
            e
        }
    }
}

/// How long a test may take at most before we call it hung.
pub const TEST_BOUND: Duration = Duration::from_secs(20);
