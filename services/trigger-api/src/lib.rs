//! Build and deploy triggers: the validated domain types (a [`Trigger`], its
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
    self,
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
    reference::is_valid_tag,
    requests,
    subjects::{self, Kind},
};

mod client;
mod firing;
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
}

impl TriggerKind {
    /// The subject kind of the event this trigger publishes.
    pub fn event_kind(self) -> Kind {
        match self {
            TriggerKind::Build => Kind::BuildsRequested,
            TriggerKind::Deploy => Kind::DeploymentsRequested,
        }
    }

    /// What a firing of this kind is called: `Build` or `Deployment`.
    pub fn firing_noun(self) -> &'static str {
        match self {
            TriggerKind::Build => "Build",
            TriggerKind::Deploy => "Deployment",
        }
    }
}

impl From<TriggerKind> for proto::TriggerKind {
    fn from(kind: TriggerKind) -> Self {
        match kind {
            TriggerKind::Build => proto::TriggerKind::Build,
            TriggerKind::Deploy => proto::TriggerKind::Deploy,
        }
    }
}

impl TryFrom<proto::TriggerKind> for TriggerKind {
    type Error = ApiError;

    fn try_from(kind: proto::TriggerKind) -> Result<Self, ApiError> {
        match kind {
            proto::TriggerKind::Build => Ok(TriggerKind::Build),
            proto::TriggerKind::Deploy => Ok(TriggerKind::Deploy),
            proto::TriggerKind::Unspecified => {
                Err(invalid("spec.kind", "Required value: Build or Deploy"))
            }
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
    /// Optional webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
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

    /// The subject of the events it publishes.
    pub fn subject(&self) -> String {
        self.spec
            .kind
            .event_kind()
            .subject(&self.namespace, &self.name)
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
            }),
            status: Some(proto::TriggerStatus {
                last_triggered_image: self.status.last_triggered_image.clone(),
                last_trigger_time: self.status.last_trigger_time.clone(),
                last_firing: self.status.last_firing.clone(),
                last_delivery: last_delivery.map(Into::into),
                pending_firings: self.status.pending.iter().map(|p| p.id.clone()).collect(),
            }),
            subject: self.subject(),
        }
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
        if kind == TriggerKind::Build && !spec.container.is_empty() {
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
        Ok(NewTrigger {
            namespace,
            name: trigger.name,
            spec: TriggerSpec {
                from,
                kind,
                paused: spec.paused,
                container: spec.container,
                webhook,
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
                }),
                ..Default::default()
            }),
            no_fire_existing: !t.fire_existing,
        }
    }
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
