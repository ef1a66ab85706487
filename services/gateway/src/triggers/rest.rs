//! Triggers over REST, in our own group `imagestreams.io/v1`, so that
//! `kubectl get triggers`, `kubectl create -f mirror-rule.yaml`, `kubectl get
//! trigger NAME -o yaml` and `kubectl delete trigger NAME` work as
//! `imagestreams get triggers` does:
//!
//! | method | path |
//! |---|---|
//! | GET (list, every namespace) | `/apis/imagestreams.io/v1/triggers` |
//! | GET (list), POST | `/apis/imagestreams.io/v1/namespaces/{ns}/triggers` |
//! | GET, DELETE | `/apis/imagestreams.io/v1/namespaces/{ns}/triggers/{name}` |
//!
//! The document is [`TriggerObject`] (the CLI's `-o yaml` shows the same).
//! A webhook's `secret` goes in and never comes out. A trigger is not changed
//! in place (as with the gRPC service): delete and create it again. The rights
//! are the gRPC service's: `get`/`list` to read, `triggers` to create and
//! delete, and `import` as well to create a mirror rule.

use axum::{
    Extension, Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use imagestreams_common::{
    auth::{Authenticated, Verb},
    error::{ApiError, KubeStatus, StatusDetails},
    model::{ObjectMeta, is_dns1123_label},
};
use imagestreams_trigger_api::{
    NewTrigger,
    object::{KIND, LIST_KIND, TriggerObject},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use super::{TriggersApi, create_verbs};
use crate::{
    kube::{Ask, OWN_GROUP, table::Printable},
    rest::{
        ObjectPath, RestError, list_response, object_response, read_document, written_response,
    },
};

/// The resource name, as paths and `Status.details.kind` spell it.
pub const RESOURCE: &str = "triggers";

/// A trigger as a row of `kubectl get triggers`.
struct Row(TriggerObject);

impl serde::Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl Printable for Row {
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
        &self.0.metadata
    }

    fn set_api_version(&mut self, api_version: &str) {
        self.0.api_version = api_version.to_owned();
    }

    fn cells(&self, now: DateTime<Utc>) -> Vec<Value> {
        let (spec, status) = (&self.0.spec, self.0.status.clone().unwrap_or_default());
        let target = match (&spec.webhook, &spec.mirror) {
            (Some(w), _) => w.url.clone(),
            (None, Some(m)) => m.to.clone(),
            (None, None) => String::new(),
        };
        vec![
            json!(self.0.metadata.name),
            json!(spec.kind),
            json!(spec.from.name),
            json!(status.last_triggered_image),
            json!(status.last_delivery.map(|d| d.state).unwrap_or_default()),
            json!(crate::kube::table::age(
                self.0.metadata.creation_timestamp.as_deref(),
                now
            )),
            json!(target),
            json!(spec.paused),
        ]
    }
}

/// The routes of triggers over `api`.
pub(crate) fn router(api: TriggersApi) -> Router {
    let prefix = "/apis/imagestreams.io/v1/namespaces/{namespace}/triggers";
    Router::new()
        .route("/apis/imagestreams.io/v1/triggers", get(list_all))
        .route(prefix, get(list).post(create))
        .route(&format!("{prefix}/{{name}}"), get(get_one).delete(delete))
        .with_state(api)
}

fn about(name: &str) -> impl Fn(ApiError) -> RestError + '_ {
    move |error| RestError::about_in(error, OWN_GROUP, RESOURCE, name)
}

fn check_names(namespace: &str, name: &str) -> Result<(), ApiError> {
    for (field, value) in [("namespace", namespace), ("name", name)] {
        if !is_dns1123_label(value) {
            return Err(ApiError::invalid(
                field,
                format!("{field}: Invalid value: {value:?}: not a DNS-1123 label"),
            ));
        }
    }
    Ok(())
}

/// `{namespace}` of the collection path.
#[derive(Debug, Deserialize)]
struct CollectionPath {
    namespace: String,
}

#[instrument(skip_all, err(level = "debug"))]
async fn list_all(
    State(api): State<TriggersApi>,
    Extension(auth): Extension<Authenticated>,
    ask: Ask,
) -> Result<Response, RestError> {
    auth.authorize(None, Verb::List).map_err(about(""))?;
    list_of(&api, None, &ask).await
}

#[instrument(skip_all, fields(namespace = %path.namespace), err(level = "debug"))]
async fn list(
    State(api): State<TriggersApi>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<CollectionPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = about("");
    crate::query::namespace(&path.namespace, "namespace").map_err(&about)?;
    auth.authorize(Some(&path.namespace), Verb::List)
        .map_err(&about)?;
    list_of(&api, Some(&path.namespace), &ask).await
}

/// The triggers of `namespace` (of every namespace when `None`), as a
/// `TriggerList` or a Table.
async fn list_of(
    api: &TriggersApi,
    namespace: Option<&str>,
    ask: &Ask,
) -> Result<Response, RestError> {
    let about = about("");
    let stored = api.reader.list(namespace).await.map_err(&about)?;
    let mut items = Vec::with_capacity(stored.len());
    for trigger in &stored {
        let wire = api.reader.to_proto(trigger).await.map_err(&about)?;
        items.push(Row(TriggerObject::from_proto(&wire)));
    }
    list_response(LIST_KIND, items, ask, String::new(), String::new()).map_err(&about)
}

#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn get_one(
    State(api): State<TriggersApi>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = about(&path.name);
    check_names(&path.namespace, &path.name).map_err(&about)?;
    auth.authorize(Some(&path.namespace), Verb::Get)
        .map_err(&about)?;
    let stored = api
        .reader
        .get(&path.namespace, &path.name)
        .await
        .map_err(&about)?;
    let wire = api.reader.to_proto(&stored).await.map_err(&about)?;
    object_response(Row(TriggerObject::from_proto(&wire)), &ask, StatusCode::OK).map_err(&about)
}

#[instrument(skip_all, fields(namespace = %path.namespace), err(level = "debug"))]
async fn create(
    State(api): State<TriggersApi>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<CollectionPath>,
    ask: Ask,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    auth.authorize(Some(&path.namespace), Verb::Triggers)
        .map_err(about(""))?;
    let (object, dropped) =
        read_document::<TriggerObject>(&headers, body, KIND, ask.field_validation, &about(""))
            .await?;
    let name = object.metadata.name.clone();
    let about = about(&name);
    let request = object.into_request(&path.namespace);
    let kind = request
        .trigger
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map_or(0, |s| s.kind);
    for verb in create_verbs(kind) {
        auth.authorize(Some(&path.namespace), *verb)
            .map_err(&about)?;
    }
    let trigger = NewTrigger::try_from(request).map_err(&about)?;
    if ask.dry_run {
        return Err(about(ApiError::invalid(
            "dryRun",
            "dryRun: Unsupported value: triggers are not created in a dry run",
        )));
    }
    let created = api.client.create(&trigger).await.map_err(&about)?;
    written_response(
        Row(TriggerObject::from_proto(&created)),
        &ask,
        StatusCode::CREATED,
        &dropped,
    )
    .map_err(&about)
}

#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn delete(
    State(api): State<TriggersApi>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = about(&path.name);
    check_names(&path.namespace, &path.name).map_err(&about)?;
    auth.authorize(Some(&path.namespace), Verb::Triggers)
        .map_err(&about)?;
    if ask.dry_run {
        // checked, not deleted
        api.reader
            .get(&path.namespace, &path.name)
            .await
            .map_err(&about)?;
    } else {
        api.client
            .delete(&path.namespace, &path.name)
            .await
            .map_err(&about)?;
    }
    Ok(Json(KubeStatus::success(StatusDetails {
        name: path.name.clone(),
        group: OWN_GROUP.to_owned(),
        kind: RESOURCE.to_owned(),
        ..StatusDetails::default()
    }))
    .into_response())
}
