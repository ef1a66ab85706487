//! The kinds of receiver: which sender a receiver listens to, and the
//! strongest check that sender allows.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A sender of webhooks: a hosted registry, or a format several share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Docker Hub repository webhooks.
    Dockerhub,
    /// Quay (quay.io, Red Hat Quay) "Push to Repository" webhook notifications.
    Quay,
    /// GitHub `package` and `registry_package` events for GHCR (and Gitea's,
    /// signed the same way).
    Ghcr,
    /// Harbor project webhooks, Default or CloudEvents format.
    Harbor,
    /// GitLab's (self-managed) registry notifications: the CNCF envelope.
    Gitlab,
    /// CNCF distribution notifications (`docker-registry`, and any registry
    /// built on it).
    Distribution,
    /// Azure Container Registry webhooks.
    Acr,
    /// Google Artifact Registry through a Pub/Sub push subscription.
    Gar,
    /// AWS ECR through an EventBridge API destination.
    Ecr,
    /// JFrog Artifactory `docker` domain webhooks.
    Artifactory,
    /// Sonatype Nexus 3 repository webhooks.
    Nexus,
    /// zot's events extension (CloudEvents over HTTP).
    Zot,
    /// Any sender of CloudEvents with `data` shaped as zot's.
    Cloudevents,
    /// Our own documented shape, signed with HMAC-SHA256 over a timestamp and
    /// the body.
    GenericHmac,
}

/// How a delivery proves where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// Nothing but the unguessable URL: the sender has no secret to send.
    UrlOnly,
    /// The receiver's secret in a header, sent as is (`Authorization`, or
    /// the kind's own header); compared in constant time.
    HeaderSecret,
    /// HMAC-SHA256 of the body with the secret.
    HmacSha256,
    /// HMAC-SHA1 of the body with the secret (the sender offers no better).
    HmacSha1,
    /// A Google-signed OIDC token, checked against the configured keys,
    /// audience and service account.
    Oidc,
    /// HMAC-SHA256 of a timestamp and the body, the timestamp within
    /// [`crate::verify::DEFAULT_TIMESTAMP_TOLERANCE`]: replays are refused.
    SignedTimestamp,
}

impl Check {
    /// Whether deliveries are only as safe as the URL (shown in status as
    /// weakly authenticated).
    pub fn is_weak(self) -> bool {
        self == Check::UrlOnly
    }
}

impl Kind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [Kind; 14] = [
        Kind::Dockerhub,
        Kind::Quay,
        Kind::Ghcr,
        Kind::Harbor,
        Kind::Gitlab,
        Kind::Distribution,
        Kind::Acr,
        Kind::Gar,
        Kind::Ecr,
        Kind::Artifactory,
        Kind::Nexus,
        Kind::Zot,
        Kind::Cloudevents,
        Kind::GenericHmac,
    ];

    /// The name users write (`--type`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dockerhub => "dockerhub",
            Kind::Quay => "quay",
            Kind::Ghcr => "ghcr",
            Kind::Harbor => "harbor",
            Kind::Gitlab => "gitlab",
            Kind::Distribution => "distribution",
            Kind::Acr => "acr",
            Kind::Gar => "gar",
            Kind::Ecr => "ecr",
            Kind::Artifactory => "artifactory",
            Kind::Nexus => "nexus",
            Kind::Zot => "zot",
            Kind::Cloudevents => "cloudevents",
            Kind::GenericHmac => "generic-hmac",
        }
    }

    /// The strongest check the sender allows, which the receiver requires.
    /// Artifactory sends either its secret or, with signing on, an
    /// HMAC-SHA256 of the body in the same header: both are accepted, the
    /// first as a header secret.
    pub fn check(self) -> Check {
        match self {
            Kind::Dockerhub | Kind::Quay => Check::UrlOnly,
            Kind::Ghcr | Kind::Artifactory => Check::HmacSha256,
            Kind::Nexus => Check::HmacSha1,
            Kind::Gar => Check::Oidc,
            Kind::GenericHmac => Check::SignedTimestamp,
            Kind::Harbor
            | Kind::Gitlab
            | Kind::Distribution
            | Kind::Acr
            | Kind::Ecr
            | Kind::Zot
            | Kind::Cloudevents => Check::HeaderSecret,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--type` that names no kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown receiver type {0:?}; one of: {list}", list = Kind::ALL.map(Kind::name).join(", "))]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_kinds() {
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.name())
            );
        }
        let e = "docker-hub".parse::<Kind>().unwrap_err().to_string();
        assert!(
            e.contains("\"docker-hub\"") && e.contains("generic-hmac"),
            "{e}"
        );
    }

    #[test]
    fn only_senders_without_a_secret_are_weak() {
        let weak: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| k.check().is_weak())
            .collect();
        assert_eq!(weak, [Kind::Dockerhub, Kind::Quay]);
    }
}
