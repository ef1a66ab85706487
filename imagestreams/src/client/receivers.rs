//! Webhook receivers (issue 18), over the gateway's `Receivers` gRPC
//! service:
//!
//! - `create receiver NAME --type TYPE [--secret-stdin] [--repository REPO]…
//!   [--paused] [--oidc-audience AUD --oidc-email EMAIL]`: prints the
//!   receiver's full URL alone on stdout (to paste into the sender's webhook
//!   settings, or to pipe); a generated secret is shown once on stderr, and
//!   a sender that cannot authenticate (dockerhub, quay) is said to be so;
//! - `get receivers [NAME…]`: type, URL path, last delivery and its
//!   outcome; `-o json|yaml` gives every field but the secret;
//! - `delete receiver NAME…`: its URL answers 404 from then on.

use std::io::{Read, Write};

use imagestreams_proto::v1::{self as pb, receivers_client::ReceiversClient};
use serde_json::{Value, json};

use super::{
    ClientError, Context,
    connection::{self, DEFAULT_CALL_TIMEOUT, Session},
    output,
    secrets::read_password,
    tabwriter,
};
use crate::cli::{CreateArgs, GetArgs, GetOutput};

/// Every spelling of the resource.
const RESOURCE_NAMES: [&str; 2] = ["receiver", "receivers"];

/// Whether `resource` (`TYPE` or `TYPE/NAME`) names receivers.
pub fn handles(resource: &str) -> bool {
    let kind = resource.split_once('/').map_or(resource, |(kind, _)| kind);
    RESOURCE_NAMES.iter().any(|r| r.eq_ignore_ascii_case(kind))
}

fn names(resource: &str, rest: &[String]) -> Vec<String> {
    resource
        .split_once('/')
        .map(|(_, name)| name.to_owned())
        .into_iter()
        .chain(rest.iter().cloned())
        .filter(|n| !n.is_empty())
        .collect()
}

async fn client(
    ctx: &mut Context,
) -> Result<(Session, ReceiversClient<tonic::transport::Channel>), ClientError> {
    let session = connection::session(ctx).await?;
    let client = ReceiversClient::new(session.channel.clone());
    Ok((session, client))
}

/// The request `create receiver` makes, the secret read from `stdin` with
/// `--secret-stdin`.
pub fn create_request(
    args: &CreateArgs,
    namespace: &str,
    stdin: &mut impl Read,
) -> Result<pb::CreateReceiverRequest, ClientError> {
    let name = args
        .name
        .clone()
        .ok_or_else(|| ClientError::usage("create receiver needs a NAME"))?;
    let kind = args.receiver_type.clone().ok_or_else(|| {
        ClientError::usage(
            "create receiver needs --type (dockerhub, quay, ghcr, harbor, gitlab, distribution, acr, gar, ecr, artifactory, nexus, zot, cloudevents, generic-hmac)",
        )
    })?;
    let secret = if args.secret_stdin {
        read_password(stdin)?
    } else {
        String::new()
    };
    Ok(pb::CreateReceiverRequest {
        namespace: namespace.to_owned(),
        name,
        r#type: kind,
        secret,
        repositories: args.repositories.clone(),
        paused: args.paused,
        oidc_audience: args.oidc_audience.clone().unwrap_or_default(),
        oidc_email: args.oidc_email.clone().unwrap_or_default(),
    })
}

/// `create receiver NAME --type TYPE …`.
pub async fn create(
    ctx: &mut Context,
    args: &CreateArgs,
    stdin: &mut impl Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    let namespace = ctx.namespace().to_owned();
    let request = create_request(args, &namespace, stdin)?;
    let (session, mut receivers) = client(ctx).await?;
    let created = receivers
        .create(session.request(request, Some(DEFAULT_CALL_TIMEOUT)))
        .await
        .map_err(|s| session.status(s))?
        .into_inner();
    let receiver = created.receiver.unwrap_or_default();
    writeln!(
        err,
        "receiver/{} created ({})",
        receiver.name, receiver.r#type
    )?;
    if !created.generated_secret.is_empty() {
        writeln!(
            err,
            "its secret, shown this once (set it in the sender's webhook settings): {}",
            created.generated_secret
        )?;
    }
    if receiver.weakly_authenticated {
        writeln!(
            err,
            "warning: {} cannot authenticate its deliveries: the URL is the only secret; keep it so",
            receiver.r#type
        )?;
    }
    writeln!(out, "{}", receiver.url)?;
    Ok(())
}

fn as_json(r: &pb::Receiver) -> Value {
    let status = r.status.clone().unwrap_or_default();
    json!({
        "apiVersion": "imagestreams.io/v1",
        "kind": "Receiver",
        "metadata": {
            "name": r.name,
            "namespace": r.namespace,
            "uid": r.uid,
            "creationTimestamp": r.creation_timestamp,
        },
        "spec": {
            "type": r.r#type,
            "repositories": r.repositories,
            "paused": r.paused,
            "oidcAudience": r.oidc_audience,
            "oidcEmail": r.oidc_email,
        },
        "status": {
            "url": r.url,
            "webhookPath": r.path,
            "weaklyAuthenticated": r.weakly_authenticated,
            "lastDeliveryTime": status.last_delivery_time,
            "lastOutcome": status.last_outcome,
            "lastDeliveryId": status.last_delivery_id,
        },
    })
}

/// `get receivers [NAME…]`.
pub async fn get(
    ctx: &mut Context,
    args: &GetArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    if args.selector.is_some() || args.all_namespaces {
        return Err(ClientError::usage(
            "get receivers takes no -l or -A: it lists the namespace's receivers",
        ));
    }
    let namespace = ctx.namespace().to_owned();
    let wanted = names(&args.resource, &args.names);
    let (session, mut receivers) = client(ctx).await?;
    let mut items = Vec::new();
    if wanted.is_empty() {
        items = receivers
            .list(session.request(
                pb::ListReceiversRequest {
                    namespace: namespace.clone(),
                },
                Some(DEFAULT_CALL_TIMEOUT),
            ))
            .await
            .map_err(|s| session.status(s))?
            .into_inner()
            .items;
    } else {
        for name in &wanted {
            items.push(
                receivers
                    .get(session.request(
                        pb::GetReceiverRequest {
                            namespace: namespace.clone(),
                            name: name.clone(),
                        },
                        Some(DEFAULT_CALL_TIMEOUT),
                    ))
                    .await
                    .map_err(|s| session.status(s))?
                    .into_inner(),
            );
        }
    }
    match args.output {
        Some(output @ (GetOutput::Json | GetOutput::Yaml)) => {
            let format = if output == GetOutput::Json {
                output::Format::Json
            } else {
                output::Format::Yaml
            };
            let values: Vec<Value> = items.iter().map(as_json).collect();
            out.write_all(output::objects(&values, wanted.len() == 1, format)?.as_bytes())?;
        }
        Some(GetOutput::Name) => {
            for r in &items {
                writeln!(out, "receiver/{}", r.name)?;
            }
        }
        _ => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|r| {
                    let status = r.status.clone().unwrap_or_default();
                    let last = match status.last_delivery_time.as_str() {
                        "" => "<none>".to_owned(),
                        time => format!("{time} ({})", status.last_outcome),
                    };
                    vec![
                        r.name.clone(),
                        if r.weakly_authenticated {
                            format!("{} (url only)", r.r#type)
                        } else {
                            r.r#type.clone()
                        },
                        r.path.clone(),
                        last,
                        if r.paused { "true" } else { "false" }.to_owned(),
                    ]
                })
                .collect();
            let header = ["NAME", "TYPE", "PATH", "LAST DELIVERY", "PAUSED"];
            tabwriter::print_list(out, err, Some(&namespace), &header, &rows)?;
        }
    }
    Ok(())
}

/// `delete receiver NAME…`.
pub async fn delete(
    ctx: &mut Context,
    resource: &str,
    rest: &[String],
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let names = names(resource, rest);
    if names.is_empty() {
        return Err(ClientError::usage(
            "resource(s) were provided, but no name was specified",
        ));
    }
    let namespace = ctx.namespace().to_owned();
    let (session, mut receivers) = client(ctx).await?;
    for name in names {
        receivers
            .delete(session.request(
                pb::DeleteReceiverRequest {
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
                Some(DEFAULT_CALL_TIMEOUT),
            ))
            .await
            .map_err(|s| session.status(s))?;
        writeln!(out, "receiver \"{name}\" deleted")?;
    }
    Ok(())
}
