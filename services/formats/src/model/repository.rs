//! Which repositories of the integrated registry name an image stream:
//! exactly `<namespace>/<name>`, as OpenShift's integrated registry requires.
//! The registry-watcher maps notifications with it and the gateway's registry
//! token service grants access with it, so both agree on every name.

use std::fmt;

use super::{MAX_NAMESPACED_NAME_LENGTH, is_dns1123_label, is_valid_stream_name};

/// The stream a repository maps to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamName {
    /// The namespace (a DNS-1123 label).
    pub namespace: String,
    /// The stream's name.
    pub name: String,
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a repository maps to no stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    /// Not exactly `<namespace>/<name>`.
    #[error(
        "repository {0:?} has {1} path component(s); the integrated registry maps only <namespace>/<name>"
    )]
    Depth(String, usize),
    /// The first component is not a DNS-1123 label.
    #[error("repository {0:?}: namespace {1:?} is not a DNS-1123 label")]
    Namespace(String, String),
    /// The second component is not a valid image stream name.
    #[error("repository {0:?}: {1:?} is not a valid image stream name")]
    Name(String, String),
}

/// Maps a repository path to its stream: exactly `<namespace>/<name>`, as
/// OpenShift's integrated registry requires. Other depths (`app`,
/// `ns/group/app`) name no stream.
pub fn stream_of_repository(repository: &str) -> Result<StreamName, RepositoryError> {
    let parts: Vec<&str> = repository.split('/').collect();
    let [namespace, name] = parts.as_slice() else {
        return Err(RepositoryError::Depth(repository.to_owned(), parts.len()));
    };
    if !is_dns1123_label(namespace) {
        return Err(RepositoryError::Namespace(
            repository.to_owned(),
            (*namespace).to_owned(),
        ));
    }
    if !is_valid_stream_name(name) || repository.len() > MAX_NAMESPACED_NAME_LENGTH {
        return Err(RepositoryError::Name(
            repository.to_owned(),
            (*name).to_owned(),
        ));
    }
    Ok(StreamName {
        namespace: (*namespace).to_owned(),
        name: (*name).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_map_only_at_depth_two() {
        assert_eq!(
            stream_of_repository("ns1/ruby.v2"),
            Ok(StreamName {
                namespace: "ns1".into(),
                name: "ruby.v2".into()
            })
        );
        for (repo, depth) in [("app", 1), ("a/b/c", 3), ("a/b/c/d", 4)] {
            assert_eq!(
                stream_of_repository(repo),
                Err(RepositoryError::Depth(repo.into(), depth))
            );
        }
        assert!(matches!(
            stream_of_repository("Ns/app"),
            Err(RepositoryError::Namespace(..))
        ));
        assert!(matches!(
            stream_of_repository(&format!("{}/app", "n".repeat(64))),
            Err(RepositoryError::Namespace(..))
        ));
        assert!(matches!(
            stream_of_repository("ns/-app"),
            Err(RepositoryError::Name(..))
        ));
        assert!(matches!(
            stream_of_repository(&format!("ns/{}", "a".repeat(255))),
            Err(RepositoryError::Name(..))
        ));
    }
}
