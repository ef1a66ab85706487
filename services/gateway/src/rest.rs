//! The REST JSON API at OpenShift's paths, merged into the process's HTTP
//! port:
//!
//! | method | path |
//! |---|---|
//! | GET | `/apis/image.openshift.io/v1/imagestreams` (every namespace) |
//! | GET, POST | `/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams` |
//! | GET, PUT, DELETE | `/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams/{name}` |
//! | GET | `/apis/image.openshift.io/v1/namespaces/{ns}/imagestreamimages/{stream}@{digest}` |
//! | GET | `/apis/image.openshift.io/v1/namespaces/{ns}/imagestreamtags/{stream}:{tag}` |
//! | the same | under `/osapi/v1/…`, the seed's `selfLink` prefix |
//!
//! Bodies are JSON or YAML (by `Content-Type`, else by their first
//! character), at most [`MAX_DOCUMENT_BYTES`], parsed strictly by the model:
//! an unknown field is a 400 naming its path. Lists take `labelSelector`,
//! `limit` and `continue`. Every error is a Kubernetes `Status` object with
//! Kubernetes' code and reason (see `ApiError::http_status`).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Extension, Json, Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::StreamExt as _;
use imagestreams_common::{
    auth::{Authenticated, Verb},
    error::{ApiError, KubeStatus, StatusCause, StatusDetails},
    model::{DocumentFormat, ImageStream, MAX_DOCUMENT_BYTES, ModelError},
    store::Freshness,
};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::{
    query::{self, ContinueToken},
    streams::{ListParams, Streams},
};

/// The API group of image streams.
pub const GROUP: &str = "image.openshift.io";
/// The resource name, as `Status.details.kind` spells it.
pub const RESOURCE: &str = "imagestreams";
/// The kind of a list of image streams.
pub const LIST_KIND: &str = "ImageStreamList";

/// The routes of the REST API over `streams`.
pub(crate) fn router(streams: Arc<Streams>) -> Router {
    let collection = get(list_namespace).post(create);
    let object = get(get_one).put(replace).delete(delete);
    Router::new()
        .route("/apis/image.openshift.io/v1/imagestreams", get(list_all))
        .route(
            "/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreams",
            collection.clone(),
        )
        .route(
            "/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreams/{name}",
            object.clone(),
        )
        .route("/osapi/v1/imagestreams", get(list_all))
        .route("/osapi/v1/namespaces/{namespace}/imagestreams", collection)
        .route(
            "/osapi/v1/namespaces/{namespace}/imagestreams/{name}",
            object,
        )
        .route(
            "/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreamimages/{name}",
            get(get_image),
        )
        .route(
            "/osapi/v1/namespaces/{namespace}/imagestreamimages/{name}",
            get(get_image),
        )
        .route(
            "/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreamtags/{name}",
            get(get_image_stream_tag),
        )
        .route(
            "/osapi/v1/namespaces/{namespace}/imagestreamtags/{name}",
            get(get_image_stream_tag),
        )
        .with_state(streams)
}

/// A REST failure: the error and what it is about, sent as a Kubernetes `Status`.
#[derive(Debug)]
pub(crate) struct RestError {
    error: ApiError,
    details: StatusDetails,
}

impl RestError {
    fn about(error: ApiError, name: &str) -> Self {
        Self::about_resource(error, RESOURCE, name)
    }

    fn about_resource(error: ApiError, resource: &str, name: &str) -> Self {
        RestError {
            error,
            details: StatusDetails {
                name: name.to_owned(),
                group: GROUP.to_owned(),
                kind: resource.to_owned(),
                ..StatusDetails::default()
            },
        }
    }

    fn with_causes(mut self, causes: Vec<StatusCause>) -> Self {
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
struct ObjectPath {
    namespace: String,
    name: String,
}

/// An `ImageStreamList`, as OpenShift serves it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageStreamList {
    kind: &'static str,
    api_version: &'static str,
    metadata: ListMeta,
    items: Vec<ImageStream>,
}

#[derive(Debug, Serialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "String::is_empty")]
    continue_token: String,
}

#[instrument(skip_all, err(level = "debug"))]
async fn list_all(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    uri: Uri,
) -> Result<Response, RestError> {
    auth.authorize(None, Verb::List)
        .map_err(|e| RestError::about(e, ""))?;
    list(&streams, None, &uri).await
}

#[instrument(skip_all, fields(namespace = %path.namespace), err(level = "debug"))]
async fn list_namespace(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<CollectionPath>,
    uri: Uri,
) -> Result<Response, RestError> {
    auth.authorize(Some(&path.namespace), Verb::List)
        .map_err(|e| RestError::about(e, ""))?;
    list(&streams, Some(path.namespace), &uri).await
}

async fn list(
    streams: &Streams,
    namespace: Option<String>,
    uri: &Uri,
) -> Result<Response, RestError> {
    let result = streams
        .deadline(async {
            let params = Query::<HashMap<String, String>>::try_from_uri(uri)
                .map_err(|e| ApiError::invalid("", format!("malformed query string: {e}")))?
                .0;
            let param = |key: &str| params.get(key).map(String::as_str).unwrap_or_default();
            if matches!(param("watch"), "true" | "1") {
                return Err(ApiError::invalid(
                    "watch",
                    "watch: watching over REST is not supported; use the gRPC Watch call",
                ));
            }
            if !param("fieldSelector").is_empty() {
                return Err(ApiError::invalid(
                    "fieldSelector",
                    "fieldSelector: field selectors are not supported; use labelSelector",
                ));
            }
            if let Some(ns) = &namespace {
                query::namespace(ns, "namespace")?;
            }
            let params = ListParams {
                selector: query::selector(param("labelSelector"))?,
                limit: query::limit_text(param("limit"), "limit")?,
                after: ContinueToken::decode(param("continue"), namespace.as_deref(), "continue")?,
                freshness: Freshness::parse(param("resourceVersion"), "resourceVersion")?,
                namespace,
            };
            streams.list(&params).await
        })
        .await
        .map_err(|e| RestError::about(e, ""))?;
    let list = ImageStreamList {
        kind: LIST_KIND,
        api_version: imagestreams_common::model::API_VERSION,
        metadata: ListMeta {
            resource_version: result.page.revision.to_string(),
            continue_token: result.continue_token,
        },
        items: result.page.items,
    };
    Ok(Json(list).into_response())
}

#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn get_one(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, RestError> {
    auth.authorize(Some(&path.namespace), Verb::Get)
        .map_err(|e| RestError::about(e, &path.name))?;
    let resource_version = params.get("resourceVersion").map_or("", String::as_str);
    let stream = streams
        .deadline(async {
            let freshness = Freshness::parse(resource_version, "resourceVersion")?;
            streams.get(&path.namespace, &path.name, freshness).await
        })
        .await
        .map_err(|e| RestError::about(e, &path.name))?;
    Ok(Json(stream).into_response())
}

/// `GET …/imagestreamimages/{stream}@{digest}`.
#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn get_image(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
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
    Ok(Json(image).into_response())
}

/// `GET …/imagestreamtags/{stream}:{tag}`.
#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn get_image_stream_tag(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
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
    Ok(Json(tag).into_response())
}

#[instrument(skip_all, fields(namespace = %path.namespace), err(level = "debug"))]
async fn create(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<CollectionPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    auth.authorize(Some(&path.namespace), Verb::Create)
        .map_err(|e| RestError::about(e, ""))?;
    let stream = read_stream(&headers, body, "").await?;
    let name = stream.metadata.name.clone();
    let created = streams
        .deadline(streams.create(&path.namespace, stream))
        .await
        .map_err(|e| RestError::about(e, &name))?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn replace(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    auth.authorize(Some(&path.namespace), Verb::Update)
        .map_err(|e| RestError::about(e, &path.name))?;
    let mut stream = read_stream(&headers, body, &path.name).await?;
    if stream.metadata.name.is_empty() {
        stream.metadata.name = path.name.clone();
    }
    let updated = streams
        .deadline(streams.update(&path.namespace, Some(&path.name), stream))
        .await
        .map_err(|e| RestError::about(e, &path.name))?;
    Ok(Json(updated).into_response())
}

#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn delete(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    auth.authorize(Some(&path.namespace), Verb::Delete)
        .map_err(|e| RestError::about(e, &path.name))?;
    let about = |e| RestError::about(e, &path.name);
    let body = read_body(&headers, body).await.map_err(about)?;
    let resource_version = delete_precondition(&body).map_err(about)?;
    let deleted = streams
        .deadline(streams.delete(&path.namespace, &path.name, &resource_version))
        .await
        .map_err(about)?;
    Ok(Json(KubeStatus::success(StatusDetails {
        name: path.name.clone(),
        group: GROUP.to_owned(),
        kind: RESOURCE.to_owned(),
        uid: deleted.metadata.uid,
        causes: Vec::new(),
    }))
    .into_response())
}

/// `preconditions.resourceVersion` of an optional `DeleteOptions` body.
fn delete_precondition(body: &[u8]) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let options: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("", format!("malformed DeleteOptions: {e}")))?;
    match options.pointer("/preconditions/resourceVersion") {
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(serde_json::Value::String(rv)) => Ok(rv.clone()),
        Some(other) => Err(ApiError::invalid(
            "preconditions.resourceVersion",
            format!("preconditions.resourceVersion: Invalid value: {other}: must be a string"),
        )),
    }
}

/// Reads the body, refusing more than [`MAX_DOCUMENT_BYTES`] with 413.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
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

/// Reads and parses an ImageStream body: YAML or JSON by `Content-Type`,
/// by its first character otherwise.
async fn read_stream(
    headers: &HeaderMap,
    body: Body,
    name: &str,
) -> Result<ImageStream, RestError> {
    let bytes = read_body(headers, body)
        .await
        .map_err(|e| RestError::about(e, name))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let parsed = if content_type.contains("yaml") {
        match std::str::from_utf8(&bytes) {
            Ok(text) => ImageStream::from_yaml(text),
            Err(e) => Err(ModelError::Malformed {
                format: DocumentFormat::Yaml,
                path: String::new(),
                message: format!("not UTF-8: {e}"),
            }),
        }
    } else if content_type.contains("json") {
        ImageStream::from_json(&bytes)
    } else {
        ImageStream::parse_document(&bytes)
    };
    parsed.map_err(|e| {
        let causes = match &e {
            ModelError::Invalid(errors) => StatusCause::from_validation(errors),
            _ => Vec::new(),
        };
        RestError::about(e.into(), name).with_causes(causes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_give_the_precondition() {
        assert_eq!(delete_precondition(b"").unwrap(), "");
        assert_eq!(delete_precondition(b" \n").unwrap(), "");
        assert_eq!(
            delete_precondition(
                br#"{"kind":"DeleteOptions","preconditions":{"resourceVersion":"7"}}"#
            )
            .unwrap(),
            "7"
        );
        assert_eq!(
            delete_precondition(br#"{"propagationPolicy":"Background"}"#).unwrap(),
            ""
        );
        assert_eq!(delete_precondition(b"{").unwrap_err().http_status(), 400);
        assert_eq!(
            delete_precondition(br#"{"preconditions":{"resourceVersion":7}}"#)
                .unwrap_err()
                .http_status(),
            400
        );
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413() {
        let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        let error = read_body(&HeaderMap::new(), Body::from(big))
            .await
            .unwrap_err();
        assert_eq!(error.http_status(), 413);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, (MAX_DOCUMENT_BYTES + 1).into());
        let error = read_body(&headers, Body::empty()).await.unwrap_err();
        assert_eq!(error.http_status(), 413);
        assert!(error.to_string().contains("limit"), "{error}");
        let ok = read_body(&HeaderMap::new(), Body::from("{}"))
            .await
            .unwrap();
        assert_eq!(ok, b"{}");
    }

    #[tokio::test]
    async fn yaml_and_json_bodies_parse_by_content_type() {
        let yaml = "apiVersion: v1\nkind: ImageStream\nmetadata:\n  name: ruby\n";
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/yaml".parse().unwrap());
        let is = read_stream(&headers, Body::from(yaml), "").await.unwrap();
        assert_eq!(is.metadata.name, "ruby");
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let error = read_stream(&headers, Body::from(yaml), "")
            .await
            .unwrap_err();
        assert_eq!(error.error.http_status(), 400);
        let error = read_stream(
            &HeaderMap::new(),
            Body::from(r#"{"kind":"ImageStream","apiVersion":"v1","metadata":{"name":"Bad"}}"#),
            "",
        )
        .await
        .unwrap_err();
        assert_eq!(error.error.http_status(), 422);
        assert_eq!(error.details.causes[0].field, "metadata.name");
    }
}
