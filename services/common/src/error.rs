//! The API error every service reports to callers, and its one mapping to each
//! wire: gRPC `Status`, the stream-store reply, and Kubernetes `Status`
//! objects (code, reason, details and causes) for the REST API.

use imagestreams_proto::v1 as proto;
use serde::Serialize;

use crate::model::{FieldErrorKind, ModelError, ValidationErrors};

/// An error a caller sees. Callers' mistakes are never `Internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or fails validation; `field` names the culprit.
    #[error("{message}")]
    Invalid {
        /// Field path, e.g. `metadata.name`; empty when the whole body is bad.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The request carries no valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but lacks the right.
    #[error("{0}")]
    Forbidden(String),
    /// The object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// A compare-and-swap precondition failed (stale resourceVersion).
    #[error("{0}")]
    Conflict(String),
    /// The resourceVersion to resume a watch from is no longer available.
    #[error("{0}")]
    Gone(String),
    /// The request body or message is larger than the limit.
    #[error("{0}")]
    TooLarge(String),
    /// What the request would store or send exceeds a fixed limit (a stored
    /// stream or a message larger than the NATS server's `max_payload`):
    /// gRPC `RESOURCE_EXHAUSTED`, HTTP 413. The message names the limit.
    #[error("{0}")]
    LimitExceeded(String),
    /// The caller consumes too slowly (a lagging watch) or asks too much.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request did not finish within the server's deadline.
    #[error("{0}")]
    Timeout(String),
    /// NATS or a service behind it cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The operation is not implemented yet.
    #[error("{0}")]
    Unimplemented(String),
    /// The request body's media type is not one this operation reads
    /// (HTTP 415; gRPC has no bodies of other types, so `INVALID_ARGUMENT`).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A bug or a storage fault.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// An `Invalid` error for one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// `image streams "<name>" not found`, as Kubernetes says it.
    pub fn stream_not_found(namespace: &str, name: &str) -> Self {
        ApiError::NotFound(format!(
            "imagestreams.image.openshift.io \"{name}\" not found in namespace \"{namespace}\""
        ))
    }

    /// The HTTP status Kubernetes uses for this error: 422 for a field of the
    /// object that fails validation, 400 for a malformed body or a bad request
    /// parameter (`labelSelector`, `limit`, `continue`, …).
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::Invalid { field, .. } if !is_object_field(field) => 400,
            ApiError::Invalid { .. } => 422,
            ApiError::Unauthenticated(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::AlreadyExists(_) | ApiError::Conflict(_) => 409,
            ApiError::Gone(_) => 410,
            ApiError::TooLarge(_) | ApiError::LimitExceeded(_) => 413,
            ApiError::ResourceExhausted(_) => 429,
            ApiError::Timeout(_) => 504,
            ApiError::Unavailable(_) => 503,
            ApiError::Unimplemented(_) => 501,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Internal(_) => 500,
        }
    }

    /// The Kubernetes `Status.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Invalid { field, .. } if !is_object_field(field) => "BadRequest",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Unauthenticated(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Gone(_) => "Expired",
            ApiError::TooLarge(_) | ApiError::LimitExceeded(_) => "RequestEntityTooLarge",
            ApiError::ResourceExhausted(_) => "TooManyRequests",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Unimplemented(_) => "NotImplemented",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Internal(_) => "InternalError",
        }
    }
}

/// Whether `field` is a path into the object (`metadata.name`, `spec.tags[0]`,
/// `kind`, …) rather than a request parameter or the whole body.
fn is_object_field(field: &str) -> bool {
    let root = field.split(['.', '[']).next().unwrap_or_default();
    matches!(root, "apiVersion" | "kind" | "metadata" | "spec" | "status")
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        let field = errors
            .errors()
            .first()
            .map(|e| e.field.clone())
            .unwrap_or_default();
        ApiError::Invalid {
            field,
            message: errors.to_string(),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(error: ModelError) -> Self {
        match error {
            ModelError::Invalid(errors) => errors.into(),
            too_large @ ModelError::TooLarge { .. } => ApiError::TooLarge(too_large.to_string()),
            other => ApiError::Invalid {
                field: String::new(),
                message: other.to_string(),
            },
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let message = error.to_string();
        match error {
            ApiError::Invalid { .. } => tonic::Status::invalid_argument(message),
            ApiError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            ApiError::Forbidden(_) => tonic::Status::permission_denied(message),
            ApiError::NotFound(_) => tonic::Status::not_found(message),
            ApiError::AlreadyExists(_) => tonic::Status::already_exists(message),
            ApiError::Conflict(_) => tonic::Status::aborted(message),
            ApiError::Gone(_) => tonic::Status::out_of_range(message),
            ApiError::TooLarge(_) | ApiError::UnsupportedMediaType(_) => {
                tonic::Status::invalid_argument(message)
            }
            ApiError::ResourceExhausted(_) | ApiError::LimitExceeded(_) => {
                tonic::Status::resource_exhausted(message)
            }
            ApiError::Timeout(_) => tonic::Status::deadline_exceeded(message),
            ApiError::Unavailable(_) => tonic::Status::unavailable(message),
            ApiError::Unimplemented(_) => tonic::Status::unimplemented(message),
            ApiError::Internal(_) => tonic::Status::internal(message),
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::InvalidArgument => ApiError::Invalid {
                field: String::new(),
                message,
            },
            tonic::Code::Unauthenticated => ApiError::Unauthenticated(message),
            tonic::Code::PermissionDenied => ApiError::Forbidden(message),
            tonic::Code::NotFound => ApiError::NotFound(message),
            tonic::Code::AlreadyExists => ApiError::AlreadyExists(message),
            tonic::Code::Aborted | tonic::Code::FailedPrecondition => ApiError::Conflict(message),
            tonic::Code::OutOfRange => ApiError::Gone(message),
            tonic::Code::ResourceExhausted => ApiError::ResourceExhausted(message),
            tonic::Code::DeadlineExceeded => ApiError::Timeout(message),
            tonic::Code::Unavailable => ApiError::Unavailable(message),
            tonic::Code::Unimplemented => ApiError::Unimplemented(message),
            _ => ApiError::Internal(message),
        }
    }
}

impl From<ApiError> for proto::StoreError {
    fn from(error: ApiError) -> Self {
        use proto::StoreErrorCode as C;
        let message = error.to_string();
        let (code, field) = match error {
            ApiError::Invalid { field, .. } => (C::Invalid, field),
            ApiError::TooLarge(_) | ApiError::UnsupportedMediaType(_) => {
                (C::Invalid, String::new())
            }
            ApiError::LimitExceeded(_) => (C::LimitExceeded, String::new()),
            ApiError::ResourceExhausted(_) | ApiError::Timeout(_) => {
                (C::Unavailable, String::new())
            }
            ApiError::NotFound(_) => (C::NotFound, String::new()),
            ApiError::AlreadyExists(_) => (C::AlreadyExists, String::new()),
            ApiError::Conflict(_) => (C::Conflict, String::new()),
            ApiError::Unavailable(_) | ApiError::Gone(_) => (C::Unavailable, String::new()),
            // the store does not authorize: these never cross it
            ApiError::Unauthenticated(_)
            | ApiError::Forbidden(_)
            | ApiError::Unimplemented(_)
            | ApiError::Internal(_) => (C::Internal, String::new()),
        };
        proto::StoreError {
            code: code as i32,
            message,
            field,
        }
    }
}

impl From<proto::StoreError> for ApiError {
    fn from(error: proto::StoreError) -> Self {
        use proto::StoreErrorCode as C;
        let message = error.message;
        match C::try_from(error.code).unwrap_or(C::Unspecified) {
            C::Invalid => ApiError::Invalid {
                field: error.field,
                message,
            },
            C::NotFound => ApiError::NotFound(message),
            C::AlreadyExists => ApiError::AlreadyExists(message),
            C::Conflict => ApiError::Conflict(message),
            C::Unavailable => ApiError::Unavailable(message),
            C::LimitExceeded => ApiError::LimitExceeded(message),
            C::Internal | C::Unspecified => ApiError::Internal(message),
        }
    }
}

/// An error and its sources on one line, `outer: inner: innermost`, for
/// logs and reports (each part is only its message).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A Kubernetes `Status` object (`kind: Status, apiVersion: v1`), the body of
/// every REST error and of a successful DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeStatus {
    /// Always `Status`.
    pub kind: &'static str,
    /// Always `v1`.
    pub api_version: &'static str,
    /// Always empty.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `Success` or `Failure`.
    pub status: &'static str,
    /// A human-readable description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The machine-readable reason, e.g. `NotFound`; empty on success.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
    /// What the status is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    /// The HTTP status code.
    pub code: u16,
}

/// `Status.details`: the object concerned and, for `Invalid`, each field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    /// The object's name, when known.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The API group, e.g. `image.openshift.io`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The resource, e.g. `imagestreams`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The object's uid (on a successful DELETE).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// One entry per offending field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// One entry of `Status.details.causes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueDuplicate` or
    /// `FieldValueNotSupported`, as Kubernetes names them.
    pub reason: &'static str,
    /// What is wrong with the field.
    pub message: String,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
}

impl StatusCause {
    /// One cause per field error, in field order.
    pub fn from_validation(errors: &ValidationErrors) -> Vec<StatusCause> {
        errors
            .errors()
            .iter()
            .map(|e| StatusCause {
                reason: match e.kind {
                    FieldErrorKind::Required => "FieldValueRequired",
                    FieldErrorKind::Invalid => "FieldValueInvalid",
                    FieldErrorKind::Duplicate => "FieldValueDuplicate",
                    FieldErrorKind::NotSupported => "FieldValueNotSupported",
                },
                message: e.to_string(),
                field: e.field.clone(),
            })
            .collect()
    }
}

impl KubeStatus {
    /// The `Failure` status of `error`. For `Invalid` errors without
    /// `causes`, the one named field becomes the cause.
    pub fn failure(error: &ApiError, mut details: StatusDetails) -> KubeStatus {
        if let ApiError::Invalid { field, message } = error
            && !field.is_empty()
            && details.causes.is_empty()
        {
            details.causes.push(StatusCause {
                reason: "FieldValueInvalid",
                message: message.clone(),
                field: field.clone(),
            });
        }
        let empty = details == StatusDetails::default();
        KubeStatus {
            kind: "Status",
            api_version: "v1",
            metadata: serde_json::Map::new(),
            status: "Failure",
            message: error.to_string(),
            reason: error.reason(),
            details: (!empty).then_some(details),
            code: error.http_status(),
        }
    }

    /// The `Success` status Kubernetes returns for a DELETE.
    pub fn success(details: StatusDetails) -> KubeStatus {
        KubeStatus {
            kind: "Status",
            api_version: "v1",
            metadata: serde_json::Map::new(),
            status: "Success",
            message: String::new(),
            reason: "",
            details: Some(details),
            code: 200,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_keeps_its_kind_across_the_store_wire() {
        let cases = [
            ApiError::invalid("metadata.name", "bad"),
            ApiError::NotFound("nf".into()),
            ApiError::AlreadyExists("ae".into()),
            ApiError::Conflict("c".into()),
            ApiError::Unavailable("u".into()),
            ApiError::LimitExceeded("le".into()),
            ApiError::Internal("i".into()),
        ];
        for error in cases {
            let back = ApiError::from(proto::StoreError::from(error.clone()));
            assert_eq!(back, error);
        }
    }

    #[test]
    fn grpc_and_http_codes_follow_kubernetes() {
        let conflict = tonic::Status::from(ApiError::Conflict("stale".into()));
        assert_eq!(conflict.code(), tonic::Code::Aborted);
        assert_eq!(ApiError::Conflict("x".into()).http_status(), 409);
        assert_eq!(ApiError::AlreadyExists("x".into()).http_status(), 409);
        assert_eq!(ApiError::invalid("metadata.name", "x").http_status(), 422);
        assert_eq!(ApiError::invalid("", "malformed").http_status(), 400);
        assert_eq!(ApiError::invalid("kind", "x").http_status(), 422);
        assert_eq!(
            ApiError::invalid("spec.tags[0].name", "x").http_status(),
            422
        );
        assert_eq!(ApiError::invalid("labelSelector", "x").http_status(), 400);
        assert_eq!(
            ApiError::invalid("labelSelector", "x").reason(),
            "BadRequest"
        );
        assert_eq!(ApiError::NotFound("x".into()).http_status(), 404);
        assert_eq!(
            tonic::Status::from(ApiError::Gone("old".into())).code(),
            tonic::Code::OutOfRange
        );
        assert_eq!(ApiError::TooLarge("x".into()).http_status(), 413);
        // a stored stream over the server's max_payload: as gRPC says a
        // message over its limit, and as kube-apiserver says etcd's
        let limit = ApiError::LimitExceeded("x".into());
        assert_eq!(limit.http_status(), 413);
        assert_eq!(limit.reason(), "RequestEntityTooLarge");
        assert_eq!(
            tonic::Status::from(limit).code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(
            tonic::Status::from(ApiError::ResourceExhausted("lag".into())).code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(
            tonic::Status::from(ApiError::Timeout("slow".into())).code(),
            tonic::Code::DeadlineExceeded
        );
    }

    #[test]
    fn kubernetes_status_objects() {
        let error = ApiError::invalid("metadata.name", "metadata.name: Invalid value");
        let status = KubeStatus::failure(
            &error,
            StatusDetails {
                name: "Bad".into(),
                group: "image.openshift.io".into(),
                kind: "imagestreams".into(),
                ..Default::default()
            },
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "metadata.name: Invalid value",
                "reason": "Invalid", "code": 422,
                "details": {
                    "name": "Bad", "group": "image.openshift.io", "kind": "imagestreams",
                    "causes": [{"reason": "FieldValueInvalid", "message": "metadata.name: Invalid value", "field": "metadata.name"}]
                }
            })
        );
        let plain = KubeStatus::failure(
            &ApiError::Unavailable("down".into()),
            StatusDetails::default(),
        );
        assert_eq!(plain.details, None);
        assert_eq!((plain.code, plain.reason), (503, "ServiceUnavailable"));
    }
}
