//! Triggers over REST, in our own group `imagestreams.io/v1`, so that
//! `kubectl get triggers`, `kubectl create -f mirror-rule.yaml`, `kubectl get
//! trigger NAME -o yaml` and `kubectl delete trigger NAME` work as
//! `imagestreams get triggers` does, under
//! `/apis/imagestreams.io/v1/namespaces/{ns}/triggers[/{name}]` (the
//! handlers are those of every resource of our group, [`own`]).
//!
//! The document is [`TriggerObject`] (the CLI's `-o yaml` shows the same).
//! A webhook's `secret` goes in and never comes out. A trigger is not changed
//! in place (as with the gRPC service): delete and create it again. The rights
//! are the gRPC service's: `get` and `list` to read, `triggers` to create and
//! delete, and `import` as well to create a mirror rule.

use axum::Router;
use chrono::{DateTime, Utc};
use imagestreams_common::{
    auth::{Authenticated, Verb},
    error::ApiError,
    model::ObjectMeta,
};
use imagestreams_trigger_api::{
    NewTrigger,
    object::{KIND, LIST_KIND, TriggerObject},
};
use serde_json::{Value, json};

use super::{TriggersApi, create_verbs};
use crate::{
    kube::table::Printable,
    rest::own::{self, OwnResource},
};

/// The resource name, as paths and `Status.details.kind` spell it.
pub const RESOURCE: &str = "triggers";

impl Printable for TriggerObject {
    const COLUMNS: &'static [(&'static str, &'static str, bool)] = &[
        ("Name", "Name must be unique within a namespace.", false),
        ("Type", "Build, Deploy or Mirror.", false),
        ("From", "The ImageStreamTag it follows.", false),
        ("Last Image", "The image it last fired for.", false),
        (
            "Delivery",
            "Where the last firing's webhook or push stands.",
            false,
        ),
        ("Age", "When the trigger was created.", false),
        (
            "Target",
            "The webhook URL, or a mirror rule's destination.",
            true,
        ),
        ("Paused", "Whether it fires.", true),
    ];

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn set_api_version(&mut self, api_version: &str) {
        self.api_version = api_version.to_owned();
    }

    fn cells(&self, now: DateTime<Utc>) -> Vec<Value> {
        let (spec, status) = (&self.spec, self.status.clone().unwrap_or_default());
        let target = match (&spec.webhook, &spec.mirror) {
            (Some(w), _) => w.url.clone(),
            (None, Some(m)) => m.to.clone(),
            (None, None) => String::new(),
        };
        vec![
            json!(self.metadata.name),
            json!(spec.kind),
            json!(spec.from.name),
            json!(status.last_triggered_image),
            json!(status.last_delivery.map(|d| d.state).unwrap_or_default()),
            json!(crate::kube::table::age(
                self.metadata.creation_timestamp.as_deref(),
                now
            )),
            json!(target),
            json!(spec.paused),
        ]
    }
}

/// The routes of triggers over `api`.
pub(crate) fn router(api: TriggersApi) -> Router {
    own::router(api)
}

impl OwnResource for TriggersApi {
    type Object = TriggerObject;
    const RESOURCE: &'static str = RESOURCE;
    const KIND: &'static str = KIND;
    const LIST_KIND: &'static str = LIST_KIND;
    const READ: Verb = Verb::Get;
    const WRITE: Verb = Verb::Triggers;

    async fn list(&self, namespace: Option<&str>) -> Result<Vec<TriggerObject>, ApiError> {
        let stored = self.reader.list(namespace).await?;
        let mut items = Vec::with_capacity(stored.len());
        for trigger in &stored {
            items.push(TriggerObject::from_proto(
                &self.reader.to_proto(trigger).await?,
            ));
        }
        Ok(items)
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<TriggerObject, ApiError> {
        let stored = self.reader.get(namespace, name).await?;
        Ok(TriggerObject::from_proto(
            &self.reader.to_proto(&stored).await?,
        ))
    }

    /// A mirror rule takes the `import` right as well.
    async fn create(
        &self,
        auth: &Authenticated,
        namespace: &str,
        object: TriggerObject,
    ) -> Result<TriggerObject, ApiError> {
        let request = object.into_request(namespace);
        let kind = request
            .trigger
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .map_or(0, |s| s.kind);
        for verb in create_verbs(kind) {
            auth.authorize(Some(namespace), *verb)?;
        }
        let trigger = NewTrigger::try_from(request)?;
        Ok(TriggerObject::from_proto(
            &self.client.create(&trigger).await?,
        ))
    }

    async fn delete(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        self.client.delete(namespace, name).await.map(|_| ())
    }
}
