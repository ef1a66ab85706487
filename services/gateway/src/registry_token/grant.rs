//! What a registry token grants: the scopes a client asks for (Docker's
//! `resourcetype:resourcename:action[,action]*`) and the one rule that turns
//! them into `access` entries, the intersection of what is asked and what the
//! caller may do. Pure: the caller is resolved beforehand.
//!
//! | asked | granted when the caller may |
//! |---|---|
//! | `repository:<ns>/<name>:pull` | `get` in `<ns>` (the `view` role), or `<ns>` is public |
//! | `repository:<ns>/<name>:push` | `create` in `<ns>` (the `edit` role; a push may create the stream, and the stream-store asks the same) |
//! | `repository:<ns>/<name>:delete` | `delete` in `<ns>` (the `edit` role) |
//! | `registry:catalog:*` | `list` in every namespace at once (the catalog names every repository) |
//!
//! Anything else (another depth than `<ns>/<name>`, an unknown type or
//! action, `*` on a repository) grants nothing; a scope without its three
//! parts is malformed.

use std::str::FromStr;

use imagestreams_common::{
    auth::{Caller, Verb, authorize},
    model::stream_of_repository,
};
use serde::{Deserialize, Serialize};

/// The resource type of repositories.
pub const REPOSITORY: &str = "repository";
/// The resource type of registry-wide resources (`registry:catalog:*`).
pub const REGISTRY: &str = "registry";
/// The registry-wide resource listing every repository.
pub const CATALOG: &str = "catalog";

/// An action on a repository that the integrated registry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read manifests and blobs.
    Pull,
    /// Write manifests and blobs.
    Push,
    /// Delete manifests.
    Delete,
}

impl Action {
    /// The action's name in a scope and in a token's `access`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// The verb that allows the action in the repository's namespace.
    pub fn verb(self) -> Verb {
        match self {
            Action::Pull => Verb::Get,
            Action::Push => Verb::Create,
            Action::Delete => Verb::Delete,
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// One scope a client asks for, as written (unknown types and actions
/// included: they grant nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository`, `registry`, …
    pub kind: String,
    /// `ns/name`, `catalog`, … (may hold `:`, e.g. a registry host's port).
    pub name: String,
    /// The actions asked, in order, without repeats.
    pub actions: Vec<String>,
}

/// A scope without its three parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope {0:?}: expected <type>:<name>:<action>[,<action>]*")]
pub struct MalformedScope(pub String);

impl FromStr for Scope {
    type Err = MalformedScope;

    /// The type is up to the first `:`, the actions after the last one, the
    /// name in between (so it may hold `:`).
    fn from_str(s: &str) -> Result<Self, MalformedScope> {
        let malformed = || MalformedScope(s.to_owned());
        let (kind, rest) = s.split_once(':').ok_or_else(malformed)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
        if kind.is_empty() || name.is_empty() {
            return Err(malformed());
        }
        let mut unique: Vec<String> = Vec::new();
        for action in actions.split(',').filter(|a| !a.is_empty()) {
            if !unique.iter().any(|a| a == action) {
                unique.push(action.to_owned());
            }
        }
        Ok(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: unique,
        })
    }
}

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The resource type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource name.
    pub name: String,
    /// The actions granted.
    pub actions: Vec<String>,
}

/// Who may pull without a role: the configured public namespaces.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Namespaces anyone may pull from.
    pub public_namespaces: Vec<String>,
}

impl Policy {
    /// The actions of `scope` that `caller` may do: the intersection of what
    /// is asked and what is allowed (see the module docs), in the asked order.
    pub fn grant(&self, caller: &Caller, scope: &Scope) -> Vec<String> {
        match scope.kind.as_str() {
            REPOSITORY => {
                let Ok(stream) = stream_of_repository(&scope.name) else {
                    return Vec::new();
                };
                let public = self.public_namespaces.contains(&stream.namespace);
                scope
                    .actions
                    .iter()
                    .filter(|asked| {
                        Action::parse(asked).is_some_and(|action| {
                            (public && action == Action::Pull)
                                || authorize(caller, Some(&stream.namespace), action.verb()).is_ok()
                        })
                    })
                    .cloned()
                    .collect()
            }
            REGISTRY if scope.name == CATALOG => scope
                .actions
                .iter()
                .filter(|asked| *asked == "*" && authorize(caller, None, Verb::List).is_ok())
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The `access` claim for `scopes`: one entry per scope granting
    /// something (none for a caller who may do nothing asked).
    pub fn access(&self, caller: &Caller, scopes: &[Scope]) -> Vec<Access> {
        scopes
            .iter()
            .filter_map(|scope| {
                let actions = self.grant(caller, scope);
                (!actions.is_empty()).then(|| Access {
                    kind: scope.kind.clone(),
                    name: scope.name.clone(),
                    actions,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use imagestreams_common::auth::{Identity, Role, RoleBinding, Subject};

    use super::*;

    fn scope(s: &str) -> Scope {
        s.parse().unwrap()
    }

    fn caller(bindings: &[(Option<&str>, Role)]) -> Caller {
        Caller::Authenticated {
            identity: Identity {
                name: "u".into(),
                groups: Vec::new(),
            },
            bindings: bindings
                .iter()
                .map(|(ns, role)| RoleBinding {
                    namespace: ns.map(str::to_owned),
                    role: *role,
                    subject: Subject::User("u".into()),
                })
                .collect(),
        }
    }

    #[test]
    fn scopes_parse_as_docker_writes_them() {
        assert_eq!(
            scope("repository:ns1/app:pull,push"),
            Scope {
                kind: "repository".into(),
                name: "ns1/app".into(),
                actions: vec!["pull".into(), "push".into()],
            }
        );
        // the name may hold a colon; repeats and empty actions go
        let s = scope("repository:host:5000/ns/app:push,,push,pull");
        assert_eq!(s.name, "host:5000/ns/app");
        assert_eq!(s.actions, ["push", "pull"]);
        assert_eq!(scope("registry:catalog:*").actions, ["*"]);
        assert!(scope("repository:ns/app:").actions.is_empty());
        for bad in [
            "",
            "repository",
            "repository:ns/app",
            ":ns/app:pull",
            "repository::pull",
        ] {
            assert_eq!(
                bad.parse::<Scope>(),
                Err(MalformedScope(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_grant_is_the_intersection_of_asked_and_allowed() {
        let policy = Policy::default();
        let both = scope("repository:ns1/app:pull,push");
        let table: [(&str, Caller, &[&str]); 7] = [
            (
                "editor",
                caller(&[(Some("ns1"), Role::Edit)]),
                &["pull", "push"],
            ),
            ("viewer", caller(&[(Some("ns1"), Role::View)]), &["pull"]),
            (
                "admin",
                caller(&[(Some("ns1"), Role::Admin)]),
                &["pull", "push"],
            ),
            ("other ns", caller(&[(Some("ns2"), Role::Edit)]), &[]),
            (
                "everywhere",
                caller(&[(None, Role::Edit)]),
                &["pull", "push"],
            ),
            ("anonymous", Caller::Anonymous, &[]),
            ("auth off", Caller::Unrestricted, &["pull", "push"]),
        ];
        for (label, who, want) in table {
            assert_eq!(policy.grant(&who, &both), want, "{label}");
        }
        let editor = caller(&[(Some("ns1"), Role::Edit)]);
        assert_eq!(
            policy.grant(&editor, &scope("repository:ns1/app:push")),
            ["push"],
            "never more than asked"
        );
        assert_eq!(
            policy.grant(&editor, &scope("repository:ns1/app:delete,*,frobnicate")),
            ["delete"],
            "unknown actions and * grant nothing"
        );
    }

    #[test]
    fn names_that_are_not_namespace_slash_name_grant_nothing() {
        let policy = Policy::default();
        for name in [
            "app",
            "ns1/group/app",
            "NS1/app",
            "ns1/-app",
            "127.0.0.1:5000/ns1/app",
        ] {
            let asked = scope(&format!("repository:{name}:pull,push"));
            assert!(
                policy.grant(&Caller::Unrestricted, &asked).is_empty(),
                "{name}"
            );
        }
        let other_type = scope("repository(plugin):ns1/app:pull");
        assert!(policy.grant(&Caller::Unrestricted, &other_type).is_empty());
    }

    #[test]
    fn public_namespaces_let_anyone_pull_only() {
        let policy = Policy {
            public_namespaces: vec!["library".into()],
        };
        let asked = scope("repository:library/ubuntu:pull,push");
        assert_eq!(policy.grant(&Caller::Anonymous, &asked), ["pull"]);
        let stranger = caller(&[(Some("ns1"), Role::Edit)]);
        assert_eq!(policy.grant(&stranger, &asked), ["pull"]);
        let private = scope("repository:ns2/app:pull");
        assert!(policy.grant(&Caller::Anonymous, &private).is_empty());
    }

    #[test]
    fn the_catalog_needs_list_in_every_namespace() {
        let policy = Policy::default();
        let catalog = scope("registry:catalog:*");
        assert!(
            policy
                .grant(&caller(&[(Some("ns1"), Role::Admin)]), &catalog)
                .is_empty()
        );
        assert_eq!(
            policy.grant(&caller(&[(None, Role::View)]), &catalog),
            ["*"]
        );
    }

    #[test]
    fn access_lists_only_scopes_granting_something() {
        let policy = Policy::default();
        let scopes = [
            scope("repository:ns1/app:pull,push"),
            scope("repository:ns2/app:pull"),
        ];
        let viewer = caller(&[(Some("ns1"), Role::View)]);
        assert_eq!(
            policy.access(&viewer, &scopes),
            [Access {
                kind: "repository".into(),
                name: "ns1/app".into(),
                actions: vec!["pull".into()],
            }]
        );
        assert!(policy.access(&Caller::Anonymous, &scopes).is_empty());
        let json = serde_json::to_value(&policy.access(&viewer, &scopes)[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "repository", "name": "ns1/app", "actions": ["pull"]})
        );
    }
}
