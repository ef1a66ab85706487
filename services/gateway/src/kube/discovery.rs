//! Discovery, as Kubernetes clients read it before any other request:
//! `/version`, `/api`, `/apis` (the aggregated `apidiscovery.k8s.io`
//! document when asked for it, else `APIGroupList`), `/apis/image.openshift.io`
//! and `/apis/image.openshift.io/v1`, plus `GET /api/v1/namespaces/{ns}`,
//! which kubectl asks after a 404 to word its error.
//!
//! - `/version` is open to everyone (kube's `system:public-info-viewer`):
//!   kubectl's dispatcher reads its `minor` to pick the kubectl it runs.
//! - The other documents need an authenticated caller, any role (kube's
//!   `system:discovery`); kube-aggregator's availability probe is one.
//! - `/api` and `/api/v1` serve the legacy group-version `v1` (OpenShift
//!   3's `apiVersion: v1` of the seed document) with the same three kinds,
//!   so that `kubectl create -f` of a document written for `v1` finds its
//!   kind, as `oc` does. Only `image.openshift.io` has the short names
//!   (`is`, `istag`, `isimage`) and the `all` category, so `kubectl get is`
//!   and `get all` use it; a bare `kubectl get imagestreams` may resolve to
//!   `v1` (kubectl prefers the core group), and works the same.
//! - Whether an aggregated answer is one is told by its `Content-Type`
//!   alone, so it carries the version asked (`v2` or `v2beta1`).

use axum::{
    Extension, Json,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use imagestreams_common::{
    auth::Authenticated,
    error::{ApiError, KubeStatus, StatusDetails},
    model::is_dns1123_label,
};
use serde_json::{Value, json};

use super::{GROUP, GROUP_VERSION, OWN_GROUP, OWN_GROUP_VERSION, VERSION, accept};

/// The Kubernetes minor version `/version` reports: kubectl's dispatcher
/// runs the kubectl of this minor, and kubectl 1.30 on reads aggregated
/// discovery v2.
pub const KUBE_MINOR: &str = "32";

/// A resource as discovery lists it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resource {
    /// Plural name, as in the path.
    pub name: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Kind of its objects.
    pub kind: &'static str,
    /// Short names (`is`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// The verbs served.
    pub verbs: &'static [&'static str],
}

/// Every resource served under `image.openshift.io/v1`, with the verbs the
/// REST API serves for it (no subresources are served).
pub(crate) const RESOURCES: [Resource; 3] = [
    Resource {
        name: "imagestreams",
        singular: "imagestream",
        kind: "ImageStream",
        short_names: &["is"],
        categories: &["all"],
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
    },
    Resource {
        name: "imagestreamtags",
        singular: "imagestreamtag",
        kind: "ImageStreamTag",
        short_names: &["istag"],
        categories: &[],
        verbs: &["get", "list"],
    },
    Resource {
        name: "imagestreamimages",
        singular: "imagestreamimage",
        kind: "ImageStreamImage",
        short_names: &["isimage"],
        categories: &[],
        verbs: &["get"],
    },
];

/// Every resource served under our own group, `imagestreams.io/v1`: the
/// kinds OpenShift has none for.
pub(crate) const OWN_RESOURCES: [Resource; 2] = [
    Resource {
        name: "receivers",
        singular: "receiver",
        kind: "Receiver",
        short_names: &[],
        categories: &[],
        verbs: &["create", "delete", "get", "list"],
    },
    Resource {
        name: "triggers",
        singular: "trigger",
        kind: "Trigger",
        short_names: &[],
        categories: &[],
        verbs: &["create", "delete", "get", "list"],
    },
];

/// `GET /version`.
pub(crate) async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+imagestreams-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

/// A discovery document needs an authenticated caller, whatever its roles.
pub(crate) fn authenticated(auth: &Authenticated) -> Result<(), ApiError> {
    match &auth.0 {
        Ok(imagestreams_common::auth::Caller::Anonymous) => Err(ApiError::Unauthenticated(
            "Unauthorized: send a bearer token".into(),
        )),
        Ok(_) => Ok(()),
        Err(error) => Err(error.clone()),
    }
}

pub(crate) fn failure(error: &ApiError) -> Response {
    let status = KubeStatus::failure(error, StatusDetails::default());
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(status)).into_response()
}

fn accept_of(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// An aggregated discovery document of `version` (`v2` or `v2beta1`), with
/// the Content-Type that tells the client so.
fn aggregated(version: &str, items: Value) -> Response {
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let content_type =
        format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    let mut response = Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// A document for an authenticated caller.
pub(crate) fn document(auth: &Authenticated, body: impl FnOnce() -> Value) -> Response {
    match authenticated(auth) {
        Ok(()) => Json(body()).into_response(),
        Err(error) => failure(&error),
    }
}

/// A group list for an authenticated caller: aggregated (of the
/// group-versions `apis`) when the client asks for it, else `plain`.
fn group_list(
    auth: &Authenticated,
    headers: &HeaderMap,
    apis: &[Api],
    plain: impl FnOnce() -> Value,
) -> Response {
    if let Err(error) = authenticated(auth) {
        return failure(&error);
    }
    match accept::discovery_version(accept_of(headers)) {
        Some(version) => aggregated(
            version,
            Value::Array(apis.iter().map(|api| group_discovery(*api)).collect()),
        ),
        None => Json(plain()).into_response(),
    }
}

/// `GET /api`: the legacy `v1`, as `APIVersions` or aggregated.
pub(crate) async fn core(
    Extension(auth): Extension<Authenticated>,
    headers: HeaderMap,
) -> Response {
    group_list(&auth, &headers, &[Api::Legacy], || {
        json!({
            "kind": "APIVersions",
            "versions": [LEGACY_VERSION],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        })
    })
}

/// `GET /api/v1`.
pub(crate) async fn core_resources(Extension(auth): Extension<Authenticated>) -> Response {
    document(&auth, || resource_list(Api::Legacy))
}

/// `GET /apis`.
pub(crate) async fn groups(
    Extension(auth): Extension<Authenticated>,
    headers: HeaderMap,
) -> Response {
    group_list(
        &auth,
        &headers,
        &[Api::Image, Api::Own],
        || json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(Api::Image), api_group(Api::Own)]}),
    )
}

fn group_document(auth: &Authenticated, api: Api) -> Response {
    document(auth, || {
        let mut group = api_group(api);
        group["kind"] = json!("APIGroup");
        group["apiVersion"] = json!("v1");
        group
    })
}

/// `GET /apis/image.openshift.io`.
pub(crate) async fn group(Extension(auth): Extension<Authenticated>) -> Response {
    group_document(&auth, Api::Image)
}

/// `GET /apis/image.openshift.io/v1`.
pub(crate) async fn resources(Extension(auth): Extension<Authenticated>) -> Response {
    document(&auth, || resource_list(Api::Image))
}

/// `GET /apis/imagestreams.io`.
pub(crate) async fn own_group(Extension(auth): Extension<Authenticated>) -> Response {
    group_document(&auth, Api::Own)
}

/// `GET /apis/imagestreams.io/v1`.
pub(crate) async fn own_resources(Extension(auth): Extension<Authenticated>) -> Response {
    document(&auth, || resource_list(Api::Own))
}

/// `GET /api/v1/namespaces/{ns}`: every valid namespace exists (ours are
/// implicit, made by the first stream in them), so kubectl words a missing
/// stream's error as "imagestreams … not found" rather than blaming the path.
pub(crate) async fn namespace(
    Extension(auth): Extension<Authenticated>,
    Path(namespace): Path<String>,
) -> Response {
    if let Err(error) = authenticated(&auth) {
        return failure(&error);
    }
    if !is_dns1123_label(&namespace) {
        return failure(&ApiError::NotFound(format!(
            "namespaces \"{namespace}\" not found"
        )));
    }
    Json(json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": namespace},
        "spec": {},
        "status": {"phase": "Active"},
    }))
    .into_response()
}

fn api_group(api: Api) -> Value {
    let version = json!({"groupVersion": api.group_version(), "version": VERSION});
    json!({
        "name": api.group(),
        "versions": [version.clone()],
        "preferredVersion": version,
    })
}

/// A group-version served: each has its resources, discovery documents and
/// OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// The core group's `v1`, for documents written with `apiVersion: v1`:
    /// the image kinds again, without short names (`is` resolves to
    /// `image.openshift.io`).
    Legacy,
    /// `image.openshift.io/v1`: OpenShift's image kinds.
    Image,
    /// `imagestreams.io/v1`: our own kinds, which OpenShift has none for.
    Own,
}

impl Api {
    /// The group's name (empty for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Api::Legacy => "",
            Api::Image => GROUP,
            Api::Own => OWN_GROUP,
        }
    }

    /// `group/version`, or `v1` for the core group.
    pub fn group_version(self) -> &'static str {
        match self {
            Api::Legacy => LEGACY_VERSION,
            Api::Image => GROUP_VERSION,
            Api::Own => OWN_GROUP_VERSION,
        }
    }

    /// The prefix of its resources' paths.
    pub fn path_prefix(self) -> &'static str {
        match self {
            Api::Legacy => "/api/v1",
            Api::Image => "/apis/image.openshift.io/v1",
            Api::Own => "/apis/imagestreams.io/v1",
        }
    }

    /// Its resources.
    pub fn resources(self) -> &'static [Resource] {
        match self {
            Api::Legacy | Api::Image => &RESOURCES,
            Api::Own => &OWN_RESOURCES,
        }
    }
}

/// The legacy group-version.
pub(crate) const LEGACY_VERSION: &str = "v1";

/// The resources of a group-version, in the shape of `describe`.
fn resources_of(api: Api, describe: impl Fn(&Resource) -> Value) -> Vec<Value> {
    api.resources()
        .iter()
        .map(|r| {
            let mut resource = describe(r);
            // no short names or categories on the legacy v1: `is` and `all` resolve to the group
            if api != Api::Legacy {
                resource["shortNames"] = json!(r.short_names);
                if !r.categories.is_empty() {
                    resource["categories"] = json!(r.categories);
                }
            }
            resource
        })
        .collect()
}

/// The `APIResourceList` of a group-version (the legacy `v1` also has
/// `namespaces`, for kubectl's lookups).
pub(crate) fn resource_list(api: Api) -> Value {
    let mut resources = resources_of(api, |r| {
        json!({
            "name": r.name,
            "singularName": r.singular,
            "namespaced": true,
            "kind": r.kind,
            "verbs": r.verbs,
        })
    });
    if api == Api::Legacy {
        resources.push(json!({
            "name": "namespaces", "singularName": "namespace", "namespaced": false,
            "kind": "Namespace", "verbs": ["get"], "shortNames": ["ns"],
        }));
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api.group_version(),
        "resources": resources,
    })
}

/// A group in an `APIGroupDiscoveryList` (every resource needs its
/// `responseKind`, or clients drop it silently).
fn group_discovery(api: Api) -> Value {
    let group = api.group();
    let mut resources = resources_of(api, |r| {
        json!({
            "resource": r.name,
            "singularResource": r.singular,
            "scope": "Namespaced",
            "responseKind": {"group": group, "version": VERSION, "kind": r.kind},
            "verbs": r.verbs,
        })
    });
    if api == Api::Legacy {
        resources.push(json!({
            "resource": "namespaces", "singularResource": "namespace", "scope": "Cluster",
            "responseKind": {"group": "", "version": "v1", "kind": "Namespace"},
            "verbs": ["get"], "shortNames": ["ns"],
        }));
    }
    json!({
        "metadata": {"name": group},
        "versions": [{"version": VERSION, "freshness": "Current", "resources": resources}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_has_what_clients_need() {
        let list = resource_list(Api::Image);
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["imagestreams", "imagestreamtags", "imagestreamimages"]
        );
        assert_eq!(list["resources"][0]["shortNames"], json!(["is"]));
        assert_eq!(list["resources"][0]["categories"], json!(["all"]));
        let group = group_discovery(Api::Image);
        for resource in group["versions"][0]["resources"].as_array().unwrap() {
            assert_eq!(resource["responseKind"]["group"], GROUP, "{resource}");
            assert!(resource["responseKind"]["kind"].is_string(), "{resource}");
        }
        // the legacy v1 has the kinds, not the short names: `is` resolves to the group
        let legacy = resource_list(Api::Legacy);
        assert_eq!(legacy["groupVersion"], "v1");
        assert_eq!(legacy["resources"][0]["kind"], "ImageStream");
        assert!(legacy["resources"][0].get("shortNames").is_none());
        let legacy = group_discovery(Api::Legacy);
        assert_eq!(legacy["metadata"]["name"], "");
        assert_eq!(
            legacy["versions"][0]["resources"][0]["responseKind"]["group"],
            ""
        );
    }
}
