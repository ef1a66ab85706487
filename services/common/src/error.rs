//! The API error every service reports to callers, and its one mapping to each
//! wire: gRPC `Status`, the stream-store reply, and Kubernetes `Status` codes.

use imagestreams_proto::v1 as proto;

use crate::model::{ModelError, ValidationErrors};

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
    /// NATS or a service behind it cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The operation is not implemented yet.
    #[error("{0}")]
    Unimplemented(String),
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

    /// The HTTP status Kubernetes uses for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::Invalid { field, .. } if field.is_empty() => 400,
            ApiError::Invalid { .. } => 422,
            ApiError::NotFound(_) => 404,
            ApiError::AlreadyExists(_) | ApiError::Conflict(_) => 409,
            ApiError::Gone(_) => 410,
            ApiError::Unavailable(_) => 503,
            ApiError::Unimplemented(_) => 501,
            ApiError::Internal(_) => 500,
        }
    }

    /// The Kubernetes `Status.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Invalid { field, .. } if field.is_empty() => "BadRequest",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::NotFound(_) => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Gone(_) => "Expired",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Unimplemented(_) => "NotImplemented",
            ApiError::Internal(_) => "InternalError",
        }
    }
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
            ApiError::NotFound(_) => tonic::Status::not_found(message),
            ApiError::AlreadyExists(_) => tonic::Status::already_exists(message),
            ApiError::Conflict(_) => tonic::Status::aborted(message),
            ApiError::Gone(_) => tonic::Status::out_of_range(message),
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
            tonic::Code::NotFound => ApiError::NotFound(message),
            tonic::Code::AlreadyExists => ApiError::AlreadyExists(message),
            tonic::Code::Aborted | tonic::Code::FailedPrecondition => ApiError::Conflict(message),
            tonic::Code::OutOfRange => ApiError::Gone(message),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                ApiError::Unavailable(message)
            }
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
            ApiError::NotFound(_) => (C::NotFound, String::new()),
            ApiError::AlreadyExists(_) => (C::AlreadyExists, String::new()),
            ApiError::Conflict(_) => (C::Conflict, String::new()),
            ApiError::Unavailable(_) | ApiError::Gone(_) => (C::Unavailable, String::new()),
            ApiError::Unimplemented(_) | ApiError::Internal(_) => (C::Internal, String::new()),
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
            C::Internal | C::Unspecified => ApiError::Internal(message),
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
        assert_eq!(ApiError::NotFound("x".into()).http_status(), 404);
        assert_eq!(
            tonic::Status::from(ApiError::Gone("old".into())).code(),
            tonic::Code::OutOfRange
        );
    }
}
