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
//!   [`discovery`](super::discovery)).
//!
//! Strategic merge patch is deliberately not advertised on PATCH: kubectl
//! then computes JSON merge patches for `apply`, which need no schema
//! knowledge; `kubectl patch` (strategic by default) is still served.
//! `/openapi/v2` is not served: kubectl asks for it only when v3 fails, and
//! kube-aggregator skips a 404 there.

use std::sync::LazyLock;

use axum::{Extension, response::Response};
use imagestreams_common::{
    auth::Authenticated,
    image::view::{ImageStreamImage, ImageStreamTag},
    model::ImageStream,
};
use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    GROUP, GROUP_VERSION, VERSION,
    discovery::{Legacy, RESOURCES},
};

/// The group-version document's path.
pub const DOCUMENT_PATH: &str = "/openapi/v3/apis/image.openshift.io/v1";
/// The legacy `v1` document's path.
pub const LEGACY_DOCUMENT_PATH: &str = "/openapi/v3/api/v1";

/// A document and its hash.
type Hashed = (Value, String);

fn hashed(legacy: Legacy) -> Hashed {
    let document = document(legacy);
    let hash = hex(&Sha256::digest(document.to_string().as_bytes()));
    (document, hash)
}

static DOCUMENT: LazyLock<Hashed> = LazyLock::new(|| hashed(Legacy::No));
static LEGACY_DOCUMENT: LazyLock<Hashed> = LazyLock::new(|| hashed(Legacy::Yes));

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

/// A kind's GVK, as both the schema and its operations carry it.
fn gvk(legacy: Legacy, kind: &str) -> Value {
    let group = match legacy {
        Legacy::Yes => "",
        Legacy::No => GROUP,
    };
    json!({"group": group, "version": VERSION, "kind": kind})
}

/// The schema name of a kind (Kubernetes' reverse-domain naming).
fn schema_name(kind: &str) -> String {
    format!("com.github.openshift.api.image.v1.{kind}")
}

/// Adds `T`'s schema and everything it refers to, under its kind's name
/// with its GVK.
fn add_kind<T: JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
    schemas: &mut Map<String, Value>,
    legacy: Legacy,
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
    schemas.append(&mut definitions);
    if let Some(mut schema) = schemas.get(&derived).cloned() {
        schema["x-kubernetes-group-version-kind"] = json!([gvk(legacy, kind)]);
        schemas.insert(schema_name(kind), schema);
    }
}

fn parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}, "uniqueItems": true})
}

fn operation(legacy: Legacy, kind: &str, action: &str, description: &str, write: bool) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{}", schema_name(kind))});
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
        "x-kubernetes-group-version-kind": gvk(legacy, kind),
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

fn document(legacy: Legacy) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut schemas = Map::new();
    add_kind::<ImageStream>(&mut generator, &mut schemas, legacy, "ImageStream");
    add_kind::<ImageStreamTag>(&mut generator, &mut schemas, legacy, "ImageStreamTag");
    add_kind::<ImageStreamImage>(&mut generator, &mut schemas, legacy, "ImageStreamImage");
    let prefix = match legacy {
        Legacy::Yes => "/api/v1".to_owned(),
        Legacy::No => format!("/apis/{GROUP_VERSION}"),
    };
    let mut paths = Map::new();
    for resource in RESOURCES {
        let kind = resource.kind;
        let collection = format!("{prefix}/namespaces/{{namespace}}/{}", resource.name);
        let object = format!("{collection}/{{name}}");
        let serves = |verb: &str| resource.verbs.contains(&verb);
        let mut on_collection = Map::new();
        if serves("list") {
            on_collection.insert(
                "get".into(),
                operation(
                    legacy,
                    kind,
                    "list",
                    &format!("list {}", resource.name),
                    false,
                ),
            );
        }
        if serves("create") {
            on_collection.insert(
                "post".into(),
                operation(legacy, kind, "post", &format!("create a {kind}"), true),
            );
        }
        let mut on_object = Map::new();
        if serves("get") {
            on_object.insert(
                "get".into(),
                operation(legacy, kind, "get", &format!("read a {kind}"), false),
            );
        }
        if serves("update") {
            on_object.insert(
                "put".into(),
                operation(legacy, kind, "put", &format!("replace a {kind}"), true),
            );
        }
        if serves("patch") {
            on_object.insert(
                "patch".into(),
                operation(legacy, kind, "patch", &format!("patch a {kind}"), true),
            );
        }
        if serves("delete") {
            on_object.insert(
                "delete".into(),
                operation(legacy, kind, "delete", &format!("delete a {kind}"), false),
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
        // every ref resolves
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.get(name).is_some(), "dangling $ref {name}");
        }
    }
}
