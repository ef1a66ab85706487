//! Triggers and firings as `-o json|yaml` show them: views of the wire
//! messages with Kubernetes-style `apiVersion`, `kind` and `metadata`, never
//! with a secret (the API has none to give). A trigger is the same document
//! `kubectl get trigger -o yaml` shows ([`TriggerObject`]).

use imagestreams_common::model::ObjectMeta;
pub(super) use imagestreams_trigger_api::object::TriggerObject;
use imagestreams_trigger_api::object::{DeliveryObject, FromReference, kind_label};

use super::*;
use crate::client::output;

/// A Build, Deployment or Mirror as `-o json|yaml` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FiringView {
    pub(super) api_version: &'static str,
    pub(super) kind: &'static str,
    pub(super) metadata: ObjectMeta,
    pub(super) trigger: String,
    pub(super) from: FromReference,
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
    pub(super) delivery: Option<DeliveryObject>,
}

impl From<&pb::Firing> for FiringView {
    fn from(f: &pb::Firing) -> Self {
        FiringView {
            api_version: API_VERSION,
            kind: match kind_label(f.kind) {
                "Deploy" => "Deployment",
                "Mirror" => "Mirror",
                _ => "Build",
            },
            metadata: ObjectMeta {
                name: f.id.clone(),
                namespace: f.namespace.clone(),
                creation_timestamp: Some(f.time.clone()).filter(|t| !t.is_empty()),
                ..ObjectMeta::default()
            },
            trigger: f.trigger.clone(),
            from: f.from.as_ref().into(),
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
    let format = if yaml {
        output::Format::Yaml
    } else {
        output::Format::Json
    };
    out.write_all(output::objects(items, single, format)?.as_bytes())?;
    Ok(())
}
