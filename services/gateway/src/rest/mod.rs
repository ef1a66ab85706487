//! The REST JSON API at OpenShift's paths, merged into the process's HTTP
//! port, with the Kubernetes face around it (see [`crate::kube`]):
//!
//! | method | path |
//! |---|---|
//! | GET (list, `?watch=true`) | `/apis/image.openshift.io/v1/imagestreams` (every namespace) |
//! | GET (list, watch), POST | `/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams` |
//! | GET, PUT, PATCH, DELETE | `/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams/{name}` |
//! | GET | `…/imagestreams/{name}/history[?tag=&since=&at=]` (see [`crate::history`]) |
//! | GET | `/apis/image.openshift.io/v1/namespaces/{ns}/imagestreamimages/{stream}@{digest}` |
//! | GET | `/apis/image.openshift.io/v1/namespaces/{ns}/imagestreamtags/{stream}:{tag}` and the namespace's list |
//! | the same | under `/osapi/v1/…` (the seed's `selfLink` prefix) and `/api/v1/…` (the legacy `v1` kubectl maps `apiVersion: v1` to) |
//! | GET | `/version`, `/api`, `/apis`, `/apis/image.openshift.io[/v1]`, `/apis/imagestreams.io[/v1]`, `/api/v1/namespaces/{ns}`, `/openapi/v3[/apis/image.openshift.io/v1]` |
//! | GET (list), POST; GET, DELETE | `/apis/imagestreams.io/v1/namespaces/{ns}/receivers[/{name}]` (see [`crate::receivers::rest`]) |
//! | GET (list), POST; GET, DELETE | `/apis/imagestreams.io/v1/namespaces/{ns}/triggers[/{name}]` (see [`crate::triggers::rest`]) |
//!
//! Bodies are JSON or YAML (by `Content-Type`, else by their first
//! character), at most [`MAX_DOCUMENT_BYTES`], parsed strictly by the model:
//! an unknown field is a 400 naming its path (`fieldValidation=Warn` or
//! `Ignore` drop it instead). Lists take `labelSelector`, `fieldSelector`
//! (`metadata.name`, `metadata.namespace`), `limit` and `continue`; writes
//! take `dryRun=All`. Objects come back with the apiVersion of the path
//! asked, as a `meta.k8s.io` Table when `Accept` asks for one. Every error
//! is a Kubernetes `Status` object with Kubernetes' code and reason (see
//! `ApiError::http_status`). `patch` needs what `update` needs, `watch`
//! what `list` needs.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::StreamExt as _;
use imagestreams_common::{
    auth::{Authenticated, Verb},
    error::{ApiError, KubeStatus, StatusCause, StatusDetails},
    model::{DocumentFormat, ImageStream, MAX_DOCUMENT_BYTES, ModelError, TagReference},
};
use imagestreams_stream_store_api::Freshness;
use serde::{Deserialize, Serialize};
use tracing::instrument;

pub(crate) mod own;
mod writes;

use writes::{create, delete, patch, replace};

use crate::{
    kube::{
        Ask, FieldValidation, discovery, openapi,
        patch::{self, PatchType},
        table::{Printable, Table},
    },
    query::{self, ContinueToken},
    receivers::ReceiversClient,
    streams::{ListParams, Streams, conflict},
    watch::WatchParams,
};

/// The API group of image streams.
pub const GROUP: &str = crate::kube::GROUP;
/// The resource name, as `Status.details.kind` spells it.
pub const RESOURCE: &str = "imagestreams";
/// The kind of a list of image streams.
pub const LIST_KIND: &str = "ImageStreamList";
/// How often a PATCH is retried when a concurrent write moved the object.
const PATCH_ATTEMPTS: usize = 5;

/// The routes of the REST API and the Kubernetes face over `streams`, the
/// tag-syncer's `receivers` and the `triggers`.
pub(crate) fn router(
    streams: Arc<Streams>,
    receivers: ReceiversClient,
    triggers: crate::triggers::TriggersApi,
) -> Router {
    let collection = get(list_namespace).post(create);
    let object = get(get_one).put(replace).patch(patch).delete(delete);
    let mut router = Router::new()
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::core))
        .route("/apis", get(discovery::groups))
        .route("/apis/image.openshift.io", get(discovery::group))
        .route("/apis/image.openshift.io/v1", get(discovery::resources))
        .route("/apis/imagestreams.io", get(discovery::own_group))
        .route("/apis/imagestreams.io/v1", get(discovery::own_resources))
        .route("/api/v1", get(discovery::core_resources))
        .route("/api/v1/namespaces/{namespace}", get(discovery::namespace))
        .route("/openapi/v2", get(openapi::version_2))
        .route("/openapi/v3", get(openapi::index))
        .route(openapi::DOCUMENT_PATH, get(openapi::group_version))
        .route(openapi::LEGACY_DOCUMENT_PATH, get(openapi::legacy_version))
        .route(openapi::OWN_DOCUMENT_PATH, get(openapi::own_version));
    for prefix in ["/apis/image.openshift.io/v1", "/api/v1", "/osapi/v1"] {
        router = router
            .route(&format!("{prefix}/imagestreams"), get(list_all))
            .route(
                &format!("{prefix}/namespaces/{{namespace}}/imagestreams"),
                collection.clone(),
            )
            .route(
                &format!("{prefix}/namespaces/{{namespace}}/imagestreams/{{name}}"),
                object.clone(),
            )
            .route(
                &format!("{prefix}/namespaces/{{namespace}}/imagestreams/{{name}}/history"),
                get(crate::history::rest),
            )
            .route(
                &format!("{prefix}/namespaces/{{namespace}}/imagestreamimages/{{name}}"),
                get(get_image),
            )
            .route(
                &format!("{prefix}/namespaces/{{namespace}}/imagestreamtags"),
                get(list_image_stream_tags),
            )
            .route(
                &format!("{prefix}/namespaces/{{namespace}}/imagestreamtags/{{name}}"),
                get(get_image_stream_tag),
            );
    }
    router
        .with_state(streams)
        .merge(crate::receivers::rest::router(receivers))
        .merge(crate::triggers::rest::router(triggers))
}

/// A REST failure: the error and what it is about, sent as a Kubernetes `Status`.
#[derive(Debug)]
pub(crate) struct RestError {
    error: ApiError,
    details: StatusDetails,
}

impl RestError {
    pub(crate) fn about(error: ApiError, name: &str) -> Self {
        Self::about_resource(error, RESOURCE, name)
    }

    pub(crate) fn about_resource(error: ApiError, resource: &str, name: &str) -> Self {
        Self::about_in(error, GROUP, resource, name)
    }

    /// About the object `name` of `resource` in the API group `group`.
    pub(crate) fn about_in(error: ApiError, group: &str, resource: &str, name: &str) -> Self {
        RestError {
            error,
            details: StatusDetails {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: resource.to_owned(),
                ..StatusDetails::default()
            },
        }
    }

    pub(crate) fn with_causes(mut self, causes: Vec<StatusCause>) -> Self {
        self.details.causes = causes;
        self
    }
}

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.error, self.error.http_status())
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let status = KubeStatus::failure(&self.error, self.details);
        let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, Json(status)).into_response();
        if code == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// `{namespace}` of a collection path.
#[derive(Debug, Deserialize)]
struct CollectionPath {
    namespace: String,
}

/// `{namespace}/{name}` of an object path.
#[derive(Debug, Deserialize)]
pub(crate) struct ObjectPath {
    pub namespace: String,
    pub name: String,
}

/// A list, as OpenShift serves it (`ImageStreamList`, `ImageStreamTagList`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct List<T> {
    kind: &'static str,
    api_version: &'static str,
    metadata: ListMeta,
    items: Vec<T>,
}

#[derive(Debug, Serialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "String::is_empty")]
    continue_token: String,
}

/// One object, with the apiVersion of the path asked, as JSON or as a Table.
pub(crate) fn object_response<T: Printable>(
    mut item: T,
    ask: &Ask,
    code: StatusCode,
) -> Result<Response, ApiError> {
    item.set_api_version(ask.api_version);
    match ask.printing() {
        Some(printing) => {
            let revision = item.meta().resource_version.clone();
            Ok((code, Json(Table::of(&[item], printing, &revision, "")?)).into_response())
        }
        None => Ok((code, Json(item)).into_response()),
    }
}

/// A list page, as JSON or as a Table.
pub(crate) fn list_response<T: Printable>(
    kind: &'static str,
    mut items: Vec<T>,
    ask: &Ask,
    resource_version: String,
    continue_token: String,
) -> Result<Response, ApiError> {
    for item in &mut items {
        item.set_api_version(ask.api_version);
    }
    match ask.printing() {
        Some(printing) => Ok(Json(Table::of(
            &items,
            printing,
            &resource_version,
            &continue_token,
        )?)
        .into_response()),
        None => Ok(Json(List {
            kind,
            api_version: ask.api_version,
            metadata: ListMeta {
                resource_version,
                continue_token,
            },
            items,
        })
        .into_response()),
    }
}

/// A written object's response, with a `Warning` header per unknown field
/// dropped under `fieldValidation=Warn`.
pub(crate) fn written_response<T: Printable>(
    item: T,
    ask: &Ask,
    code: StatusCode,
    dropped: &[String],
) -> Result<Response, ApiError> {
    let mut response = object_response(item, ask, code)?;
    if ask.field_validation == FieldValidation::Warn {
        for path in dropped {
            if let Ok(value) = HeaderValue::from_str(&patch::unknown_field_warning(path)) {
                response.headers_mut().append(header::WARNING, value);
            }
        }
    }
    Ok(response)
}

/// The `metadata.name` and `metadata.namespace` a `fieldSelector` asks for.
fn field_selector(text: &str) -> Result<(Option<String>, Option<String>), ApiError> {
    let (mut name, mut namespace) = (None, None);
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (field, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(_, v)| !v.starts_with('='))
            .ok_or_else(|| {
                ApiError::invalid(
                    "fieldSelector",
                    format!("fieldSelector: Invalid value: {term:?}: only equality (metadata.name=NAME, metadata.namespace=NS) is supported"),
                )
            })?;
        match field.trim() {
            "metadata.name" => name = Some(value.trim().to_owned()),
            "metadata.namespace" => namespace = Some(value.trim().to_owned()),
            other => {
                return Err(ApiError::invalid(
                    "fieldSelector",
                    format!(
                        "fieldSelector: Invalid value: {other:?}: field label not supported; use metadata.name or metadata.namespace"
                    ),
                ));
            }
        }
    }
    Ok((name, namespace))
}

#[instrument(skip_all, err(level = "debug"))]
async fn list_all(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    ask: Ask,
) -> Result<Response, RestError> {
    list_or_watch(&streams, &auth, None, ask).await
}

#[instrument(skip_all, fields(namespace = %path.namespace), err(level = "debug"))]
async fn list_namespace(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<CollectionPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    list_or_watch(&streams, &auth, Some(path.namespace), ask).await
}

async fn list_or_watch(
    streams: &Streams,
    auth: &Authenticated,
    namespace: Option<String>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = |e| RestError::about(e, "");
    let (name, field_namespace) = field_selector(ask.param("fieldSelector")).map_err(about)?;
    // a fieldSelector on the namespace of a cluster-wide request narrows it
    let namespace = match (namespace, field_namespace) {
        (Some(path), Some(field)) if path != field => {
            return list_response::<ImageStream>(
                LIST_KIND,
                Vec::new(),
                &ask,
                String::new(),
                String::new(),
            )
            .map_err(about);
        }
        (Some(path), _) => Some(path),
        (None, field) => field,
    };
    if let Some(ns) = &namespace {
        query::namespace(ns, "namespace").map_err(about)?;
    }
    let verb = if ask.watch() { Verb::Watch } else { Verb::List };
    auth.authorize(namespace.as_deref(), verb).map_err(about)?;
    if ask.watch() {
        return watch(streams, namespace, name, ask).await.map_err(about);
    }
    let result = streams
        .deadline(async {
            let params = ListParams {
                selector: query::selector(ask.param("labelSelector"))?,
                limit: match name {
                    Some(_) => None,
                    None => query::limit_text(ask.param("limit"), "limit")?,
                },
                after: ContinueToken::decode(
                    ask.param("continue"),
                    namespace.as_deref(),
                    "continue",
                )?,
                freshness: Freshness::parse(ask.param("resourceVersion"), "resourceVersion")?,
                namespace,
            };
            streams.list(&params).await
        })
        .await
        .map_err(about)?;
    let mut items = result.page.items;
    if let Some(name) = &name {
        items.retain(|s| s.metadata.name == *name);
    }
    list_response(
        LIST_KIND,
        items,
        &ask,
        result.page.revision.to_string(),
        result.continue_token,
    )
    .map_err(about)
}

/// `?watch=true`: the changes as a chunked stream of JSON events.
async fn watch(
    streams: &Streams,
    namespace: Option<String>,
    name: Option<String>,
    ask: Ask,
) -> Result<Response, ApiError> {
    let from = query::watch_revision(ask.param("resourceVersion"), "resourceVersion")?;
    let sending = crate::kube::watch::Sending {
        api_version: ask.api_version,
        printing: ask.printing(),
        timeout: crate::kube::watch::timeout(ask.param("timeoutSeconds"))?,
        bookmarks: matches!(ask.param("allowWatchBookmarks"), "true" | "1"),
        from: from.map(|rv| rv.to_string()).unwrap_or_default(),
    };
    let selector = query::selector(ask.param("labelSelector"))?;
    // one stream by name across namespaces: watch them all, keep the name
    let (watched, only) = match (&namespace, name) {
        (Some(_), name) => (name, None),
        (None, name) => (None, name),
    };
    let params = WatchParams {
        namespace,
        name: watched,
        from,
        selector,
    };
    let mut changes = crate::watch::changes(streams, params).await?;
    if let Some(name) = only {
        changes = changes
            .filter(move |c| {
                let keep = c
                    .as_ref()
                    .map_or(true, |c| c.event().object().metadata.name == name);
                std::future::ready(keep)
            })
            .boxed();
    }
    Ok(crate::kube::watch::respond(changes, sending))
}

#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn get_one(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = |e| RestError::about(e, &path.name);
    auth.authorize(Some(&path.namespace), Verb::Get)
        .map_err(about)?;
    let stream = streams
        .deadline(async {
            let freshness = Freshness::parse(ask.param("resourceVersion"), "resourceVersion")?;
            streams.get(&path.namespace, &path.name, freshness).await
        })
        .await
        .map_err(about)?;
    object_response(stream, &ask, StatusCode::OK).map_err(about)
}

/// `GET …/imagestreamimages/{stream}@{digest}`.
#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn get_image(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = |e| RestError::about_resource(e, "imagestreamimages", &path.name);
    auth.authorize(Some(&path.namespace), Verb::Get)
        .map_err(about)?;
    let (stream, digest) = path.name.split_once('@').ok_or_else(|| {
        about(ApiError::invalid(
            "name",
            "name: Invalid value: an ImageStreamImage is named STREAM@DIGEST",
        ))
    })?;
    let image = streams
        .deadline(streams.image(&path.namespace, stream, digest))
        .await
        .map_err(about)?;
    object_response(image, &ask, StatusCode::OK).map_err(about)
}

/// `GET …/imagestreamtags/{stream}:{tag}`.
#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn get_image_stream_tag(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = |e| RestError::about_resource(e, "imagestreamtags", &path.name);
    auth.authorize(Some(&path.namespace), Verb::Get)
        .map_err(about)?;
    let (stream, tag) = path.name.split_once(':').ok_or_else(|| {
        about(ApiError::invalid(
            "name",
            "name: Invalid value: an ImageStreamTag is named STREAM:TAG",
        ))
    })?;
    let tag = streams
        .deadline(streams.image_stream_tag(&path.namespace, stream, tag))
        .await
        .map_err(about)?;
    object_response(tag, &ask, StatusCode::OK).map_err(about)
}

/// `GET …/namespaces/{ns}/imagestreamtags`: the current image of every tag
/// of the namespace's streams (those matching `labelSelector`).
#[instrument(skip_all, fields(namespace = %path.namespace), err(level = "debug"))]
async fn list_image_stream_tags(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<CollectionPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = |e| RestError::about_resource(e, "imagestreamtags", "");
    auth.authorize(Some(&path.namespace), Verb::List)
        .map_err(about)?;
    let (tags, revision) = streams
        .deadline(async {
            let params = ListParams {
                selector: query::selector(ask.param("labelSelector"))?,
                namespace: Some(path.namespace.clone()),
                ..ListParams::default()
            };
            let page = streams.list(&params).await?.page;
            let mut tags = Vec::new();
            for stream in &page.items {
                tags.extend(streams.image_stream_tags(stream).await?);
            }
            Ok((tags, page.revision))
        })
        .await
        .map_err(about)?;
    list_response(
        "ImageStreamTagList",
        tags,
        &ask,
        revision.to_string(),
        String::new(),
    )
    .map_err(about)
}

/// Reads the body, refusing more than [`MAX_DOCUMENT_BYTES`] with 413.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let too_large = |size: Option<usize>| {
        ApiError::TooLarge(match size {
            Some(size) => format!(
                "the request body is {size} bytes, more than the limit of {MAX_DOCUMENT_BYTES} bytes"
            ),
            None => {
                format!("the request body is more than the limit of {MAX_DOCUMENT_BYTES} bytes")
            }
        })
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = declared.filter(|&n| n > MAX_DOCUMENT_BYTES) {
        return Err(too_large(Some(size)));
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::invalid("", format!("cannot read the request body: {e}")))?;
        if bytes.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large(None));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Reads a document of `kind` of our own group from JSON or YAML: strictly,
/// or dropping unknown fields as `validation` says (returned, to be sent as
/// warnings). Failures are about what `about` names.
pub(crate) async fn read_document<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    kind: &str,
    validation: crate::kube::FieldValidation,
    about: &(dyn Fn(ApiError) -> RestError + Sync),
) -> Result<(T, Vec<String>), RestError> {
    let bytes = read_body(headers, body).await.map_err(about)?;
    let yaml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("yaml"))
        || !bytes.trim_ascii_start().starts_with(b"{");
    let value: serde_json::Value = match yaml {
        true => std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_norway::from_str(text).map_err(|e| e.to_string())),
        false => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
    }
    .map_err(|e| about(ApiError::invalid("", format!("malformed document: {e}"))))?;
    if value
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(kind)
        != kind
    {
        return Err(about(ApiError::invalid(
            "kind",
            format!("kind: Invalid value: {:?}: must be {kind}", value["kind"]),
        )));
    }
    crate::kube::patch::decode_as::<T>(value, validation)
        .map_err(|(error, causes): (ApiError, Vec<StatusCause>)| about(error).with_causes(causes))
}
