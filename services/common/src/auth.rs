//! Who may do what: identities, roles, role bindings and the one
//! authorization rule, [`authorize`]. Pure: the tokens and bindings come from
//! the configuration and the identity store ([`store`]), resolved once per
//! request into a [`Caller`].
//!
//! | role | verbs | where |
//! |---|---|---|
//! | `view` | get, list, watch | a namespace, or every one |
//! | `edit` | view's, plus create, update, delete, import, tag, triggers | a namespace, or every one |
//! | `admin` | edit's, plus secrets and role bindings | a namespace, or every one |
//! | `cluster-admin` | everything | every namespace |
//!
//! Acting on every namespace at once (listing or watching across all of
//! them) needs a binding without a namespace.

pub mod cache;
pub mod store;

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::ApiError;

/// What a request does; each role allows a set of verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Read one object.
    Get,
    /// List objects.
    List,
    /// Watch objects change.
    Watch,
    /// Create an object.
    Create,
    /// Replace an object.
    Update,
    /// Delete an object.
    Delete,
    /// Import images from a registry into a stream.
    Import,
    /// Tag images into streams (`oc tag`).
    Tag,
    /// Create or delete build and deploy triggers.
    Triggers,
    /// Read or write the namespace's registry secrets.
    Secrets,
    /// Create role bindings and service accounts.
    RoleBindings,
}

impl Verb {
    /// Every verb, for tables and tests.
    pub const ALL: [Verb; 11] = [
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Create,
        Verb::Update,
        Verb::Delete,
        Verb::Import,
        Verb::Tag,
        Verb::Triggers,
        Verb::Secrets,
        Verb::RoleBindings,
    ];

    /// The verb's lower-case name, as messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Import => "import",
            Verb::Tag => "tag",
            Verb::Triggers => "triggers",
            Verb::Secrets => "secrets",
            Verb::RoleBindings => "rolebindings",
        }
    }
}

/// A set of verbs, bound to identities per namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// get, list, watch.
    View,
    /// view's verbs plus create, update, delete, import, tag, triggers.
    Edit,
    /// edit's verbs plus secrets and role bindings.
    Admin,
    /// Everything, in every namespace.
    ClusterAdmin,
}

impl Role {
    /// Whether the role allows `verb`.
    pub fn allows(self, verb: Verb) -> bool {
        use Verb::*;
        match self {
            Role::View => matches!(verb, Get | List | Watch),
            Role::Edit => !matches!(verb, Secrets | RoleBindings),
            Role::Admin | Role::ClusterAdmin => true,
        }
    }

    /// The role's name: `view`, `edit`, `admin` or `cluster-admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::View => "view",
            Role::Edit => "edit",
            Role::Admin => "admin",
            Role::ClusterAdmin => "cluster-admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "view" => Ok(Role::View),
            "edit" => Ok(Role::Edit),
            "admin" => Ok(Role::Admin),
            "cluster-admin" => Ok(Role::ClusterAdmin),
            other => Err(ApiError::invalid(
                "role",
                format!(
                    "role: Unsupported value: {other:?}: supported values: \"view\", \"edit\", \"admin\", \"cluster-admin\""
                ),
            )),
        }
    }
}

/// Whom a role binding names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// One identity, by name.
    User(String),
    /// Every identity of a group.
    Group(String),
}

/// A role granted to a subject in one namespace, or in every one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleBinding {
    /// The namespace; `None` binds the role in every namespace.
    pub namespace: Option<String>,
    /// The role.
    pub role: Role,
    /// Who gets it.
    pub subject: Subject,
}

impl RoleBinding {
    /// Checks the binding: `cluster-admin` has no namespace.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.role == Role::ClusterAdmin && self.namespace.is_some() {
            return Err(ApiError::invalid(
                "namespace",
                "namespace: Invalid value: cluster-admin is bound in every namespace, not in one",
            ));
        }
        Ok(())
    }

    /// Whether the binding applies to `identity`.
    pub fn names(&self, identity: &Identity) -> bool {
        match &self.subject {
            Subject::User(name) => *name == identity.name,
            Subject::Group(group) => identity.groups.iter().any(|g| g == group),
        }
    }

    /// Whether the binding lets its subject do `verb` in `namespace`
    /// (`None`: in every namespace at once).
    pub fn grants(&self, namespace: Option<&str>, verb: Verb) -> bool {
        let scope = match (&self.namespace, namespace) {
            (None, _) => true,
            (Some(bound), Some(asked)) => bound == asked,
            (Some(_), None) => false,
        };
        scope && self.role.allows(verb)
    }
}

/// An authenticated identity: a name and the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `alice`, or `system:serviceaccount:<namespace>:<name>`.
    pub name: String,
    /// Groups, for group role bindings.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Identity {
    /// The identity of service account `name` in `namespace`, in its
    /// OpenShift groups (`system:serviceaccounts`, `system:serviceaccounts:<ns>`).
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Identity {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
            ],
        }
    }
}

/// Who makes a request, resolved once per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off (`auth.enabled = false`): everything is allowed.
    Unrestricted,
    /// No credentials were presented.
    Anonymous,
    /// A known identity and every role binding that names it.
    Authenticated {
        /// Who.
        identity: Identity,
        /// The bindings naming the identity or one of its groups.
        bindings: Vec<RoleBinding>,
    },
}

impl Caller {
    /// The caller's name for logs and messages.
    pub fn name(&self) -> &str {
        match self {
            Caller::Unrestricted => "system:unrestricted",
            Caller::Anonymous => "system:anonymous",
            Caller::Authenticated { identity, .. } => &identity.name,
        }
    }
}

/// Whether `caller` may do `verb` in `namespace` (`None`: in every namespace
/// at once): `Unauthenticated` for a caller without credentials,
/// `Forbidden` for a known one without the right.
pub fn authorize(caller: &Caller, namespace: Option<&str>, verb: Verb) -> Result<(), ApiError> {
    match caller {
        Caller::Unrestricted => Ok(()),
        Caller::Anonymous => Err(ApiError::Unauthenticated(
            "Unauthorized: a bearer token is required".to_owned(),
        )),
        Caller::Authenticated { identity, bindings } => {
            if bindings.iter().any(|b| b.grants(namespace, verb)) {
                return Ok(());
            }
            let scope = match namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_owned(),
            };
            let action = match verb {
                Verb::Triggers | Verb::Secrets | Verb::RoleBindings => {
                    format!("manage {}", verb.as_str())
                }
                _ => format!("{} imagestreams", verb.as_str()),
            };
            Err(ApiError::Forbidden(format!(
                "User \"{}\" cannot {action} {scope}",
                identity.name
            )))
        }
    }
}

/// A bearer token: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

/// How many random bytes a generated token carries.
pub const TOKEN_BYTES: usize = 32;
/// The prefix of generated tokens, so that scanners recognise them.
pub const TOKEN_PREFIX: &str = "isk_";

impl Token {
    /// Wraps a presented token.
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// A new random token: [`TOKEN_PREFIX`] and [`TOKEN_BYTES`] random bytes in hex.
    pub fn generate() -> Self {
        let bytes: [u8; TOKEN_BYTES] = rand::random();
        Token(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
    }

    /// The token itself, for the one place that sends or shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, what the server keeps.
    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The lower-case hex SHA-256 of a token.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenHash(String);

impl TokenHash {
    /// Parses 64 hex digits (either case).
    pub fn parse(hex_digits: &str) -> Result<Self, ApiError> {
        if hex_digits.len() != 64 || !hex_digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::invalid(
                "token_sha256",
                "token_sha256: Invalid value: must be the 64 hex digits of a SHA-256",
            ));
        }
        Ok(TokenHash(hex_digits.to_ascii_lowercase()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares in constant time (no early exit on the first difference).
    pub fn matches(&self, other: &TokenHash) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // a prefix is enough to tell hashes apart in a log
        write!(f, "TokenHash({}…)", &self.0[..self.0.len().min(8)])
    }
}

/// The bearer token of an `Authorization: Bearer <token>` header value;
/// `None` for no header, another scheme or an empty token.
pub fn bearer(header: Option<&str>) -> Option<Token> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| Token::new(token))
}

/// The caller a tonic request carries (put there by the gateway's
/// authentication layer), authorized for `verb` in `namespace`.
pub fn authorize_request<T>(
    request: &tonic::Request<T>,
    namespace: Option<&str>,
    verb: Verb,
) -> Result<(), ApiError> {
    authorize(caller_of(request.extensions())?, namespace, verb)
}

/// The caller in a request's extensions. Missing means the authentication
/// layer did not run: refused, never allowed.
pub fn caller_of(extensions: &tonic::Extensions) -> Result<&Caller, ApiError> {
    match extensions.get::<Authenticated>() {
        Some(Authenticated(Ok(caller))) => Ok(caller),
        Some(Authenticated(Err(error))) => Err(error.clone()),
        None => Err(ApiError::Internal(
            "the request was not authenticated".to_owned(),
        )),
    }
}

/// A tonic interceptor that lets every request do anything: for serving an
/// API without the gateway's authentication layer (in-process test stubs).
/// `Server::builder().layer(tonic::service::InterceptorLayer::new(auth::unrestricted))`.
pub fn unrestricted(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    request
        .extensions_mut()
        .insert(Authenticated(Ok(Caller::Unrestricted)));
    Ok(request)
}

/// The outcome of authenticating a request, as the authentication layer
/// leaves it in the request's extensions for the handlers.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Result<Caller, ApiError>);

impl Authenticated {
    /// Whether the request may do `verb` in `namespace` (see [`authorize`]);
    /// a failed authentication is its own error.
    pub fn authorize(&self, namespace: Option<&str>, verb: Verb) -> Result<(), ApiError> {
        match &self.0 {
            Ok(caller) => authorize(caller, namespace, verb),
            Err(error) => Err(error.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str, groups: &[&str], bindings: &[(Option<&str>, Role, Subject)]) -> Caller {
        Caller::Authenticated {
            identity: Identity {
                name: name.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
            bindings: bindings
                .iter()
                .map(|(ns, role, subject)| RoleBinding {
                    namespace: ns.map(str::to_owned),
                    role: *role,
                    subject: subject.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn roles_nest() {
        for verb in Verb::ALL {
            if Role::View.allows(verb) {
                assert!(Role::Edit.allows(verb), "{verb:?}");
            }
            if Role::Edit.allows(verb) {
                assert!(Role::Admin.allows(verb), "{verb:?}");
            }
            assert!(Role::ClusterAdmin.allows(verb));
        }
        assert!(!Role::View.allows(Verb::Create));
        assert!(!Role::View.allows(Verb::Import));
        assert!(Role::Edit.allows(Verb::Import));
        assert!(Role::Edit.allows(Verb::Triggers));
        assert!(!Role::Edit.allows(Verb::Secrets));
        assert!(Role::Admin.allows(Verb::Secrets));
        assert!(Role::Admin.allows(Verb::RoleBindings));
        for role in [Role::View, Role::Edit, Role::Admin, Role::ClusterAdmin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert_eq!("root".parse::<Role>().unwrap_err().http_status(), 400);
    }

    #[test]
    fn bindings_are_per_namespace_and_cluster_wide_ones_cover_all() {
        let editor = caller(
            "alice",
            &[],
            &[(Some("ns1"), Role::Edit, Subject::User("alice".into()))],
        );
        assert!(authorize(&editor, Some("ns1"), Verb::Create).is_ok());
        assert!(authorize(&editor, Some("ns1"), Verb::Get).is_ok());
        let denied = authorize(&editor, Some("ns2"), Verb::Get).unwrap_err();
        assert_eq!(denied.http_status(), 403);
        assert!(denied.to_string().contains("ns2"), "{denied}");
        assert_eq!(
            authorize(&editor, None, Verb::List)
                .unwrap_err()
                .http_status(),
            403,
            "a namespaced binding does not list every namespace"
        );
        assert_eq!(
            authorize(&editor, Some("ns1"), Verb::Secrets)
                .unwrap_err()
                .http_status(),
            403
        );

        let viewer_everywhere = caller(
            "bob",
            &["auditors"],
            &[(None, Role::View, Subject::Group("auditors".into()))],
        );
        assert!(authorize(&viewer_everywhere, None, Verb::Watch).is_ok());
        assert!(authorize(&viewer_everywhere, Some("any"), Verb::Get).is_ok());
        assert!(authorize(&viewer_everywhere, Some("any"), Verb::Delete).is_err());

        let root = caller(
            "root",
            &[],
            &[(None, Role::ClusterAdmin, Subject::User("root".into()))],
        );
        for verb in Verb::ALL {
            assert!(authorize(&root, None, verb).is_ok());
            assert!(authorize(&root, Some("x"), verb).is_ok());
        }
    }

    #[test]
    fn anonymous_is_unauthenticated_and_unrestricted_is_everything() {
        let error = authorize(&Caller::Anonymous, Some("ns"), Verb::Get).unwrap_err();
        assert_eq!(error.http_status(), 401);
        assert_eq!(
            tonic::Status::from(error).code(),
            tonic::Code::Unauthenticated
        );
        let forbidden = authorize(&caller("x", &[], &[]), Some("ns"), Verb::Get).unwrap_err();
        assert_eq!(
            tonic::Status::from(forbidden).code(),
            tonic::Code::PermissionDenied
        );
        for verb in Verb::ALL {
            assert!(authorize(&Caller::Unrestricted, None, verb).is_ok());
        }
    }

    #[test]
    fn bindings_name_users_and_groups() {
        let sa = Identity::service_account("ns1", "builder");
        assert_eq!(sa.name, "system:serviceaccount:ns1:builder");
        let by_group = RoleBinding {
            namespace: Some("ns1".into()),
            role: Role::View,
            subject: Subject::Group("system:serviceaccounts:ns1".into()),
        };
        assert!(by_group.names(&sa));
        let other = RoleBinding {
            subject: Subject::User("system:serviceaccount:ns2:builder".into()),
            ..by_group.clone()
        };
        assert!(!other.names(&sa));
        let bad = RoleBinding {
            namespace: Some("ns1".into()),
            role: Role::ClusterAdmin,
            subject: Subject::User("x".into()),
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn tokens_hash_compare_and_never_print() {
        let token = Token::generate();
        assert!(token.expose().starts_with(TOKEN_PREFIX));
        assert_ne!(token, Token::generate());
        assert!(!format!("{token:?}").contains(token.expose()));
        let hash = token.hash();
        assert_eq!(hash.as_str().len(), 64);
        assert!(!format!("{hash:?}").contains(hash.as_str()));
        let parsed = TokenHash::parse(&hash.as_str().to_ascii_uppercase()).unwrap();
        assert!(parsed.matches(&hash));
        assert!(!Token::new("other").hash().matches(&hash));
        // sha256("secret")
        assert_eq!(
            Token::new("secret").hash().as_str(),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert!(TokenHash::parse("abc").is_err());
    }

    #[test]
    fn bearer_headers_parse() {
        assert_eq!(bearer(Some("Bearer abc")).unwrap().expose(), "abc");
        assert_eq!(bearer(Some("bearer  abc ")).unwrap().expose(), "abc");
        assert!(bearer(Some("Basic abc")).is_none());
        assert!(bearer(Some("Bearer ")).is_none());
        assert!(bearer(None).is_none());
    }
}
