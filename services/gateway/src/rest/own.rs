//! The resources of our own group, `imagestreams.io/v1` (receivers,
//! triggers), over REST: what kubectl asks of a resource that is created and
//! deleted, never changed in place.
//!
//! | method | path |
//! |---|---|
//! | GET (list, every namespace) | `/apis/imagestreams.io/v1/{resource}` |
//! | GET (list), POST | `/apis/imagestreams.io/v1/namespaces/{ns}/{resource}` |
//! | GET, DELETE | `/apis/imagestreams.io/v1/namespaces/{ns}/{resource}/{name}` |
//!
//! A resource says how its objects are read and written ([`OwnResource`]);
//! the handlers here do the rest, the same for all: names checked, the
//! rights ([`OwnResource::READ`], [`OwnResource::WRITE`]), the object's
//! namespace against the path's, documents read as JSON or YAML by
//! `fieldValidation`, dry runs (a create is refused, a delete only checks),
//! `Status` answers and Tables.

use std::future::Future;

use axum::{
    Extension, Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use imagestreams_common::{
    auth::{Authenticated, Verb},
    error::{ApiError, KubeStatus, StatusDetails},
};
use imagestreams_tag_syncer_api::check_names;
use serde::{Deserialize, de::DeserializeOwned};
use tracing::instrument;

use super::{
    ObjectPath, RestError, list_response, object_response, read_document, written_response,
};
use crate::kube::{Ask, OWN_GROUP, table::Printable};

/// A resource of our own group: its names, the rights it takes, and how its
/// objects are read and written.
pub(crate) trait OwnResource: Clone + Send + Sync + 'static {
    /// The document.
    type Object: Printable + DeserializeOwned + Send + 'static;
    /// The resource, as paths and `Status.details.kind` spell it (`receivers`).
    const RESOURCE: &'static str;
    /// The kind (`Receiver`).
    const KIND: &'static str;
    /// The kind of a list (`ReceiverList`).
    const LIST_KIND: &'static str;
    /// The right to list and get.
    const READ: Verb;
    /// The right to create and delete.
    const WRITE: Verb;

    /// The objects of `namespace`, of every namespace when `None`.
    fn list(
        &self,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Self::Object>, ApiError>> + Send;

    /// One object.
    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Self::Object, ApiError>> + Send;

    /// Creates `object` in `namespace` (its names and [`Self::WRITE`]
    /// checked); `auth`, for a right some objects take beyond it. The object
    /// as created.
    fn create(
        &self,
        auth: &Authenticated,
        namespace: &str,
        object: Self::Object,
    ) -> impl Future<Output = Result<Self::Object, ApiError>> + Send;

    /// Deletes one object.
    fn delete(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// The routes of resource `R` over `resource`.
pub(crate) fn router<R: OwnResource>(resource: R) -> Router {
    let all = format!("/apis/{OWN_GROUP}/v1/{}", R::RESOURCE);
    let collection = format!(
        "/apis/{OWN_GROUP}/v1/namespaces/{{namespace}}/{}",
        R::RESOURCE
    );
    Router::new()
        .route(&all, get(list_all::<R>))
        .route(&collection, get(list::<R>).post(create::<R>))
        .route(
            &format!("{collection}/{{name}}"),
            get(get_one::<R>).delete(delete::<R>),
        )
        .with_state(resource)
}

fn about<R: OwnResource>(name: &str) -> impl Fn(ApiError) -> RestError + Sync + '_ {
    move |error| RestError::about_in(error, OWN_GROUP, R::RESOURCE, name)
}

/// Checks an object path's names, and that the caller has `verb` in its
/// namespace.
fn admit(auth: &Authenticated, path: &ObjectPath, verb: Verb) -> Result<(), ApiError> {
    check_names(&path.namespace, &path.name)?;
    auth.authorize(Some(&path.namespace), verb)
}

/// `{namespace}` of the collection path.
#[derive(Debug, Deserialize)]
struct CollectionPath {
    namespace: String,
}

/// `kubectl get R -A`: needs the right to read in every namespace.
#[instrument(skip_all, fields(resource = R::RESOURCE), err(level = "debug"))]
async fn list_all<R: OwnResource>(
    State(resource): State<R>,
    Extension(auth): Extension<Authenticated>,
    ask: Ask,
) -> Result<Response, RestError> {
    auth.authorize(None, R::READ).map_err(about::<R>(""))?;
    list_of(&resource, None, &ask).await
}

#[instrument(skip_all, fields(resource = R::RESOURCE, namespace = %path.namespace), err(level = "debug"))]
async fn list<R: OwnResource>(
    State(resource): State<R>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<CollectionPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = about::<R>("");
    crate::query::namespace(&path.namespace, "namespace").map_err(&about)?;
    auth.authorize(Some(&path.namespace), R::READ)
        .map_err(&about)?;
    list_of(&resource, Some(&path.namespace), &ask).await
}

/// The objects as a list of `R::LIST_KIND`, or a Table.
async fn list_of<R: OwnResource>(
    resource: &R,
    namespace: Option<&str>,
    ask: &Ask,
) -> Result<Response, RestError> {
    let about = about::<R>("");
    let items = resource.list(namespace).await.map_err(&about)?;
    list_response(R::LIST_KIND, items, ask, String::new(), String::new()).map_err(&about)
}

#[instrument(skip_all, fields(resource = R::RESOURCE, namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn get_one<R: OwnResource>(
    State(resource): State<R>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = about::<R>(&path.name);
    admit(&auth, &path, R::READ).map_err(&about)?;
    let object = resource
        .get(&path.namespace, &path.name)
        .await
        .map_err(&about)?;
    object_response(object, &ask, StatusCode::OK).map_err(&about)
}

#[instrument(skip_all, fields(resource = R::RESOURCE, namespace = %path.namespace), err(level = "debug"))]
async fn create<R: OwnResource>(
    State(resource): State<R>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<CollectionPath>,
    ask: Ask,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    auth.authorize(Some(&path.namespace), R::WRITE)
        .map_err(about::<R>(""))?;
    let (object, dropped) = read_document::<R::Object>(
        &headers,
        body,
        R::KIND,
        ask.field_validation,
        &about::<R>(""),
    )
    .await?;
    let meta = object.meta();
    let name = meta.name.clone();
    let about = about::<R>(&name);
    if !meta.namespace.is_empty() && meta.namespace != path.namespace {
        return Err(about(ApiError::invalid(
            "metadata.namespace",
            format!(
                "the namespace of the object ({}) does not match the namespace of the request ({})",
                meta.namespace, path.namespace
            ),
        )));
    }
    check_names(&path.namespace, &name).map_err(&about)?;
    if ask.dry_run {
        return Err(about(ApiError::invalid(
            "dryRun",
            format!(
                "dryRun: Unsupported value: {} are not created in a dry run",
                R::RESOURCE
            ),
        )));
    }
    let created = resource
        .create(&auth, &path.namespace, object)
        .await
        .map_err(&about)?;
    written_response(created, &ask, StatusCode::CREATED, &dropped).map_err(&about)
}

#[instrument(skip_all, fields(resource = R::RESOURCE, namespace = %path.namespace, name = %path.name), err(level = "debug"))]
async fn delete<R: OwnResource>(
    State(resource): State<R>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = about::<R>(&path.name);
    admit(&auth, &path, R::WRITE).map_err(&about)?;
    if ask.dry_run {
        // checked, not deleted
        resource
            .get(&path.namespace, &path.name)
            .await
            .map_err(&about)?;
    } else {
        resource
            .delete(&path.namespace, &path.name)
            .await
            .map_err(&about)?;
    }
    Ok(Json(KubeStatus::success(StatusDetails {
        name: path.name.clone(),
        group: OWN_GROUP.to_owned(),
        kind: R::RESOURCE.to_owned(),
        ..StatusDetails::default()
    }))
    .into_response())
}
