//! Per-namespace registry secrets, as the tag-syncer's callers see them: the
//! client of its secrets operations over NATS ([`SecretsClient`], which the
//! gateway's public `Secrets` gRPC service forwards to,
//! `imagestreams.api.tagsyncer.secrets.<op>`) and the checks of a create
//! request ([`NewRegistrySecret`]). The tag-syncer alone holds the key the
//! secrets are sealed with; the gateway never sees a stored secret.
//!
//! A password goes in on create and never comes back: list returns names,
//! servers and usernames. `Debug` of a create request prints `<redacted>`,
//! and no error quotes it. (It does cross NATS once, in the create request:
//! run NATS with TLS where the network is not trusted.)

use std::time::Duration;

use imagestreams_common::{
    config::Secret, error::ApiError, model::is_dns1123_label, requests, subjects,
};
use imagestreams_proto::v1 as proto;

/// How long a caller waits for the tag-syncer to answer a secrets request.
pub const DEFAULT_SECRETS_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest accepted server, username or password.
pub const MAX_FIELD_LENGTH: usize = 4096;

/// A validated create request. `Debug` redacts the password.
#[derive(Debug, Clone)]
pub struct NewRegistrySecret {
    /// The namespace whose imports may use it.
    pub namespace: String,
    /// Its name (a DNS-1123 label).
    pub name: String,
    /// `host[:port][/path]`, a leading `https://` or `http://` dropped.
    pub server: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl TryFrom<proto::CreateRegistrySecretRequest> for NewRegistrySecret {
    type Error = ApiError;

    fn try_from(r: proto::CreateRegistrySecretRequest) -> Result<Self, ApiError> {
        check_names(&r.namespace, &r.name)?;
        let server = r
            .server
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        if server.is_empty() {
            return Err(ApiError::invalid("server", "server: Required value"));
        }
        if server.chars().any(|c| c.is_whitespace() || c == '@')
            || server.split('/').any(str::is_empty)
        {
            return Err(ApiError::invalid(
                "server",
                format!("server: Invalid value: {server:?}: must be host[:port][/path]"),
            ));
        }
        if r.username.is_empty() {
            return Err(ApiError::invalid("username", "username: Required value"));
        }
        if r.password.is_empty() {
            return Err(ApiError::invalid("password", "password: Required value"));
        }
        if [&server, &r.username, &r.password]
            .iter()
            .any(|f| f.len() > MAX_FIELD_LENGTH)
        {
            return Err(ApiError::invalid(
                "",
                format!("server, username and password are limited to {MAX_FIELD_LENGTH} bytes"),
            ));
        }
        Ok(NewRegistrySecret {
            namespace: r.namespace,
            name: r.name,
            server,
            username: r.username,
            password: Secret::new(r.password),
        })
    }
}

/// Checks a namespace and a secret name (DNS-1123 labels).
pub fn check_names(namespace: &str, name: &str) -> Result<(), ApiError> {
    if !is_dns1123_label(namespace) {
        return Err(ApiError::invalid(
            "namespace",
            format!("namespace: Invalid value: {namespace:?}: must be a DNS-1123 label"),
        ));
    }
    if !is_dns1123_label(name) {
        return Err(ApiError::invalid(
            "name",
            format!("name: Invalid value: {name:?}: must be a DNS-1123 label"),
        ));
    }
    Ok(())
}

/// The `NotFound` of secret `name`, as Kubernetes words it.
pub fn not_found(namespace: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "secrets \"{name}\" not found in namespace \"{namespace}\""
    ))
}

/// The client of the tag-syncer's secrets operations (NATS request-reply).
#[derive(Clone, Debug)]
pub struct SecretsClient {
    nats: async_nats::Client,
    timeout: Duration,
}

impl SecretsClient {
    /// A client over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        SecretsClient {
            nats,
            timeout: DEFAULT_SECRETS_TIMEOUT,
        }
    }

    /// Creates or replaces a registry secret; returns it without its password.
    pub async fn create(
        &self,
        request: &proto::CreateRegistrySecretRequest,
    ) -> Result<proto::RegistrySecret, ApiError> {
        let mut list = self.call("secrets.create", request).await?;
        list.items
            .pop()
            .ok_or_else(|| ApiError::Internal("empty tag-syncer reply".into()))
    }

    /// The registry secrets of `namespace`, by name, without passwords.
    pub async fn list(&self, namespace: &str) -> Result<Vec<proto::RegistrySecret>, ApiError> {
        let request = proto::ListSecretsRequest {
            namespace: namespace.to_owned(),
        };
        Ok(self.call("secrets.list", &request).await?.items)
    }

    /// Deletes a registry secret.
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        let request = proto::DeleteSecretRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.call("secrets.delete", &request).await.map(drop)
    }

    async fn call(
        &self,
        op: &str,
        request: &impl prost::Message,
    ) -> Result<proto::ListSecretsResponse, ApiError> {
        requests::ask::<proto::SecretsReply>(
            &self.nats,
            subjects::tag_syncer_api(op),
            request,
            "the tag-syncer",
            self.timeout,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let new = NewRegistrySecret::try_from(proto::CreateRegistrySecretRequest {
            namespace: "ns".into(),
            name: "pull".into(),
            server: "https://127.0.0.1:5000/".into(),
            username: "u".into(),
            password: "hunter2-secret".into(),
        })
        .unwrap();
        assert_eq!(new.server, "127.0.0.1:5000");
        assert!(!format!("{new:?}").contains("hunter2"));
    }

    #[test]
    fn create_requests_are_checked() {
        let ok = proto::CreateRegistrySecretRequest {
            namespace: "ns".into(),
            name: "pull".into(),
            server: "quay.io/org".into(),
            username: "u".into(),
            password: "p".into(),
        };
        assert!(NewRegistrySecret::try_from(ok.clone()).is_ok());
        for (field, bad) in [
            (
                "name",
                proto::CreateRegistrySecretRequest {
                    name: "Bad_Name".into(),
                    ..ok.clone()
                },
            ),
            (
                "namespace",
                proto::CreateRegistrySecretRequest {
                    namespace: "".into(),
                    ..ok.clone()
                },
            ),
            (
                "server",
                proto::CreateRegistrySecretRequest {
                    server: "".into(),
                    ..ok.clone()
                },
            ),
            (
                "server",
                proto::CreateRegistrySecretRequest {
                    server: "a b".into(),
                    ..ok.clone()
                },
            ),
            (
                "username",
                proto::CreateRegistrySecretRequest {
                    username: "".into(),
                    ..ok.clone()
                },
            ),
            (
                "password",
                proto::CreateRegistrySecretRequest {
                    password: "".into(),
                    ..ok.clone()
                },
            ),
        ] {
            let err = NewRegistrySecret::try_from(bad).unwrap_err();
            assert!(
                matches!(&err, ApiError::Invalid { field: f, .. } if f == field),
                "{field}: {err:?}"
            );
            assert!(!err.to_string().contains("hunter2"));
        }
    }
}
