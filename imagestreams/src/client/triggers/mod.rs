//! The client verbs of build and deploy triggers, over the gateway's
//! `Triggers` gRPC service:
//!
//! - `set triggers NAME --from-image [NS/]STREAM:TAG (--build|--deploy)
//!   [--webhook URL [--secret-stdin]] [-c CONTAINER] [--paused]
//!   [--no-fire-existing]` creates a trigger, and `set triggers NAME
//!   --from-image STREAM:TAG --mirror REPOSITORY[:TAG] [--insecure]` a mirror
//!   rule. Created on a tag that already holds an image, it fires for that
//!   image at once, unless `--no-fire-existing`;
//! - `get triggers|builds|deployments|mirrors [NAME...] [-A] [-o json|yaml|wide|name]`;
//! - `describe trigger NAME...`: spec, status, and the recent firings with
//!   their webhook delivery logs;
//! - `delete trigger NAME...`.

mod print;
mod views;

use print::{describe_trigger, firing_table, trigger_table};
use views::{FiringView, TriggerObject, write_document};

use std::io::{Read, Write};

use chrono::Utc;
use imagestreams_proto::v1::{self as pb, triggers_client::TriggersClient};
use imagestreams_trigger_api::{
    MirrorTarget, NewTrigger, TagRef, TriggerKind, TriggerSpec, Webhook, WebhookSecret,
};
use serde::Serialize;
use tonic::transport::Channel;

use super::{
    ClientError, Context,
    connection::{self, DEFAULT_CALL_TIMEOUT, Session},
    humanize::ago_str,
    tabwriter::TabWriter,
};
use crate::cli::{DeleteArgs, DescribeArgs, GetArgs, GetOutput, SetTriggersArgs};

/// The apiVersion of triggers and firings in `-o json|yaml`.
pub const API_VERSION: &str = imagestreams_trigger_api::object::API_VERSION;
/// How many firings `describe trigger` shows.
pub const DESCRIBE_FIRINGS: usize = 10;

/// What a resource argument names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Triggers.
    Triggers,
    /// Firings of Build triggers.
    Builds,
    /// Firings of Deploy triggers.
    Deployments,
    /// Firings of Mirror rules (their pushes).
    Mirrors,
}

impl Resource {
    /// The resource `name` (a `TYPE` or `TYPE/NAME` argument) names, if it is one of these.
    pub fn of(name: &str) -> Option<Resource> {
        let kind = name
            .split_once('/')
            .map_or(name, |(k, _)| k)
            .to_ascii_lowercase();
        match kind.as_str() {
            "trigger" | "triggers" | "trigger.imagestreams.io" | "triggers.imagestreams.io" => {
                Some(Resource::Triggers)
            }
            "build" | "builds" => Some(Resource::Builds),
            "deployment" | "deployments" | "deploy" => Some(Resource::Deployments),
            "mirror" | "mirrors" => Some(Resource::Mirrors),
            _ => None,
        }
    }

    fn kind(self) -> Option<TriggerKind> {
        match self {
            Resource::Triggers => None,
            Resource::Builds => Some(TriggerKind::Build),
            Resource::Deployments => Some(TriggerKind::Deploy),
            Resource::Mirrors => Some(TriggerKind::Mirror),
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Resource::Triggers => "trigger",
            Resource::Builds => "build",
            Resource::Deployments => "deployment",
            Resource::Mirrors => "mirror",
        }
    }
}

/// Whether `get`/`describe`/`delete` of `resource` belong here.
pub fn handles(resource: &str) -> bool {
    Resource::of(resource).is_some()
}

/// The names of `TYPE NAME...` or `TYPE/NAME...`.
fn names(resource: &str, rest: &[String]) -> Result<Vec<String>, ClientError> {
    let mut names = Vec::new();
    if let Some((_, name)) = resource.split_once('/') {
        names.push(name.to_owned());
    }
    for arg in rest {
        match arg.split_once('/') {
            Some((kind, name)) if Resource::of(kind) == Resource::of(resource) => {
                names.push(name.to_owned())
            }
            Some(_) => {
                return Err(ClientError::usage(format!(
                    "arguments in resource/name form must name the same resource: {arg:?}"
                )));
            }
            None => names.push(arg.clone()),
        }
    }
    if names.iter().any(String::is_empty) {
        return Err(ClientError::usage("a name may not be empty"));
    }
    Ok(names)
}

/// A connection to the `Triggers` service at `--server`.
struct Triggers {
    inner: TriggersClient<Channel>,
    session: Session,
}

impl Triggers {
    async fn connect(ctx: &Context) -> Result<Triggers, ClientError> {
        let session = connection::session(ctx).await?;
        Ok(Triggers {
            inner: TriggersClient::new(session.channel.clone()),
            session,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.session.request(message, Some(DEFAULT_CALL_TIMEOUT))
    }

    fn status(&self, status: tonic::Status) -> ClientError {
        self.session.status(status)
    }

    async fn create(
        &mut self,
        request: pb::CreateTriggerRequest,
    ) -> Result<pb::Trigger, ClientError> {
        let request = self.request(request);
        let reply = self.inner.create(request).await;
        reply.map(|r| r.into_inner()).map_err(|s| self.status(s))
    }

    async fn get(&mut self, namespace: &str, name: &str) -> Result<pb::Trigger, ClientError> {
        let request = self.request(pb::GetTriggerRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
        let reply = self.inner.get(request).await;
        reply.map(|r| r.into_inner()).map_err(|s| self.status(s))
    }

    async fn list(&mut self, namespace: &str) -> Result<Vec<pb::Trigger>, ClientError> {
        let request = self.request(pb::ListTriggersRequest {
            namespace: namespace.to_owned(),
        });
        let reply = self.inner.list(request).await;
        reply
            .map(|r| r.into_inner().items)
            .map_err(|s| self.status(s))
    }

    async fn delete(&mut self, namespace: &str, name: &str) -> Result<(), ClientError> {
        let request = self.request(pb::DeleteTriggerRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
        let reply = self.inner.delete(request).await;
        reply.map(|_| ()).map_err(|s| self.status(s))
    }

    async fn firings(
        &mut self,
        namespace: &str,
        trigger: &str,
        kind: Option<TriggerKind>,
    ) -> Result<Vec<pb::Firing>, ClientError> {
        let request = self.request(pb::ListFiringsRequest {
            namespace: namespace.to_owned(),
            trigger: trigger.to_owned(),
            kind: kind.map_or(pb::TriggerKind::Unspecified, Into::into) as i32,
        });
        let reply = self.inner.list_firings(request).await;
        reply
            .map(|r| r.into_inner().items)
            .map_err(|s| self.status(s))
    }
}

/// Runs `set triggers`; the secret, with `--secret-stdin`, is read from `stdin`.
pub async fn set(
    ctx: &mut Context,
    args: &SetTriggersArgs,
    stdin: &mut impl Read,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let namespace = ctx.namespace().to_owned();
    let secret = if args.secret_stdin {
        let mut secret = String::new();
        stdin
            .read_to_string(&mut secret)
            .map_err(|e| ClientError::usage(format!("cannot read the secret from stdin: {e}")))?;
        let secret = secret.trim_end_matches(['\r', '\n']).to_owned();
        if secret.is_empty() {
            return Err(ClientError::usage("--secret-stdin: stdin held no secret"));
        }
        Some(WebhookSecret::new(secret))
    } else {
        None
    };
    let trigger = NewTrigger {
        namespace: namespace.clone(),
        name: args.name.clone(),
        spec: TriggerSpec {
            from: TagRef::parse(&args.from_image, &namespace)?,
            kind: if args.deploy {
                TriggerKind::Deploy
            } else if args.mirror.is_some() {
                TriggerKind::Mirror
            } else {
                TriggerKind::Build
            },
            paused: args.paused,
            container: args.container.clone().unwrap_or_default(),
            webhook: args.webhook.clone().map(|url| Webhook { url, secret }),
            mirror: args.mirror.clone().map(|to| MirrorTarget {
                to,
                insecure: args.insecure,
            }),
        },
        fire_existing: !args.no_fire_existing,
    };
    let mut triggers = Triggers::connect(ctx).await?;
    let created = triggers
        .create(pb::CreateTriggerRequest::from(&trigger))
        .await?;
    writeln!(out, "trigger.imagestreams.io/{} created", created.name)?;
    Ok(())
}

/// Runs `get triggers|builds|deployments`.
pub async fn get(
    ctx: &mut Context,
    args: &GetArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    let resource =
        Resource::of(&args.resource).ok_or_else(|| ClientError::usage("not a trigger resource"))?;
    let names = names(&args.resource, &args.names)?;
    if args.selector.is_some() {
        return Err(ClientError::usage(format!(
            "{}s have no labels to select by",
            resource.singular()
        )));
    }
    if !names.is_empty() && args.all_namespaces {
        return Err(ClientError::usage(
            "a resource cannot be retrieved by name across all namespaces",
        ));
    }
    let namespace = ctx.namespace().to_owned();
    let scope = if args.all_namespaces {
        String::new()
    } else {
        namespace.clone()
    };
    let mut triggers = Triggers::connect(ctx).await?;
    let now = Utc::now();
    match resource {
        Resource::Triggers => {
            let items = if names.is_empty() {
                triggers.list(&scope).await?
            } else {
                let mut items = Vec::with_capacity(names.len());
                for name in &names {
                    items.push(triggers.get(&namespace, name).await?);
                }
                items
            };
            let views: Vec<TriggerObject> = items.iter().map(TriggerObject::from_proto).collect();
            match args.output {
                Some(GetOutput::Json) => write_document(out, &views, names.len() == 1, false)?,
                Some(GetOutput::Yaml) => write_document(out, &views, names.len() == 1, true)?,
                Some(GetOutput::Name) => {
                    for t in &items {
                        writeln!(out, "trigger.imagestreams.io/{}", t.name)?;
                    }
                }
                _ if items.is_empty() => no_resources(err, &scope)?,
                output => out.write_all(
                    trigger_table(
                        &items,
                        args.all_namespaces,
                        output == Some(GetOutput::Wide),
                        now,
                    )
                    .as_bytes(),
                )?,
            }
        }
        Resource::Builds | Resource::Deployments | Resource::Mirrors => {
            let mut items = triggers.firings(&scope, "", resource.kind()).await?;
            if !names.is_empty() {
                items.retain(|f| names.contains(&f.id));
                if let Some(missing) = names.iter().find(|n| !items.iter().any(|f| &f.id == *n)) {
                    return Err(ClientError::Api(
                        imagestreams_common::error::ApiError::NotFound(format!(
                            "{}s \"{missing}\" not found in namespace \"{namespace}\"",
                            resource.singular()
                        )),
                    ));
                }
            }
            let views: Vec<FiringView> = items.iter().map(FiringView::from).collect();
            match args.output {
                Some(GetOutput::Json) => write_document(out, &views, names.len() == 1, false)?,
                Some(GetOutput::Yaml) => write_document(out, &views, names.len() == 1, true)?,
                Some(GetOutput::Name) => {
                    for f in &items {
                        writeln!(out, "{}.imagestreams.io/{}", resource.singular(), f.id)?;
                    }
                }
                _ if items.is_empty() => no_resources(err, &scope)?,
                output => out.write_all(
                    firing_table(
                        &items,
                        args.all_namespaces,
                        output == Some(GetOutput::Wide),
                        now,
                    )
                    .as_bytes(),
                )?,
            }
        }
    }
    Ok(())
}

fn no_resources(err: &mut impl Write, scope: &str) -> Result<(), ClientError> {
    if scope.is_empty() {
        writeln!(err, "No resources found")?;
    } else {
        writeln!(err, "No resources found in {scope} namespace.")?;
    }
    Ok(())
}

/// Runs `describe trigger NAME...` (every trigger of the namespace without names).
pub async fn describe(
    ctx: &mut Context,
    args: &DescribeArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    if Resource::of(&args.resource) != Some(Resource::Triggers) {
        return Err(ClientError::usage(
            "describe supports trigger here (builds and deployments: use get -o yaml)",
        ));
    }
    let names = names(&args.resource, &args.names)?;
    let namespace = ctx.namespace().to_owned();
    let mut triggers = Triggers::connect(ctx).await?;
    let items = if names.is_empty() {
        triggers.list(&namespace).await?
    } else {
        let mut items = Vec::with_capacity(names.len());
        for name in &names {
            items.push(triggers.get(&namespace, name).await?);
        }
        items
    };
    if items.is_empty() {
        return no_resources(err, &namespace);
    }
    let now = Utc::now();
    for (i, trigger) in items.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
            writeln!(out)?;
        }
        let firings = triggers
            .firings(&trigger.namespace, &trigger.name, None)
            .await?;
        out.write_all(describe_trigger(trigger, &firings, now).as_bytes())?;
    }
    Ok(())
}

/// Runs `delete trigger NAME...`.
pub async fn delete(
    ctx: &mut Context,
    args: &DeleteArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    if Resource::of(&args.resource) != Some(Resource::Triggers) {
        return Err(ClientError::usage(
            "only triggers can be deleted; their builds and deployments go with them",
        ));
    }
    let names = names(&args.resource, &args.names)?;
    if names.is_empty() {
        return Err(ClientError::usage(
            "resource(s) were provided, but no name was specified",
        ));
    }
    let namespace = ctx.namespace().to_owned();
    let mut triggers = Triggers::connect(ctx).await?;
    for name in &names {
        triggers.delete(&namespace, name).await?;
        writeln!(out, "trigger.imagestreams.io \"{name}\" deleted")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_names() {
        assert_eq!(Resource::of("triggers"), Some(Resource::Triggers));
        assert_eq!(Resource::of("trigger/app"), Some(Resource::Triggers));
        assert_eq!(Resource::of("builds"), Some(Resource::Builds));
        assert_eq!(Resource::of("Deployments"), Some(Resource::Deployments));
        assert_eq!(Resource::of("is"), None);
        assert_eq!(
            names("trigger/a", &["trigger/b".into()]).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(names("triggers", &["a".into()]).unwrap(), vec!["a"]);
        assert!(names("trigger", &["is/b".into()]).is_err());
    }

    #[test]
    fn tables_show_the_status_and_never_a_secret() {
        let trigger = pb::Trigger {
            namespace: "ns".into(),
            name: "app-build".into(),
            spec: Some(pb::TriggerSpec {
                from: Some(pb::ImageStreamTagReference {
                    namespace: "ns".into(),
                    stream: "app".into(),
                    tag: "latest".into(),
                }),
                kind: pb::TriggerKind::Build as i32,
                webhook: Some(pb::Webhook {
                    url: "https://ci/hook".into(),
                    secret: String::new(),
                    has_secret: true,
                }),
                ..Default::default()
            }),
            status: Some(pb::TriggerStatus {
                last_triggered_image: format!("sha256:{}", "ab".repeat(32)),
                last_delivery: Some(pb::Delivery {
                    state: pb::DeliveryState::Succeeded as i32,
                    attempts: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let table = trigger_table(std::slice::from_ref(&trigger), false, false, Utc::now());
        assert!(table.starts_with("NAME"), "{table}");
        assert!(table.contains("app-build"));
        assert!(table.contains("app:latest"));
        assert!(table.contains("sha256:abababababab"));
        assert!(table.contains("Succeeded"));
        let mut json = Vec::new();
        write_document(
            &mut json,
            &[TriggerObject::from_proto(&trigger)],
            true,
            false,
        )
        .unwrap();
        let json = String::from_utf8(json).unwrap();
        assert!(json.contains("\"hasSecret\": true"), "{json}");
        let described = describe_trigger(&trigger, &[], Utc::now());
        assert!(
            described
                .lines()
                .any(|l| l.starts_with("Webhook secret:") && l.ends_with("<set>")),
            "{described}"
        );
    }
}
