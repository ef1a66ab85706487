//! Build and deploy triggers, and mirror rules: the validated domain types (a [`Trigger`], its
//! [`Firing`]s and their webhook [`Delivery`] logs), their stored form in the
//! JetStream KV buckets [`subjects::BUCKET_TRIGGERS`] and
//! [`subjects::BUCKET_FIRINGS`], the protobuf edge (`TryFrom` in, `From` out),
//! the read side every service may use ([`TriggerReader`]) and the client of
//! the trigger service's write API ([`TriggerClient`]). Only the trigger
//! service writes the buckets.
//!
//! # Secrets
//!
//! A webhook secret is kept in the trigger's KV entry (the bucket is the
//! system of record, like a Kubernetes Secret in etcd) as a [`WebhookSecret`],
//! whose `Debug` is redacted. It never leaves through the API: the wire type
//! carries only `has_secret`.
//!
//! # Revisions
//!
//! A trigger's `resourceVersion` is the KV revision of its entry, never stored
//! inside the value; writes compare-and-swap on it.

use std::{fmt, time::Duration};

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull::OrderedConfig},
    kv,
};
use bytes::Bytes;
use futures::StreamExt;
use imagestreams_proto::v1 as proto;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use imagestreams_common::{
    error::ApiError,
    model::{is_dns1123_label, is_valid_stream_name},
    reference::{Reference, is_valid_tag},
    requests,
    subjects::{self, Kind},
};

mod client;
mod create;
mod firing;
pub mod object;
mod reader;

pub use client::*;
pub use create::*;
pub use firing::*;
pub use reader::*;

/// The cause every firing records.
pub const CAUSE_IMAGE_CHANGE: &str = "Image change";
/// How long a caller waits for the trigger service to answer a write.
pub const DEFAULT_TRIGGER_TIMEOUT: Duration = Duration::from_secs(10);
/// How many delivery attempts a firing's log keeps.
pub const DELIVERY_HISTORY_KEPT: usize = 10;
/// How long a bucket scan waits for the next entry before giving up.
pub const DEFAULT_SCAN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest accepted webhook URL.
pub const MAX_WEBHOOK_URL_LENGTH: usize = 2048;

/// What a trigger requests when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TriggerKind {
    /// A build (`BuildRequested`).
    Build,
    /// A deployment (`DeploymentRequested`).
    Deploy,
    /// A mirror rule: each new image is pushed to [`TriggerSpec::mirror`]
    /// (no event; the firing's delivery is the push).
    Mirror,
}

impl TriggerKind {
    /// The subject kind of the event this trigger publishes; none for a mirror rule.
    pub fn event_kind(self) -> Option<Kind> {
        match self {
            TriggerKind::Build => Some(Kind::BuildsRequested),
            TriggerKind::Deploy => Some(Kind::DeploymentsRequested),
            TriggerKind::Mirror => None,
        }
    }

    /// What a firing of this kind is called: `Build`, `Deployment` or `Mirror`.
    pub fn firing_noun(self) -> &'static str {
        match self {
            TriggerKind::Build => "Build",
            TriggerKind::Deploy => "Deployment",
            TriggerKind::Mirror => "Mirror",
        }
    }
}

impl From<TriggerKind> for proto::TriggerKind {
    fn from(kind: TriggerKind) -> Self {
        match kind {
            TriggerKind::Build => proto::TriggerKind::Build,
            TriggerKind::Deploy => proto::TriggerKind::Deploy,
            TriggerKind::Mirror => proto::TriggerKind::Mirror,
        }
    }
}

impl TryFrom<proto::TriggerKind> for TriggerKind {
    type Error = ApiError;

    fn try_from(kind: proto::TriggerKind) -> Result<Self, ApiError> {
        match kind {
            proto::TriggerKind::Build => Ok(TriggerKind::Build),
            proto::TriggerKind::Deploy => Ok(TriggerKind::Deploy),
            proto::TriggerKind::Mirror => Ok(TriggerKind::Mirror),
            proto::TriggerKind::Unspecified => Err(invalid(
                "spec.kind",
                "Required value: Build, Deploy or Mirror",
            )),
        }
    }
}

/// An ImageStreamTag a trigger follows: `namespace/stream:tag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TagRef {
    /// The stream's namespace.
    pub namespace: String,
    /// The stream's name.
    pub stream: String,
    /// The tag.
    pub tag: String,
}

impl TagRef {
    /// Parses `[namespace/]stream:tag`; the namespace defaults to `default_namespace`.
    pub fn parse(s: &str, default_namespace: &str) -> Result<TagRef, ApiError> {
        let bad = || {
            invalid(
                "spec.from",
                format!("{s:?} is not an ImageStreamTag [NAMESPACE/]STREAM:TAG"),
            )
        };
        let (namespace, rest) = match s.split_once('/') {
            Some((ns, rest)) => (ns, rest),
            None => (default_namespace, s),
        };
        let (stream, tag) = rest.rsplit_once(':').ok_or_else(bad)?;
        let tag_ref = TagRef {
            namespace: namespace.to_owned(),
            stream: stream.to_owned(),
            tag: tag.to_owned(),
        };
        tag_ref.validate("spec.from")?;
        Ok(tag_ref)
    }

    fn validate(&self, field: &str) -> Result<(), ApiError> {
        if !is_dns1123_label(&self.namespace) {
            return Err(invalid(
                format!("{field}.namespace"),
                format!("Invalid value: {:?}: not a valid namespace", self.namespace),
            ));
        }
        if !is_valid_stream_name(&self.stream) {
            return Err(invalid(
                format!("{field}.stream"),
                format!(
                    "Invalid value: {:?}: not a valid image stream name",
                    self.stream
                ),
            ));
        }
        if !is_valid_tag(&self.tag) {
            return Err(invalid(
                format!("{field}.tag"),
                format!("Invalid value: {:?}: not a valid tag", self.tag),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for TagRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.stream, self.tag)
    }
}

impl From<&TagRef> for proto::ImageStreamTagReference {
    fn from(t: &TagRef) -> Self {
        proto::ImageStreamTagReference {
            namespace: t.namespace.clone(),
            stream: t.stream.clone(),
            tag: t.tag.clone(),
        }
    }
}

/// A webhook's signing key: stored, used to sign, never printed or returned.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        WebhookSecret(value.into())
    }

    /// The key, for the one place that signs with it.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Where a trigger POSTs its firings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// An http or https URL.
    pub url: String,
    /// The HMAC-SHA256 key; without one, deliveries carry no signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<WebhookSecret>,
}

/// Where a mirror rule pushes: every platform of each image, so the
/// destination keeps the source's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorTarget {
    /// The destination, `REPOSITORY:TAG` (completed with the followed tag's
    /// name on create when it names none).
    pub to: String,
    /// Allow plain HTTP and unverified TLS to the destination.
    #[serde(default)]
    pub insecure: bool,
}

/// What a trigger follows and what it requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    /// The ImageStreamTag whose new images fire the trigger.
    pub from: TagRef,
    /// Build or Deploy.
    pub kind: TriggerKind,
    /// A paused trigger does not fire.
    #[serde(default)]
    pub paused: bool,
    /// Deploy only: the container whose image to set (empty: the deployment decides).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// Optional webhook (not for mirror rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// Mirror rules only: the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorTarget>,
}

/// A firing decided (its compare-and-swap committed) whose side effects are
/// not complete yet: the trigger's outbox entry. It stays in the trigger's
/// status until the firing is recorded, its event published and its webhook
/// delivered or given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingFiring {
    /// The firing id.
    pub id: String,
    /// The image that fired.
    pub image: String,
    /// Its pinned pull spec.
    #[serde(default)]
    pub docker_image_reference: String,
    /// The image fired before (empty for the first firing).
    #[serde(default)]
    pub previous_image: String,
    /// When the trigger fired (RFC 3339).
    pub time: String,
    /// W3C `traceparent` of the event that caused it, carried to the event it publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What a trigger last did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    /// The image of the last firing (or, with `--no-fire-existing`, the image
    /// the tag held at creation).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_triggered_image: String,
    /// When it last fired (RFC 3339); empty when never.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_trigger_time: String,
    /// The streams-bucket revision of the tag change that last fired it (or
    /// that it was created at): older changes are ignored.
    #[serde(default)]
    pub last_source_revision: u64,
    /// The id of the last firing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_firing: String,
    /// The outbox: firings whose side effects are not complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingFiring>,
    /// Mirror rules: the image last brought to the destination.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_mirrored_image: String,
    /// Mirror rules: when (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_mirror_time: String,
}

/// A build or deploy trigger, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// Namespace.
    pub namespace: String,
    /// Name (a DNS-1123 label).
    pub name: String,
    /// Assigned on create.
    pub uid: String,
    /// RFC 3339.
    pub creation_timestamp: String,
    /// What it follows and requests.
    pub spec: TriggerSpec,
    /// What it last did.
    #[serde(default)]
    pub status: TriggerStatus,
}

impl Trigger {
    /// The KV key of this trigger.
    pub fn key(&self) -> String {
        subjects::trigger_key(&self.namespace, &self.name)
    }

    /// The subject of the events it publishes; empty for a mirror rule.
    pub fn subject(&self) -> String {
        self.spec
            .kind
            .event_kind()
            .map(|kind| kind.subject(&self.namespace, &self.name))
            .unwrap_or_default()
    }

    /// The wire form: no secret, and `last_delivery` as given (it lives in the
    /// last firing's record).
    pub fn to_proto(&self, revision: u64, last_delivery: Option<&Delivery>) -> proto::Trigger {
        let spec = &self.spec;
        proto::Trigger {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            resource_version: revision.to_string(),
            creation_timestamp: self.creation_timestamp.clone(),
            spec: Some(proto::TriggerSpec {
                from: Some((&spec.from).into()),
                kind: proto::TriggerKind::from(spec.kind) as i32,
                paused: spec.paused,
                container: spec.container.clone(),
                webhook: spec.webhook.as_ref().map(|w| proto::Webhook {
                    url: w.url.clone(),
                    secret: String::new(),
                    has_secret: w.secret.is_some(),
                }),
                mirror: spec.mirror.as_ref().map(Into::into),
            }),
            status: Some(proto::TriggerStatus {
                last_triggered_image: self.status.last_triggered_image.clone(),
                last_trigger_time: self.status.last_trigger_time.clone(),
                last_firing: self.status.last_firing.clone(),
                last_delivery: last_delivery.map(Into::into),
                pending_firings: self.status.pending.iter().map(|p| p.id.clone()).collect(),
                last_mirrored_image: self.status.last_mirrored_image.clone(),
                last_mirror_time: self.status.last_mirror_time.clone(),
                conditions: self.mirrored_condition(last_delivery).into_iter().collect(),
            }),
            subject: self.subject(),
        }
    }
}

impl From<&MirrorTarget> for proto::MirrorTarget {
    fn from(m: &MirrorTarget) -> Self {
        proto::MirrorTarget {
            to: m.to.clone(),
            insecure: m.insecure,
        }
    }
}

/// The type of a mirror rule's condition.
pub const CONDITION_MIRRORED: &str = "Mirrored";

impl Trigger {
    /// A mirror rule's `Mirrored` condition, from its last firing's delivery
    /// (`None` for other kinds): True when the newest image is at the
    /// destination, False with the reason while it retries or after it
    /// gave up, Unknown on its way.
    pub fn mirrored_condition(&self, last: Option<&Delivery>) -> Option<proto::TriggerCondition> {
        if self.spec.kind != TriggerKind::Mirror {
            return None;
        }
        let attempt = last.and_then(Delivery::last);
        let time = attempt.map(|a| a.time.clone()).unwrap_or_default();
        let error = attempt.map(|a| a.error.clone()).unwrap_or_default();
        let mirrored = || {
            (
                "True",
                "Mirrored",
                format!(
                    "{} is at {}",
                    self.status.last_mirrored_image,
                    self.spec.mirror.as_ref().map_or("", |m| m.to.as_str())
                ),
            )
        };
        let on_its_way = || ("Unknown", "Mirroring", "a push is on its way".to_owned());
        let (status, reason, message) = match last.map(|d| d.state) {
            Some(DeliveryState::Succeeded) => mirrored(),
            Some(DeliveryState::Pending) if !error.is_empty() => ("False", "Retrying", error),
            Some(DeliveryState::Failed) => ("False", "Failed", error),
            Some(_) => on_its_way(),
            // the last firing is not recorded yet, or there is none
            None if !self.status.pending.is_empty() => on_its_way(),
            None if !self.status.last_mirrored_image.is_empty() => mirrored(),
            None => (
                "Unknown",
                "NothingMirrored",
                "the tag has held no image since the rule was made".to_owned(),
            ),
        };
        Some(proto::TriggerCondition {
            r#type: CONDITION_MIRRORED.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time: time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_refs_parse_with_an_optional_namespace() {
        assert_eq!(
            TagRef::parse("app:v1", "ns").unwrap().to_string(),
            "ns/app:v1"
        );
        assert_eq!(
            TagRef::parse("other/app.v2:latest", "ns")
                .unwrap()
                .to_string(),
            "other/app.v2:latest"
        );
        assert!(TagRef::parse("app", "ns").is_err());
        assert!(TagRef::parse("app:", "ns").is_err());
    }

    #[test]
    fn leases_are_available_when_free_own_or_lapsed() {
        let lease = Lease {
            holder: "a".into(),
            expires_ms: 100,
        };
        assert!(lease.available_to("a", 50));
        assert!(!lease.available_to("b", 50));
        assert!(lease.available_to("b", 100));
        assert!(Lease::default().available_to("b", 0));
    }

    #[test]
    fn delivery_history_is_bounded() {
        let mut d = Delivery::default();
        for i in 0..15 {
            d.record(DeliveryAttempt {
                status_code: 500 + i,
                ..Default::default()
            });
        }
        assert_eq!(d.attempts, 15);
        assert_eq!(d.history.len(), DELIVERY_HISTORY_KEPT);
        assert_eq!(d.last().unwrap().status_code, 514);
    }
}
