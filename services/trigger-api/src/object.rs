//! A trigger as a Kubernetes-style object, `apiVersion: imagestreams.io/v1`,
//! `kind: Trigger`: what `kubectl` reads and writes through the gateway's
//! Kubernetes face, and what `imagestreams get triggers -o yaml` prints. The
//! same document both ways, built from the wire message (never with a secret:
//! the wire has none to give).
//!
//! ```yaml
//! apiVersion: imagestreams.io/v1
//! kind: Trigger
//! metadata: {name: prod-out, namespace: team-a}
//! spec:
//!   from: {kind: ImageStreamTag, name: "app:prod"}   # namespace: the trigger's
//!   type: Mirror                   # Build | Deploy | Mirror
//!   mirror: {to: registry.example.com/team/app:prod}
//!   # webhook: {url: https://ci.example.com/hook, secret: …}   # Build, Deploy; secret write-only
//!   # container: web               # Deploy
//!   # paused: true
//!   # noFireExisting: true         # on create: do not fire for the image the tag holds now
//! status:                          # set by the server
//!   lastTriggeredImage: sha256:…
//!   lastMirroredImage: sha256:…
//!   conditions: [{type: Mirrored, status: "True", reason: Mirrored, …}]
//! ```

use imagestreams_common::model::ObjectMeta;
use imagestreams_proto::v1 as proto;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The group and version triggers are served under.
pub const API_VERSION: &str = "imagestreams.io/v1";
/// The kind.
pub const KIND: &str = "Trigger";
/// The kind of a list of triggers.
pub const LIST_KIND: &str = "TriggerList";

/// A build or deploy trigger, or a mirror rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerObject {
    /// `imagestreams.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Trigger`.
    #[serde(default)]
    pub kind: String,
    /// Its name, namespace, uid, resourceVersion and creation time.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What it follows and does.
    pub spec: TriggerObjectSpec,
    /// What it last did: set by the server, ignored on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TriggerObjectStatus>,
}

/// The ImageStreamTag a trigger follows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FromReference {
    /// `ImageStreamTag`.
    #[serde(default)]
    pub kind: String,
    /// The stream's namespace; empty: the trigger's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `STREAM:TAG`.
    pub name: String,
}

/// What a trigger follows and does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerObjectSpec {
    /// The ImageStreamTag whose new images fire it.
    pub from: FromReference,
    /// `Build` (publishes BuildRequested), `Deploy` (DeploymentRequested) or
    /// `Mirror` (pushes each new image to `mirror.to`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A paused trigger does not fire.
    #[serde(default)]
    pub paused: bool,
    /// Deploy only: the container whose image the deployment sets.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// Build and Deploy: where each firing is POSTed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookObject>,
    /// Mirror only: where each new image is pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorObject>,
    /// On create only: do not fire for the image the tag holds now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_fire_existing: bool,
}

/// A trigger's webhook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookObject {
    /// An http or https URL.
    pub url: String,
    /// Write-only: the HMAC-SHA256 signing key; never returned.
    #[serde(default, skip_serializing)]
    pub secret: String,
    /// Read-only: whether a secret is set.
    #[serde(default)]
    pub has_secret: bool,
}

/// A mirror rule's destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorObject {
    /// `REPOSITORY[:TAG]` in any registry; without a tag, the followed tag's name.
    pub to: String,
    /// Allow plain HTTP and unverified TLS to the destination.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// What a trigger last did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerObjectStatus {
    /// The image of the last firing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_triggered_image: String,
    /// When it last fired (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_trigger_time: String,
    /// The id of the last firing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_firing: String,
    /// The last firing's delivery: its webhook, or a mirror rule's push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<DeliveryObject>,
    /// Firings whose side effects are not complete yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_firings: Vec<String>,
    /// Mirror rules: the image last brought to the destination.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_mirrored_image: String,
    /// Mirror rules: when (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_mirror_time: String,
    /// Mirror rules: `Mirrored`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionObject>,
}

/// One condition, as Kubernetes spells them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionObject {
    /// `Mirrored`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one word.
    pub reason: String,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the last attempt was made (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_transition_time: String,
}

/// Where one firing's delivery stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryObject {
    /// `Pending`, `Succeeded`, `Failed`, `Superseded`, or `<none>` without a webhook.
    pub state: String,
    /// The webhook URL, or a mirror rule's destination.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// The last HTTP status; absent when none came.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_status_code: i32,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    /// When the last attempt was made (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_attempt_time: String,
    /// When the next one is due (Pending only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_attempt_time: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// How a delivery state of the wire is spelt.
pub fn delivery_state_label(state: i32) -> &'static str {
    match proto::DeliveryState::try_from(state) {
        Ok(proto::DeliveryState::Pending) => "Pending",
        Ok(proto::DeliveryState::Succeeded) => "Succeeded",
        Ok(proto::DeliveryState::Failed) => "Failed",
        Ok(proto::DeliveryState::Superseded) => "Superseded",
        _ => "<none>",
    }
}

/// How a trigger kind of the wire is spelt.
pub fn kind_label(kind: i32) -> &'static str {
    match proto::TriggerKind::try_from(kind) {
        Ok(proto::TriggerKind::Build) => "Build",
        Ok(proto::TriggerKind::Deploy) => "Deploy",
        Ok(proto::TriggerKind::Mirror) => "Mirror",
        _ => "Unknown",
    }
}

impl From<&proto::Delivery> for DeliveryObject {
    fn from(d: &proto::Delivery) -> Self {
        DeliveryObject {
            state: delivery_state_label(d.state).to_owned(),
            url: d.url.clone(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            last_attempt_time: d.last_attempt_time.clone(),
            next_attempt_time: d.next_attempt_time.clone(),
        }
    }
}

impl From<Option<&proto::ImageStreamTagReference>> for FromReference {
    fn from(from: Option<&proto::ImageStreamTagReference>) -> Self {
        from.map(|f| FromReference {
            kind: "ImageStreamTag".to_owned(),
            namespace: f.namespace.clone(),
            name: format!("{}:{}", f.stream, f.tag),
        })
        .unwrap_or_default()
    }
}

impl TriggerObject {
    /// The trigger as the API shows it.
    pub fn from_proto(t: &proto::Trigger) -> Self {
        let spec = t.spec.clone().unwrap_or_default();
        let status = t.status.clone().unwrap_or_default();
        TriggerObject {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: ObjectMeta {
                name: t.name.clone(),
                namespace: t.namespace.clone(),
                uid: t.uid.clone(),
                resource_version: t.resource_version.clone(),
                creation_timestamp: Some(t.creation_timestamp.clone()).filter(|t| !t.is_empty()),
                ..ObjectMeta::default()
            },
            spec: TriggerObjectSpec {
                from: spec.from.as_ref().into(),
                kind: kind_label(spec.kind).to_owned(),
                paused: spec.paused,
                container: spec.container,
                webhook: spec.webhook.map(|w| WebhookObject {
                    url: w.url,
                    secret: String::new(),
                    has_secret: w.has_secret,
                }),
                mirror: spec.mirror.map(|m| MirrorObject {
                    to: m.to,
                    insecure: m.insecure,
                }),
                no_fire_existing: false,
            },
            status: Some(TriggerObjectStatus {
                last_triggered_image: status.last_triggered_image,
                last_trigger_time: status.last_trigger_time,
                last_firing: status.last_firing,
                last_delivery: status.last_delivery.as_ref().map(Into::into),
                pending_firings: status.pending_firings,
                last_mirrored_image: status.last_mirrored_image,
                last_mirror_time: status.last_mirror_time,
                conditions: status
                    .conditions
                    .into_iter()
                    .map(|c| ConditionObject {
                        kind: c.r#type,
                        status: c.status,
                        reason: c.reason,
                        message: c.message,
                        last_transition_time: c.last_transition_time,
                    })
                    .collect(),
            }),
        }
    }

    /// The create request of this object in `namespace` (validated by
    /// [`crate::NewTrigger`]'s conversion, as a gRPC create is).
    pub fn into_request(self, namespace: &str) -> proto::CreateTriggerRequest {
        let spec = self.spec;
        let (stream, tag) = match spec.from.name.rsplit_once(':') {
            Some((stream, tag)) => (stream.to_owned(), tag.to_owned()),
            None => (spec.from.name.clone(), String::new()),
        };
        let kind = match spec.kind.to_ascii_lowercase().as_str() {
            "build" => proto::TriggerKind::Build,
            "deploy" | "deployment" => proto::TriggerKind::Deploy,
            "mirror" => proto::TriggerKind::Mirror,
            _ => proto::TriggerKind::Unspecified,
        };
        proto::CreateTriggerRequest {
            namespace: namespace.to_owned(),
            trigger: Some(proto::Trigger {
                namespace: self.metadata.namespace,
                name: self.metadata.name,
                spec: Some(proto::TriggerSpec {
                    from: Some(proto::ImageStreamTagReference {
                        namespace: spec.from.namespace,
                        stream,
                        tag,
                    }),
                    kind: kind as i32,
                    paused: spec.paused,
                    container: spec.container,
                    webhook: spec.webhook.map(|w| proto::Webhook {
                        url: w.url,
                        secret: w.secret,
                        has_secret: false,
                    }),
                    mirror: spec.mirror.map(|m| proto::MirrorTarget {
                        to: m.to,
                        insecure: m.insecure,
                    }),
                }),
                ..proto::Trigger::default()
            }),
            no_fire_existing: spec.no_fire_existing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewTrigger;

    #[test]
    fn a_document_creates_what_the_cli_would() {
        let object: TriggerObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "imagestreams.io/v1", "kind": "Trigger",
            "metadata": {"name": "prod-out"},
            "spec": {
                "from": {"kind": "ImageStreamTag", "name": "app:prod"},
                "type": "Mirror",
                "mirror": {"to": "registry.example.com/team/app"},
                "noFireExisting": true
            }
        }))
        .unwrap();
        let rule = NewTrigger::try_from(object.into_request("team-a")).unwrap();
        assert_eq!(rule.namespace, "team-a");
        assert_eq!(rule.spec.from.to_string(), "team-a/app:prod");
        assert_eq!(
            rule.spec.mirror.unwrap().to,
            "registry.example.com/team/app:prod"
        );
        assert!(!rule.fire_existing);
    }

    #[test]
    fn the_webhook_secret_goes_in_and_never_comes_out() {
        let object: TriggerObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b"},
            "spec": {"from": {"name": "app:latest"}, "type": "Build",
                     "webhook": {"url": "https://ci.example.com/h", "secret": "s3cr3t"}}
        }))
        .unwrap();
        let text = serde_json::to_string(&object).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        let request = object.into_request("ns");
        let webhook = request.trigger.unwrap().spec.unwrap().webhook.unwrap();
        assert_eq!(webhook.secret, "s3cr3t");
    }

    #[test]
    fn a_wire_trigger_shows_its_status() {
        let object = TriggerObject::from_proto(&proto::Trigger {
            namespace: "ns".into(),
            name: "m".into(),
            resource_version: "7".into(),
            spec: Some(proto::TriggerSpec {
                from: Some(proto::ImageStreamTagReference {
                    namespace: "ns".into(),
                    stream: "app".into(),
                    tag: "prod".into(),
                }),
                kind: proto::TriggerKind::Mirror as i32,
                mirror: Some(proto::MirrorTarget {
                    to: "r.example.com/app:prod".into(),
                    insecure: false,
                }),
                ..Default::default()
            }),
            status: Some(proto::TriggerStatus {
                last_mirrored_image: "sha256:1".into(),
                conditions: vec![proto::TriggerCondition {
                    r#type: "Mirrored".into(),
                    status: "True".into(),
                    reason: "Mirrored".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        });
        let value = serde_json::to_value(&object).unwrap();
        assert_eq!(value["kind"], "Trigger");
        assert_eq!(value["metadata"]["resourceVersion"], "7");
        assert_eq!(value["spec"]["type"], "Mirror");
        assert_eq!(value["spec"]["from"]["name"], "app:prod");
        assert_eq!(value["status"]["lastMirroredImage"], "sha256:1");
        assert_eq!(value["status"]["conditions"][0]["type"], "Mirrored");
    }
}
