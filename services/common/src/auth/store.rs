//! The identity store: the configured tokens and role bindings, plus the
//! service accounts and role bindings created through the API, kept in the
//! JetStream KV bucket [`BUCKET_AUTH`]. Shared by the gateway (every request)
//! and the stream-store (who may create a stream by pushing).
//!
//! # Keys
//!
//! | key | value |
//! |---|---|
//! | `tokens.<sha256 hex>` | the [`Identity`] the token authenticates |
//! | `users.<hex name>` | the [`Identity`] of a stored user, by name |
//! | `bindings.user.<hex name>`, `bindings.group.<hex name>` | the subject's [`StoredBinding`]s |
//! | `bootstrap` | set once, when `up` made the first cluster-admin |
//!
//! Only token hashes are stored, never a token. Names are hex-encoded in
//! keys because KV keys cannot hold `:`.
//!
//! # Cache
//!
//! While [`IdentityStore::watch`] runs (the gateway runs it), token and
//! binding reads are served from a bounded cache that the watch of the
//! bucket keeps current: a deleted token or binding stops working as soon
//! as the watch delivers the deletion, on every replica. See [`super::cache`].

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    Caller, Identity, Role, RoleBinding, Subject, Token, TokenHash, Verb, authorize,
    cache::{BINDINGS_PREFIX, IdentityCache, TOKEN_PREFIX},
};
use crate::{config::AuthConfig, error::ApiError, nats};

/// The KV bucket of service accounts, token hashes and role bindings.
pub const BUCKET_AUTH: &str = "auth";
/// The name of the cluster-admin identity `up` makes on first start.
pub const BOOTSTRAP_ADMIN: &str = "admin";
/// The identity the registry-watcher's token authenticates as, for reading image metadata from the
/// integrated registry through the token service.
pub const REGISTRY_WATCHER_IDENTITY: &str = "system:registry-watcher";
/// Its group, bound to `view` in every namespace.
pub const REGISTRY_READERS_GROUP: &str = "system:registry-readers";

/// How long the cache's watch waits before it is re-established after failing.
pub const DEFAULT_WATCH_RETRY: Duration = Duration::from_secs(1);

/// One `[[auth.tokens]]` entry: an identity with a bearer token, by the
/// token's SHA-256 (`printf %s "$TOKEN" | sha256sum`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The identity's name.
    pub name: String,
    /// The lower-case hex SHA-256 of the token.
    pub token_sha256: String,
    /// Groups, for group role bindings.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One `[[auth.role_bindings]]` entry: `role` for `user` or `group` in
/// `namespace` (every namespace when omitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBindingConfig {
    /// The namespace; every namespace when omitted.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `view`, `edit`, `admin` or `cluster-admin`.
    pub role: Role,
    /// A user (identity name); exactly one of `user` and `group`.
    #[serde(default)]
    pub user: Option<String>,
    /// A group; exactly one of `user` and `group`.
    #[serde(default)]
    pub group: Option<String>,
}

/// Checks a binding's subject: exactly one non-empty user or group.
pub fn subject_of(user: Option<&str>, group: Option<&str>) -> Result<Subject, ApiError> {
    let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    match (nonempty(user), nonempty(group)) {
        (Some(user), None) => Ok(Subject::User(user)),
        (None, Some(group)) => Ok(Subject::Group(group)),
        _ => Err(ApiError::invalid(
            "user",
            "user: Required value: exactly one of user and group",
        )),
    }
}

impl TryFrom<&RoleBindingConfig> for RoleBinding {
    type Error = ApiError;

    fn try_from(c: &RoleBindingConfig) -> Result<Self, ApiError> {
        let binding = RoleBinding {
            namespace: c.namespace.clone().filter(|n| !n.is_empty()),
            role: c.role,
            subject: subject_of(c.user.as_deref(), c.group.as_deref())?,
        };
        binding.validate()?;
        Ok(binding)
    }
}

/// A role binding as stored under its subject's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBinding {
    /// The namespace; `None` is every namespace.
    pub namespace: Option<String>,
    /// The role.
    pub role: Role,
}

impl From<&RoleBinding> for StoredBinding {
    fn from(b: &RoleBinding) -> Self {
        StoredBinding {
            namespace: b.namespace.clone(),
            role: b.role,
        }
    }
}

/// Why the identity store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuthStoreError {
    /// A configured token or role binding is invalid.
    #[error("invalid auth configuration: {0}")]
    Config(String),
    /// The bucket could not be declared.
    #[error("cannot open the {BUCKET_AUTH} bucket")]
    Bucket(#[source] nats::NatsError),
}

/// The identities and role bindings, from the configuration and the bucket.
#[derive(Clone)]
pub struct IdentityStore {
    enabled: bool,
    tokens: Vec<(TokenHash, Identity)>,
    bindings: Vec<RoleBinding>,
    kv: kv::Store,
    cache: Arc<IdentityCache>,
}

impl std::fmt::Debug for IdentityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityStore")
            .field("enabled", &self.enabled)
            .field("tokens", &self.tokens.len())
            .field("bindings", &self.bindings.len())
            .field("cached", &self.cache.len())
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("the identity store is unavailable: {e}"))
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("corrupt identity store entry {key}: {e}"))
}

fn token_key(hash: &TokenHash) -> String {
    format!("{TOKEN_PREFIX}{}", hash.as_str())
}

fn user_key(name: &str) -> String {
    format!("users.{}", hex::encode(name))
}

fn subject_key(subject: &Subject) -> String {
    match subject {
        Subject::User(name) => format!("{BINDINGS_PREFIX}user.{}", hex::encode(name)),
        Subject::Group(name) => format!("{BINDINGS_PREFIX}group.{}", hex::encode(name)),
    }
}

/// The subject whose bindings the key `bindings.<kind>.<hex name>` holds.
fn subject_of_key(key: &str) -> Option<Subject> {
    let (kind, name) = key.strip_prefix(BINDINGS_PREFIX)?.split_once('.')?;
    let name = String::from_utf8(hex::decode(name).ok()?).ok()?;
    match kind {
        "user" => Some(Subject::User(name)),
        "group" => Some(Subject::Group(name)),
        _ => None,
    }
}

/// Where a role binding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `auth.role_bindings` in the configuration: changed only there.
    Configuration,
    /// The bucket, through the `Auth` API.
    Stored,
}

impl IdentityStore {
    /// Checks the configured tokens and bindings and opens (creating it when
    /// needed) the bucket.
    pub async fn open(
        js: &jetstream::Context,
        replicas: usize,
        config: &AuthConfig,
    ) -> Result<Self, AuthStoreError> {
        let tokens = config
            .tokens
            .iter()
            .map(|t| {
                let hash = TokenHash::parse(&t.token_sha256)
                    .map_err(|e| AuthStoreError::Config(format!("token of {:?}: {e}", t.name)))?;
                let identity = Identity {
                    name: t.name.clone(),
                    groups: t.groups.clone(),
                };
                Ok((hash, identity))
            })
            .collect::<Result<Vec<_>, AuthStoreError>>()?;
        let bindings = config
            .role_bindings
            .iter()
            .map(|b| RoleBinding::try_from(b).map_err(|e| AuthStoreError::Config(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let kv = nats::get_or_create_bucket(
            js,
            kv::Config {
                bucket: BUCKET_AUTH.to_owned(),
                description: "Identities by token hash, users by name, role bindings by subject"
                    .to_owned(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await
        .map_err(AuthStoreError::Bucket)?;
        Ok(IdentityStore {
            enabled: config.enabled,
            tokens,
            bindings,
            kv,
            cache: Arc::new(IdentityCache::new(config.cache_size)),
        })
    }

    /// Lets `token` (the registry-watcher's, `registry_watcher.token`) authenticate as
    /// [`REGISTRY_WATCHER_IDENTITY`], with `view` in every namespace: the watcher reads pushed images'
    /// metadata from the integrated registry with it, through the token service. The registry already
    /// holds this token (it sends it with every notification).
    pub fn with_registry_watcher(mut self, token: Option<&Token>) -> Self {
        if let Some(token) = token {
            self.tokens.push((
                token.hash(),
                Identity {
                    name: REGISTRY_WATCHER_IDENTITY.to_owned(),
                    groups: vec![REGISTRY_READERS_GROUP.to_owned()],
                },
            ));
            self.bindings.push(RoleBinding {
                namespace: None,
                role: Role::View,
                subject: Subject::Group(REGISTRY_READERS_GROUP.to_owned()),
            });
        }
        self
    }

    /// [`IdentityStore::open`], boxed: a caller's build future stays small
    /// (debug builds run the tests on 2 MiB stacks).
    pub fn open_boxed<'a>(
        js: &'a jetstream::Context,
        replicas: usize,
        config: &'a AuthConfig,
    ) -> futures::future::BoxFuture<'a, Result<Self, AuthStoreError>> {
        Box::pin(Self::open(js, replicas, config))
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Who presents `token`: `Unrestricted` when auth is off, `Anonymous`
    /// without a token, `Unauthenticated` for a token nobody holds.
    pub async fn authenticate(&self, token: Option<&Token>) -> Result<Caller, ApiError> {
        if !self.enabled {
            return Ok(Caller::Unrestricted);
        }
        let Some(token) = token else {
            return Ok(Caller::Anonymous);
        };
        let hash = token.hash();
        // every configured hash is compared, so the time does not tell which matched
        let configured =
            self.tokens
                .iter()
                .fold(None, |found, (h, identity)| match h.matches(&hash) {
                    true => Some(identity),
                    false => found,
                });
        let identity = match configured {
            Some(identity) => identity.clone(),
            None => self.stored_identity(&hash).await?.ok_or_else(|| {
                ApiError::Unauthenticated("Unauthorized: the token is not valid".to_owned())
            })?,
        };
        self.caller(identity).await
    }

    /// The stored identity `hash` authenticates: from the cache, else the KV.
    async fn stored_identity(&self, hash: &TokenHash) -> Result<Option<Identity>, ApiError> {
        let ticket = match self.cache.token(hash) {
            Ok(identity) => return Ok(Some(identity)),
            Err(ticket) => ticket,
        };
        let identity = self.read::<Identity>(&token_key(hash)).await?;
        self.cache.put_token(ticket, hash, identity.as_ref());
        Ok(identity)
    }

    /// The bindings stored for `subject`: from the cache, else the KV.
    async fn stored_bindings(&self, subject: &Subject) -> Result<Vec<StoredBinding>, ApiError> {
        let key = subject_key(subject);
        let ticket = match self.cache.bindings(&key) {
            Ok(bindings) => return Ok(bindings),
            Err(ticket) => ticket,
        };
        let bindings = self
            .read::<Vec<StoredBinding>>(&key)
            .await?
            .unwrap_or_default();
        self.cache.put_bindings(ticket, &key, &bindings);
        Ok(bindings)
    }

    /// Keeps the cache current from a watch of the bucket until `shutdown`;
    /// re-established after [`DEFAULT_WATCH_RETRY`] when it fails. Nothing
    /// is cached while it does not run (nor with `auth.cache_size = 0`).
    pub async fn watch(&self, shutdown: CancellationToken) {
        if !self.enabled {
            return;
        }
        loop {
            match self.kv.watch_all().await {
                Ok(mut changes) => {
                    // every change from here on is delivered: start caching
                    self.cache.set_live(true);
                    tracing::debug!("identity cache live");
                    loop {
                        let change = tokio::select! {
                            _ = shutdown.cancelled() => None,
                            change = changes.next() => Some(change),
                        };
                        match change {
                            None => {
                                self.cache.set_live(false);
                                return;
                            }
                            Some(Some(Ok(entry))) => self.cache.changed(&entry.key),
                            Some(Some(Err(e))) => {
                                tracing::warn!(
                                    error = crate::error::chain(&e),
                                    "the identity cache's watch failed; reading the KV until it is back"
                                );
                                break;
                            }
                            Some(None) => {
                                tracing::warn!(
                                    "the identity cache's watch ended; reading the KV until it is back"
                                );
                                break;
                            }
                        }
                    }
                    self.cache.set_live(false);
                }
                Err(e) => {
                    tracing::warn!(
                        error = crate::error::chain(&e),
                        "cannot watch the {BUCKET_AUTH} bucket; reading the KV until it can"
                    );
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(DEFAULT_WATCH_RETRY) => {}
            }
        }
    }

    /// Entries in the cache: (tokens, binding lists); each is at most `auth.cache_size`.
    pub fn cached(&self) -> (usize, usize) {
        self.cache.len()
    }

    /// The caller `identity` is, with every binding naming it or its groups.
    pub async fn caller(&self, identity: Identity) -> Result<Caller, ApiError> {
        let mut bindings: Vec<RoleBinding> = self
            .bindings
            .iter()
            .filter(|b| b.names(&identity))
            .cloned()
            .collect();
        let subjects = std::iter::once(Subject::User(identity.name.clone()))
            .chain(identity.groups.iter().cloned().map(Subject::Group));
        for subject in subjects {
            let stored = self.stored_bindings(&subject).await?;
            bindings.extend(stored.into_iter().map(|b| RoleBinding {
                namespace: b.namespace,
                role: b.role,
                subject: subject.clone(),
            }));
        }
        Ok(Caller::Authenticated { identity, bindings })
    }

    /// The identity called `name` (configured or stored), if any.
    pub async fn identity_named(&self, name: &str) -> Result<Option<Identity>, ApiError> {
        if let Some((_, identity)) = self.tokens.iter().find(|(_, i)| i.name == name) {
            return Ok(Some(identity.clone()));
        }
        self.read::<Identity>(&user_key(name)).await
    }

    /// Whether the user called `name` may do `verb` in `namespace`: always
    /// when auth is off, never for a name nobody has.
    pub async fn may(&self, name: &str, namespace: &str, verb: Verb) -> Result<bool, ApiError> {
        if !self.enabled {
            return Ok(true);
        }
        let Some(identity) = self.identity_named(name).await? else {
            return Ok(false);
        };
        let caller = self.caller(identity).await?;
        Ok(authorize(&caller, Some(namespace), verb).is_ok())
    }

    /// Stores a new identity and returns its token (the only copy);
    /// `AlreadyExists` when the name is taken.
    pub async fn create_identity(&self, identity: &Identity) -> Result<Token, ApiError> {
        if self.identity_named(&identity.name).await?.is_some() {
            return Err(ApiError::AlreadyExists(format!(
                "identity \"{}\" already exists",
                identity.name
            )));
        }
        let value = serde_json::to_vec(identity).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.kv
            .create(user_key(&identity.name), value.clone().into())
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => ApiError::AlreadyExists(format!(
                    "identity \"{}\" already exists",
                    identity.name
                )),
                _ => unavailable(e),
            })?;
        let token = Token::generate();
        self.kv
            .put(token_key(&token.hash()), value.into())
            .await
            .map_err(unavailable)?;
        Ok(token)
    }

    /// Adds `binding` to its subject's stored bindings (a compare-and-swap;
    /// adding one that exists changes nothing).
    pub async fn add_binding(&self, binding: &RoleBinding) -> Result<(), ApiError> {
        binding.validate()?;
        let new = StoredBinding::from(binding);
        self.update_bindings(&binding.subject, |list| {
            let absent = !list.contains(&new);
            if absent {
                list.push(new.clone());
            }
            absent
        })
        .await
    }

    /// Removes `binding` from its subject's stored bindings (a
    /// compare-and-swap); `false` when it was not there. Bindings from the
    /// configuration stay: they are not stored.
    pub async fn remove_binding(&self, binding: &RoleBinding) -> Result<bool, ApiError> {
        let old = StoredBinding::from(binding);
        let mut removed = false;
        self.update_bindings(&binding.subject, |list| {
            let before = list.len();
            list.retain(|b| *b != old);
            removed = list.len() != before;
            removed
        })
        .await?;
        Ok(removed)
    }

    /// Applies `change` to the stored bindings of `subject` with a
    /// compare-and-swap, retried while other writers get there first;
    /// `change` returns whether it changed anything (nothing is written
    /// otherwise).
    async fn update_bindings(
        &self,
        subject: &Subject,
        mut change: impl FnMut(&mut Vec<StoredBinding>) -> bool,
    ) -> Result<(), ApiError> {
        let key = subject_key(subject);
        for _ in 0..8 {
            let entry = self.kv.entry(key.clone()).await.map_err(unavailable)?;
            let (mut list, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => (
                    serde_json::from_slice::<Vec<StoredBinding>>(&e.value)
                        .map_err(|err| corrupt(&key, err))?,
                    Some(e.revision),
                ),
                Some(e) => (Vec::new(), Some(e.revision)),
                None => (Vec::new(), None),
            };
            if !change(&mut list) {
                return Ok(());
            }
            let value = serde_json::to_vec(&list).map_err(|e| ApiError::Internal(e.to_string()))?;
            let written = match revision {
                Some(revision) => self
                    .kv
                    .update(&key, value.into(), revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => self
                    .kv
                    .create(&key, value.into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            if written.is_ok() {
                return Ok(());
            }
        }
        Err(ApiError::Conflict(format!(
            "the role bindings of {key} keep changing; try again"
        )))
    }

    /// The names of the service accounts stored in `namespace`, sorted.
    pub async fn service_accounts(&self, namespace: &str) -> Result<Vec<String>, ApiError> {
        let prefix = format!("system:serviceaccount:{namespace}:");
        let mut keys = self.kv.keys().await.map_err(unavailable)?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(unavailable)?;
            let identity = key
                .strip_prefix("users.")
                .and_then(|hex_name| hex::decode(hex_name).ok())
                .and_then(|name| String::from_utf8(name).ok());
            if let Some(name) = identity.as_deref().and_then(|i| i.strip_prefix(&prefix)) {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The role bindings of `namespace` (`None`: every binding, of every
    /// namespace and of all at once), configured and stored, each with
    /// whether it comes from the configuration; by namespace (every one
    /// first), then role (least first), then subject (users first).
    pub async fn bindings_in(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<(RoleBinding, Origin)>, ApiError> {
        let wanted = |b: &RoleBinding| namespace.is_none() || b.namespace.as_deref() == namespace;
        let mut found: Vec<(RoleBinding, Origin)> = self
            .bindings
            .iter()
            .filter(|b| wanted(b))
            .map(|b| (b.clone(), Origin::Configuration))
            .collect();
        let mut keys = self.kv.keys().await.map_err(unavailable)?;
        let mut subjects = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(unavailable)?;
            if let Some(subject) = subject_of_key(&key) {
                subjects.push((key, subject));
            }
        }
        for (key, subject) in subjects {
            let stored = self
                .read::<Vec<StoredBinding>>(&key)
                .await?
                .unwrap_or_default();
            for b in stored {
                let binding = RoleBinding {
                    namespace: b.namespace,
                    role: b.role,
                    subject: subject.clone(),
                };
                if wanted(&binding) {
                    found.push((binding, Origin::Stored));
                }
            }
        }
        found.sort_by(|(a, _), (b, _)| {
            (&a.namespace, a.role, &a.subject).cmp(&(&b.namespace, b.role, &b.subject))
        });
        Ok(found)
    }

    /// Deletes the stored identity called `name` and every token that
    /// authenticates it; `false` when there was none. A configured identity
    /// is not stored and stays.
    pub async fn delete_identity(&self, name: &str) -> Result<bool, ApiError> {
        let mut found = self.read::<Identity>(&user_key(name)).await?.is_some();
        let mut keys = self.kv.keys().await.map_err(unavailable)?;
        let mut tokens = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(unavailable)?;
            if key.starts_with(TOKEN_PREFIX) {
                tokens.push(key);
            }
        }
        for key in tokens {
            if let Some(identity) = self.read::<Identity>(&key).await?
                && identity.name == name
            {
                self.kv.delete(&key).await.map_err(unavailable)?;
                found = true;
            }
        }
        self.kv.delete(user_key(name)).await.map_err(unavailable)?;
        Ok(found)
    }

    /// `up`'s first start: when auth is on and no identity exists (none
    /// configured, none stored), makes the cluster-admin [`BOOTSTRAP_ADMIN`]
    /// and returns its token; `None` otherwise. Only one process ever wins.
    pub async fn bootstrap_admin(&self) -> Result<Option<Token>, ApiError> {
        if !self.enabled || !self.tokens.is_empty() {
            return Ok(None);
        }
        let mut keys = self.kv.keys().await.map_err(unavailable)?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(unavailable)?;
            if key.starts_with("users.") || key == "bootstrap" {
                return Ok(None);
            }
        }
        if self.kv.create("bootstrap", "admin".into()).await.is_err() {
            // another process got there first
            return Ok(None);
        }
        let admin = Identity {
            name: BOOTSTRAP_ADMIN.to_owned(),
            groups: Vec::new(),
        };
        let token = self.create_identity(&admin).await?;
        self.add_binding(&RoleBinding {
            namespace: None,
            role: Role::ClusterAdmin,
            subject: Subject::User(admin.name),
        })
        .await?;
        Ok(Some(token))
    }

    async fn read<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.kv.get(key).await.map_err(unavailable)? {
            Some(bytes) if !bytes.is_empty() => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| corrupt(key, e)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_bindings_convert_and_check() {
        let c = RoleBindingConfig {
            namespace: Some("ns1".into()),
            role: Role::Edit,
            user: Some("alice".into()),
            group: None,
        };
        let b = RoleBinding::try_from(&c).unwrap();
        assert_eq!(b.subject, Subject::User("alice".into()));
        let both = RoleBindingConfig {
            group: Some("devs".into()),
            ..c.clone()
        };
        assert!(RoleBinding::try_from(&both).is_err());
        let neither = RoleBindingConfig {
            user: None,
            ..c.clone()
        };
        assert!(RoleBinding::try_from(&neither).is_err());
        let namespaced_cluster_admin = RoleBindingConfig {
            role: Role::ClusterAdmin,
            ..c
        };
        assert!(RoleBinding::try_from(&namespaced_cluster_admin).is_err());
    }

    #[test]
    fn keys_are_valid_kv_keys() {
        let key = subject_key(&Subject::User("system:serviceaccount:ns:sa".into()));
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_'),
            "{key}"
        );
        assert_ne!(
            subject_key(&Subject::User("x".into())),
            subject_key(&Subject::Group("x".into()))
        );
        assert!(user_key("a:b").starts_with("users."));
    }
}
