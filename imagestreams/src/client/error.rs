//! [`ClientError`]: everything a client verb can fail with, each displayed as
//! one line a user can act on.

use std::path::PathBuf;

use imagestreams_common::{error::ApiError, model::ModelError};

/// Why a client verb failed. `Display` is one line, without the `error: ` prefix.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the server address.
    #[error("cannot reach imagestreams at {server}: is it running? (imagestreams up)")]
    Unreachable {
        /// The `--server` URL.
        server: String,
        /// The transport's reason, kept for `{:#}`-free debugging.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `--server` is not a URL the client can use.
    #[error("invalid --server {server:?}: {reason}")]
    BadServer {
        /// The `--server` value.
        server: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server refused the request (not found, invalid, conflict, …).
    #[error("{0}")]
    Api(#[from] ApiError),
    /// A file given to `-f` could not be read.
    #[error("cannot read {}: {source}", display_path(.path))]
    Read {
        /// The file (`-` for stdin).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A document given to `-f` is not a valid ImageStream.
    #[error("{}: {location}{source}", display_path(.path))]
    Document {
        /// The file (`-` for stdin).
        path: PathBuf,
        /// Which document of the file, e.g. `document 2: ` or `items[1]: `; empty for the only one.
        location: String,
        /// What is wrong, naming the field.
        #[source]
        source: ModelError,
    },
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// The server answered with something this client cannot read.
    #[error("unexpected response from the server: {0}")]
    BadResponse(String),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl ClientError {
    /// A [`ClientError::Usage`].
    pub fn usage(message: impl Into<String>) -> Self {
        ClientError::Usage(message.into())
    }

    /// Maps a failed call: a status the transport made up because the
    /// connection failed becomes [`ClientError::Unreachable`]; a status the
    /// server sent becomes [`ClientError::Api`].
    pub fn from_status(server: &str, status: tonic::Status) -> Self {
        let local_transport_failure = status.code() == tonic::Code::Unavailable
            && std::error::Error::source(&status).is_some();
        if local_transport_failure {
            let reason = status.message().to_owned();
            return ClientError::Unreachable {
                server: server.to_owned(),
                source: reason.into(),
            };
        }
        if status.message().is_empty() {
            // A status without a message says nothing useful: say which code it was.
            let code = status.code();
            return ClientError::Api(ApiError::from(tonic::Status::new(
                code,
                format!("the server answered {code:?}"),
            )));
        }
        ClientError::Api(ApiError::from(status))
    }

    /// Whether this is the server saying the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api(ApiError::NotFound(_)))
    }
}

fn display_path(path: &std::path::Path) -> String {
    if path.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    }
}

/// `error: <message>` on one line: any line breaks of a server message are
/// folded into spaces, so scripts can rely on one line per failure.
pub fn one_line(error: &ClientError) -> String {
    let text = error.to_string();
    let folded: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("error: {}", folded.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_statuses_keep_their_message() {
        let e = ClientError::from_status(
            "http://x",
            tonic::Status::not_found("imagestreams.image.openshift.io \"x\" not found"),
        );
        assert!(e.is_not_found());
        assert_eq!(
            one_line(&e),
            "error: imagestreams.image.openshift.io \"x\" not found"
        );
    }

    #[test]
    fn empty_messages_name_the_code() {
        let e = ClientError::from_status("http://x", tonic::Status::new(tonic::Code::Aborted, ""));
        assert_eq!(one_line(&e), "error: the server answered Aborted");
    }

    #[test]
    fn multi_line_messages_fold_into_one() {
        let e = ClientError::usage("first\n  second\n");
        assert_eq!(one_line(&e), "error: first second");
    }
}
