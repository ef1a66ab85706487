//! The registry client's errors, each mapped to the OpenShift condition reason an import records.
//!
//! Messages name the registry (`host[:port]`), the repository and what was asked; they never hold a
//! credential, a token or an `Authorization` header: none of those ever reaches an error.

use std::time::Duration;

/// Longest excerpt of a registry's own error message kept in an error.
pub(crate) const MAX_DETAIL_CHARS: usize = 200;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The repository, tag or manifest does not exist (404).
    #[error("{what} not found on {registry}{detail}")]
    NotFound {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for, e.g. `manifest ns/app:1`.
        what: String,
        /// `: CODE message` from the registry's error body, or empty.
        detail: String,
    },
    /// The registry (or its token server) wants other or valid credentials (401).
    #[error("unauthorized: {registry} refused access to {what}{detail}")]
    Unauthorized {
        /// `host[:port]` of the registry or token server.
        registry: String,
        /// What was asked for.
        what: String,
        /// `: CODE message` from the registry, or why no credentials could be sent.
        detail: String,
    },
    /// The credentials are valid but not allowed to do this (403).
    #[error("forbidden: {registry} denied access to {what}{detail}")]
    Forbidden {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// `: CODE message` from the registry, or empty.
        detail: String,
    },
    /// 429 (or `RateLimit-Remaining: 0`) persisted through every retry, or asked for a longer wait than allowed.
    #[error(
        "too many requests: {registry} kept rate-limiting {what} after {attempts} attempt(s){}",
        retry_after.map(|d| format!(" (asked to wait {}s)", d.as_secs())).unwrap_or_default()
    )]
    TooManyRequests {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// Requests sent for this operation.
        attempts: u32,
        /// The last wait the registry asked for.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the request timeout, on every attempt.
    #[error("timeout: {registry} did not answer {what} within {timeout:?} ({attempts} attempt(s))")]
    Timeout {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// The per-request timeout.
        timeout: Duration,
        /// Requests sent.
        attempts: u32,
    },
    /// 5xx on every attempt.
    #[error("{registry} answered {status} to {what} ({attempts} attempt(s)){detail}")]
    Server {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// The last HTTP status.
        status: u16,
        /// Requests sent.
        attempts: u32,
        /// `: CODE message` from the registry, or empty.
        detail: String,
    },
    /// A 4xx status other than 401, 403, 404 and 429.
    #[error("{registry} answered {status} to {what}{detail}")]
    UnexpectedStatus {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// The HTTP status.
        status: u16,
        /// `: CODE message` from the registry, or empty.
        detail: String,
    },
    /// The connection failed on every attempt (refused, reset, TLS, DNS).
    #[error("cannot reach {registry} for {what} ({attempts} attempt(s)): {cause}")]
    Unreachable {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// Requests tried.
        attempts: u32,
        /// A short, secret-free description of the last failure.
        cause: String,
    },
    /// The answer could not be understood: truncated or invalid JSON, a malformed header or digest.
    #[error("invalid response from {registry} to {what}: {detail}")]
    InvalidResponse {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The response body exceeded the configured maximum; the rest was not read.
    #[error("response from {registry} to {what} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// The configured maximum.
        limit: u64,
    },
    /// A `Link: <…>; rel="next"` pointed to another scheme, host or port. It was not requested.
    #[error("{registry} sent a Link to another origin ({link_origin}) for {what}; not followed")]
    ForeignLink {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// `scheme://host:port` the link pointed to.
        link_origin: String,
    },
    /// The manifest's bytes do not hash to the digest the registry announced or we asked for.
    #[error("digest mismatch from {registry} for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// The digest announced or requested.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A registry rule blocks this repository.
    #[error("{name} is blocked by the registry rule for {prefix}")]
    Blocked {
        /// The fully qualified repository name.
        name: String,
        /// The prefix of the blocking rule.
        prefix: String,
    },
    /// The repository name, tag or digest given is not valid.
    #[error("invalid reference {input:?}: {detail}")]
    InvalidReference {
        /// What was given.
        input: String,
        /// Why it is invalid.
        detail: String,
    },
    /// The registry's token realm is plain HTTP on a registry reached over HTTPS: credentials are not sent there.
    #[error("refusing to send credentials for {registry} to the plain-HTTP token realm {realm}")]
    InsecureRealm {
        /// `host[:port]` of the registry.
        registry: String,
        /// The realm URL (without query).
        realm: String,
    },
    /// The HTTP client could not be built (TLS backend, bad configuration).
    #[error("building the registry HTTP client: {0}")]
    Client(String),
}

impl RegistryError {
    /// The OpenShift condition reason for this error: `NotFound`, `Unauthorized`, `Forbidden`, `TooManyRequests`,
    /// `Timeout`, `InternalError`, `Blocked`, `BadRequest` or `ServiceUnavailable`.
    pub fn reason(&self) -> &'static str {
        match self {
            RegistryError::NotFound { .. } => "NotFound",
            RegistryError::Unauthorized { .. } | RegistryError::InsecureRealm { .. } => {
                "Unauthorized"
            }
            RegistryError::Forbidden { .. } => "Forbidden",
            RegistryError::TooManyRequests { .. } => "TooManyRequests",
            RegistryError::Timeout { .. } => "Timeout",
            RegistryError::Blocked { .. } => "Blocked",
            RegistryError::InvalidReference { .. } | RegistryError::UnexpectedStatus { .. } => {
                "BadRequest"
            }
            RegistryError::Unreachable { .. } => "ServiceUnavailable",
            RegistryError::Server { status: 503, .. } => "ServiceUnavailable",
            RegistryError::Server { .. }
            | RegistryError::InvalidResponse { .. }
            | RegistryError::TooLarge { .. }
            | RegistryError::ForeignLink { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::Client(_) => "InternalError",
        }
    }

    /// Whether trying the next source (a mirror, then the primary location) may help.
    pub(crate) fn try_next_source(&self) -> bool {
        !matches!(
            self,
            RegistryError::Blocked { .. } | RegistryError::InvalidReference { .. }
        )
    }
}

/// `: CODE message` from a distribution error body (`{"errors":[{"code":…,"message":…}]}`), cut to
/// [`MAX_DETAIL_CHARS`]; empty when the body is not one.
pub(crate) fn registry_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let Ok(parsed) = serde_json::from_slice::<Errors>(body) else {
        return String::new();
    };
    let Some(first) = parsed.errors.first() else {
        return String::new();
    };
    let text = format!("{} {}", first.code, first.message);
    let text: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DETAIL_CHARS)
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_follow_openshift() {
        let r = |e: RegistryError| e.reason();
        let reg = || "r:5000".to_owned();
        let what = || "tags of a/b".to_owned();
        assert_eq!(
            r(RegistryError::NotFound {
                registry: reg(),
                what: what(),
                detail: String::new()
            }),
            "NotFound"
        );
        assert_eq!(
            r(RegistryError::Server {
                registry: reg(),
                what: what(),
                status: 500,
                attempts: 3,
                detail: String::new()
            }),
            "InternalError"
        );
        assert_eq!(
            r(RegistryError::TooManyRequests {
                registry: reg(),
                what: what(),
                attempts: 4,
                retry_after: Some(Duration::from_secs(2))
            }),
            "TooManyRequests"
        );
        assert_eq!(
            r(RegistryError::Blocked {
                name: "docker.io/x/y".into(),
                prefix: "docker.io".into()
            }),
            "Blocked"
        );
    }

    #[test]
    fn detail_is_code_and_message_only() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository"}]}]}"#;
        assert_eq!(
            registry_detail(body),
            ": UNAUTHORIZED authentication required"
        );
        assert_eq!(registry_detail(b"<html>oops</html>"), "");
        let long = format!(
            r#"{{"errors":[{{"code":"X","message":"{}"}}]}}"#,
            "a".repeat(1000)
        );
        assert_eq!(registry_detail(long.as_bytes()).len(), 2 + MAX_DETAIL_CHARS);
    }
}
