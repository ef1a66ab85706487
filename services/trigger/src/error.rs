//! The trigger service's errors: what a reconcile, a firing or a write can
//! fail with, and their mapping to the caller's `ApiError`.

use imagestreams_common::{error::ApiError, nats::NatsError};

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the trigger service's work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A compare-and-swap lost: the entry changed since it was read.
    #[error("{key} changed concurrently")]
    Conflict {
        /// The KV key.
        key: String,
    },
    /// NATS or a KV bucket could not be reached.
    #[error("{what}")]
    Unavailable {
        /// What failed.
        what: String,
        /// Cause.
        #[source]
        source: BoxError,
    },
    /// A stored value is undecodable, or a read failed as the API reports it.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// An event was not acknowledged by JetStream.
    #[error(transparent)]
    Publish(#[from] NatsError),
}

impl Error {
    /// An `Unavailable` error for `what`.
    pub fn unavailable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Conflict { key } => {
                ApiError::Conflict(format!("{key} changed concurrently, retry"))
            }
            Error::Unavailable { what, source } => {
                ApiError::Unavailable(format!("{what}: {source}"))
            }
            Error::Api(e) => e,
            Error::Publish(e) => ApiError::Unavailable(e.to_string()),
        }
    }
}
