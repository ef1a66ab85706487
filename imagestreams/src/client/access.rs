//! Who may do what, over the gateway's `Auth` gRPC service, with `oc`'s verbs:
//!
//! - `whoami`: the identity of the token in use;
//! - `create serviceaccount NAME` (`sa`): the account's token on stdout, once
//!   (the server keeps only its hash), the note on stderr, so that
//!   `TOKEN=$(imagestreams create sa ci)` works;
//! - `delete serviceaccount NAME…`: its tokens are refused from then on;
//! - `policy add-role-to-user|remove-role-from-user|add-role-to-group|remove-role-from-group ROLE SUBJECT`
//!   in the namespace (`-n`);
//! - `get rolebindings` (`rb`): the namespace's bindings, configured and
//!   stored; with `-A`, every binding (a cluster-admin's view);
//! - `get serviceaccounts` (`sa`): the namespace's accounts.

use std::io::Write;

use imagestreams_proto::v1::{self as pb, auth_client::AuthClient};
use tonic::transport::Channel;

use super::{
    ClientError, Context,
    connection::{self, DEFAULT_CALL_TIMEOUT, Session},
    tabwriter,
};
use crate::cli::{GetArgs, PolicyArgs, PolicyCommand};

/// Every spelling of the ServiceAccount resource kubectl would accept.
const RESOURCE_NAMES: [&str; 3] = ["sa", "serviceaccount", "serviceaccounts"];
/// Every spelling of the RoleBinding resource kubectl would accept.
const BINDING_NAMES: [&str; 3] = ["rb", "rolebinding", "rolebindings"];

/// Whether `resource` names role bindings.
pub fn handles_bindings(resource: &str) -> bool {
    BINDING_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(resource))
}

/// Whether `resource` (`TYPE` or `TYPE/NAME`) names service accounts.
pub fn handles(resource: &str) -> bool {
    let kind = resource.split_once('/').map_or(resource, |(kind, _)| kind);
    RESOURCE_NAMES.iter().any(|r| r.eq_ignore_ascii_case(kind))
}

/// The names of `TYPE NAME…` or `TYPE/NAME`.
fn names(resource: &str, rest: &[String]) -> Result<Vec<String>, ClientError> {
    let mut names: Vec<String> = resource
        .split_once('/')
        .map(|(_, name)| name.to_owned())
        .into_iter()
        .chain(rest.iter().cloned())
        .collect();
    names.retain(|n| !n.is_empty());
    if names.is_empty() {
        return Err(ClientError::usage(
            "resource(s) were provided, but no name was specified",
        ));
    }
    Ok(names)
}

async fn client(ctx: &mut Context) -> Result<(Session, AuthClient<Channel>), ClientError> {
    let session = connection::session(ctx).await?;
    let client = AuthClient::new(session.channel.clone());
    Ok((session, client))
}

/// `get rolebindings [-A]`: a table of ROLE, KIND, SUBJECT and SOURCE
/// (`config` or `api`), with NAMESPACE first under `-A` (`*`: every one).
pub async fn get_bindings(
    ctx: &mut Context,
    args: &GetArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    if !args.names.is_empty() || args.output.is_some() || args.selector.is_some() {
        return Err(ClientError::usage(
            "get rolebindings takes no names, -o or -l: it prints the namespace's bindings (-A: all)",
        ));
    }
    let namespace = if args.all_namespaces {
        String::new()
    } else {
        ctx.namespace().to_owned()
    };
    let (session, mut auth) = client(ctx).await?;
    let items = auth
        .list_role_bindings(session.request(
            pb::ListRoleBindingsRequest {
                namespace: namespace.clone(),
            },
            Some(DEFAULT_CALL_TIMEOUT),
        ))
        .await
        .map_err(|s| session.status(s))?
        .into_inner()
        .items;
    let mut header = vec!["ROLE", "KIND", "SUBJECT", "SOURCE"];
    if args.all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<&str>> = items
        .iter()
        .map(|b| {
            let (kind, subject) = if b.group.is_empty() {
                ("User", b.user.as_str())
            } else {
                ("Group", b.group.as_str())
            };
            let source = if b.configured { "config" } else { "api" };
            let mut row = vec![b.role.as_str(), kind, subject, source];
            if args.all_namespaces {
                row.insert(
                    0,
                    if b.namespace.is_empty() {
                        "*"
                    } else {
                        b.namespace.as_str()
                    },
                );
            }
            row
        })
        .collect();
    let scope = (!args.all_namespaces).then_some(namespace.as_str());
    tabwriter::print_list(out, err, scope, &header, &rows)?;
    Ok(())
}

/// `get sa`: the namespace's service accounts, a NAME column.
pub async fn get_accounts(
    ctx: &mut Context,
    args: &GetArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    if !args.names.is_empty()
        || args.output.is_some()
        || args.selector.is_some()
        || args.all_namespaces
    {
        return Err(ClientError::usage(
            "get serviceaccounts takes no names, -o, -l or -A: it prints the namespace's accounts",
        ));
    }
    let namespace = ctx.namespace().to_owned();
    let (session, mut auth) = client(ctx).await?;
    let names = auth
        .list_service_accounts(session.request(
            pb::ListServiceAccountsRequest {
                namespace: namespace.clone(),
            },
            Some(DEFAULT_CALL_TIMEOUT),
        ))
        .await
        .map_err(|s| session.status(s))?
        .into_inner()
        .names;
    let rows: Vec<Vec<&str>> = names.iter().map(|n| vec![n.as_str()]).collect();
    tabwriter::print_list(out, err, Some(&namespace), &["NAME"], &rows)?;
    Ok(())
}

/// `whoami`.
pub async fn whoami(ctx: &mut Context, out: &mut impl Write) -> Result<(), ClientError> {
    let (session, mut auth) = client(ctx).await?;
    let me = auth
        .who_am_i(session.request(pb::WhoAmIRequest {}, Some(DEFAULT_CALL_TIMEOUT)))
        .await
        .map_err(|s| session.status(s))?
        .into_inner();
    writeln!(out, "{}", me.name)?;
    Ok(())
}

/// `create serviceaccount NAME`.
pub async fn create(
    ctx: &mut Context,
    resource: &str,
    name: &str,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    if !handles(resource) || resource.contains('/') {
        return Err(ClientError::usage(format!(
            "create makes image streams with -f FILE, or a service account with `create serviceaccount NAME`; not {resource:?}"
        )));
    }
    let namespace = ctx.namespace().to_owned();
    let (session, mut auth) = client(ctx).await?;
    let created = auth
        .create_service_account(session.request(
            pb::CreateServiceAccountRequest {
                namespace,
                name: name.to_owned(),
            },
            Some(DEFAULT_CALL_TIMEOUT),
        ))
        .await
        .map_err(|s| session.status(s))?
        .into_inner();
    writeln!(
        err,
        "serviceaccount/{name} created ({}); its token, on stdout, is shown this once",
        created.identity
    )?;
    writeln!(out, "{}", created.token)?;
    Ok(())
}

/// `delete serviceaccount NAME…`.
pub async fn delete(
    ctx: &mut Context,
    resource: &str,
    rest: &[String],
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let names = names(resource, rest)?;
    let namespace = ctx.namespace().to_owned();
    let (session, mut auth) = client(ctx).await?;
    for name in names {
        auth.delete_service_account(session.request(
            pb::DeleteServiceAccountRequest {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            Some(DEFAULT_CALL_TIMEOUT),
        ))
        .await
        .map_err(|s| session.status(s))?;
        writeln!(out, "serviceaccount \"{name}\" deleted")?;
    }
    Ok(())
}

/// `policy …`.
pub async fn policy(
    ctx: &mut Context,
    command: &PolicyCommand,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let (add, to_group, args): (bool, bool, &PolicyArgs) = match command {
        PolicyCommand::AddRoleToUser(args) => (true, false, args),
        PolicyCommand::RemoveRoleFromUser(args) => (false, false, args),
        PolicyCommand::AddRoleToGroup(args) => (true, true, args),
        PolicyCommand::RemoveRoleFromGroup(args) => (false, true, args),
    };
    let namespace = ctx.namespace().to_owned();
    let (user, group) = if to_group {
        (String::new(), args.subject.clone())
    } else {
        (args.subject.clone(), String::new())
    };
    let (session, mut auth) = client(ctx).await?;
    let role = args.role.clone();
    let answered = if add {
        let request = pb::CreateRoleBindingRequest {
            namespace,
            role,
            user,
            group,
        };
        auth.create_role_binding(session.request(request, Some(DEFAULT_CALL_TIMEOUT)))
            .await
            .map(drop)
    } else {
        let request = pb::DeleteRoleBindingRequest {
            namespace,
            role,
            user,
            group,
        };
        auth.delete_role_binding(session.request(request, Some(DEFAULT_CALL_TIMEOUT)))
            .await
            .map(drop)
    };
    answered.map_err(|s| session.status(s))?;
    let done = if add { "added" } else { "removed" };
    writeln!(out, "role \"{}\" {done}: \"{}\"", args.role, args.subject)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_spellings_and_names() {
        for kind in ["sa", "SA", "serviceaccount", "serviceaccounts", "sa/ci"] {
            assert!(handles(kind), "{kind}");
        }
        for kind in ["is", "secret", "triggers", "s"] {
            assert!(!handles(kind), "{kind}");
        }
        let rest = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(names("sa", &rest(&["a", "b"])).unwrap(), rest(&["a", "b"]));
        assert_eq!(names("sa/a", &[]).unwrap(), rest(&["a"]));
        assert!(names("sa", &[]).is_err());
    }
}
