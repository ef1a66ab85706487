//! OpenAPI v3 of `image.openshift.io/v1`, generated from the model's types
//! (schemars over the same serde attributes that read and write them), so
//! that `kubectl create/apply/replace -f` validate (kubectl checks that the
//! PATCH operation of the kind declares `fieldValidation`, then lets the
//! server validate strictly) and `kubectl explain is.spec.tags` works.
//!
//! - `GET /openapi/v3`: the index, pointing at the group-version document
//!   with a `hash` that changes when the document does (kubectl caches by it).
//! - `GET /openapi/v3/apis/image.openshift.io/v1`: the document, and
//!   `GET /openapi/v3/api/v1` the same for the legacy `v1` (see
//!   [`discovery`](super::discovery)); `GET /openapi/v3/apis/imagestreams.io/v1`
//!   that of our own group (receivers, triggers).
//!
//! Strategic merge patch is deliberately not advertised on PATCH: kubectl
//! then computes JSON merge patches for `apply`, which need no schema
//! knowledge; `kubectl patch` (strategic by default) is still served.
//!
//! `GET /openapi/v2` is an empty document (no definitions): kubectl reads it
//! when v3 cannot tell whether a kind's PATCH takes `fieldValidation`, as for
//! a kind that is not patched (a Receiver), and fails `create -f` when it is
//! missing; a kind absent from it is not validated client-side, and the
//! server still validates strictly.

use std::sync::LazyLock;

use axum::{Extension, response::Response};
use imagestreams_common::{auth::Authenticated, model::ImageStream};
use imagestreams_images_api::view::{ImageStreamImage, ImageStreamTag};
use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::{VERSION, discovery::Api};
use crate::receivers::rest::ReceiverObject;
use imagestreams_trigger_api::object::TriggerObject;

/// The group-version document's path.
pub const DOCUMENT_PATH: &str = "/openapi/v3/apis/image.openshift.io/v1";
/// The legacy `v1` document's path.
pub const LEGACY_DOCUMENT_PATH: &str = "/openapi/v3/api/v1";
/// Our own group's document's path.
pub const OWN_DOCUMENT_PATH: &str = "/openapi/v3/apis/imagestreams.io/v1";

/// A document and its hash.
type Hashed = (Value, String);

fn hashed(api: Api) -> Hashed {
    let document = document(api);
    let hash = hex(&Sha256::digest(document.to_string().as_bytes()));
    (document, hash)
}

static DOCUMENT: LazyLock<Hashed> = LazyLock::new(|| hashed(Api::Image));
static LEGACY_DOCUMENT: LazyLock<Hashed> = LazyLock::new(|| hashed(Api::Legacy));
static OWN_DOCUMENT: LazyLock<Hashed> = LazyLock::new(|| hashed(Api::Own));

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `GET /openapi/v3`.
pub(crate) async fn index(Extension(auth): Extension<Authenticated>) -> Response {
    super::discovery::document(&auth, || {
        let mut paths = Map::new();
        for (path, (_, hash)) in [
            (DOCUMENT_PATH, &*DOCUMENT),
            (LEGACY_DOCUMENT_PATH, &*LEGACY_DOCUMENT),
            (OWN_DOCUMENT_PATH, &*OWN_DOCUMENT),
        ] {
            paths.insert(
                path.trim_start_matches("/openapi/v3/").to_owned(),
                json!({"serverRelativeURL": format!("{path}?hash={hash}")}),
            );
        }
        json!({ "paths": paths })
    })
}

/// `GET /openapi/v3/apis/image.openshift.io/v1`.
pub(crate) async fn group_version(Extension(auth): Extension<Authenticated>) -> Response {
    super::discovery::document(&auth, || DOCUMENT.0.clone())
}

/// `GET /openapi/v3/api/v1`.
pub(crate) async fn legacy_version(Extension(auth): Extension<Authenticated>) -> Response {
    super::discovery::document(&auth, || LEGACY_DOCUMENT.0.clone())
}

/// `GET /openapi/v3/apis/imagestreams.io/v1`.
pub(crate) async fn own_version(Extension(auth): Extension<Authenticated>) -> Response {
    super::discovery::document(&auth, || OWN_DOCUMENT.0.clone())
}

/// The content type of a protobuf OpenAPI v2 document, as kube-openapi
/// names it (the `@v1.0` spelling is an `Accept` alias only).
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2`: empty, as protobuf (what kubectl asks for) or JSON.
pub(crate) async fn version_2(
    Extension(auth): Extension<Authenticated>,
    headers: axum::http::HeaderMap,
) -> Response {
    use axum::{http::header, response::IntoResponse as _};
    if let Err(error) = super::discovery::authenticated(&auth) {
        return super::discovery::failure(&error);
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.contains("protobuf") || !accept.contains("json") {
        // an empty `openapi_v2.Document` message is zero bytes
        return ([(header::CONTENT_TYPE, V2_PROTOBUF)], Vec::<u8>::new()).into_response();
    }
    axum::Json(json!({
        "swagger": "2.0",
        "info": {"title": "imagestreams", "version": env!("CARGO_PKG_VERSION")},
        "paths": {},
    }))
    .into_response()
}

/// A kind's GVK, as both the schema and its operations carry it.
fn gvk(api: Api, kind: &str) -> Value {
    json!({"group": api.group(), "version": VERSION, "kind": kind})
}

/// The schema name of a kind (Kubernetes' reverse-domain naming).
fn schema_name(api: Api, kind: &str) -> String {
    match api {
        Api::Own => format!("io.imagestreams.v1.{kind}"),
        Api::Image | Api::Legacy => format!("com.github.openshift.api.image.v1.{kind}"),
    }
}

/// Adds `T`'s schema and everything it refers to, under its kind's name
/// with its GVK.
fn add_kind<T: JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
    schemas: &mut Map<String, Value>,
    api: Api,
    kind: &str,
) {
    let reference = generator.subschema_for::<T>();
    // the derived schema's own name, which references point at
    let derived = reference
        .as_value()
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or(kind)
        .to_owned();
    let mut definitions = generator.take_definitions(true);
    for schema in definitions.values_mut() {
        optional_refs_as_all_of(schema);
    }
    schemas.append(&mut definitions);
    if let Some(mut schema) = schemas.get(&derived).cloned() {
        schema["x-kubernetes-group-version-kind"] = json!([gvk(api, kind)]);
        schemas.insert(schema_name(api, kind), schema);
    }
}

/// Rewrites each optional struct field, which schemars writes as
/// `anyOf: [{$ref}, {enum: [null], nullable: true}]`, as Kubernetes' own
/// documents do: `allOf: [{$ref}]`. `kubectl explain` follows `allOf` into
/// the referred schema (`is.spec.tags.importPolicy.scheduled`) and stops at
/// `anyOf`.
fn optional_refs_as_all_of(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let optional_ref = object
                .get("anyOf")
                .and_then(Value::as_array)
                .and_then(|any| {
                    let [reference, null] = any.as_slice() else {
                        return None;
                    };
                    let is_null = null.get("enum") == Some(&json!([null]));
                    (is_null && reference.get("$ref").is_some()).then(|| reference.clone())
                });
            if let Some(reference) = optional_ref {
                object.remove("anyOf");
                object.insert("allOf".into(), json!([reference]));
            }
            object.values_mut().for_each(optional_refs_as_all_of);
        }
        Value::Array(items) => items.iter_mut().for_each(optional_refs_as_all_of),
        _ => {}
    }
}

fn parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}, "uniqueItems": true})
}

fn operation(api: Api, kind: &str, action: &str, description: &str, write: bool) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{}", schema_name(api, kind))});
    let mut parameters = Vec::new();
    if write {
        parameters.push(parameter(
            "dryRun",
            "All: check the request, store nothing.",
        ));
        parameters.push(parameter(
            "fieldManager",
            "Accepted and ignored: no managedFields are kept.",
        ));
        parameters.push(parameter(
            "fieldValidation",
            "Strict (default): an unknown field is a 400; Warn: dropped with a warning; Ignore: dropped.",
        ));
    }
    let mut operation = json!({
        "description": description,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(api, kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference.clone()}}}},
    });
    match action {
        "patch" => {
            operation["requestBody"] = json!({"content": {
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/apply-patch+yaml": {"schema": {"type": "object"}},
            }, "required": true});
        }
        "post" | "put" => {
            operation["requestBody"] =
                json!({"content": {"application/json": {"schema": reference}}, "required": true});
        }
        _ => {}
    }
    operation
}

fn document(api: Api) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut schemas = Map::new();
    match api {
        Api::Image | Api::Legacy => {
            add_kind::<ImageStream>(&mut generator, &mut schemas, api, "ImageStream");
            add_kind::<ImageStreamTag>(&mut generator, &mut schemas, api, "ImageStreamTag");
            add_kind::<ImageStreamImage>(&mut generator, &mut schemas, api, "ImageStreamImage");
        }
        Api::Own => {
            add_kind::<ReceiverObject>(&mut generator, &mut schemas, api, "Receiver");
            add_kind::<TriggerObject>(&mut generator, &mut schemas, api, "Trigger");
        }
    }
    let prefix = api.path_prefix();
    let mut paths = Map::new();
    for resource in api.resources() {
        let kind = resource.kind;
        let collection = format!("{prefix}/namespaces/{{namespace}}/{}", resource.name);
        let object = format!("{collection}/{{name}}");
        let serves = |verb: &str| resource.verbs.contains(&verb);
        let mut on_collection = Map::new();
        if serves("list") {
            on_collection.insert(
                "get".into(),
                operation(api, kind, "list", &format!("list {}", resource.name), false),
            );
        }
        if serves("create") {
            on_collection.insert(
                "post".into(),
                operation(api, kind, "post", &format!("create a {kind}"), true),
            );
        }
        let mut on_object = Map::new();
        if serves("get") {
            on_object.insert(
                "get".into(),
                operation(api, kind, "get", &format!("read a {kind}"), false),
            );
        }
        if serves("update") {
            on_object.insert(
                "put".into(),
                operation(api, kind, "put", &format!("replace a {kind}"), true),
            );
        }
        if serves("patch") {
            on_object.insert(
                "patch".into(),
                operation(api, kind, "patch", &format!("patch a {kind}"), true),
            );
        }
        if serves("delete") {
            on_object.insert(
                "delete".into(),
                operation(api, kind, "delete", &format!("delete a {kind}"), false),
            );
        }
        let namespace = json!([{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}]);
        if !on_collection.is_empty() {
            on_collection.insert("parameters".into(), namespace.clone());
            paths.insert(collection, Value::Object(on_collection));
        }
        on_object.insert(
            "parameters".into(),
            json!([
                {"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
            ]),
        );
        paths.insert(object, Value::Object(on_object));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "imagestreams", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_the_model_and_the_patch_parameters() {
        let (document, hash) = &*DOCUMENT;
        assert_eq!(hash.len(), 64);
        let schemas = &document["components"]["schemas"];
        let stream = &schemas["com.github.openshift.api.image.v1.ImageStream"];
        assert_eq!(
            stream["x-kubernetes-group-version-kind"][0]["kind"],
            "ImageStream"
        );
        // generated from the model: its fields and docs, with the serde names
        assert!(stream["properties"]["spec"].is_object(), "{stream}");
        let spec_ref = stream["properties"]["spec"].to_string();
        assert!(spec_ref.contains("ImageStreamSpec"), "{spec_ref}");
        let spec = &schemas["ImageStreamSpec"];
        assert!(
            spec["properties"]["dockerImageRepository"]["description"]
                .as_str()
                .unwrap()
                .contains("external repository")
        );
        assert!(spec["properties"]["tags"].is_object());
        let patch = &document["paths"]["/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreams/{name}"]
            ["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "ImageStream"
        );
        assert!(patch["parameters"].to_string().contains("fieldValidation"));
        assert!(
            patch["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        // optional structs as Kubernetes writes them, which kubectl explain follows
        let tag = &schemas["TagReference"]["properties"];
        assert_eq!(
            tag["policy"]["allOf"],
            json!([{"$ref": "#/components/schemas/TagPolicy"}])
        );
        assert!(tag["importPolicy"].get("anyOf").is_none(), "{tag}");
        // every ref resolves
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.get(name).is_some(), "dangling $ref {name}");
        }
    }
}
