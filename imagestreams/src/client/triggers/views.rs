//! Triggers and firings as `-o json|yaml` show them: views of the wire
//! messages with Kubernetes-style `apiVersion`, `kind` and `metadata`, never
//! with a secret (the API has none to give).

use super::print::{delivery_state, kind_name};
use super::*;

/// A trigger as `-o json|yaml` shows it (never with a secret: the API has none to give).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TriggerView {
    pub(super) api_version: &'static str,
    pub(super) kind: &'static str,
    pub(super) metadata: Metadata,
    pub(super) spec: TriggerSpecView,
    pub(super) status: TriggerStatusView,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Metadata {
    pub(super) name: String,
    pub(super) namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) creation_timestamp: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FromView {
    pub(super) kind: &'static str,
    pub(super) namespace: String,
    pub(super) name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TriggerSpecView {
    pub(super) from: Option<FromView>,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) paused: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) container: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) webhook: Option<WebhookView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) mirror: Option<MirrorView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MirrorView {
    pub(super) to: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) insecure: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConditionView {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) status: String,
    pub(super) reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) last_transition_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WebhookView {
    pub(super) url: String,
    pub(super) has_secret: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TriggerStatusView {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) last_triggered_image: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) last_trigger_time: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) last_firing: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) last_delivery: Option<DeliveryView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) pending_firings: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) last_mirrored_image: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) last_mirror_time: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) conditions: Vec<ConditionView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeliveryView {
    pub(super) state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) url: String,
    pub(super) attempts: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) last_status_code: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) last_error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) last_attempt_time: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) next_attempt_time: String,
}

pub(super) fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl From<&pb::Delivery> for DeliveryView {
    fn from(d: &pb::Delivery) -> Self {
        DeliveryView {
            state: delivery_state(Some(d)),
            url: d.url.clone(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            last_attempt_time: d.last_attempt_time.clone(),
            next_attempt_time: d.next_attempt_time.clone(),
        }
    }
}

pub(super) fn from_view(from: Option<&pb::ImageStreamTagReference>) -> Option<FromView> {
    from.map(|f| FromView {
        kind: "ImageStreamTag",
        namespace: f.namespace.clone(),
        name: format!("{}:{}", f.stream, f.tag),
    })
}

impl From<&pb::Trigger> for TriggerView {
    fn from(t: &pb::Trigger) -> Self {
        let spec = t.spec.clone().unwrap_or_default();
        let status = t.status.clone().unwrap_or_default();
        TriggerView {
            api_version: API_VERSION,
            kind: "Trigger",
            metadata: Metadata {
                name: t.name.clone(),
                namespace: t.namespace.clone(),
                uid: t.uid.clone(),
                resource_version: t.resource_version.clone(),
                creation_timestamp: t.creation_timestamp.clone(),
            },
            spec: TriggerSpecView {
                from: from_view(spec.from.as_ref()),
                kind: kind_name(spec.kind),
                paused: spec.paused,
                container: spec.container,
                webhook: spec.webhook.map(|w| WebhookView {
                    url: w.url,
                    has_secret: w.has_secret,
                }),
                mirror: spec.mirror.map(|m| MirrorView {
                    to: m.to,
                    insecure: m.insecure,
                }),
            },
            status: TriggerStatusView {
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
                    .map(|c| ConditionView {
                        kind: c.r#type,
                        status: c.status,
                        reason: c.reason,
                        message: c.message,
                        last_transition_time: c.last_transition_time,
                    })
                    .collect(),
            },
        }
    }
}

/// A Build or Deployment as `-o json|yaml` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FiringView {
    pub(super) api_version: &'static str,
    pub(super) kind: &'static str,
    pub(super) metadata: Metadata,
    pub(super) trigger: String,
    pub(super) from: Option<FromView>,
    pub(super) image: String,
    pub(super) docker_image_reference: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) previous_image: String,
    pub(super) cause: String,
    pub(super) time: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) container: String,
    pub(super) event_published: bool,
    pub(super) complete: bool,
    pub(super) delivery: Option<DeliveryView>,
}

impl From<&pb::Firing> for FiringView {
    fn from(f: &pb::Firing) -> Self {
        FiringView {
            api_version: API_VERSION,
            kind: match kind_name(f.kind) {
                "Deploy" => "Deployment",
                "Mirror" => "Mirror",
                _ => "Build",
            },
            metadata: Metadata {
                name: f.id.clone(),
                namespace: f.namespace.clone(),
                uid: String::new(),
                resource_version: String::new(),
                creation_timestamp: f.time.clone(),
            },
            trigger: f.trigger.clone(),
            from: from_view(f.from.as_ref()),
            image: f.image.clone(),
            docker_image_reference: f.docker_image_reference.clone(),
            previous_image: f.previous_image.clone(),
            cause: f.cause.clone(),
            time: f.time.clone(),
            container: f.container.clone(),
            event_published: f.event_published,
            complete: f.complete,
            delivery: f.delivery.as_ref().map(Into::into),
        }
    }
}

/// One object when `single`, else a `List`, as JSON or YAML.
pub(super) fn write_document<T: Serialize>(
    out: &mut impl Write,
    items: &[T],
    single: bool,
    yaml: bool,
) -> Result<(), ClientError> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct List<'a, T> {
        api_version: &'static str,
        kind: &'static str,
        items: &'a [T],
    }
    let text = match (single, items.first()) {
        (true, Some(item)) => render(item, yaml)?,
        _ => render(
            &List {
                api_version: "v1",
                kind: "List",
                items,
            },
            yaml,
        )?,
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

pub(super) fn render<T: Serialize>(value: &T, yaml: bool) -> Result<String, ClientError> {
    if yaml {
        serde_norway::to_string(value).map_err(|e| ClientError::BadResponse(e.to_string()))
    } else {
        serde_json::to_string_pretty(value)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| ClientError::BadResponse(e.to_string()))
    }
}
