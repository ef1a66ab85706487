//! The Kubernetes face of the REST API: what `kubectl`, `oc`, client-go,
//! python-kubernetes and kube-rs need around OpenShift's resource paths.
//!
//! - [`discovery`]: `/version`, `/api`, `/apis…`, and the namespaces kubectl asks about.
//! - [`accept`]: content negotiation; never a 406, plain JSON is the fallback.
//! - [`table`]: server-side printing (`as=Table`) with OpenShift's columns.
//! - [`watch`]: `?watch=true`, chunked JSON events from the same feed as gRPC.
//! - [`patch`]: merge, strategic-merge, JSON and apply patches.
//! - [`openapi`]: `/openapi/v3`, generated from the model, for validation and `kubectl explain`.
//!
//! Two groups are served: OpenShift's `image.openshift.io/v1` (and the
//! legacy `v1`) with its image kinds, and our own `imagestreams.io/v1` with
//! the kinds OpenShift has none for (`Receiver`, see
//! [`crate::receivers::rest`]; `Trigger`, see [`crate::triggers::rest`]).
//!
//! Every request's query is read once into [`Ask`]: the apiVersion objects
//! come back with (that of the path asked: `image.openshift.io/v1` under
//! `/apis`, `v1` under `/api/v1` and `/osapi/v1`), whether a Table is wanted, `dryRun` and
//! `fieldValidation`.

pub(crate) mod accept;
pub(crate) mod discovery;
pub(crate) mod openapi;
pub(crate) mod patch;
pub mod pki;
pub(crate) mod request_header;
pub(crate) mod table;
pub(crate) mod watch;

use std::collections::HashMap;

use axum::{
    extract::{FromRequestParts, Query},
    http::{header, request::Parts},
};
use imagestreams_common::{error::ApiError, model};

use crate::kube::table::{IncludeObject, Printing};

/// The API group of image streams.
pub const GROUP: &str = "image.openshift.io";
/// Its one version.
pub const VERSION: &str = "v1";
/// `image.openshift.io/v1`.
pub const GROUP_VERSION: &str = model::API_VERSION;
/// Our own API group: the kinds OpenShift has none for (receivers, triggers).
pub const OWN_GROUP: &str = "imagestreams.io";
/// `imagestreams.io/v1`.
pub const OWN_GROUP_VERSION: &str = "imagestreams.io/v1";

/// How unknown fields of a written object are treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    /// An unknown field is a 400 (the default here, as before this face:
    /// a typo is never silently dropped).
    #[default]
    Strict,
    /// Unknown fields are dropped, and named in a `Warning` header.
    Warn,
    /// Unknown fields are dropped.
    Ignore,
}

/// What a request asks beyond its path: read from its query and `Accept`.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    /// The query parameters.
    pub query: HashMap<String, String>,
    /// The apiVersion objects are sent with: that of the path asked.
    pub api_version: &'static str,
    /// The Table version asked for, if any.
    pub table: Option<&'static str>,
    /// What Table rows carry.
    pub include: IncludeObject,
    /// `dryRun=All`: check everything, store nothing.
    pub dry_run: bool,
    /// Unknown fields of a written object.
    pub field_validation: FieldValidation,
}

impl Ask {
    /// The query parameter `key`, empty when absent.
    pub fn param(&self, key: &str) -> &str {
        self.query.get(key).map(String::as_str).unwrap_or_default()
    }

    /// How to print a Table, when one was asked for.
    pub fn printing(&self) -> Option<Printing> {
        self.table.map(|version| Printing {
            version,
            include: self.include,
            headers: true,
        })
    }

    /// Whether `?watch=true` (or `1`).
    pub fn watch(&self) -> bool {
        matches!(self.param("watch"), "true" | "1")
    }

    fn parse(parts: &Parts) -> Result<Ask, ApiError> {
        let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::invalid("", format!("malformed query string: {e}")))?
            .0;
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let param = |key: &str| query.get(key).map(String::as_str).unwrap_or_default();
        let dry_run = match param("dryRun") {
            "" => false,
            "All" => true,
            other => {
                return Err(ApiError::invalid(
                    "dryRun",
                    format!("dryRun: Unsupported value: {other:?}: supported values: \"All\""),
                ));
            }
        };
        let field_validation = match param("fieldValidation") {
            "" | "Strict" => FieldValidation::Strict,
            "Warn" => FieldValidation::Warn,
            "Ignore" => FieldValidation::Ignore,
            other => {
                return Err(ApiError::invalid(
                    "fieldValidation",
                    format!(
                        "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Warn\", \"Strict\""
                    ),
                ));
            }
        };
        Ok(Ask {
            api_version: match parts.uri.path() {
                path if path.starts_with("/apis/imagestreams.io/") => OWN_GROUP_VERSION,
                path if path.starts_with("/apis/") => GROUP_VERSION,
                // `/osapi/v1` and `/api/v1`
                _ => model::LEGACY_API_VERSION,
            },
            table: accept::table_version(accept),
            include: IncludeObject::parse(param("includeObject"))?,
            dry_run,
            field_validation,
            query,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ask {
    type Rejection = crate::rest::RestError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ask::parse(parts).map_err(|e| crate::rest::RestError::about(e, ""))
    }
}
