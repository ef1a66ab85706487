//! `imagestreams tag SOURCE DEST...` and `tag --delete DEST...`, with `oc
//! tag`'s argument rules and messages. The server's `Tag` RPC does the work
//! (including resolving a tag source to its current image unless `--alias`);
//! the client checks the arguments first and reports what was set.

use std::io::Write;

use imagestreams_common::{
    model::{FROM_DOCKER_IMAGE, FROM_IMAGE_STREAM_IMAGE, FROM_IMAGE_STREAM_TAG, ImageStream},
    reference::Reference,
};
use imagestreams_proto::v1 as pb;

use super::{ClientError, Context};
use crate::cli::TagArgs;

/// Runs `tag`.
pub async fn run(
    ctx: &mut Context,
    args: &TagArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let namespace = ctx.namespace().to_owned();
    let plan = Plan::new(args, &namespace)?;
    let request = pb::TagRequest {
        namespace: namespace.clone(),
        source: plan
            .source
            .as_ref()
            .map(|s| s.text.clone())
            .unwrap_or_default(),
        source_kind: plan
            .source
            .as_ref()
            .map(|s| s.kind.to_owned())
            .unwrap_or_default(),
        destinations: plan.destinations.iter().map(|d| d.arg.clone()).collect(),
        alias: args.alias,
        reference: args.reference,
        scheduled: args.scheduled,
        insecure: args.insecure,
        delete: args.delete,
        reference_policy: args.reference_policy.clone().unwrap_or_default(),
    };
    let changed = ctx.client().await?.tag(request).await?;
    for line in plan.messages(args, &namespace, &changed) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// The checked arguments of one `tag` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `None` with `--delete`.
    pub source: Option<Source>,
    /// Where to tag (or which tags to delete).
    pub destinations: Vec<Destination>,
}

/// The SOURCE argument, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// As given.
    pub text: String,
    /// `ImageStreamTag`, `ImageStreamImage` or `DockerImage`.
    pub kind: &'static str,
    /// The namespace part (`ns/stream:tag`), if any.
    pub namespace: String,
    /// The stream (or repository) name, without namespace or registry.
    pub name: String,
}

/// One `[NAMESPACE/]STREAM:TAG` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// As given.
    pub arg: String,
    /// Its namespace: the given one, else the current one.
    pub namespace: String,
    /// `STREAM:TAG`.
    pub name_and_tag: String,
    /// The stream.
    pub stream: String,
    /// The tag.
    pub tag: String,
}

impl Plan {
    /// Checks the arguments as `oc tag` does, before anything is sent.
    pub fn new(args: &TagArgs, namespace: &str) -> Result<Plan, ClientError> {
        let usage = ClientError::usage;
        if args.delete {
            if args.alias {
                return Err(usage("--alias and --delete may not be both specified"));
            }
            if args.source.is_some() {
                return Err(usage("cannot specify a source kind when deleting"));
            }
            if args.scheduled || args.insecure {
                return Err(usage(
                    "cannot set flags for importing images when deleting a tag",
                ));
            }
        } else if args.args.len() < 2 {
            return Err(usage(
                "you must specify a source and at least one destination or one or more tags to delete",
            ));
        }
        let (source, destinations) = if args.delete {
            (None, args.args.as_slice())
        } else {
            let kind = args.source.as_deref().map(source_kind).transpose()?;
            (Some(classify(&args.args[0], kind)?), &args.args[1..])
        };
        let destinations = destinations
            .iter()
            .map(|d| destination(d, namespace))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(source) = &source {
            if source.kind != FROM_DOCKER_IMAGE && (args.scheduled || args.insecure) {
                return Err(usage("only container images can have importing flags set"));
            }
            if args.alias {
                if args.scheduled || args.insecure {
                    return Err(usage(
                        "cannot set a container image tag as an alias and also set import flags",
                    ));
                }
                let source_namespace = if source.namespace.is_empty() {
                    namespace
                } else {
                    &source.namespace
                };
                let cross = destinations.iter().any(|d| {
                    d.namespace != namespace
                        || source_namespace != namespace
                        || d.stream != source.name
                });
                if cross {
                    return Err(usage("cannot set alias across different Image Streams"));
                }
            }
        }
        Ok(Plan {
            source,
            destinations,
        })
    }

    /// `oc`'s line per destination, naming the source as the server set it.
    pub fn messages(
        &self,
        args: &TagArgs,
        namespace: &str,
        changed: &[ImageStream],
    ) -> Vec<String> {
        self.destinations
            .iter()
            .map(|d| {
                let target = if d.namespace == namespace {
                    d.name_and_tag.clone()
                } else {
                    format!("{}/{}", d.namespace, d.name_and_tag)
                };
                let Some(source) = &self.source else {
                    return format!("Deleted tag {}/{}.", d.namespace, d.name_and_tag);
                };
                let set_to =
                    set_source(changed, d, namespace).unwrap_or_else(|| source.text.clone());
                if args.alias {
                    format!("Tag {target} set up to track {set_to}.")
                } else if args.scheduled {
                    format!("Tag {target} set to import {set_to} periodically.")
                } else {
                    format!("Tag {target} set to {set_to}.")
                }
            })
            .collect()
    }
}

/// `--source`: kubectl-style names of the three source kinds.
fn source_kind(hint: &str) -> Result<&'static str, ClientError> {
    match hint.to_ascii_lowercase().as_str() {
        "imagestreamtag" | "imagestreamtags" | "istag" => Ok(FROM_IMAGE_STREAM_TAG),
        "imagestreamimage" | "imagestreamimages" | "isimage" => Ok(FROM_IMAGE_STREAM_IMAGE),
        "docker" | "dockerimage" => Ok(FROM_DOCKER_IMAGE),
        _ => Err(ClientError::usage(format!(
            "invalid source \"{hint}\"; valid values are docker, dockerimage, imagestreamimage, imagestreamtag, isimage, istag"
        ))),
    }
}

/// A pull spec split as OpenShift's `ParseDockerImageReference` splits it:
/// the first component is a registry only if it has a `.` or `:` or is
/// `localhost`, and the next one is the namespace.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parts {
    registry: String,
    namespace: String,
    name: String,
    tag: String,
    id: String,
}

fn split(spec: &str) -> Result<Parts, ClientError> {
    Reference::parse_normalized(spec)
        .map_err(|e| ClientError::usage(format!("invalid SOURCE: {e}")))?;
    let (rest, id) = match spec.split_once('@') {
        Some((rest, id)) => (rest, id.to_owned()),
        None => (spec, String::new()),
    };
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag.to_owned()),
        _ => (rest, String::new()),
    };
    let mut parts = Parts {
        tag,
        id,
        ..Parts::default()
    };
    let name = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            parts.registry = first.to_owned();
            rest
        }
        _ => name,
    };
    match name.split_once('/') {
        Some((namespace, name)) => {
            parts.namespace = namespace.to_owned();
            parts.name = name.to_owned();
        }
        None => parts.name = name.to_owned(),
    }
    Ok(parts)
}

/// The source's kind: the `--source` hint checked against the spec, or
/// guessed as `oc` guesses (a registry means a container image, a digest an
/// image of a stream, a tag a tag of a stream).
fn classify(text: &str, hint: Option<&'static str>) -> Result<Source, ClientError> {
    let parts = split(text)?;
    let kind = match hint {
        Some(kind @ (FROM_IMAGE_STREAM_TAG | FROM_IMAGE_STREAM_IMAGE)) => {
            if !parts.registry.is_empty() {
                return Err(ClientError::usage(
                    "server in SOURCE is only allowed when providing a container image",
                ));
            }
            if kind == FROM_IMAGE_STREAM_TAG && parts.tag.is_empty() {
                return Err(ClientError::usage(
                    "--source=ImageStreamTag requires a valid <name>:<tag> in SOURCE",
                ));
            }
            if kind == FROM_IMAGE_STREAM_IMAGE && parts.id.is_empty() {
                return Err(ClientError::usage(
                    "--source=ImageStreamImage requires a valid <name>@<id> in SOURCE",
                ));
            }
            kind
        }
        Some(kind) => kind,
        None if !parts.registry.is_empty() => FROM_DOCKER_IMAGE,
        None if !parts.id.is_empty() => FROM_IMAGE_STREAM_IMAGE,
        None if !parts.tag.is_empty() => FROM_IMAGE_STREAM_TAG,
        None => FROM_DOCKER_IMAGE,
    };
    Ok(Source {
        text: text.to_owned(),
        kind,
        namespace: parts.namespace,
        name: parts.name,
    })
}

/// `[NAMESPACE/]STREAM:TAG`.
fn destination(arg: &str, namespace: &str) -> Result<Destination, ClientError> {
    let usage = ClientError::usage;
    let (dest_namespace, name_and_tag) = match arg.split_once('/') {
        None => (namespace, arg),
        Some((_, rest)) if rest.contains('/') => {
            return Err(usage(format!("invalid image stream \"{arg}\"")));
        }
        Some(("", _)) => {
            return Err(usage(format!(
                "invalid namespace \"\" for image stream \"{arg}\""
            )));
        }
        Some((_, "")) => {
            return Err(usage(format!(
                "invalid name \"\" for image stream \"{arg}\""
            )));
        }
        Some((ns, rest)) => (ns, rest),
    };
    let (stream, tag) = name_and_tag
        .split_once(':')
        .filter(|(s, t)| !s.is_empty() && !t.is_empty() && !t.contains(':'))
        .ok_or_else(|| {
            usage(format!(
                "\"{name_and_tag}\" must be of the form <stream_name>:<tag>"
            ))
        })?;
    Ok(Destination {
        arg: arg.to_owned(),
        namespace: dest_namespace.to_owned(),
        name_and_tag: name_and_tag.to_owned(),
        stream: stream.to_owned(),
        tag: tag.to_owned(),
    })
}

/// The `from` the server set on the destination tag, as `oc` names sources.
fn set_source(changed: &[ImageStream], d: &Destination, namespace: &str) -> Option<String> {
    let stream = changed
        .iter()
        .find(|s| s.metadata.name == d.stream && s.metadata.namespace == d.namespace)?;
    let from = stream.spec_tag(&d.tag)?.from.as_ref()?;
    if from.name.is_empty() {
        return None;
    }
    Some(match from.kind.as_str() {
        FROM_DOCKER_IMAGE => from.name.clone(),
        _ if !from.namespace.is_empty() && from.namespace != namespace => {
            format!("{}/{}", from.namespace, from.name)
        }
        _ => from.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{ObjectReference, TagReference};

    use super::*;

    fn args(list: &[&str]) -> TagArgs {
        TagArgs {
            args: list.iter().map(|s| s.to_string()).collect(),
            source: None,
            delete: false,
            alias: false,
            reference: false,
            scheduled: false,
            insecure: false,
            reference_policy: None,
        }
    }

    const DIGEST: &str = "sha256:6b646fa6bf5e5e4c7fa41056c27910e679c03ebe7f93e361e6515a9da7e258cc";

    #[test]
    fn source_kinds_are_guessed_like_oc() {
        let kind = |s: &str| classify(s, None).unwrap().kind;
        assert_eq!(kind("ruby:2.0"), FROM_IMAGE_STREAM_TAG);
        assert_eq!(kind("openshift/ruby:2.0"), FROM_IMAGE_STREAM_TAG);
        assert_eq!(kind(&format!("ruby@{DIGEST}")), FROM_IMAGE_STREAM_IMAGE);
        assert_eq!(kind("quay.io/org/ruby:2.0"), FROM_DOCKER_IMAGE);
        assert_eq!(kind("localhost/ruby:2.0"), FROM_DOCKER_IMAGE);
        assert_eq!(kind("127.0.0.1:5000/ruby"), FROM_DOCKER_IMAGE);
        assert_eq!(kind("ruby"), FROM_DOCKER_IMAGE);
        let s = classify("openshift/ruby:2.0", None).unwrap();
        assert_eq!(
            (s.namespace.as_str(), s.name.as_str()),
            ("openshift", "ruby")
        );
    }

    #[test]
    fn explicit_source_kinds_are_checked() {
        let mut a = args(&["quay.io/org/ruby:2.0", "ruby:tip"]);
        a.source = Some("istag".into());
        assert_eq!(
            Plan::new(&a, "ns").unwrap_err().to_string(),
            "server in SOURCE is only allowed when providing a container image"
        );
        a.args[0] = "ruby".into();
        assert!(
            Plan::new(&a, "ns")
                .unwrap_err()
                .to_string()
                .contains("<name>:<tag>")
        );
        a.source = Some("isimage".into());
        a.args[0] = "ruby:2.0".into();
        assert!(
            Plan::new(&a, "ns")
                .unwrap_err()
                .to_string()
                .contains("<name>@<id>")
        );
        a.source = Some("docker".into());
        a.args[0] = "openshift/origin:latest".into();
        assert_eq!(
            Plan::new(&a, "ns").unwrap().source.unwrap().kind,
            FROM_DOCKER_IMAGE
        );
        a.source = Some("pods".into());
        assert!(
            Plan::new(&a, "ns")
                .unwrap_err()
                .to_string()
                .starts_with("invalid source \"pods\"")
        );
        a.source = None;
        a.args[0] = "Not A Ref".into();
        assert!(
            Plan::new(&a, "ns")
                .unwrap_err()
                .to_string()
                .starts_with("invalid SOURCE: ")
        );
    }

    #[test]
    fn flag_rules() {
        let check = |a: TagArgs| Plan::new(&a, "ns").err().map(|e| e.to_string());
        let mut a = args(&["ruby:tip"]);
        a.delete = true;
        a.alias = true;
        assert_eq!(
            check(a).unwrap(),
            "--alias and --delete may not be both specified"
        );
        let mut a = args(&["ruby:tip"]);
        a.delete = true;
        a.scheduled = true;
        assert!(
            check(a)
                .unwrap()
                .starts_with("cannot set flags for importing")
        );
        assert!(
            check(args(&["ruby:tip"]))
                .unwrap()
                .starts_with("you must specify a source")
        );
        let mut a = args(&["ruby:2.0", "ruby:tip"]);
        a.scheduled = true;
        assert_eq!(
            check(a).unwrap(),
            "only container images can have importing flags set"
        );
        let mut a = args(&["ruby:2.0", "python:tip"]);
        a.alias = true;
        assert_eq!(
            check(a).unwrap(),
            "cannot set alias across different Image Streams"
        );
        let mut a = args(&["ruby:2.0", "other/ruby:tip"]);
        a.alias = true;
        assert_eq!(
            check(a).unwrap(),
            "cannot set alias across different Image Streams"
        );
        let mut a = args(&["ruby:2.0", "ruby:tip"]);
        a.alias = true;
        assert_eq!(check(a), None);
        assert_eq!(
            check(args(&["ruby:2.0", "ruby"])).unwrap(),
            "\"ruby\" must be of the form <stream_name>:<tag>"
        );
        assert_eq!(
            check(args(&["ruby:2.0", "a/b/c:d"])).unwrap(),
            "invalid image stream \"a/b/c:d\""
        );
    }

    fn changed(
        ns: &str,
        name: &str,
        tag: &str,
        kind: &str,
        from_ns: &str,
        from: &str,
    ) -> ImageStream {
        let mut is = ImageStream::new(ns, name);
        is.spec.tags.push(TagReference {
            name: tag.into(),
            from: Some(ObjectReference {
                kind: kind.into(),
                namespace: from_ns.into(),
                name: from.into(),
            }),
            ..TagReference::default()
        });
        is
    }

    #[test]
    fn messages_like_oc() {
        let a = args(&["ruby:latest", "ruby:tip", "other/ruby:tip"]);
        let plan = Plan::new(&a, "ns").unwrap();
        let image = format!("ruby@{DIGEST}");
        let streams = [
            changed("ns", "ruby", "tip", FROM_IMAGE_STREAM_IMAGE, "", &image),
            changed(
                "other",
                "ruby",
                "tip",
                FROM_IMAGE_STREAM_IMAGE,
                "ns",
                &image,
            ),
        ];
        assert_eq!(
            plan.messages(&a, "ns", &streams),
            [
                format!("Tag ruby:tip set to {image}."),
                format!("Tag other/ruby:tip set to {image}."),
            ]
        );
        // Without the server's answer, the source as given.
        assert_eq!(
            plan.messages(&a, "ns", &[])[0],
            "Tag ruby:tip set to ruby:latest."
        );

        let mut a = args(&["quay.io/org/app:1", "app:1"]);
        a.scheduled = true;
        let plan = Plan::new(&a, "ns").unwrap();
        assert_eq!(
            plan.messages(&a, "ns", &[])[0],
            "Tag app:1 set to import quay.io/org/app:1 periodically."
        );
        let mut a = args(&["ruby:2.0", "ruby:latest"]);
        a.alias = true;
        let plan = Plan::new(&a, "ns").unwrap();
        assert_eq!(
            plan.messages(&a, "ns", &[])[0],
            "Tag ruby:latest set up to track ruby:2.0."
        );
        let mut a = args(&["ruby:tip", "other/ruby:old"]);
        a.delete = true;
        let plan = Plan::new(&a, "ns").unwrap();
        assert_eq!(
            plan.messages(&a, "ns", &[]),
            ["Deleted tag ns/ruby:tip.", "Deleted tag other/ruby:old."]
        );
    }
}
