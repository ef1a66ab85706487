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
mod firing;
pub mod object;
mod reader;

pub use client::*;
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

/// A trigger to create, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrigger {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What it follows and requests.
    pub spec: TriggerSpec,
    /// Fire for the image the tag already holds (the default).
    pub fire_existing: bool,
}

impl TryFrom<proto::CreateTriggerRequest> for NewTrigger {
    type Error = ApiError;

    /// Validates a create request; the request's namespace fills an empty
    /// `trigger.namespace` and must match a set one, and an empty
    /// `from.namespace` means the trigger's own.
    fn try_from(request: proto::CreateTriggerRequest) -> Result<Self, ApiError> {
        let trigger = request
            .trigger
            .ok_or_else(|| invalid("trigger", "Required value"))?;
        let namespace = match (request.namespace.as_str(), trigger.namespace.as_str()) {
            ("", "") => return Err(invalid("namespace", "Required value")),
            (ns, "") | ("", ns) => ns.to_owned(),
            (a, b) if a == b => a.to_owned(),
            (a, b) => {
                return Err(invalid(
                    "namespace",
                    format!(
                        "the namespace of the request ({a}) does not match the trigger's ({b})"
                    ),
                ));
            }
        };
        if !is_dns1123_label(&namespace) {
            return Err(invalid(
                "namespace",
                format!("Invalid value: {namespace:?}: not a valid namespace"),
            ));
        }
        if !is_dns1123_label(&trigger.name) {
            return Err(invalid(
                "name",
                format!(
                    "Invalid value: {:?}: a trigger name must be a lowercase RFC 1123 label",
                    trigger.name
                ),
            ));
        }
        let spec = trigger
            .spec
            .ok_or_else(|| invalid("spec", "Required value"))?;
        let from = spec
            .from
            .ok_or_else(|| invalid("spec.from", "Required value"))?;
        let from = TagRef {
            namespace: if from.namespace.is_empty() {
                namespace.clone()
            } else {
                from.namespace
            },
            stream: from.stream,
            tag: from.tag,
        };
        from.validate("spec.from")?;
        let kind = TriggerKind::try_from(
            proto::TriggerKind::try_from(spec.kind).unwrap_or(proto::TriggerKind::Unspecified),
        )?;
        if kind != TriggerKind::Deploy && !spec.container.is_empty() {
            return Err(invalid(
                "spec.container",
                "Forbidden: a container is set only for Deploy triggers",
            ));
        }
        if !spec.container.is_empty() && !is_dns1123_label(&spec.container) {
            return Err(invalid(
                "spec.container",
                format!(
                    "Invalid value: {:?}: not a valid container name",
                    spec.container
                ),
            ));
        }
        let webhook = match spec.webhook {
            None => None,
            Some(w) if w.url.is_empty() && w.secret.is_empty() => None,
            Some(w) if w.url.is_empty() => {
                return Err(invalid(
                    "spec.webhook.url",
                    "Required value: a secret needs a webhook URL",
                ));
            }
            Some(w) => {
                check_webhook_url_shape(&w.url)?;
                Some(Webhook {
                    url: w.url,
                    secret: (!w.secret.is_empty()).then(|| WebhookSecret::new(w.secret)),
                })
            }
        };
        let mirror = mirror_target(kind, spec.mirror, &from, &namespace)?;
        if kind == TriggerKind::Mirror && webhook.is_some() {
            return Err(invalid(
                "spec.webhook",
                "Forbidden: a mirror rule's firings are pushes, not webhooks",
            ));
        }
        Ok(NewTrigger {
            namespace,
            name: trigger.name,
            spec: TriggerSpec {
                from,
                kind,
                paused: spec.paused,
                container: spec.container,
                webhook,
                mirror,
            },
            fire_existing: !request.no_fire_existing,
        })
    }
}

impl From<&NewTrigger> for proto::CreateTriggerRequest {
    fn from(t: &NewTrigger) -> Self {
        proto::CreateTriggerRequest {
            namespace: t.namespace.clone(),
            trigger: Some(proto::Trigger {
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                spec: Some(proto::TriggerSpec {
                    from: Some((&t.spec.from).into()),
                    kind: proto::TriggerKind::from(t.spec.kind) as i32,
                    paused: t.spec.paused,
                    container: t.spec.container.clone(),
                    webhook: t.spec.webhook.as_ref().map(|w| proto::Webhook {
                        url: w.url.clone(),
                        secret: w
                            .secret
                            .as_ref()
                            .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
                            .unwrap_or_default(),
                        has_secret: w.secret.is_some(),
                    }),
                    mirror: t.spec.mirror.as_ref().map(Into::into),
                }),
                ..Default::default()
            }),
            no_fire_existing: !t.fire_existing,
        }
    }
}

/// The destination of a mirror rule, checked: required for (and only for)
/// `Mirror`, a repository with an optional tag (the followed tag's name when
/// none), and only from a stream of the rule's own namespace, whose
/// credentials push it.
fn mirror_target(
    kind: TriggerKind,
    mirror: Option<proto::MirrorTarget>,
    from: &TagRef,
    namespace: &str,
) -> Result<Option<MirrorTarget>, ApiError> {
    let mirror = mirror.filter(|m| !m.to.is_empty());
    let Some(mirror) = mirror else {
        return if kind == TriggerKind::Mirror {
            Err(invalid(
                "spec.mirror.to",
                "Required value: the REPOSITORY[:TAG] a mirror rule pushes to",
            ))
        } else {
            Ok(None)
        };
    };
    if kind != TriggerKind::Mirror {
        return Err(invalid(
            "spec.mirror",
            "Forbidden: a destination is set only for Mirror rules",
        ));
    }
    if from.namespace != namespace {
        return Err(invalid(
            "spec.from.namespace",
            format!(
                "Forbidden: a mirror rule pushes images of its own namespace ({namespace}), not of {}",
                from.namespace
            ),
        ));
    }
    let to = mirror.to.trim();
    let bad = |why: String| invalid("spec.mirror.to", format!("Invalid value: {to:?}: {why}"));
    let reference = Reference::parse_normalized(to).map_err(|e| bad(e.to_string()))?;
    if reference.digest().is_some() {
        return Err(bad("a destination names a tag, not a digest".into()));
    }
    let to = match reference.tag() {
        Some(_) => to.to_owned(),
        None => format!("{to}:{}", from.tag),
    };
    Ok(Some(MirrorTarget {
        to,
        insecure: mirror.insecure,
    }))
}

/// The shape check of a webhook URL that needs no network: `http(s)://host…`,
/// no whitespace, no user info. The trigger service also applies its SSRF policy.
pub fn check_webhook_url_shape(url: &str) -> Result<(), ApiError> {
    let bad = |why: &str| invalid("spec.webhook.url", format!("Invalid value: {url:?}: {why}"));
    if url.len() > MAX_WEBHOOK_URL_LENGTH {
        return Err(bad("too long"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("holds whitespace"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("must be an http or https URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("must not hold credentials"));
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(bad("has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> proto::CreateTriggerRequest {
        proto::CreateTriggerRequest {
            namespace: "ns1".into(),
            trigger: Some(proto::Trigger {
                name: "app-build".into(),
                spec: Some(proto::TriggerSpec {
                    from: Some(proto::ImageStreamTagReference {
                        namespace: String::new(),
                        stream: "app".into(),
                        tag: "latest".into(),
                    }),
                    kind: proto::TriggerKind::Build as i32,
                    webhook: Some(proto::Webhook {
                        url: "https://ci.example.com/hook".into(),
                        secret: "s3cret".into(),
                        has_secret: false,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            no_fire_existing: false,
        }
    }

    #[test]
    fn a_valid_request_converts_and_defaults_the_namespace() {
        let t = NewTrigger::try_from(request()).unwrap();
        assert_eq!(t.namespace, "ns1");
        assert_eq!(t.spec.from.to_string(), "ns1/app:latest");
        assert_eq!(t.spec.kind, TriggerKind::Build);
        assert!(t.fire_existing);
        let back = NewTrigger::try_from(proto::CreateTriggerRequest::from(&t)).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let field = |r: proto::CreateTriggerRequest| match NewTrigger::try_from(r) {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let mut r = request();
        r.trigger.as_mut().unwrap().spec.as_mut().unwrap().kind = 0;
        assert_eq!(field(r), "spec.kind");
        let mut r = request();
        r.trigger.as_mut().unwrap().name = "Bad_Name".into();
        assert_eq!(field(r), "name");
        let mut r = request();
        r.trigger
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .from
            .as_mut()
            .unwrap()
            .tag = "bad tag".into();
        assert_eq!(field(r), "spec.from.tag");
        let mut r = request();
        r.trigger.as_mut().unwrap().spec.as_mut().unwrap().container = "web".into();
        assert_eq!(field(r), "spec.container");
        let mut r = request();
        r.trigger
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .webhook
            .as_mut()
            .unwrap()
            .url = "ftp://x/".into();
        assert_eq!(field(r), "spec.webhook.url");
        let mut r = request();
        r.namespace = "other".into();
        r.trigger.as_mut().unwrap().namespace = "ns1".into();
        assert_eq!(field(r), "namespace");
    }

    fn mirror_request(to: &str) -> proto::CreateTriggerRequest {
        let mut r = request();
        let spec = r.trigger.as_mut().unwrap().spec.as_mut().unwrap();
        spec.kind = proto::TriggerKind::Mirror as i32;
        spec.webhook = None;
        spec.mirror = Some(proto::MirrorTarget {
            to: to.into(),
            insecure: true,
        });
        r
    }

    #[test]
    fn mirror_rules_need_a_tagged_destination_of_their_own_namespace() {
        let rule = NewTrigger::try_from(mirror_request("registry.example.com/team/app")).unwrap();
        assert_eq!(rule.spec.kind, TriggerKind::Mirror);
        let target = rule.spec.mirror.clone().unwrap();
        assert_eq!(target.to, "registry.example.com/team/app:latest");
        assert!(target.insecure);
        let back = NewTrigger::try_from(proto::CreateTriggerRequest::from(&rule)).unwrap();
        assert_eq!(back, rule);
        let kept = NewTrigger::try_from(mirror_request("r.example.com/app:prod")).unwrap();
        assert_eq!(kept.spec.mirror.unwrap().to, "r.example.com/app:prod");

        let field = |r: proto::CreateTriggerRequest| match NewTrigger::try_from(r) {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert_eq!(field(mirror_request("")), "spec.mirror.to");
        assert_eq!(
            field(mirror_request("r.example.com/App:x")),
            "spec.mirror.to"
        );
        let digest = format!("r.example.com/app@sha256:{}", "a".repeat(64));
        assert_eq!(field(mirror_request(&digest)), "spec.mirror.to");
        let mut foreign = mirror_request("r.example.com/app");
        let spec = foreign.trigger.as_mut().unwrap().spec.as_mut().unwrap();
        spec.from.as_mut().unwrap().namespace = "other".into();
        assert_eq!(field(foreign), "spec.from.namespace");
        let mut hooked = mirror_request("r.example.com/app");
        hooked
            .trigger
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .webhook = Some(proto::Webhook {
            url: "https://ci.example.com/".into(),
            ..Default::default()
        });
        assert_eq!(field(hooked), "spec.webhook");
        let mut build = request();
        build
            .trigger
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .mirror = Some(proto::MirrorTarget {
            to: "r.example.com/app".into(),
            insecure: false,
        });
        assert_eq!(field(build), "spec.mirror");
    }

    #[test]
    fn a_mirror_rule_reports_whether_its_newest_image_is_there() {
        let rule = NewTrigger::try_from(mirror_request("r.example.com/app:prod")).unwrap();
        let mut stored = Trigger {
            namespace: rule.namespace.clone(),
            name: rule.name.clone(),
            uid: "u".into(),
            creation_timestamp: String::new(),
            spec: rule.spec.clone(),
            status: TriggerStatus::default(),
        };
        let status = |t: &Trigger, d: Option<&Delivery>| {
            let c = t.mirrored_condition(d).unwrap();
            (c.status, c.reason)
        };
        assert_eq!(
            status(&stored, None),
            ("Unknown".into(), "NothingMirrored".into())
        );
        let mut delivery = Delivery {
            state: DeliveryState::Pending,
            ..Delivery::default()
        };
        assert_eq!(
            status(&stored, Some(&delivery)),
            ("Unknown".into(), "Mirroring".into())
        );
        delivery.record(DeliveryAttempt {
            error: "Unauthorized: authentication required".into(),
            ..DeliveryAttempt::default()
        });
        assert_eq!(
            status(&stored, Some(&delivery)),
            ("False".into(), "Retrying".into())
        );
        delivery.state = DeliveryState::Failed;
        assert_eq!(
            status(&stored, Some(&delivery)),
            ("False".into(), "Failed".into())
        );
        delivery.state = DeliveryState::Succeeded;
        stored.status.last_mirrored_image = "sha256:1".into();
        let c = stored.mirrored_condition(Some(&delivery)).unwrap();
        assert_eq!(
            (c.status.as_str(), c.message.as_str()),
            ("True", "sha256:1 is at r.example.com/app:prod")
        );
        stored.spec.kind = TriggerKind::Build;
        assert!(stored.mirrored_condition(Some(&delivery)).is_none());
    }

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
    fn secrets_never_leave_through_debug_or_the_wire() {
        let t = NewTrigger::try_from(request()).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        let stored = Trigger {
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            uid: "u".into(),
            creation_timestamp: String::new(),
            spec: t.spec.clone(),
            status: TriggerStatus::default(),
        };
        let wire = stored.to_proto(3, None);
        let webhook = wire.spec.unwrap().webhook.unwrap();
        assert!(webhook.secret.is_empty());
        assert!(webhook.has_secret);
        assert_eq!(wire.resource_version, "3");
        assert_eq!(wire.subject, "imagestreams.builds.requested.ns1.app-build");
    }

    #[test]
    fn url_shapes_are_checked() {
        assert!(check_webhook_url_shape("http://127.0.0.1:8080/x").is_ok());
        assert!(check_webhook_url_shape("https://h").is_ok());
        assert!(check_webhook_url_shape("https://u:p@h/").is_err());
        assert!(check_webhook_url_shape("https:///x").is_err());
        assert!(check_webhook_url_shape("http://h/a b").is_err());
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
